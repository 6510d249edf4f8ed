package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.api.Test;

/** Full-jitter backoff stays in its window and spreads over it (no server needed). */
class RetryPolicyTest {
  private final RetryPolicy policy = new RetryPolicy(10, Duration.ofMillis(100), Duration.ofSeconds(2));

  @Test
  void delaysStayWithinTheDoublingCappedWindow() {
    long[] windows = {100, 200, 400, 800, 1600, 2000, 2000};
    for (int retry = 0; retry < windows.length; retry++) {
      long maxSeen = 0;
      for (int i = 0; i < 2000; i++) {
        long delay = policy.delayNanos(retry);
        assertTrue(delay >= 0 && delay <= windows[retry] * 1_000_000, "retry " + retry + ": " + delay);
        maxSeen = Math.max(maxSeen, delay);
      }
      // Jitter spreads over the whole window, not just its start.
      assertTrue(maxSeen > windows[retry] * 1_000_000 * 0.9, "retry " + retry + " max " + maxSeen);
    }
    assertTrue(policy.delayNanos(100) <= Duration.ofSeconds(2).toNanos(), "no overflow far out");
  }

  @Test
  void zeroBackoffRetriesAtOnce() {
    assertEquals(0, new RetryPolicy(3, Duration.ZERO, Duration.ZERO).delayNanos(2));
  }

  @Test
  void invalidSettingsAreRefused() {
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(-1, Duration.ZERO, Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(1, Duration.ofSeconds(2), Duration.ofSeconds(1)));
  }
}
