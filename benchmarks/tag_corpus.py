"""Bulk tagging throughput: python -m tfner.tag (Beam, DirectRunner) against a plain loop over tfner.predict.

    python benchmarks/tag_corpus.py --model export/ner                      # 10,000 documents, all configurations
    python benchmarks/tag_corpus.py --model export/ner --documents 2000 --configs loop,tag-1-lengths

The corpus: --documents documents of mixed length made from real sentences (Resume NER train, CLUENER2020
train), seeded: 60 % one sentence (~10-60 characters), 30 % 2-5 sentences, 10 % 8-30 sentences (up to ~2,000
characters: many windows). Written as --shards plain-text files, one document per line, in a
temporary folder.

Configurations, each in a fresh process:

    loop                tfner.predict's SavedModelPredictor.predict over the texts in corpus order, batch 64
    loop-sorted         the same over the texts sorted by length (the simplest length-aware batching)
    loop-lengths        the same loop batched as tfner.tag's --batching lengths does it (sorted, at most 64
                        documents and 8,192 padded characters a call), without Beam: tfner.tag - this = Beam
    tag-N-lengths       python -m tfner.tag, DirectRunner with N workers (N > 1: multi_processing), --batching lengths
    tag-N-plain         the same with --batching plain (Beam's BatchElements, no length awareness)

Reported: seconds from after the imports to the last document (model load and, for tfner.tag, pipeline
start-up and worker start included: what a corpus job pays), documents/s and characters/s over those seconds,
the wall time of the whole process (imports too), its CPU seconds (worker processes included), and the
entities found (must be the same everywhere).
Rounds are interleaved (every configuration once per round, order rotated) because the machine is shared.
"""

import argparse
import datetime
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("TFNER_DATA", os.path.join(REPO, "..", "shared", "data"))
SOURCES = (os.path.join(DATA, "resume_ner", "train.char.bmes"), os.path.join(DATA, "cluener2020", "train.json"))
CONFIGS = ("loop", "loop-sorted", "loop-lengths", "tag-1-lengths", "tag-1-plain", "tag-2-lengths", "tag-2-plain")


def make_corpus(count: int, seed: int) -> list[str]:
    """`count` documents of mixed length joined from real sentences (see the module docstring)."""
    from tfner import data

    sentences = [e.text for e in data.read_examples(list(SOURCES))]
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        roll = rng.random()
        n = 1 if roll < 0.6 else rng.randint(2, 5) if roll < 0.9 else rng.randint(8, 30)
        start = rng.randrange(len(sentences) - n)
        documents.append("".join(sentences[start : start + n]))
    return documents


def write_corpus(documents: list[str], folder: str, shards: int) -> list[str]:
    paths = []
    for shard in range(shards):
        path = os.path.join(folder, f"docs-{shard:02d}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(text + "\n" for text in documents[shard::shards])
        paths.append(path)
    return paths


def run_loop(model: str, corpus: str, batching: str) -> dict:
    """The `loop` configurations, in this process: load, then tag every text (`batching`: corpus, sorted, lengths)."""
    # Imported before the clock starts: tfner.tag's clock also starts after its imports (TensorFlow, Beam).
    from tfner.predict import SavedModelPredictor, entities_from_outputs
    from tfner.tag_io import Document
    from tfner.tag_model import length_batches

    started = time.monotonic()
    texts = []
    for name in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, name), encoding="utf-8") as f:
            texts.extend(line.rstrip("\n") for line in f)
    if batching == "sorted":
        texts.sort(key=len)
    predictor = SavedModelPredictor(model, batch_size=64)
    loaded = time.monotonic()
    if batching == "lengths":
        documents = [Document("", i, i, text) for i, text in enumerate(texts)]
        entities = sum(len(row) for batch in length_batches(documents, 64, 8192)
                       for row in entities_from_outputs(predictor.outputs([d.text for d in batch])))
    else:
        entities = sum(len(row) for row in predictor.predict(texts))
    finished = time.monotonic()
    return {"seconds": finished - started, "load_seconds": loaded - started, "documents": len(texts),
            "characters": sum(map(len, texts)), "entities": entities}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_config(name: str, args, corpus: str, out: str) -> dict:
    """One configuration in a fresh process; returns its figures."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started, cpu_started = time.monotonic(), children_cpu_seconds()
    if name.startswith("loop"):
        batching = name.partition("-")[2] or "corpus"
        command = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--_loop", corpus,
                   "--_batching", batching]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        _, workers, batching = name.split("-")
        prefix = os.path.join(out, name, "part")
        command = [sys.executable, "-m", "tfner.tag", "--model", args.model, "--input", os.path.join(corpus, "*.txt"),
                   "--output", prefix, "--batching", batching, "--progress_seconds", "0", "--runner", "DirectRunner",
                   "--direct_num_workers", workers]
        if int(workers) > 1:
            command += ["--direct_running_mode", "multi_processing"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        with open(f"{prefix}-summary.json", encoding="utf-8") as f:
            summary = json.load(f)
        result = {k: summary[k] for k in ("seconds", "documents", "characters", "entities")}
        for path in os.listdir(os.path.dirname(prefix)):  # the outputs are not needed and can be large
            os.remove(os.path.join(os.path.dirname(prefix), path))
    result["wall_seconds"] = time.monotonic() - started
    # CPU seconds of the process and its reaped children (Beam's worker processes): the work done, which
    # other jobs on a shared machine disturb far less than the wall clock.
    result["cpu_seconds"] = children_cpu_seconds() - cpu_started
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.path.join(REPO, "export", "ner"), help="export/NAME[/VERSION]")
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=8, help="input files (a file is read by one worker)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument("--_loop", help=argparse.SUPPRESS)
    parser.add_argument("--_batching", default="corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._loop:
        print(json.dumps(run_loop(args.model, args._loop, args._batching)))
        return 0

    from tfner.predict import resolve_version

    args.model = resolve_version(args.model)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"--configs: unknown {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    documents = make_corpus(args.documents, args.seed)
    lengths = sorted(map(len, documents))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"{datetime.date.today()}  {cpu}, {os.cpu_count()} cores; model {args.model}")
    print(f"corpus: {len(documents)} documents, {sum(lengths)} characters; length p50 {statistics.median(lengths):g}, "
          f"p90 {lengths[len(lengths) * 9 // 10]}, max {lengths[-1]}; {args.shards} files")
    results = {name: [] for name in configs}
    with tempfile.TemporaryDirectory(prefix="tag_corpus-") as folder:
        corpus = os.path.join(folder, "corpus")
        os.makedirs(corpus)
        write_corpus(documents, corpus, args.shards)
        for round_ in range(args.rounds):
            order = configs[round_ % len(configs):] + configs[: round_ % len(configs)]
            for name in order:
                result = run_config(name, args, corpus, os.path.join(folder, "out"))
                results[name].append(result)
                print(f"  round {round_ + 1} {name}: {result['seconds']:.1f} s, wall {result['wall_seconds']:.1f} s, "
                      f"CPU {result['cpu_seconds']:.1f} s, {result['entities']} entities", flush=True)

    print(f"\n{'configuration':<16}{'seconds':>9}{'docs/s':>9}{'chars/s':>10}{'wall s':>9}{'CPU s':>9}"
          f"{'entities':>10}")
    summary = {}
    for name in configs:
        seconds = statistics.median(r["seconds"] for r in results[name])
        wall = statistics.median(r["wall_seconds"] for r in results[name])
        cpu_seconds = statistics.median(r["cpu_seconds"] for r in results[name])  # `cpu` is the CPU model
        first = results[name][0]
        summary[name] = {"seconds": seconds, "documents_per_second": first["documents"] / seconds,
                         "characters_per_second": first["characters"] / seconds, "wall_seconds": wall,
                         "cpu_seconds": cpu_seconds,
                         "entities": first["entities"], "runs": results[name]}
        print(f"{name:<16}{seconds:>9.1f}{first['documents'] / seconds:>9.1f}{first['characters'] / seconds:>10.0f}"
              f"{wall:>9.1f}{cpu_seconds:>9.1f}{first['entities']:>10}")
    counts = {s["entities"] for s in summary.values()}
    print("entities: the same in every configuration" if len(counts) == 1 else
          f"entities DIFFER between configurations: {sorted(counts)}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"cpu": cpu, "model": args.model, "documents": len(documents), "results": summary}, f, indent=2)
    return 0 if len(counts) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
