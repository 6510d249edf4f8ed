package dev.tfner.client;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.util.ArrayList;
import java.util.List;

/** One line of TFNER_PARITY: a text and the entities the in-process model found (code points). */
record ParityCase(String text, List<Expected> entities) {

  /** One expected entity. */
  record Expected(String label, int start, int end, String text, double score) {}

  static ParityCase parse(String line) {
    JsonObject object = JsonParser.parseString(line).getAsJsonObject();
    List<Expected> entities = new ArrayList<>();
    for (JsonElement element : object.getAsJsonArray("entities")) {
      JsonObject e = element.getAsJsonObject();
      entities.add(
          new Expected(
              e.get("label").getAsString(),
              e.get("start").getAsInt(),
              e.get("end").getAsInt(),
              e.get("text").getAsString(),
              e.get("score").getAsDouble()));
    }
    return new ParityCase(object.get("text").getAsString(), List.copyOf(entities));
  }

  /**
   * What differs between this case and a prediction: labels, code-point offsets and texts exactly,
   * scores within 1e-4, and the UTF-16 offsets must slice the text to the entity's text. Empty when
   * they match.
   */
  List<String> mismatches(Prediction actual) {
    List<String> problems = new ArrayList<>();
    String where = "text " + quote(text);
    if (!actual.text().equals(text)) {
      problems.add(where + ": prediction is for " + quote(actual.text()) + " (out of order?)");
      return problems;
    }
    if (actual.entities().size() != entities.size()) {
      problems.add(where + ": " + actual.entities().size() + " entities, expected " + entities.size()
          + ": " + actual.entities() + " vs " + entities);
      return problems;
    }
    for (int i = 0; i < entities.size(); i++) {
      Expected e = entities.get(i);
      Entity a = actual.entities().get(i);
      if (!a.label().equals(e.label()) || a.start() != e.start() || a.end() != e.end() || !a.text().equals(e.text())) {
        problems.add(where + " entity " + i + ": got " + a + ", expected " + e);
      }
      if (Math.abs(a.score() - e.score()) > 1e-4) {
        problems.add(where + " entity " + i + ": score " + a.score() + ", expected " + e.score());
      }
      String slice = text.substring(a.utf16Start(), a.utf16End());
      if (!slice.equals(a.text())) {
        problems.add(where + " entity " + i + ": utf16 [" + a.utf16Start() + ", " + a.utf16End() + ") slices "
            + quote(slice) + ", not " + quote(a.text()));
      }
      if (text.codePointCount(0, a.utf16Start()) != a.start() || text.codePointCount(0, a.utf16End()) != a.end()) {
        problems.add(where + " entity " + i + ": utf16 offsets do not match the code-point offsets: " + a);
      }
    }
    return problems;
  }

  private static String quote(String s) {
    return "\"" + (s.length() > 40 ? s.substring(0, 40) + "...(" + s.length() + " chars)" : s) + "\"";
  }
}
