"""Small files written whole or not at all: config.yaml, vocab.txt, labels.txt, metrics.json and the like.

A run's small files are read back by the next start (a resume, tfner.export, TF Serving's sidecars). Written
in place, a kill in the middle of the write leaves an empty or half file under the real name, and the next
start fails on it, or worse, reads it. So each is written to a temporary name beside it and renamed over the
real one: on a local disk the rename is atomic, so a reader sees the old file or the new one, never part of
either. Through tf.io.gfile, so a run_dir on gs:// works too (there a rename of one object is a copy and a
delete, still never a half-written object under the real name).
"""

import tensorflow as tf


def write_atomically(path: str, text: str) -> None:
    """Writes text (UTF-8) to path through `path.tmp`, renamed into place; on an error the old file stays."""
    staging = path + ".tmp"
    try:
        with tf.io.gfile.GFile(staging, "w") as f:
            f.write(text)
        tf.io.gfile.rename(staging, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.remove(staging)
        raise
