"""python -m tfner.serve over loopback gRPC: Predict, metadata, status, errors, health, reflection, config reloads.

The shared servers are in conftest.py; every served answer is compared with the
SavedModel called in-process on the same texts.
"""

import os
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfner.server.model_store import read_signature_defs
from server_requests import CONTRACT_OUTPUTS, TEXTS, assert_rows_match, outputs_of, predict_request, wait_for

pytestmark = pytest.mark.slow


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
    ("unknown signature", _mutate(signature="classify"), grpc.StatusCode.FAILED_PRECONDITION, "signature"),
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
    ("too many characters in all", _mutate(texts=["北" * 64] * 8), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "512 characters in all; this server takes at most 500 per request (--max_chars_per_request"),
    ("string_val count", _mutate(inputs={"text": _short_string_val()}),
     grpc.StatusCode.INVALID_ARGUMENT, "string_val"),
    ("bad output_filter", _mutate(output_filter=["logits"]), grpc.StatusCode.INVALID_ARGUMENT,
     "output_filter"),
    ("repeated output_filter", _mutate(output_filter=["tags", "tags"]), grpc.StatusCode.INVALID_ARGUMENT,
     "output_filter names ['tags'] more than once"),
]


@pytest.mark.parametrize("build, code, fragment", [e[1:] for e in PREDICT_ERRORS],
                         ids=[e[0] for e in PREDICT_ERRORS])
def test_predict_errors(config_clients, build, code, fragment):
    with pytest.raises(grpc.RpcError) as info:
        config_clients.predict.Predict(build(), timeout=30)
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details()


def test_limits_at_the_edge_pass(config_clients):
    response = config_clients.predict.Predict(predict_request(["北" * 64] * 7 + ["北" * 52]), timeout=30)
    assert len(tf.make_ndarray(response.outputs["num_entities"])) == 8


def test_long_texts_pass_by_default(servers, batching_clients, reference):
    """No per-text limit unless asked for: the export windows long texts, as TF Serving would serve them."""
    server = servers[1]  # Started with the default limits.
    texts = [("他从上海来，去北京的清华大学读书。" * 200)[:3000], "北京"]
    response = batching_clients.predict.Predict(predict_request(texts), timeout=60)
    want = reference(os.path.join(server.base_path, "1"), texts)
    assert_rows_match(outputs_of(response), want, texts)


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


def stable_version(clients):
    """The version the "stable" label routes to."""
    return clients.predict.Predict(predict_request(["北京"], label="stable"), timeout=30).model_spec.version.value


def test_editing_the_config_file_is_applied(servers, config_clients):
    server = servers[0]
    with open(server.config_path, encoding="utf-8") as f:
        original = f.read()

    edited = original.replace('key: "stable"\n      value: 1', 'key: "stable"\n      value: 2')
    assert edited != original
    try:
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(edited)
        wait_for(lambda: stable_version(config_clients) == 2, timeout=30, what="the edited label")
    finally:
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(original)
    wait_for(lambda: stable_version(config_clients) == 1, timeout=30, what="the restored label")


GBK_COMMENT = "# 北京\n".encode("gbk")  # not UTF-8: an editor's legacy encoding


@pytest.mark.parametrize("flag, extra, text", [
    ("--model_config_file", [], 'model_config_list { config { name: "ner" base_path: "/models/ner" } }'),
    ("--batching_parameters_file", ["--enable_batching"], "max_batch_size { value: 8 }"),
    ("--monitoring_config_file", ["--rest_api_port", "1"], "prometheus_config { enable: true }"),
])
def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path, start_server, flag, extra, text):
    path = tmp_path / "file.config"
    path.write_bytes(GBK_COMMENT + text.encode())
    server = start_server("--model_base_path", tmp_path / "ner", flag, path, *extra)
    assert server.proc.wait(60) == 2, server.log_text()  # it was a UnicodeDecodeError traceback, exit 1
    assert f"{path}: not UTF-8 text (byte 0xb1 at offset 2); save the file as UTF-8" in server.log_text()
    assert "Traceback" not in server.log_text()


def test_a_config_file_edited_to_non_utf8_is_refused_and_later_edits_still_apply(servers, config_clients):
    server = servers[0]
    with open(server.config_path, encoding="utf-8") as f:
        original = f.read()

    edited = original.replace('key: "stable"\n      value: 1', 'key: "stable"\n      value: 2')
    try:
        with open(server.config_path, "wb") as f:
            f.write(GBK_COMMENT + original.encode())
        wait_for(lambda: f"not reloaded, keeping the current one: {server.config_path}: not UTF-8 text"
                 in server.log_text(), timeout=30, what="the refusal of the non-UTF-8 edit")
        assert stable_version(config_clients) == 1
        time.sleep(2.0)  # ~6 more polls (every 0.3 s) of the same bad file
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(edited)  # the watcher survived: a valid edit is applied
        wait_for(lambda: stable_version(config_clients) == 2, timeout=30, what="the edit after the non-UTF-8 one")
        # The watcher kept polling through the sleep (it is still applying edits): the bad file was said once.
        assert server.log_text().count("not UTF-8 text") == 1, server.log_text()
    finally:
        with open(server.config_path, "w", encoding="utf-8") as f:
            f.write(original)
    wait_for(lambda: stable_version(config_clients) == 1, timeout=30, what="the restored label")


def test_a_model_removed_by_a_reload_has_its_loaded_versions_gauge_zeroed(tmp_path, export_factory, start_server):
    from conftest import MONITORING_CONFIG, free_port
    from server_requests import Clients, metric

    for name in ("ner", "other"):
        export_factory(str(tmp_path / name), 1)
    config = model_server_config_pb2.ModelServerConfig()
    for name in ("ner", "other"):
        config.model_config_list.config.add(name=name, base_path=str(tmp_path / name))
    (tmp_path / "models.config").write_text(text_format.MessageToString(config), encoding="utf-8")
    (tmp_path / "monitoring.config").write_text(MONITORING_CONFIG, encoding="utf-8")
    server = start_server("--model_config_file", tmp_path / "models.config", "--rest_api_port", free_port(),
                          "--monitoring_config_file", tmp_path / "monitoring.config").wait_ready()
    assert metric(server, "tfner_serving_loaded_versions", model="other") == 1
    del config.model_config_list.config[1]
    clients = Clients(server.target)
    try:
        reply = clients.model.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config),
                                                        timeout=60)
        assert reply.status.error_code == 0
    finally:
        clients.channel.close()
    assert metric(server, "tfner_serving_loaded_versions", model="other") == 0
    assert metric(server, "tfner_serving_loaded_versions", model="ner") == 1


def test_grpc_channel_arguments_age_connections_out(tmp_path_factory, export_factory, start_server):
    """--grpc_channel_arguments reaches gRPC as TF Serving passes it: with a connection age, the server closes a
    client's connection (the channel drops to IDLE) and the next call reconnects and is answered: how the
    Deployment moves clients off a stopping pod and onto new ones (serving/k8s/deployment.yaml)."""
    base = str(tmp_path_factory.mktemp("aged") / "ner")
    export_factory(base, 1)
    server = start_server("--model_base_path", base, "--grpc_channel_arguments",
                          "grpc.max_connection_age_ms=300, grpc.max_connection_age_grace_ms=300").wait_ready()
    states = []
    with grpc.insecure_channel(server.target) as channel:
        channel.subscribe(states.append)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        first = stub.Predict(predict_request(TEXTS[:1]), timeout=30)
        wait_for(lambda: grpc.ChannelConnectivity.IDLE in states[states.index(grpc.ChannelConnectivity.READY):],
                 timeout=20, what="the server closing the aged connection")
        second = stub.Predict(predict_request(TEXTS[:1]), timeout=30)
    assert_rows_match(outputs_of(second), outputs_of(first), TEXTS[:1])
    server.stop()
