"""Tests for tfner.crf: exact checks against brute-force enumeration of paths."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfner import crf as crf_lib
from tfner.crf import CRF

FORBIDDEN = CRF.FORBIDDEN_SCORE

# (row lengths in one batch, num_tags). Includes length 1, length 0 rows and
# batches whose longest row is shorter than the padded length.
CASES = [
    ([1], 3),
    ([3], 2),
    ([4], 4),
    ([5, 3, 1], 3),
    ([2, 5, 5, 1], 2),
    ([4, 0, 2, 3], 4),
]

# BIO scheme over one entity type: O, B, I. "I" must follow "B" or "I".
BIO_TRANSITIONS = np.array(
    [
        [True, True, False],  # O -> O, B; not I
        [True, True, True],  # B -> anything
        [True, True, True],  # I -> anything
    ]
)
BIO_STARTS = np.array([True, True, False])
BIO_ENDS = np.array([True, True, True])


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def make_batch(lengths, num_tags, seed, pad=1):
    """Random emissions/tags with a prefix mask; `pad` extra padded steps."""
    rng = np.random.default_rng(seed)
    max_len = max(lengths) + pad
    emissions = rng.normal(scale=2.0, size=(len(lengths), max_len, num_tags))
    tags = rng.integers(0, num_tags, size=(len(lengths), max_len))
    mask = np.arange(max_len)[None, :] < np.array(lengths)[:, None]
    return emissions.astype(np.float32), tags.astype(np.int32), mask


def make_crf(num_tags, seed, **kwargs):
    """CRF with random (non-zero) weights set through assign()."""
    rng = np.random.default_rng(seed)
    crf = CRF(num_tags, **kwargs)
    crf.transitions.assign(rng.normal(size=(num_tags, num_tags)).astype(np.float32))
    crf.start_transitions.assign(rng.normal(size=(num_tags,)).astype(np.float32))
    crf.end_transitions.assign(rng.normal(size=(num_tags,)).astype(np.float32))
    return crf


def weights_np(crf, constrained=False):
    """The CRF weights as float64 numpy arrays, optionally with penalties."""
    trans = crf.transitions.numpy().astype(np.float64)
    start = crf.start_transitions.numpy().astype(np.float64)
    end = crf.end_transitions.numpy().astype(np.float64)
    if constrained:
        if crf.allowed_transitions is not None:
            trans = trans + np.where(crf.allowed_transitions, 0.0, FORBIDDEN)
        if crf.allowed_starts is not None:
            start = start + np.where(crf.allowed_starts, 0.0, FORBIDDEN)
        if crf.allowed_ends is not None:
            end = end + np.where(crf.allowed_ends, 0.0, FORBIDDEN)
    return trans, start, end


def all_paths(emissions, trans, start, end):
    """Every tag path of one row with its score: (paths [P, n], scores [P])."""
    length, num_tags = emissions.shape
    paths = np.array(list(itertools.product(range(num_tags), repeat=length)))
    if length == 0:
        return paths.reshape(1, 0), np.zeros(1)
    scores = start[paths[:, 0]] + end[paths[:, -1]]
    scores = scores + emissions[np.arange(length), paths].sum(axis=1)
    scores = scores + trans[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    return paths, scores


def logsumexp(x):
    top = np.max(x)
    return top + np.log(np.sum(np.exp(x - top)))


def path_allowed(path, crf):
    """Whether a path respects every constraint of `crf`."""
    if len(path) == 0:
        return True
    ok = True
    if crf.allowed_starts is not None:
        ok &= bool(crf.allowed_starts[path[0]])
    if crf.allowed_ends is not None:
        ok &= bool(crf.allowed_ends[path[-1]])
    if crf.allowed_transitions is not None:
        ok &= all(crf.allowed_transitions[a, b] for a, b in zip(path[:-1], path[1:]))
    return ok


def brute_log_likelihood(emissions, tags, lengths, crf, constrained=False):
    trans, start, end = weights_np(crf, constrained)
    out = []
    for row, n in enumerate(lengths):
        emit = emissions[row, :n].astype(np.float64)
        _, scores = all_paths(emit, trans, start, end)
        gold = all_paths(emit, trans, start, end)[0].tolist().index(
            tags[row, :n].tolist()
        )
        out.append(scores[gold] - logsumexp(scores))
    return np.array(out)


def brute_decode(emissions, lengths, crf, max_len, only_allowed=False):
    trans, start, end = weights_np(crf, constrained=True)
    out = np.zeros((len(lengths), max_len), np.int32)
    for row, n in enumerate(lengths):
        paths, scores = all_paths(emissions[row, :n].astype(np.float64), trans, start, end)
        if only_allowed:
            keep = np.array([path_allowed(p, crf) for p in paths])
            paths, scores = paths[keep], scores[keep]
        out[row, :n] = paths[np.argmax(scores)]
    return out


def brute_marginals(emissions, lengths, crf, max_len):
    trans, start, end = weights_np(crf, constrained=True)
    num_tags = emissions.shape[-1]
    out = np.zeros((len(lengths), max_len, num_tags))
    for row, n in enumerate(lengths):
        paths, scores = all_paths(emissions[row, :n].astype(np.float64), trans, start, end)
        probs = np.exp(scores - logsumexp(scores))
        for t in range(n):
            for tag in range(num_tags):
                out[row, t, tag] = probs[paths[:, t] == tag].sum()
    return out


@pytest.fixture
def mixed_precision():
    """Sets the global mixed_float16 policy and always restores the old one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# ----------------------------------------------------------------------------
# Exactness against brute force
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("lengths,num_tags", CASES)
def test_log_likelihood_matches_brute_force(lengths, num_tags):
    emissions, tags, mask = make_batch(lengths, num_tags, seed=1)
    crf = make_crf(num_tags, seed=2)
    got = crf.log_likelihood(emissions, tags, mask)
    assert got.dtype == tf.float32
    want = brute_log_likelihood(emissions, tags, lengths, crf)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lengths,num_tags", CASES)
def test_decode_matches_brute_force(lengths, num_tags):
    emissions, _, mask = make_batch(lengths, num_tags, seed=3)
    crf = make_crf(num_tags, seed=4)
    got = crf(emissions, mask)
    assert got.dtype == tf.int32
    want = brute_decode(emissions, lengths, crf, emissions.shape[1])
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(crf.decode(emissions, mask).numpy(), want)


@pytest.mark.parametrize("lengths,num_tags", CASES)
def test_marginals_match_brute_force(lengths, num_tags):
    emissions, _, mask = make_batch(lengths, num_tags, seed=5)
    crf = make_crf(num_tags, seed=6)
    got = crf.marginals(emissions, mask).numpy()
    assert got.dtype == np.float32
    want = brute_marginals(emissions, lengths, crf, emissions.shape[1])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=-1), mask.astype(np.float32), atol=1e-5)


def dp_decode_and_marginals(emissions, n, trans, start, end):
    """Viterbi and log-space forward-backward of one row's first n positions, in float64 (n >= 1)."""
    emit = emissions[:n].astype(np.float64)
    score, pointers = start + emit[0], []
    for t in range(1, n):
        candidates = score[:, None] + trans
        pointers.append(np.argmax(candidates, axis=0))
        score = candidates.max(axis=0) + emit[t]
    path = [int(np.argmax(score + end))]
    for back in reversed(pointers):
        path.append(int(back[path[-1]]))
    alpha, beta = [start + emit[0]], [end]
    for t in range(1, n):
        alpha.append(np.array([logsumexp(alpha[-1] + trans[:, k]) for k in range(len(end))]) + emit[t])
    for t in range(n - 2, -1, -1):
        beta.append(np.array([logsumexp(trans[j] + emit[t + 1] + beta[-1]) for j in range(len(end))]))
    log_marginals = np.array(alpha) + np.array(beta[::-1])
    return path[::-1], np.exp(log_marginals - np.array([logsumexp(row) for row in log_marginals])[:, None])


@pytest.mark.parametrize("constrained", [False, True])
def test_rows_across_several_loop_chunks_match_dynamic_programming(constrained):
    # The inference loops run 8 positions an iteration and walk each row reversed from its own end; rows
    # ending in different chunks, on a chunk's edge and inside the first position must all come out right.
    lengths = [37, 24, 9, 8, 17, 1, 0, 25, 16]
    emissions, _, mask = make_batch(lengths, 3, seed=11, pad=3)
    crf = bio_crf(seed=12) if constrained else make_crf(3, seed=12)
    trans, start, end = weights_np(crf, constrained=True)
    tags, marginals = crf.decode(emissions, mask).numpy(), crf.marginals(emissions, mask).numpy()
    for row, n in enumerate(lengths):
        assert not tags[row, n:].any() and not marginals[row, n:].any()
        if n:
            path, want = dp_decode_and_marginals(emissions[row], n, trans, start, end)
            np.testing.assert_array_equal(tags[row, :n], path)
            np.testing.assert_allclose(marginals[row, :n], want, atol=1e-5)


def test_marginals_of_a_near_certain_tag_are_at_most_one():
    """Large emissions make one tag near-certain, where exp(alpha + beta - log Z) rounds above 1."""
    emissions, _, mask = make_batch([6, 3], 4, seed=21)
    crf = make_crf(4, seed=22)
    got = crf.marginals(emissions * 60.0, mask).numpy()
    assert got.max() <= 1.0 and got.min() >= 0.0


@pytest.mark.parametrize("spread", [20.0, 90.0, 200.0])
def test_marginals_survive_a_best_tag_the_previous_one_forbids(spread):
    """An emission ~88 below the best underflows exp() in float32; where the best tag cannot follow the previous
    position (O -> I), the forward vector was all zeros and every marginal of the row 0."""
    lengths = [4]
    emissions = np.zeros((1, 4, 3), np.float32)
    emissions[0, [0, 1, 2, 3], [0, 2, 0, 1]] = spread  # O, I (which O forbids), O, B
    crf = bio_crf(13)
    got = crf.marginals(emissions, np.ones((1, 4), bool)).numpy()
    want = brute_marginals(emissions, lengths, crf, 4)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.sum(axis=-1) == pytest.approx(np.ones((1, 4)), abs=1e-5)


@pytest.mark.parametrize("gap", [30.0, 59.0, 61.0, 80.0])
def test_marginals_weigh_the_reachable_tags_when_the_best_one_is_forbidden(gap):
    """Emissions shifted by their own maximum and floored at exp(-60): where the best tag was forbidden (I at a
    start, I after O), the reachable ones past the floor were flattened: 0.5 each where one holds ~1."""
    emissions = np.array([[[-gap - 10.0, -gap, 0.0]],  # O, B, I: I may not start; B is the one that can
                          [[-gap - 10.0, -gap - 40.0, 0.0]]], np.float32)  # ... and O's 10 below it weigh
    emissions = np.concatenate([emissions, np.array([[[0.0, -100.0, -100.0], [-300.0, -80.0, 0.0]]], np.float32)
                                [:, :1]], axis=0)
    crf = bio_crf(13)
    got = crf.marginals(emissions, np.ones((3, 1), bool)).numpy()
    np.testing.assert_allclose(got, brute_marginals(emissions, [1, 1, 1], crf, 1), atol=1e-5)
    two = np.array([[[0.0, -100.0, -100.0], [-300.0, -80.0, 0.0]]], np.float32)  # O, then I (forbidden after O)
    np.testing.assert_allclose(crf.marginals(two, np.ones((1, 2), bool)).numpy(),
                               brute_marginals(two, [2], crf, 2), atol=1e-5)


def test_mask_none_means_all_valid():
    emissions, tags, mask = make_batch([4, 4], 3, seed=7, pad=0)
    crf = make_crf(3, seed=8)
    np.testing.assert_array_equal(crf(emissions).numpy(), crf(emissions, mask).numpy())
    np.testing.assert_allclose(
        crf.log_likelihood(emissions, tags).numpy(),
        crf.log_likelihood(emissions, tags, mask).numpy(),
    )


@pytest.mark.parametrize("mask_dtype", [np.bool_, np.int32, np.float32])
def test_mask_dtypes(mask_dtype):
    emissions, tags, mask = make_batch([3, 1, 0], 3, seed=9)
    crf = make_crf(3, seed=10)
    ref_ll = crf.log_likelihood(emissions, tags, mask).numpy()
    ref_path = crf(emissions, mask).numpy()
    cast = mask.astype(mask_dtype)
    np.testing.assert_allclose(crf.log_likelihood(emissions, tags, cast).numpy(), ref_ll)
    np.testing.assert_array_equal(crf(emissions, cast).numpy(), ref_path)


# ----------------------------------------------------------------------------
# Constraints
# ----------------------------------------------------------------------------


def bio_crf(seed, constrain_training=False):
    return make_crf(
        3,
        seed,
        allowed_transitions=BIO_TRANSITIONS,
        allowed_starts=BIO_STARTS,
        allowed_ends=BIO_ENDS,
        constrain_training=constrain_training,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lengths", [[1, 3, 5], [5, 0, 2]])
def test_constrained_decode_is_best_allowed_path(seed, lengths):
    emissions, _, mask = make_batch(lengths, 3, seed=seed)
    # Push the model toward forbidden moves so the constraint actually binds.
    emissions[..., 2] += 3.0
    crf = bio_crf(seed + 100)
    crf.transitions.assign(crf.transitions.numpy() + 5.0 * ~BIO_TRANSITIONS)
    got = crf(emissions, mask).numpy()
    for row, n in enumerate(lengths):
        assert path_allowed(got[row, :n], crf), got[row, :n]
        assert np.all(got[row, n:] == 0)
    want = brute_decode(emissions, lengths, crf, emissions.shape[1], only_allowed=True)
    np.testing.assert_array_equal(got, want)


def test_constrained_marginals_put_no_mass_on_forbidden_tags():
    lengths = [4, 1, 0]
    emissions, _, mask = make_batch(lengths, 3, seed=11)
    crf = bio_crf(12)
    got = crf.marginals(emissions, mask).numpy()
    want = brute_marginals(emissions, lengths, crf, emissions.shape[1])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # "I" can never start a sequence.
    assert np.all(got[:2, 0, 2] < 1e-6)
    np.testing.assert_allclose(got.sum(axis=-1), mask.astype(np.float32), atol=1e-5)


@pytest.mark.parametrize("constrain_training", [False, True])
def test_constraints_in_training_only_when_requested(constrain_training):
    lengths = [4, 2, 0]
    emissions, tags, mask = make_batch(lengths, 3, seed=13)
    tags[0, :4] = [0, 1, 2, 0]  # an allowed gold path
    tags[1, :2] = [2, 0]  # a forbidden gold path (starts with I)
    crf = bio_crf(14, constrain_training=constrain_training)
    got = crf.log_likelihood(emissions, tags, mask).numpy()
    want = brute_log_likelihood(emissions, tags, lengths, crf, constrained=constrain_training)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    if constrain_training:
        assert got[1] < FORBIDDEN / 2  # heavily penalised, but finite
    assert np.all(np.isfinite(got))


def test_all_paths_forbidden_stays_finite():
    crf = make_crf(
        2,
        seed=15,
        allowed_transitions=np.zeros((2, 2), bool),
        allowed_starts=np.zeros(2, bool),
        constrain_training=True,
    )
    emissions, tags, mask = make_batch([3, 1], 2, seed=16)
    emissions_t = tf.constant(emissions)
    with tf.GradientTape() as tape:
        tape.watch(emissions_t)
        loss = -tf.reduce_mean(crf.log_likelihood(emissions_t, tags, mask))
    grads = tape.gradient(loss, [emissions_t, crf.transitions])
    for value in [loss, crf.marginals(emissions, mask)] + grads:
        assert np.all(np.isfinite(value.numpy()))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_transitions": np.ones((3, 2), bool)},
        {"allowed_starts": np.ones(4, bool)},
        {"allowed_ends": [0.5, 1, 1]},
    ],
)
def test_bad_constraints_are_rejected(kwargs):
    with pytest.raises(ValueError):
        CRF(3, **kwargs)


def test_config_round_trip_keeps_constraints():
    crf = bio_crf(17, constrain_training=True)
    config = crf.get_config()
    assert config["allowed_transitions"] == BIO_TRANSITIONS.tolist()
    assert config["allowed_starts"] == BIO_STARTS.tolist()
    clone = keras.layers.deserialize(keras.layers.serialize(crf))
    assert isinstance(clone, CRF)
    assert clone.get_config() == config
    np.testing.assert_array_equal(clone.allowed_transitions, BIO_TRANSITIONS)
    # Constraints are constants, not weights.
    assert len(crf.weights) == 3 and not crf.non_trainable_weights


# ----------------------------------------------------------------------------
# Gradients and masking
# ----------------------------------------------------------------------------


def test_gradients_are_finite_and_ignore_padding():
    lengths = [4, 0, 2]
    emissions, tags, mask = make_batch(lengths, 3, seed=18)
    crf = make_crf(3, seed=19)
    emissions_t = tf.constant(emissions)
    with tf.GradientTape() as tape:
        tape.watch(emissions_t)
        loss = -tf.reduce_mean(crf.log_likelihood(emissions_t, tags, mask))
    variables = [crf.transitions, crf.start_transitions, crf.end_transitions]
    grads = tape.gradient(loss, [emissions_t] + variables)
    for grad in grads:
        assert grad is not None
        assert np.all(np.isfinite(grad.numpy()))
    grad_emissions = grads[0].numpy()
    assert np.all(grad_emissions[~mask] == 0.0)
    assert np.any(grads[1].numpy() != 0.0)
    # d log Z / d emissions are the marginals, so the gradient of the mean
    # NLL is (marginals - one_hot(tags)) / batch on real tokens.
    expected = crf.marginals(emissions, mask).numpy() - np.eye(3)[tags] * mask[..., None]
    np.testing.assert_allclose(grad_emissions, expected / len(lengths), atol=1e-5)


def autodiff_log_likelihood(crf, emissions, tags, mask):
    """The log-likelihood with log Z from autodiff through the forward scan: the reference for the gradient
    CRF.log_likelihood writes by hand (forward-backward marginals)."""
    emissions, mask = crf_lib._prepare(emissions, mask)
    tags = tf.where(mask, tf.cast(tags, tf.int32), 0)
    transitions, start, end = crf._weights(constrained=crf.constrain_training)
    score = crf_lib._path_score(emissions, tags, mask, transitions, start, end)
    final = crf_lib._final_forward(crf_lib._forward(emissions, mask, transitions, start), tf.shape(emissions)[0],
                                   crf.num_tags)
    log_z = tf.where(tf.reduce_any(mask, axis=1), tf.reduce_logsumexp(final + end[tf.newaxis], axis=1), 0.0)
    return score - log_z


@pytest.mark.parametrize("constrain_training", [False, True])
@pytest.mark.parametrize("lengths,num_tags", CASES)
def test_hand_written_gradient_matches_autodiff(lengths, num_tags, constrain_training):
    emissions, tags, mask = make_batch(lengths, num_tags, seed=40, pad=2)
    constraints = {}
    if num_tags == 3:
        constraints = dict(allowed_transitions=BIO_TRANSITIONS, allowed_starts=BIO_STARTS)
    crf = make_crf(num_tags, seed=41, constrain_training=constrain_training, **constraints)
    weights = np.random.default_rng(42).normal(size=len(lengths)).astype(np.float32)  # a non-uniform upstream
    variables = [crf.transitions, crf.start_transitions, crf.end_transitions]
    results = []
    for log_likelihood in (crf.log_likelihood, lambda *a: autodiff_log_likelihood(crf, *a)):
        emissions_t = tf.constant(emissions)
        with tf.GradientTape() as tape:
            tape.watch(emissions_t)
            loss = tf.reduce_sum(log_likelihood(emissions_t, tags, mask) * weights)
        results.append([g.numpy() for g in tape.gradient(loss, [emissions_t] + variables)])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_masked_positions_change_nothing():
    lengths = [3, 1, 0]
    emissions, tags, mask = make_batch(lengths, 4, seed=20, pad=2)
    crf = make_crf(4, seed=21)
    rng = np.random.default_rng(22)
    garbage = rng.normal(scale=50.0, size=emissions.shape)
    noisy_emissions = np.where(mask[..., None], emissions, garbage).astype(np.float32)
    noisy_emissions[~mask] *= np.float32(np.inf)  # even inf/nan in padding
    noisy_tags = np.where(mask, tags, -100)  # e.g. ignore-index labels
    np.testing.assert_allclose(
        crf.log_likelihood(noisy_emissions, noisy_tags, mask).numpy(),
        crf.log_likelihood(emissions, tags, mask).numpy(),
    )
    np.testing.assert_array_equal(
        crf(noisy_emissions, mask).numpy(), crf(emissions, mask).numpy()
    )
    np.testing.assert_allclose(
        crf.marginals(noisy_emissions, mask).numpy(), crf.marginals(emissions, mask).numpy()
    )


def test_empty_rows():
    crf = make_crf(3, seed=23)
    emissions, tags, mask = make_batch([0, 0], 3, seed=24, pad=3)
    np.testing.assert_array_equal(
        crf.log_likelihood(emissions, tags, mask).numpy(), [0.0, 0.0]
    )
    np.testing.assert_array_equal(crf(emissions, mask).numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(crf.marginals(emissions, mask).numpy(), np.zeros((2, 3, 3)))
    # A padded length of 0 is fine too.
    empty = np.zeros((2, 0, 3), np.float32)
    no_mask = np.zeros((2, 0), bool)
    assert crf(empty, no_mask).shape == (2, 0)
    np.testing.assert_array_equal(
        crf.log_likelihood(empty, np.zeros((2, 0), np.int32), no_mask).numpy(), [0.0, 0.0]
    )
    assert crf.marginals(empty, no_mask).shape == (2, 0, 3)


# ----------------------------------------------------------------------------
# Dtypes
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
def test_low_and_high_precision_inputs_compute_in_float32(dtype):
    emissions, tags, mask = make_batch([3, 2], 3, seed=25)
    crf = make_crf(3, seed=26)
    cast = tf.cast(emissions, dtype)
    reference = tf.cast(cast, tf.float32)  # same rounded inputs, float32 path
    ll = crf.log_likelihood(cast, tags, mask)
    marg = crf.marginals(cast, mask)
    assert ll.dtype == tf.float32 and marg.dtype == tf.float32
    want = crf.log_likelihood(reference, tags, mask).numpy()
    np.testing.assert_allclose(ll.numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(crf(cast, mask).numpy(), crf(reference, mask).numpy())


@pytest.mark.parametrize("layer_dtype", [None, "mixed_float16"])
def test_mixed_precision_policy(mixed_precision, layer_dtype):
    emissions, tags, mask = make_batch([4, 2], 3, seed=27)
    crf = make_crf(3, seed=28, dtype=layer_dtype)
    for weight in crf.weights:
        assert weight.dtype == "float32"
    half = tf.constant(emissions, tf.float16)
    ll = crf.log_likelihood(half, tags, mask)
    marg = crf.marginals(half, mask)
    path = crf(half, mask)
    assert ll.dtype == tf.float32 and marg.dtype == tf.float32 and path.dtype == tf.int32
    reference = tf.cast(half, tf.float32)
    want = crf.log_likelihood(reference, tags, mask).numpy()
    np.testing.assert_allclose(ll.numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(path.numpy(), crf(reference, mask).numpy())
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(crf.log_likelihood(half, tags, mask))
    grad = tape.gradient(loss, crf.transitions)
    assert grad.dtype == tf.float32 and np.all(np.isfinite(grad.numpy()))


def test_mixed_precision_fixture_restores_policy():
    assert keras.config.dtype_policy().name == "float32"


# ----------------------------------------------------------------------------
# Graph mode, XLA, Keras integration, checkpoints, SavedModel
# ----------------------------------------------------------------------------

NUM_TAGS = 3
SIGNATURE = [
    tf.TensorSpec([None, None, NUM_TAGS], tf.float32),
    tf.TensorSpec([None, None], tf.int32),
    tf.TensorSpec([None, None], tf.bool),
]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_dynamic_shapes(jit_compile):
    crf = bio_crf(29)

    @tf.function(input_signature=SIGNATURE, jit_compile=jit_compile)
    def run(emissions, tags, mask):
        return (
            crf(emissions, mask),
            crf.log_likelihood(emissions, tags, mask),
            crf.marginals(emissions, mask),
        )

    for lengths, seed in [([3, 0, 5], 30), ([2], 31)]:
        emissions, tags, mask = make_batch(lengths, NUM_TAGS, seed=seed)
        path, ll, marg = run(emissions, tags, mask)
        np.testing.assert_array_equal(path.numpy(), crf(emissions, mask).numpy())
        want_ll = crf.log_likelihood(emissions, tags, mask).numpy()
        np.testing.assert_allclose(ll.numpy(), want_ll, rtol=1e-5, atol=1e-5)
        want_marg = crf.marginals(emissions, mask).numpy()
        np.testing.assert_allclose(marg.numpy(), want_marg, atol=1e-5)
    # One trace serves every batch size and length.
    assert run.experimental_get_tracing_count() == 1


def test_jit_compiled_gradient():
    crf = make_crf(NUM_TAGS, seed=32)
    emissions, tags, mask = make_batch([4, 0, 2], NUM_TAGS, seed=33)

    @tf.function(jit_compile=True)
    def grads(emissions, tags, mask):
        with tf.GradientTape() as tape:
            tape.watch(emissions)
            loss = -tf.reduce_mean(crf.log_likelihood(emissions, tags, mask))
        return tape.gradient(loss, [emissions, crf.transitions])

    got = grads(tf.constant(emissions), tf.constant(tags), tf.constant(mask))
    for grad in got:
        assert np.all(np.isfinite(grad.numpy()))


class _Tagger(keras.Model):
    def __init__(self, num_tags, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(num_tags)
        self.crf = CRF(num_tags, allowed_transitions=BIO_TRANSITIONS)

    def call(self, features, mask):
        return self.crf(self.proj(features), mask)


def test_sublayer_weights_are_tracked_and_checkpointed(tmp_path):
    features = np.random.default_rng(34).normal(size=(2, 4, 5)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    model = _Tagger(NUM_TAGS)
    model(features, mask)
    names = {w.path.split("/")[-1] for w in model.trainable_weights}
    assert {"transitions", "start_transitions", "end_transitions"} <= names
    assert len(model.weights) == 5  # dense kernel + bias, three CRF weights
    rng = np.random.default_rng(35)
    model.crf.transitions.assign(rng.normal(size=(NUM_TAGS, NUM_TAGS)).astype(np.float32))
    model.crf.end_transitions.assign(rng.normal(size=(NUM_TAGS,)).astype(np.float32))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))

    restored = _Tagger(NUM_TAGS)
    restored(features, mask)
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(model(features, mask).numpy(), restored(features, mask).numpy())


def test_functional_model_output_spec():
    emissions = keras.Input((None, NUM_TAGS))
    mask = keras.Input((None,), dtype="bool")
    output = CRF(NUM_TAGS)(emissions, mask)
    assert output.dtype == "int32"
    assert tuple(output.shape) == (None, None)


def test_saved_model_round_trip(tmp_path):
    crf = bio_crf(36)
    module = tf.Module()
    module.crf = crf
    module.decode = tf.function(
        lambda emissions, mask: crf(emissions, mask),
        input_signature=[SIGNATURE[0], SIGNATURE[2]],
    )
    tf.saved_model.save(module, str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    emissions, _, mask = make_batch([5, 2, 0], NUM_TAGS, seed=37)
    got = loaded.decode(tf.constant(emissions), tf.constant(mask))
    np.testing.assert_array_equal(got.numpy(), crf(emissions, mask).numpy())
