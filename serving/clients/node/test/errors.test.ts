// Each error class, from a real server response (or a real refused connection).

import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  DeadlineExceededError,
  InvalidArgumentError,
  NerClient,
  NerError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from "../dist/index.js";
import type { NerClientOptions } from "../dist/index.js";
import { CallCounter } from "./calls.js";
import { LONGEST, MAX_CHARS, MAX_TEXTS, SERVER } from "./env.js";
import { freePort } from "./server.js";

const clients: NerClient[] = [];
function client(options: Partial<NerClientOptions> = {}): NerClient {
  const made = new NerClient({ target: SERVER, ...options });
  clients.push(made);
  return made;
}
after(() => clients.forEach((c) => c.close()));

/** The rejection of `promise`, checked to be an instance of `ErrorClass` with gRPC status `code`. */
async function rejection<T extends NerError>(
  promise: Promise<unknown>,
  ErrorClass: abstract new (...args: never[]) => T,
  code: string,
): Promise<T> {
  const error = await promise.then(
    () => assert.fail(`resolved; expected ${ErrorClass.name}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${String(error)}`);
  assert.ok(error instanceof NerError);
  assert.equal(error.code, code);
  assert.equal(error.name, ErrorClass.name);
  assert.equal(error.message, `${code}: ${error.details}`);
  return error;
}

test("an unknown model is NotFoundError carrying the server's message", async () => {
  const error = await rejection(client({ model: "no_such_model" }).predict(["北京"]), NotFoundError, "NOT_FOUND");
  assert.match(error.details, /no_such_model/);
});

test("an unknown version is NotFoundError", async () => {
  await rejection(client({ version: 99 }).predict(["北京"]), NotFoundError, "NOT_FOUND");
});

test(`more than ${MAX_TEXTS} texts in one call is InvalidArgumentError`, async () => {
  const texts = Array(MAX_TEXTS + 1).fill("北京");
  const error = await rejection(client({ chunkSize: MAX_TEXTS + 1 }).predict(texts), InvalidArgumentError, "INVALID_ARGUMENT");
  assert.ok(error.details.length > 0);
});

test(`more than ${MAX_CHARS} characters in one call is ResourceExhaustedError, not retried`, async () => {
  const calls = new CallCounter();
  const perText = Math.ceil((MAX_CHARS + 1) / 8);
  const texts = Array(8).fill("北京欢迎你。".repeat(Math.ceil(perText / 6)).slice(0, perText));
  await rejection(
    client({ chunkSize: 8, interceptors: [calls.interceptor] }).predict(texts),
    ResourceExhaustedError,
    "RESOURCE_EXHAUSTED",
  );
  assert.equal(calls.count("Predict"), 1);
});

test("a closed port is UnavailableError after every retry", async () => {
  const calls = new CallCounter();
  const port = await freePort();
  const c = client({ target: `127.0.0.1:${port}`, retries: 2, backoffMs: 10, maxBackoffMs: 20, interceptors: [calls.interceptor] });
  await rejection(c.predict(["北京"]), UnavailableError, "UNAVAILABLE");
  assert.equal(calls.count("Predict"), 3, "1 call + 2 retries");
});

test("a deadline that expires is DeadlineExceededError, not retried", async () => {
  const calls = new CallCounter();
  const c = client({ interceptors: [calls.interceptor] });
  await c.predict(["北京"]); // connect first, so the 1 ms deadline runs out on the call, not on connecting
  await rejection(c.predict([LONGEST.text], { timeoutMs: 1 }), DeadlineExceededError, "DEADLINE_EXCEEDED");
  assert.equal(calls.count("Predict"), 2);
});
