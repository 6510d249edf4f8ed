package dev.tfner.client;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Retries after {@code UNAVAILABLE} (or a server's {@code CANCELLED}), spaced by exponential
 * backoff with "full jitter": retry n (from 0) waits a uniformly random time in [0,
 * min(maxBackoff, baseBackoff * 2^n)], so that many clients cut off by one restarting server do not
 * all come back at the same instant.
 *
 * @param retries how many times a call is sent again after the first attempt
 * @param baseBackoff the first retry's longest wait
 * @param maxBackoff the cap on any retry's wait
 */
record RetryPolicy(int retries, Duration baseBackoff, Duration maxBackoff) {

  RetryPolicy {
    if (retries < 0) {
      throw new IllegalArgumentException("retries must be >= 0, got " + retries);
    }
    if (baseBackoff.isNegative() || maxBackoff.compareTo(baseBackoff) < 0) {
      throw new IllegalArgumentException(
          "need 0 <= base backoff <= max backoff, got " + baseBackoff + " and " + maxBackoff);
    }
  }

  /** A random wait before retry {@code retry} (0 for the first), in nanoseconds. */
  long delayNanos(int retry) {
    long max = maxBackoff.toNanos();
    // Past 2^62 the doubling overflows; by then the cap has long applied.
    long window = retry >= 62 ? max : Math.min(max, saturatedShift(baseBackoff.toNanos(), retry));
    return window == 0 ? 0 : ThreadLocalRandom.current().nextLong(window + 1);
  }

  private static long saturatedShift(long value, int bits) {
    return value > (Long.MAX_VALUE >> bits) ? Long.MAX_VALUE : value << bits;
  }
}
