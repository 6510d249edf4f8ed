"""Closed-loop load from concurrent callers sharing one NerClient (`tfner-client --bench`).

Each of `concurrency` threads calls `predict([text])` (one text per call,
cycling through the texts) until `requests` calls are done, timing each. The
figures are the ones benchmarks/client_load.py compares across languages.
"""

import math
import resource
import threading
import time

from tfner_client.errors import NerError


def run_bench(client, texts, concurrency, requests, warmup=None):
    """Runs the load and returns its one-line summary.

    Args:
        client: NerClient. Shared by every caller.
        texts: list of str. Cycled through, one per call.
        concurrency: int. Concurrent callers (threads).
        requests: int. Timed calls, in all.
        warmup: int or None. Untimed calls first (channel connect, server
            warm-up, thread start); default 2 per caller, at least 10.

    Returns:
        dict: client, concurrency, requests, errors, seconds, texts_per_s
        (answered texts per second), p50_ms and p99_ms (latency of answered
        calls; None if none was), cpu_ms_per_request (this process's user +
        system CPU time during the timed phase, per call), and first_error
        (str or None; not part of the printed line).
    """
    if not texts:
        raise ValueError("no texts to send: the bench file is empty")
    if concurrency < 1 or requests < 1:
        raise ValueError("concurrency and requests must be >= 1")
    _drive(client, texts, concurrency, max(10, 2 * concurrency) if warmup is None else warmup)

    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    latencies, errors, first_error = _drive(client, texts, concurrency, requests)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before

    latencies.sort()
    return {
        "client": "python",
        "concurrency": concurrency,
        "requests": requests,
        "errors": errors,
        "seconds": round(seconds, 3),
        "texts_per_s": round((requests - errors) / seconds, 1),
        "p50_ms": _percentile_ms(latencies, 50),
        "p99_ms": _percentile_ms(latencies, 99),
        "cpu_ms_per_request": round(cpu * 1000 / requests, 3),
        "first_error": first_error,
    }


def _drive(client, texts, concurrency, count):
    """`count` calls from `concurrency` threads -> (latencies in s, error count, first error message)."""
    lock = threading.Lock()
    next_call = [0]
    latencies = []
    errors = [0]
    first_error = []

    def caller():
        own = []
        while True:
            with lock:
                index = next_call[0]
                next_call[0] += 1
            if index >= count:
                break
            began = time.perf_counter()
            try:
                client.predict([texts[index % len(texts)]])
            except NerError as e:
                with lock:
                    errors[0] += 1
                    first_error[:] = first_error or [f"{e.code().name}: {e.message}"]
                continue
            own.append(time.perf_counter() - began)
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=caller, name=f"bench-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], (first_error or [None])[0]


def _percentile_ms(sorted_seconds, percent):
    """Nearest-rank percentile of sorted latencies, in ms; None for no latency."""
    if not sorted_seconds:
        return None
    rank = max(1, math.ceil(percent / 100 * len(sorted_seconds)))
    return round(sorted_seconds[rank - 1] * 1000, 3)


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
