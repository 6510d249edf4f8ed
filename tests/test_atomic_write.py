"""tfner.atomic_write: a small file is replaced whole or left as it was."""

import os

import pytest

from tfner.atomic_write import write_atomically


def test_writes_and_replaces_a_file(tmp_path):
    path = str(tmp_path / "labels.txt")
    write_atomically(path, "PER\nORG\n")
    write_atomically(path, "人名\n")
    with open(path, encoding="utf-8") as f:
        assert f.read() == "人名\n"
    assert os.listdir(tmp_path) == ["labels.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "config.yaml")
    write_atomically(path, "seed: 1\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "seed: 2\n" + "\ud800")  # a lone surrogate cannot be written as UTF-8
    with open(path, encoding="utf-8") as f:
        assert f.read() == "seed: 1\n"
    assert os.listdir(tmp_path) == ["config.yaml"]
