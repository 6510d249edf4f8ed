package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A server restarted under a caller: SIGTERM, then a new process on the same port. With retries
 * and backoff that cover the restart, every call succeeds.
 */
class RestartTest {

  @Test
  @Timeout(value = 300, unit = TimeUnit.SECONDS)
  void everyCallSucceedsWhileTheServerRestarts() throws Exception {
    List<String> command = TestEnv.serveCommand();
    ParityCase sample = TestEnv.parity().stream().filter(c -> !c.entities().isEmpty()).findFirst().orElseThrow();
    int port = TestEnv.freePort();

    AtomicInteger succeeded = new AtomicInteger();
    Queue<String> failures = new ConcurrentLinkedQueue<>();
    AtomicBoolean stop = new AtomicBoolean();
    // Full-jitter waits average half the window: 600 retries of up to 500 ms cover ~150 s, more
    // than a start-up takes (TensorFlow import plus two versions loaded: 5-15 s, a minute on a
    // busy machine).
    try (ServeProcess first = ServeProcess.start(command, port);
        NerClient client =
            NerClient.builder("127.0.0.1:" + port)
                .retries(600)
                .backoff(Duration.ofMillis(50), Duration.ofMillis(500))
                .build()) {
      // Calls back to back, the harshest case. A stopping tfner.serve answers UNAVAILABLE for a
      // moment before grpc's stop(); a call that still reaches it as stop() begins, before a
      // handler has picked it up, is dropped by gRPC core with CANCELLED, and the client retries
      // that like UNAVAILABLE (it did not cause it; the call never ran). The caller no longer
      // pauses between calls to make that instant rare.
      Thread caller = new Thread(() -> {
        while (!stop.get()) {
          try {
            List<Prediction> got = client.predict(List.of(sample.text()));
            failures.addAll(sample.mismatches(got.get(0)));
            succeeded.incrementAndGet();
          } catch (RuntimeException e) {
            failures.add(e.toString());
            return;
          }
        }
      }, "restart-caller");
      caller.start();
      ServeProcess second = null;
      try {
        awaitCalls(succeeded, 3, failures);
        long stopping = System.nanoTime();
        first.stop();
        int beforeRestart = succeeded.get();
        second = ServeProcess.start(command, port);
        awaitCalls(succeeded, beforeRestart + 3, failures);
        System.out.printf("RestartTest: %d calls before the restart, back after %.1f s%n",
            beforeRestart, (System.nanoTime() - stopping) / 1e9);
      } finally {
        // Stop calling before the second server stops: only the restart is under test.
        stop.set(true);
        caller.join(TimeUnit.SECONDS.toMillis(30));
        if (second != null) {
          second.close();
        }
      }
      assertEquals(List.of(), List.copyOf(failures));
      assertTrue(succeeded.get() >= 6, "calls succeeded: " + succeeded.get());
    }
  }

  private static void awaitCalls(AtomicInteger succeeded, int count, Queue<String> failures) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(150);
    while (succeeded.get() < count && failures.isEmpty() && System.nanoTime() < deadline) {
      Thread.sleep(20);
    }
    assertEquals(List.of(), List.copyOf(failures));
    assertTrue(succeeded.get() >= count, "only " + succeeded.get() + " calls succeeded, waited for " + count);
  }
}
