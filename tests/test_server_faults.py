"""tfner.serve under faults: half-written versions, a deleted model folder, a full disk, a restart.

One server process serves these tests in order (the last one restarts it on the same port). What is
decided here, and documented in tfner/server/model_store.py:

- a newest version that fails to load is logged with its reason and reported by GetModelStatus, the
  version before it keeps serving, and the failed one is retried once a file of it changes (the writer
  finished its copy); tests/test_server_model_store.py covers a saved_model.pb that is no SavedModel;
- a model folder deleted while serving does not take the model down: its loaded version answers from
  memory, with one warning, until version folders appear again;
- a disk that fills while a version is written leaves a truncated version: refused like a half-written one;
- a client that retries UNAVAILABLE loses no request across a SIGTERM and a restart on the same port.
"""

import errno
import os
import shutil
import subprocess
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2

from conftest import free_port
from server_requests import Clients, outputs_of, predict_request, wait_for

pytestmark = pytest.mark.slow

State = get_model_status_pb2.ModelVersionStatus.State
TEXTS = ["张三在北京的清华大学读书。", "李四去了上海。", "无实体的句子"]


class Faults:
    """The server under test, the export it copies versions from, and how to restart it."""

    def __init__(self, start_server, export_factory, template, base):
        self.start_server, self.export_factory, self.template, self.base = start_server, export_factory, template, base
        self.args = ["--port", free_port(), "--model_name", "ner", "--model_base_path", base,
                     "--file_system_poll_wait_seconds", "0.3"]
        self.server = self.start()
        self.clients = Clients(self.server.target)

    def start(self):
        server = self.start_server(*self.args).wait_ready()
        server.wait_health()
        return server

    def served_version(self):
        return self.clients.predict.Predict(predict_request(TEXTS), timeout=30).model_spec.version.value

    def status(self, version):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "ner"
        request.model_spec.version.value = version
        try:
            return self.clients.model.GetModelStatus(request, timeout=10).model_version_status[0]
        except grpc.RpcError:
            return None  # Not seen yet.

    def wait_failed(self, version):
        return wait_for(lambda: (s := self.status(version)) is not None and s.state == State.END
                        and s.status.error_code != 0 and s, what=f"version {version} to fail loading")

    def wait_served(self, version):
        wait_for(lambda: self.served_version() == version, what=f"version {version} to serve")

    def next_version(self):
        return max(int(n) for n in os.listdir(self.base) if n.isdigit()) + 1


@pytest.fixture(scope="module")
def faults(tmp_path_factory, start_server, export_factory, tiny_run):
    base = str(tmp_path_factory.mktemp("faults") / "ner")
    export_factory(base, 1)
    faults = Faults(start_server, export_factory, tiny_run["export"], base)
    yield faults
    faults.clients.channel.close()


def assert_answers_match(faults, reference, response):
    """Every version here is a copy of the template export: the in-process template is the reference."""
    want = reference(faults.template, TEXTS)
    got = outputs_of(response)
    assert got["num_entities"].tolist() == want["num_entities"].tolist()
    assert got["entity_texts"].tolist() == want["entity_texts"].tolist()


# --------------------------------------------------------------------------
# A newest version that is half-written
# --------------------------------------------------------------------------


def without_variables(template, folder):
    """A copy that has written saved_model.pb but not yet variables/ (a writer copying file by file)."""
    os.makedirs(folder)
    shutil.copy(os.path.join(template, "saved_model.pb"), folder)


def with_truncated_variables(template, folder):
    shutil.copytree(template, folder)
    data = os.path.join(folder, "variables", "variables.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)


def with_corrupt_warmup(template, folder):
    shutil.copytree(template, folder)
    with open(os.path.join(folder, "assets.extra", "tf_serving_warmup_requests"), "wb") as f:
        f.write(b"\x00" * 40)


HALF_WRITTEN = [
    ("saved_model.pb without variables/", without_variables),
    ("a truncated variables shard", with_truncated_variables),
    ("a corrupt warmup file", with_corrupt_warmup),
]


@pytest.mark.parametrize("write_broken", [c[1] for c in HALF_WRITTEN], ids=[c[0] for c in HALF_WRITTEN])
def test_half_written_newest_version_is_refused_then_loaded_once_complete(faults, reference, write_broken):
    before = faults.served_version()
    version = faults.next_version()
    folder = os.path.join(faults.base, str(version))
    write_broken(faults.template, folder)

    status = faults.wait_failed(version)
    assert folder in status.status.error_message
    assert f"model ner version {version} at {folder} failed to load: " in faults.server.log_text()
    response = faults.clients.predict.Predict(predict_request(TEXTS), timeout=30)
    assert response.model_spec.version.value == before  # the previous version keeps serving
    assert_answers_match(faults, reference, response)

    shutil.copytree(faults.template, folder, dirs_exist_ok=True)  # the writer finishes its copy
    faults.wait_served(version)
    assert_answers_match(faults, reference, faults.clients.predict.Predict(predict_request(TEXTS), timeout=30))


# --------------------------------------------------------------------------
# The disk fills while a version is written
# --------------------------------------------------------------------------


def copy_until_full(template, folder):
    """Copies saved_model.pb first, then the rest, as far as the disk takes it; returns the ENOSPC errors."""
    full = []
    names = ["saved_model.pb"] + sorted(
        os.path.relpath(os.path.join(root, name), template)
        for root, _, files in os.walk(template) for name in files if name != "saved_model.pb"
    )
    for name in names:
        target = os.path.join(folder, name)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(os.path.join(template, name), target)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            full.append(name)
    return full


def test_a_full_disk_leaves_a_version_that_is_refused_while_serving_goes_on(faults, reference):
    before = faults.served_version()
    version = faults.next_version()
    folder = os.path.join(faults.base, str(version))
    os.makedirs(folder)
    # The version's folder is a 1 MB file system; the export holds 1.4 MB.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder], capture_output=True)
    if mounted.returncode:
        os.rmdir(folder)
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        full = copy_until_full(faults.template, folder)
        assert "saved_model.pb" in full  # the disk filled inside the graph file
        status = faults.wait_failed(version)
        assert "failed to load" in status.status.error_message
        assert f"model ner version {version} at {folder} failed to load: " in faults.server.log_text()
        response = faults.clients.predict.Predict(predict_request(TEXTS), timeout=30)
        assert response.model_spec.version.value == before
        assert_answers_match(faults, reference, response)
    finally:
        if subprocess.run(["umount", folder], capture_output=True).returncode:
            subprocess.run(["umount", "-l", folder], check=True)
    os.rmdir(folder)  # room again: the writer starts over
    faults.export_factory(faults.base, version)
    faults.wait_served(version)


# --------------------------------------------------------------------------
# The model folder is deleted while serving
# --------------------------------------------------------------------------


def test_a_deleted_model_folder_keeps_serving_from_memory(faults, reference):
    version = faults.served_version()
    shutil.rmtree(faults.base)
    warning = f"model ner: base path {faults.base} does not exist; still serving version(s) [{version}] from memory"
    wait_for(lambda: warning in faults.server.log_text(), what="the warning about the missing base path")
    for _ in range(5):  # several polls later, still answering
        response = faults.clients.predict.Predict(predict_request(TEXTS), timeout=30)
        assert response.model_spec.version.value == version
        assert_answers_match(faults, reference, response)
        time.sleep(0.3)
    assert faults.status(version).state == State.AVAILABLE
    assert faults.server.log_text().count(warning) == 1  # said once, not every poll

    faults.export_factory(faults.base, version + 1)  # the folder comes back with a new version
    faults.wait_served(version + 1)


# --------------------------------------------------------------------------
# A client retrying across a restart
# --------------------------------------------------------------------------


def test_client_retrying_across_a_restart_loses_no_request(faults, reference):
    from tfner.client import NerClient

    texts = [f"{name}在{city}工作。" for name in ("张伟", "王芳", "李娜", "刘洋") for city in ("北京", "上海", "深圳")] * 4
    serving = faults.served_version()
    answers, errors, answered_at = {}, [], {}
    started = threading.Event()

    def send():
        # Enough retries to outlast a restart: at most ~0.5 s apart, for 200 attempts.
        with NerClient(faults.server.target, retries=200, backoff_s=0.05, max_backoff_s=0.5, timeout=10) as client:
            for index, text in enumerate(texts):
                try:
                    answers[index] = client.predict([text])[0]
                    answered_at[index] = time.monotonic()
                except Exception as e:  # a lost request
                    errors.append(f"{index}: {type(e).__name__}: {e}")
                if index == 3:
                    started.set()
                time.sleep(0.02)

    sender = threading.Thread(target=send)
    sender.start()
    assert started.wait(60)
    assert faults.server.stop() == 0  # SIGTERM: drain, exit 0
    stopped_at = time.monotonic()
    faults.server = faults.start()  # the same flags, the same port
    sender.join(180)
    assert not sender.is_alive()
    assert errors == []
    assert sorted(answers) == list(range(len(texts)))
    assert any(t > stopped_at for t in answered_at.values())  # the restarted server answered some
    assert any(t < stopped_at for t in answered_at.values())  # and the first one others
    want = reference(faults.template, texts)
    for index, entities in answers.items():
        n = int(want["num_entities"][index])
        assert [(e.label, e.start, e.end, e.text) for e in entities] == [
            (want["entity_labels"][index, i].decode(), int(want["entity_starts"][index, i]),
             int(want["entity_ends"][index, i]), want["entity_texts"][index, i].decode()) for i in range(n)
        ]
    faults.clients.channel.close()
    faults.clients = Clients(faults.server.target)
    assert faults.served_version() == serving  # the restarted server loaded the same newest version
