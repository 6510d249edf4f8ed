"""Bounded soak of python -m tfner.serve: many clients, mixed text lengths, a version swap, memory over time.

    python benchmarks/soak.py --export export/ner/1                        # 2 minutes per level
    python benchmarks/soak.py --export export/ner/1 --minutes 10           # the issue's 10-minute soak
    python benchmarks/soak.py --plot_from soak.json --plot soak.png        # the plot alone (matplotlib)

For each concurrency level (--clients, default 16 and 64) it starts the server on loopback over a fresh base
path holding a copy of --export as version 1, lets that many closed-loop gRPC clients (one channel each)
send Predict calls for --minutes, and copies the export in as the next version halfway through (written
to a hidden folder and renamed, as tfner.export does), so the server hot-swaps under load (--swaps N: N
swaps, evenly spaced, to see whether memory grows with each). Each request
holds 1 to 4 texts drawn from a fixed mix: real sentences (Resume NER test, from $TFNER_DATA or
../shared/data; built-in sentences without it), paragraphs of ten of them, and 3,000-character documents.

Every --sample_seconds it records, for the interval just ended: requests answered, errors by status code,
p50 and p99 latency, and the server's resident memory (VmRSS). The summary states the error count and
memory growth after warm-up (the first --warmup_seconds): the target is zero errors and flat memory,
growth under --memory_bound_mb. Results go to --output (JSON); --plot writes a PNG of latency and memory
over time with matplotlib, a benchmark-only dependency (not in setup.cfg): install it in the venv or a
side venv and run --plot_from there, which needs nothing else.

Traffic goes to 127.0.0.1 only; every level stops after --minutes, and the server with it.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("TFNER_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
FALLBACK_SENTENCES = [
    "张三在北京的清华大学读书。", "他从上海来，明天要去深圳。", "这句话里没有任何实体。",
    "李娜是杭州一家科技有限公司的工程师，周末常去西湖边散步。", "王伟毕业于南开大学，现居天津。",
]


# --------------------------------------------------------------------------
# the traffic
# --------------------------------------------------------------------------


def sentences():
    """Real sentences: Resume NER test (CoNLL, one character per line), or built-in ones without the data."""
    path = os.path.join(SHARED_DATA, "resume_ner", "test.char.bmes")
    if not os.path.exists(path):
        return FALLBACK_SENTENCES
    texts, chars = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                chars.append(line.split()[0])
            elif chars:
                texts.append("".join(chars))
                chars = []
    return texts + (["".join(chars)] if chars else [])


def text_mix(seed=0):
    """(texts, weights): 80 % sentences, 15 % paragraphs of ten, 5 % documents of 3,000 characters."""
    rng = random.Random(seed)
    short = sentences()
    # choices, not sample: the built-in fallback has fewer than ten sentences.
    paragraphs = ["".join(rng.choices(short, k=10)) for _ in range(50)]
    documents = []
    for _ in range(10):
        shuffled = "".join(rng.sample(short, len(short)))
        documents.append((shuffled * (3000 // len(shuffled) + 1))[:3000])  # repeated: the fallback is short
    pools = [(short, 0.80), (paragraphs, 0.15), (documents, 0.05)]
    return [(pool, weight) for pool, weight in pools]


def draw_request(rng, mix):
    count = rng.randint(1, 4)
    pools, weights = zip(*mix)
    return [rng.choice(rng.choices(pools, weights)[0]) for _ in range(count)]


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------


class Server:
    """python -m tfner.serve on loopback, its pid for memory samples, SIGTERM on close."""

    def __init__(self, base_path, log_path, extra_args=()):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tfner.serve", "--port", "0", "--bind_address", "127.0.0.1",
                 "--model_name", "ner", "--model_base_path", base_path, "--file_system_poll_wait_seconds", "1",
                 *extra_args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + 180
        while True:
            match = re.search(r"tfner\.serve ready: grpc_port=(\d+)", self.log())
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                # The log's tail in the message: the workdir holding the log is removed on the way out.
                raise RuntimeError(f"tfner.serve did not start; its log ends:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            kilobytes = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
        return kilobytes / 1024.0

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def add_version(template, base_path, version):
    """Copies the export in as `version`, under a hidden name first, then renamed (what a poller may see)."""
    staging = os.path.join(base_path, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    shutil.copytree(template, staging)
    os.rename(staging, os.path.join(base_path, str(version)))


# --------------------------------------------------------------------------
# one level
# --------------------------------------------------------------------------


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def run_level(template, clients, seconds, sample_seconds, mix, workdir, seed, server_args, swaps=1):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    from tfner.client import NerClient

    base = os.path.join(workdir, f"clients-{clients}", "ner")
    os.makedirs(base)
    add_version(template, base, 1)
    server = Server(base, os.path.join(workdir, f"serve-{clients}.log"), server_args)
    builder = NerClient("127.0.0.1:1")  # only to build requests, as tfner's own client sends them
    events = []  # (end time, latency s, status code name, version)
    lock = threading.Lock()
    stop = threading.Event()
    swaps_done = []

    def client(index):
        rng = random.Random(seed * 1000 + index)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            while not stop.is_set():
                request = builder.build_request(draw_request(rng, mix))
                began = time.monotonic()
                try:
                    version = stub.Predict(request, timeout=60).model_spec.version.value
                    code = "OK"
                except grpc.RpcError as e:
                    version, code = None, e.code().name
                with lock:
                    events.append((time.monotonic(), time.monotonic() - began, code, version))

    samples = []
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    swap_times = [started + seconds * (k + 1) / (swaps + 1) for k in range(swaps)]  # evenly spaced
    try:
        next_sample = started + sample_seconds
        while time.monotonic() - started < seconds:
            wake = min([next_sample, started + seconds] + swap_times[len(swaps_done):len(swaps_done) + 1])
            time.sleep(max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            if len(swaps_done) < swaps and now >= swap_times[len(swaps_done)]:
                add_version(template, base, len(swaps_done) + 2)
                swaps_done.append(round(now - started, 1))
            if now >= next_sample:
                samples.append((now - started, server.rss_mb()))
                next_sample += sample_seconds
    finally:
        stop.set()
        for t in threads:
            t.join(90)
        builder.close()
        exit_code = server.close()
    loads = [{"version": int(v), "seconds": float(s)}
             for v, s in re.findall(r"loaded version (\d+) from \S+ in ([\d.]+)s", server.log())]

    intervals = []
    for end, rss in samples:
        window = [e for e in events if end - sample_seconds < e[0] - started <= end]
        ok = [e[1] * 1000 for e in window if e[2] == "OK"]
        intervals.append({
            "t": round(end, 1), "requests": len(ok), "errors": len(window) - len(ok),
            "p50_ms": percentile(ok, 50), "p99_ms": percentile(ok, 99), "rss_mb": round(rss, 1),
        })
    errors = {}
    for e in events:
        if e[2] != "OK":
            errors[e[2]] = errors.get(e[2], 0) + 1
    latencies = [e[1] * 1000 for e in events if e[2] == "OK"]
    versions = sorted({e[3] for e in events if e[3] is not None})
    first_new = {v: round(min(e[0] - started for e in events if e[3] == v), 1) for v in versions if v > 1}
    return {
        "clients": clients, "seconds": seconds, "requests": len(latencies), "errors": errors,
        "requests_per_second": len(latencies) / seconds, "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies, default=None),
        "versions_answered": versions, "swap_at_s": swaps_done, "first_answer_at_s": first_new,
        "loads": loads, "server_exit_code": exit_code, "intervals": intervals,
    }


def memory_verdict(level, warmup_seconds, bound_mb):
    after = [i["rss_mb"] for i in level["intervals"] if i["t"] >= warmup_seconds]
    if len(after) < 2:
        return {"warm_rss_mb": None, "end_rss_mb": None, "growth_mb": None, "flat": None}
    growth = after[-1] - after[0]
    return {"warm_rss_mb": after[0], "end_rss_mb": after[-1], "max_rss_mb": max(after),
            "growth_mb": round(growth, 1), "flat": max(after) - after[0] <= bound_mb}


# --------------------------------------------------------------------------
# the plot
# --------------------------------------------------------------------------


def plot(results, path):
    """Latency (p50, p99) and resident memory over time, one colour per concurrency level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, memory) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for level in results["levels"]:
        t = [i["t"] for i in level["intervals"]]
        label = f"{level['clients']} clients"
        line, = latency.plot(t, [i["p50_ms"] for i in level["intervals"]], label=f"{label}, p50")
        latency.plot(t, [i["p99_ms"] for i in level["intervals"]], linestyle="--", color=line.get_color(),
                     label=f"{label}, p99")
        memory.plot(t, [i["rss_mb"] for i in level["intervals"]], color=line.get_color(), label=label)
        for swap in level["swap_at_s"]:
            for axis in (latency, memory):
                axis.axvline(swap, color=line.get_color(), linestyle=":", alpha=0.6)
    latency.set_ylabel("latency, ms")
    latency.set_yscale("log")
    latency.legend(fontsize=8)
    latency.set_title("tfner.serve soak: latency and resident memory (dotted: version swap)")
    memory.set_ylabel("server RSS, MB")
    memory.set_xlabel("seconds into the level")
    memory.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def latest_version(path):
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(n) for n in os.listdir(path) if n.isdigit()]
    if not versions:
        raise SystemExit(f"{path}: no export there; train the demo first (python -m tfner.train)")
    return os.path.join(path, str(max(versions)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export", default=os.path.join(REPO_ROOT, "export", "ner"),
                   help="a version folder, or a model folder (its newest version). Default export/ner.")
    p.add_argument("--clients", default="16,64", help="concurrency levels, comma-separated. Default 16,64.")
    p.add_argument("--minutes", type=float, default=2.0, help="per level; the issue's soak is 10. Default 2.")
    p.add_argument("--sample_seconds", type=float, default=5.0, help="Default 5.")
    p.add_argument("--warmup_seconds", type=float, default=30.0,
                   help="memory growth is measured after this. Default 30.")
    p.add_argument("--memory_bound_mb", type=float, default=50.0,
                   help="'flat' means RSS stays within this of its post-warm-up value. Default 50.")
    p.add_argument("--swaps", type=int, default=1,
                   help="version swaps per level, evenly spaced (1: one in the middle). Default 1.")
    p.add_argument("--enable_batching", action="store_true", help="pass --enable_batching to the server")
    p.add_argument("--output", default="soak.json", help="results as JSON. Default soak.json.")
    p.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    p.add_argument("--plot_from", help="only plot an earlier --output file")
    args = p.parse_args(argv)
    if args.plot or args.plot_from:  # checked now, not after a soak of many minutes
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot and --plot_from need matplotlib (a benchmark-only dependency): install it, or leave "
                    "--plot out and run --plot_from later where matplotlib is")

    if args.plot_from:
        with open(args.plot_from, encoding="utf-8") as f:
            plot(json.load(f), args.plot or os.path.splitext(args.plot_from)[0] + ".png")
        return 0
    template = latest_version(args.export)
    mix = text_mix()
    workdir = tempfile.mkdtemp(prefix="tfner-soak-")
    results = {"export": template, "minutes": args.minutes, "cpu": cpu_model(), "levels": []}
    print(f"soak of {template}: {args.minutes} min per level, samples every {args.sample_seconds} s; logs in {workdir}")
    try:
        try:
            for seed, clients in enumerate(int(c) for c in args.clients.split(",")):
                level = run_level(template, clients, args.minutes * 60, args.sample_seconds, mix, workdir, seed,
                                  ["--enable_batching"] if args.enable_batching else [], args.swaps)
                level["memory"] = memory_verdict(level, args.warmup_seconds, args.memory_bound_mb)
                results["levels"].append(level)
                report(level)
        finally:
            with open(args.output, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=1)
        print(f"wrote {args.output}")
        if args.plot:
            plot(results, args.plot)
            print(f"wrote {args.plot}")
    finally:  # every way out: the workdir holds a copy of the export per version and level
        shutil.rmtree(workdir, ignore_errors=True)
    failed = any(level["errors"] for level in results["levels"])
    return 1 if failed else 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        return "unknown"


def milliseconds(value) -> str:
    """A latency for the report: whole ms, or "-" where no request succeeded to give one."""
    return "-" if value is None else f"{value:.0f}"


def report(level):
    memory = level["memory"]
    print(f"\n{level['clients']} clients, {level['seconds'] / 60:.1f} min: {level['requests']} requests "
          f"({level['requests_per_second']:.1f}/s), errors {level['errors'] or 0}, "
          f"p50 {milliseconds(level['p50_ms'])} ms, p99 {milliseconds(level['p99_ms'])} ms, "
          f"max {milliseconds(level['max_ms'])} ms; versions answered {level['versions_answered']} "
          f"(swaps at {level['swap_at_s']} s, first answers at {level['first_answer_at_s']} s, loads "
          f"{[(l['version'], l['seconds']) for l in level['loads']]} s); server exit {level['server_exit_code']}")
    print(f"  memory after warm-up: {memory['warm_rss_mb']} MB -> {memory['end_rss_mb']} MB "
          f"(max {memory.get('max_rss_mb')} MB, growth {memory['growth_mb']} MB, flat: {memory['flat']})")
    print("  t s    req   err   p50 ms   p99 ms   RSS MB")
    for i in level["intervals"]:
        print(f"  {i['t']:5.0f} {i['requests']:5d} {i['errors']:5d} {milliseconds(i['p50_ms']):>8} "
              f"{milliseconds(i['p99_ms']):>8} {i['rss_mb']:8.1f}")


if __name__ == "__main__":
    sys.exit(main())
