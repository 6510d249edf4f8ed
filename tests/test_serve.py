"""End-to-end tests of python -m tfner.serve over loopback, plus the batcher.

Two servers are shared by the whole session (see conftest.py):
`config_server` (serving/models.config, no batching, REST, small limits) and
`batching_server` (--model_base_path, batching, fast polling). The lifecycle
test starts its own. Every served answer is compared with the SavedModel
called in-process on the same texts; nothing here knows what the model does.
"""

import http.client
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.config import model_server_config_pb2

from conftest import MONITORING_CONFIG
from tfner import batching
from tfner.model_store import ModelStore
from tfner.model_store import list_versions
from tfner.model_store import read_signature_defs
from tfner.predictor import Limits
from tfner.predictor import Predictor
from tfner.predictor import array_from_tensor_proto
from tfner.serving_config import BatchOptions
from tfner.serving_config import ModelSpecConfig
from tfner.serving_errors import ServingError
from tfner.serving_metrics import Metrics

pytestmark = pytest.mark.slow

TEXTS = [
    "北京欢迎你",
    "他从上海来，去北京。",
    "",
    "Hello 世界 😀 北京",
    "上海上海北京北京上海",
    "无实体的句子",
]

CONTRACT_OUTPUTS = {
    "num_entities": (tf.int32, 1),
    "entity_labels": (tf.string, 2),
    "entity_starts": (tf.int32, 2),
    "entity_ends": (tf.int32, 2),
    "entity_texts": (tf.string, 2),
    "entity_scores": (tf.float32, 2),
    "tags": (tf.string, 2),
}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def predict_request(texts, model="ner", version=None, label=None, signature="serving_default"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["text"].CopyFrom(
        tf.make_tensor_proto([t.encode("utf-8") if isinstance(t, str) else t for t in texts],
                             dtype=tf.string)
    )
    return request


def outputs_of(response):
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def assert_rows_match(got, want, texts):
    """Row-wise equality ignoring padding width (batching pads to the batch's widest row)."""
    np.testing.assert_array_equal(got["num_entities"], want["num_entities"])
    for row, text in enumerate(texts):
        n = int(want["num_entities"][row])
        for key in ("entity_labels", "entity_starts", "entity_ends", "entity_texts"):
            np.testing.assert_array_equal(got[key][row, :n], want[key][row, :n], err_msg=f"{key} row {row}")
        np.testing.assert_allclose(got["entity_scores"][row, :n], want["entity_scores"][row, :n], rtol=1e-4, atol=1e-5)
        width = len(text)
        np.testing.assert_array_equal(got["tags"][row, :width], want["tags"][row, :width])


class Clients:
    """Stubs over one channel to a server."""

    def __init__(self, target):
        self.channel = grpc.insecure_channel(target)
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)


@pytest.fixture(scope="module")
def config_clients(servers):
    clients = Clients(servers[0].target)
    yield clients
    clients.channel.close()


@pytest.fixture(scope="module")
def batching_clients(servers):
    clients = Clients(servers[1].target)
    yield clients
    clients.channel.close()


def metric(server, name, **labels):
    """Sum of a Prometheus metric's samples whose labels include `labels`."""
    with urllib.request.urlopen(server.rest_url + "/monitoring/prometheus/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(predicate, timeout=60.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def rest(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_url + path, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --------------------------------------------------------------------------
# Predict, metadata, status
# --------------------------------------------------------------------------


def test_predict_matches_in_process_savedmodel(servers, config_clients, reference):
    server = servers[0]
    response = config_clients.predict.Predict(predict_request(TEXTS), timeout=30)
    # The specific policy serves 1 and 2 (3 is on disk too): no version -> 2.
    assert response.model_spec.name == "ner"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    got = outputs_of(response)
    want = reference(os.path.join(server.base_path, "2"), TEXTS)
    assert set(got) == set(want) == set(CONTRACT_OUTPUTS)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_predict_output_filter(config_clients):
    request = predict_request(TEXTS[:2])
    request.output_filter.extend(["num_entities", "entity_texts"])
    response = config_clients.predict.Predict(request, timeout=30)
    assert set(response.outputs) == {"num_entities", "entity_texts"}


@pytest.mark.parametrize(
    "spec, version",
    [
        ({"label": "stable"}, 1),
        ({"label": "canary"}, 2),
        ({"version": 1}, 1),
        ({"version": 2}, 2),
        ({}, 2),
    ],
)
def test_versions_and_labels_route(servers, config_clients, reference, spec, version):
    response = config_clients.predict.Predict(predict_request(TEXTS[:3], **spec), timeout=30)
    assert response.model_spec.version.value == version
    want = reference(os.path.join(servers[0].base_path, str(version)), TEXTS[:3])
    assert_rows_match(outputs_of(response), want, TEXTS[:3])


def test_get_model_metadata_returns_signature_defs(servers, config_clients):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "ner"
    request.model_spec.version_label = "stable"
    response = config_clients.predict.GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == "ner"
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    on_disk = read_signature_defs(os.path.join(servers[0].base_path, "1"))
    assert dict(signature_map.signature_def) == on_disk
    serving = signature_map.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["text"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in serving.inputs["text"].tensor_shape.dim] == [-1]
    for key, (dtype, rank) in CONTRACT_OUTPUTS.items():
        assert serving.outputs[key].dtype == dtype.as_datatype_enum, key
        assert [d.size for d in serving.outputs[key].tensor_shape.dim] == [-1] * rank, key


def test_get_model_status(config_clients):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "ner"
    response = config_clients.model.GetModelStatus(request, timeout=30)
    states = {s.version: s for s in response.model_version_status}
    assert set(states) == {1, 2}  # Version 3 is on disk but not in the policy.
    State = get_model_status_pb2.ModelVersionStatus.State
    for status in states.values():
        assert status.state == State.AVAILABLE
        assert status.status.error_code == 0 and status.status.error_message == ""
    request.model_spec.version.value = 1
    response = config_clients.model.GetModelStatus(request, timeout=30)
    assert [s.version for s in response.model_version_status] == [1]


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def _mutate(**changes):
    def build():
        request = predict_request(changes.pop("texts", ["北京"]), **{
            k: changes[k] for k in ("model", "version", "label", "signature") if k in changes
        })
        if "inputs" in changes:
            request.ClearField("inputs")
            for key, proto in changes["inputs"].items():
                request.inputs[key].CopyFrom(proto)
        if "output_filter" in changes:
            request.output_filter.extend(changes["output_filter"])
        return request

    return build


def _strings(values, shape=None):
    return tf.make_tensor_proto(values, dtype=tf.string, shape=shape)


def _short_string_val():
    proto = _strings([b"a", b"b"])
    proto.tensor_shape.dim[0].size = 3
    return proto


PREDICT_ERRORS = [
    ("unknown model", _mutate(model="nope"), grpc.StatusCode.NOT_FOUND, "not served"),
    ("empty model name", _mutate(model=""), grpc.StatusCode.INVALID_ARGUMENT, "model_spec.name"),
    ("unknown version", _mutate(version=9), grpc.StatusCode.NOT_FOUND, "version 9"),
    ("version outside policy", _mutate(version=3), grpc.StatusCode.NOT_FOUND, "version 3"),
    ("unknown label", _mutate(label="beta"), grpc.StatusCode.NOT_FOUND, "label 'beta'"),
    ("unknown signature", _mutate(signature="classify"), grpc.StatusCode.NOT_FOUND, "signature"),
    ("missing input", _mutate(inputs={}), grpc.StatusCode.INVALID_ARGUMENT, "missing input"),
    ("extra input", _mutate(inputs={"text": _strings([b"x"]), "lang": _strings([b"zh"])}),
     grpc.StatusCode.INVALID_ARGUMENT, "unexpected input"),
    ("wrong dtype", _mutate(inputs={"text": tf.make_tensor_proto([1, 2], dtype=tf.int32)}),
     grpc.StatusCode.INVALID_ARGUMENT, "dtype DT_INT32"),
    ("wrong rank", _mutate(inputs={"text": _strings([[b"a"], [b"b"]])}),
     grpc.StatusCode.INVALID_ARGUMENT, "shape [2, 1]"),
    ("scalar", _mutate(inputs={"text": _strings(b"a", shape=[])}),
     grpc.StatusCode.INVALID_ARGUMENT, "shape []"),
    ("no texts", _mutate(inputs={"text": _strings([], shape=[0])}),
     grpc.StatusCode.INVALID_ARGUMENT, "no rows"),
    ("invalid UTF-8", _mutate(texts=["北京", b"\xff\xfe bad"]), grpc.StatusCode.INVALID_ARGUMENT,
     "'text'[1] is not valid UTF-8"),
    ("too many texts", _mutate(texts=["a"] * 9), grpc.StatusCode.INVALID_ARGUMENT,
     "9 texts; the limit is 8"),
    ("text too long", _mutate(texts=["短", "北" * 65]), grpc.StatusCode.INVALID_ARGUMENT,
     "'text'[1] has 65 characters; the limit is 64"),
    ("string_val count", _mutate(inputs={"text": _short_string_val()}),
     grpc.StatusCode.INVALID_ARGUMENT, "string_val"),
    ("bad output_filter", _mutate(output_filter=["logits"]), grpc.StatusCode.INVALID_ARGUMENT,
     "output_filter"),
]


@pytest.mark.parametrize("build, code, fragment", [e[1:] for e in PREDICT_ERRORS],
                         ids=[e[0] for e in PREDICT_ERRORS])
def test_predict_errors(config_clients, build, code, fragment):
    with pytest.raises(grpc.RpcError) as info:
        config_clients.predict.Predict(build(), timeout=30)
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details()


def test_limits_at_the_edge_pass(config_clients):
    response = config_clients.predict.Predict(predict_request(["北" * 64] * 8), timeout=30)
    assert len(tf.make_ndarray(response.outputs["num_entities"])) == 8


@pytest.mark.parametrize(
    "fields, fragment",
    [([], "metadata_field is empty"), (["signature_def", "weights"], "'weights'")],
)
def test_metadata_errors(config_clients, fields, fragment):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = "ner"
    with pytest.raises(grpc.RpcError) as info:
        config_clients.predict.GetModelMetadata(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()


def test_status_of_unknown_model_is_not_found(config_clients):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        config_clients.model.GetModelStatus(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "method, request_type",
    [
        ("Classify", classification_pb2.ClassificationRequest),
        ("Regress", regression_pb2.RegressionRequest),
        ("MultiInference", inference_pb2.MultiInferenceRequest),
    ],
)
def test_classify_regress_multiinference_unimplemented(config_clients, method, request_type):
    request = request_type()
    if hasattr(request, "model_spec"):
        request.model_spec.name = "ner"
    with pytest.raises(grpc.RpcError) as info:
        getattr(config_clients.predict, method)(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Predict" in info.value.details()


# --------------------------------------------------------------------------
# health, reflection, config reload
# --------------------------------------------------------------------------


def test_health_and_reflection(config_clients):
    for service in ("", "ner", "tensorflow.serving.PredictionService"):
        reply = config_clients.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as info:
        config_clients.health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    stub = reflection_pb2_grpc.ServerReflectionStub(config_clients.channel)
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=10))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


def test_reload_config_moves_labels_and_rejects_bad_configs(servers, config_clients):
    server = servers[0]
    with open(server.config_path, encoding="utf-8") as f:
        original = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    swapped = model_server_config_pb2.ModelServerConfig()
    swapped.CopyFrom(original)
    labels = swapped.model_config_list.config[0].version_labels
    labels["stable"], labels["canary"] = 2, 1
    try:
        reply = config_clients.model.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=swapped), timeout=60)
        assert reply.status.error_code == 0
        response = config_clients.predict.Predict(predict_request(["北京"], label="stable"), timeout=30)
        assert response.model_spec.version.value == 2
    finally:
        config_clients.model.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=original), timeout=60)
    response = config_clients.predict.Predict(predict_request(["北京"], label="stable"), timeout=30)
    assert response.model_spec.version.value == 1

    bad = model_server_config_pb2.ModelServerConfig()
    bad.CopyFrom(original)
    bad.model_config_list.config[0].model_platform = "pytorch"
    with pytest.raises(grpc.RpcError) as info:
        config_clients.model.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=bad), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pytorch" in info.value.details()


def test_editing_the_config_file_is_applied(servers, config_clients):
    server = servers[0]
    with open(server.config_path, encoding="utf-8") as f:
        original = f.read()

    def stable_version():
        response = config_clients.predict.Predict(predict_request(["北京"], label="stable"), timeout=30)
        return response.model_spec.version.value

    edited = original.replace('key: "stable"\n      value: 1', 'key: "stable"\n      value: 2')
    assert edited != original
    try:
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(edited)
        wait_for(lambda: stable_version() == 2, timeout=30, what="the edited label")
    finally:
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(original)
    wait_for(lambda: stable_version() == 1, timeout=30, what="the restored label")


# --------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------


def test_rest_predict_row_and_columnar(servers, reference):
    server = servers[0]
    want = reference(os.path.join(server.base_path, "1"), TEXTS)

    status, body = rest(server, "/v1/models/ner/labels/stable:predict", {"instances": TEXTS})
    assert status == 200, body
    assert len(body["predictions"]) == len(TEXTS)
    for row, prediction in enumerate(body["predictions"]):
        assert prediction["num_entities"] == want["num_entities"][row]
        n = prediction["num_entities"]
        assert prediction["entity_texts"][:n] == [t.decode() for t in want["entity_texts"][row, :n]]
        assert prediction["entity_starts"][:n] == want["entity_starts"][row, :n].tolist()

    status, body = rest(server, "/v1/models/ner/versions/1:predict",
                        {"inputs": {"text": TEXTS}, "signature_name": "serving_default"})
    assert status == 200, body
    assert body["outputs"]["num_entities"] == want["num_entities"].tolist()
    assert body["outputs"]["tags"] == [[t.decode() for t in row] for row in want["tags"]]

    status, body = rest(server, "/v1/models/ner/versions/1:predict",
                        {"instances": [{"text": t} for t in TEXTS[:2]]})
    assert status == 200 and len(body["predictions"]) == 2


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/v1/models/nope:predict", {"instances": ["a"]}, 404, "not served"),
        ("/v1/models/ner/versions/9:predict", {"instances": ["a"]}, 404, "version 9"),
        ("/v1/models/ner:predict", {"rows": ["a"]}, 400, "instances"),
        ("/v1/models/ner:predict", {"instances": [1, 2]}, 400, "expects strings"),
        ("/v1/models/ner:predict", {"instances": ["a"] * 9}, 400, "limit is 8"),
        ("/v1/models/ner:predict", {"inputs": {"text": ["a"], "x": ["b"]}}, 400, "unexpected input"),
    ],
)
def test_rest_errors(servers, path, body, status, fragment):
    got_status, got = rest(servers[0], path, body)
    assert got_status == status
    assert fragment in got["error"]


def test_rest_status_metadata_and_metrics(servers):
    server = servers[0]
    status, body = rest(server, "/v1/models/ner")
    assert status == 200
    assert {s["version"] for s in body["model_version_status"]} == {"1", "2"}
    assert all(s["state"] == "AVAILABLE" for s in body["model_version_status"])
    status, body = rest(server, "/v1/models/ner/labels/canary/metadata")
    assert status == 200
    assert body["model_spec"]["version"] == "2"
    assert "serving_default" in body["metadata"]["signature_def"]["signature_def"]
    # Counted by the calls above (not by other tests, which may not have run).
    assert metric(server, "tfner_serving_requests_total", api="rest", method="GetModelStatus", code="OK") > 0


def test_rest_keeps_the_connection_alive_unless_a_body_was_left_unread(servers):
    connection = http.client.HTTPConnection("127.0.0.1", servers[0].rest_port, timeout=30)
    body = json.dumps({"instances": ["北京欢迎你"]})
    sockets = []
    for _ in range(2):
        connection.request("POST", "/v1/models/ner:predict", body, {"Content-Type": "application/json"})
        sockets.append(connection.sock)
        response = connection.getresponse()
        assert response.status == 200 and response.version == 11
        assert json.loads(response.read())["predictions"][0]["num_entities"] >= 0
    assert sockets[0] is sockets[1]  # One TCP connection for both requests.

    # A reply that leaves the body unread (unknown path) ends the connection;
    # the client reconnects for the next request, which must parse cleanly.
    connection.request("POST", "/v1/models/ner:nonsense", body)
    response = connection.getresponse()
    assert response.status == 404 and response.getheader("Connection") == "close"
    response.read()
    connection.request("POST", "/v1/models/ner:predict", body)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    connection.request("POST", "/v1/models/ner:predict", body, {"Content-Length": "many"})
    response = connection.getresponse()
    assert response.status == 400 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()


# --------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------


def _burst(target, texts_per_request, timeout=30):
    """Sends one Predict per entry at once (threads behind a barrier)."""
    barrier = threading.Barrier(len(texts_per_request))
    results = [None] * len(texts_per_request)

    def send(index):
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_request(texts_per_request[index])
            grpc.channel_ready_future(channel).result(timeout=timeout)
            barrier.wait(timeout=timeout)
            try:
                results[index] = stub.Predict(request, timeout=timeout)
            except grpc.RpcError as e:
                results[index] = e

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts_per_request))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return results


def test_batching_merges_concurrent_requests(servers, reference):
    server = servers[1]
    texts = [[t] for t in TEXTS] + [["北京上海"], ["上海"]]  # 8 single-text requests
    for _ in range(5):  # Scheduling on 2 shared cores may split a burst; retry a few.
        results = _burst(server.target, texts)
        for request_texts, response in zip(texts, results):
            assert isinstance(response, predict_pb2.PredictResponse), response
            path = os.path.join(server.base_path, str(response.model_spec.version.value))
            assert_rows_match(outputs_of(response), reference(path, request_texts), request_texts)
        if metric(server, "tfner_serving_max_requests_per_call") >= 2:
            break
    assert metric(server, "tfner_serving_max_requests_per_call") >= 2
    calls = metric(server, "tfner_serving_model_calls_total")
    answered = metric(server, "tfner_serving_model_call_requests_total")
    assert answered > calls  # Some call answered more than one request.
    # allowed_batch_sizes [2, 4, 8]: padding never removes rows.
    assert metric(server, "tfner_serving_model_call_padded_texts_total") >= metric(
        server, "tfner_serving_model_call_texts_total")


def test_bad_request_in_a_burst_fails_alone(servers, reference):
    server = servers[1]
    texts = [[t] for t in TEXTS[:6]] + [["北京", b"\xc3\x28"], ["上海"]]
    results = _burst(server.target, texts)
    for index, (request_texts, response) in enumerate(zip(texts, results)):
        if index == 6:
            assert isinstance(response, grpc.RpcError)
            assert response.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "UTF-8" in response.details()
            continue
        assert isinstance(response, predict_pb2.PredictResponse), response
        path = os.path.join(server.base_path, str(response.model_spec.version.value))
        assert_rows_match(outputs_of(response), reference(path, request_texts), request_texts)


def test_batching_caps_texts_per_request_at_max_batch_size(batching_clients):
    with pytest.raises(grpc.RpcError) as info:
        batching_clients.predict.Predict(predict_request(["a"] * 9), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_batch_size" in info.value.details()


def test_deadline_passed_in_queue_is_not_run(servers, batching_clients):
    server = servers[1]
    # batch_timeout is 100 ms: a lone request waits that long for company,
    # so a 30 ms deadline passes while it is queued.
    before_calls = metric(server, "tfner_serving_model_call_requests_total")
    before_expired = metric(server, "tfner_serving_deadline_exceeded_total")
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as info:
            batching_clients.predict.Predict(predict_request(["北京"]), timeout=0.03)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        try:
            wait_for(lambda: metric(server, "tfner_serving_deadline_exceeded_total") > before_expired,
                     timeout=3, what="an expired request")
            break
        except TimeoutError:
            continue  # The call died before reaching the server; send another.
    assert metric(server, "tfner_serving_deadline_exceeded_total") > before_expired
    assert metric(server, "tfner_serving_model_call_requests_total") == before_calls


def test_hot_swap_under_traffic(servers, export_factory, batching_clients):
    server = servers[1]
    stop = threading.Event()
    seen, failures = [], []

    def traffic():
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    response = stub.Predict(predict_request(["北京欢迎你"]), timeout=30)
                    seen.append(response.model_spec.version.value)
                except grpc.RpcError as e:
                    failures.append(f"{e.code().name}: {e.details()}")

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(seen) >= 5, what="traffic on version 1")
        old = max(seen)
        export_factory(server.base_path, old + 1)
        wait_for(lambda: seen and seen[-1] == old + 1, what="responses from the new version")
        count = len(seen)
        wait_for(lambda: len(seen) >= count + 5, what="traffic after the swap")

        def old_unloaded():
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "ner"
            request.model_spec.version.value = old
            status = batching_clients.model.GetModelStatus(request, timeout=10)
            return status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.END

        wait_for(old_unloaded, what=f"version {old} to unload")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == []
    assert old in seen and old + 1 in seen
    first_new = seen.index(old + 1)
    # Two senders: a request already routed to the old version may finish
    # just after the first new answer, but never later than a few calls.
    assert all(v == old + 1 for v in seen[first_new + 4:])


def test_broken_version_is_reported_and_skipped(servers, batching_clients):
    server = servers[1]
    broken = os.path.join(server.base_path, "1000")
    os.makedirs(os.path.join(broken, ".staging"))
    with open(os.path.join(broken, ".staging", "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    os.rename(os.path.join(broken, ".staging", "saved_model.pb"), os.path.join(broken, "saved_model.pb"))

    def status_of_1000():
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "ner"
        request.model_spec.version.value = 1000
        try:
            return batching_clients.model.GetModelStatus(request, timeout=10).model_version_status[0]
        except grpc.RpcError:
            return None

    status = wait_for(lambda: (s := status_of_1000()) is not None
                      and s.state == get_model_status_pb2.ModelVersionStatus.END and s, what="the failed load")
    assert status.status.error_code != 0
    assert broken in status.status.error_message
    # The newest good version keeps serving.
    response = batching_clients.predict.Predict(predict_request(["北京"]), timeout=30)
    assert response.model_spec.version.value < 1000


def test_export_factory_honours_the_contract(export_factory, tmp_path):
    """The fixture's SavedModel loads through the TF1 session path, as TF Serving loads it."""
    path = export_factory(str(tmp_path / "ner"), 5)
    assert path == str(tmp_path / "ner" / "5") and os.listdir(tmp_path / "ner") == ["5"]
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        signature = meta_graph.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        assert set(signature.inputs) == {"text"}
        assert set(signature.outputs) == set(CONTRACT_OUTPUTS)
        fetched = session.run(
            {k: v.name for k, v in signature.outputs.items()},
            {signature.inputs["text"].name: [t.encode() for t in TEXTS]},
        )
    assert fetched["num_entities"].shape == (len(TEXTS),)
    for key, (dtype, rank) in CONTRACT_OUTPUTS.items():
        assert fetched[key].ndim == rank and fetched[key].shape[0] == len(TEXTS), key


# --------------------------------------------------------------------------
# lifecycle: no version -> version appears -> SIGTERM drains
# --------------------------------------------------------------------------


def test_lifecycle_unavailable_then_loads_then_sigterm_drains(tmp_path, export_factory, start_server):
    from conftest import free_port

    base = str(tmp_path / "export" / "ner")
    (tmp_path / "batching.config").write_text(
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 3000000 }\nnum_batch_threads { value: 1 }\n"
    )
    (tmp_path / "monitoring.config").write_text(MONITORING_CONFIG)
    server = start_server(
        "--model_name", "ner", "--model_base_path", base,
        "--enable_batching", "--batching_parameters_file", tmp_path / "batching.config",
        "--monitoring_config_file", tmp_path / "monitoring.config",
        "--rest_api_port", free_port(), "--file_system_poll_wait_seconds", "0.3",
    ).wait_ready()
    assert 'models={"ner": []}' in server.log_text()
    clients = Clients(server.target)
    try:
        reply = clients.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as info:
            clients.predict.Predict(predict_request(["北京"]), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no loaded version" in info.value.details()

        export_factory(base, 1)
        server.wait_health("")

        # A request that sits in the batch queue (3 s timeout) is in flight
        # when SIGTERM arrives; it must complete, then the process exits 0.
        result = {}

        def slow():
            try:
                result["response"] = clients.predict.Predict(predict_request(["北京欢迎你"]), timeout=60)
            except grpc.RpcError as e:
                result["error"] = e

        sender = threading.Thread(target=slow)
        sender.start()
        wait_for(lambda: metric(server, "tfner_serving_in_flight_requests") >= 1, what="an in-flight request")
        server.proc.send_signal(signal.SIGTERM)
        sender.join(60)
        assert "error" not in result, result.get("error")
        assert result["response"].model_spec.version.value == 1
        assert server.proc.wait(60) == 0
        assert "drained; exiting" in server.log_text()
    finally:
        clients.channel.close()


# --------------------------------------------------------------------------
# the batcher, in process (deterministic queue-full and split tests)
# --------------------------------------------------------------------------


def _rows(*values):
    return {"x": np.array(values, dtype=object)}


def test_batcher_pads_merges_and_splits():
    calls = []

    def run(inputs):
        calls.append(inputs["x"].tolist())
        return {"y": np.array([v * 2 for v in inputs["x"]], dtype=object), "n": np.arange(len(inputs["x"]))}

    options = BatchOptions(max_batch_size=8, batch_timeout_s=0.5, num_batch_threads=1,
                           max_enqueued_batches=4, allowed_batch_sizes=(4, 8))
    batcher = batching.Batcher(options)
    results = {}
    barrier = threading.Barrier(3)

    def send(name, values):
        barrier.wait()
        results[name] = batcher.submit("k", run, _rows(*values))

    threads = [threading.Thread(target=send, args=(n, v)) for n, v in
               (("a", ["a1", "a2"]), ("b", ["b1"]), ("c", ["c1", "c2", "c3"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    batcher.stop()
    assert len(calls) == 1 and len(calls[0]) == 8  # 6 rows padded to 8
    for name, values in (("a", ["a1", "a2"]), ("b", ["b1"]), ("c", ["c1", "c2", "c3"])):
        assert results[name]["y"].tolist() == [v * 2 for v in values]


def test_batcher_runs_a_full_batch_without_waiting_for_the_timeout():
    # A request that fills the queue wakes the batch thread; the ones before
    # it did not (the thread was already waiting on the first one's timeout).
    options = BatchOptions(max_batch_size=3, batch_timeout_s=120.0, num_batch_threads=1)
    batcher = batching.Batcher(options)
    calls, results = [], {}
    barrier = threading.Barrier(3)

    def send(value):
        barrier.wait()
        results[value] = batcher.submit("k", lambda x: calls.append(len(x["x"])) or {"y": x["x"]},
                                        _rows(value))["y"].tolist()

    threads = [threading.Thread(target=send, args=(v,), daemon=True) for v in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)  # Far below the 120 s timeout: only a missed wake-up waits that long.
    assert not any(t.is_alive() for t in threads), "the full batch waited for its timeout"
    batcher.stop()
    assert calls == [3] and results == {"a": ["a"], "b": ["b"], "c": ["c"]}


def test_batcher_queue_full_is_resource_exhausted_and_spares_queued_requests():
    started, release = threading.Event(), threading.Event()

    def run(inputs):
        started.set()
        release.wait(10)
        return {"y": inputs["x"]}

    options = BatchOptions(max_batch_size=2, batch_timeout_s=0.0, num_batch_threads=1, max_enqueued_batches=1)
    batcher = batching.Batcher(options)
    outcomes = []

    def send(value):
        outcomes.append(batcher.submit("k", run, _rows(value, value))["y"].tolist())

    first = threading.Thread(target=send, args=("running",))
    first.start()
    assert started.wait(10)  # The only batch thread is now busy.
    second = threading.Thread(target=send, args=("queued",))
    second.start()
    wait_for(lambda: batcher.queued_rows() == 2, timeout=10, what="a full queue")
    with pytest.raises(batching.QueueFullError, match="queue is full"):
        batcher.submit("k", run, _rows("rejected"))
    release.set()
    first.join(10)
    second.join(10)
    batcher.stop()
    assert sorted(outcomes) == [["queued", "queued"], ["running", "running"]]


def test_batcher_drops_expired_requests_without_running_them():
    ran = []
    expired = []
    options = BatchOptions(max_batch_size=4, batch_timeout_s=0.3, num_batch_threads=1, max_enqueued_batches=4)
    batcher = batching.Batcher(options, on_expired=expired.append)
    with pytest.raises(batching.DeadlineExpiredError):
        batcher.submit("k", lambda x: ran.append(x) or {"y": x["x"]}, _rows("late"),
                       deadline=time.monotonic() + 0.05)
    wait_for(lambda: expired, timeout=5, what="the drop")
    batcher.stop()
    assert ran == [] and expired == ["k"]


def test_batcher_model_failure_fails_its_batch_only():
    def run(inputs):
        if "boom" in inputs["x"].tolist():
            raise RuntimeError("model exploded")
        return {"y": inputs["x"]}

    options = BatchOptions(max_batch_size=4, batch_timeout_s=0.0, num_batch_threads=1)
    batcher = batching.Batcher(options)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.submit("k", run, _rows("boom"))
    assert batcher.submit("k", run, _rows("fine"))["y"].tolist() == ["fine"]
    batcher.stop()


# --------------------------------------------------------------------------
# model store and predictor, in process
# --------------------------------------------------------------------------


def test_only_integer_folders_with_a_saved_model_are_versions(tmp_path):
    for name in ("7", ".tmp-8-1a2b", "9.partial", "abc", "-3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "10").mkdir()  # Still being written: no saved_model.pb yet.
    assert list_versions(str(tmp_path)) == {7: str(tmp_path / "7")}
    assert list_versions(str(tmp_path / "missing")) is None


def test_full_queue_answers_resource_exhausted(tmp_path, export_factory):
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=base)], poll_seconds=0, warmup=False)
    store.start()
    options = BatchOptions(max_batch_size=1, batch_timeout_s=0.0, num_batch_threads=1, max_enqueued_batches=1)
    predictor = Predictor(store, Limits(), Metrics(), options)
    with store.acquire("ner") as servable:
        signature = servable.signature("serving_default")
    started, release = threading.Event(), threading.Event()
    real_run = signature.run

    def blocking_run(arrays):
        started.set()
        release.wait(10)
        return real_run(arrays)

    signature.run = blocking_run
    outcomes = []

    def send():
        request = predict_request(["北京"])
        try:
            predictor.predict("ner", None, None, "", dict(request.inputs), array_from_tensor_proto)
            outcomes.append("ok")
        except ServingError as e:
            outcomes.append(e.code)

    first = threading.Thread(target=send)
    first.start()
    assert started.wait(10)  # The batch thread is busy with the first request.
    second = threading.Thread(target=send)
    second.start()
    wait_for(lambda: predictor.batcher.queued_rows() == 1, timeout=10, what="a queued request")
    send()  # The queue holds max_enqueued_batches (1) batch already.
    assert outcomes == [grpc.StatusCode.RESOURCE_EXHAUSTED]
    release.set()
    first.join(10)
    second.join(10)
    predictor.stop()
    store.stop()
    assert outcomes == [grpc.StatusCode.RESOURCE_EXHAUSTED, "ok", "ok"]
