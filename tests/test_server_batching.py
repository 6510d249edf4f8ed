"""Batching: concurrent requests merged into one model call over loopback, and the batcher in process."""

import os
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfner.server import batching
from tfner.server.config import BatchOptions
from server_requests import TEXTS, assert_rows_match, metric, outputs_of, predict_request, wait_for

pytestmark = pytest.mark.slow


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


def test_server_runs_with_the_thread_counts_it_was_given(servers):
    # conftest starts the batching server with 1 intra-op and 2 inter-op threads; it said so when it started,
    # and test_batching_merges_concurrent_requests checked its answers against the SavedModel in process.
    assert "TensorFlow threads: intra-op 1, inter-op 2; oneDNN on" in servers[1].log_text()  # tfner's default
    assert "TensorFlow threads: intra-op TensorFlow's choice, inter-op TensorFlow's choice" in servers[0].log_text()


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
    options = BatchOptions(max_batch_size=3, batch_timeout_s=3600.0, num_batch_threads=1)
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
        t.join(300)  # Not a speed figure: a missed wake-up would wait out the hour-long timeout.
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
