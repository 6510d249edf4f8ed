// Reading numbers from tensor_content and from the typed *_val fields (no server needed: TF Serving and
// tfner.serve both write tensor_content, so the typed path is checked here on hand-built TensorProtos).

import assert from "node:assert/strict";
import { test } from "node:test";

import { entitiesFromResponse } from "../dist/entity.js";
import type { PredictResponse, TensorProto } from "../dist/messages.js";
import { float32Values, int32Values, stringTensor } from "../dist/tensors.js";

function tensor(fields: Partial<TensorProto> & Pick<TensorProto, "dtype">, dims: number[]): TensorProto {
  return { string_val: [], int_val: [], float_val: [], tensor_shape: { dim: dims.map((size) => ({ size })) }, ...fields };
}

function packedInt32(values: number[]): Buffer {
  const buffer = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => buffer.writeInt32LE(v, 4 * i));
  return buffer;
}

function packedFloat32(values: number[]): Buffer {
  const buffer = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => buffer.writeFloatLE(v, 4 * i));
  return buffer;
}

test("int32 and float32 values come from tensor_content or the typed fields alike", () => {
  const ints = [3, -1, 2147483647, 0];
  assert.deepEqual([...int32Values(tensor({ dtype: "DT_INT32", tensor_content: packedInt32(ints) }, [4]), "x", 4)], ints);
  assert.deepEqual([...int32Values(tensor({ dtype: "DT_INT32", int_val: ints }, [4]), "x", 4)], ints);
  const floats = [0.5, 0.25, 1];
  assert.deepEqual([...float32Values(tensor({ dtype: "DT_FLOAT", tensor_content: packedFloat32(floats) }, [3]), "x", 3)], floats);
  assert.deepEqual([...float32Values(tensor({ dtype: "DT_FLOAT", float_val: floats }, [3]), "x", 3)], floats);
  // An unaligned view (a Buffer inside a larger message) reads the same.
  const unaligned = Buffer.concat([Buffer.from([9]), packedInt32(ints)]).subarray(1);
  assert.deepEqual([...int32Values(tensor({ dtype: "DT_INT32", tensor_content: unaligned }, [4]), "x", 4)], ints);
});

test("fewer typed values than elements repeat the last one, as TensorFlow does", () => {
  assert.deepEqual([...int32Values(tensor({ dtype: "DT_INT32", int_val: [-1] }, [2, 3]), "x", 6)], [-1, -1, -1, -1, -1, -1]);
  assert.deepEqual([...float32Values(tensor({ dtype: "DT_FLOAT", float_val: [1, 0] }, [3]), "x", 3)], [1, 0, 0]);
});

test("wrong dtypes and short content are errors naming the output", () => {
  assert.throws(() => int32Values(tensor({ dtype: "DT_FLOAT", float_val: [1] }, [1]), "num_entities", 1), /num_entities is DT_FLOAT/);
  assert.throws(() => int32Values(tensor({ dtype: "DT_INT32", tensor_content: packedInt32([1]) }, [2]), "x", 2), /4 bytes of tensor_content for 2/);
  assert.throws(() => float32Values(tensor({ dtype: "DT_FLOAT" }, [2]), "x", 2), /neither tensor_content nor typed values/);
});

test("stringTensor is a DT_STRING vector of UTF-8 bytes", () => {
  const t = stringTensor(["北京", "😀", ""]);
  assert.equal(t.dtype, "DT_STRING");
  assert.deepEqual(t.tensor_shape, { dim: [{ size: 3 }] });
  assert.deepEqual(t.string_val.map((b) => b.toString("utf8")), ["北京", "😀", ""]);
});

test("a response in typed fields decodes to the same entities as one in tensor_content", () => {
  const texts = ["我😀在北京", "无"];
  const strings = (values: string[], dims: number[]) =>
    tensor({ dtype: "DT_STRING", string_val: values.map((v) => Buffer.from(v)) }, dims);
  const outputs = (packed: boolean) => {
    const ints = (values: number[], dims: number[]) =>
      tensor(packed ? { dtype: "DT_INT32", tensor_content: packedInt32(values) } : { dtype: "DT_INT32", int_val: values }, dims);
    const floats = (values: number[], dims: number[]) =>
      tensor(packed ? { dtype: "DT_FLOAT", tensor_content: packedFloat32(values) } : { dtype: "DT_FLOAT", float_val: values }, dims);
    return {
      num_entities: ints([1, 0], [2]),
      entity_labels: strings(["LOC", ""], [2, 1]),
      entity_starts: ints([3, -1], [2, 1]),
      entity_ends: ints([5, -1], [2, 1]),
      entity_texts: strings(["北京", ""], [2, 1]),
      entity_scores: floats([0.5, 0], [2, 1]),
    };
  };
  const expected = [[{ label: "LOC", text: "北京", score: 0.5, start: 3, end: 5, utf16Start: 4, utf16End: 6 }], []];
  for (const packed of [true, false]) {
    const response: PredictResponse = {
      outputs: Object.entries(outputs(packed)).map(([key, value]) => ({ key, value })),
    };
    assert.deepEqual(entitiesFromResponse(response, texts), expected);
  }
  assert.throws(() => entitiesFromResponse({ outputs: [] }, texts), /lacks outputs num_entities/);
  // Offsets past the text (a response for other texts) are the response's fault: TypeError, as documented.
  const shifted = outputs(false);
  shifted.entity_ends = tensor({ dtype: "DT_INT32", int_val: [9, -1] }, [2, 1]);
  const response = { outputs: Object.entries(shifted).map(([key, value]) => ({ key, value })) };
  assert.throws(() => entitiesFromResponse(response, texts), TypeError);
  assert.throws(() => entitiesFromResponse(response, texts), /offsets \[3, 9\), not within its 5 characters/);
});
