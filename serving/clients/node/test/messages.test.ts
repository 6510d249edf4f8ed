// src/messages.ts is written by hand: check every field it names against the committed descriptor set,
// and the error mapping against grpc-js's status codes (no server needed).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Metadata, status } from "@grpc/grpc-js";

import { errorFromStatus } from "../dist/errors.js";
import { DeadlineExceededError, InvalidArgumentError, NerError, NotFoundError, ResourceExhaustedError, UnavailableError } from "../dist/index.js";
import { loadPackageDefinition, tfServingMethods } from "../dist/stubs.js";

interface FieldDescriptor {
  name: string;
  label: string;
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  field: FieldDescriptor[];
  nestedType: (MessageDescriptor & { name: string })[];
  enumType: { name: string; value: { name: string }[] }[];
}

const definition = loadPackageDefinition();

function message(path: string): MessageDescriptor {
  // Nested types ("PredictRequest.InputsEntry") live inside their parent's descriptor.
  const parts = path.split(".");
  for (let split = parts.length; split > 0; split--) {
    const top = definition[parts.slice(0, split).join(".")] as { type?: MessageDescriptor } | undefined;
    if (top?.type === undefined) continue;
    let found = top.type;
    for (const name of parts.slice(split)) {
      const nested = found.nestedType.find((n) => n.name === name);
      assert.ok(nested, `${path}: no nested type ${name}`);
      found = nested;
    }
    return found;
  }
  assert.fail(`${path} is not in the descriptor set`);
}

// [message, field, label, type, type name (messages and enums)]: every field src/messages.ts names.
const FIELDS: [string, string, string, string, string?][] = [
  ["tensorflow.TensorProto", "dtype", "LABEL_OPTIONAL", "TYPE_ENUM", "DataType"],
  ["tensorflow.TensorProto", "tensor_shape", "LABEL_OPTIONAL", "TYPE_MESSAGE", "TensorShapeProto"],
  ["tensorflow.TensorProto", "tensor_content", "LABEL_OPTIONAL", "TYPE_BYTES"],
  ["tensorflow.TensorProto", "string_val", "LABEL_REPEATED", "TYPE_BYTES"],
  ["tensorflow.TensorProto", "int_val", "LABEL_REPEATED", "TYPE_INT32"],
  ["tensorflow.TensorProto", "float_val", "LABEL_REPEATED", "TYPE_FLOAT"],
  ["tensorflow.TensorShapeProto", "dim", "LABEL_REPEATED", "TYPE_MESSAGE", "Dim"],
  ["tensorflow.TensorShapeProto.Dim", "size", "LABEL_OPTIONAL", "TYPE_INT64"],
  ["tensorflow.TensorShapeProto.Dim", "name", "LABEL_OPTIONAL", "TYPE_STRING"],
  ["tensorflow.serving.ModelSpec", "name", "LABEL_OPTIONAL", "TYPE_STRING"],
  ["tensorflow.serving.ModelSpec", "signature_name", "LABEL_OPTIONAL", "TYPE_STRING"],
  ["tensorflow.serving.ModelSpec", "version", "LABEL_OPTIONAL", "TYPE_MESSAGE", "Int64Value"],
  ["tensorflow.serving.ModelSpec", "version_label", "LABEL_OPTIONAL", "TYPE_STRING"],
  ["google.protobuf.Int64Value", "value", "LABEL_OPTIONAL", "TYPE_INT64"],
  ["tensorflow.serving.PredictRequest", "model_spec", "LABEL_OPTIONAL", "TYPE_MESSAGE", "ModelSpec"],
  // Maps are repeated entry messages here (src/messages.ts says why).
  ["tensorflow.serving.PredictRequest", "inputs", "LABEL_REPEATED", "TYPE_MESSAGE", "InputsEntry"],
  ["tensorflow.serving.PredictRequest.InputsEntry", "key", "LABEL_OPTIONAL", "TYPE_STRING"],
  ["tensorflow.serving.PredictRequest.InputsEntry", "value", "LABEL_OPTIONAL", "TYPE_MESSAGE", "TensorProto"],
  ["tensorflow.serving.PredictRequest", "output_filter", "LABEL_REPEATED", "TYPE_STRING"],
  ["tensorflow.serving.PredictResponse", "model_spec", "LABEL_OPTIONAL", "TYPE_MESSAGE", "ModelSpec"],
  ["tensorflow.serving.PredictResponse", "outputs", "LABEL_REPEATED", "TYPE_MESSAGE", "OutputsEntry"],
  ["tensorflow.serving.PredictResponse.OutputsEntry", "key", "LABEL_OPTIONAL", "TYPE_STRING"],
  ["tensorflow.serving.PredictResponse.OutputsEntry", "value", "LABEL_OPTIONAL", "TYPE_MESSAGE", "TensorProto"],
  ["tensorflow.serving.GetModelStatusRequest", "model_spec", "LABEL_OPTIONAL", "TYPE_MESSAGE", "ModelSpec"],
  ["tensorflow.serving.GetModelStatusResponse", "model_version_status", "LABEL_REPEATED", "TYPE_MESSAGE", "ModelVersionStatus"],
  ["tensorflow.serving.ModelVersionStatus", "version", "LABEL_OPTIONAL", "TYPE_INT64"],
  ["tensorflow.serving.ModelVersionStatus", "state", "LABEL_OPTIONAL", "TYPE_ENUM", "State"],
  ["tensorflow.serving.ModelVersionStatus", "status", "LABEL_OPTIONAL", "TYPE_MESSAGE", "StatusProto"],
  ["tensorflow.serving.StatusProto", "error_code", "LABEL_OPTIONAL", "TYPE_ENUM", "Code"],
  ["tensorflow.serving.StatusProto", "error_message", "LABEL_OPTIONAL", "TYPE_STRING"],
];

test("every field src/messages.ts names is in the descriptor set, with that label and type", () => {
  for (const [path, name, label, type, typeName] of FIELDS) {
    const field = message(path).field.find((f) => f.name === name);
    assert.ok(field, `${path}.${name} is not in the descriptor set`);
    assert.deepEqual(
      { label: field.label, type: field.type, typeName: field.typeName.split(".").at(-1) },
      { label, type, typeName: typeName ?? "" },
      `${path}.${name}`,
    );
  }
});

test("the enum names the client compares with exist", () => {
  const dataTypes = (definition["tensorflow.DataType"] as unknown as { type: { value: { name: string }[] } }).type.value;
  for (const name of ["DT_FLOAT", "DT_INT32", "DT_STRING"]) assert.ok(dataTypes.some((v) => v.name === name), name);
  const states = message("tensorflow.serving.ModelVersionStatus").enumType.find((e) => e.name === "State")!.value;
  assert.ok(states.some((v) => v.name === "AVAILABLE"));
});

test("both services' methods load", () => {
  const methods = tfServingMethods();
  assert.equal(methods.predict.path, "/tensorflow.serving.PredictionService/Predict");
  assert.equal(methods.getModelStatus.path, "/tensorflow.serving.ModelService/GetModelStatus");
});

test("each gRPC status maps to its error class; anything else to NerError", () => {
  const cases: [status, typeof NerError][] = [
    [status.NOT_FOUND, NotFoundError],
    [status.INVALID_ARGUMENT, InvalidArgumentError],
    [status.UNAVAILABLE, UnavailableError],
    [status.DEADLINE_EXCEEDED, DeadlineExceededError],
    [status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
    [status.INTERNAL, NerError],
    [status.PERMISSION_DENIED, NerError],
  ];
  for (const [code, ErrorClass] of cases) {
    const grpcError = Object.assign(new Error("x"), { code, details: "what the server said", metadata: new Metadata() });
    const error = errorFromStatus(grpcError);
    assert.equal(error.constructor, ErrorClass);
    assert.equal(error.code, status[code]);
    assert.equal(error.grpcCode, code);
    assert.equal(error.message, `${status[code]}: what the server said`);
    assert.equal(error.cause, grpcError);
  }
});
