/**
 * The two gRPC methods the client calls, built at run time from the committed
 * FileDescriptorSet (proto/tf_serving_apis.binpb, written by
 * `python serving/clients/generate_stubs.py`).
 */

import { readFileSync } from "node:fs";
import * as protoLoader from "@grpc/proto-loader";
import type { MethodDefinition } from "@grpc/proto-loader";

import type {
  GetModelStatusRequest,
  GetModelStatusResponse,
  PredictRequest,
  PredictResponse,
} from "./messages.js";

/** Where generate_stubs.sh puts the descriptor set: beside dist/, in the package. */
export const DESCRIPTOR_SET_URL = new URL("../proto/tf_serving_apis.binpb", import.meta.url);

/** How protobuf messages map to JavaScript objects; src/messages.ts describes the result. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: false,
  arrays: true,
  oneofs: true,
};

/** The methods NerClient calls, with their serializers. */
export interface TfServingMethods {
  predict: MethodDefinition<PredictRequest, PredictResponse>;
  getModelStatus: MethodDefinition<GetModelStatusRequest, GetModelStatusResponse>;
}

let cached: TfServingMethods | undefined;

/** Loads the descriptor set once per process and returns the two methods. */
export function tfServingMethods(): TfServingMethods {
  if (cached === undefined) {
    const definition = loadPackageDefinition();
    cached = {
      predict: method(definition, "tensorflow.serving.PredictionService", "Predict"),
      getModelStatus: method(definition, "tensorflow.serving.ModelService", "GetModelStatus"),
    };
  }
  return cached;
}

/** The whole package definition; also used by the tests to check src/messages.ts. */
export function loadPackageDefinition(): protoLoader.PackageDefinition {
  let bytes: Buffer;
  try {
    bytes = readFileSync(DESCRIPTOR_SET_URL);
  } catch (error) {
    throw new Error(
      `cannot read the TF Serving descriptor set ${DESCRIPTOR_SET_URL.pathname}; ` +
        "regenerate it with `python serving/clients/generate_stubs.py --languages node`",
      { cause: error },
    );
  }
  return protoLoader.loadFileDescriptorSetFromBuffer(bytes, PROTO_LOADER_OPTIONS);
}

function method<Request, Response>(
  definition: protoLoader.PackageDefinition,
  service: string,
  name: string,
): MethodDefinition<Request, Response> {
  const methods = definition[service] as protoLoader.ServiceDefinition | undefined;
  const found = methods?.[name];
  if (found === undefined) {
    throw new Error(
      `${DESCRIPTOR_SET_URL.pathname} has no ${service}.${name}; ` +
        "regenerate it with `python serving/clients/generate_stubs.py --languages node`",
    );
  }
  return found as unknown as MethodDefinition<Request, Response>;
}
