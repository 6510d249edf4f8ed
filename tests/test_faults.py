"""Training under faults: SIGKILL at several points, a truncated checkpoint, an interrupted export.

One run of the tiny model is killed again and again, each time somewhere else, and run again with the same
command until it finishes; it must end exactly where the uninterrupted `tiny_run` fixture did. Kills from
outside (real SIGKILL, at a random moment of training, inside an export, between the export and the test
scores) cover the long stretches; the two windows of a few milliseconds, inside a checkpoint write and inside
the best/ swap, are hit through the TFNER_FAULT hook (tfner/faults.py), which a kill from outside would miss.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tiny import REPO

KILLED = -signal.SIGKILL


class Run:
    """`train_tiny(folder)` in a subprocess, started again after every kill: the same command each time."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.run_dir = os.path.join(self.folder, "run")
        self.export_dir = os.path.join(self.folder, "export", "ner")
        self.checkpoints = os.path.join(self.run_dir, "checkpoints")
        self.starts = 0

    def start(self, fault: str | None = None) -> subprocess.Popen:
        self.starts += 1
        self.log_path = os.path.join(self.folder, f"start-{self.starts}.log")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        env.pop("TFNER_FAULT", None)
        if fault:
            env["TFNER_FAULT"] = fault
        code = f"import sys; sys.path.insert(0, 'tests'); from tiny import train_tiny; train_tiny({self.folder!r})"
        with open(self.log_path, "w") as log:
            return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def finish(self, process: subprocess.Popen, timeout: float = 400) -> int:
        try:
            return process.wait(timeout=timeout)
        finally:
            process.kill()

    def kill_when(self, process: subprocess.Popen, condition, delay: float = 0.0, timeout: float = 400) -> int:
        """SIGKILLs the process `delay` seconds after condition() holds (polled every 5 ms)."""
        deadline = time.time() + timeout
        while not condition() and process.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        return self.finish(process)

    def recorded(self) -> list[str]:
        """Checkpoints the `checkpoint` index lists, oldest first."""
        state = tf.train.get_checkpoint_state(self.checkpoints)
        return [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []

    def staging(self) -> bool:
        """An export is being written: its hidden staging folder exists."""
        return os.path.isdir(self.export_dir) and any(n.startswith(".tmp-") for n in os.listdir(self.export_dir))

    def versions(self) -> list[str]:
        return sorted(n for n in os.listdir(self.export_dir) if n.isdigit()) if os.path.isdir(self.export_dir) else []


def weights(prefix: str) -> dict:
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


@pytest.mark.slow
def test_killed_again_and_again_ends_as_an_uninterrupted_run(tiny_run, tmp_path):
    """The tiny run has 22 steps an epoch, 2 epochs, checkpoints at steps 10, 20, 22 (epoch 1's end), 30, 40, 44."""
    run = Run(tmp_path)
    rng = random.Random(10)

    # 1. Inside the best/ swap at the end of epoch 1: the old best/ is gone, the new one not yet in place.
    assert run.finish(run.start("best_write:1")) == KILLED, run.log()[-3000:]
    assert run.recorded() == ["ckpt-10", "ckpt-20"]
    assert not os.path.exists(os.path.join(run.run_dir, "best")) and os.path.isdir(run.run_dir + "/best.tmp")

    # 2. Inside the write of checkpoint 22, epoch 1's: its files are on disk, the index does not list them.
    assert run.finish(run.start("checkpoint_write:1")) == KILLED, run.log()[-3000:]
    assert "resumed from" in run.log() and "ckpt-20 at step 20" in run.log()
    assert os.path.exists(os.path.join(run.checkpoints, "ckpt-22.index"))
    assert run.recorded() == ["ckpt-10", "ckpt-20"]
    # The epoch's record is written before its checkpoint: killed after the checkpoint, it would be lost.
    assert [h["epoch"] for h in json.load(open(os.path.join(run.run_dir, "history.json")))] == [1]

    # 3. A real SIGKILL at a random moment of epoch 2 (after checkpoint 22 is listed).
    delay = rng.uniform(0.0, 1.5)
    process = run.start()
    assert run.kill_when(process, lambda: "ckpt-22" in run.recorded(), delay) == KILLED, run.log()[-3000:]
    print(f"3: killed {delay:.2f} s after checkpoint 22; checkpoints then: {run.recorded()}")

    # 4. The newest checkpoint truncated to half (a full disk, a copy cut short), then a real SIGKILL inside
    #    the export, watched for: its hidden staging folder exists, no version folder does.
    previous, newest = (os.path.join(run.checkpoints, name) for name in run.recorded()[-2:])
    data_file = newest + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    process = run.start()
    assert run.kill_when(process, run.staging) == KILLED, run.log()[-3000:]
    log = run.log()
    assert f"checkpoint {newest} does not read back" in log, log[-3000:]
    assert f"resumed from {previous} at step" in log, log[-3000:]
    assert run.versions() == [], "an export killed mid-write must not leave a version folder"

    # 5. A real SIGKILL as soon as version 1 is in place, while the test set is being scored.
    process = run.start()
    assert run.kill_when(process, lambda: run.versions() == ["1"]) == KILLED, run.log()[-3000:]
    assert not os.path.exists(os.path.join(run.run_dir, "metrics.json"))

    # 6. The same command once more runs to the end.
    process = run.start()
    assert run.finish(process) == 0, run.log()[-3000:]
    resumed = json.load(open(os.path.join(run.run_dir, "metrics.json")))
    expected = tiny_run["summary"]
    assert resumed["steps"] == expected["steps"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert [h["dev_f1"] for h in resumed["history"]] == [h["dev_f1"] for h in expected["history"]]
    assert resumed["best_dev_f1"] == expected["best_dev_f1"]
    assert resumed["test"]["f1"] == expected["test"]["f1"]
    assert run.versions() == ["1"] and resumed["export"] == os.path.join(run.export_dir, "1")  # not a second one
    ours = weights(os.path.join(run.run_dir, "best", "model"))
    theirs = weights(os.path.join(tiny_run["run_dir"], "best", "model"))
    assert ours.keys() == theirs.keys()
    different = [name for name in ours if not np.array_equal(ours[name], theirs[name])]
    assert not different, different


@pytest.mark.parametrize("damage", ["truncate data", "flip a byte", "truncate index", "delete data"])
def test_a_damaged_newest_checkpoint_is_reported_and_the_one_before_used(tmp_path, caplog, damage):
    from tfner.train import restore_newest_intact

    value = tf.Variable(tf.zeros([1000]))
    checkpoint = tf.train.Checkpoint(value=value)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=3)
    for step in (1, 2, 3):
        value.assign(tf.fill([1000], float(step)))
        manager.save(checkpoint_number=step)
    newest = os.path.join(str(tmp_path), "ckpt-3")
    path = newest + (".index" if damage == "truncate index" else ".data-00000-of-00001")
    if damage == "flip a byte":
        with open(path, "r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "delete data":
        os.remove(path)
    else:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    with caplog.at_level("WARNING"):
        restored = restore_newest_intact(checkpoint, tf.train.CheckpointManager(checkpoint, str(tmp_path), 3))
    assert restored == os.path.join(str(tmp_path), "ckpt-2") and float(value[0]) == 2.0
    assert f"checkpoint {newest} does not read back" in caplog.text


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    from tfner.train import restore_newest_intact

    checkpoint = tf.train.Checkpoint(value=tf.Variable(tf.zeros([100])))
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=3)
    manager.save(checkpoint_number=1)
    os.remove(os.path.join(str(tmp_path), "ckpt-1.data-00000-of-00001"))
    with pytest.raises(RuntimeError, match="none of the checkpoints in .* reads back whole .*ckpt-1.*delete the folder"):
        restore_newest_intact(checkpoint, manager)
    empty = tf.train.CheckpointManager(checkpoint, str(tmp_path / "none"), max_to_keep=3)
    assert restore_newest_intact(checkpoint, empty) is None  # no checkpoint yet: a fresh run
