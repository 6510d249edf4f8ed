"""Python gRPC client for a tfner model served by TF Serving or tfner.serve.

The client is the light `tfner-client` package (serving/clients/python, import
name `tfner_client`), which needs grpcio and protobuf only, not TensorFlow;
tfner depends on it and re-exports it here, so there is one implementation.

    from tfner.client import NerClient

    with NerClient("localhost:8500") as client:
        for entities in client.predict(["北京欢迎你", "他从上海来"]):
            for e in entities:
                print(e.label, e.start, e.end, e.text, e.score)

Offsets are Unicode code-point offsets, the same as Python string indices:
`text[e.start:e.end] == e.text`.

From a shell, one JSON line per text (the same command line as `tfner-client`):

    python -m tfner.client --server localhost:8500 "北京欢迎你" "他从上海来"
    cat texts.txt | python -m tfner.client --server localhost:8500
"""

import sys

from tfner_client import (  # noqa: F401 -- re-exported: tfner.client's public API
    ENTITY_OUTPUTS,
    RETRYABLE,
    DeadlineExceededError,
    Entity,
    InvalidArgumentError,
    MalformedResponseError,
    NerClient,
    NerError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    VersionStatus,
    entities_from_response,
    tensor_to_list,
)
from tfner_client import cli


def main(argv=None):
    """`python -m tfner.client`: the `tfner-client` command line under tfner's name."""
    return cli.main(argv, prog="python -m tfner.client")


if __name__ == "__main__":
    sys.exit(main())
