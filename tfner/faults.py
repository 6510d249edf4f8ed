"""A test hook that kills the process at a named point, for the crash windows a kill from outside cannot hit.

    TFNER_FAULT=checkpoint_write:2 python -m tfner.train ...   # dies inside its 2nd checkpoint write

A SIGKILL sent from outside lands wherever the process happens to be, so it tests the long stretches of a
run (train steps, dev scoring, an export's tracing) well but almost never the milliseconds in which a
checkpoint or the best weights are being written. `reached(point)` marks such a window in the code; when
TFNER_FAULT names the point, the process sends itself SIGKILL (no cleanup, no `finally`, as the OOM killer
or a lost machine would) on the Nth time it gets there (N = 1 if omitted). The variable is read here only,
and with it unset (always, outside tests/test_faults.py) `reached` does nothing.

Points:
    checkpoint_write: a checkpoint's files are written, but the `checkpoint` index does not list them yet.
    best_write: the previous run_dir/best/ is deleted, the new one is still best.tmp/.

An export needs no hook: from its hidden staging folder's first file to the rename takes 0.2-0.8 s (tracing
comes before), which a kill from outside that watches the folder hits every time.
"""

import collections
import os
import signal

POINTS = ("checkpoint_write", "best_write")
_visits = collections.Counter()


def reached(point: str) -> None:
    """Kills this process with SIGKILL if TFNER_FAULT=point[:N] and this is the Nth visit to point."""
    spec = os.environ.get("TFNER_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name not in POINTS or not (nth or "1").isdigit():
        raise ValueError(f"TFNER_FAULT={spec!r}: expected POINT or POINT:N with POINT one of {', '.join(POINTS)}")
    if name != point:
        return
    _visits[point] += 1
    if _visits[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
