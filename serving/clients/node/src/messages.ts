/**
 * TypeScript views of the TF Serving messages this client writes and reads.
 *
 * Written by hand, and only for the fields the client uses: proto-loader's
 * type generator (`proto-loader-gen-types`) reads `.proto` sources, and this
 * repository keeps none, only the FileDescriptorSet (proto/). The shapes follow
 * the object form that `PROTO_LOADER_OPTIONS` in stubs.ts produces:
 * proto field names as written (`keepCase`), int64 as `number` (`longs`),
 * enums as their names (`enums`), bytes as `Buffer`, repeated fields always
 * present (`arrays`), and unset singular fields absent (`defaults: false`).
 *
 * Maps are arrays of `{key, value}` entries: protobufjs, building types from a
 * descriptor set, sees a map as what it is on the wire, a repeated
 * `...Entry` message (the `map_entry` option is not turned back into a map).
 * test/messages.test.ts checks every field
 * named here against the descriptor set, so a change upstream fails a test
 * instead of reading `undefined`.
 */

/** `tensorflow.DataType` by name; only the three a tfner signature uses are spelled out. */
export type DataType = "DT_FLOAT" | "DT_INT32" | "DT_STRING" | (string & {});

/** `tensorflow.TensorShapeProto`. */
export interface TensorShapeProto {
  dim: { size?: number; name?: string }[];
}

/** `tensorflow.TensorProto`: numbers come packed in `tensor_content` or in the typed `*_val` fields. */
export interface TensorProto {
  dtype?: DataType;
  tensor_shape?: TensorShapeProto;
  /** Packed little-endian values (TF Serving's and tfner.serve's choice for numbers). */
  tensor_content?: Buffer;
  string_val: Buffer[];
  int_val: number[];
  float_val: number[];
}

/** `tensorflow.serving.ModelSpec`; `version` and `version_label` are a oneof. */
export interface ModelSpec {
  name?: string;
  signature_name?: string;
  version?: { value?: number };
  version_label?: string;
}

/** One entry of a `map<string, TensorProto>` field. */
export interface TensorMapEntry {
  key?: string;
  value?: TensorProto;
}

/** `tensorflow.serving.PredictRequest`. */
export interface PredictRequest {
  model_spec: ModelSpec;
  inputs: TensorMapEntry[];
  output_filter: string[];
}

/** `tensorflow.serving.PredictResponse`. */
export interface PredictResponse {
  model_spec?: ModelSpec;
  outputs: TensorMapEntry[];
}

/** `tensorflow.serving.GetModelStatusRequest`. */
export interface GetModelStatusRequest {
  model_spec: ModelSpec;
}

/** `tensorflow.serving.ModelVersionStatus`. */
export interface ModelVersionStatusProto {
  version?: number;
  /** `ModelVersionStatus.State` by name: "START", "LOADING", "AVAILABLE", "UNLOADING", "END" (absent: UNKNOWN). */
  state?: string;
  status?: { error_code?: string; error_message?: string };
}

/** `tensorflow.serving.GetModelStatusResponse`. */
export interface GetModelStatusResponse {
  model_version_status: ModelVersionStatusProto[];
}
