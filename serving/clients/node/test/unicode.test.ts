// Code points vs UTF-16 units, and lone surrogates (no server needed).

import assert from "node:assert/strict";
import { test } from "node:test";

import { checkTexts, loneSurrogateIndex, OffsetMap } from "../dist/unicode.js";

test("OffsetMap turns code-point offsets into UTF-16 indices", () => {
  const cases: [string, number[]][] = [
    ["北京欢迎你", [0, 1, 2, 3, 4, 5]],
    ["", [0]],
    ["我😀北京", [0, 1, 3, 4, 5]], // 😀 is two units
    ["🇨🇳中国", [0, 2, 4, 5, 6]], // a flag is two code points of two units each
    ["e\u0301cole", [0, 1, 2, 3, 4, 5, 6]], // a combining mark is a code point of its own
    ["𠀀北", [0, 2, 3]], // CJK Extension B is astral too
  ];
  for (const [text, expected] of cases) {
    const map = new OffsetMap(text);
    assert.equal(map.codePoints, Array.from(text).length, text);
    assert.deepEqual(expected.map((_, c) => map.toUtf16(c)), expected, text);
    // Every code-point slice equals the UTF-16 slice.
    const points = Array.from(text);
    for (let s = 0; s <= points.length; s++) {
      for (let e = s; e <= points.length; e++) {
        assert.equal(text.slice(map.toUtf16(s), map.toUtf16(e)), points.slice(s, e).join(""));
      }
    }
  }
  assert.throws(() => new OffsetMap("北京").toUtf16(3), RangeError);
  assert.throws(() => new OffsetMap("😀").toUtf16(-1), RangeError);
});

test("loneSurrogateIndex finds unpaired halves only", () => {
  const cases: [string, number][] = [
    ["北京", -1],
    ["😀", -1],
    ["a\uD83D", 1],
    ["\uDE00a", 0],
    ["😀\uDE00", 2],
    ["\uD83D\uD83D\uDE00", 0],
  ];
  for (const [text, index] of cases) assert.equal(loneSurrogateIndex(text), index, JSON.stringify(text));
});

test("checkTexts names the text and the position", () => {
  assert.doesNotThrow(() => checkTexts(["北京", "😀", ""]));
  assert.throws(() => checkTexts(["ok", "x\uDC00"]), /^RangeError: texts\[1\] has a lone UTF-16 surrogate U\+DC00 at index 1/);
  assert.throws(() => checkTexts(["ok", null]), /^TypeError: texts\[1\] is null/);
  assert.throws(() => checkTexts("北京" as unknown as string[]), TypeError);
});
