#!/usr/bin/env bash
# Node's stubs are the FileDescriptorSet itself: @grpc/proto-loader builds the
# PredictionService and ModelService clients from it at run time
# (src/stubs.ts), so there is no generated code, only this one binary file.
# Run through `python serving/clients/generate_stubs.py`, which sets
# TFNER_PROTOSET; `--check` then fails if the committed copy is stale.
set -euo pipefail

: "${TFNER_PROTOSET:?run python serving/clients/generate_stubs.py instead; it sets TFNER_PROTOSET}"

mkdir -p proto
cp "$TFNER_PROTOSET" proto/tf_serving_apis.binpb
echo "generate_stubs (node): wrote proto/tf_serving_apis.binpb" >&2
