"""Latency and throughput of an exported SavedModel against the same model in process.

    python -m tfner.train --set run_dir=/tmp/bench_demo --set export.dir=/tmp/bench_export   # the demo
    python benchmarks/export_latency.py --model /tmp/bench_export --run /tmp/bench_demo

Five ways to tag the same texts, measured side by side:

- savedmodel: `tf.saved_model.load(export).signatures["serving_default"]`, what TF Serving runs;
- module:     `tfner.export.load_run(run_dir)`, the NerModule tf.function the export wraps, called in process
              (same graph, not through the SavedModel);
- forward+decode: the tagger's forward pass and CRF decode (Viterbi + marginals) on pre-tokenized,
              pre-windowed inputs, in one tf.function;
- forward:    the forward pass alone on the same inputs.
- decode:     the CRF decode alone on the forward pass's emissions (computed once, outside timing).

module - forward+decode is the cost of the in-graph tokenizer, windowing, merge and span extraction.
decode / forward is the CRF decode against the forward pass, each timed on its own (the difference
forward+decode - forward, two noisy p50s of a few milliseconds, swings more; both are printed).

Texts are cut from the Resume NER test sentences joined end to end: short (20 characters), medium (100) and
long (2,000: many windows). Reported per path and length: p50 and p99 latency of one text per call, texts/s
one text per call, and texts/s --batch_size (default 32) texts per call. The machine is shared and noisy, so
the measurements are interleaved: every round runs every (length, path) pair in a rotated order, and the
figures pool the rounds.
"""

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)
DEFAULT_TEXTS = os.path.join(os.environ.get("TFNER_DATA", os.path.join(REPO, "..", "shared", "data")),
                             "resume_ner", "test.char.bmes")
LENGTHS = {"short": 20, "medium": 100, "long": 2000}
PATHS = ("savedmodel", "module", "forward+decode", "forward", "decode")


def make_texts(source: str, length: int, count: int, seed: int) -> list[str]:
    """`count` texts of `length` characters cut at random offsets from the source sentences joined."""
    from tfner import data

    stream = "".join(e.text for e in data.read_examples(source))
    if len(stream) < length:
        raise SystemExit(f"{source}: only {len(stream)} characters, cannot cut {length}-character texts")
    rng = random.Random(seed)
    return [stream[o : o + length] for o in (rng.randrange(len(stream) - length + 1) for _ in range(count))]


class Callers:
    """One callable per path, each taking a list of texts and returning once the result is computed."""

    def __init__(self, model_path: str, run_dir: str):
        import tensorflow as tf

        from tfner.export import load_run
        from tfner.model import character_mask
        from tfner.predict import resolve_version

        self.tf = tf
        self.model_path = resolve_version(model_path)
        self.signature = tf.saved_model.load(self.model_path).signatures["serving_default"]
        self.module = load_run(run_dir)
        model = self.module.model
        self.window, self.stride = self.module.window, self.module.stride
        spec = {name: tf.TensorSpec([None, None], dtype) for name, dtype in
                (("token_ids", tf.int32), ("segment_ids", tf.int32), ("padding_mask", tf.bool))}

        @tf.function(input_signature=[spec])
        def forward(features):
            return model(features, training=False)

        @tf.function(input_signature=[spec])
        def forward_decode(features):
            emissions = model(features, training=False)
            return model.decode(emissions, character_mask(features["padding_mask"]))

        @tf.function(reduce_retracing=True)
        def decode(emissions, mask):
            return model.decode(emissions, mask)

        self.forward, self.forward_decode, self.decode = forward, forward_decode, decode
        self.features_cache, self.emissions_cache = {}, {}
        self.character_mask = character_mask

    def windows(self, texts: list[str]) -> dict:
        """The model inputs NerModule builds for these texts (same windows), computed once, outside timing."""
        key = tuple(texts)
        if key not in self.features_cache:
            tokenizer = self.module.tokenizer
            rows = []
            for ids in tokenizer(self.tf.constant(texts)).to_list():
                n = len(ids)
                last = max(n - self.window, 0)
                starts = sorted({min(k * self.stride, last) for k in range(max(1, 1 + -(-last // self.stride)))})
                rows.extend(ids[s : s + self.window] for s in starts)
            ragged = self.tf.ragged.constant(rows, dtype=self.tf.int32, ragged_rank=1)
            self.features_cache[key] = tokenizer.pack(ragged, max(len(r) for r in rows) + 2)
        return self.features_cache[key]

    def emissions(self, texts: list[str]) -> tuple:
        """(emissions, character mask) of the forward pass over these texts' windows, computed once."""
        key = tuple(texts)
        if key not in self.emissions_cache:
            features = self.windows(texts)
            self.emissions_cache[key] = (self.forward(features), self.character_mask(features["padding_mask"]))
        return self.emissions_cache[key]

    def __call__(self, path: str, texts: list[str]) -> None:
        tf = self.tf
        if path == "savedmodel":
            self.signature(text=tf.constant(texts))["num_entities"].numpy()
        elif path == "module":
            self.module(tf.constant(texts))["num_entities"].numpy()
        elif path == "forward+decode":
            self.forward_decode(self.windows(texts))[0].numpy()
        elif path == "decode":
            self.decode(*self.emissions(texts))[0].numpy()
        else:
            self.forward(self.windows(texts)).numpy()

    def check_agreement(self, texts: list[str]) -> int:
        """How many of `texts` the SavedModel and the in-process module tag differently (should be 0)."""
        a = self.signature(text=self.tf.constant(texts))
        b = self.module(self.tf.constant(texts))
        return int(sum(not np.array_equal(a[k].numpy(), b[k].numpy()) for k in ("num_entities", "entity_starts",
                                                                                  "entity_ends", "tags")))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv=None) -> int:
    from tfner.predict import positive_int  # here: loading tfner.predict loads TensorFlow

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="export/NAME (latest version) or export/NAME/VERSION")
    parser.add_argument("--run", required=True, help="the run_dir the export came from (for load_run)")
    parser.add_argument("--texts", default=DEFAULT_TEXTS, help="corpus the texts are cut from")
    parser.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds")
    parser.add_argument("--single_calls", type=positive_int, default=40,
                        help="one-text calls per (length, path) per round")
    parser.add_argument("--batch_calls", type=positive_int, default=3,
                        help="--batch_size-text calls per (length, path) per round")
    parser.add_argument("--batch_size", type=positive_int, default=32)
    parser.add_argument("--lengths", default="short,medium,long", help=f"subset of {','.join(LENGTHS)}")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    callers = Callers(args.model, args.run)
    lengths = [name.strip() for name in args.lengths.split(",") if name.strip()]
    # Two full batches alternate (pool[0:B], pool[B:2B]), so the pool holds at least 2 * --batch_size texts.
    pool_size = max(64, 2 * args.batch_size)
    pools = {name: make_texts(args.texts, LENGTHS[name], pool_size, seed=i) for i, name in enumerate(lengths)}
    batches = {name: [pools[name][i : i + args.batch_size] for i in (0, args.batch_size)] for name in lengths}
    mismatches = sum(callers.check_agreement(pools[name][:8]) for name in lengths)
    print(f"export {callers.model_path}; run {args.run}; SavedModel vs module disagreements: {mismatches}")
    print(f"window {callers.window} characters, stride {callers.stride}; machine {platform.platform()}, "
          f"{os.cpu_count()} CPUs")

    for name in lengths:  # warm up every path, both batch shapes, and cache the pre-windowed inputs
        for path in PATHS:
            for _ in range(3):
                callers(path, pools[name][:1])
            for batch in batches[name]:
                callers(path, batch)
            for text in pools[name]:
                callers.emissions([text])

    single = {(n, p): [] for n in lengths for p in PATHS}
    batched = {(n, p): [] for n in lengths for p in PATHS}
    started = time.time()
    for r in range(args.rounds):
        for name in lengths:
            order = PATHS[r % len(PATHS):] + PATHS[: r % len(PATHS)]
            for path in order:
                for i in range(args.single_calls):
                    text = pools[name][(r * args.single_calls + i) % len(pools[name])]
                    t = time.perf_counter()
                    callers(path, [text])
                    single[name, path].append(time.perf_counter() - t)
                for i in range(args.batch_calls):
                    t = time.perf_counter()
                    callers(path, batches[name][i % len(batches[name])])
                    batched[name, path].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds} done ({time.time() - started:.0f} s)", flush=True)

    results = []
    for name in lengths:
        for path in PATHS:
            one, many = single[name, path], batched[name, path]
            results.append({
                "length": name, "chars": LENGTHS[name], "path": path,
                "p50_ms": 1000 * percentile(one, 50), "p99_ms": 1000 * percentile(one, 99),
                "texts_per_s_batch1": len(one) / sum(one),
                f"texts_per_s_batch{args.batch_size}": args.batch_size * len(many) / sum(many),
                "samples_batch1": len(one), f"samples_batch{args.batch_size}": len(many),
            })

    b = args.batch_size
    print(f"\n| text | path | p50 ms (batch 1) | p99 ms (batch 1) | texts/s (batch 1) | texts/s (batch {b}) |")
    print("|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['length']} ({row['chars']} chars) | {row['path']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
              f"| {row['texts_per_s_batch1']:.1f} | {row[f'texts_per_s_batch{b}']:.1f} |")
    print(f"\nratios (p50 at batch 1; texts/s at batch {b}):")
    by = {(r["length"], r["path"]): r for r in results}
    for name in lengths:
        sm, mod, fd, fw, dec = (by[name, p] for p in PATHS)
        rate = f"texts_per_s_batch{b}"
        print(f"  {name}: savedmodel/module p50 x{sm['p50_ms'] / mod['p50_ms']:.2f}, "
              f"module/forward p50 x{mod['p50_ms'] / fw['p50_ms']:.2f} "
              f"(forward+decode/forward x{fd['p50_ms'] / fw['p50_ms']:.2f}); batch {b} texts/s "
              f"savedmodel/module x{sm[rate] / mod[rate]:.2f}, module/forward x{mod[rate] / fw[rate]:.2f}")
        print(f"    CRF decode / forward pass: p50 at batch 1 x{dec['p50_ms'] / fw['p50_ms']:.2f}, "
              f"time a text at batch {b} x{fw[rate] / dec[rate]:.2f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"date": datetime.date.today().isoformat(), "model": callers.model_path, "run": args.run,
                       "disagreements": mismatches, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
