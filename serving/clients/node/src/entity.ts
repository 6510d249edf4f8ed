/** Entities out of a PredictResponse, with offsets in both units. */

import type { PredictResponse, TensorProto } from "./messages.js";
import { float32Values, int32Values, shapeOf, stringValue } from "./tensors.js";
import { OffsetMap } from "./unicode.js";

/** The outputs the client reads; `tags` stays on the server (output_filter). */
export const ENTITY_OUTPUTS = [
  "num_entities",
  "entity_labels",
  "entity_starts",
  "entity_ends",
  "entity_texts",
  "entity_scores",
] as const;

/**
 * One entity span of one text.
 *
 * `start`/`end` count Unicode code points, as the server (and Python) does;
 * `utf16Start`/`utf16End` index the JavaScript string:
 * `text.slice(e.utf16Start, e.utf16End) === e.text`.
 */
export interface Entity {
  /** Entity type, e.g. "LOC". */
  readonly label: string;
  /** The span's characters. */
  readonly text: string;
  /** The model's confidence in [0, 1]: the lowest per-character tag probability. */
  readonly score: number;
  /** Code-point offset of the first character. */
  readonly start: number;
  /** Code-point offset one past the last character. */
  readonly end: number;
  /** UTF-16 index of the first character, for `String.prototype.slice`. */
  readonly utf16Start: number;
  /** UTF-16 index one past the last character. */
  readonly utf16End: number;
}

/**
 * One entity list per text, in order, reading only row i's first `num_entities[i]` entries (the rest is padding).
 *
 * Throws TypeError when the response is not a tfner signature's (missing outputs, wrong dtypes or shapes, or
 * offsets outside the text).
 */
export function entitiesFromResponse(response: PredictResponse, texts: readonly string[]): Entity[][] {
  const outputs: Partial<Record<string, TensorProto>> = {};
  for (const { key, value } of response.outputs) if (key !== undefined && value !== undefined) outputs[key] = value;
  const missing = ENTITY_OUTPUTS.filter((name) => outputs[name] === undefined);
  if (missing.length > 0) {
    throw new TypeError(`the response lacks outputs ${missing.join(", ")}; is this a tfner model?`);
  }
  const numTensor = outputs.num_entities!;
  const [rows] = shapeOf(numTensor, "num_entities", 1);
  if (rows !== texts.length) {
    throw new TypeError(`the response has ${rows} rows for ${texts.length} texts`);
  }
  const counts = int32Values(numTensor, "num_entities", rows);
  // All [n, m] outputs share m, the widest row of the batch the server ran.
  const [, width] = shapeOf(outputs.entity_starts!, "entity_starts", 2);
  const size = rows * width!;
  for (const name of ["entity_labels", "entity_ends", "entity_texts", "entity_scores"] as const) {
    const dims = shapeOf(outputs[name]!, name, 2);
    if (dims[0] !== rows || dims[1] !== width) {
      throw new TypeError(`output ${name} has shape [${dims.join(", ")}]; entity_starts has [${rows}, ${width}]`);
    }
  }
  const starts = int32Values(outputs.entity_starts!, "entity_starts", size);
  const ends = int32Values(outputs.entity_ends!, "entity_ends", size);
  const scores = float32Values(outputs.entity_scores!, "entity_scores", size);

  return texts.map((text, row) => {
    const count = counts[row]!;
    if (count < 0 || count > width!) {
      throw new TypeError(`num_entities[${row}] = ${count} is outside 0..${width}`);
    }
    if (count === 0) return [];
    const offsets = new OffsetMap(text);
    const entities: Entity[] = [];
    for (let j = 0; j < count; j++) {
      const flat = row * width! + j;
      const start = starts[flat]!;
      const end = ends[flat]!;
      if (!(0 <= start && start <= end && end <= offsets.codePoints)) {
        throw new TypeError(
          `entity ${j} of text ${row} has offsets [${start}, ${end}), not within its ${offsets.codePoints} characters`,
        );
      }
      entities.push({
        label: stringValue(outputs.entity_labels!, "entity_labels", flat),
        text: stringValue(outputs.entity_texts!, "entity_texts", flat),
        score: scores[flat]!,
        start,
        end,
        utf16Start: offsets.toUtf16(start),
        utf16End: offsets.toUtf16(end),
      });
    }
    return entities;
  });
}
