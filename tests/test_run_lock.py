"""One process at a time in a run_dir: a second tfner.train, tfner.pretrain or tfner.distill into a run_dir in use
is refused before it reads or writes anything there, and a killed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys

import pytest

from tfner import run_lock
from tfner.config import ConfigError
from tiny import REPO, SHARED_DATA

HOLDER = """
import sys, time
from tfner import run_lock
with run_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def held_by_another_process(tmp_path):
    """run_dir held by a live child process (flock is per process: holding it here would test nothing)."""
    run_dir = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, run_dir], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield run_dir, holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_frees_the_run_dir(
        held_by_another_process):
    run_dir, holder = held_by_another_process
    with pytest.raises(ConfigError) as refused:
        with run_lock.hold(run_dir):
            pytest.fail("entered a run_dir another process holds")
    assert f"run_dir {run_dir} is in use: pid {holder.pid} on " in str(refused.value)
    assert "wait for that run to end (or stop it), or choose another run_dir" in str(refused.value)

    holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock with the process
    holder.wait()
    with run_lock.hold(run_dir):
        with open(os.path.join(run_dir, run_lock.LOCK_NAME)) as f:
            assert f.read().startswith(f"pid {os.getpid()} on ")
    with run_lock.hold(run_dir):  # released at the end of the block: the next run of this process gets it
        pass


def test_the_lock_is_skipped_where_it_cannot_or_must_not_apply(tmp_path, held_by_another_process):
    run_dir, _ = held_by_another_process
    with run_lock.hold(run_dir, enabled=False):  # a multi-worker run's non-chief worker shares the chief's
        pass
    with run_lock.hold("ram://tfner-run-lock/run"):  # no flock on a filesystem scheme
        pass


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_the_commands_refuse_a_run_dir_in_use_before_touching_it(command, held_by_another_process, tmp_path):
    run_dir, holder = held_by_another_process
    if command == "train":
        argv = ["--config", os.path.join(REPO, "configs", "tiny.yaml"),
                "--set", f"data.train={os.path.join(SHARED_DATA, 'resume_ner', 'dev.char.bmes')}"]
    else:
        argv = ["--config", os.path.join(REPO, "configs", "pretrain_resume.yaml"),
                "--set", f"pretrain.text={os.path.join(SHARED_DATA, 'cluener2020', 'dev.json')}",
                "--set", "pretrain.text_field=text"]
    result = subprocess.run(
        [sys.executable, "-m", f"tfner.{command}", *argv, "--set", f"run_dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"tfner.{command}: run_dir {run_dir} is in use: pid {holder.pid} on " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(run_dir) == [run_lock.LOCK_NAME]  # no config.yaml, vocab or checkpoint written
