"""What an epoch's start costs: dropping the last epoch's input iterator, making the next, the first step.

    python benchmarks/epoch_starts.py                                   # configs/resume_ner.yaml, 10 epochs
    python benchmarks/epoch_starts.py --input strategy                  # as fit() fed itself until 2026-12-07
    python benchmarks/epoch_starts.py --epochs 4 --set train.batch_size=16

Runs `TrainingLoop.fit` of `--config` as `python -m tfner.train` would (no export), and prints, for every epoch
after the first, the seconds from asking for its batches to the end of its first step: the previous epoch's
iterator is dropped in between, and whatever that waits for shows here. The first step of a run is left out (it
traces and compiles the step). `--input fit` is fit()'s own input path (TrainingLoop.distribute); `--input
strategy` is the strategy's input layer (`distribute_datasets_from_function`) with tf.data's autotuning on, the
path fit() used before, on which dropping an iterator waited for autotuning threads (benchmarks/README.md, "The
epoch-start stall"). A stall is a matter of timing, so compare whole runs, not single epochs.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)


def timed_trainer(config, input_path: str):
    """A Trainer that notes when each epoch asks for its batches and when each epoch's first step ends."""
    from tfner import train as train_lib

    class TimedTrainer(train_lib.Trainer):
        def __init__(self, *args):
            super().__init__(*args)
            self.asked, self.first_step_done = {}, {}

        def epoch_dataset(self, epoch, skip):
            self.asked[epoch] = time.perf_counter()
            if input_path == "strategy":
                return self.strategy.distribute_datasets_from_function(
                    lambda context: self.replica_dataset(context, epoch).skip(skip))
            return super().epoch_dataset(epoch, skip)

        def make_train_step(self):
            step = super().make_train_step()

            def timed_step(iterator):
                outputs = step(iterator)
                float(outputs[0])  # the step's end, not its dispatch
                epoch = int(self.step.numpy()) // self.steps_per_epoch
                self.first_step_done.setdefault(epoch, time.perf_counter())
                return outputs

            return timed_step

    strategy = train_lib.start_process(config)
    return TimedTrainer(config, train_lib.load_corpus(config), strategy)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "resume_ner.yaml"))
    parser.add_argument("--epochs", type=int, default=0, help="0 = the config's train.epochs")
    parser.add_argument("--input", choices=("fit", "strategy"), default="fit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)

    from tfner.config import load_config

    scratch = tempfile.mkdtemp(prefix="tfner-epoch-starts-")
    try:
        overrides = [f"run_dir={scratch}/run", "export.enabled=false"] + args.set
        if args.epochs:
            overrides.append(f"train.epochs={args.epochs}")
        trainer = timed_trainer(load_config(args.config, overrides), args.input)
        summary = trainer.fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    starts = [trainer.first_step_done[e] - trainer.asked[e] for e in sorted(trainer.asked) if e > 0]
    print(f"\ninput: {args.input}; {trainer.steps_per_epoch} steps an epoch; {os.cpu_count()} logical CPUs")
    print("epoch starts (s, ask for batches -> first step done): " + " ".join(f"{s:.1f}" for s in starts))
    print(f"epoch starts in all: {sum(starts):.1f} s, longest {max(starts, default=0):.1f} s")
    print(f"fit: {summary['train_seconds']:.1f} s, {summary['step_seconds']:.1f} s in train steps")
    print(f"best dev F1: {summary['best_dev_f1']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
