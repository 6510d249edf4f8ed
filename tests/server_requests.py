"""Helpers shared by the server suites: requests, comparisons, metrics, REST calls."""

import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc


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
