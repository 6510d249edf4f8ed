"""export.group_windows: windows tagged in length-sorted groups give what one call over all of them gives."""

import numpy as np
import pytest
import tensorflow as tf
from test_export import TEXTS

from tfner import export as export_lib
from tfner.config import ConfigError, load_config
from tfner.inference import NerModule

# Mixed lengths, so groups differ in width: empty, short, one window, several windows (the tiny model's window
# is 30 characters), in an order that sorting by length must undo.
MIXED = TEXTS + ["王强" * 40, "", "李", "张伟在上海。" * 9, "赵敏去了广州出差。"]


@pytest.fixture(scope="module")
def base(tiny_run):
    return export_lib.load_run(tiny_run["run_dir"])


def module_with(base, group_windows):
    return NerModule(base.model, base.tokenizer, base.tag_set, base.max_seq_length, base.window - base.stride,
                     group_windows=group_windows)


def outputs(module, texts):
    return {k: v.numpy() for k, v in module(tf.constant(texts, tf.string)).items()}


@pytest.mark.parametrize("group_windows", [1, 3, 8])
def test_groups_give_what_one_call_gives(base, group_windows):
    one_call = outputs(module_with(base, 0), MIXED)
    grouped = outputs(module_with(base, group_windows), MIXED)
    assert one_call["num_entities"].sum() > 0, "the tiny model should find entities here, or this compares nothing"
    for key, value in one_call.items():
        if key == "entity_scores":
            np.testing.assert_allclose(grouped[key], value, atol=1e-5)
        else:
            np.testing.assert_array_equal(grouped[key], value, err_msg=key)


class PositionCounter(NerModule):
    """A NerModule that counts the token positions (padding included) its model calls see."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.positions = tf.Variable(0, dtype=tf.int32, trainable=False)

    def _tag_group(self, windows, width):
        longest = tf.reduce_max(tf.concat([[0], tf.cast(windows.row_lengths(), tf.int32)], axis=0))
        self.positions.assign_add(tf.cast(windows.nrows(), tf.int32) * (longest + 2))
        return super()._tag_group(windows, width)


def test_groups_pad_less_than_one_call(base):
    """The point of grouping: for a batch of mixed lengths the model sees far fewer padding positions."""
    seen = {}
    for group_windows in (0, 4):
        module = PositionCounter(base.model, base.tokenizer, base.tag_set, base.max_seq_length,
                                 base.window - base.stride, group_windows=group_windows)
        module(tf.constant(MIXED))
        seen[group_windows] = int(module.positions.numpy())
    # Window lengths: a text up to a window long is one window; a longer one is windows of a full window each.
    lengths = sorted(n for t in MIXED for n in ([len(t)] if len(t) <= base.window else
                                                  [base.window] * (1 + -(-(len(t) - base.window) // base.stride))))
    assert seen[0] == len(lengths) * (max(lengths) + 2)  # one call: every window padded to the longest
    groups = [lengths[i : i + 4] for i in range(0, len(lengths), 4)]
    assert seen[4] == sum(len(g) * (max(g) + 2) for g in groups) < seen[0]  # each group to its own longest


def test_empty_batch_and_empty_texts(base):
    for group_windows in (0, 8):
        module = module_with(base, group_windows)
        empty = outputs(module, tf.constant([], tf.string))
        assert empty["num_entities"].shape == (0,) and empty["tags"].shape[0] == 0
        blanks = outputs(module, ["", ""])
        assert blanks["num_entities"].tolist() == [0, 0]


def test_negative_group_windows_fails_at_load(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("export:\n  group_windows: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="export.group_windows"):
        load_config(str(path))
