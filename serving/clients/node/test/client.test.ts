// Chunking, pinning, status, load balancing, TLS, cancellation and client-side checks, against the real server.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { AbortError, MAX_TIMEOUT_MS, NerClient, UnavailableError } from "../dist/index.js";
import type { NerClientOptions } from "../dist/index.js";
import { CallCounter } from "./calls.js";
import { LONGEST, PARITY, SERVER } from "./env.js";
import { assertParity } from "./parity.js";

const clients: NerClient[] = [];
function client(options: Partial<NerClientOptions> = {}): NerClient {
  const made = new NerClient({ target: SERVER, ...options });
  clients.push(made);
  return made;
}
after(() => clients.forEach((c) => c.close()));

test("100 texts go out in chunks of chunkSize, concurrently, and come back in input order", async () => {
  const calls = new CallCounter();
  const records = Array.from({ length: 100 }, (_, i) => PARITY[i % PARITY.length]!);
  const results = await client({ chunkSize: 16, interceptors: [calls.interceptor] }).predict(records.map((r) => r.text));
  assert.equal(calls.count("Predict"), Math.ceil(100 / 16));
  assert.ok(calls.maxInFlight > 1, `chunks ran one at a time (max in flight ${calls.maxInFlight})`);
  records.forEach((record, i) => assertParity(results[i]!, record, `text ${i}`));
});

test("no texts, no call", async () => {
  const calls = new CallCounter();
  assert.deepEqual(await client({ interceptors: [calls.interceptor] }).predict([]), []);
  assert.equal(calls.started.length, 0);
});

for (const [pin, version] of [
  [{ version: 1 }, 1],
  [{ version: 2 }, 2],
  [{ label: "stable" }, 1],
  [{ label: "canary" }, 2],
  [{}, 2],
] as const) {
  test(`pinning ${JSON.stringify(pin)} is answered by version ${version}`, async () => {
    const texts = PARITY.slice(0, 20).map((r) => r.text);
    const { entities, versions } = await client({ ...pin, chunkSize: 8 }).predictDetailed(texts);
    assert.deepEqual(versions, texts.map(() => version));
    assert.equal(entities.length, texts.length);
  });
}

test("a version and a label together are refused", () => {
  assert.throws(() => new NerClient({ target: SERVER, version: 1, label: "stable" }), TypeError);
});

test("status() lists versions 1 and 2 as AVAILABLE", async () => {
  const versions = await client().status();
  assert.deepEqual(
    versions.map(({ version, state }) => ({ version, state })),
    [
      { version: 1, state: "AVAILABLE" },
      { version: 2, state: "AVAILABLE" },
    ],
  );
  assert.ok(versions.every((v) => v.errorCode === "OK"));
});

test("round_robin load balancing over the DNS addresses of the target answers correctly", async () => {
  const records = PARITY.slice(0, 32);
  const results = await client({ loadBalancing: "round_robin", chunkSize: 4 }).predict(records.map((r) => r.text));
  records.forEach((record, i) => assertParity(results[i]!, record, `text ${i}`));
});

test("a TLS client fails cleanly against the plaintext server with UNAVAILABLE", async () => {
  const error = await client({ tls: { serverName: "localhost" }, retries: 0, timeoutMs: 5_000 })
    .predict(["北京"])
    .catch((e: unknown) => e);
  assert.ok(error instanceof UnavailableError, `got ${String(error)}`);
  assert.equal(error.code, "UNAVAILABLE");
});

test("a timeout that is not a finite number of ms below 1e12 is refused, in the options and per call", async () => {
  // 1e13 ms passed the check and failed inside grpc-js ("Deadline is too far in the future") at the first call.
  for (const timeoutMs of [Infinity, NaN, 0, -1, MAX_TIMEOUT_MS, 1e13]) {
    assert.throws(() => client({ timeoutMs }), /^RangeError: timeoutMs must be/, `timeoutMs ${timeoutMs}`);
  }
  await assert.rejects(client().predict(["北京"], { timeoutMs: 1e13 }), /^RangeError: timeoutMs must be below 1e12/);
});

test("a lone surrogate is refused client-side, naming the text and position, before any call", async () => {
  const calls = new CallCounter();
  const c = client({ interceptors: [calls.interceptor] });
  for (const [texts, pattern] of [
    [["北京", "ab\uD83D"], /texts\[1\] .*U\+D83D at index 2/],
    [["\uDE00北京"], /texts\[0\] .*U\+DE00 at index 0/],
    [["ok", "ok", "a\uDE00\uD83Db"], /texts\[2\] .*U\+DE00 at index 1/],
  ] as const) {
    await assert.rejects(c.predict(texts), (e: unknown) => e instanceof RangeError && pattern.test(e.message));
  }
  await assert.rejects(c.predict(["ok", 7 as unknown as string]), /texts\[1\] is number/);
  assert.equal(calls.started.length, 0);
});

test("aborting cancels the calls in flight and rejects with AbortError", async () => {
  const calls = new CallCounter();
  const c = client({ chunkSize: 1, maxConcurrentChunks: 4, interceptors: [calls.interceptor] });
  const controller = new AbortController();
  const pending = c.predict(Array(64).fill(LONGEST.text), { signal: controller.signal });
  setTimeout(() => controller.abort(new Error("caller gave up")), 20);
  await assert.rejects(pending, (e: unknown) => e instanceof AbortError && (e.cause as Error).message === "caller gave up");
  assert.ok(calls.started.length < 64, `all ${calls.started.length} chunks were sent despite the abort`);
});

test("an already aborted signal rejects before any call", async () => {
  const calls = new CallCounter();
  const signal = AbortSignal.abort();
  await assert.rejects(client({ interceptors: [calls.interceptor] }).predict(["北京"], { signal }), AbortError);
  assert.equal(calls.started.length, 0);
});

test("a closed client refuses calls", async () => {
  const c = new NerClient({ target: SERVER });
  c.close();
  await assert.rejects(c.predict(["北京"]), /closed/);
});
