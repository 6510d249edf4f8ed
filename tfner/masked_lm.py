"""Masked-language-model pretraining pieces: whole-character masking, the MLM batches, the model and its loss.

The model is keras-hub's own: `keras_hub.models.BertMaskedLM` (the backbone, then `keras_hub.layers.MaskedLMHead`
with its output projection tied to the token embedding, as in BERT). The masking is tfner's own. keras-hub's
`MaskedLMMaskGenerator` (tf-text's `RandomItemSelector` and `MaskValuesChooser`) draws from stateful random ops,
so a run resumed from a checkpoint would mask other characters than an uninterrupted run; and its selection
caps the count per batch, not per sequence. Here every sequence's masks are a function of (seed, epoch, its
position in the epoch's order), drawn with stateless random ops, so resuming is exact. None of this enters
a serving graph: it runs in the tf.data input pipeline only.

Whole-character masking: CharTokenizer gives every character exactly one id, so masking a token masks a whole
character (BERT's WordPiece could mask half a word; Chinese "whole word masking" needs a word segmenter,
which tfner does not have). Per sequence of n characters, k = min(P, max(1, floor(n * mask_rate + 1/2)))
positions (halves round up: rounded to even, 30 characters got 4 masks, not 5, and 14.2 % of CLUENER's
characters were predicted at max_seq_length 32, not 15 %)
are chosen uniformly without replacement, where P = ceil((max_seq_length - 2) * mask_rate) is the fixed
width of the prediction slots; of the chosen characters 80 % become [MASK], 10 % a random character, 10 %
stay. Take 张三在北京工作 (n = 7) with mask_rate 0.15: k = max(1, floor(1.55)) = 1; with max_seq_length 128,
P = ceil(126 * 0.15) = 19, so mask_positions holds one real position (+1 for [CLS]) and 18 slots of weight 0.
"""

import math

import keras
import keras_hub
import tensorflow as tf

from tfner import data
from tfner.config import PretrainConfig
from tfner.tokenizer import MASK, SPECIAL_TOKENS, CharTokenizer


def max_predictions(max_seq_length: int, mask_rate: float) -> int:
    """P, the prediction slots per sequence: enough for mask_rate of the longest sequence's characters."""
    return max(1, math.ceil((max_seq_length - 2) * mask_rate))


def replacement_ids(vocabulary: list[str]) -> list[int]:
    """Ids a masked character may be replaced with (the 10 % "random" case): single characters, no specials.

    CharTokenizer only ever produces single-character entries (and [UNK], [unused1]); BERT's multi-character
    WordPieces never occur in its output, so drawing them would teach nothing.
    """
    ids = [i for i, token in enumerate(vocabulary) if len(token) == 1 and token not in SPECIAL_TOKENS]
    if not ids:
        raise ValueError("the vocabulary has no single-character entries to draw random replacements from")
    return ids


def mask_characters(ids: tf.Tensor, seed: tf.Tensor, config: PretrainConfig, num_predictions: int,
                    mask_id: int, random_ids: tf.Tensor) -> dict:
    """Masks one sequence (see the module docstring); every draw is stateless, a function of `seed`.

    Args:
        ids: int32 [n]. One sequence's character ids, without [CLS]/[SEP].
        seed: int64 [2]. The stateless seed of this sequence.
        config: PretrainConfig. mask_rate, mask_token_rate, random_token_rate.
        num_predictions: int. P, the width of the prediction slots.
        mask_id: int. The id of [MASK].
        random_ids: int32 [R]. The ids random replacements are drawn from.

    Returns:
        {"ids": int32 [n] with the chosen characters replaced, "positions": int32 [k] (sorted, 0-based over the
        characters), "targets": int32 [k] the original ids there, "weights": float32 [k] ones}, k <= P.
    """
    n = tf.shape(ids)[0]
    k = tf.cast(tf.floor(tf.cast(n, tf.float32) * config.mask_rate + 0.5), tf.int32)
    k = tf.minimum(tf.minimum(num_predictions, tf.maximum(1, k)), n)
    select, choose, draw = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    positions = tf.sort(tf.argsort(tf.random.stateless_uniform([n], select))[:k])
    targets = tf.gather(ids, positions)
    roll = tf.random.stateless_uniform([k], choose)
    random_tokens = tf.gather(random_ids, tf.random.stateless_uniform(
        [k], draw, minval=0, maxval=tf.size(random_ids), dtype=tf.int32))
    replacement = tf.where(
        roll < config.mask_token_rate,
        tf.fill([k], mask_id),
        tf.where(roll < config.mask_token_rate + config.random_token_rate, random_tokens, targets),
    )
    return {
        "ids": tf.tensor_scatter_nd_update(ids, positions[:, None], replacement),
        "positions": positions,
        "targets": targets,
        "weights": tf.ones([k], tf.float32),
    }


def masked_lm_batches(
    texts: tf.data.Dataset,
    tokenizer: CharTokenizer,
    config: PretrainConfig,
    batch_size: int,
    max_seq_length: int,
    seed: tuple[int, int],
    static_shapes: bool = False,
    bucket: bool = True,
    replicas: int = 1,
) -> tf.data.Dataset:
    """Strings (one sequence each, at most max_seq_length - 2 characters) -> masked (features, labels) batches.

    Args:
        texts: tf.data.Dataset. Scalar strings, in the order the masks are drawn for (the i-th string gets the
            seed (seed[0], seed[1] + i)).
        tokenizer: CharTokenizer. The run's tokenizer.
        config: PretrainConfig. The masking rates.
        batch_size: int. Sequences per batch.
        max_seq_length: int. Tokens per sequence, [CLS] and [SEP] included.
        seed: (int, int). The base of the per-sequence stateless seeds.
        static_shapes: bool. Pad every batch to its bucket's length, and a bucket's last batch to the batch
            size with empty rows (TPU).
        bucket: bool. Group by length as training does; False keeps the order and pads every batch to
            max_seq_length (one shape: scoring traces once).
        replicas: int. Consecutive batches that share a length bucket (data.bucket_batches).

    Returns:
        Batches (features, labels): features are the BertMaskedLM inputs {"token_ids", "segment_ids",
        "padding_mask" [B, T], "mask_positions" [B, P]}; labels {"mask_ids" int32 [B, P], "mask_weights"
        float32 [B, P]} (weight 0 on unused slots).
    """
    num_predictions = max_predictions(max_seq_length, config.mask_rate)
    mask_id = tokenizer.vocabulary.index(MASK)
    random_ids = tf.constant(replacement_ids(tokenizer.vocabulary), tf.int32)
    base = tf.constant(seed, tf.int64)

    def mask(index, text):
        ids = tokenizer(text)[: max_seq_length - 2]
        masked = mask_characters(ids, base + tf.stack([tf.constant(0, tf.int64), index]), config,
                                 num_predictions, mask_id, random_ids)
        masked["length"] = tf.shape(ids)[0]
        return masked

    dataset = texts.enumerate().map(mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    slots = [num_predictions]
    padded_shapes = {"ids": [None], "positions": slots, "targets": slots, "weights": slots, "length": []}
    padding_values = {"ids": tokenizer.pad_id, "positions": 0, "targets": 0, "weights": 0.0, "length": 0}
    boundaries = data.bucket_boundaries(max_seq_length, static_shapes) + [max_seq_length]
    if bucket:
        dataset = data.bucket_batches(dataset, boundaries, batch_size, padded_shapes, padding_values, static_shapes,
                                      replicas)
    else:
        dataset = dataset.padded_batch(batch_size, padded_shapes, padding_values)

    def to_model_inputs(batch):
        longest = tf.reduce_max(batch["length"]) + 2
        if not bucket:
            length = max_seq_length
        elif static_shapes:
            length = tf.reduce_min(tf.boolean_mask(boundaries, tf.constant(boundaries) >= longest))
        else:
            length = longest
        features = tokenizer.pack(tf.RaggedTensor.from_tensor(batch["ids"], lengths=batch["length"]), length)
        features["mask_positions"] = batch["positions"] + 1  # token 0 is [CLS]
        return features, {"mask_ids": batch["targets"], "mask_weights": batch["weights"]}

    return dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


def build_masked_lm(backbone: keras_hub.models.BertBackbone) -> tuple[keras.Model, list]:
    """keras-hub's BertMaskedLM over the backbone, built; returns (model, the head's own variables).

    The head's output projection is the token embedding (tied), which belongs to the backbone; the head's own
    variables (transform dense + LayerNorm, output bias) start from random values and get the head learning
    rate. The pooler gets no gradient in masked-LM training (it serves next-sentence prediction, which tfner
    does not train), so it is frozen, as in fine-tuning.
    """
    backbone.get_layer("pooled_dense").trainable = False
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    # Built in a graph, as training calls it: called eagerly under a mixed policy, keras-hub's MaskedLMHead adds
    # its float32 bias to bfloat16/float16 logits and fails (in a tf.function, Keras casts the bias first).
    tf.function(model)({
        "token_ids": tf.zeros([1, 3], tf.int32),
        "segment_ids": tf.zeros([1, 3], tf.int32),
        "padding_mask": tf.ones([1, 3], tf.bool),
        "mask_positions": tf.zeros([1, 1], tf.int32),
    })
    backbone_ids = {id(v) for v in backbone.weights}
    head = [v for v in model.masked_lm_head.trainable_variables if id(v) not in backbone_ids]
    return model, head


def token_losses(model: keras.Model, features: dict, labels: dict, training: bool = False):
    """(summed cross-entropy, correct predictions, predicted slots) over the real slots of a batch, float32."""
    logits = tf.cast(model(features, training=training), tf.float32)  # [B, P, V]; float32 under mixed precision
    weights = labels["mask_weights"]
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels["mask_ids"], logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels["mask_ids"]), tf.float32)
    return tf.reduce_sum(cross_entropy * weights), tf.reduce_sum(correct * weights), tf.reduce_sum(weights)
