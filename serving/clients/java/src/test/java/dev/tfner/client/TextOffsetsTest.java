package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Code points to UTF-16 indices, and lone surrogates (no server needed). */
class TextOffsetsTest {

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      value = {
        "BMP only (CJK): indices coincide | 北京欢迎你 | ",
        "emoji: one code point, two chars | 😀北京 | 0 2 3 4",
        "combining mark: its own code point and char | e\u0301北 | ",
        "ZWJ sequence: every member counted | 👨\u200D👩 | 0 2 3 5",
        "CJK Extension B | 𠀀张 | 0 2 3",
      })
  void utf16Indices(String name, String text, String expected) {
    int[] indices = TextOffsets.utf16Indices(text);
    if (expected == null) {
      assertNull(indices);
    } else {
      int[] want = java.util.Arrays.stream(expected.split(" ")).mapToInt(Integer::parseInt).toArray();
      assertArrayEquals(want, indices);
    }
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      value = {
        "well formed | 😀北京 | -1",
        "empty | '' | -1",
        "lone high surrogate at the end | 北京\uD83D | 2",
        "lone low surrogate | a\uDE00b | 1",
        "reversed pair | \uDE00\uD83D | 0",
        "high surrogate before a letter | \uD83Dx | 0",
      })
  void loneSurrogateIndex(String name, String text, int expected) {
    assertEquals(expected, TextOffsets.loneSurrogateIndex(text));
  }
}
