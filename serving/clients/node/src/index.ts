/**
 * tfner-client: a gRPC client for tfner's Chinese NER models served by
 * TensorFlow Serving or `python -m tfner.serve`.
 *
 * ```ts
 * import { NerClient } from "tfner-client";
 *
 * const client = new NerClient({ target: "localhost:8500" });
 * for (const e of (await client.predict(["他从上海来"]))[0]!) console.log(e.label, e.text, e.utf16Start, e.utf16End);
 * client.close();
 * ```
 */

export { MAX_TIMEOUT_MS, NerClient } from "./client.js";
export type {
  CallOptions,
  LoadBalancing,
  ModelVersionStatus,
  NerClientOptions,
  PredictResult,
  TlsOptions,
} from "./client.js";
export type { Entity } from "./entity.js";
export {
  AbortError,
  DeadlineExceededError,
  InvalidArgumentError,
  NerError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from "./errors.js";
export { runBench } from "./bench.js";
export type { BenchOptions, BenchReport } from "./bench.js";
