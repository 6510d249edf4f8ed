package dev.tfner.client;

import java.util.List;

/**
 * Code-point offsets (what the server counts) to UTF-16 indices (what Java strings count).
 *
 * <p>A character outside the Basic Multilingual Plane is one code point and two {@code char}s (a
 * surrogate pair): in {@code "😀北京"} the entity 北京 is code points [1, 3) and chars [2, 4).
 * Combining marks are code points of their own in both units, so they need nothing special.
 */
final class TextOffsets {
  private TextOffsets() {}

  /**
   * Checks that every text can be sent: not null, and no lone surrogate, which has no UTF-8 form
   * (Java would send {@code ?} in its place, and the offsets would no longer match the string).
   *
   * @throws IllegalArgumentException naming the text's index and the char index of the surrogate
   */
  static void requireWellFormed(List<String> texts) {
    for (int i = 0; i < texts.size(); i++) {
      String text = texts.get(i);
      if (text == null) {
        throw new NullPointerException("texts[" + i + "] is null; pass a string (\"\" for no text)");
      }
      int bad = loneSurrogateIndex(text);
      if (bad >= 0) {
        throw new IllegalArgumentException(
            String.format(
                "texts[%d] holds a lone UTF-16 surrogate U+%04X at char index %d, which is not valid"
                    + " Unicode and has no UTF-8 form; fix or drop that character",
                i, (int) text.charAt(bad), bad));
      }
    }
  }

  /** The index of the first surrogate that is not half of a pair, or -1. */
  static int loneSurrogateIndex(String text) {
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (Character.isHighSurrogate(c)
          && i + 1 < text.length()
          && Character.isLowSurrogate(text.charAt(i + 1))) {
        i++; // A pair: skip its low half.
      } else if (Character.isSurrogate(c)) {
        return i;
      }
    }
    return -1;
  }

  /**
   * The UTF-16 index of every code-point offset 0..codePointCount of a well-formed text, or null
   * when the two coincide (no surrogate pair: all CJK in the BMP), which is the common case.
   */
  static int[] utf16Indices(String text) {
    int pairs = 0;
    for (int i = 0; i < text.length(); i++) {
      if (Character.isHighSurrogate(text.charAt(i))) {
        pairs++;
      }
    }
    if (pairs == 0) {
      return null;
    }
    int[] indices = new int[text.length() - pairs + 1];
    int codePoint = 0;
    for (int i = 0; i < text.length(); i += Character.charCount(text.codePointAt(i))) {
      indices[codePoint++] = i;
    }
    indices[codePoint] = text.length();
    return indices;
  }
}
