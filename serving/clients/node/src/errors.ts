/**
 * One error class per gRPC status class a caller reacts to differently.
 *
 *   NotFoundError            unknown model, version or label: fix the options
 *   InvalidArgumentError     the request breaks a server limit (e.g. too many texts): lower chunkSize
 *   ResourceExhaustedError   too many characters in one call: send less at once
 *   UnavailableError         server down, restarting or unreachable, or its batch queue full, after every retry
 *   DeadlineExceededError    the call took longer than timeoutMs
 *   NerError                 any other status (the base class of all of the above)
 *   AbortError               the caller's AbortSignal fired (not a NerError: nothing failed)
 */

import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";

/** A call refused by the server or failed by gRPC; `code` names the gRPC status, `details` is the server's message. */
export class NerError extends Error {
  /** The gRPC status name, e.g. "NOT_FOUND" (Node's convention: a string `code`). */
  readonly code: string;
  /** The numeric gRPC status, e.g. 5. */
  readonly grpcCode: status;
  /** The server's (or gRPC's) message, as sent. */
  readonly details: string;
  /** Trailing metadata of the failed call, if any. */
  readonly metadata: Metadata | undefined;

  constructor(grpcCode: status, details: string, options?: { cause?: unknown; metadata?: Metadata }) {
    const code = status[grpcCode] ?? `STATUS_${grpcCode}`;
    super(`${code}: ${details}`, { cause: options?.cause });
    this.name = new.target.name;
    this.code = code;
    this.grpcCode = grpcCode;
    this.details = details;
    this.metadata = options?.metadata;
  }
}

/** NOT_FOUND: no such model, version or label on the server. */
export class NotFoundError extends NerError {}

/** INVALID_ARGUMENT: the request breaks a server limit or the signature's contract. */
export class InvalidArgumentError extends NerError {}

/** UNAVAILABLE: the server could not be reached, is not serving, or its batch queue is full, through every retry. */
export class UnavailableError extends NerError {}

/** DEADLINE_EXCEEDED: the call did not finish within its deadline. */
export class DeadlineExceededError extends NerError {}

/** RESOURCE_EXHAUSTED: too many characters in one call (the server's --max_chars_per_request). */
export class ResourceExhaustedError extends NerError {}

/** The caller's AbortSignal fired; `cause` is the signal's reason. Same name and code as Node's own. */
export class AbortError extends Error {
  readonly code = "ABORT_ERR";

  constructor(message = "the operation was aborted", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AbortError";
  }
}

const CLASSES: Partial<Record<status, typeof NerError>> = {
  [status.NOT_FOUND]: NotFoundError,
  [status.INVALID_ARGUMENT]: InvalidArgumentError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
};

/** The typed error for a failed gRPC call. */
export function errorFromStatus(error: ServiceError): NerError {
  const ErrorClass = CLASSES[error.code] ?? NerError;
  return new ErrorClass(error.code, error.details, { cause: error, metadata: error.metadata });
}
