"""Shared fixtures: a SavedModel factory and tfner.serve server processes.

`export_factory` is the one fixture other suites may rely on; its contract is
in its docstring. The server fixtures start real `python -m tfner.serve`
subprocesses on loopback (port 0, read back from the startup line) and are
session-scoped because each one pays for a TensorFlow import (~5 s).
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

# Before anything imports TensorFlow: tfner turns oneDNN on, which TensorFlow reads once, when it loads. Every tfner
# command (the servers these fixtures start among them) runs that way; without it, on CPUs where TensorFlow leaves
# oneDNN off by itself (AVX2, no AVX-512), the in-process references ran Eigen's kernels and differed from the
# served answers in the last bits of the scores.
import tfner  # noqa: F401,E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Quiet TF's C++ start-up chatter in every subprocess; keep errors.
SUBPROCESS_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
SUBPROCESS_ENV["PYTHONPATH"] = os.pathsep.join(
    p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p
)


@pytest.fixture(scope="session", autouse=True)
def session_tempdir(tmp_path_factory):
    """The temp dir of this process and its children, inside pytest's own folder for the session.

    Whatever the tests and the servers, trainers and Beam workers they start leave in the temp dir stays there;
    pytest prunes its folders, keeping the last three sessions.
    """
    scratch = str(tmp_path_factory.mktemp("tempdir"))
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = scratch
    yield scratch
    tempfile.tempdir = saved[0]
    if saved[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[1]


# --------------------------------------------------------------------------
# SavedModel factory
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def export_factory(tiny_run):
    """Returns make(base_dir: str, version: int) -> str: writes the tiny tfner export to base_dir/<version> (atomically) and returns that path."""
    template = tiny_run["export"]

    def make(base_dir, version):
        os.makedirs(base_dir, exist_ok=True)
        final = os.path.join(base_dir, str(int(version)))
        # Copy under a non-integer name, then rename: a watcher never sees a
        # half-written version directory.
        staging = os.path.join(base_dir, f".tmp-{version}-{uuid.uuid4().hex}")
        shutil.copytree(template, staging)
        os.rename(staging, final)
        return final

    return make


# --------------------------------------------------------------------------
# tfner.serve subprocesses
# --------------------------------------------------------------------------

_READY = re.compile(r"tfner\.serve ready: grpc_port=(\d+) rest_port=(\d+|none)")


class ServerProcess:
    """A running `python -m tfner.serve` subprocess and its ports."""

    def __init__(self, args, log_path, startup_timeout=300.0):
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfner.serve", *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=SUBPROCESS_ENV,
            cwd=REPO_ROOT,
        )
        self.grpc_port = None
        self.rest_port = None
        self._startup_timeout = startup_timeout

    def wait_ready(self):
        """Blocks until the startup line is logged; returns self."""
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            match = _READY.search(self.log_text())
            if match:
                self.grpc_port = int(match.group(1))
                self.rest_port = None if match.group(2) == "none" else int(match.group(2))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"tfner.serve exited early:\n{self.log_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"tfner.serve did not start:\n{self.log_text()}")

    @property
    def target(self):
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self):
        return f"http://127.0.0.1:{self.rest_port}"

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def wait_health(self, service="", want="SERVING", timeout=60.0):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        status = None
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    if status == want:
                        return
                except grpc.RpcError as e:
                    status = e.code()
                time.sleep(0.1)
        raise TimeoutError(f"health {service!r} never became {want} (last {status}):\n{self.log_text()}")

    def stop(self, timeout=30.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """Returns start(*args) -> ServerProcess (not yet waited for); all are stopped at session end."""
    started = []

    def start(*args):
        log_path = str(tmp_path_factory.mktemp("serve_log") / "serve.log")
        server = ServerProcess(["--port", "0", "--bind_address", "127.0.0.1", *map(str, args)], log_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def free_port():
    """A loopback port free right now (REST's 0 means "off", as in TF Serving)."""
    import socket

    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rewrite_base_paths(config_text, mapping):
    """Replaces each `base_path: "<old>"` in a models.config text with mapping[old]."""

    def swap(match):
        old = match.group(1)
        return f'base_path: "{mapping.get(old, old)}"'

    return re.sub(r'base_path:\s*"([^"]*)"', swap, config_text)


MONITORING_CONFIG = """
prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""


@pytest.fixture(scope="session")
def config_server(tmp_path_factory, export_factory, start_server):
    """tfner.serve started from serving/models.config, base path rewritten.

    export/ner holds versions 1, 2 and 3; the config's `specific` policy
    serves 1 and 2 (labels stable -> 1, canary -> 2). No batching, REST on,
    small text limits so the limit errors are cheap to provoke
    (8 texts, 64 characters each, 500 in all).
    """
    root = tmp_path_factory.mktemp("config_server")
    base = str(root / "export" / "ner")
    for version in (1, 2, 3):
        export_factory(base, version)
    with open(os.path.join(REPO_ROOT, "serving", "models.config"), encoding="utf-8") as f:
        text = rewrite_base_paths(f.read(), {"/models/ner": base})
    config_path = root / "models.config"
    config_path.write_text(text, encoding="utf-8")
    monitoring_path = root / "monitoring.config"
    monitoring_path.write_text(MONITORING_CONFIG, encoding="utf-8")
    server = start_server(
        "--model_config_file", config_path,
        "--rest_api_port", free_port(),
        "--monitoring_config_file", monitoring_path,
        "--max_texts_per_request", "8",
        "--max_chars_per_text", "64",
        "--max_chars_per_request", "500",
        "--file_system_poll_wait_seconds", "1",
        "--model_config_file_poll_wait_seconds", "0.3",
    )
    server.base_path = base
    server.config_path = str(config_path)
    return server


BATCHING_CONFIG = """
max_batch_size { value: 8 }
batch_timeout_micros { value: 100000 }
num_batch_threads { value: 1 }
max_enqueued_batches { value: 16 }
allowed_batch_sizes: 2
allowed_batch_sizes: 4
allowed_batch_sizes: 8
"""


@pytest.fixture(scope="session")
def batching_server(tmp_path_factory, export_factory, start_server):
    """tfner.serve with --model_name/--model_base_path, batching on, fast polling, 1 intra-op thread.

    Starts with version 1 under export/ner; the hot-swap test adds versions.
    """
    root = tmp_path_factory.mktemp("batching_server")
    base = str(root / "export" / "ner")
    export_factory(base, 1)
    batching_path = root / "batching.config"
    batching_path.write_text(BATCHING_CONFIG, encoding="utf-8")
    monitoring_path = root / "monitoring.config"
    monitoring_path.write_text(MONITORING_CONFIG, encoding="utf-8")
    server = start_server(
        "--model_name", "ner",
        "--model_base_path", base,
        "--enable_batching",
        "--batching_parameters_file", batching_path,
        "--rest_api_port", free_port(),
        "--monitoring_config_file", monitoring_path,
        "--file_system_poll_wait_seconds", "0.3",
        # The small-machine setting of tfner/tf_threads.py, so the served path runs with it too.
        "--tensorflow_intra_op_parallelism", "1",
        "--tensorflow_inter_op_parallelism", "2",
    )
    server.base_path = base
    return server


@pytest.fixture(scope="session")
def servers(config_server, batching_server):
    """Both shared servers, started in parallel and waited for together."""
    for server in (config_server, batching_server):
        server.wait_ready()
    for server in (config_server, batching_server):
        server.wait_health()
    return config_server, batching_server


@pytest.fixture(scope="module")
def config_clients(servers):
    """gRPC stubs (predict, model, health) on one channel to config_server."""
    from server_requests import Clients

    clients = Clients(servers[0].target)
    yield clients
    clients.channel.close()


@pytest.fixture(scope="module")
def batching_clients(servers):
    """gRPC stubs (predict, model, health) on one channel to batching_server."""
    from server_requests import Clients

    clients = Clients(servers[1].target)
    yield clients
    clients.channel.close()


@pytest.fixture(scope="session")
def reference():
    """In-process outputs: reference(path, texts) -> dict of numpy arrays.

    Calls `tf.saved_model.load(path).signatures["serving_default"]`, the
    ground truth every served answer is compared with.
    """
    import tensorflow as tf

    loaded = {}
    lock = threading.Lock()

    def run(path, texts):
        with lock:
            if path not in loaded:
                loaded[path] = tf.saved_model.load(path).signatures["serving_default"]
            out = loaded[path](text=tf.constant([t.encode("utf-8") for t in texts]))
        return {k: v.numpy() for k, v in out.items()}

    return run


# --------------------------------------------------------------------------
# The tiny trained tfner model (tests/tiny.py), trained once per session
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Trains the tiny model once: {"run_dir", "export" (version path), "test" (data path), "summary"}."""
    from tiny import train_tiny

    folder = str(tmp_path_factory.mktemp("tiny"))
    summary = train_tiny(folder)
    return {
        "run_dir": os.path.join(folder, "run"),
        "export": summary["export"],
        "test": os.path.join(folder, "data", "test.jsonl"),
        "summary": summary,
    }
