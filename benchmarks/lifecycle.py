"""Model lifecycle on Resume NER: does masked-LM pretraining pay, and does distillation pay?

    python benchmarks/lifecycle.py                                    # the full protocol (hours on 2 cores)
    python benchmarks/lifecycle.py --pretrain_epochs 1 --finetune_epochs 2 --seeds 1,2 --distill_epochs 3
    python benchmarks/lifecycle.py --skip_pretrain --teacher runs/resume_ner   # distillation only

Pretraining pays (each command in its own process, as a user runs it):
1. The unlabelled corpus: CLUENER2020's texts (train/dev/test JSON, labels never read) and Resume's train
   sentences with their tags dropped, one document a line (run folder/unlabelled.txt). Documents that are a
   Resume dev/test sentence or contain one (of 8+ characters) are dropped and counted; the written corpus is
   checked again (exact and substring matches, printed, must be 0).
2. python -m tfner.pretrain --config configs/pretrain_resume.yaml (4 layers, hidden 256): held-out masked
   accuracy and perplexity before and after, and the cost (steps, seconds, characters/s).
3. python -m tfner.train --config configs/resume_ner.yaml, for each seed, twice: from the pretrained backbone
   (model.init) and from scratch over the same vocabulary (data.vocab = the pretraining run's vocab.txt), for
   the same number of fine-tuning steps. Dev (best epoch) and test F1 (through the export) per arm: mean, the
   spread (min-max, sample standard deviation) and the per-seed gain.

Distillation pays:
4. The teacher: the fine-tuned run with the best dev F1 (or --teacher RUN_DIR).
5. python -m tfner.distill --config configs/distill_resume.yaml (student: 2 layers, hidden 128).
6. Speed of both exports, interleaved (teacher, student, teacher, student, ...) so both see the same load:
   in process (the SavedModel's signature, --batch_texts Resume test sentences a call, default 1: p50 latency
   and texts/s), and served (python -m tfner.serve, --clients threads sending one sentence a request for
   --serve_seconds; batching off, or on with --batching_parameters_file; the server pinned to one CPU, the
   clients to the other, as benchmarks/serve_load.py does).
   Ratios student / teacher: test F1 (target >= 0.97), texts/s (target >= 3), p50 latency (target <= 1/3).
   --student RUN_DIR (with --skip_pretrain --teacher RUN_DIR) measures an existing student instead of distilling;
   both runs are exported again first, so the exports timed are this code's.

Prints every figure; writes results.json in the run folder (--run_dir, which must be new).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)
DATA = os.path.join(REPO, "..", "shared", "data")
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import serve_load  # noqa: E402  (its server start-up and client drive are reused, not copied)


def read_bmes_sentences(path: str) -> list[str]:
    sentences, chars = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in list(f) + [""]:
            line = line.rstrip("\n")
            if not line.strip():
                if chars:
                    sentences.append("".join(chars))
                chars = []
                continue
            chars.append(line.rpartition("\t")[0] if "\t" in line else line.rpartition(" ")[0])
    return sentences


def build_corpus(run_dir: str, data_dir: str) -> dict:
    """Writes the unlabelled corpus, one document a line, without any Resume dev/test sentence.

    Resume repeats short sentences across its splits (e.g. 1963年出生， is in train and in dev), so its train
    text holds some dev/test sentences verbatim: every document that is a dev/test sentence, or contains one
    of 8 characters or more, is dropped (and counted), and the check is run again on what is written.
    """
    resume = os.path.join(data_dir, "resume_ner")
    documents = []
    for split in ("train", "dev", "test"):
        with open(os.path.join(data_dir, "cluener2020", f"{split}.json"), encoding="utf-8") as f:
            documents.extend(json.loads(line)["text"] for line in f if line.strip())
    documents.extend(read_bmes_sentences(os.path.join(resume, "train.char.bmes")))
    documents = [" ".join(d.split()) for d in documents]  # one line each
    held = {s for split in ("dev", "test") for s in read_bmes_sentences(os.path.join(resume, f"{split}.char.bmes"))}
    long_held = [s for s in held if len(s) >= 8]

    def leaks(document):
        return document in held or any(s in document for s in long_held)

    kept = [d for d in documents if d and not leaks(d)]
    dropped = sorted(set(documents) - set(kept))
    path = os.path.join(run_dir, "unlabelled.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(d + "\n" for d in kept))
    joined = "\n".join(kept)
    return {
        "files": [path],
        "documents": len(kept),
        "characters": sum(map(len, kept)),
        "dropped_documents": len(documents) - len(kept),
        "dropped_examples": dropped[:5],
        "resume_dev_test_sentences": len(held),
        "resume_dev_test_in_corpus_exact": len(held & set(kept)),
        "resume_dev_test_in_corpus_as_substring": sum(1 for s in long_held if s in joined),
    }


def command(module: str, args: list[str], log_path: str) -> float:
    """Runs python -m module args, output to log_path; returns wall seconds; fails loudly."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call([sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    if code:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"python -m {module} failed ({code}); {log_path}:\n{tail}")
    return time.time() - started


def tfner_command(title: str, module: str, config: str, overrides: list[str], log_path: str) -> float:
    """python -m module --config configs/<config> --set ... (announced as `title`); returns wall seconds."""
    print(f"\n=== {title}: python -m {module} --config configs/{config} "
          f"{' '.join('--set ' + o for o in overrides)}", flush=True)
    return command(module, ["--config", os.path.join(REPO, "configs", config),
                            *[x for o in overrides for x in ("--set", o)]], log_path)


def metrics_of(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return (f"{statistics.mean(values):.4f} (min {min(values):.4f}, max {max(values):.4f}, "
            f"sd {statistics.stdev(values):.4f}, n={len(values)})")


# ---- speed -----------------------------------------------------------------------------------------------------
def in_process_round(path: str, texts: list[str], calls: int, batch_texts: int = 1) -> dict:
    """`batch_texts` texts a call through the SavedModel signature: p50/p99 latency of a call and texts/s."""
    import tensorflow as tf

    signature = tf.saved_model.load(path).signatures["serving_default"]
    encoded = [tf.constant([t.encode("utf-8") for t in texts[i : i + batch_texts]])
               for i in range(0, len(texts) - batch_texts + 1, batch_texts)]
    for batch in encoded[:5]:
        signature(text=batch)  # outside the clock: first calls trace and warm up
    latencies = []
    started = time.perf_counter()
    for i in range(calls):
        began = time.perf_counter()
        signature(text=encoded[i % len(encoded)])
        latencies.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - started
    return {"texts_per_second": calls * batch_texts / elapsed, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3)}


def served_round(base_path: str, texts: list[str], clients: int, seconds: float, log_path: str, cpus,
                 batching_parameters_file: str = "") -> dict:
    """python -m tfner.serve on the server CPUs (batching off, or on with that file), `clients` threads on the
    others, one text a request."""
    server_cpus, client_cpus = cpus
    args = ["--port", "0", "--bind_address", "127.0.0.1", "--model_name", "ner", "--model_base_path", base_path,
            "--grpc_max_workers", str(max(32, 2 * clients))]
    if batching_parameters_file:
        args += ["--enable_batching", "--batching_parameters_file", os.path.abspath(batching_parameters_file)]
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)  # this thread; the client threads started now inherit it
    try:
        with serve_load.running_server(args, log_path, server_cpus) as port:
            latencies, errors, elapsed = serve_load.drive(port, texts, clients, 1, seconds)
    finally:
        if server_cpus is not None:
            os.sched_setaffinity(0, server_cpus)
    return {"texts_per_second": len(latencies) / elapsed, "p50_ms": serve_load.percentile_ms(latencies, 50),
            "p99_ms": serve_load.percentile_ms(latencies, 99), "errors": errors}


def speed(exports: dict, texts: list[str], args, run_dir: str) -> dict:
    """Interleaved rounds over the exports: in process, then served.

    As in benchmarks/serve_load.py, the model gets one CPU both ways (in process: this process's TensorFlow
    threads, pinned before TensorFlow starts; served: the server process) and the clients the other.
    """
    cpus = serve_load.cpu_layout("split")
    if cpus[0] is not None:
        os.sched_setaffinity(0, cpus[0])
    results = {name: {"in_process": [], "served": []} for name in exports}
    for r in range(args.speed_rounds):
        order = list(exports) if r % 2 == 0 else list(exports)[::-1]
        for name in order:
            results[name]["in_process"].append(in_process_round(exports[name]["version"], texts, args.calls,
                                                                args.batch_texts))
        for name in order:
            log = os.path.join(run_dir, f"serve-{name}-{r}.log")
            results[name]["served"].append(served_round(exports[name]["base"], texts, args.clients,
                                                        args.serve_seconds, log, cpus, args.batching_parameters_file))
        print(f"speed round {r + 1}/{args.speed_rounds}: " + "; ".join(
            f"{name} in-process {results[name]['in_process'][-1]['texts_per_second']:.1f} texts/s p50 "
            f"{results[name]['in_process'][-1]['p50_ms']:.1f} ms, served "
            f"{results[name]['served'][-1]['texts_per_second']:.1f} texts/s p50 "
            f"{results[name]['served'][-1]['p50_ms']:.1f} ms" for name in exports), flush=True)
    return results


# ---- the two experiments -----------------------------------------------------------------------------------------
def pretraining_pays(args, run_dir: str, summary: dict) -> None:
    corpus = build_corpus(run_dir, args.data_dir)
    summary["corpus"] = corpus
    print(f"corpus: {corpus['documents']:,} documents, {corpus['characters']:,} characters "
          f"({corpus['dropped_documents']} dropped for holding a Resume dev/test sentence, e.g. "
          f"{corpus['dropped_examples'][:3]}); Resume dev/test sentences inside it: "
          f"{corpus['resume_dev_test_in_corpus_exact']} exact, "
          f"{corpus['resume_dev_test_in_corpus_as_substring']} as a substring (of "
          f"{corpus['resume_dev_test_sentences']})", flush=True)
    if corpus["resume_dev_test_in_corpus_exact"] or corpus["resume_dev_test_in_corpus_as_substring"]:
        raise SystemExit("the corpus still holds Resume dev/test sentences")
    pretrain_dir = os.path.join(run_dir, "pretrain")
    overrides = [f"run_dir={pretrain_dir}", f"pretrain.text={','.join(corpus['files'])}",
                 f"train.epochs={args.pretrain_epochs}", f"train.seed={args.pretrain_seed}"]
    if args.pretrain_steps:
        overrides.append(f"train.max_steps={args.pretrain_steps}")
    wall = tfner_command("pretraining", "tfner.pretrain", "pretrain_resume.yaml", overrides,
                         os.path.join(run_dir, "pretrain.log"))
    pretrained = metrics_of(pretrain_dir)
    pretrained["wall_seconds"] = wall
    summary["pretrain"] = pretrained
    before, after = pretrained["held_out_before"], pretrained["held_out"]
    print(f"pretraining: {pretrained['steps']} steps, {wall:.0f} s wall ({pretrained['step_seconds']:.0f} s in steps, "
          f"{pretrained['train_tokens_per_second']:.0f} characters/s); held-out masked accuracy "
          f"{before['accuracy']:.4f} -> {after['accuracy']:.4f}, perplexity {before['perplexity']:.1f} -> "
          f"{after['perplexity']:.1f}", flush=True)

    arms = {"pretrained": [f"model.init={pretrained['backbone']}"],
            "scratch": [f"data.vocab={os.path.join(pretrain_dir, 'vocab.txt')}"]}
    summary["finetune"] = {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, extra in arms.items():  # interleaved: both arms of a seed see about the same machine load
            name = f"{arm}-seed{seed}"
            overrides = [f"run_dir={os.path.join(run_dir, name)}", f"export.dir={os.path.join(run_dir, 'export', name)}",
                         f"train.seed={seed}", f"train.epochs={args.finetune_epochs}", *extra]
            wall = tfner_command(f"fine-tuning {name}", "tfner.train", "resume_ner.yaml", overrides,
                                 os.path.join(run_dir, f"{name}.log"))
            m = metrics_of(os.path.join(run_dir, name))
            result = {"seed": seed, "run_dir": os.path.join(run_dir, name), "export": m["export"],
                      "best_dev_f1": m["best_dev_f1"], "test_f1": m["test"]["f1"], "steps": m["steps"],
                      "dev_f1_by_epoch": [h["dev_f1"] for h in m["history"]], "wall_seconds": wall}
            summary["finetune"][arm].append(result)
            print(f"{name}: dev F1 by epoch {', '.join(f'{x:.4f}' for x in result['dev_f1_by_epoch'])}; "
                  f"test F1 {result['test_f1']:.4f}; {wall:.0f} s", flush=True)


def distillation_pays(args, run_dir: str, summary: dict) -> None:
    teacher = args.teacher
    if not teacher:
        runs = [r for arm in summary["finetune"].values() for r in arm]
        teacher = max(runs, key=lambda r: r["best_dev_f1"])["run_dir"]
    teacher_metrics = metrics_of(teacher)
    student_dir, wall = args.student, 0.0
    if not student_dir:
        student_dir = os.path.join(run_dir, "student")
        overrides = [f"run_dir={student_dir}", f"export.dir={os.path.join(run_dir, 'export', 'student')}",
                     f"distill.teacher={teacher}", f"train.epochs={args.distill_epochs}"]
        if args.distill_unlabelled:
            overrides.append(f"distill.unlabelled={args.distill_unlabelled}")
        wall = tfner_command("distillation", "tfner.distill", "distill_resume.yaml", overrides,
                             os.path.join(run_dir, "distill.log"))
    student = metrics_of(student_dir)
    summary["distill"] = {
        "teacher": teacher, "teacher_test_f1": teacher_metrics["test"]["f1"],
        "teacher_best_dev_f1": teacher_metrics["best_dev_f1"], "student_test_f1": student["test"]["f1"],
        "student_best_dev_f1": student["best_dev_f1"], "steps": student["steps"], "wall_seconds": wall,
        "dev_agreement_before": student["distill"]["dev_agreement_before"],
        "dev_agreement_by_epoch": [h.get("dev_agreement") for h in student["history"]],
        "dev_f1_by_epoch": [h["dev_f1"] for h in student["history"]],
    }
    print(f"student: dev F1 by epoch {', '.join(f'{x:.4f}' for x in summary['distill']['dev_f1_by_epoch'])}; test F1 "
          f"{student['test']['f1']:.4f} against the teacher's {teacher_metrics['test']['f1']:.4f} "
          f"(x{student['test']['f1'] / teacher_metrics['test']['f1']:.3f}); "
          + (f"{wall:.0f} s" if not args.student else f"distilled before, in {args.student}"), flush=True)

    texts = read_bmes_sentences(os.path.join(args.data_dir, "resume_ner", "test.char.bmes"))
    paths = {"teacher": teacher_metrics["export"], "student": student["export"]}
    if args.student:  # runs made by other code: export both again, so what is timed is this code's export
        for name, source in (("teacher", teacher), ("student", student_dir)):
            base = os.path.join(run_dir, "export", f"{name}-now")
            command("tfner.export", ["--run", source, "--out", base], os.path.join(run_dir, f"export-{name}.log"))
            paths[name] = os.path.join(base, "1")
    exports = {name: {"version": path, "base": os.path.dirname(path)} for name, path in paths.items()}
    print("\n=== speed (interleaved rounds)", flush=True)
    summary["speed"] = speed(exports, texts, args, run_dir)


def report(summary: dict) -> str:
    lines = []
    if "finetune" in summary:
        p = summary["pretrain"]
        lines += ["pretraining pays", "",
                  f"pretraining: {p['steps']} steps of {p['corpus']['sequences'] - p['corpus']['held_out_sequences']:,} "
                  f"training sequences, {p['wall_seconds']:.0f} s wall ({p['train_tokens_per_second']:.0f} characters/s "
                  f"in steps); held-out masked accuracy {p['held_out_before']['accuracy']:.4f} -> "
                  f"{p['held_out']['accuracy']:.4f}, perplexity {p['held_out_before']['perplexity']:.1f} -> "
                  f"{p['held_out']['perplexity']:.1f}", "",
                  "| arm | best dev F1 | test F1 | fine-tune wall s |", "|---|---|---|---|"]
        arms = summary["finetune"]
        for arm, runs in arms.items():
            lines.append(f"| {arm} | {spread([r['best_dev_f1'] for r in runs])} | {spread([r['test_f1'] for r in runs])} "
                         f"| {statistics.mean(r['wall_seconds'] for r in runs):.0f} |")
        gains = [(a["best_dev_f1"] - b["best_dev_f1"], a["test_f1"] - b["test_f1"])
                 for a, b in zip(arms["pretrained"], arms["scratch"])]
        lines += ["", "gain per seed (pretrained - scratch): " + "; ".join(
            f"seed {r['seed']}: dev {d:+.4f}, test {t:+.4f}" for r, (d, t) in zip(arms["pretrained"], gains)),
            f"mean gain: dev {statistics.mean(d for d, _ in gains):+.4f}, test {statistics.mean(t for _, t in gains):+.4f}"]
    if "distill" in summary:
        d, s = summary["distill"], summary["speed"]

        def pooled(name, kind, key):
            values = [r[key] for r in s[name][kind]]
            return statistics.mean(values), values

        a = summary["args"]
        regimes = {"in_process": f"in-process ({a.get('batch_texts', 1)} a call)",
                   "served": "served (batching " + ("on" if a.get("batching_parameters_file") else "off") + ")"}
        lines += ["", "distillation pays", "",
                  "| | teacher (4 layers, 256) | student (2 layers, 128) | student / teacher |", "|---|---|---|---|",
                  f"| test F1 | {d['teacher_test_f1']:.4f} | {d['student_test_f1']:.4f} | "
                  f"x{d['student_test_f1'] / d['teacher_test_f1']:.3f} |"]
        for kind in ("in_process", "served"):
            for key, label in (("texts_per_second", "texts/s"), ("p50_ms", "p50 ms")):
                t, tv = pooled("teacher", kind, key)
                st, sv = pooled("student", kind, key)
                per_round = [b / a for a, b in zip(tv, sv)]
                lines.append(f"| {regimes[kind]} {label} | {t:.1f} ({min(tv):.1f}-{max(tv):.1f}) | "
                             f"{st:.1f} ({min(sv):.1f}-{max(sv):.1f}) | x{st / t:.2f} (per round "
                             f"{min(per_round):.2f}-{max(per_round):.2f}) |")
        lines.append(f"\nstudent-teacher agreement on dev characters: {d['dev_agreement_before']:.4f} as initialised, "
                     + ", ".join(f"{x:.4f}" for x in d["dev_agreement_by_epoch"]) + " by epoch")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=DATA)
    parser.add_argument("--run_dir", default="", help="default runs/bench/lifecycle-<timestamp>; must be new")
    parser.add_argument("--pretrain_epochs", type=int, default=4)
    parser.add_argument("--pretrain_steps", type=int, default=0, help="stop pretraining after this many steps (0 = all epochs)")
    parser.add_argument("--pretrain_seed", type=int, default=42)
    parser.add_argument("--finetune_epochs", type=int, default=10)
    parser.add_argument("--seeds", default="1,2,3,4,5", help="fine-tuning seeds, comma-separated")
    parser.add_argument("--distill_epochs", type=int, default=10)
    parser.add_argument("--distill_unlabelled", default="", help="distill.unlabelled, e.g. the CLUENER train file")
    parser.add_argument("--teacher", default="", help="the teacher's run_dir (default: the best fine-tuned run)")
    parser.add_argument("--student", default="", help="a distilled run_dir to measure instead of distilling one")
    parser.add_argument("--skip_pretrain", action="store_true", help="distillation only (needs --teacher)")
    parser.add_argument("--skip_distill", action="store_true")
    parser.add_argument("--speed_rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=300, help="in-process calls per round and model")
    parser.add_argument("--batch_texts", type=int, default=1, help="in-process texts per call")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batching_parameters_file", default="",
                        help="serve with batching on, with this file (e.g. benchmarks/demo_batching.config)")
    parser.add_argument("--serve_seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.skip_pretrain and not args.teacher:
        parser.error("--skip_pretrain needs --teacher RUN_DIR")
    if args.student and not args.teacher:
        parser.error("--student needs --teacher RUN_DIR: the pair to measure")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.abspath(args.run_dir or os.path.join(REPO, "runs", "bench", f"lifecycle-{stamp}"))
    if os.path.exists(run_dir) and os.listdir(run_dir):
        raise SystemExit(f"{run_dir} is not empty; give a new --run_dir (a reused one would resume its runs)")
    os.makedirs(run_dir, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({cpu}); run_dir {run_dir}", flush=True)
    summary = {"date": datetime.date.today().isoformat(), "cpu": cpu, "args": vars(args)}
    started = time.time()
    try:
        if not args.skip_pretrain:
            pretraining_pays(args, run_dir, summary)
        if not args.skip_distill:
            distillation_pays(args, run_dir, summary)
    finally:
        summary["wall_seconds"] = time.time() - started
        with open(os.path.join(run_dir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, ensure_ascii=False)
    print(f"\n== results ({summary['date']}, {cpu}, {summary['wall_seconds'] / 60:.0f} min) ==\n" + report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
