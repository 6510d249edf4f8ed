/**
 * The load generator behind `tfner-client --bench` (driven by benchmarks/client_load.py).
 *
 * C concurrent async callers share ONE client and make N Predict calls of one
 * text each between them, cycling through the texts; a short untimed warm-up
 * first opens the connection and wakes the server's batcher.
 */

import { performance } from "node:perf_hooks";

import type { NerClient } from "./client.js";

/** What to run. */
export interface BenchOptions {
  /** Texts to send, one per call, cycled through. */
  texts: readonly string[];
  /** Concurrent callers. */
  concurrency: number;
  /** Timed calls, all callers together. */
  requests: number;
}

/** One JSON line of results, in the shape every tfner client prints. */
export interface BenchReport {
  client: "node";
  concurrency: number;
  requests: number;
  /** Calls that failed (after the client's retries). */
  errors: number;
  /** Wall time of the timed phase. */
  seconds: number;
  /** Successful calls (one text each) per second. */
  texts_per_s: number;
  /** Median latency of the successful calls, ms; null if none succeeded. */
  p50_ms: number | null;
  /** 99th-percentile latency of the successful calls, ms (nearest rank). */
  p99_ms: number | null;
  /** This process's user + system CPU time in the timed phase, per call. */
  cpu_ms_per_request: number;
}

/** Runs the warm-up, then the timed phase, and reports. */
export async function runBench(client: NerClient, options: BenchOptions): Promise<BenchReport> {
  const { texts, concurrency, requests } = options;
  if (texts.length === 0) throw new RangeError("the bench needs at least one text");
  if (!(Number.isSafeInteger(concurrency) && concurrency >= 1)) throw new RangeError("concurrency must be >= 1");
  if (!(Number.isSafeInteger(requests) && requests >= 1)) throw new RangeError("requests must be >= 1");

  // Warm-up: two calls per caller, at least 10, untimed; failures here show up again in the timed phase.
  await drive(client, texts, concurrency, Math.max(10, 2 * concurrency), () => {}, () => {});

  const latencies: number[] = [];
  let errors = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await drive(client, texts, concurrency, requests, (ms) => latencies.push(ms), () => errors++);
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);

  latencies.sort((a, b) => a - b);
  return {
    client: "node",
    concurrency,
    requests,
    errors,
    seconds: round(seconds, 3),
    texts_per_s: round(latencies.length / seconds, 1),
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    cpu_ms_per_request: round((cpu.user + cpu.system) / 1000 / requests, 3),
  };
}

async function drive(
  client: NerClient,
  texts: readonly string[],
  concurrency: number,
  requests: number,
  onSuccess: (ms: number) => void,
  onError: () => void,
): Promise<void> {
  let next = 0;
  const caller = async () => {
    while (next < requests) {
      const text = texts[next++ % texts.length]!;
      const start = performance.now();
      try {
        await client.predict([text]);
        onSuccess(performance.now() - start);
      } catch {
        onError();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, requests) }, caller));
}

/** Nearest-rank percentile of sorted values, rounded to 0.001 ms. */
function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return round(sorted[rank - 1]!, 3);
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
