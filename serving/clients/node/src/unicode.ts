/**
 * Code points (what the server counts) versus UTF-16 code units (what
 * JavaScript strings index).
 *
 * The server's offsets count code points, as Python's `str` does. "北京😀" is
 * 3 code points but 4 UTF-16 units, since 😀 (U+1F600) is a surrogate pair,
 * so code-point offset 3 is UTF-16 index 4. Combining marks ("e\u0301") are
 * code points of their own in both units and need nothing special.
 */

const SURROGATE = /[\uD800-\uDFFF]/;

/** UTF-16 index of the first lone (unpaired) surrogate in `text`, or -1 if it is well formed. */
export function loneSurrogateIndex(text: string): number {
  if (!SURROGATE.test(text)) return -1;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1); // NaN past the end
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return i;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return i;
    }
  }
  return -1;
}

/**
 * Checks that every element is a string the server can read.
 *
 * A lone surrogate has no UTF-8 encoding: Node would send U+FFFD in its place
 * and the server's offsets would then disagree with the caller's string, so
 * it is refused here, naming the text and the position.
 */
export function checkTexts(texts: readonly unknown[]): asserts texts is readonly string[] {
  if (!Array.isArray(texts)) {
    throw new TypeError(`texts must be an array of strings, got ${typeof texts}`);
  }
  for (let i = 0; i < texts.length; i++) {
    const text: unknown = texts[i];
    if (typeof text !== "string") {
      throw new TypeError(`texts[${i}] is ${text === null ? "null" : typeof text}; pass strings`);
    }
    const at = loneSurrogateIndex(text);
    if (at >= 0) {
      const hex = text.charCodeAt(at).toString(16).toUpperCase();
      throw new RangeError(
        `texts[${i}] has a lone UTF-16 surrogate U+${hex} at index ${at}, which is not valid Unicode ` +
          "and cannot be sent as UTF-8; fix or drop that character (e.g. text.toWellFormed())",
      );
    }
  }
}

/**
 * Maps code-point offsets of one text to UTF-16 indices.
 *
 * Built once per text that has entities; texts without surrogate pairs (most
 * Chinese text: the CJK basic block is in the BMP) take the identity path.
 */
export class OffsetMap {
  /** utf16[c] = UTF-16 index of code point c; utf16[count] = text.length. Null: identity. */
  private readonly utf16: Uint32Array | null;
  /** Number of code points in the text. */
  readonly codePoints: number;

  constructor(text: string) {
    if (!SURROGATE.test(text)) {
      this.utf16 = null;
      this.codePoints = text.length;
      return;
    }
    const utf16 = new Uint32Array(text.length + 1);
    let count = 0;
    for (let i = 0; i < text.length; i++) {
      utf16[count++] = i;
      const unit = text.charCodeAt(i);
      if (unit >= 0xd800 && unit <= 0xdbff) i++; // a pair: checkTexts refused lone surrogates
    }
    utf16[count] = text.length;
    this.utf16 = utf16.subarray(0, count + 1);
    this.codePoints = count;
  }

  /** UTF-16 index of code-point offset `codePoint` (0 <= codePoint <= codePoints). */
  toUtf16(codePoint: number): number {
    if (!Number.isInteger(codePoint) || codePoint < 0 || codePoint > this.codePoints) {
      throw new RangeError(`code-point offset ${codePoint} is outside the text's 0..${this.codePoints}`);
    }
    return this.utf16 === null ? codePoint : this.utf16[codePoint]!;
  }
}
