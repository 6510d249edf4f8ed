/**
 * TensorProto <-> JavaScript values, for the dtypes a tfner signature uses.
 *
 * Numbers arrive either packed in `tensor_content` (little-endian; what TF
 * Serving and tfner.serve write) or in the typed `int_val` / `float_val`
 * fields (what other writers may use). In the typed fields TensorFlow allows
 * fewer values than elements, the last one repeating (tensor_util's rule), so
 * that is honoured too. Strings always come in `string_val`.
 */

import type { DataType, TensorProto } from "./messages.js";

/** A DT_STRING vector of the texts' UTF-8 bytes: the signature's `text` input. */
export function stringTensor(texts: readonly string[]): TensorProto {
  return {
    dtype: "DT_STRING",
    tensor_shape: { dim: [{ size: texts.length }] },
    string_val: texts.map((text) => Buffer.from(text, "utf8")),
    int_val: [],
    float_val: [],
  };
}

/** The tensor's dimensions; an error naming `name` if the shape is missing or not `rank`-dimensional. */
export function shapeOf(tensor: TensorProto, name: string, rank: number): number[] {
  const dims = (tensor.tensor_shape?.dim ?? []).map((d) => Number(d.size ?? 0));
  if (dims.length !== rank) {
    throw new TypeError(`output ${name} has shape [${dims.join(", ")}]; expected ${rank} dimension(s)`);
  }
  return dims;
}

/** The first `count` int32 values, in row-major order. */
export function int32Values(tensor: TensorProto, name: string, count: number): Int32Array {
  checkDtype(tensor, name, "DT_INT32");
  const out = new Int32Array(count);
  const packed = tensor.tensor_content;
  if (packed !== undefined && packed.length > 0) {
    checkPackedLength(packed, name, count);
    for (let i = 0; i < count; i++) out[i] = packed.readInt32LE(4 * i);
  } else {
    fillFromTyped(out, tensor.int_val, name);
  }
  return out;
}

/** The first `count` float32 values, in row-major order. */
export function float32Values(tensor: TensorProto, name: string, count: number): Float32Array {
  checkDtype(tensor, name, "DT_FLOAT");
  const out = new Float32Array(count);
  const packed = tensor.tensor_content;
  if (packed !== undefined && packed.length > 0) {
    checkPackedLength(packed, name, count);
    for (let i = 0; i < count; i++) out[i] = packed.readFloatLE(4 * i);
  } else {
    fillFromTyped(out, tensor.float_val, name);
  }
  return out;
}

/** The string at flat index `index`, decoded from UTF-8. */
export function stringValue(tensor: TensorProto, name: string, index: number): string {
  checkDtype(tensor, name, "DT_STRING");
  const values = tensor.string_val;
  if (values.length === 0) throw new TypeError(`output ${name} has no string_val values`);
  // TensorFlow's repeat-the-last-value rule applies to strings too.
  const bytes = values[Math.min(index, values.length - 1)]!;
  return bytes.toString("utf8");
}

function checkDtype(tensor: TensorProto, name: string, expected: DataType): void {
  if (tensor.dtype !== expected) {
    throw new TypeError(`output ${name} is ${tensor.dtype ?? "DT_INVALID"}; expected ${expected}`);
  }
}

function checkPackedLength(packed: Buffer, name: string, count: number): void {
  if (packed.length < 4 * count) {
    throw new TypeError(`output ${name} has ${packed.length} bytes of tensor_content for ${count} 4-byte values`);
  }
}

function fillFromTyped(out: Int32Array | Float32Array, values: readonly number[], name: string): void {
  if (out.length === 0) return;
  if (values.length === 0) throw new TypeError(`output ${name} has neither tensor_content nor typed values`);
  for (let i = 0; i < out.length; i++) out[i] = values[Math.min(i, values.length - 1)]!;
}
