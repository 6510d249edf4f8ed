#!/usr/bin/env bash
# Regenerates the Java message classes of the TF Serving API in src/main/generated/.
#
# Run through the shared driver, from the repository root:
#     python serving/clients/generate_stubs.py --languages java
# which sets TFNER_PROTOSET, TFNER_PROTOS and TFNER_PROTOC (see its docstring)
# and runs this script in serving/clients/java/. The output is committed, so
# `mvn test` needs no protoc.
#
# Why not $TFNER_PROTOC alone: grpcio-tools' protoc has only the Python
# generators built in. Maven Central publishes the same protoc release as a
# native binary (com.google.protobuf:protoc, version = protobuf-java's, pinned
# once in pom.xml); `mvn dependency:copy` fetches it into serving/clients/build/
# (git-ignored), and this script checks that it is the release TFNER_PROTOC is.
#
# Why no grpc-java plugin: Maven Central serves no protoc-gen-grpc-java binary
# for a grpc-java 1.85 release to this machine. The client needs two methods,
# so TfServingMethods.java builds their gRPC MethodDescriptors from the
# generated file descriptors instead of from generated *Grpc classes.
set -euo pipefail

: "${TFNER_PROTOSET:?run this through serving/clients/generate_stubs.py}"
: "${TFNER_PROTOS:?run this through serving/clients/generate_stubs.py}"
: "${TFNER_PROTOC:?run this through serving/clients/generate_stubs.py}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="$HERE/../build/java-bin"
OUT="$HERE/src/main/generated"

PROTOBUF_VERSION="$(sed -n 's:.*<protobuf.version>\(.*\)</protobuf.version>.*:\1:p' "$HERE/pom.xml")"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) CLASSIFIER=linux-x86_64 ;;
  Linux-aarch64) CLASSIFIER=linux-aarch_64 ;;
  Darwin-x86_64) CLASSIFIER=osx-x86_64 ;;
  Darwin-arm64) CLASSIFIER=osx-aarch_64 ;;
  *) echo "generate_stubs.sh: Maven Central has no protoc build for $(uname -s) $(uname -m)" >&2; exit 1 ;;
esac
PROTOC="$BIN_DIR/protoc-$PROTOBUF_VERSION-$CLASSIFIER.exe"
if [[ ! -x "$PROTOC" ]]; then
  mvn -B -q -f "$HERE/pom.xml" dependency:copy \
    -Dartifact="com.google.protobuf:protoc:$PROTOBUF_VERSION:exe:$CLASSIFIER" \
    -DoutputDirectory="$BIN_DIR"
  chmod +x "$PROTOC"
fi

# protobuf-java 4.X.Y is protoc X.Y: the gencode must come from the protoc that
# the shared toolchain pins, or the runtime may refuse it.
# shellcheck disable=SC2086  # TFNER_PROTOC is a command line (python -m grpc_tools.protoc).
PINNED="$($TFNER_PROTOC --version)"
FETCHED="$("$PROTOC" --version)"
if [[ "$PINNED" != "$FETCHED" ]]; then
  echo "generate_stubs.sh: TFNER_PROTOC is '$PINNED' but protobuf-java $PROTOBUF_VERSION's protoc is '$FETCHED';" \
       "set <protobuf.version> in pom.xml to 4.<that protoc version>" >&2
  exit 1
fi

# protobuf-java already ships the google/protobuf/* well-known types.
PROTOS=()
for name in $TFNER_PROTOS; do
  [[ "$name" == google/protobuf/* ]] || PROTOS+=("$name")
done

# Start from an empty folder so that a proto dropped upstream leaves no stale class.
rm -rf "$OUT"
mkdir -p "$OUT"
"$PROTOC" --descriptor_set_in="$TFNER_PROTOSET" --java_out="$OUT" "${PROTOS[@]}"
