"""Python gRPC client for a tfner model served by TF Serving or tfner.serve.

    from tfner.client import NerClient

    with NerClient("localhost:8500") as client:
        for entities in client.predict(["北京欢迎你", "他从上海来"]):
            for e in entities:
                print(e.label, e.start, e.end, e.text, e.score)

Offsets are Unicode code-point offsets, the same as Python string indices:
`text[e.start:e.end] == e.text`.

From a shell, one JSON line per text:

    python -m tfner.client --server localhost:8500 "北京欢迎你" "他从上海来"
    cat texts.txt | python -m tfner.client --server localhost:8500
"""

import argparse
import dataclasses
import json
import random
import sys
import time

import grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfner.server import tensor_protos

# The outputs the client reads; `tags` is left on the server (output_filter).
ENTITY_OUTPUTS = (
    "num_entities",
    "entity_labels",
    "entity_starts",
    "entity_ends",
    "entity_texts",
    "entity_scores",
)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclasses.dataclass(frozen=True)
class Entity:
    """One entity span of one text.

    Args:
        label: str. Entity type, e.g. "LOC".
        start: int. First character (code point) of the span.
        end: int. One past its last character: `text[start:end]`.
        text: str. The span's characters.
        score: float. The model's confidence, in [0, 1].
    """

    label: str
    start: int
    end: int
    text: str
    score: float


def tensor_to_numpy(proto):
    """A response TensorProto -> numpy; ValueError for a dtype a tfner signature never returns."""
    array = tensor_protos.to_numpy(proto)
    if array is None:
        raise ValueError(f"unexpected dtype {types_pb2.DataType.Name(proto.dtype)} in the response")
    return array


def entities_from_response(response, num_texts):
    """PredictResponse -> one list of Entity per text, dropping the padding."""
    missing = [k for k in ENTITY_OUTPUTS if k not in response.outputs]
    if missing:
        raise ValueError(f"the response lacks outputs {missing}; is this a tfner model?")
    out = {k: tensor_to_numpy(response.outputs[k]) for k in ENTITY_OUTPUTS}
    if len(out["num_entities"]) != num_texts:
        raise ValueError(f"the response has {len(out['num_entities'])} rows for {num_texts} texts")
    results = []
    for row, count in enumerate(out["num_entities"]):
        results.append([
            Entity(
                label=out["entity_labels"][row, i].decode("utf-8"),
                start=int(out["entity_starts"][row, i]),
                end=int(out["entity_ends"][row, i]),
                text=out["entity_texts"][row, i].decode("utf-8"),
                score=float(out["entity_scores"][row, i]),
            )
            for i in range(int(count))
        ])
    return results


class NerClient:
    """Calls a tfner model's `serving_default` Predict signature over gRPC.

    Args:
        target: str. "host:port" of TF Serving or tfner.serve.
        model: str. `model_spec.name`.
        version: int or None. Pin one version.
        label: str or None. Pin a version label ("stable", "canary").
        timeout: float. Deadline of each call, in seconds.
        retries: int. Retries after UNAVAILABLE (server starting, restarting
            or between pods), with exponential backoff and full jitter.
        chunk_size: int. Most texts per call; keep it <= the server's
            --max_texts_per_request and max_batch_size.
        backoff_s: float. The first retry waits up to this; each next one
            twice as long, up to max_backoff_s.
        max_backoff_s: float.
    """

    def __init__(self, target, model="ner", version=None, label=None, timeout=10.0, retries=3,
                 chunk_size=16, backoff_s=0.1, max_backoff_s=2.0):
        if version is not None and label:
            raise ValueError("pin either a version or a label, not both")
        if chunk_size < 1 or retries < 0 or timeout <= 0:
            raise ValueError("chunk_size must be >= 1, retries >= 0 and timeout > 0")
        self.model = model
        self.version = version
        self.label = label
        self.timeout = timeout
        self.retries = retries
        self.chunk_size = chunk_size
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.last_version = None  # model_spec.version of the last response.
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._channel.close()

    def build_request(self, texts):
        """The PredictRequest for one chunk of texts."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = "serving_default"
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        elif self.label:
            request.model_spec.version_label = self.label
        request.inputs["text"].CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_STRING,
                tensor_shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(texts))]
                ),
                string_val=[t.encode("utf-8") for t in texts],
            )
        )
        request.output_filter.extend(ENTITY_OUTPUTS)
        return request

    def predict(self, texts):
        """Finds the entities of each text.

        Args:
            texts: iterable of str.

        Returns:
            list of list of Entity, one list per text, in order.

        Raises:
            grpc.RpcError: the server refused the request (e.g.
                INVALID_ARGUMENT for a text over its limit) or stayed
                UNAVAILABLE through every retry.
        """
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}; pass str")
        results = []
        for begin in range(0, len(texts), self.chunk_size):
            chunk = texts[begin:begin + self.chunk_size]
            response = self._call(self.build_request(chunk))
            self.last_version = response.model_spec.version.value
            results.extend(entities_from_response(response, len(chunk)))
        return results

    def _call(self, request):
        attempt = 0
        while True:
            try:
                return self._stub.Predict(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or attempt >= self.retries:
                    raise
                # Full jitter: spread retries of many clients over the window.
                window = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
                time.sleep(random.uniform(0, window))
                attempt += 1


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tfner.client",
        description="Print the entities of each text as one JSON line (texts from the "
                    "arguments, or one per line on stdin).",
    )
    p.add_argument("texts", nargs="*", help="Texts; none: read lines from stdin.")
    p.add_argument("--server", required=True, help="host:port of the gRPC API.")
    p.add_argument("--model", default="ner")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int)
    pin.add_argument("--label")
    p.add_argument("--timeout", type=float, default=10.0, help="Seconds per call. Default 10.")
    p.add_argument("--retries", type=int, default=3)
    args = p.parse_args(argv)

    texts = args.texts or [line.rstrip("\r\n") for line in sys.stdin]
    try:
        with NerClient(args.server, model=args.model, version=args.version, label=args.label,
                       timeout=args.timeout, retries=args.retries) as client:
            results = client.predict(texts)
    except grpc.RpcError as e:
        print(f"tfner.client: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    for text, entities in zip(texts, results):
        line = {"text": text, "entities": [dataclasses.asdict(e) for e in entities]}
        print(json.dumps(line, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
