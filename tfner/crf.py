"""Linear-chain conditional random field (CRF) layer for sequence labelling.

The layer scores a tag sequence ``y_0 .. y_{n-1}`` for per-token emission
scores ``e`` as::

    score(y) = start[y_0] + sum_t e[t, y_t]
               + sum_{t>=1} transitions[y_{t-1}, y_t] + end[y_{n-1}]

and defines ``p(y | e) = exp(score(y)) / Z`` with ``Z`` the sum over all tag
sequences of the same length. Everything is written with TensorFlow core ops
only (``tf.scan`` and vectorised math) so that the layer runs eagerly, inside
``tf.function`` with dynamic batch and sequence length, under XLA
(``jit_compile=True``), and inside a SavedModel served by TensorFlow Serving.

Conventions shared by all public methods:

* ``mask`` marks the real tokens; the True positions must form a prefix of each
  row (left-aligned sequences), so a row's length is ``sum(mask)``. Values at
  masked positions (emissions and tags) are ignored.
* A row of length 0 has exactly one tag sequence, the empty one, with score 0.
  Its log-likelihood is therefore ``log 1 = 0``, its decoded path is all zeros
  and its marginals are all zeros.
* All math is float32, whatever the input dtype or the Keras dtype policy: the
  forward algorithm sums many scores, and float16 would lose the small
  differences between paths and overflow in ``exp``.
"""

import keras
import numpy as np
import tensorflow as tf

# Score added to a forbidden transition/start/end. A finite constant rather
# than -inf: with -inf, log-sum-exp over a set of entries that are all -inf is
# -inf and its gradient is NaN (inf - inf), and masking arithmetic such as
# 0 * -inf also gives NaN. -10000 is far below any realistic difference between
# emission scores, so decoding never picks a forbidden path while an allowed
# one exists, but everything stays finite (also in float32 sums over long
# sequences) and gradients stay well defined.
_FORBIDDEN_SCORE = -10000.0


def _penalty(allowed, expected_shape, name):
    """Converts an optional boolean ``allowed`` array into an additive penalty.

    Args:
        allowed: array-like of bool or None. True where the move is allowed.
        expected_shape: tuple of int. The required shape of `allowed`.
        name: str. Argument name, for error messages.

    Returns:
        Tuple ``(allowed, penalty)``: the validated bool array (or None) and a
        float32 array with 0 where allowed and `_FORBIDDEN_SCORE` where not (or
        None when `allowed` is None).
    """
    if allowed is None:
        return None, None
    allowed = np.asarray(allowed)
    if allowed.dtype != np.bool_:
        # Accept 0/1 integers (e.g. from a JSON config), but nothing fuzzier:
        # a float like 0.5 is most likely a bug in the caller.
        if not np.all(np.isin(allowed, (0, 1))):
            raise ValueError(f"`{name}` must contain booleans or 0/1, got {allowed!r}.")
        allowed = allowed.astype(np.bool_)
    if allowed.shape != tuple(expected_shape):
        raise ValueError(
            f"`{name}` must have shape {tuple(expected_shape)}, got {allowed.shape}."
        )
    penalty = np.where(allowed, 0.0, _FORBIDDEN_SCORE).astype(np.float32)
    return allowed, penalty


def _prepare(emissions, mask):
    """Casts inputs to the internal dtypes and zeroes masked emissions.

    Args:
        emissions: float tensor [B, L, T]. Per-token tag scores.
        mask: bool or numeric tensor [B, L], or None for "all positions valid".

    Returns:
        Tuple ``(emissions, mask)`` of a float32 [B, L, T] tensor whose masked
        positions are 0 and a bool [B, L] tensor.
    """
    emissions = tf.cast(tf.convert_to_tensor(emissions), tf.float32)
    if mask is None:
        mask = tf.ones(tf.shape(emissions)[:2], dtype=tf.bool)
    else:
        mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
    # Padding may hold arbitrary values (even inf/NaN from an upstream layer);
    # zeroing it keeps every intermediate finite. `where`, not multiplication,
    # because 0 * inf is NaN.
    emissions = tf.where(mask[:, :, tf.newaxis], emissions, tf.zeros_like(emissions))
    return emissions, mask


def _time_major(x):
    """Swaps the batch and time axes of a [B, L, ...] tensor."""
    rank = x.shape.rank
    return tf.transpose(x, [1, 0] + list(range(2, rank)))


def _forward(emissions, mask, transitions, start):
    """Forward algorithm in log space.

    Args:
        emissions: float32 tensor [B, L, T], zero at masked positions.
        mask: bool tensor [B, L], prefix-shaped.
        transitions: float32 tensor [T, T].
        start: float32 tensor [T].

    Returns:
        float32 tensor [L, B, T] (time-major). Entry ``[t, b, j]`` is the log
        of the summed scores of all prefixes of row b that end in tag j at
        position t (emission at t included). At masked positions the value of
        the last valid position is carried forward, so the last entry holds
        each row's final forward vector.
    """
    num_tags = tf.shape(emissions)[2]
    batch = tf.shape(emissions)[0]
    steps = tf.range(tf.shape(emissions)[1])

    def step(alpha, inputs):
        t, emit, valid = inputs
        # [B, T, 1] + [1, T, T] -> reduce over the previous tag.
        moved = tf.reduce_logsumexp(
            alpha[:, :, tf.newaxis] + transitions[tf.newaxis], axis=1
        )
        # Position 0 has no predecessor; it starts from the start scores. A
        # per-step switch (instead of peeling position 0 off before the loop)
        # keeps the code valid for sequence length 0.
        new = tf.where(t == 0, start[tf.newaxis] + emit, moved + emit)
        return tf.where(valid[:, tf.newaxis], new, alpha)

    init = tf.zeros(tf.stack([batch, num_tags]), dtype=tf.float32)
    return tf.scan(
        step, (steps, _time_major(emissions), _time_major(mask)), initializer=init
    )


def _final_forward(alphas, batch, num_tags):
    """Returns the last forward vector [B, T] (zeros if the length is 0)."""
    # Reading alphas[-1] would fail for L == 0; concatenating a zero vector in
    # front and taking the last entry handles it without a branch.
    init = tf.zeros(tf.stack([1, batch, num_tags]), dtype=tf.float32)
    return tf.concat([init, alphas], axis=0)[-1]


def _backward(emissions, mask, transitions, end):
    """Backward algorithm in log space.

    Args:
        emissions: float32 tensor [B, L, T], zero at masked positions.
        mask: bool tensor [B, L], prefix-shaped.
        transitions: float32 tensor [T, T].
        end: float32 tensor [T].

    Returns:
        float32 tensor [L, B, T] (time-major). Entry ``[t, b, i]`` is the log
        of the summed scores of all suffixes of row b after position t given
        tag i at t (end score included, emission at t excluded). Valid only at
        unmasked positions.
    """
    length = tf.shape(emissions)[1]
    batch = tf.shape(emissions)[0]
    # Position t needs the emissions and mask of position t + 1; roll by one
    # and mark the wrapped-around last entry invalid.
    next_emissions = tf.roll(emissions, shift=-1, axis=1)
    next_valid = tf.logical_and(
        tf.roll(mask, shift=-1, axis=1),
        tf.range(length)[tf.newaxis] < length - 1,
    )

    def step(beta, inputs):
        emit, valid = inputs
        # [1, T, T] + [B, 1, T] -> reduce over the next tag.
        moved = tf.reduce_logsumexp(
            transitions[tf.newaxis] + (emit + beta)[:, tf.newaxis, :], axis=2
        )
        # Where the next position is padding (or past the end), the current
        # position is the last one and its suffix score is just `end`, which
        # is what the carried initial value holds.
        return tf.where(valid[:, tf.newaxis], moved, beta)

    init = tf.tile(end[tf.newaxis], tf.stack([batch, 1]))
    return tf.scan(
        step,
        (_time_major(next_emissions), _time_major(next_valid)),
        initializer=init,
        reverse=True,
    )


def _log_partition(emissions, mask, transitions, start, end):
    """log Z of each row, with a hand-written gradient: the forward-backward marginals.

    Autodiff through the forward scan keeps every step's intermediates in TensorLists and replays the loop
    op by op backwards; on Resume NER that made the CRF 8 % of a train step, most of it the loop machinery.
    The gradient of log Z is known in closed form: d/d emissions[b, t, j] = p(y_t = j), d/d transitions[i, j]
    = sum over t of p(y_{t-1} = i, y_t = j), d/d start[j] = p(y_0 = j), d/d end[i] = p(y_last = i). One
    backward scan and vectorised math give them all.

    Args:
        emissions: float32 tensor [B, L, T], zero at masked positions.
        mask: bool tensor [B, L], prefix-shaped.
        transitions: float32 tensor [T, T].
        start: float32 tensor [T].
        end: float32 tensor [T].

    Returns:
        float32 tensor [B]: log Z, 0 for rows of length 0.
    """
    batch, num_tags = tf.shape(emissions)[0], tf.shape(emissions)[2]
    valid = mask[:, :, tf.newaxis]
    has_tokens = tf.reduce_any(mask, axis=1)

    @tf.custom_gradient
    def log_partition(emissions, transitions, start, end):
        alphas = _forward(emissions, mask, transitions, start)
        final = _final_forward(alphas, batch, num_tags)
        log_z = tf.reduce_logsumexp(final + end[tf.newaxis], axis=1)
        # The empty row's partition function is 1 (log 0).
        log_z = tf.where(has_tokens, log_z, tf.zeros_like(log_z))

        def gradient(upstream):
            betas = _time_major(_backward(emissions, mask, transitions, end))  # [B, L, T]
            alphas_ = _time_major(alphas)
            scale = upstream[:, tf.newaxis, tf.newaxis]
            shift = log_z[:, tf.newaxis, tf.newaxis]
            # `where` before `exp`: padding holds carried-over values that must neither count nor overflow.
            unary = tf.exp(tf.where(valid, alphas_ + betas - shift, tf.fill(tf.shape(betas), -1e30)))
            unary = tf.where(valid, unary, tf.zeros_like(unary)) * scale
            # Pairs (t - 1, t) for t >= 1 where t is a real token: alpha[t-1, i] + trans[i, j] + e[t, j] + beta[t, j].
            incoming = (emissions + betas)[:, 1:]
            pair_valid = mask[:, 1:, tf.newaxis, tf.newaxis]
            log_pairs = (alphas_[:, :-1, :, tf.newaxis] + transitions[tf.newaxis, tf.newaxis]
                         + incoming[:, :, tf.newaxis, :] - shift[..., tf.newaxis])
            pairs = tf.exp(tf.where(pair_valid, log_pairs, tf.fill(tf.shape(log_pairs), -1e30)))
            pairs = tf.where(pair_valid, pairs, tf.zeros_like(pairs)) * scale[..., tf.newaxis]
            next_valid = tf.concat([mask[:, 1:], tf.zeros_like(mask[:, :1])], axis=1)
            is_last = tf.logical_and(mask, tf.logical_not(next_valid))[:, :, tf.newaxis]
            return (
                unary,
                tf.reduce_sum(pairs, axis=[0, 1]),
                tf.reduce_sum(unary[:, :1], axis=[0, 1]),
                tf.reduce_sum(tf.where(is_last, unary, tf.zeros_like(unary)), axis=[0, 1]),
            )

        return log_z, gradient

    return log_partition(emissions, transitions, start, end)


# Positions per iteration of the inference loops. A TensorFlow while loop pays for its own machinery (frames,
# counters, TensorList reads and writes) on every iteration, which for a [B, T] step costs about as much as the
# step; eight steps written out in one iteration pay it once (benchmarks/README.md, profile_step.py).
_UNROLL = 8


def _padded_length(length):
    """Position 0 plus whole chunks of _UNROLL, at least `length`, and at least one chunk: tf.scan cannot stack
    the outputs of zero iterations when their shape is not fully known (a batch of one-character texts)."""
    return 1 + tf.maximum((length - 1 + _UNROLL - 1) // _UNROLL, 1) * _UNROLL


def _pad_time(x, length):
    """Pads a [B, L, ...] tensor with zeros (False) along the time axis to `length`."""
    padding = [[0, 0], [0, length - tf.shape(x)[1]]] + [[0, 0]] * (x.shape.rank - 2)
    return tf.pad(x, padding)


def _chunked_scan(step, elems, initializer):
    """tf.scan over time-major `elems` with _UNROLL steps written out per loop iteration.

    Args:
        step: (carry, inputs) -> the next carry, one position.
        elems: nest of time-major tensors whose length is a multiple of _UNROLL.
        initializer: tensor, the carry before the first step.

    Returns:
        The carry after every step, stacked time-major in position order.
    """
    chunks = tf.nest.map_structure(lambda x: tf.reshape(x, tf.concat([[-1, _UNROLL], tf.shape(x)[1:]], 0)), elems)
    def body(accumulator, chunk):
        carry, _ = accumulator
        # One Unpack per input instead of a StridedSlice per input and position: ops, not math, are the cost.
        columns = [tf.unstack(x, num=_UNROLL) for x in tf.nest.flatten(chunk)]
        carries = []
        for i in range(_UNROLL):
            carry = step(carry, tf.nest.pack_sequence_as(chunk, [column[i] for column in columns]))
            carries.append(carry)
        return carry, tf.stack(carries)

    empty = tf.zeros(tf.concat([[_UNROLL], tf.shape(initializer)], 0), initializer.dtype)
    _, outputs = tf.scan(body, chunks, initializer=(initializer, empty))
    return tf.reshape(outputs, tf.concat([[-1], tf.shape(outputs)[2:]], 0))


def _scan_from_row_ends(step, elems, initializer, lengths):
    """_chunked_scan backwards over each row from its own last position, so that no step needs a mask.

    Each row is reversed (tf.reverse_sequence) over its own length, so every row starts at step 0 with
    `initializer` as the carry at its last position, whatever its length.

    Args:
        step: (carry at t + 1, elems[t]) -> carry at t.
        elems: time-major [P - 1, B, ...]; elems[t] is what the step from position t + 1 to t reads.
        initializer: [B, ...], the carry at each row's last position.
        lengths: int32 [B], each row's length (at most P).

    Returns:
        [P, B, ...], the carry at every position, in position order; past a row's end, unspecified.
    """
    backwards = tf.reverse_sequence(elems, tf.maximum(lengths - 1, 0), seq_axis=0, batch_axis=1)
    carries = tf.concat([initializer[tf.newaxis], _chunked_scan(step, backwards, initializer)], 0)
    return tf.reverse_sequence(carries, lengths, seq_axis=0, batch_axis=1)


def _viterbi(emissions, mask, transitions, start, end):
    """Best path per row: int32 [B, L], zeros at masked positions (see CRF.decode).

    Every loop here costs about its ops per position, not its arithmetic, so each step keeps to the fewest: no
    back pointers in the forward loop (an argmax over [B, T, T] at every position), and no masks in either
    loop. The forward loop runs on past each row's end (its scores there are never read), and the backtrack
    walks each row reversed (tf.reverse_sequence), so all rows start from their own last tag at step 0 and
    recompute each step's best predecessor over [B, T] only: the same sums as the forward loop's, so the
    same path.
    """
    length = tf.shape(emissions)[1]
    emissions = _pad_time(emissions, _padded_length(length))
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    scores_in = transitions[tf.newaxis]  # loop invariant, hoisted out of the step

    def step(delta, emit):
        return tf.reduce_max(delta[:, :, tf.newaxis] + scores_in, axis=1) + emit

    # Position 0 has no predecessor: it starts from the start scores, outside the loop.
    first = start[tf.newaxis] + emissions[:, 0]
    deltas = _chunked_scan(step, _time_major(emissions)[1:], first)
    deltas = tf.concat([first[tf.newaxis], deltas], 0)  # [P, B, T]: best score of a path ending in each tag
    rows = tf.range(tf.shape(lengths)[0])
    final = tf.gather_nd(deltas, tf.stack([tf.maximum(lengths - 1, 0), rows], axis=1))
    best_last = tf.argmax(final + end[tf.newaxis], axis=1, output_type=tf.int32)

    # Backtracking, each row from its own last position.
    incoming = tf.transpose(transitions)  # incoming[k]: the scores of every move into tag k

    def back(tag, delta_before):
        return tf.argmax(delta_before + tf.gather(incoming, tag), axis=1, output_type=tf.int32)

    path = tf.transpose(_scan_from_row_ends(back, deltas[:-1], best_last, lengths), [1, 0])[:, :length]
    return tf.where(mask, path, tf.zeros_like(path))


def _scaled_marginals(emissions, mask, transitions, start, end):
    """p(y_t = j | emissions) by forward-backward in probability space with per-step scaling.

    In log space every step is a log-sum-exp over [B, T, T] (seven ops); in probability space it is a
    matrix product and a rescale (four). Each forward vector a_t and backward vector b_t is kept summing to 1,
    so nothing overflows or underflows for realistic scores, and the marginal at t is a_t * b_t renormalised:
    the scale factors, and log Z, cancel. Scores are shifted by their maximum before exp, so a uniform
    penalty (every move forbidden) stays finite. A probability below float64's range becomes 0.

    The loops run in float64: in float32 a value ~88 nats below its vector's largest is 0, and the positions after
    it can make it the likely one (a best tag the previous position cannot reach, O -> I-X: the reachable tags
    were flattened, 0.5 each where one holds ~1). float64 holds ~708 nats, and these [B, T] ops cost their
    dispatch more than their arithmetic. (Log space, a log-sum-exp over [B, T, T] a step, is exact too, and
    took x1.3-2.4 the decode's time.)

    Returns:
        float32 [B, L, T]; masked positions are zero.
    """
    length = tf.shape(emissions)[1]
    emissions = tf.cast(_pad_time(emissions, _padded_length(length)), tf.float64)
    transitions, start, end = (tf.cast(x, tf.float64) for x in (transitions, start, end))
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    moves = tf.exp(transitions - tf.reduce_max(transitions))
    # Floored at exp(-600): where the best tag is unreachable from the previous position (O -> I-X, forbidden)
    # and every other one underflowed, the whole forward vector became 0, which _normalised keeps at 0 for the
    # rest of the row (every confidence 0). A floor changes the marginals only where the reachable tags are all
    # ~600 below the best, and keeps a_t @ moves * emit within float64's range for allowed moves of realistic size.
    emitted = _time_major(tf.exp(tf.maximum(emissions - tf.reduce_max(emissions, axis=2, keepdims=True), -600.0)))

    # a_t past a row's end is never read (its marginals are zeroed below), so the step needs no mask.
    def forward(a, emit):
        return _normalised(tf.matmul(a, moves) * emit)

    first = _normalised(tf.exp(start - tf.reduce_max(start))[tf.newaxis] * emitted[0])
    alphas = _chunked_scan(forward, emitted[1:], first)
    alphas = tf.concat([first[tf.newaxis], alphas], 0)

    # b_t depends on position t + 1 and is the end scores at a row's last position.
    def backward(b, emit_next):
        return _normalised(tf.matmul(emit_next * b, moves, transpose_b=True))

    last = _normalised(tf.tile(tf.exp(end - tf.reduce_max(end))[tf.newaxis], tf.stack([tf.shape(emissions)[0], 1])))
    betas = _scan_from_row_ends(backward, emitted[1:], last, lengths)
    marginals = tf.cast(_time_major(_normalised(alphas * betas))[:, :length], tf.float32)
    return tf.where(mask[:, :, tf.newaxis], marginals, tf.zeros_like(marginals))


def _normalised(x):
    """x / its sum over the last axis (tags); an all-zero vector stays zero."""
    return tf.math.divide_no_nan(x, tf.reduce_sum(x, axis=-1, keepdims=True))


def _path_score(emissions, tags, mask, transitions, start, end):
    """Unnormalised score of the given tag paths.

    Args:
        emissions: float32 tensor [B, L, T], zero at masked positions.
        tags: int32 tensor [B, L], zero at masked positions.
        mask: bool tensor [B, L], prefix-shaped.
        transitions: float32 tensor [T, T].
        start: float32 tensor [T].
        end: float32 tensor [T].

    Returns:
        float32 tensor [B]; 0 for rows of length 0.
    """
    num_tags = tf.shape(transitions)[0]
    zeros = tf.zeros_like(tags, dtype=tf.float32)

    emission_score = tf.gather(emissions, tags, batch_dims=2)
    emission_score = tf.reduce_sum(tf.where(mask, emission_score, zeros), axis=1)

    # Slices rather than indexing [:, 0] so that L == 0 gives empty sums.
    start_score = tf.gather(start, tags[:, :1])
    start_score = tf.reduce_sum(
        tf.where(mask[:, :1], start_score, zeros[:, :1]), axis=1
    )

    # Transition from t-1 to t counts when position t is valid (prefix masks).
    flat = tags[:, :-1] * num_tags + tags[:, 1:]
    trans_score = tf.gather(tf.reshape(transitions, [-1]), flat)
    trans_score = tf.reduce_sum(
        tf.where(mask[:, 1:], trans_score, zeros[:, 1:]), axis=1
    )

    # The last valid position is where the mask switches from True to False;
    # a one-hot selection avoids gathering index -1 for empty rows.
    next_mask = tf.concat([mask[:, 1:], tf.zeros_like(mask[:, :1])], axis=1)
    is_last = tf.logical_and(mask, tf.logical_not(next_mask))
    end_score = tf.reduce_sum(tf.where(is_last, tf.gather(end, tags), zeros), axis=1)

    return emission_score + start_score + trans_score + end_score


@keras.saving.register_keras_serializable(package="tfner")
class CRF(keras.layers.Layer):
    """Linear-chain CRF over per-token emission scores. call() = Viterbi decode.

    The layer owns three float32 trainable weights (kept float32 under any
    dtype policy, including ``mixed_float16``):

    * ``transitions`` [num_tags, num_tags]: score of tag i followed by tag j.
    * ``start_transitions`` [num_tags]: score of starting a sequence with tag j.
    * ``end_transitions`` [num_tags]: score of ending a sequence with tag i.

    Optional structural constraints (e.g. BIO: ``I-X`` may only follow ``B-X``
    or ``I-X``) are given as boolean arrays. Where an entry is False, the score
    ``-10000.0`` (``CRF.FORBIDDEN_SCORE``) is added to that transition/start/end.
    The constant is finite rather than -inf so that log-sum-exp and its
    gradients stay finite even if every path is forbidden. Constraints are
    always applied by `decode` / `call` and `marginals`. `log_likelihood` uses
    them only if ``constrain_training=True``: by default training is the plain
    CRF objective, because the transition weights learn to avoid invalid moves
    from the data anyway, and because a gold sequence that violates the
    constraints (annotation noise, a window cut in the middle of an entity)
    would otherwise get a loss around 10000 and dominate the batch.

    The constraints are stored as numpy constants (not variables), so they are
    never trained and are not part of checkpoints; they are part of
    `get_config` and are therefore restored when the layer is deserialised.

    Example:

    ```python
    crf = CRF(num_tags=5)
    nll = -crf.log_likelihood(emissions, tags, mask)   # training loss per row
    best = crf(emissions, mask)                        # int32 [B, L]
    ```

    Args:
        num_tags: int. The number of tags.
        allowed_transitions: bool array-like [num_tags, num_tags] or None.
            ``allowed_transitions[i, j]`` is False if tag i must not be followed
            by tag j. None allows everything.
        allowed_starts: bool array-like [num_tags] or None. False for tags that
            must not start a sequence. None allows everything.
        allowed_ends: bool array-like [num_tags] or None. False for tags that
            must not end a sequence. None allows everything.
        constrain_training: bool. Whether `log_likelihood` also applies the
            constraints. Defaults to False (see above).
        **kwargs: Base `keras.layers.Layer` arguments (``name``, ``dtype``, ...).
            ``dtype`` defaults to ``"float32"`` so that Keras does not cast the
            emissions to float16 under a mixed-precision global policy.
    """

    FORBIDDEN_SCORE = _FORBIDDEN_SCORE

    def __init__(
        self,
        num_tags,
        allowed_transitions=None,
        allowed_starts=None,
        allowed_ends=None,
        constrain_training=False,
        **kwargs,
    ):
        # The CRF sums scores over the whole sequence and exponentiates them;
        # it should run in float32 even when the rest of the model is mixed
        # precision, like a final softmax. An explicit dtype still wins, and
        # the weights and math are float32 regardless.
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        num_tags = int(num_tags)
        if num_tags < 1:
            raise ValueError(f"`num_tags` must be positive, got {num_tags}.")
        self.num_tags = num_tags
        self.constrain_training = bool(constrain_training)
        self.allowed_transitions, self._transition_penalty = _penalty(
            allowed_transitions, (num_tags, num_tags), "allowed_transitions"
        )
        self.allowed_starts, self._start_penalty = _penalty(
            allowed_starts, (num_tags,), "allowed_starts"
        )
        self.allowed_ends, self._end_penalty = _penalty(
            allowed_ends, (num_tags,), "allowed_ends"
        )
        # The weight shapes depend only on `num_tags`, so build right away:
        # `log_likelihood` / `marginals` can then be used before the first
        # `__call__`, and variables are never created inside a traced function.
        # The decoded path lines up with the input positions, so the input
        # mask also applies to the output; declaring this lets Keras pass it
        # on instead of warning that it is dropped.
        self.supports_masking = True
        self.build()

    def build(self, input_shape=None):
        """Creates the weights (idempotent; the input shape is not needed).

        Args:
            input_shape: tuple or None. Ignored; accepted for Keras.
        """
        if getattr(self, "transitions", None) is not None:
            return
        # Zeros: the CRF log-likelihood is concave in these weights, so there
        # is no symmetry to break and a neutral start is the natural choice.
        # autocast=False keeps them float32 inside mixed-precision calls.
        self.transitions = self.add_weight(
            name="transitions",
            shape=(self.num_tags, self.num_tags),
            initializer="zeros",
            dtype="float32",
            autocast=False,
        )
        self.start_transitions = self.add_weight(
            name="start_transitions",
            shape=(self.num_tags,),
            initializer="zeros",
            dtype="float32",
            autocast=False,
        )
        self.end_transitions = self.add_weight(
            name="end_transitions",
            shape=(self.num_tags,),
            initializer="zeros",
            dtype="float32",
            autocast=False,
        )

    def _weights(self, constrained):
        """Returns (transitions, start, end) as float32 tensors.

        Args:
            constrained: bool. Whether to add the constraint penalties.

        Returns:
            Tuple of float32 tensors [T, T], [T], [T].
        """
        transitions = tf.cast(tf.convert_to_tensor(self.transitions), tf.float32)
        start = tf.cast(tf.convert_to_tensor(self.start_transitions), tf.float32)
        end = tf.cast(tf.convert_to_tensor(self.end_transitions), tf.float32)
        if constrained:
            # The penalties become graph constants, so an exported SavedModel
            # carries them without any extra variable.
            if self._transition_penalty is not None:
                transitions = transitions + tf.constant(self._transition_penalty)
            if self._start_penalty is not None:
                start = start + tf.constant(self._start_penalty)
            if self._end_penalty is not None:
                end = end + tf.constant(self._end_penalty)
        return transitions, start, end

    def call(self, emissions, mask=None):
        """Viterbi-decodes the best tag path (constraints applied).

        Args:
            emissions: float tensor [B, L, T]. Per-token tag scores.
            mask: bool or 0/1 tensor [B, L], True on real tokens (a prefix of
                each row). None means every position is valid.

        Returns:
            int32 tensor [B, L]: the highest-scoring tag path, 0 at masked
            positions (all zeros for rows of length 0).
        """
        return self.decode(emissions, mask)

    def decode(self, emissions, mask=None):
        """Viterbi decoding; same as `call` without the Keras call machinery.

        Args:
            emissions: float tensor [B, L, T]. Per-token tag scores.
            mask: bool or 0/1 tensor [B, L], True on real tokens (a prefix of
                each row). None means every position is valid.

        Returns:
            int32 tensor [B, L]: the highest-scoring tag path, 0 at masked
            positions.
        """
        emissions, mask = _prepare(emissions, mask)
        return _viterbi(emissions, mask, *self._weights(constrained=True))

    def log_likelihood(self, emissions, tags, mask=None):
        """Log-probability of the given tag paths.

        Constraints are applied only if ``constrain_training`` is True.

        Args:
            emissions: float tensor [B, L, T]. Per-token tag scores.
            tags: int tensor [B, L]. Gold tags; values at masked positions are
                ignored (may be any integer, e.g. -100 padding labels).
            mask: bool or 0/1 tensor [B, L], True on real tokens (a prefix of
                each row). None means every position is valid.

        Returns:
            float32 tensor [B]: ``log p(tags | emissions)``; 0 for rows of
            length 0 (the empty path is the only path, with probability 1).
        """
        emissions, mask = _prepare(emissions, mask)
        tags = tf.cast(tf.convert_to_tensor(tags), tf.int32)
        tags = tf.where(mask, tags, tf.zeros_like(tags))
        transitions, start, end = self._weights(constrained=self.constrain_training)
        score = _path_score(emissions, tags, mask, transitions, start, end)
        log_z = _log_partition(emissions, mask, transitions, start, end)
        return score - log_z

    def marginals(self, emissions, mask=None):
        """Posterior marginals ``p(y_t = j | emissions)`` (forward-backward).

        Constraints are applied.

        Args:
            emissions: float tensor [B, L, T]. Per-token tag scores.
            mask: bool or 0/1 tensor [B, L], True on real tokens (a prefix of
                each row). None means every position is valid.

        Returns:
            float32 tensor [B, L, T]; each unmasked position sums to 1, masked
            positions (and rows of length 0) are all zeros.
        """
        emissions, mask = _prepare(emissions, mask)
        return _scaled_marginals(emissions, mask, *self._weights(constrained=True))

    def compute_output_spec(self, emissions, mask=None):
        """Symbolic output of `call`: int32 [B, L]."""
        return keras.KerasTensor(tuple(emissions.shape[:-1]), dtype="int32")

    def get_config(self):
        """Returns the layer config; constraints are stored as nested lists."""
        config = super().get_config()

        def as_list(array):
            return None if array is None else array.tolist()

        config.update(
            {
                "num_tags": self.num_tags,
                "allowed_transitions": as_list(self.allowed_transitions),
                "allowed_starts": as_list(self.allowed_starts),
                "allowed_ends": as_list(self.allowed_ends),
                "constrain_training": self.constrain_training,
            }
        )
        return config
