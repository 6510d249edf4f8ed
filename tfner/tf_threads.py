"""TensorFlow's two CPU thread pools, set once per process before its first op.

intra-op: the threads one op (a matrix product, say) is split over; inter-op: how many ops of a graph run at
once. 0 leaves TensorFlow's choice, which is every core the process may run on for both.

Why a knob: on small machines the choice is not the fastest for inference. On 2 cores, one intra-op thread
tagged ~1.2x the texts a second of TensorFlow's choice with the demo and Resume-sized models, at one text a
call and at 32, in a loop, through tfner.tag and behind tfner.serve; it made one BERT-base text ~1.25x slower
(a large product no longer split over both cores). Training was ~2 % slower with it. See benchmarks/README.md
("Threads for inference"); measure on your own machine before you set it.

onednn_state() says, for the same start-up log line, whether TensorFlow runs its oneDNN kernels: fixed when
TensorFlow loaded, from TF_ENABLE_ONEDNN_OPTS (which `import tfner` sets) and the CPU.
"""

import argparse

import tensorflow as tf

THEIR_CHOICE = "TensorFlow's choice"  # what a size of 0 means


def thread_count(text: str) -> int:
    """argparse type of a pool size flag: an integer >= 0 (0: TensorFlow's choice)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: {THEIR_CHOICE}), got {value}")
    return value


class ThreadsAlreadySet(RuntimeError):
    """TensorFlow ran before the pools could be sized; they cannot change for the life of the process."""


def set_tf_threads(intra_op: int = 0, inter_op: int = 0) -> str:
    """Sizes the pools (0 leaves one as it is). Call before TensorFlow runs anything in this process.

    Calling again with the sizes already in place does nothing, so every model load in a process may call it.
    Returns the sizes now in place, for the log: "intra-op 1, inter-op TensorFlow's choice". Raises ValueError
    for a negative size and ThreadsAlreadySet when TensorFlow already started with others.
    """
    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if value < 0:
            raise ValueError(f"{name} threads: {value}; expected 0 (TensorFlow's choice) or a positive count")
    threading = tf.config.threading
    wanted = {"intra-op": (intra_op, threading.get_intra_op_parallelism_threads,
                           threading.set_intra_op_parallelism_threads),
              "inter-op": (inter_op, threading.get_inter_op_parallelism_threads,
                           threading.set_inter_op_parallelism_threads)}
    for name, (value, get, set_) in wanted.items():
        if not value or get() == value:
            continue
        try:
            set_(value)
        except RuntimeError as error:  # "... cannot be modified after initialization."
            raise ThreadsAlreadySet(
                f"cannot set TensorFlow's {name} threads to {value}: TensorFlow already ran in this process with "
                f"{get() or THEIR_CHOICE}. Set them before anything else uses TensorFlow, or set "
                f"TF_NUM_{name.replace('-', '').upper()}_THREADS={value} in the environment.") from error
    return ", ".join(f"{name} {get() or THEIR_CHOICE}" for name, (_, get, _) in wanted.items())


def onednn_state() -> str:
    """"on" or "off": whether this process's TensorFlow runs its oneDNN kernels; "unknown" if it cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # private: TensorFlow has no public query for it
        return "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        return "unknown"
