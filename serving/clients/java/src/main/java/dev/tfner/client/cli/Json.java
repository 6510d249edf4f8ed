package dev.tfner.client.cli;

import dev.tfner.client.Entity;
import dev.tfner.client.Prediction;

/**
 * The JSON lines of the command line, in the layout of {@code python -m tfner.client} ({@code
 * json.dumps(..., ensure_ascii=False)}): ", " and ": " separators, non-ASCII characters as they
 * are, control characters escaped.
 */
final class Json {
  private Json() {}

  /** {@code {"text": ..., "entities": [{"label", "start", "end", "text", "score", "utf16_start", "utf16_end"}]}}. */
  static String line(Prediction prediction) {
    StringBuilder out = new StringBuilder(64 + 2 * prediction.text().length());
    out.append("{\"text\": ");
    quote(out, prediction.text());
    out.append(", \"entities\": [");
    String separator = "";
    for (Entity e : prediction.entities()) {
      out.append(separator).append("{\"label\": ");
      quote(out, e.label());
      out.append(", \"start\": ").append(e.start()).append(", \"end\": ").append(e.end()).append(", \"text\": ");
      quote(out, e.text());
      // Widened to double, as Python prints float(np.float32): same digits for the same value.
      out.append(", \"score\": ").append(number(e.score()));
      out.append(", \"utf16_start\": ").append(e.utf16Start()).append(", \"utf16_end\": ").append(e.utf16End()).append('}');
      separator = ", ";
    }
    return out.append("]}").toString();
  }

  /** A JSON number; JSON has no NaN or infinity, so those become null. */
  static String number(double value) {
    return Double.isFinite(value) ? Double.toString(value) : "null";
  }

  static void quote(StringBuilder out, String s) {
    out.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        case '\b' -> out.append("\\b");
        case '\f' -> out.append("\\f");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    out.append('"');
  }
}
