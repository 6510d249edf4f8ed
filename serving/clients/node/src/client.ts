/** NerClient: texts in, entities out, over TF Serving's gRPC Predict API. */

import * as grpc from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";

import { fullJitterMs, sleep } from "./backoff.js";
import { ENTITY_OUTPUTS, entitiesFromResponse } from "./entity.js";
import type { Entity } from "./entity.js";
import { AbortError, errorFromStatus, NerError, UnavailableError } from "./errors.js";
import type { ModelSpec, PredictRequest } from "./messages.js";
import { tfServingMethods } from "./stubs.js";
import type { TfServingMethods } from "./stubs.js";
import { stringTensor } from "./tensors.js";
import { checkTexts } from "./unicode.js";

/** Client certificates and trust roots for TLS; all optional (the system's roots by default). */
export interface TlsOptions {
  /** PEM trust roots; default: Node's bundled roots. */
  rootCerts?: Buffer;
  /** PEM private key, for mutual TLS (with certChain). */
  privateKey?: Buffer;
  /** PEM certificate chain, for mutual TLS (with privateKey). */
  certChain?: Buffer;
  /** Name to check the server certificate against, when it differs from the target's host. */
  serverName?: string;
}

/** How calls spread over the addresses the target resolves to. */
export type LoadBalancing = "pick_first" | "round_robin";

/** NerClient's options; only `target` is required. */
export interface NerClientOptions {
  /** "host:port" of TF Serving or tfner.serve, or any gRPC target ("dns:///name:port", "unix:/path"). */
  target: string;
  /** `model_spec.name`. Default "ner". */
  model?: string;
  /** Pin one version (a non-negative integer). Excludes `label`. */
  version?: number;
  /** Pin a version label, e.g. "stable" or "canary". Excludes `version`. */
  label?: string;
  /** Deadline of each call attempt, in milliseconds. Default 10000. */
  timeoutMs?: number;
  /**
   * Retries after UNAVAILABLE (server starting, restarting, between pods), or after a CANCELLED this client did not
   * cause (a stopping server cancels the calls it had not started); no other status is retried. Default 3.
   */
  retries?: number;
  /** The first retry waits up to this many ms; each next one twice as long, up to maxBackoffMs. Default 100. */
  backoffMs?: number;
  /** Longest wait between retries, in ms; also caps gRPC's reconnect backoff. Default 2000. */
  maxBackoffMs?: number;
  /** Most texts per call; keep it <= the server's --max_texts_per_request and max_batch_size. Default 16. */
  chunkSize?: number;
  /** Most calls one predict() has in flight at once. Default 8. */
  maxConcurrentChunks?: number;
  /** true, or TLS settings: a TLS channel. Default: plaintext. */
  tls?: boolean | TlsOptions;
  /**
   * "round_robin" spreads calls over every address a DNS name resolves to (e.g. a headless Kubernetes
   * Service's pods) instead of pinning one connection; bare "host:port" targets get the dns:/// scheme.
   * Default "pick_first".
   */
  loadBalancing?: LoadBalancing;
  /** gRPC interceptors, e.g. to add auth metadata or trace calls; each retry is a call of its own. */
  interceptors?: grpc.Interceptor[];
}

/** Per-call options of predict() and status(). */
export interface CallOptions {
  /** Aborting it cancels the calls in flight and rejects with AbortError. */
  signal?: AbortSignal;
  /** Overrides the client's timeoutMs for these calls. */
  timeoutMs?: number;
}

/** predictDetailed()'s result. */
export interface PredictResult {
  /** One entity list per text, in input order. */
  entities: Entity[][];
  /** For each text, the model version that answered it (the response's model_spec.version), or null if not said. */
  versions: (number | null)[];
}

/** One version of the model, as GetModelStatus reports it. */
export interface ModelVersionStatus {
  version: number;
  /** "UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING" or "END". */
  state: string;
  /** The version's status code name, "OK" unless loading failed. */
  errorCode: string;
  errorMessage: string;
}

const DEFAULTS = {
  model: "ner",
  timeoutMs: 10_000,
  retries: 3,
  backoffMs: 100,
  maxBackoffMs: 2_000,
  chunkSize: 16,
  maxConcurrentChunks: 8,
} as const;

/**
 * Calls a tfner model's `serving_default` signature over gRPC.
 *
 * One client holds one channel; share it across all async callers (calls are
 * independent; nothing is mutated per call) and close() it when done.
 *
 * ```ts
 * const client = new NerClient({ target: "localhost:8500", label: "stable" });
 * const [entities] = await client.predict(["他从上海来"]);
 * client.close();
 * ```
 */
export class NerClient {
  readonly target: string;
  readonly model: string;
  readonly version: number | undefined;
  readonly label: string | undefined;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly chunkSize: number;
  readonly maxConcurrentChunks: number;

  readonly #client: grpc.Client;
  readonly #methods: TfServingMethods;
  #closed = false;

  constructor(options: NerClientOptions) {
    if (typeof options?.target !== "string" || options.target === "") {
      throw new TypeError('options.target must be "host:port"');
    }
    if (options.version !== undefined && options.label !== undefined) {
      throw new TypeError("pin either a version or a label, not both");
    }
    if (options.version !== undefined && !(Number.isSafeInteger(options.version) && options.version >= 0)) {
      throw new RangeError(`version must be a non-negative integer, got ${options.version}`);
    }
    this.target = options.target;
    this.model = options.model ?? DEFAULTS.model;
    this.version = options.version;
    this.label = options.label;
    this.timeoutMs = timeout(options.timeoutMs ?? DEFAULTS.timeoutMs);
    this.retries = nonNegativeInteger("retries", options.retries ?? DEFAULTS.retries);
    this.backoffMs = nonNegative("backoffMs", options.backoffMs ?? DEFAULTS.backoffMs);
    this.maxBackoffMs = nonNegative("maxBackoffMs", options.maxBackoffMs ?? DEFAULTS.maxBackoffMs);
    this.chunkSize = positiveInteger("chunkSize", options.chunkSize ?? DEFAULTS.chunkSize);
    this.maxConcurrentChunks = positiveInteger(
      "maxConcurrentChunks",
      options.maxConcurrentChunks ?? DEFAULTS.maxConcurrentChunks,
    );

    this.#methods = tfServingMethods();
    const loadBalancing = options.loadBalancing ?? "pick_first";
    if (loadBalancing !== "pick_first" && loadBalancing !== "round_robin") {
      throw new RangeError(`loadBalancing must be "pick_first" or "round_robin", got ${String(loadBalancing)}`);
    }
    // gRPC reconnects with its own backoff (1 s growing to 120 s by default). Capping it near
    // maxBackoffMs lets a restarted server be found again within about one retry window.
    const reconnectMs = Math.max(100, this.maxBackoffMs);
    const channelOptions: grpc.ChannelOptions = {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.initial_reconnect_backoff_ms": Math.min(1_000, reconnectMs),
      "grpc.max_reconnect_backoff_ms": reconnectMs,
    };
    let target = this.target;
    if (loadBalancing === "round_robin") {
      channelOptions["grpc.service_config"] = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });
      // A bare "host:port" would be resolved by DNS anyway; the explicit scheme says so.
      if (!/^(dns|ipv4|ipv6|unix|unix-abstract|xds):/.test(target)) target = `dns:///${target}`;
    }
    let credentials = grpc.credentials.createInsecure();
    if (options.tls) {
      const tls: TlsOptions = options.tls === true ? {} : options.tls;
      credentials = grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
      if (tls.serverName !== undefined) {
        channelOptions["grpc.ssl_target_name_override"] = tls.serverName;
        channelOptions["grpc.default_authority"] = tls.serverName;
      }
    }
    this.#client = new grpc.Client(target, credentials, {
      ...channelOptions,
      interceptors: options.interceptors ?? [],
    });
  }

  /**
   * Finds the entities of each text.
   *
   * Sends at most `chunkSize` texts per call, up to `maxConcurrentChunks` calls at once, and keeps the input order.
   *
   * @throws TypeError if an element is not a string; RangeError if one holds a lone surrogate (names its index).
   * @throws NerError (a subclass per status) if the server refused a call or it failed through every retry.
   * @throws AbortError if `options.signal` fired.
   */
  async predict(texts: readonly string[], options: CallOptions = {}): Promise<Entity[][]> {
    return (await this.predictDetailed(texts, options)).entities;
  }

  /** predict(), plus which model version answered each text. */
  async predictDetailed(texts: readonly string[], options: CallOptions = {}): Promise<PredictResult> {
    this.#checkOpen();
    checkTexts(texts);
    const timeoutMs = timeout(options.timeoutMs ?? this.timeoutMs);
    if (options.signal?.aborted) throw new AbortError(undefined, { cause: options.signal.reason });

    const entities: Entity[][] = new Array(texts.length);
    const versions: (number | null)[] = new Array(texts.length);
    const chunks = Math.ceil(texts.length / this.chunkSize);
    if (chunks === 0) return { entities, versions };

    // One signal for every call of this predict(): the caller's abort, or the first failure, cancels the rest.
    const controller = new AbortController();
    const forward = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", forward, { once: true });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks) {
        const begin = this.chunkSize * next++;
        const chunk = texts.slice(begin, begin + this.chunkSize);
        const response = await this.#call(this.#methods.predict, this.#predictRequest(chunk), timeoutMs, controller.signal);
        const rows = entitiesFromResponse(response, chunk);
        const version = response.model_spec?.version?.value ?? null;
        for (let i = 0; i < rows.length; i++) {
          entities[begin + i] = rows[i]!;
          versions[begin + i] = version;
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(chunks, this.maxConcurrentChunks) }, worker));
    } catch (error) {
      controller.abort(error);
      if (options.signal?.aborted) throw new AbortError(undefined, { cause: options.signal.reason });
      throw error;
    } finally {
      options.signal?.removeEventListener("abort", forward);
    }
    return { entities, versions };
  }

  /**
   * Every version of the model the server knows, with its state, sorted by version (GetModelStatus).
   * Lists all versions whatever the client is pinned to.
   */
  async status(options: CallOptions = {}): Promise<ModelVersionStatus[]> {
    this.#checkOpen();
    const timeoutMs = timeout(options.timeoutMs ?? this.timeoutMs);
    const signal = options.signal ?? new AbortController().signal;
    if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason });
    const response = await this.#call(this.#methods.getModelStatus, { model_spec: { name: this.model } }, timeoutMs, signal);
    return response.model_version_status
      .map((s) => ({
        version: s.version ?? 0,
        state: s.state ?? "UNKNOWN",
        errorCode: s.status?.error_code ?? "OK",
        errorMessage: s.status?.error_message ?? "",
      }))
      .sort((a, b) => a.version - b.version);
  }

  /**
   * Closes the channel; later calls throw. Calls in flight may fail with CANCELLED or UNAVAILABLE; a call waiting out
   * a retry's backoff, or with chunks still to send, rejects with a NerError of code CANCELLED when it would send next.
   */
  close(): void {
    this.#closed = true;
    this.#client.close();
  }

  /** The PredictRequest for one chunk of texts. */
  #predictRequest(texts: readonly string[]): PredictRequest {
    const model_spec: ModelSpec = { name: this.model, signature_name: "serving_default" };
    if (this.version !== undefined) model_spec.version = { value: this.version };
    else if (this.label !== undefined) model_spec.version_label = this.label;
    return { model_spec, inputs: [{ key: "text", value: stringTensor(texts) }], output_filter: [...ENTITY_OUTPUTS] };
  }

  /** One unary call, retried with full-jitter backoff while it fails with UNAVAILABLE or a server's CANCELLED. */
  async #call<Request, Response>(
    method: MethodDefinition<Request, Response>,
    request: Request,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#attempt(method, request, timeoutMs, signal);
      } catch (error) {
        if (!this.#retryable(error, signal) || attempt >= this.retries) throw error;
        await sleep(fullJitterMs(attempt, this.backoffMs, this.maxBackoffMs), signal);
      }
    }
  }

  /**
   * Only UNAVAILABLE means "nobody answered, the same call may succeed later"; any other status is the server's
   * verdict on this request, and repeating it would get the same. One exception: a server that stops cancels the
   * calls gRPC accepted but had not yet handed to a handler, so they never ran, and both methods are read-only: such
   * a CANCELLED is retried like UNAVAILABLE. grpc-js reports a call cancelled on this side as CANCELLED too, so it
   * must be one this client did not cancel: it cancels calls only through `signal` (the caller's abort, or
   * predictDetailed() giving up on the other chunks after one failed) and by close().
   */
  #retryable(error: unknown, signal: AbortSignal): boolean {
    if (error instanceof UnavailableError) return true;
    return error instanceof NerError && error.grpcCode === grpc.status.CANCELLED && !signal.aborted && !this.#closed;
  }

  #attempt<Request, Response>(
    method: MethodDefinition<Request, Response>,
    request: Request,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<Response> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new AbortError(undefined, { cause: signal.reason }));
        return;
      }
      // close() came after the call began (during a retry's backoff, or before its next chunk): grpc-js would throw
      // an untyped "Channel has been shut down" here.
      if (this.#closed) {
        const message = `NerClient for ${this.target} was closed during the call; create a new one`;
        reject(new NerError(grpc.status.CANCELLED, message));
        return;
      }
      const onAbort = () => call.cancel();
      const call = this.#client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          signal.removeEventListener("abort", onAbort);
          if (signal.aborted) reject(new AbortError(undefined, { cause: signal.reason }));
          else if (error) reject(errorFromStatus(error));
          else resolve(response!);
        },
      );
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`NerClient for ${this.target} is closed; create a new one`);
  }
}

/** The longest timeout, in ms: 1e9 s (~31 years), as the Python and Java clients and every command. Far beyond
 * it grpc-js throws "Deadline is too far in the future" from inside the call (from ~3.6e11 s). */
export const MAX_TIMEOUT_MS = 1e12;

function timeout(value: number): number {
  if (!(positive("timeoutMs", value) < MAX_TIMEOUT_MS)) {
    throw new RangeError(`timeoutMs must be below 1e12 (1e9 s), got ${value}`);
  }
  return value;
}

function positive(name: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) {
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  }
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!(typeof value === "number" && value >= 0 && Number.isFinite(value))) {
    throw new RangeError(`${name} must be a number >= 0, got ${value}`);
  }
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    throw new RangeError(`${name} must be an integer >= 0, got ${value}`);
  }
  return value;
}

function positiveInteger(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 1)) {
    throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  }
  return value;
}
