/** Comparing a client's entities with an expected (parity) answer. */

import assert from "node:assert/strict";

import type { Entity } from "../dist/index.js";
import type { ParityRecord } from "./env.js";

const SCORE_TOLERANCE = 1e-4;

/** Labels, code-point offsets and texts exactly, scores within 1e-4, and both offset units slicing `text`. */
export function assertParity(actual: Entity[], expected: ParityRecord, where: string): void {
  const { text } = expected;
  const context = `${where}: ${JSON.stringify(text.length > 60 ? text.slice(0, 60) + "…" : text)}`;
  assert.deepEqual(
    actual.map(({ label, start, end, text }) => ({ label, start, end, text })),
    expected.entities.map(({ label, start, end, text }) => ({ label, start, end, text })),
    context,
  );
  const codePoints = Array.from(text);
  actual.forEach((e, i) => {
    const score = expected.entities[i]!.score;
    assert.ok(Math.abs(e.score - score) <= SCORE_TOLERANCE, `${context}: entity ${i} score ${e.score} vs ${score}`);
    assert.equal(text.slice(e.utf16Start, e.utf16End), e.text, `${context}: UTF-16 slice of entity ${i}`);
    assert.equal(codePoints.slice(e.start, e.end).join(""), e.text, `${context}: code-point slice of entity ${i}`);
  });
}
