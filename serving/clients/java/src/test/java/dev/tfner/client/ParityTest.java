package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The server's answers, through the client, equal the in-process model's for every parity text. */
class ParityTest {
  private static NerClient client;

  @BeforeAll
  static void open() {
    client = TestEnv.client().build();
  }

  @AfterAll
  static void close() {
    if (client != null) {
      client.close();
    }
  }

  @Test
  void everyParityTextGetsTheInProcessEntitiesWithNativeOffsets() {
    List<ParityCase> cases = TestEnv.parity();
    List<Prediction> predictions = client.predict(cases.stream().map(ParityCase::text).toList());

    assertEquals(cases.size(), predictions.size());
    List<String> problems = new ArrayList<>();
    for (int i = 0; i < cases.size(); i++) {
      problems.addAll(cases.get(i).mismatches(predictions.get(i)));
    }
    if (!problems.isEmpty()) {
      fail(problems.size() + " mismatches, the first ones:\n" + String.join("\n", problems.subList(0, Math.min(20, problems.size()))));
    }
  }

  @Test
  void emojiAndCombiningMarksGetUtf16Offsets() {
    // Whatever the model finds, every entity's UTF-16 offsets must slice the original string.
    List<String> texts = List.of("😀张三在北京😀工作", "e\u0301李四 café 上海", "𠀀𠀁张三𠀂北京", "👨‍👩‍👧李四去了上海🇨🇳", "");
    List<Prediction> predictions = client.predict(texts);
    for (Prediction p : predictions) {
      for (Entity e : p.entities()) {
        assertEquals(e.text(), p.text().substring(e.utf16Start(), e.utf16End()), () -> p + " " + e);
        assertEquals(e.end() - e.start(), e.text().codePointCount(0, e.text().length()), e::toString);
      }
    }
    assertTrue(predictions.get(4).entities().isEmpty(), "the empty text has no entities");
  }
}
