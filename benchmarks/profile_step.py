"""Where the time goes: a TF-profiler breakdown of a train step and of a serving call.

    python benchmarks/profile_step.py                                  # configs/resume_ner.yaml, both parts
    python benchmarks/profile_step.py --set train.mixed_precision=mixed_bfloat16   # the same with a lever
    python benchmarks/profile_step.py --part serve --run runs/resume_ner

Train part: the Trainer of `--config` (Resume NER, BERT-Base Chinese vocab as in train_resume.py) runs
`--warmup` steps, then `--steps` more under tf.profiler; every op's self time is summed into a part of the
model by its name scope (the Keras layer that made it) and its type. Serve part: the NerModule of a trained
run (`--run`; without one, of the untrained Trainer above, which costs the same), `--serve_batch` Resume test
sentences per call (default 1), as the export serves them. Both print a table: milliseconds per step (or call) and share, plus the
padding waste of the training batches and the CPU.

Ops are assigned to parts by name, so a part is as exact as the layers' name scopes: ops outside any layer
(casts, reshapes, the loss) land in "other".
"""

import argparse
import collections
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)
DATA = os.path.join(REPO, "..", "shared", "data")

# Matrix products and their bias adds, under the names oneDNN's graph rewrites give them.
MATMUL_KINDS = {"MatMul", "_MklMatMul", "BatchMatMulV2", "_MklBatchMatMulV2", "_FusedMatMul", "_MklFusedMatMul",
                "_MklNativeFusedMatMul", "BiasAdd", "BiasAddGrad"}

# (part, test on the lower-cased op name and type), first match wins; the order matters.
PARTS = [
    ("input pipeline", lambda name, kind: kind in ("IteratorGetNext", "MultiDeviceIteratorGetNextFromShard")
     or "iterator" in kind.lower()),
    ("optimizer (AdamW, clipping)", lambda name, kind: "adamw" in name or "global_norm" in name
     or kind.startswith("ResourceApply") or kind in ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp")),
    # The CRF's loops are tf.scan ops; autodiff through them adds top-level zeros_like / PartitionedCall. Not any
    # "while": the serving signature runs the whole model in a loop over window groups (export.group_windows).
    ("CRF", lambda name, kind: "crf" in name or "scan" in name or name.startswith("zeros_like")
     or name.startswith("partitionedcall")),
    ("embedding", lambda name, kind: "embedding" in name),
    ("attention", lambda name, kind: "attention" in name and "layer_norm" not in name and "layernorm" not in name),
    ("LayerNorm", lambda name, kind: "layer_norm" in name or "layernorm" in name),
    ("feed-forward matmuls", lambda name, kind: ("feedforward" in name or "intermediate" in name
                                                 or "output_dense" in name) and kind in MATMUL_KINDS),
    ("GELU and other feed-forward", lambda name, kind: "feedforward" in name or "intermediate" in name),
    ("dropout", lambda name, kind: "dropout" in name),
    ("emission head", lambda name, kind: "emission" in name),
    ("tokenizer, windows, spans (input pipeline, serving)",
     lambda name, kind: "ner_module" in name or "ragged" in name or "string" in kind.lower() or "unicode" in kind.lower()
     or name.startswith("while")),  # what is left of the group loop: packing windows and scattering results back
]


def part_of(name: str, kind: str) -> str:
    lowered = name.lower()
    for part, test in PARTS:
        if test(lowered, kind):
            return part
    return "other (glue, casts, reshapes, loss)"


NOT_OPS = ("IDLE", "Dataset")  # idle time, and tf.data's nested iterator spans (counted by IteratorGetNext)


def op_stats(logdir: str) -> list[dict]:
    """The profile's per-op table (framework_op_stats) as dicts: operation, type, occurrences, self time (us)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    raw, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler could not convert {paths}: {raw[:200]!r}")
    table = json.loads(raw)[0]
    columns = [c["id"] for c in table["cols"]]
    rows = [dict(zip(columns, [cell["v"] for cell in row["c"]])) for row in table["rows"]]
    return [r for r in rows if r["type"] not in NOT_OPS]


def profile(function, calls: int) -> tuple[list[dict], float]:
    """Runs function() `calls` times under the profiler; returns the op table and the wall seconds."""
    import tensorflow as tf

    logdir = tempfile.mkdtemp(prefix="tfner-profile-")
    try:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        for _ in range(calls):
            function()
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        return op_stats(logdir), wall
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def breakdown(rows: list[dict], calls: int, wall: float, unit: str) -> str:
    totals, kinds = collections.Counter(), collections.defaultdict(collections.Counter)
    for row in rows:
        part = part_of(row["operation"], row["type"])
        totals[part] += row["total_self_time"]
        kinds[part][row["type"]] += row["total_self_time"]
    busy = sum(totals.values())
    lines = [f"| part | ms per {unit} | share of op time | top op types |", "|---|---|---|---|"]
    for part, micros in totals.most_common():
        top = ", ".join(kind for kind, _ in kinds[part].most_common(3))
        lines.append(f"| {part} | {micros / calls / 1000:.1f} | {micros / busy:.0%} | {top} |")
    lines.append(f"| **op time, summed over threads** | **{busy / calls / 1000:.1f}** | | |")
    lines.append(f"| wall time | {wall / calls * 1000:.1f} | | |")
    return "\n".join(lines)


def cpu_line() -> str:
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = " ".join(sorted(x for x in line.split(":", 1)[1].split()
                                            if x.startswith(("avx", "amx", "fma"))))
    except OSError:
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} logical CPUs; {flags or 'flags unknown'}"


def train_part(args):
    import tensorflow as tf

    from tfner import train as train_lib
    from tfner.config import load_config
    from tfner.distribute import make_strategy

    resume = args.data_dir
    overrides = [f"run_dir={args.scratch}/run", f"data.train={resume}/train.char.bmes",
                 f"data.dev={resume}/dev.char.bmes", f"data.test={resume}/test.char.bmes",
                 f"data.vocab={args.vocab}"] + args.set
    config = load_config(args.config, overrides)
    train_lib.start_process(config)
    strategy = make_strategy(config.train.distribute, config.train.tpu)
    trainer = train_lib.Trainer(config, train_lib.load_corpus(config), strategy)
    step = trainer.make_train_step()
    iterator = iter(trainer.epoch_dataset(0, 0))

    def one_step():
        loss, _ = step(iterator)
        float(loss)

    for _ in range(args.warmup):
        one_step()
    rows, wall = profile(one_step, args.steps)

    # Padding waste over one epoch of batches: tokens computed on against real characters.
    real = padded = 0
    batches = trainer.replica_dataset(tf.distribute.InputContext(), 0).take(trainer.steps_per_epoch)
    for features, labels in batches:
        real += int(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32)))
        padded += int(tf.size(features["padding_mask"]))
    return trainer, rows, wall, real / padded


def serve_part(args, trainer):
    import tensorflow as tf

    from tfner import data
    from tfner.export import load_run

    module = load_run(args.run) if args.run else trainer.inference
    module.with_confidence = True
    texts = [e.text for e in data.read_examples([os.path.join(args.data_dir, "test.char.bmes")], "conll", "BMES")]
    position = iter(range(10**9))

    def one_call():
        first = next(position) * args.serve_batch
        out = module(tf.constant([texts[(first + i) % len(texts)] for i in range(args.serve_batch)]))
        out["num_entities"].numpy()

    for _ in range(args.warmup):
        one_call()
    return profile(one_call, args.calls)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "resume_ner.yaml"))
    parser.add_argument("--data_dir", default=os.path.join(DATA, "resume_ner"))
    parser.add_argument("--vocab", default=os.path.join(DATA, "vocab", "vocab.txt"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--part", choices=("train", "serve", "both"), default="both")
    parser.add_argument("--run", default="", help="a trained run_dir for the serve part (default: untrained)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="profiled train steps")
    parser.add_argument("--calls", type=int, default=200, help="profiled serving calls")
    parser.add_argument("--serve_batch", type=int, default=1, help="Resume test sentences per serving call")
    args = parser.parse_args(argv)
    args.scratch = tempfile.mkdtemp(prefix="tfner-profile-run-")
    try:
        print(f"CPU: {cpu_line()}")
        print(f"overrides: {args.set or 'none'}")
        trainer = None
        if args.part in ("train", "both"):
            trainer, rows, wall, useful = train_part(args)
            print(f"\n### train step ({args.steps} steps after {args.warmup} warm-up; batch "
                  f"{trainer.global_batch}; real tokens / padded tokens over an epoch: {useful:.0%})\n")
            print(breakdown(rows, args.steps, wall, "step"))
        if args.part in ("serve", "both"):
            if trainer is None and not args.run:
                trainer, *_ = train_part(argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 0}))
            rows, wall = serve_part(args, trainer)
            print(f"\n### serving call ({args.serve_batch} Resume test sentence(s) per call, in file order, "
                  f"{args.calls} calls)\n")
            print(breakdown(rows, args.calls, wall, "call"))
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
