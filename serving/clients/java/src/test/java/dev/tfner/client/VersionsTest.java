package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.OptionalLong;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Version and label pinning (as the response reports the version), and ModelService status. */
class VersionsTest {

  static Stream<Arguments> pins() {
    return Stream.of(
        Arguments.of("version 1", (UnaryOperator<NerClient.Builder>) b -> b.version(1), 1L),
        Arguments.of("version 2", (UnaryOperator<NerClient.Builder>) b -> b.version(2), 2L),
        Arguments.of("label stable", (UnaryOperator<NerClient.Builder>) b -> b.label("stable"), 1L),
        Arguments.of("label canary", (UnaryOperator<NerClient.Builder>) b -> b.label("canary"), 2L),
        Arguments.of("no pin: the latest", (UnaryOperator<NerClient.Builder>) b -> b, 2L));
  }

  @ParameterizedTest(name = "{0} is answered by version {2}")
  @MethodSource("pins")
  void pinSelectsTheVersion(String name, UnaryOperator<NerClient.Builder> pin, long expected) {
    try (NerClient client = pin.apply(TestEnv.client()).chunkSize(2).build()) {
      List<Prediction> predictions = client.predict(List.of("张三在北京工作。", "李四去了上海。", "北京欢迎你"));
      for (Prediction p : predictions) {
        assertEquals(OptionalLong.of(expected), p.modelVersion(), p::toString);
      }
    }
  }

  @Test
  void unknownVersionAndLabelAreNotFound() {
    try (NerClient client = TestEnv.client().version(99).build()) {
      assertThrows(NotFoundException.class, () -> client.predict(List.of("北京")));
    }
    try (NerClient client = TestEnv.client().label("no_such_label").build()) {
      assertThrows(NotFoundException.class, () -> client.predict(List.of("北京")));
    }
  }

  @Test
  void statusListsBothVersionsAvailable() {
    try (NerClient client = TestEnv.client().label("canary").build()) {
      List<ModelVersionStatus> versions = client.status();
      assertEquals(
          List.of(1L, 2L),
          versions.stream().map(ModelVersionStatus::version).sorted().toList(),
          versions::toString);
      for (ModelVersionStatus v : versions) {
        assertEquals(ModelVersionStatus.State.AVAILABLE, v.state(), v::toString);
        assertEquals("", v.errorMessage(), v::toString);
      }
    }
  }

  @Test
  void statusOfAnUnknownModelIsNotFound() {
    try (NerClient client = TestEnv.client().model("no_such_model").build()) {
      assertThrows(NotFoundException.class, client::status);
    }
  }

  @Test
  void versionAndLabelTogetherAreRefused() {
    var error = assertThrows(IllegalArgumentException.class, () -> TestEnv.client().version(1).label("stable").build());
    assertEquals("pin either a version (1) or a label (\"stable\"), not both", error.getMessage());
  }
}
