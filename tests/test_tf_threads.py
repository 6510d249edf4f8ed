"""tfner.tf_threads: TensorFlow's thread pools, sized before the first op, and a clear refusal after it.

The pools are per process and fixed once TensorFlow runs, so each check runs in a fresh interpreter.
"""

import argparse
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SUBPROCESS_ENV
from tfner.tf_threads import thread_count

FRESH_PROCESS = r"""
import tensorflow as tf
from tfner.tf_threads import ThreadsAlreadySet, set_tf_threads

print(set_tf_threads())                       # nothing asked: TensorFlow's choice stays
print(set_tf_threads(1, 2))
assert (tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads()) == (1, 2)
print(float(tf.reduce_sum(tf.matmul(tf.ones([64, 64]), tf.ones([64, 64])))))  # TensorFlow runs with them
print(set_tf_threads(1, 2))                   # the sizes in place: nothing to do, no error
print(set_tf_threads(intra_op=1))             # 0 leaves the other pool as it is
try:
    set_tf_threads(intra_op=4)
except ThreadsAlreadySet as error:
    print(error)
try:
    set_tf_threads(inter_op=-1)
except ValueError as error:
    print(error)
"""


def test_pools_are_sized_before_the_first_op_and_refused_after_it():
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True,
                          env=SUBPROCESS_ENV, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "intra-op TensorFlow's choice, inter-op TensorFlow's choice",
        "intra-op 1, inter-op 2",
        str(64.0 ** 3),
        "intra-op 1, inter-op 2",
        "intra-op 1, inter-op 2",
        "cannot set TensorFlow's intra-op threads to 4: TensorFlow already ran in this process with 1. Set them "
        "before anything else uses TensorFlow, or set TF_NUM_INTRAOP_THREADS=4 in the environment.",
        "inter_op threads: -1; expected 0 (TensorFlow's choice) or a positive count",
    ]


def test_thread_count_flags_take_zero_and_up():
    assert [thread_count(text) for text in ("0", "1", "16")] == [0, 1, 16]
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be >= 0 \(0: TensorFlow's choice\), got -1"):
        thread_count("-1")
    with pytest.raises(ValueError):
        thread_count("two")
