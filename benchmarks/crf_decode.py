"""The CRF's inference alone (Viterbi + forward-backward marginals), optionally side by side with another crf.py.

    python benchmarks/crf_decode.py                                   # this tree's tfner/crf.py
    git show HEAD~1:tfner/crf.py > /tmp/crf_before.py
    python benchmarks/crf_decode.py --baseline /tmp/crf_before.py     # this tree's against it, alternating

Random emissions and random row lengths (the first row full), a tf.function per implementation, as the export
calls them. With --baseline, both must give the same Viterbi paths (checked) and the marginals' largest
difference is printed; the rounds alternate which one runs first, and the ratio is of the medians.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)


def load_crf(path: str):
    """A crf.py file as a module of its own, so that two versions live in one process."""
    spec = importlib.util.spec_from_file_location(f"crf_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decoder(crf_module, transitions, start, end):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def decode(emissions, mask):
        emissions, mask = crf_module._prepare(emissions, mask)
        return (crf_module._viterbi(emissions, mask, transitions, start, end),
                crf_module._scaled_marginals(emissions, mask, transitions, start, end))

    return decode


def parse_cases(text: str) -> list[tuple[int, int]]:
    """"1x22,32x40" -> [(1, 22), (32, 40)]: texts x tokens."""
    try:
        return [tuple(int(n) for n in case.split("x")) for case in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cases wants TEXTSxTOKENS,..., e.g. 1x22,32x40; got {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="another crf.py to compare with (e.g. from `git show REV:tfner/crf.py`)")
    parser.add_argument("--tags", type=int, default=33, help="33: Resume's tag set (8 types x B/I/E/S, and O); the demo has 13")
    parser.add_argument("--cases", type=parse_cases, default=parse_cases("1x22,1x102,1x130,32x40"))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=30, help="timed calls per round and implementation")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weights = [tf.constant(rng.normal(size=shape).astype(np.float32))
               for shape in ((args.tags, args.tags), (args.tags,), (args.tags,))]
    implementations = {"this tree": decoder(load_crf(os.path.join(REPO, "tfner", "crf.py")), *weights)}
    if args.baseline:
        implementations["baseline"] = decoder(load_crf(args.baseline), *weights)

    print(f"{args.tags} tags; median of {args.rounds} rounds x {args.calls} calls, ms per call")
    for texts, tokens in args.cases:
        emissions = tf.constant(3 * rng.normal(size=(texts, tokens, args.tags)).astype(np.float32))
        lengths = rng.integers(1, tokens + 1, size=texts)
        lengths[0] = tokens
        mask = tf.constant(np.arange(tokens)[None] < lengths[:, None])
        outputs = {name: decode(emissions, mask) for name, decode in implementations.items()}
        seconds = {name: [] for name in implementations}
        for round_ in range(args.rounds):
            order = list(implementations.items())
            for name, decode in order[round_ % 2:] + order[:round_ % 2]:
                decode(emissions, mask)  # warm
                started = time.perf_counter()
                for _ in range(args.calls):
                    decode(emissions, mask)[1].numpy()
                seconds[name].append((time.perf_counter() - started) / args.calls)
        medians = {name: statistics.median(s) * 1000 for name, s in seconds.items()}
        line = f"{texts:3d} x {tokens:4d}: this tree {medians['this tree']:.2f}"
        if args.baseline:
            paths, marginals = (o.numpy() for o in outputs["this tree"])
            base_paths, base_marginals = (o.numpy() for o in outputs["baseline"])
            if not np.array_equal(paths, base_paths):
                print(f"{texts} x {tokens}: Viterbi paths differ from the baseline's", file=sys.stderr)
                return 1
            line += (f", baseline {medians['baseline']:.2f}, this / baseline "
                     f"x{medians['this tree'] / medians['baseline']:.2f}; paths equal, marginals differ by at most "
                     f"{np.abs(marginals - base_marginals).max():.1e}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
