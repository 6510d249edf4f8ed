// Which CANCELLED is retried, against a stub PredictionService in this process (real gRPC over loopback, no
// TFNER_SERVER): one the server sent (a stopping server cancels the calls it had not started) is retried like
// UNAVAILABLE; one this client caused (the caller's abort, the other chunks of a failed predict(), close()) is not.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition } from "@grpc/proto-loader";

import { AbortError, NerClient, NerError, NotFoundError } from "../dist/index.js";
import type { NerClientOptions } from "../dist/index.js";
import type { PredictRequest, PredictResponse } from "../dist/messages.js";
import { loadPackageDefinition } from "../dist/stubs.js";

type PredictCall = grpc.ServerUnaryCall<PredictRequest, PredictResponse>;
type PredictCallback = grpc.sendUnaryData<PredictResponse>;

/** One Predict call the stub received; `answer` finishes it if the handler has not. */
interface Received {
  call: PredictCall;
  answer: PredictCallback;
}

/** tensorflow.serving.PredictionService on 127.0.0.1, its Predict answered by `handler` (which may hold the call). */
class StubServer {
  private constructor(
    private readonly server: grpc.Server,
    readonly target: string,
    /** Every Predict call received, in order. */
    readonly received: readonly Received[],
  ) {}

  static async start(handler: (received: Received, index: number) => void): Promise<StubServer> {
    const server = new grpc.Server();
    const service = loadPackageDefinition()["tensorflow.serving.PredictionService"] as ServiceDefinition;
    const received: Received[] = [];
    server.addService(service as unknown as grpc.ServiceDefinition, {
      Predict: (call: PredictCall, answer: PredictCallback) => {
        received.push({ call, answer });
        handler(received.at(-1)!, received.length - 1);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(port),
      ),
    );
    const stub = new StubServer(server, `127.0.0.1:${port}`, received);
    stubs.push(stub);
    return stub;
  }

  /** Resolves once `count` calls have arrived and every one that was cancelled has been seen cancelled here. */
  async until(count: number, cancelled = 0): Promise<void> {
    while (this.received.length < count || this.received.filter((r) => r.call.cancelled).length < cancelled) {
      await delay(5);
    }
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

const stubs: StubServer[] = [];
const clients: NerClient[] = [];
after(() => {
  clients.forEach((c) => c.close());
  stubs.forEach((s) => s.stop());
});

/** A client of `stub` whose retries wait at most 1 ms. */
function client(stub: StubServer, options: Partial<NerClientOptions> = {}): NerClient {
  const made = new NerClient({ target: stub.target, retries: 3, backoffMs: 1, maxBackoffMs: 1, ...options });
  clients.push(made);
  return made;
}

/** Long enough for a retry of 1 ms backoff to reach the stub, were there one. */
const RETRY_WOULD_HAVE_ARRIVED_MS = 100;

test("a CANCELLED the server sent is retried, with the same request", async () => {
  const stub = await StubServer.start(({ answer }, index) =>
    answer(
      index === 0
        ? { code: grpc.status.CANCELLED, details: "server stopping" }
        : { code: grpc.status.NOT_FOUND, details: "second call" },
    ),
  );
  const error = await client(stub)
    .predict(["他从上海来"])
    .catch((e: unknown) => e);
  assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
  assert.match(error.details, /second call/);
  assert.equal(stub.received.length, 2);
  assert.deepEqual(stub.received[1]!.call.request, stub.received[0]!.call.request);
});

test("a call the caller's abort cancelled is not retried", async () => {
  const stub = await StubServer.start(() => {}); // Holds every call.
  const controller = new AbortController();
  const pending = client(stub).predict(["他从上海来"], { signal: controller.signal });
  await stub.until(1);
  controller.abort(new Error("caller gave up"));
  await assert.rejects(pending, (e: unknown) => e instanceof AbortError && (e.cause as Error).message === "caller gave up");
  await stub.until(1, 1);
  await delay(RETRY_WOULD_HAVE_ARRIVED_MS);
  assert.equal(stub.received.length, 1);
});

test("the other chunks of a failed predict(), which the client cancels, are not retried", async () => {
  // Holds both chunks until both have arrived, then refuses the first; the client cancels the second.
  const stub = await StubServer.start((_, index) => {
    if (index === 1) stub.received[0]!.answer({ code: grpc.status.NOT_FOUND, details: "refused" });
  });
  const error = await client(stub, { chunkSize: 1, maxConcurrentChunks: 2 })
    .predict(["北京", "上海"])
    .catch((e: unknown) => e);
  assert.ok(error instanceof NotFoundError, `expected NotFoundError, got ${String(error)}`);
  await stub.until(2, 1);
  await delay(RETRY_WOULD_HAVE_ARRIVED_MS);
  assert.equal(stub.received.length, 2);
});

test("a CANCELLED that arrives after close() is not retried", async () => {
  const stub = await StubServer.start(() => {}); // Holds every call.
  const c = client(stub);
  const pending = c.predict(["他从上海来"]).catch((e: unknown) => e);
  await stub.until(1);
  c.close();
  stub.received[0]!.answer({ code: grpc.status.CANCELLED, details: "server stopping" });
  const error = await pending;
  assert.ok(error instanceof NerError, `expected NerError, got ${String(error)}`);
  assert.equal(error.code, "CANCELLED");
  assert.equal(stub.received.length, 1);
});

test("close() while a call waits out a retry's backoff rejects with a NerError saying so", async (t) => {
  t.mock.method(Math, "random", () => 0.5); // Each backoff waits half its window: 250 ms, time enough to close().
  const stub = await StubServer.start(({ answer }) => answer({ code: grpc.status.UNAVAILABLE, details: "starting" }));
  const c = client(stub, { backoffMs: 500, maxBackoffMs: 500 });
  const pending = c.predict(["他从上海来"]).catch((e: unknown) => e);
  await stub.until(1);
  c.close();
  const error = await pending;
  assert.ok(error instanceof NerError, `expected NerError, got ${String(error)}`);
  assert.equal(error.code, "CANCELLED");
  assert.match(error.details, /closed/);
  assert.equal(stub.received.length, 1);
});
