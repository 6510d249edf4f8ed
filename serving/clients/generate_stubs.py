"""Regenerates every client's TF Serving stubs from the installed descriptors.

    python serving/clients/generate_stubs.py           # rewrite them in place
    python serving/clients/generate_stubs.py --check   # regenerate into a copy; fail if any file differs

The TF Serving API definitions come from tfner's own dependencies: each `_pb2`
module of tensorflow-serving-api and tensorflow holds its .proto file as a
serialized FileDescriptorProto. This script collects the two services a client
calls (tensorflow.serving.PredictionService and ModelService) with every file
they import into one FileDescriptorSet, `serving/clients/build/tf_serving_apis.binpb`
(git-ignored), then runs each language's `serving/clients/<language>/generate_stubs.sh`
with two environment variables:

    TFNER_PROTOSET   the FileDescriptorSet's path (for protoc --descriptor_set_in)
    TFNER_PROTOS     the .proto names it holds, dependencies first, space-separated
    TFNER_PROTOC     a protoc command: grpcio-tools' `python -m grpc_tools.protoc`

No .proto source is copied or kept. Needs the `stubs` extra (grpcio-tools) and
each language's own toolchain (Go, Maven, npm).
"""

import argparse
import filecmp
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
PROTOSET = os.path.join(HERE, "build", "tf_serving_apis.binpb")
LANGUAGES = ("python", "go", "java", "node")


def descriptor_set():
    """FileDescriptorSet of PredictionService and ModelService and all they import, dependencies first."""
    from tensorflow_serving.apis import model_service_pb2
    from tensorflow_serving.apis import prediction_service_pb2

    ordered = {}

    def visit(file_descriptor):
        if file_descriptor.name in ordered:
            return
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        ordered[file_descriptor.name] = proto

    visit(prediction_service_pb2.DESCRIPTOR)
    visit(model_service_pb2.DESCRIPTOR)
    return descriptor_pb2.FileDescriptorSet(file=list(ordered.values()))


def write_descriptor_set(path=PROTOSET):
    """Writes the set to `path`; returns the .proto names it holds."""
    files = descriptor_set()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(files.SerializeToString(deterministic=True))
    return [f.name for f in files.file]


# Build outputs and installed dependencies: never generated stubs, never compared.
NOT_COMPARED = ("build", "node_modules", "dist", "target", ".venv", "__pycache__", ".pytest_cache")


def run_generators(clients_dir, languages, names):
    """Runs each language's generate_stubs.sh inside clients_dir (the real folder or a copy)."""
    env = dict(os.environ,
               TFNER_PROTOSET=PROTOSET,
               TFNER_PROTOS=" ".join(names),
               TFNER_PROTOC=shlex.join([sys.executable, "-m", "grpc_tools.protoc"]))
    for language in languages:
        script = os.path.join(clients_dir, language, "generate_stubs.sh")
        if not os.path.isfile(script):
            raise FileNotFoundError(f"{os.path.relpath(script, clients_dir)} is missing")
        print(f"generate_stubs: {language}", file=sys.stderr)
        subprocess.run(["bash", script], cwd=os.path.dirname(script), env=env, check=True)


def tree_files(root):
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in NOT_COMPARED]
        found.update(os.path.relpath(os.path.join(folder, f), root) for f in files)
    return found


def differences(before, after):
    """Paths (relative) that differ between two trees, were added or were removed."""
    old, new = tree_files(before), tree_files(after)
    changed = [p for p in sorted(old & new)
               if not filecmp.cmp(os.path.join(before, p), os.path.join(after, p), shallow=False)]
    return changed + [f"{p} (new)" for p in sorted(new - old)] + [f"{p} (gone)" for p in sorted(old - new)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a copy of serving/clients and fail if any file differs")
    parser.add_argument("--languages", default=",".join(LANGUAGES),
                        help=f"comma-separated subset of {','.join(LANGUAGES)}")
    args = parser.parse_args(argv)
    languages = args.languages.split(",")
    names = write_descriptor_set()
    if not args.check:
        run_generators(HERE, languages, names)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "clients")
        shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns(*NOT_COMPARED))
        run_generators(copy, languages, names)
        stale = differences(HERE, copy)
    if stale:
        print("generate_stubs --check: these files differ from what the generators write; run "
              "`python serving/clients/generate_stubs.py` and commit the result:",
              *stale, sep="\n  ", file=sys.stderr)
        return 1
    print(f"generate_stubs --check: the stubs of {', '.join(languages)} are up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
