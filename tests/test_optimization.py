"""tfner.optimization.AdamW (one fused kernel per update) against keras.optimizers.AdamW, step for step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfner.optimization import NO_DECAY, AdamW, WarmupLinearDecay


def _run(optimizer_class, steps=4):
    rng = np.random.default_rng(0)
    table = keras.Variable(rng.normal(size=(50, 8)).astype(np.float32), name="embeddings")
    kernel = keras.Variable(rng.normal(size=(8, 3)).astype(np.float32), name="kernel")
    bias = keras.Variable(np.zeros(3, np.float32), name="bias")
    variables = [table, kernel, bias]
    optimizer = optimizer_class(learning_rate=WarmupLinearDecay(0.05, 2, 10), weight_decay=0.1, epsilon=1e-6)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    optimizer.build(variables)

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            hidden = tf.gather(table, ids)  # the embedding's gradient is sparse (IndexedSlices), as in BERT
            loss = tf.reduce_sum(tf.square(hidden @ kernel + bias - 1.0))
        gradients = tape.gradient(loss, variables)
        assert isinstance(gradients[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(gradients, variables))

    for _ in range(steps):
        step(tf.constant(rng.integers(0, 50, size=(6,)), tf.int32))  # repeated ids: summed gradient rows
    return [v.numpy() for v in variables + optimizer.variables[1:]]


def test_fused_update_equals_keras_adamw():
    ours, keras_own = _run(AdamW), _run(keras.optimizers.AdamW)
    assert len(ours) == len(keras_own)  # the same slots: checkpoints are interchangeable
    for got, want in zip(ours, keras_own):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert not np.allclose(ours[0], _run(AdamW, steps=0)[0])  # the updates did move the weights


@pytest.mark.parametrize(
    "warmup, total, rates",
    [
        (0, 4, [1.0, 0.75, 0.5, 0.25]),  # no warmup: the first update at the peak, the last one not at 0
        (0, 1, [1.0]),  # train.max_steps=1 trains
        (3, 8, [1 / 3, 2 / 3, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2]),
        (10, 5, [0.1, 0.2, 0.3, 0.4, 0.5]),  # warmup longer than the run: it never reaches the peak
    ],
)
def test_warmup_then_linear_decay_gives_every_update_a_rate(warmup, total, rates):
    schedule = WarmupLinearDecay(1.0, warmup, total)
    np.testing.assert_allclose([float(schedule(step)) for step in range(total)], rates, rtol=1e-6)
