#!/usr/bin/env bash
# Regenerates internal/pb/ (committed, as Go does) from the TF Serving descriptors.
#
# Run through `python serving/clients/generate_stubs.py --languages go`, which
# sets TFNER_PROTOSET, TFNER_PROTOS and TFNER_PROTOC (see that script). The
# descriptors' own go_package options point into tensorflow's repository; the
# M flags below map each .proto directory onto a package of this module
# instead, so the client depends on grpc and protobuf only.
set -euo pipefail

: "${TFNER_PROTOSET:?run python serving/clients/generate_stubs.py --languages go}"
: "${TFNER_PROTOS:?run python serving/clients/generate_stubs.py --languages go}"
: "${TFNER_PROTOC:?run python serving/clients/generate_stubs.py --languages go}"

# Pinned plugin versions: their names and versions are written into every
# generated file, so a different version would make `--check` fail.
PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
module=$(cd "$here" && go list -m)
bin="$here/../build/go-bin"
mkdir -p "$bin"
GOBIN="$bin" go install "$PROTOC_GEN_GO"
GOBIN="$bin" go install "$PROTOC_GEN_GO_GRPC"

# .proto directory -> package of this module.
go_package_of() {
	case "$(dirname "$1")" in
	tensorflow/core/framework) echo internal/pb/framework ;;
	tensorflow/core/example) echo internal/pb/example ;;
	tensorflow/core/protobuf) echo internal/pb/coreproto ;;
	xla/tsl/protobuf) echo internal/pb/tsl ;;
	tensorflow_serving/apis) echo internal/pb/serving ;;
	tensorflow_serving/config) echo internal/pb/servingconfig ;;
	*) return 1 ;;
	esac
}

protos=()
mappings=()
for proto in $TFNER_PROTOS; do
	# Well-known types (google/protobuf/*) already live in google.golang.org/protobuf.
	[[ $proto == google/protobuf/* ]] && continue
	if ! package=$(go_package_of "$proto"); then
		echo "generate_stubs.sh: no Go package for $proto; add its directory to go_package_of" >&2
		exit 1
	fi
	protos+=("$proto")
	mappings+=("M$proto=$module/$package;$(basename "$package")")
done

go_opts=("--go_opt=module=$module")
grpc_opts=("--go-grpc_opt=module=$module")
for m in "${mappings[@]}"; do
	go_opts+=("--go_opt=$m")
	grpc_opts+=("--go-grpc_opt=$m")
done

# Start clean so that a .proto dropped from the set leaves no stale file behind.
rm -rf "$here/internal/pb"
# TFNER_PROTOC is a shell-quoted command line (Python's shlex.join).
eval "protoc=($TFNER_PROTOC)"
"${protoc[@]}" \
	--descriptor_set_in="$TFNER_PROTOSET" \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
	--go_out="$here" "${go_opts[@]}" \
	--go-grpc_out="$here" "${grpc_opts[@]}" \
	"${protos[@]}"
echo "generate_stubs.sh: wrote $(find "$here/internal/pb" -name '*.go' | wc -l) files under internal/pb" >&2
