"""tfner.transpose.transpose: tf.transpose's values and gradients, with floats moved as integers so that
oneDNN's graph rewrite (which takes float transposes only) leaves them to TensorFlow's own kernel."""

import numpy as np
import pytest
import tensorflow as tf

from tfner.transpose import transpose

PERMS = [[1, 0], [1, 0, 2], [0, 2, 1, 3], [2, 0, 3, 1]]


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16, tf.float16, tf.float64, tf.int32, tf.bool])
@pytest.mark.parametrize("perm", PERMS, ids=str)
def test_values_equal_tf_transpose(perm, dtype):
    values = np.random.default_rng(0).normal(size=[2, 3, 4, 5][: len(perm)]) * 100
    x = tf.cast(values > 0, dtype) if dtype == tf.bool else tf.cast(values, dtype)
    got = transpose(x, perm)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), tf.transpose(x, perm).numpy())


@pytest.mark.parametrize("perm", PERMS, ids=str)
def test_gradient_equals_tf_transposes_gradient(perm):
    x = tf.constant(np.random.default_rng(1).normal(size=[2, 3, 4, 5][: len(perm)]), tf.float32)
    weights = tf.constant(np.random.default_rng(2).normal(size=tf.transpose(x, perm).shape), tf.float32)
    gradients = []
    for fn in (transpose, tf.transpose):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x, perm) * weights)  # a weighted sum, so each input position's gradient differs
        gradients.append(tape.gradient(loss, x).numpy())
    np.testing.assert_array_equal(*gradients)
