"""The version folders of an export base (export/<name>/<N>/), by TensorFlow Serving's rule, in one place.

A folder whose name is ASCII digits is a version, and its number is that name read as an integer. Other names
(staging folders, `v2`, `²`, which str.isdigit() accepts but int() does not read) are not versions.
"""

import os

import tensorflow as tf


def version_folders(base_dir: str) -> dict[int, str]:
    """{version: folder path} of base_dir's numbered folders; {} if base_dir is not a folder.

    The path keeps the folder's own name: `01` is version 1 at base_dir/01. When two names give one number
    (`1` and `01`), the plain one wins, as its path is the one the number spells.
    """
    if not tf.io.gfile.isdir(base_dir):
        return {}
    found = {}
    for entry in sorted(tf.io.gfile.listdir(base_dir)):
        name = entry.rstrip("/")
        if not (name.isascii() and name.isdigit()):
            continue
        version = int(name)
        if version not in found or name == str(version):
            found[version] = os.path.join(base_dir, name)
    return found
