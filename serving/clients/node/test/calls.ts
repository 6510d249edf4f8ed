/** A gRPC interceptor that counts the calls a client makes: how chunking and retries are observed. */

import * as grpc from "@grpc/grpc-js";

export class CallCounter {
  /** Method path of every call started, in order (each retry is a call). */
  readonly started: string[] = [];
  /** Most calls in flight at once. */
  maxInFlight = 0;
  private inFlight = 0;

  readonly interceptor: grpc.Interceptor = (options, nextCall) => {
    this.started.push(options.method_definition.path);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    return new grpc.InterceptingCall(nextCall(options), {
      start: (metadata, _listener, next) => {
        // A partial listener: grpc-js passes every other event through unchanged.
        next(metadata, {
          onReceiveStatus: (status, nextStatus) => {
            this.inFlight--;
            nextStatus(status);
          },
        });
      },
    });
  };

  /** Calls of one method, e.g. "Predict". */
  count(method: string): number {
    return this.started.filter((path) => path.endsWith(`/${method}`)).length;
  }
}
