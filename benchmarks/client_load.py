"""Every client against one tfner.serve: texts/s, p50/p99 latency and the client's own CPU per request.

    python benchmarks/client_load.py --model_base_path export/ner
    python benchmarks/client_load.py --model_base_path export/ner --clients go,node --requests 2000

Starts one `python -m tfner.serve` (batching on) on loopback, then runs each client's own benchmark mode
(`--bench FILE --concurrency C --requests N`, implemented in each client's command-line example) at 1 and 16
concurrent callers sharing one client, against the same server and the same texts (Resume NER test
sentences, one text per call), interleaved: every round runs every client once per concurrency, and the
table reports the median over rounds. The clients run one at a time, so they never compete with each other.
Each prints one JSON line; this script collects them. Traffic goes to 127.0.0.1 only and every run is
bounded by --requests.

CPU layout (--cpus), as in serve_load.py: with `split` (the default on 2+ CPUs) the server gets the first half
of this process's CPUs and the clients the other half, so a client's own CPU does not come out of the
server's; `shared` lets both use every CPU.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from serve_load import cpu_layout, pinned  # the same split as serve_load.py (this folder is on sys.path)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS_DIR = os.path.join(REPO_ROOT, "serving", "clients")
SHARED_DATA = os.environ.get("TFNER_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
BUILD = os.path.join(CLIENTS_DIR, "build")
_READY = re.compile(r"tfner\.serve ready: grpc_port=(\d+)")


def client_commands(python):
    """client name -> (build command or None, cwd, bench argv prefix). The bench flags are appended."""
    return {
        "python": (None, REPO_ROOT, [python, "-m", "tfner_client"]),
        "go": (["go", "build", "-o", os.path.join(BUILD, "tfner-client-go"), "./cmd/tfner-client"],
               os.path.join(CLIENTS_DIR, "go"), [os.path.join(BUILD, "tfner-client-go")]),
        "java": (["mvn", "-q", "-B", "-DskipTests", "package"], os.path.join(CLIENTS_DIR, "java"),
                 ["java", "-jar", os.path.join(CLIENTS_DIR, "java", "target", "tfner-client-0.1.0-cli.jar")]),
        "node": (["npm", "ci", "--no-audit", "--no-fund"], os.path.join(CLIENTS_DIR, "node"),
                 ["node", os.path.join(CLIENTS_DIR, "node", "dist", "cli.js")]),
    }


def bench_flags(client, server, texts_file, concurrency, requests):
    dash = "-" if client == "go" else "--"  # Go's flag package spells them with one dash.
    return [f"{dash}server", server, f"{dash}bench", texts_file, f"{dash}concurrency", str(concurrency),
            f"{dash}requests", str(requests)]


def resume_texts(limit):
    from tfner.data import read_examples

    return [e.text for e in read_examples(os.path.join(SHARED_DATA, "resume_ner", "test.char.bmes"))][:limit]


def start_server(model_base_path, log_path, cpus=None):
    batching = os.path.join(REPO_ROOT, "benchmarks", "demo_batching.config")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfner.serve", "--port", "0", "--bind_address", "127.0.0.1",
         "--model_name", "ner", "--model_base_path", model_base_path,
         "--enable_batching", "--batching_parameters_file", batching],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        preexec_fn=pinned(cpus))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            match = _READY.search(f.read().decode("utf-8", "replace"))
        if match:
            return proc, f"127.0.0.1:{match.group(1)}"
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"tfner.serve did not start; see {log_path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_base_path", default=os.path.join(REPO_ROOT, "export", "ner"))
    p.add_argument("--clients", default="python,go,java,node")
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--requests", type=int, default=1000, help="Calls per client run. Default 1000.")
    p.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the median is reported.")
    p.add_argument("--texts", type=int, default=477, help="Resume test sentences to cycle through.")
    p.add_argument("--light_python", default=os.environ.get("TFNER_LIGHT_PYTHON", sys.executable),
                   help="Python of a venv with tfner-client (the light client); default this one.")
    p.add_argument("--cpus", choices=("split", "shared"), default="split",
                   help="split: server on one half of the CPUs, clients on the other (default); shared: no pinning.")
    args = p.parse_args(argv)
    server_cpus, client_cpus = cpu_layout(args.cpus)

    clients = args.clients.split(",")
    commands = client_commands(args.light_python)
    for name in clients:
        build, cwd, _ = commands[name]
        if build:
            print(f"building {name}: {' '.join(build)}", file=sys.stderr)
            subprocess.run(build, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as scratch:
        texts_file = os.path.join(scratch, "texts.txt")
        with open(texts_file, "w", encoding="utf-8") as f:
            f.write("\n".join(resume_texts(args.texts)) + "\n")
        server, target = start_server(os.path.abspath(args.model_base_path), os.path.join(scratch, "serve.log"),
                                      server_cpus)
        rows = {}
        try:
            for round_ in range(args.rounds):
                for concurrency in map(int, args.concurrency.split(",")):
                    for name in clients:
                        _, cwd, prefix = commands[name]
                        out = subprocess.run(prefix + bench_flags(name, target, texts_file, concurrency, args.requests),
                                             cwd=cwd, capture_output=True, text=True, timeout=1800,
                                             preexec_fn=pinned(client_cpus))
                        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
                        if out.returncode != 0 or not lines:
                            raise RuntimeError(f"{name} bench failed ({out.returncode}):\n{out.stderr[-2000:]}")
                        rows.setdefault((name, concurrency), []).append(json.loads(lines[-1]))
                        print(f"round {round_ + 1} {name} x{concurrency}: {lines[-1]}", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(60)

    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    layout = ("server and clients on every CPU" if server_cpus is None else
              f"server on CPU {sorted(server_cpus)}, clients on CPU {sorted(client_cpus)}")
    print(f"# {model.group(1) if model else 'unknown CPU'}, {os.cpu_count()} CPUs ({layout}); {args.requests} calls "
          f"of one text per run, median of {args.rounds} interleaved rounds")
    print("client,concurrency,texts_per_s,p50_ms,p99_ms,cpu_ms_per_request,errors")
    for (name, concurrency), runs in rows.items():
        def med(key):
            return statistics.median(r[key] for r in runs)
        print(f"{name},{concurrency},{med('texts_per_s'):.1f},{med('p50_ms'):.2f},{med('p99_ms'):.2f},"
              f"{med('cpu_ms_per_request'):.3f},{sum(r['errors'] for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
