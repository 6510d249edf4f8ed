// Every parity text through the client, and 16 concurrent callers sharing one client.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { NerClient } from "../dist/index.js";
import { PARITY, SERVER } from "./env.js";
import { assertParity } from "./parity.js";

const client = new NerClient({ target: SERVER });
after(() => client.close());

test("entities equal the parity file for every text, and both offset units slice the text", async () => {
  assert.ok(PARITY.length > 0);
  const results = await client.predict(PARITY.map((r) => r.text));
  assert.equal(results.length, PARITY.length);
  PARITY.forEach((record, i) => assertParity(results[i]!, record, `parity line ${i + 1}`));
});

test("16 concurrent callers sharing one client get correct answers", async () => {
  const callers = 16;
  const checked = await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      let count = 0;
      // Caller c takes texts c, c + 16, c + 32, ...: one text per call, so calls from all callers interleave.
      for (let i = caller; i < PARITY.length; i += callers) {
        const [entities] = await client.predict([PARITY[i]!.text]);
        assertParity(entities!, PARITY[i]!, `caller ${caller}, parity line ${i + 1}`);
        count++;
      }
      return count;
    }),
  );
  assert.equal(checked.reduce((a, b) => a + b, 0), PARITY.length);
});
