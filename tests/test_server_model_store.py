"""Versions: hot swaps, broken versions, the server lifecycle, and the model store and predictor in process."""

import dataclasses
import os
import re
import shutil
import signal
import threading
import weakref

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import MONITORING_CONFIG
from tfner.server.model_store import ModelStore
from tfner.server.model_store import State
from tfner.server.model_store import list_versions
from tfner.server.predictor import Limits
from tfner.server.predictor import Predictor
from tfner.server.predictor import array_from_tensor_proto
from tfner.server.config import BatchOptions
from tfner.server.config import ModelSpecConfig
from tfner.server.errors import ServingError
from tfner.server.metrics import Metrics
from server_requests import CONTRACT_OUTPUTS, TEXTS, Clients, metric, predict_request, wait_for

pytestmark = pytest.mark.slow


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
        wait_for(lambda: "shutting down" in server.log_text(), what="shutdown to begin")
        # A call that arrives while the server drains is refused with a status
        # clients retry (UNAVAILABLE), never CANCELLED.
        with pytest.raises(grpc.RpcError) as refused:
            clients.predict.Predict(predict_request(["上海"]), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        sender.join(60)
        assert "error" not in result, result.get("error")
        assert result["response"].model_spec.version.value == 1
        assert server.proc.wait(60) == 0
        assert "drained; exiting" in server.log_text()
    finally:
        clients.channel.close()


def test_only_integer_folders_with_a_saved_model_are_versions(tmp_path):
    for name in ("7", ".tmp-8-1a2b", "9.partial", "abc", "-3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "10").mkdir()  # Still being written: no saved_model.pb yet.
    assert list_versions(str(tmp_path)) == {7: str(tmp_path / "7")}
    assert list_versions(str(tmp_path / "missing")) is None


def test_version_folders_beyond_int64_are_skipped_with_a_warning(tmp_path, caplog):
    """TF Serving's versions are int64 (so are model_spec.version's): a larger one could be loaded but never asked for."""
    for name in ("9223372036854775807", "9223372036854775808", "99999999999999999999"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert list_versions(str(tmp_path)) == {2**63 - 1: str(tmp_path / "9223372036854775807")}
    warned = [r.getMessage() for r in caplog.records if "larger than the largest int64 version" in r.getMessage()]
    assert len(warned) == 2 and str(tmp_path / "99999999999999999999") in " ".join(warned), warned
    list_versions(str(tmp_path))  # the next poll does not say it again
    assert len([r for r in caplog.records if "largest int64" in r.getMessage()]) == 2


def test_a_version_folder_given_as_the_base_path_is_named_so(tmp_path, export_factory, caplog):
    """--model_base_path export/ner/1 serves nothing (as in TF Serving, its subfolders are the versions): the
    warning says it is a version folder and names the parent to give, not just "holds no version folder"."""
    version = export_factory(str(tmp_path / "ner"), 1)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=version)], poll_seconds=0, warmup=False)
    store.start()
    with pytest.raises(ServingError, match="model 'ner' has no versions yet"):
        store.version_status("ner")
    assert (f"model ner: base path {version} is itself a version folder (it holds saved_model.pb); give its "
            f"parent, {tmp_path / 'ner'}, as the base path; watching it") in caplog.text
    store.stop()


def test_full_queue_answers_unavailable_as_tf_serving_does(tmp_path, export_factory):
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
    assert outcomes == [grpc.StatusCode.UNAVAILABLE]  # TF Serving's code for a full queue
    release.set()
    first.join(10)
    second.join(10)
    predictor.stop()
    store.stop()
    assert outcomes == [grpc.StatusCode.UNAVAILABLE, "ok", "ok"]


def test_a_dropped_version_is_freed(tmp_path, export_factory):
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=base)], poll_seconds=0, warmup=False)
    store.start()
    with store.acquire("ner") as servable:
        assert servable.version == 1
        old = weakref.ref(servable._loaded)
    del servable
    export_factory(base, 2)
    store.poll()  # loads version 2, retires version 1 and drops it: no request holds it
    with store.acquire("ner") as servable:
        assert servable.version == 2
    store.stop()
    assert old() is None  # nothing keeps the old version's graph and weights alive


def _calls_during(action, call):
    """Runs action() while another thread makes call() in a loop; returns {outcome: count} of those calls."""
    outcomes, stop = {}, threading.Event()

    def caller():
        while not stop.is_set():
            try:
                call()
                outcome = "ok"
            except ServingError as e:
                outcome = e.code.name
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        action()
    finally:
        stop.set()
        thread.join(30)
    return outcomes


def _version_of(store, **kwargs):
    with store.acquire("ner", **kwargs) as servable:
        return servable.version


def test_a_version_retired_mid_request_is_dropped_when_the_request_ends(tmp_path, export_factory):
    """With --file_system_poll_wait_seconds 0 no later poll comes: the request's end itself must drop it."""
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=base)], poll_seconds=0, warmup=False)
    store.start()
    with store.acquire("ner") as servable:
        export_factory(base, 2)
        store.poll()  # version 2 serves; 1 is retired but busy
        assert [(v, s) for v, s, _, _ in store.version_status("ner")] == [(2, State.AVAILABLE), (1, State.UNLOADING)]
        assert servable.version == 1
    wait_for(lambda: store.version_status("ner", 1)[0][1] == State.END, timeout=10, what="version 1 to end")
    store.stop()


def test_moving_a_model_to_another_base_path_leaves_no_gap(tmp_path, export_factory):
    """The old path's versions answer until the new path has one loaded (a reload used to retire them first)."""
    old, new = str(tmp_path / "a" / "ner"), str(tmp_path / "b" / "ner")
    export_factory(old, 1)
    export_factory(new, 5)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=old)], poll_seconds=0, warmup=False)
    store.start()
    outcomes = _calls_during(lambda: store.reload([ModelSpecConfig(name="ner", base_path=new)]),
                             lambda: _version_of(store))
    assert set(outcomes) == {"ok"} and outcomes["ok"] > 1, outcomes
    assert _version_of(store) == 5
    wait_for(lambda: store._retiring == [], timeout=10, what="the old path's version to be dropped")
    store.stop()


def test_a_label_moved_to_a_version_not_loaded_yet_keeps_its_target_until_it_loads(tmp_path, export_factory):
    """TF Serving refuses such a reload (unless --allow_version_labels_for_unavailable_models); tfner keeps the
    label on its old version while the new one loads, then moves it: no NOT_FOUND in between."""
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    export_factory(base, 2)
    spec = ModelSpecConfig(name="ner", base_path=base, policy="specific", versions=(1,), labels={"canary": 1})
    store = ModelStore([spec], poll_seconds=0, warmup=False)
    store.start()
    moved = ModelSpecConfig(name="ner", base_path=base, policy="specific", versions=(1, 2), labels={"canary": 2})
    outcomes = _calls_during(lambda: store.reload([moved]), lambda: _version_of(store, label="canary"))
    assert set(outcomes) == {"ok"} and outcomes["ok"] > 1, outcomes
    assert _version_of(store, label="canary") == 2
    store.stop()


def test_status_after_a_move_to_an_empty_base_path_reports_the_versions_still_serving(tmp_path, export_factory):
    """Until the new base path has a version, the old one's answers requests: GetModelStatus must say so."""
    old, new = str(tmp_path / "a" / "ner"), str(tmp_path / "b" / "ner")
    export_factory(old, 1)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=old)], poll_seconds=0, warmup=False)
    store.start()
    store.reload([ModelSpecConfig(name="ner", base_path=new)])
    assert _version_of(store) == 1
    assert [(v, s) for v, s, _, _ in store.version_status("ner")] == [(1, State.AVAILABLE)]
    assert store.version_status("ner", 1)[0][1] == State.AVAILABLE
    export_factory(new, 5)
    store.poll()
    assert [(v, s) for v, s, _, _ in store.version_status("ner")] == [(5, State.AVAILABLE)]
    store.stop()


def test_a_label_moved_to_a_version_that_fails_to_load_stays_until_it_loads(tmp_path, export_factory, caplog):
    base = str(tmp_path / "ner")
    for version in (1, 2):
        export_factory(base, version)
    broken = tmp_path / "ner" / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    spec = ModelSpecConfig(name="ner", base_path=base, policy="specific", versions=(1, 2),
                           labels={"stable": 1, "canary": 2})
    store = ModelStore([spec], poll_seconds=0, warmup=False)
    store.start()
    moved = dataclasses.replace(spec, versions=(1, 2, 3), labels={"stable": 1, "canary": 3})
    store.reload([moved])
    assert store.version_status("ner", 3)[0][1] == State.END  # failed
    assert _version_of(store, label="canary") == 2
    assert "label 'canary' stays on version 2 until version 3 is loaded; its state is END" in caplog.text
    assert caplog.text.count("label 'canary' stays") == 1
    store.poll()
    assert caplog.text.count("label 'canary' stays") == 1  # said once, not every poll
    shutil.rmtree(broken)
    export_factory(base, 3)  # the version is fixed: the label moves at the poll that loads it
    store.poll()
    assert _version_of(store, label="canary") == 3
    store.stop()


def with_slow_warmup(export_factory, base, version, records):
    """Writes version `version` under base with `records` long warmup requests (~0.1-0.3 s each): a slow load."""
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    staging = export_factory(os.path.join(base, ".staging"), version)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ner"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([("他从上海来，去北京。" * 50).encode()] * 8, dtype=tf.string))
    record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    with tf.io.TFRecordWriter(os.path.join(staging, "assets.extra", "tf_serving_warmup_requests")) as writer:
        for _ in range(records):
            writer.write(record.SerializeToString())
    os.rename(staging, os.path.join(base, str(version)))  # appears whole to the server's poll


def warmup_given_up(server):
    """After a SIGTERM during a 1,000-record warmup: the process's log, once it exited 0 having given the warmup
    up part-way (judged by the records it replayed, not by how long it took)."""
    assert server.proc.wait(600) == 0, server.log_text()
    log_text = server.log_text()
    replayed = re.search(r"stopped after (\d+) warmup request", log_text)
    assert replayed and int(replayed.group(1)) < 1000, log_text
    return log_text


def test_negative_shutdown_grace_is_refused_at_start(tmp_path, start_server):
    server = start_server("--model_base_path", tmp_path, "--shutdown_grace_seconds", "-1")
    assert server.proc.wait(60) == 2, server.log_text()  # it used to start, and crash at SIGTERM
    assert "--shutdown_grace_seconds must be >= 0" in server.log_text()


def test_sigterm_during_a_long_load_keeps_to_the_grace(tmp_path, export_factory, start_server):
    """A version being warmed up when SIGTERM comes is given up: the shutdown does not wait for its warmup."""
    base = str(tmp_path / "ner")
    export_factory(base, 1)
    server = start_server("--model_base_path", base, "--file_system_poll_wait_seconds", "0.3",
                          "--shutdown_grace_seconds", "3").wait_ready()
    with_slow_warmup(export_factory, base, 2, records=1000)  # minutes of warmup
    wait_for(lambda: "warming up ner version 2" in server.log_text(), what="version 2's warmup")
    server.proc.send_signal(signal.SIGTERM)
    log_text = warmup_given_up(server)
    assert "model ner version 2: loading" in log_text and "drained; exiting" in log_text, log_text


def test_sigterm_during_the_first_load_exits_without_waiting_for_it(tmp_path, export_factory, start_server):
    """Before the server is ready there is nothing to drain: a SIGTERM gives the first load up."""
    base = str(tmp_path / "ner")
    with_slow_warmup(export_factory, base, 1, records=1000)  # minutes of warmup, before any port opens
    server = start_server("--model_base_path", base, "--shutdown_grace_seconds", "3")
    wait_for(lambda: "warming up ner version 1" in server.log_text() or server.proc.poll() is not None,
             what="version 1's warmup")
    server.proc.send_signal(signal.SIGTERM)
    log_text = warmup_given_up(server)
    assert "stop asked for during the first load" in log_text and "tfner.serve ready" not in log_text, log_text


def test_a_config_edit_made_during_the_first_load_is_applied(tmp_path, export_factory, start_server):
    base = str(tmp_path / "ner")
    with_slow_warmup(export_factory, base, 1, records=20)  # seconds of warmup at start
    config = tmp_path / "models.config"
    text = f'model_config_list {{ config {{ name: "ner" base_path: "{base}" }} }}\n'
    config.write_text(text, encoding="utf-8")
    server = start_server("--model_config_file", config, "--model_config_file_poll_wait_seconds", "0.3")
    # Flags and config are parsed before this line is logged; the model loads after it.
    wait_for(lambda: "TensorFlow threads" in server.log_text() or server.proc.poll() is not None,
             what="the config to be parsed")
    config.write_text(text.replace("} }", 'version_labels { key: "stable" value: 1 } } }'), encoding="utf-8")
    server.wait_ready()
    clients = Clients(server.target)

    def stable():
        try:
            return clients.predict.Predict(predict_request(["北京"], label="stable"), timeout=30).model_spec.version.value
        except grpc.RpcError:
            return None  # NOT_FOUND: no such label yet

    try:
        assert wait_for(stable, timeout=20, what="the edit made during the first load") == 1
    finally:
        clients.channel.close()
