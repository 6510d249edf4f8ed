"""A server restarted under a caller: retries with backoff carry every call across the gap."""

import threading
import time

from conftest import free_port
from tfner_client import NerClient

TEXT = "他从上海来，去北京。"


def test_calls_survive_a_server_restart(start_serve, backoff_sleeps):
    port = free_port()
    first = start_serve(port)
    answers, failures = [], []
    stop = threading.Event()
    # The gap is a TensorFlow import and a model load (~5-20 s on a busy machine):
    # 600 retries of at most 0.25 s cover over a minute.
    client = NerClient(f"127.0.0.1:{port}", retries=600, backoff_s=0.05, max_backoff_s=0.25, timeout=10)
    expected = client.predict([TEXT])

    def caller():
        while not stop.is_set():
            try:
                answers.append(client.predict([TEXT]))
            except Exception as e:  # noqa: BLE001 -- every failure is reported by the test.
                failures.append(repr(e))
                return

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        wait_for(lambda: len(answers) >= 3, "answers from the first server")
        assert first.stop() == 0, "tfner.serve should exit 0 on SIGTERM"
        before_restart = len(answers)
        start_serve(port)
        wait_for(lambda: len(answers) >= before_restart + 3 or failures, "answers from the restarted server")
    finally:
        stop.set()
        thread.join(timeout=120)
        client.close()
    assert failures == []
    assert backoff_sleeps, "the caller should have retried through the restart"
    spans = [[(e.label, e.start, e.end, e.text) for e in row] for row in expected]
    assert all([[(e.label, e.start, e.end, e.text) for e in row] for row in answer] == spans for answer in answers)


def wait_for(condition, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.05)
