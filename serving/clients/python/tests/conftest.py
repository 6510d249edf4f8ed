"""The suite's server, configured only through environment variables (serving/clients/python/README.md).

    TFNER_SERVER                 127.0.0.1:PORT of a running `python -m tfner.serve`: model ner,
                                 versions 1 and 2, labels stable -> 1 and canary -> 2, batching on
    TFNER_MAX_TEXTS_PER_REQUEST  its --max_texts_per_request (default 128)
    TFNER_MAX_CHARS_PER_REQUEST  its --max_chars_per_request (default 20000)
    TFNER_PARITY                 JSONL: {"text", "entities": [{"label","start","end","text","score"}]}
                                 per line, the SavedModel's own answers
    TFNER_SERVE_COMMAND          JSON argv that starts another such server; the suite appends --port P

A missing variable or server fails the tests that need it; nothing is skipped.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures

import grpc
import pytest

from tfner_client import NerClient
from tfner_client._proto.tensorflow_serving.apis import predict_pb2

_READY = re.compile(r"tfner\.serve ready: grpc_port=(\d+)")


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"set {name} (see tests/conftest.py); this suite runs against a real tfner.serve", pytrace=False)
    return value


@pytest.fixture(scope="session")
def server():
    """host:port of the running server, checked to answer with a short deadline."""
    target = required_env("TFNER_SERVER")
    with NerClient(target, timeout=10, retries=5) as client:
        try:
            client.status()
        except Exception as e:  # noqa: BLE001 -- any failure here means "no usable server".
            pytest.fail(f"TFNER_SERVER={target} does not answer GetModelStatus: {e}", pytrace=False)
    return target


@pytest.fixture(scope="session")
def parity():
    """The parity corpus: list of (text, entities as dicts)."""
    with open(required_env("TFNER_PARITY"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert rows, "TFNER_PARITY is empty"
    return [(row["text"], row["entities"]) for row in rows]


@pytest.fixture(scope="session")
def limits():
    return {
        "max_texts": int(os.environ.get("TFNER_MAX_TEXTS_PER_REQUEST", "128")),
        "max_chars": int(os.environ.get("TFNER_MAX_CHARS_PER_REQUEST", "20000")),
    }


@pytest.fixture(scope="session")
def serve_command():
    argv = json.loads(required_env("TFNER_SERVE_COMMAND"))
    assert isinstance(argv, list) and argv, "TFNER_SERVE_COMMAND must be a JSON array (an argv)"
    return argv


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """A tfner.serve started from TFNER_SERVE_COMMAND on a given port; stop() always cleans up."""

    def __init__(self, argv, port, startup_timeout=120.0):
        self.port = port
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([*argv, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + startup_timeout
        while not _READY.search(self.log()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"tfner.serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"tfner.serve did not log its ready line in {startup_timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self):
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")

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


@pytest.fixture
def start_serve(serve_command):
    """start(port) -> ServeProcess, ready; every one started is stopped after the test."""
    started = []

    def start(port):
        process = ServeProcess(serve_command, port)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def backoff_sleeps(monkeypatch):
    """The client's backoff sleeps, in order (still slept): time.sleep calls made by tfner_client.client."""
    sleeps = []
    real_sleep = time.sleep

    def sleep(seconds):
        if sys._getframe(1).f_globals.get("__name__") == "tfner_client.client":
            sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return sleeps


@pytest.fixture
def empty_answer_server():
    """host:port of a stub PredictionService that answers every Predict with an empty PredictResponse: a server,
    but not a tfner model's."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": grpc.unary_unary_rpc_method_handler(
            lambda request, context: predict_pb2.PredictResponse(),
            request_deserializer=predict_pb2.PredictRequest.FromString,
            response_serializer=predict_pb2.PredictResponse.SerializeToString)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)
