"""One process at a time in a run_dir: a lock held while tfner.train, tfner.pretrain or tfner.distill runs.

Two runs into one run_dir (a job started twice, a retry while the first attempt still runs) would interleave
their checkpoints, best/ and history.json: each resumes from the other's steps and the export holds weights
neither run chose. So the run's chief holds an exclusive `flock` on run_dir/.lock for the whole run, and a
second process is refused at once, naming the holder from what the file says.

The kernel drops the lock when its process ends, however it ends (SIGKILL, a crash), so a killed run never
leaves a stale lock behind and resuming needs no cleanup. The file itself stays; it holds no state.

Only local paths are locked: flock has no meaning on gs:// or other tf.io.gfile schemes, where running one
process per run_dir is the scheduler's business (a Kubernetes Job, a TPU VM's single trainer). Multi-worker
runs lock on the chief only: the workers share the chief's run_dir by design.
"""

import contextlib
import fcntl
import logging
import os
import socket
import time

from tfner.config import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


@contextlib.contextmanager
def hold(run_dir: str, enabled: bool = True):
    """Holds run_dir/.lock for the `with` block; ConfigError, naming the holder, if another process has it.

    Args:
        run_dir: str. The run's folder, made if missing. Paths with a scheme (gs://...) are not locked.
        enabled: bool. False for the processes that must not lock (a multi-worker run's non-chief workers).
    """
    if not enabled or "://" in run_dir:
        yield
        return
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, LOCK_NAME)
    # Opened without truncating: a refused process must not blank the holder's description before reading it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1024, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise ConfigError(
                f"run_dir {run_dir} is in use: {holder} is running in it ({path} is locked). Two runs in one "
                "run_dir would overwrite each other's checkpoints; wait for that run to end (or stop it), or "
                "choose another run_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
