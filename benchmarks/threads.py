"""TensorFlow's thread pools (and oneDNN) for inference: one export tagged under several settings, side by side.

    python benchmarks/threads.py --model export/ner                          # TensorFlow's choice against 1 intra-op
    python benchmarks/threads.py --model /tmp/export --settings 0:0,1:0,1:1 --batches 1,8,32 --rounds 6
    python benchmarks/threads.py --model /tmp/export --settings 0:0:1,0:0:0,1:0:1,1:0:0   # oneDNN on and off

Each setting (INTRA:INTER, 0 = TensorFlow's choice, and optionally :ONEDNN, 1 or 0 for TF_ENABLE_ONEDNN_OPTS,
else tfner's default) gets a long-lived child process that sizes the pools with tfner.tf_threads.set_tf_threads
before TensorFlow runs, loads the SavedModel and calls its serving signature, as TF Serving does. The texts are
real sentences (default: Resume NER test, in file order), cut into calls of each --batches size. Every round
asks each child for one pass over the texts per batch size, one child at a time (the others idle), in an order
rotated every round, so that all settings see the same machine load. Reported per setting and batch size: sentences/s pooled over the rounds and the ratio to the
first setting, pooled and as the median of the per-round ratios; the children's entity counts must agree.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)
DEFAULT_TEXTS = os.path.join(os.environ.get("TFNER_DATA", os.path.join(REPO, "..", "shared", "data")),
                             "resume_ner", "test.char.bmes")


def parse_settings(text: str) -> list[tuple]:
    """"0:0,1:0:0" -> [(0, 0, None), (1, 0, 0)]: intra-op threads, inter-op threads, oneDNN (None: as tfner sets it)."""
    try:
        settings = [tuple(int(n) for n in item.split(":")) for item in text.split(",")]
    except ValueError:
        settings = []
    if not settings or any(len(s) not in (2, 3) or min(s) < 0 or s[2:] not in ((), (0,), (1,)) for s in settings):
        raise argparse.ArgumentTypeError(
            f"--settings wants INTRA:INTER[:ONEDNN],... with counts >= 0 and ONEDNN 0 or 1, e.g. 0:0,1:0; got {text!r}")
    return [s if len(s) == 3 else (*s, None) for s in settings]


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(n) for n in text.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"--batches wants sizes >= 1, e.g. 1,32; got {text!r}")
    return batches


def describe(setting: tuple) -> str:
    intra, inter, onednn = setting
    threads = "intra {} / inter {}".format(*(n or "TF's" for n in (intra, inter)))
    return threads if onednn is None else f"{threads} / oneDNN {'on' if onednn else 'off'}"


def child(args) -> int:
    """One setting: size the pools, load the export, then answer "go BATCH" lines with one pass's figures."""
    from tfner.tf_threads import onednn_state, set_tf_threads

    pools = set_tf_threads(args.intra_op, args.inter_op) + f", oneDNN {onednn_state()}"  # before TensorFlow runs
    import tensorflow as tf

    from tfner import data
    from tfner.predict import resolve_version

    signature = tf.saved_model.load(resolve_version(args.model)).signatures["serving_default"]
    texts = [e.text for e in data.read_examples(args.texts)]

    def one_pass(batch: int) -> int:
        entities = 0
        for i in range(0, len(texts), batch):
            entities += int(tf.reduce_sum(signature(text=tf.constant(texts[i : i + batch]))["num_entities"]))
        return entities

    for batch in args.batches:  # traces and warms every call shape class once
        one_pass(batch)
    print(json.dumps({"ready": pools, "texts": len(texts)}), flush=True)
    for line in sys.stdin:
        batch = int(line.split()[1])
        started, cpu = time.perf_counter(), time.process_time()
        entities = one_pass(batch)
        print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
                          "entities": entities}), flush=True)
    return 0


def run(args) -> dict:
    """The driver: one child per setting, rounds alternating; returns {setting: {batch: [per-round figures]}}."""
    children = {}
    for setting in args.settings:
        command = [sys.executable, os.path.abspath(__file__), "--child", "--model", args.model, "--texts", args.texts,
                   "--batches", ",".join(map(str, args.batches)), "--intra_op", str(setting[0]),
                   "--inter_op", str(setting[1])]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        if setting[2] is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = str(setting[2])
        children[setting] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                             env=env)
    try:
        texts = 0
        for setting, process in children.items():  # loading and warm-up run concurrently, unmeasured
            line = process.stdout.readline()
            if not line:
                raise SystemExit(f"the child for {describe(setting)} exited before it was ready (its error is above)")
            ready = json.loads(line)
            texts = ready["texts"]
            print(f"{describe(setting)}: ready ({ready['ready']})", flush=True)
        measured = {s: {b: [] for b in args.batches} for s in args.settings}
        for r in range(args.rounds):
            shift = r % len(args.settings)
            for setting in args.settings[shift:] + args.settings[:shift]:
                for batch in args.batches:
                    children[setting].stdin.write(f"go {batch}\n")
                    children[setting].stdin.flush()
                    measured[setting][batch].append(json.loads(children[setting].stdout.readline()))
            print(f"round {r + 1}/{args.rounds}: " + "; ".join(
                f"{describe(s)} " + ", ".join(f"{texts / measured[s][b][-1]['seconds']:.0f}" for b in args.batches)
                for s in args.settings) + " sentences/s", flush=True)
    finally:
        for process in children.values():
            if process.poll() is None:
                process.stdin.close()
                process.wait(timeout=60)
    return {"texts": texts, "measured": measured}


def report(args, result: dict) -> str:
    texts, measured = result["texts"], result["measured"]
    base = args.settings[0]
    lines = [f"| setting | {' | '.join(f'{b} a call: sentences/s (ratio; median of rounds)' for b in args.batches)} "
             f"| CPU s a pass, batch {max(args.batches)} |", "|---" * (len(args.batches) + 2) + "|"]
    for setting in args.settings:
        cells = []
        for batch in args.batches:
            rounds = measured[setting][batch]
            rate = texts * len(rounds) / sum(m["seconds"] for m in rounds)
            base_rounds = measured[base][batch]
            pooled = sum(m["seconds"] for m in base_rounds) / sum(m["seconds"] for m in rounds)
            median = statistics.median(b["seconds"] / m["seconds"] for b, m in zip(base_rounds, rounds))
            cells.append(f"{rate:,.0f} (x{pooled:.2f}; x{median:.2f})")
        cpu = statistics.median(m["cpu_seconds"] for m in measured[setting][max(args.batches)])
        lines.append(f"| {describe(setting)} | {' | '.join(cells)} | {cpu:.2f} |")
    entities = {m["entities"] for per_setting in measured.values() for rounds in per_setting.values() for m in rounds}
    lines.append(f"\n{texts} sentences a pass, {args.rounds} rounds; entities found per pass: "
                 f"{', '.join(map(str, sorted(entities)))} ({'the same in every pass' if len(entities) == 1 else 'DIFFER'})")
    return "\n".join(lines)


def main(argv=None) -> int:
    from tfner.predict import positive_int  # here: loading tfner.predict loads TensorFlow

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="export/NAME (latest version) or export/NAME/VERSION")
    parser.add_argument("--texts", default=DEFAULT_TEXTS, help="sentences to tag (any format tfner.data reads)")
    parser.add_argument("--settings", type=parse_settings, default=parse_settings("0:0,1:0"),
                        help="INTRA:INTER[:ONEDNN], comma-separated; the first is the baseline (0: TF's choice)")
    parser.add_argument("--batches", type=parse_batches, default=parse_batches("1,32"), help="sentences a call")
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--intra_op", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--inter_op", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; model {args.model}; texts {args.texts}", flush=True)
    print(report(args, run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
