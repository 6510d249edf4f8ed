/** Waiting between retries. */

import { setTimeout as delay } from "node:timers/promises";

import { AbortError } from "./errors.js";

/**
 * "Full jitter" backoff: a uniform wait in [0, min(maxMs, baseMs * 2^attempt)).
 *
 * Spreading each retry over the whole window keeps many clients that failed
 * together (a server restart) from retrying together.
 */
export function fullJitterMs(attempt: number, baseMs: number, maxMs: number): number {
  const window = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.random() * window;
}

/** Resolves after `ms`, or rejects with AbortError as soon as `signal` fires. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (error) {
    if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason });
    throw error;
  }
}
