package dev.tfner.client.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.tfner.client.Entity;
import dev.tfner.client.Prediction;
import java.util.List;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** The JSON lines match python -m tfner.client's layout (no server needed). */
class JsonTest {

  @Test
  void lineLayoutAndEscapes() {
    Prediction p =
        new Prediction("北京\t\"x\"\\\n\u0001😀", List.of(new Entity("LOC", 0, 2, "北京", 0.5f, 0, 2)), OptionalLong.of(1));
    assertEquals(
        "{\"text\": \"北京\\t\\\"x\\\"\\\\\\n\\u0001😀\", \"entities\": [{\"label\": \"LOC\", \"start\": 0, \"end\": 2,"
            + " \"text\": \"北京\", \"score\": 0.5, \"utf16_start\": 0, \"utf16_end\": 2}]}",
        Json.line(p));
  }

  @Test
  void noEntities() {
    assertEquals("{\"text\": \"\", \"entities\": []}", Json.line(new Prediction("", List.of(), OptionalLong.empty())));
  }
}
