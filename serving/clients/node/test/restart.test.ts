// A server restarted mid-run: a caller that keeps calling, with retries and backoff that cover the
// restart, sees every call succeed.

import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { after, test } from "node:test";

import { NerClient } from "../dist/index.js";
import { PARITY } from "./env.js";
import { assertParity } from "./parity.js";
import { freePort, ServeProcess, stopAll } from "./server.js";

after(stopAll);

test("every call succeeds across a server restart (SIGTERM, then a new server on the same port)", { timeout: 600_000 }, async () => {
  const port = await freePort();
  let server = await ServeProcess.start(port);
  // The server is down from SIGTERM until the new one is ready: TensorFlow's import and the model's
  // load and warm-up take 5-15 s here, minutes on a loaded machine. Up to 600 retries of at most 1 s
  // (0.5 s on average, full jitter) cover about 5 minutes; the test moves on as soon as calls succeed.
  const client = new NerClient({ target: `127.0.0.1:${port}`, retries: 600, backoffMs: 50, maxBackoffMs: 1_000 });
  const record = PARITY.find((r) => r.entities.length > 0) ?? PARITY[0]!;
  let done = 0;
  let failure: unknown;
  let keepCalling = true;
  const caller = (async () => {
    try {
      while (keepCalling) {
        const [entities] = await client.predict([record.text]);
        assertParity(entities!, record, `call ${done}`);
        done++;
      }
    } catch (error) {
      failure = error;
    }
  })();
  const until = async (count: number) => {
    while (done < count && failure === undefined) await delay(20);
    if (failure !== undefined) throw failure;
  };
  try {
    await until(5);
    await server.stop();
    const beforeRestart = done;
    server = await ServeProcess.start(port);
    await until(beforeRestart + 5);
  } finally {
    keepCalling = false;
    await caller;
    client.close();
  }
  assert.equal(failure, undefined);
  assert.ok(done >= 10);
});
