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
        transitions, start, end = self._weights(constrained=True)
        batch = tf.shape(emissions)[0]
        num_tags = self.num_tags
        # Backpointer used at masked steps and at position 0: "keep the tag".
        identity = tf.tile(
            tf.range(num_tags, dtype=tf.int32)[tf.newaxis], tf.stack([batch, 1])
        )

        def step(carry, inputs):
            delta, _ = carry
            t, emit, valid = inputs
            candidates = delta[:, :, tf.newaxis] + transitions[tf.newaxis]
            best_prev = tf.argmax(candidates, axis=1, output_type=tf.int32)
            moved = tf.reduce_max(candidates, axis=1) + emit
            new = tf.where(t == 0, start[tf.newaxis] + emit, moved)
            pointer = tf.where(t == 0, identity, best_prev)
            valid = valid[:, tf.newaxis]
            return (
                tf.where(valid, new, delta),
                tf.where(valid, pointer, identity),
            )

        init = (
            tf.zeros(tf.stack([batch, num_tags]), dtype=tf.float32),
            identity,
        )
        deltas, pointers = tf.scan(
            step,
            (
                tf.range(tf.shape(emissions)[1]),
                _time_major(emissions),
                _time_major(mask),
            ),
            initializer=init,
        )
        final = _final_forward(deltas, batch, num_tags)
        best_last = tf.argmax(final + end[tf.newaxis], axis=1, output_type=tf.int32)

        # Backtracking: the tag at t is pointers[t + 1][tag at t + 1]. Rolling
        # by -1 aligns pointers[t + 1] with position t and moves pointers[0]
        # (the identity) to the last position, where it maps `best_last` to
        # itself. Identity pointers at padding carry `best_last` back to the
        # last real token.
        shifted = tf.roll(pointers, shift=-1, axis=0)
        path = tf.scan(
            lambda tag, pointer: tf.gather(pointer, tag, batch_dims=1),
            shifted,
            initializer=best_last,
            reverse=True,
        )
        path = tf.transpose(path, [1, 0])
        return tf.where(mask, path, tf.zeros_like(path))

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
        batch = tf.shape(emissions)[0]

        score = _path_score(emissions, tags, mask, transitions, start, end)
        alphas = _forward(emissions, mask, transitions, start)
        final = _final_forward(alphas, batch, self.num_tags)
        log_z = tf.reduce_logsumexp(final + end[tf.newaxis], axis=1)
        has_tokens = tf.reduce_any(mask, axis=1)
        # The empty row's partition function is 1 (log 0); `where` also keeps
        # the meaningless forward value of that row out of the gradient.
        log_z = tf.where(has_tokens, log_z, tf.zeros_like(log_z))
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
        transitions, start, end = self._weights(constrained=True)
        batch = tf.shape(emissions)[0]

        alphas = _forward(emissions, mask, transitions, start)
        betas = _backward(emissions, mask, transitions, end)
        final = _final_forward(alphas, batch, self.num_tags)
        log_z = tf.reduce_logsumexp(final + end[tf.newaxis], axis=1)
        log_marginals = _time_major(alphas + betas) - log_z[:, tf.newaxis, tf.newaxis]
        # Padding holds carried-over, meaningless values; zero them (where,
        # so a large value there cannot overflow into the result).
        valid = mask[:, :, tf.newaxis]
        log_marginals = tf.where(valid, log_marginals, tf.zeros_like(log_marginals))
        # alpha + beta - log Z rounds to a hair above 0 for a near-certain tag
        # (scores of 1.00012 were served); a probability stays in [0, 1].
        probabilities = tf.minimum(tf.exp(log_marginals), 1.0)
        return tf.where(valid, probabilities, tf.zeros_like(log_marginals))

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
