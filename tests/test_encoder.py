"""tfner.encoder runs a BertBackbone's own layers through faster ops: it must compute what the backbone computes.

Inference and training (dropout on: the same Dropout layers draw the same masks in the same order), their
gradients, both GELU forms, mixed precision, and a backbone loaded from a checkpoint against the NumPy
reference of tests/test_checkpoint.py.
"""

import contextlib

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from test_checkpoint import INPUTS, WEIGHTS, google_backbone, google_dir, reference_bert  # noqa: F401 (fixtures)

from tfner import encoder
from tfner.checkpoint import ErfGeluBertBackbone


def tiny_backbone(cls=keras_hub.models.BertBackbone, dropout=0.0, dtype=None, seed=0):
    """A 2-layer backbone whose weights are scaled up from BERT's 0.02 initialisation to ~0.5, so activations
    are large enough for the two GELU forms (and any slip in the arithmetic) to differ visibly."""
    keras.utils.set_random_seed(seed)
    backbone = cls(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                   dropout=dropout, max_sequence_length=16, dtype=dtype)
    for variable in backbone.trainable_variables:
        if variable.path.endswith(("kernel", "embeddings")):
            variable.assign(variable * 25.0)
    return backbone


def tiny_inputs(batch=3, length=9, seed=1):
    rng = np.random.default_rng(seed)
    lengths = np.array([length, length - 3, 2][:batch])
    mask = np.arange(length)[None, :] < lengths[:, None]
    return {
        "token_ids": tf.constant(rng.integers(1, 50, (batch, length)) * mask, tf.int32),
        "segment_ids": tf.constant((np.arange(length)[None, :] >= 4) * mask, tf.int32),
        "padding_mask": tf.constant(mask),
    }


def real_positions(inputs, sequence):
    """The sequence output at real (unpadded) tokens only: padded positions are never read downstream."""
    return np.asarray(sequence)[np.asarray(inputs["padding_mask"])]


@pytest.mark.parametrize("cls", [keras_hub.models.BertBackbone, ErfGeluBertBackbone])
def test_inference_equals_the_backbone(cls):
    backbone, inputs = tiny_backbone(cls), tiny_inputs()
    expected = backbone(inputs)["sequence_output"]
    got = tf.function(encoder.sequence_output)(backbone, inputs)
    np.testing.assert_allclose(real_positions(inputs, got), real_positions(inputs, expected), atol=1e-5)


def test_training_with_dropout_draws_the_same_masks():
    """Dropout on: with the seed generators reset between the two runs, both paths drop the same units."""
    backbone, inputs = tiny_backbone(dropout=0.3), tiny_inputs()
    start = [v.numpy() for v in backbone.variables]  # the seed generators' states are among them
    expected = backbone(inputs, training=True)["sequence_output"]
    for variable, value in zip(backbone.variables, start):
        variable.assign(value)
    got = encoder.sequence_output(backbone, inputs, training=True)
    np.testing.assert_allclose(real_positions(inputs, got), real_positions(inputs, expected), atol=1e-5)
    inference = encoder.sequence_output(backbone, inputs, training=False)
    assert np.abs(real_positions(inputs, got) - real_positions(inputs, inference)).max() > 1e-2  # dropout did act


@pytest.mark.parametrize("cls", [keras_hub.models.BertBackbone, ErfGeluBertBackbone])
def test_gradients_equal_the_backbones(cls):
    backbone, inputs = tiny_backbone(cls), tiny_inputs()
    weights = tf.random.stateless_normal([3, 9, 16], seed=[4, 2]) * tf.cast(inputs["padding_mask"], tf.float32)[..., None]

    def gradients(forward):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(forward() * weights)
        return tape.gradient(loss, backbone.trainable_variables)

    expected = gradients(lambda: backbone(inputs, training=True)["sequence_output"])
    got = gradients(lambda: encoder.sequence_output(backbone, inputs, training=True))
    compared = 0
    for variable, want, have in zip(backbone.trainable_variables, expected, got):
        if want is None:  # the pooler: not on the sequence output's path
            assert have is None, variable.path
            continue
        # The key bias shifts every score of a query by the same amount: its true gradient is 0, both are noise.
        atol = 1e-4 if "key/bias" in variable.path else 1e-5
        np.testing.assert_allclose(tf.convert_to_tensor(have), tf.convert_to_tensor(want), atol=atol, rtol=1e-4,
                                   err_msg=variable.path)
        compared += 1
    assert compared >= 30


@pytest.mark.parametrize("training", [False, True])
def test_mixed_precision_runs_in_the_compute_dtype(training):
    backbone, inputs = tiny_backbone(dtype="mixed_bfloat16"), tiny_inputs()
    got = encoder.sequence_output(backbone, inputs, training=training)
    expected = backbone(inputs, training=training)["sequence_output"]
    assert got.dtype == expected.dtype == tf.bfloat16
    got, expected = (real_positions(inputs, tf.cast(t, tf.float32)) for t in (got, expected))
    np.testing.assert_allclose(got, expected, atol=0.1)  # bfloat16 has 8 bits of mantissa


def test_float16_row_of_padding_only_stays_finite_with_its_gradients():
    """train.static_shapes fills partial batches with rows whose keys are all padding. The key bias was float16's
    most negative value: a score below -16 added to it is -inf, the row's softmax NaN, and the NaN reached the
    weights' gradients (a loss-scaled optimizer then skips the step, silently)."""
    assert np.isfinite((tf.constant(-20.0, tf.float16) + encoder._large_negative(tf.float16)).numpy())
    backbone, inputs = tiny_backbone(dtype="mixed_float16", seed=1), tiny_inputs()
    for variable in backbone.trainable_variables:  # sharper heads, as training makes them: scores below -16
        if "query" in variable.path and variable.path.endswith("kernel"):
            variable.assign(variable * 3.0)
    inputs["padding_mask"] = tf.concat([inputs["padding_mask"][:2], tf.zeros_like(inputs["padding_mask"][2:])], 0)
    with tf.GradientTape() as tape:
        sequence = tf.cast(encoder.sequence_output(backbone, inputs, training=True), tf.float32)
        loss = tf.reduce_sum(sequence[:2] ** 2)  # the empty row is not in the loss, as a masked CRF leaves it
    gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, backbone.trainable_variables) if g is not None]
    assert np.isfinite(sequence.numpy()).all()
    assert len(gradients) >= 30 and all(np.isfinite(g.numpy()).all() for g in gradients)


def test_mixed_precision_training_on_cpu_runs_gelu_in_float32():
    """TensorFlow's bfloat16 element-wise CPU kernels are slower than its float32 ones, so the training path
    computes GELU in float32 between two casts. Inference keeps it in bfloat16, where it fuses into the MatMul."""
    backbone, inputs = tiny_backbone(dtype="mixed_bfloat16"), tiny_inputs()
    tanh_dtypes = {}
    for training in (True, False):
        graph = tf.function(lambda x: encoder.sequence_output(backbone, x, training=training)) \
            .get_concrete_function(inputs).graph
        tanh_dtypes[training] = [op.outputs[0].dtype for op in graph.get_operations() if op.type == "Tanh"]
    assert tanh_dtypes == {True: [tf.float32] * 2, False: [tf.bfloat16] * 2}  # one GELU a layer, 2 layers


def test_weights_cast_once_moves_the_weight_casts_out_of_a_loop_body():
    """The export runs window groups in a while loop; under bfloat16 the projections' weight casts then belong
    before the loop, once a call, not in its body, once a group. Same outputs either way."""
    backbone, inputs = tiny_backbone(dtype="mixed_bfloat16"), tiny_inputs()

    def run(hoist):
        body_graphs = []

        @tf.function
        def two_groups(x):
            def body(i, total):
                body_graphs.append(tf.compat.v1.get_default_graph())
                output = tf.cast(encoder.sequence_output(backbone, x), tf.float32)
                return i + 1, total + output

            with encoder.weights_cast_once(backbone, tf.bfloat16) if hoist else contextlib.nullcontext():
                return tf.while_loop(lambda i, _: i < 2, body, (0, tf.zeros([3, 9, 16])))[1]

        total = two_groups(inputs)
        casts = sum(op.type == "Cast" for op in body_graphs[-1].get_operations())
        return total, casts

    (hoisted, casts_hoisted), (plain, casts_plain) = run(True), run(False)
    np.testing.assert_array_equal(hoisted, plain)
    assert casts_plain - casts_hoisted == 2 * 6 * 2  # 2 layers x 6 projections x (kernel, bias)
    assert not encoder._cast_once  # the cache lives only while the context is open


@pytest.mark.parametrize("dtype, moved_as", [("float32", tf.int32), ("mixed_bfloat16", tf.int16)])
@pytest.mark.parametrize("training", [False, True])
def test_attention_heads_are_transposed_as_integers(dtype, moved_as, training):
    """oneDNN's graph rewrite takes over float `Transpose`s and runs them slower than TensorFlow's own, so the
    heads' split and merge move the same bits as integers, forward and (through the custom gradient) backward."""
    backbone, inputs = tiny_backbone(dtype=dtype), tiny_inputs()

    @tf.function
    def loss_and_gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(encoder.sequence_output(backbone, x, training=training), tf.float32))
        return tape.gradient(loss, backbone.trainable_variables) if training else loss

    graph = loss_and_gradients.get_concrete_function(inputs).graph
    transposed = [op.get_attr("T") for op in graph.get_operations() if op.type == "Transpose"]
    # q, k, v and the context, in 2 layers; the backward pass swaps each gradient back.
    assert transposed == [moved_as] * (2 * 4 * (2 if training else 1))


def test_checkpoint_backbone_matches_the_reference(google_backbone):  # noqa: F811
    """A Google-format checkpoint (erf GELU, large weights) through the fast path equals the NumPy BERT."""
    token_ids, segment_ids, padding_mask = INPUTS
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    assert encoder.is_supported(google_backbone)
    got = encoder.sequence_output(google_backbone, inputs)
    expected, _ = reference_bert(WEIGHTS, token_ids, segment_ids, padding_mask)
    real = padding_mask.astype(bool)
    np.testing.assert_allclose(np.asarray(got)[real], expected[real], atol=1e-4, rtol=0)


def test_other_backbones_run_as_they_are():
    class Wrapped(keras.Model):  # not a BertBackbone: nothing to rewrite
        def call(self, inputs, training=False):
            return {"sequence_output": tf.cast(inputs["token_ids"], tf.float32)[..., None]}

    inputs = tiny_inputs()
    assert not encoder.is_supported(Wrapped())
    np.testing.assert_array_equal(encoder.sequence_output(Wrapped(), inputs)[..., 0], inputs["token_ids"])
