package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.Test;

/** Each gRPC status class comes back as its own exception, carrying the server's message. */
class ErrorsTest {
  /** About 3,000 characters, as the longest parity text. */
  private static final String LONG_TEXT = "张三在北京工作，李四去了上海。王五在广州市天河区上班。".repeat(112);

  @Test
  void unknownModelIsNotFound() {
    try (NerClient client = TestEnv.client().model("no_such_model").build()) {
      NotFoundException e = assertThrows(NotFoundException.class, () -> client.predict(List.of("北京")));
      assertServerSaid(e, Status.Code.NOT_FOUND);
      assertTrue(e.serverMessage().contains("no_such_model"), e.serverMessage());
    }
  }

  @Test
  void chunkOverTheServersTextLimitIsInvalidArgument() {
    int tooMany = TestEnv.maxTextsPerRequest() + 1;
    try (NerClient client = TestEnv.client().chunkSize(tooMany).build()) {
      InvalidArgumentException e =
          assertThrows(InvalidArgumentException.class, () -> client.predict(Collections.nCopies(tooMany, "北京")));
      assertServerSaid(e, Status.Code.INVALID_ARGUMENT);
    }
  }

  @Test
  void callOverTheServersCharacterLimitIsResourceExhausted() {
    int texts = TestEnv.maxCharsPerRequest() / LONG_TEXT.length() + 1;
    try (NerClient client = TestEnv.client().chunkSize(texts).build()) {
      ResourceExhaustedException e =
          assertThrows(ResourceExhaustedException.class, () -> client.predict(Collections.nCopies(texts, LONG_TEXT)));
      assertServerSaid(e, Status.Code.RESOURCE_EXHAUSTED);
    }
  }

  @Test
  void closedPortIsUnavailableAfterEveryRetry() {
    CallCounter counter = new CallCounter();
    try (NerClient client =
        NerClient.builder("127.0.0.1:" + TestEnv.freePort())
            .retries(3)
            .backoff(Duration.ofMillis(10), Duration.ofMillis(40))
            .intercept(counter)
            .build()) {
      UnavailableException e = assertThrows(UnavailableException.class, () -> client.predict(List.of("北京")));
      assertEquals(4, e.attempts());
      assertEquals(4, counter.calls(), "1 call + 3 retries");
      assertFalse(e.serverMessage().isBlank());
      assertTrue(e.getMessage().startsWith("UNAVAILABLE: "), e.getMessage());
    }
  }

  @Test
  void expiredDeadlineIsDeadlineExceeded() {
    CallCounter counter = new CallCounter();
    try (NerClient client = TestEnv.client().timeout(Duration.ofMillis(1)).intercept(counter).build()) {
      DeadlineExceededException e =
          assertThrows(DeadlineExceededException.class, () -> client.predict(List.of(LONG_TEXT)));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
      assertEquals(1, counter.calls(), "DEADLINE_EXCEEDED is not retried");
    }
  }

  @Test
  void asyncCallsFailTheFutureWithTheSameException() {
    try (NerClient client = TestEnv.client().model("no_such_model").build()) {
      CompletionException e =
          assertThrows(CompletionException.class, () -> client.predictAsync(List.of("北京", "上海")).join());
      assertTrue(e.getCause() instanceof NotFoundException, e.toString());
    }
  }

  @Test
  void loneSurrogateIsRefusedClientSideNamingTheText() {
    CallCounter counter = new CallCounter();
    try (NerClient client = TestEnv.client().intercept(counter).build()) {
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> client.predict(List.of("北京", "ok", "李四\uD83D去了")));
      assertTrue(e.getMessage().startsWith("texts[2] holds a lone UTF-16 surrogate U+D83D at char index 2"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> client.predictAsync(List.of("\uDE00")));
      assertEquals(0, counter.calls(), "nothing was sent");
    }
  }

  @Test
  void nullTextIsRefusedNamingIt() {
    try (NerClient client = TestEnv.client().build()) {
      NullPointerException e =
          assertThrows(NullPointerException.class, () -> client.predict(java.util.Arrays.asList("北京", null)));
      assertTrue(e.getMessage().startsWith("texts[1] is null"), e.getMessage());
    }
  }

  @Test
  void closedClientRefusesCalls() {
    NerClient client = TestEnv.client().build();
    client.close();
    client.close(); // Idempotent.
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> client.predict(List.of("北京")));
    assertEquals("this NerClient is closed; build a new one", e.getMessage());
  }

  private static void assertServerSaid(NerException e, Status.Code code) {
    assertEquals(code, e.code());
    assertEquals(1, e.attempts());
    assertFalse(e.serverMessage().isBlank(), "the server's message is carried");
    assertEquals(code + ": " + e.serverMessage(), e.getMessage());
  }
}
