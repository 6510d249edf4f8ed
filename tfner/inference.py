"""NerModule: raw UTF-8 texts in, entity spans out, all in graph.

This is the function the SavedModel serves (tfner.export), and the one training uses to score dev, so what is
measured is what is shipped. Steps, for a batch of texts:

1. Tokenize: one token per code point (tfner.tokenizer); invalid UTF-8 becomes U+FFFD.
2. Window: a text of n characters is cut into windows of W = max_seq_length - 2 characters, starting every
   S = W - overlap characters, the last one flush with the text end. With W = 126, overlap 32 (S = 94) and
   n = 300: windows start at 0, 94, 174 (= 300 - 126). The windows of all texts are tagged together.
3. Tag each window: backbone -> emissions -> CRF Viterbi (or softmax argmax), with per-character confidence;
   windows sorted by length and run in groups of `group_windows`, each padded only to its own longest.
4. Merge: consecutive windows k, k+1 share characters; characters before a seam c_k take window k's tags,
   the others window k+1's. The seam is never inside an entity of either window: c_k is a position where
   window k's tag before it ends an entity or is O (E-, S-, O) and window k+1's tag at it begins one or is O
   (B-, S-, O), so every entity comes whole from one window, as that window decoded it. Of such positions in
   the overlap, the one nearest its middle m_k = (start_k + W + start_{k+1}) / 2 wins (there both windows
   see the most context); with none, the seam is m_k itself. Seams stay in order: c_k lies in
   [max(start_{k+1}, start_{k-1} + W), start_k + W], and these ranges do not overlap. That range is the
   overlap, or the stride S where the overlap is over W / 2, so an entity longer than min(overlap, S) can be
   cut.
5. Spans: tags -> entities by the rule of tfner.labels (a continuation with no begin starts an entity),
   vectorised. An entity's score is the lowest confidence among its characters.
6. Pad every output to the batch's widest row (see export/README.md for the contract).
"""

import tensorflow as tf

from tfner import encoder
from tfner.labels import BEGIN, END, OUTSIDE, SINGLE, TagSet
from tfner.model import NerTagger, character_mask
from tfner.tokenizer import CharTokenizer


class NerModule(tf.Module):
    """Texts -> entities with the tagger, tokenizer and tag set of one model.

    Args:
        model: NerTagger. The trained tagger.
        tokenizer: CharTokenizer. The tokenizer the model was trained with.
        tag_set: TagSet. The model's tags.
        max_seq_length: int. Tokens per window, [CLS] and [SEP] included.
        window_overlap: int. Characters shared by consecutive windows.
        with_confidence: bool. Compute entity scores (CRF forward-backward); False gives every entity 1.0,
            for callers that only need the spans (dev scoring during training).
        group_windows: int. Windows per model call, shortest first (see tag_windows); 0 = all in one call.
    """

    def __init__(self, model: NerTagger, tokenizer: CharTokenizer, tag_set: TagSet, max_seq_length: int,
                 window_overlap: int = 32, with_confidence: bool = True, group_windows: int = 8):
        super().__init__(name="ner_module")
        self.with_confidence = with_confidence
        self.group_windows = group_windows
        self.model, self.tokenizer, self.tag_set = model, tokenizer, tag_set
        self.max_seq_length = max_seq_length
        self.window = max_seq_length - 2
        if not 0 <= window_overlap < self.window:
            raise ValueError(f"export.window_overlap must be in [0, {self.window}), got {window_overlap}")
        self.stride = self.window - window_overlap
        classes = tag_set.prefix_classes()
        self._tag_names = tf.constant(tag_set.tags)
        self._label_names = tf.constant(tag_set.labels)
        self._type_ids = tf.constant(tag_set.type_ids(), tf.int32)
        self._is_outside = tf.constant([c == OUTSIDE for c in classes])
        self._opens = tf.constant([c in (BEGIN, SINGLE) for c in classes])  # always starts an entity
        self._closes = tf.constant([c in (END, SINGLE) for c in classes])  # always ends one

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts):
        """[B] UTF-8 strings -> dict of the serving outputs (see export/README.md)."""
        code_points = self.tokenizer.code_points(texts)
        ids = self.tokenizer.ids(code_points)  # code points are kept: the entity texts are cut from them
        tags, confidence = self.tag(ids)
        return self.entities(code_points, tags, confidence)

    def tag(self, ids: tf.RaggedTensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        """[B, (n)] token ids -> per-character tag ids and confidences, ragged like ids (steps 2-4)."""
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        # Window starts per text: 0, S, 2S, ... and a last one flush with the end (step 2).
        num_windows = tf.maximum(1, 1 + (tf.maximum(lengths - self.window, 0) + self.stride - 1) // self.stride)
        k = tf.ragged.range(num_windows)
        starts = tf.minimum(k * self.stride, tf.maximum(lengths - self.window, 0)[:, None])  # [B, (K)]
        window_ids = tf.ragged.range(starts.flat_values, starts.flat_values + self.window)  # [W_total, (W)]
        text_of_window = tf.cast(starts.value_rowids(), tf.int32)
        row_offsets = tf.cast(ids.row_starts(), tf.int32)
        flat_lengths = tf.gather(lengths, text_of_window)
        positions = tf.ragged.boolean_mask(window_ids, window_ids < flat_lengths[:, None])  # last windows of short texts
        window_tokens = tf.gather(ids.flat_values, positions + tf.gather(row_offsets, text_of_window)[:, None])
        window_tags, window_confidence = self.tag_windows(window_tokens)

        # Step 4: for each character, the window it takes its tag from.
        boundaries = self.seams(starts, window_tags)  # first character that belongs to window k + 1
        char_positions = tf.ragged.range(lengths)
        chosen = tf.searchsorted(
            boundaries.to_tensor(default_value=2**30), char_positions.to_tensor(default_value=2**30), side="right"
        )
        chosen = tf.RaggedTensor.from_tensor(chosen, lengths=lengths)
        first_window = tf.cast(starts.row_starts(), tf.int32)
        flat_window = tf.gather(first_window, chosen.value_rowids()) + chosen.flat_values
        offset_in_window = char_positions.flat_values - tf.gather(starts.flat_values, flat_window)
        index = tf.stack([flat_window, offset_in_window], axis=1)
        tags = ids.with_flat_values(tf.gather_nd(window_tags, index))
        confidence = ids.with_flat_values(tf.gather_nd(window_confidence, index))
        return tags, confidence

    def tag_windows(self, window_tokens: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """[W, (n)] window token ids -> tags and confidences [W, longest n + 1], zero past each window (step 3).

        With `group_windows` = G > 0 the windows run through the model G at a time, shortest first, each group
        padded to its own longest window rather than the batch's: a batch of texts of mixed lengths (TF
        Serving's batching merges requests) pays for far fewer padding tokens. A window's result does not
        depend on its group. G = 0 runs all windows in one call (wider matrix products, e.g. for GPUs).
        """
        lengths = tf.cast(window_tokens.row_lengths(), tf.int32)
        width = _longest(lengths) + 1
        if not self.group_windows:
            return self._tag_group(window_tokens, width)
        order = tf.argsort(lengths, stable=True)
        ordered = tf.gather(window_tokens, order)
        size = self.group_windows
        groups = tf.maximum(1, (tf.size(lengths) + size - 1) // size)  # an empty batch runs one empty group

        def next_group(i, all_tags, all_confidence):
            tags, confidence = self._tag_group(ordered[i * size : (i + 1) * size], width)
            return i + 1, all_tags.write(i, tags), all_confidence.write(i, confidence)

        with encoder.weights_cast_once(self.model.backbone, tf.as_dtype(self.model.compute_dtype)):
            _, tags, confidence = tf.while_loop(
                lambda i, *_: i < groups, next_group,
                (0, tf.TensorArray(tf.int32, size=groups, infer_shape=False, element_shape=[None, None]),
                 tf.TensorArray(tf.float32, size=groups, infer_shape=False, element_shape=[None, None])))
        back = tf.math.invert_permutation(order)
        return tf.gather(tags.concat(), back), tf.gather(confidence.concat(), back)

    def _tag_group(self, windows: tf.RaggedTensor, width: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One model call over [G, (n)] windows, padded to their longest; tags and confidences [G, width]."""
        features = self.tokenizer.pack(windows, _longest(tf.cast(windows.row_lengths(), tf.int32)) + 2)
        emissions = self.model(features, training=False)
        tags, confidence = self.model.decode(emissions, character_mask(features["padding_mask"]), self.with_confidence)
        pad = [[0, 0], [0, width - tf.shape(tags)[1]]]
        return tf.pad(tags, pad), tf.pad(confidence, pad)

    def seams(self, starts: tf.RaggedTensor, window_tags: tf.Tensor) -> tf.RaggedTensor:
        """The seam after each window (step 4): [B, (K)] window starts, [K_total, L] tags -> [B, (K)] seams.

        Seam k is the first character taken from window k + 1 (2**30 after a text's last window).
        """
        w = self.window
        flat = starts.flat_values
        first = tf.cast(starts.row_starts(), tf.int32)
        index_in_text = tf.range(tf.size(flat)) - tf.gather(first, tf.cast(starts.value_rowids(), tf.int32))
        count = tf.gather(tf.cast(starts.row_lengths(), tf.int32), tf.cast(starts.value_rowids(), tf.int32))
        has_next = index_in_text + 1 < count
        nothing = tf.zeros_like(flat[:1])  # [0] (or [] for an empty batch)
        following = tf.concat([flat[1:], nothing], axis=0)  # the next window's start (meaningless without one)
        previous_end = tf.concat([nothing, flat[:-1]], axis=0) + w
        low = tf.where(index_in_text > 0, tf.maximum(following, previous_end), following)
        high = flat + w
        middle = (flat + w + following) // 2
        # Candidates c = start_{k+1} + j, j = 0..W: window k's tag at c - 1 and window k+1's tag at c.
        seam = following[:, None] + tf.range(w + 1)[None, :]
        longest = tf.shape(window_tags)[1]
        before = tf.gather(window_tags, tf.clip_by_value(seam - 1 - flat[:, None], 0, longest - 1), batch_dims=1)
        next_tags = tf.concat([window_tags[1:], tf.zeros_like(window_tags[:1])], axis=0)
        after = tf.gather(next_tags, tf.clip_by_value(seam - following[:, None], 0, longest - 1), batch_dims=1)
        clean = (
            (seam >= low[:, None]) & (seam <= high[:, None]) & has_next[:, None]
            & tf.gather(self._closes | self._is_outside, before) & tf.gather(self._opens | self._is_outside, after)
        )
        distance = tf.where(clean, tf.abs(seam - middle[:, None]), 2**30)
        best = tf.gather(seam, tf.argmin(distance, axis=1, output_type=tf.int32), batch_dims=1)
        fallback = tf.clip_by_value(middle, low, high)
        chosen = tf.where(tf.reduce_any(clean, axis=1), best, fallback)
        return starts.with_flat_values(tf.where(has_next, chosen, 2**30))

    def entities(self, code_points: tf.RaggedTensor, tags: tf.RaggedTensor, confidence: tf.RaggedTensor) -> dict:
        """Per-character tags -> the padded serving outputs (steps 5-6)."""
        batch = tags.nrows(out_type=tf.int32)
        flat = tags.flat_values
        outside = tf.gather(self._is_outside, flat)
        types = tf.gather(self._type_ids, flat)
        row_start = tf.cast(tags.row_starts(), tf.int32)
        row_limit = tf.cast(tags.row_limits(), tf.int32)
        position = tf.range(tf.size(flat))
        rows = tf.cast(tags.value_rowids(), tf.int32)
        is_first = tf.equal(position, tf.gather(row_start, rows))
        is_last = tf.equal(position + 1, tf.gather(row_limit, rows))
        previous = tf.concat([[0], flat[:-1]], axis=0)
        previous_closed = tf.gather(self._is_outside, previous) | tf.gather(self._closes, previous)
        starts = ~outside & (
            tf.gather(self._opens, flat) | is_first | previous_closed | tf.not_equal(tf.gather(self._type_ids, previous), types)
        )
        next_starts = tf.concat([starts[1:], [True]], axis=0)
        next_outside = tf.concat([outside[1:], [True]], axis=0)
        ends = ~outside & (tf.gather(self._closes, flat) | is_last | next_starts | next_outside)
        # Starts and ends pair up in order (each entity is one start, then one end); see tfner.labels.
        start_index = tf.cast(tf.where(starts)[:, 0], tf.int32)
        end_index = tf.cast(tf.where(ends)[:, 0], tf.int32) + 1
        entity_row = tf.gather(rows, start_index)
        entity_start = start_index - tf.gather(row_start, entity_row)
        entity_end = end_index - tf.gather(row_start, entity_row)
        label = tf.gather(self._label_names, tf.gather(types, start_index))
        span_chars = tf.ragged.range(start_index, end_index)
        text = tf.strings.unicode_encode(
            span_chars.with_flat_values(tf.gather(code_points.flat_values, span_chars.flat_values)), "UTF-8"
        )
        score = tf.reduce_min(
            span_chars.with_flat_values(tf.gather(confidence.flat_values, span_chars.flat_values)), axis=1
        )

        def pad(values, default):
            return tf.RaggedTensor.from_value_rowids(values, entity_row, nrows=batch).to_tensor(default)

        return {
            "num_entities": tf.math.bincount(entity_row, minlength=batch, maxlength=batch, dtype=tf.int32),
            "entity_labels": pad(label, ""),
            "entity_starts": pad(entity_start, -1),
            "entity_ends": pad(entity_end, -1),
            "entity_texts": pad(text, ""),
            "entity_scores": pad(score, 0.0),
            "tags": tags.with_flat_values(tf.gather(self._tag_names, flat)).to_tensor(""),
        }


def _longest(lengths: tf.Tensor) -> tf.Tensor:
    """The largest of int32 [N] lengths; 0 for an empty batch (reduce_max alone would give INT_MIN)."""
    return tf.reduce_max(tf.concat([[0], lengths], axis=0))
