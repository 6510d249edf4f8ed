"""Load test of python -m tfner.serve, batching off and on, beside in-process speed.

    python benchmarks/serve_load.py --model_base_path export/ner
    python benchmarks/serve_load.py --model_base_path export/ner --texts_per_request 1,2,4 \
        --batching_parameters_file benchmarks/demo_batching.config

For each request size and server mode it starts `python -m tfner.serve` on
loopback, lets --clients threads (each with its own gRPC channel) send Predict
calls of that many texts back to back for --seconds, and reports requests/s,
texts/s, latency percentiles, requests merged per model call, and texts/s as
a share of the in-process ceiling: the SavedModel called directly (no
server) on the same texts, one or max_batch_size texts per call, whichever is
faster (on CPU a large model can gain nothing from batches of texts of mixed
lengths, all padded to the longest). The in-process figures are measured
before and after the server runs and averaged, as the load of a shared
machine drifts.

Each server row also gives the server process's CPU time per request, and a
last row per request size runs the same load against
benchmarks/grpc_floor_server.py: a Python gRPC server that answers every
request with a response tfner.serve gave, computing nothing. Its CPU per
request is what Python gRPC alone costs; on one server CPU it caps the share
any Python server can reach, and the script prints that cap.

CPU layout (--cpus): in production the clients run on other machines. With
`split` (the default on 2+ CPUs) the server and the in-process measurement
get the first half of this process's CPUs and the clients the other half, so
the server is compared with the model on the same cores and the clients'
work does not count against it. `shared` lets everything use every CPU, as
a crowded single machine would.

Traffic goes to 127.0.0.1 only, and every phase stops after --seconds.
"""

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)

# Sentences of 8 to ~60 characters: place names, people, organisations, none.
_PLACES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "西安", "南京"]
_TEMPLATES = [
    "{a}欢迎你",
    "他从{a}来，明天要去{b}。",
    "{a}的天气比{b}暖和一些，周末适合出门走走。",
    "会议将在{a}举行，来自{b}和{c}的代表已经到达。",
    "这句话里没有任何地名。",
    "小王在{a}读完大学以后，去{b}的一家公司工作了三年，后来又回到{c}开了一家书店。",
]


def make_texts(count=64):
    """Deterministic texts for the load; the same list for every mode."""
    texts = []
    for i in range(count):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        a, b, c = (_PLACES[(i + k) % len(_PLACES)] for k in (0, 3, 5))
        texts.append(template.format(a=a, b=b, c=c))
    return texts


def percentile_ms(latencies, q):
    return float(np.percentile(np.array(latencies) * 1000.0, q)) if latencies else float("nan")


# --------------------------------------------------------------------------
# in process
# --------------------------------------------------------------------------


def in_process_rate(path, texts, batch_size, seconds):
    """Texts/s of the SavedModel's signature called directly, batch_size texts a call."""
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures["serving_default"]
    encoded = [t.encode("utf-8") for t in texts]
    batches = [tf.constant((encoded * batch_size)[i:i + batch_size]) for i in range(len(encoded))]
    fn(text=batches[0])  # First call outside the clock.
    done, calls, started = 0, 0, time.monotonic()
    while time.monotonic() - started < seconds:
        fn(text=batches[calls % len(batches)])
        calls += 1
        done += batch_size
    return done / (time.monotonic() - started)


def cpu_layout(choice):
    """(server CPUs, client CPUs) as sets, or (None, None) for no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if choice == "shared" or len(cpus) < 2:
        return None, None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def pinned(cpus):
    """A subprocess preexec_fn that pins the child to `cpus`, or None for no pinning."""
    return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))


# --------------------------------------------------------------------------
# against the server
# --------------------------------------------------------------------------


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(command, log_path, cpus=None):
    """Runs `python COMMAND...` pinned to `cpus` until it logs `ready: grpc_port=N`; yields (port, pid)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, *command], preexec_fn=pinned(cpus),
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                match = re.search(r"ready: grpc_port=(\d+)", f.read())
            if match:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(command)} did not start; see {log_path}")
            time.sleep(0.2)
        yield int(match.group(1)), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(args, log_path, cpus=None):
    """python -m tfner.serve ARGS pinned to `cpus`; yields its gRPC port."""
    with running(["-m", "tfner.serve", *args], log_path, cpus) as (port, _):
        yield port


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def driven(port, pid, texts, clients, texts_per_request, seconds):
    """drive(), plus the server's CPU milliseconds per answered request over the same window."""
    before = cpu_seconds(pid)
    latencies, errors, elapsed = drive(port, texts, clients, texts_per_request, seconds)
    cpu_ms = (cpu_seconds(pid) - before) * 1000.0 / max(1, len(latencies))
    return latencies, errors, elapsed, cpu_ms


def record_response(port, texts, texts_per_request, path):
    """Saves the server's PredictResponse to the first request drive() sends, for the floor server."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    from tfner.client import NerClient

    builder = NerClient(f"127.0.0.1:{port}")
    request = builder.build_request((texts * 2)[:texts_per_request])
    builder.close()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    with open(path, "wb") as f:
        f.write(response.SerializeToString())


def drive(port, texts, clients, texts_per_request, seconds):
    """N threads send Predict calls for `seconds`; returns (latencies, errors, elapsed)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    from tfner.client import NerClient

    requests = []
    builder = NerClient(f"127.0.0.1:{port}")  # Only to build requests.
    for i in range(0, len(texts), texts_per_request):
        requests.append(builder.build_request((texts * 2)[i:i + texts_per_request]))
    builder.close()

    latencies = [[] for _ in range(clients)]
    errors = [0] * clients
    failures = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def connect(stub):
        # Every client connects at once; a full queue here is not part of the
        # measurement, so back off and retry for a while.
        for attempt in range(50):
            try:
                return stub.Predict(requests[0], timeout=60)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == 49:
                    raise
                time.sleep(0.1)

    def client(index):
        options = [("grpc.use_local_subchannel_pool", 1)]  # One connection per client.
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                connect(stub)
            except Exception as e:
                failures.append(e)
                start.abort()  # Wake everyone: the run is void.
                return
            start.wait()
            n = index
            while time.monotonic() < stop_at[0]:
                began = time.monotonic()
                try:
                    stub.Predict(requests[n % len(requests)], timeout=30)
                    latencies[index].append(time.monotonic() - began)
                except grpc.RpcError:
                    errors[index] += 1
                n += clients

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + 3600  # Placeholder until every client is connected.
    try:
        start.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a client could not make its first call: {failures[0]}") from None
    began = time.monotonic()
    stop_at[0] = began + seconds
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.monotonic() - began
    return [x for per in latencies for x in per], sum(errors), elapsed


def calls_per_request(rest_port):
    """Requests answered per model call, from the server's Prometheus metrics."""
    url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()

    def total(name):
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{"))

    calls = total("tfner_serving_model_calls_total")
    return total("tfner_serving_model_call_requests_total") / calls if calls else float("nan")


def request_sizes(text):
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return sizes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_base_path", default=os.path.join(REPO_ROOT, "export", "ner"),
                   help="Folder of integer version folders. Default export/ner.")
    p.add_argument("--clients", type=int, default=16, help="Concurrent clients. Default 16.")
    p.add_argument("--seconds", type=float, default=10.0, help="Length of each phase. Default 10.")
    p.add_argument("--texts_per_request", type=request_sizes, default=[1],
                   help="Texts in each request; several sizes separated by commas run one after "
                        "the other. Default 1.")
    p.add_argument("--batching_parameters_file",
                   default=os.path.join(REPO_ROOT, "serving", "batching.config"),
                   help="For the batching-on runs. Default serving/batching.config.")
    p.add_argument("--cpus", choices=("split", "shared"), default="split",
                   help="split: server and in-process on one half of the CPUs, clients on the other "
                        "(default); shared: no pinning.")
    args = p.parse_args(argv)

    from tfner.server import config as server_config
    from tfner.server.model_store import list_versions

    versions = list_versions(args.model_base_path)
    if not versions:
        p.error(f"no integer version folder with a SavedModel under {args.model_base_path}")
    path = versions[max(versions)]
    batch = server_config.load_batch_options(args.batching_parameters_file)
    too_big = [n for n in args.texts_per_request if n > batch.max_batch_size]
    if too_big:
        p.error(f"--texts_per_request {too_big} exceeds max_batch_size {batch.max_batch_size}, "
                "which is also the largest request the server takes")
    server_cpus, client_cpus = cpu_layout(args.cpus)
    texts = make_texts()
    rows = []
    floors = {}  # texts per request -> the floor server's CPU ms a request

    layout = ("everything on every CPU" if server_cpus is None else
              f"server and in-process on CPU {sorted(server_cpus)}, clients on CPU {sorted(client_cpus)}")
    print(f"model {path}; {args.clients} clients x {args.seconds:.0f} s; {layout}; batching from "
          f"{args.batching_parameters_file} (max_batch_size {batch.max_batch_size}, timeout "
          f"{batch.batch_timeout_s * 1e3:.1f} ms, {batch.num_batch_threads} threads)", flush=True)

    # The in-process figures run in this process, on the server's CPUs (the
    # threads TensorFlow starts inherit the mask; the client threads started
    # later inherit the clients'), once before the server runs and once
    # after, because the load of a shared machine drifts.
    sizes = sorted({1, batch.max_batch_size})
    in_process = {size: [] for size in sizes}

    def measure_in_process():
        if server_cpus is not None:
            os.sched_setaffinity(0, server_cpus)
        for size in sizes:
            in_process[size].append(in_process_rate(path, texts, size, args.seconds))
        if client_cpus is not None:
            os.sched_setaffinity(0, client_cpus)

    measure_in_process()

    with tempfile.TemporaryDirectory() as tmp:
        monitoring = os.path.join(tmp, "monitoring.config")
        with open(monitoring, "w") as f:
            f.write('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
        workers = max(32, 2 * args.clients)
        for per_request in args.texts_per_request:
            recorded = os.path.join(tmp, f"response-{per_request}.pb")
            for mode in ("off", "on"):
                rest_port = free_port()
                server_args = ["--port", "0", "--bind_address", "127.0.0.1", "--model_name", "ner",
                               "--model_base_path", args.model_base_path, "--rest_api_port", str(rest_port),
                               "--monitoring_config_file", monitoring, "--grpc_max_workers", str(workers)]
                if mode == "on":
                    server_args += ["--enable_batching", "--batching_parameters_file",
                                    args.batching_parameters_file]
                log_path = os.path.join(tmp, f"serve-{per_request}-{mode}.log")
                with running(["-m", "tfner.serve", *server_args], log_path, server_cpus) as (port, pid):
                    latencies, errors, elapsed, cpu_ms = driven(port, pid, texts, args.clients, per_request,
                                                                args.seconds)
                    merged = calls_per_request(rest_port)
                    if mode == "off":
                        record_response(port, texts, per_request, recorded)
                done = len(latencies)
                rows.append((f"tfner.serve, {per_request} text(s)/request, batching {mode}",
                             done / elapsed, done * per_request / elapsed, percentile_ms(latencies, 50),
                             percentile_ms(latencies, 95), percentile_ms(latencies, 99), errors, merged, cpu_ms))
            # The floor: the same requests answered by a Python gRPC server with nothing to compute.
            floor_command = [os.path.join(REPO_ROOT, "benchmarks", "grpc_floor_server.py"), recorded,
                             "--max_workers", str(workers)]
            with running(floor_command, os.path.join(tmp, f"floor-{per_request}.log"), server_cpus) as (port, pid):
                latencies, errors, elapsed, cpu_ms = driven(port, pid, texts, args.clients, per_request,
                                                            args.seconds)
            done = len(latencies)
            rows.append((f"gRPC floor, {per_request} text(s)/request", done / elapsed, done * per_request / elapsed,
                         percentile_ms(latencies, 50), percentile_ms(latencies, 95), percentile_ms(latencies, 99),
                         errors, None, cpu_ms))
            floors[per_request] = cpu_ms

    measure_in_process()
    for size in sizes:
        before, after = in_process[size]
        rows.insert(sizes.index(size), (f"in-process, {size} text(s)/call ({before:.0f} / {after:.0f})",
                                        None, (before + after) / 2, None, None, None, None, None, None))
    ceiling = max((before + after) / 2 for before, after in in_process.values())

    def fmt(value, spec):
        width = spec.split(".")[0].rstrip("df")
        return format("-", f">{width}") if value is None else format(value, spec)

    print(f"{'':48} {'req/s':>8} {'texts/s':>8} {'share':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'req/call':>8} {'cpu ms/req':>10}")
    for name, rps, tps, p50, p95, p99, errors, merged, cpu_ms in rows:
        # The floor server runs no model, so its texts/s against the model's ceiling is no share of anything.
        share = format("-", ">6") if name.startswith("gRPC floor") else f"{tps / ceiling:6.0%}"
        print(f"{name:48} {fmt(rps, '8.1f')} {fmt(tps, '8.1f')} {share} {fmt(p50, '8.1f')} "
              f"{fmt(p95, '8.1f')} {fmt(p99, '8.1f')} {fmt(errors, '6d')} {fmt(merged, '8.2f')} "
              f"{fmt(cpu_ms, '10.3f')}")
    print(f"in-process rows: mean of the runs before / after the server's; share: texts/s over the "
          f"better in-process mean ({ceiling:.1f} texts/s), none for the gRPC floor (it runs no model); "
          f"cpu ms/req: the server process's CPU time a request")
    if server_cpus is not None and len(server_cpus) == 1:
        # On one server CPU a request costs at least its texts' model time
        # (1 / ceiling each, in process) plus what the floor server spends on it.
        for per_request, floor_ms in floors.items():
            model_ms = per_request * 1000.0 / ceiling
            print(f"share cap, {per_request} text(s)/request: the floor's {floor_ms:.3f} ms of server CPU a request "
                  f"beside {model_ms:.3f} ms of model time leaves a Python server at most "
                  f"{model_ms / (model_ms + floor_ms):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
