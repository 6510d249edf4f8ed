"""tfner.client against a live tfner.serve, and its retry logic against a fake.

tfner.client re-exports the light client (serving/clients/python, `tfner_client`);
its own suite runs without TensorFlow. This one checks it from inside tfner,
where tensorflow and tensorflow-serving-api are imported in the same process.
"""

import io
import json
import os
import subprocess
import sys
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import REPO_ROOT, SUBPROCESS_ENV
from tfner import client as client_lib
from tfner.client import Entity, NerClient, NerError
from tfner_client import client as light_client  # where the backoff sleeps

TEXTS = [
    "北京欢迎你",
    "他从上海来，去北京。",
    "",
    "Hello 世界 😀 北京上海",
    "没有地名",
    "上海",
    "𠀋北京𠀋",  # A character outside the BMP before and after.
    "北京北京北京",
]


def expected_entities(outputs, count):
    results = []
    for row in range(count):
        n = int(outputs["num_entities"][row])
        results.append([
            Entity(
                label=outputs["entity_labels"][row, i].decode(),
                start=int(outputs["entity_starts"][row, i]),
                end=int(outputs["entity_ends"][row, i]),
                text=outputs["entity_texts"][row, i].decode(),
                score=float(outputs["entity_scores"][row, i]),
            )
            for i in range(n)
        ])
    return results


@pytest.fixture(scope="module")
def ner_server(servers):
    return servers[0]


@pytest.mark.parametrize("pin, version", [({}, 2), ({"label": "stable"}, 1), ({"version": 1}, 1)])
def test_predict_matches_in_process_savedmodel(ner_server, reference, pin, version):
    want = expected_entities(reference(os.path.join(ner_server.base_path, str(version)), TEXTS), len(TEXTS))
    with NerClient(ner_server.target, **pin) as client:
        got = client.predict(TEXTS)
        assert client.last_version == version
    assert got == want
    assert any(got), "the texts should hold some entities"
    for text, entities in zip(TEXTS, got):
        for entity in entities:
            assert text[entity.start:entity.end] == entity.text  # code-point offsets
            assert 0.0 <= entity.score <= 1.0


def spans(results):
    """Entities without scores: a model's scores move in the last float bits
    with the composition of the batch a text ran in (its padded width)."""
    return [[(e.label, e.start, e.end, e.text) for e in entities] for entities in results]


def scores(results):
    return [e.score for entities in results for e in entities]


def test_predict_chunks_long_lists(ner_server):
    texts = TEXTS * 3  # 24 texts, over the server's limit of 8 per request
    with NerClient(ner_server.target, chunk_size=5) as client:
        by_five = client.predict(texts)
    with NerClient(ner_server.target, chunk_size=8) as client:
        by_eight = client.predict(texts)
    assert len(by_five) == 24
    assert spans(by_five) == spans(by_eight)
    np.testing.assert_allclose(scores(by_five), scores(by_eight), rtol=1e-4, atol=1e-5)
    # chunk_size 8 sends TEXTS three times as the very same batch.
    assert by_eight[:8] == by_eight[8:16] == by_eight[16:]


def test_empty_input_makes_no_call():
    client = NerClient("127.0.0.1:1")  # Nothing listens there.
    assert client.predict([]) == []
    client.close()


def test_invalid_argument_is_not_retried(ner_server, monkeypatch):
    sleeps = []
    monkeypatch.setattr(light_client.time, "sleep", sleeps.append)
    with NerClient(ner_server.target) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.predict(["北" * 65])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sleeps == []


def test_rejects_non_str_and_bad_pins():
    with pytest.raises(ValueError):
        NerClient("127.0.0.1:1", version=1, label="stable")
    client = NerClient("127.0.0.1:1")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        client.predict(["ok", b"bytes"])
    client.close()


def test_closed_client_refuses_calls():
    with NerClient("127.0.0.1:1") as client:
        pass
    with pytest.raises(ValueError):
        client.predict(["北京"])


# --------------------------------------------------------------------------
# retries, against an in-process fake PredictionService
# --------------------------------------------------------------------------


class FlakyService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers UNAVAILABLE `failures` times, then a fixed one-text response."""

    def __init__(self, failures, code=grpc.StatusCode.UNAVAILABLE):
        self.failures = failures
        self.code = code
        self.calls = 0
        self.lock = threading.Lock()

    def Predict(self, request, context):  # noqa: N802
        with self.lock:
            self.calls += 1
            fail = self.calls <= self.failures
        if fail:
            context.abort(self.code, "warming up")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 7
        values = {
            "num_entities": np.array([1], np.int32),
            "entity_labels": np.array([[b"LOC"]], object),
            "entity_starts": np.array([[0]], np.int32),
            "entity_ends": np.array([[2]], np.int32),
            "entity_texts": np.array([["北京".encode()]], object),
            "entity_scores": np.array([[0.5]], np.float32),
        }
        for key, value in values.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


@pytest.fixture
def fake_server():
    servers = []

    def start(service):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_retries_unavailable_with_jittered_exponential_backoff(fake_server, monkeypatch):
    sleeps, windows = [], []
    monkeypatch.setattr(light_client.time, "sleep", sleeps.append)
    # The standard library's draw, recorded: each wait is a full-jitter draw from a window that doubles to the cap.
    monkeypatch.setattr(light_client.random, "uniform", lambda low, high: windows.append((low, high)) or high)
    service = FlakyService(failures=3)
    with NerClient(fake_server(service), retries=3, backoff_s=0.1, max_backoff_s=0.3) as client:
        assert client.predict(["北京"]) == [[Entity("LOC", 0, 2, "北京", 0.5)]]
        assert client.last_version == 7
    assert service.calls == 4
    assert windows == [(0, 0.1), (0, 0.2), (0, 0.3)]  # 0.1 doubled, capped at max_backoff_s
    assert sleeps == [0.1, 0.2, 0.3]  # what was drawn is what was slept


def test_gives_up_after_retries(fake_server, monkeypatch):
    monkeypatch.setattr(light_client.time, "sleep", lambda s: None)
    service = FlakyService(failures=100)
    with NerClient(fake_server(service), retries=2) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.predict(["北京"])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert service.calls == 3


def test_other_errors_are_not_retried(fake_server, monkeypatch):
    monkeypatch.setattr(light_client.time, "sleep", lambda s: pytest.fail("slept"))
    service = FlakyService(failures=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    with NerClient(fake_server(service)) as client:
        with pytest.raises(grpc.RpcError):
            client.predict(["北京"])
    assert service.calls == 1


def test_deadline_applies_per_call(fake_server):
    class Slow(FlakyService):
        def Predict(self, request, context):  # noqa: N802
            threading.Event().wait(2)
            return super().Predict(request, context)

    with NerClient(fake_server(Slow(failures=0)), timeout=0.2, retries=0) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.predict(["北京"])
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_tensor_content_encoding_is_read():
    proto = tf.make_tensor_proto(np.array([[1, 2], [3, 4]], np.int32))
    assert proto.tensor_content  # numpy input -> packed bytes
    assert client_lib.tensor_to_list(proto) == [[1, 2], [3, 4]]
    typed = tf.make_tensor_proto([0.25, 0.5], dtype=tf.float32)
    typed.ClearField("tensor_content")
    typed.float_val.extend([0.25, 0.5])
    assert client_lib.tensor_to_list(typed) == [0.25, 0.5]


# Both import orders: the first module imported sets what protobuf's default pool holds.
BESIDE_TENSORFLOW = """
import sys
if sys.argv[1] == "tfner_client first":
    from tfner_client._proto.tensorflow_serving.apis import predict_pb2 as light
    from tensorflow_serving.apis import predict_pb2 as full
else:
    from tensorflow_serving.apis import predict_pb2 as full
    from tfner_client._proto.tensorflow_serving.apis import predict_pb2 as light
from tfner_client import NerClient

request = NerClient("127.0.0.1:1").build_request(["北京欢迎你"])
parsed = full.PredictRequest.FromString(request.SerializeToString())
assert parsed.inputs["text"].string_val == ["北京欢迎你".encode()], parsed
assert light.PredictRequest.FromString(parsed.SerializeToString()) == request
assert light.PredictRequest is not full.PredictRequest
assert light.DESCRIPTOR.pool is not full.DESCRIPTOR.pool
print("ok")
"""


@pytest.mark.parametrize("order", ["tfner_client first", "tensorflow_serving first"])
def test_light_stubs_import_beside_tensorflow_serving(order):
    """tfner_client's stubs live in a descriptor pool of their own: no "duplicate file name" beside TF's."""
    done = subprocess.run([sys.executable, "-c", BESIDE_TENSORFLOW, order], capture_output=True, text=True,
                          timeout=120, env=SUBPROCESS_ENV, cwd=REPO_ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def test_cli_arguments_and_stdin(ner_server, reference, capsys, monkeypatch):
    want = expected_entities(reference(os.path.join(ner_server.base_path, "1"), TEXTS[:3]), 3)
    assert client_lib.main(["--server", ner_server.target, "--label", "stable", *TEXTS[:3]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == TEXTS[:3]
    assert [[Entity(**e) for e in line["entities"]] for line in lines] == want

    stdin = ("\n".join(TEXTS[:3]) + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))  # read as bytes
    assert client_lib.main(["--server", ner_server.target, "--version", "1"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == lines


def test_cli_reports_errors(ner_server, capsys):
    assert client_lib.main(["--server", ner_server.target, "--model", "nope", "北京"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_cli_as_module(ner_server):
    done = subprocess.run(
        [sys.executable, "-m", "tfner.client", "--server", ner_server.target, "他从上海来"],
        capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV, cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip())
    assert line["text"] == "他从上海来"
    for entity in line["entities"]:
        assert line["text"][entity["start"]:entity["end"]] == entity["text"]


def test_close_while_a_call_waits_out_its_backoff_fails_it_as_cancelled(fake_server, monkeypatch):
    """As in the Go, Java and Node.js clients: a typed CANCELLED saying so, not grpc's untyped
    ValueError('Cannot invoke RPC on closed channel!') from the retry."""
    service = FlakyService(failures=100)
    client = NerClient(fake_server(service), retries=3)
    monkeypatch.setattr(light_client.time, "sleep", lambda seconds: client.close())  # close() during the backoff
    with pytest.raises(NerError) as info:
        client.predict(["北京"])
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert "was closed during the call" in info.value.message
    assert service.calls == 1
