"""The tagger: BERT backbone -> dropout -> dense emissions -> CRF (or softmax).

`call()` returns emission scores only; the loss and the decode are methods beside it, so one forward pass
serves training (loss), evaluation and the export (decode).
"""

import contextlib
import json

import keras
import keras_hub
import tensorflow as tf

from tfner import checkpoint, encoder
from tfner.atomic_write import write_atomically
from tfner.config import ConfigError, ModelConfig
from tfner.crf import CRF


def character_mask(padding_mask: tf.Tensor) -> tf.Tensor:
    """[B, T] token padding mask -> [B, T - 1] mask of the characters among tokens 1..T-1.

    Token 0 is [CLS], the last real token is [SEP]: token t (t >= 1) is a character iff token t + 1 is still
    inside the sequence, i.e. padding_mask[:, t + 1].
    """
    mask = tf.cast(padding_mask, tf.bool)
    return tf.concat([mask[:, 2:], tf.zeros_like(mask[:, :1])], axis=1)


class NerTagger(keras.Model):
    """BERT + CRF (or softmax) sequence tagger over characters.

    Args:
        backbone: keras_hub.models.BertBackbone. The encoder.
        num_tags: int. Size of the tag set.
        head: str. "crf" or "softmax".
        dropout: float. Dropout on the encoder output, before the emission layer.
        transition_constraints: tuple of bool arrays or None. (allowed [T, T], allowed starts [T], allowed ends
            [T]) for constrained CRF decoding; see `TagSet.allowed_transitions`.
        fast_encoder: bool. Run the backbone through `tfner.encoder` (same layers and weights, cheaper ops)
            instead of its own call.
    """

    def __init__(self, backbone, num_tags, head="crf", dropout=0.1, transition_constraints=None, fast_encoder=True,
                 **kwargs):
        super().__init__(**kwargs)
        if head not in ("crf", "softmax"):
            raise ValueError(f"model.head must be 'crf' or 'softmax', got {head!r}")
        self.backbone = backbone
        self.num_tags = num_tags
        self.head = head
        self.fast_encoder = fast_encoder
        self.head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        self.emission = keras.layers.Dense(num_tags, name="emission")
        self.crf = CRF(num_tags, *(transition_constraints or ()), name="crf") if head == "crf" else None

    def call(self, inputs, training=False):
        """Backbone inputs {"token_ids", "segment_ids", "padding_mask"} [B, T] -> float32 emissions [B, T - 1, tags]."""
        # Rebuilt in the backbone's own key order: Keras hands a subclassed model's dict input over with sorted
        # keys, and the functional backbone warns about any order but the one it was built with.
        inputs = {name: inputs[name] for name in ("token_ids", "segment_ids", "padding_mask")}
        if self.fast_encoder:  # the backbone's own layers and weights, through cheaper ops (tfner/encoder.py)
            sequence = encoder.sequence_output(self.backbone, inputs, training=training)
        else:
            sequence = self.backbone(inputs, training=training)["sequence_output"]
        sequence = self.head_dropout(sequence[:, 1:], training=training)  # drop [CLS]: position i = character i
        return tf.cast(self.emission(sequence), tf.float32)

    def head_variables(self) -> list:
        """The randomly initialised layers on top of the backbone (they get their own learning rate)."""
        layers = [self.emission] + ([self.crf] if self.crf is not None else [])
        return [v for layer in layers for v in layer.trainable_variables]

    def example_loss(self, emissions, tags, mask):
        """[B] loss per example: CRF negative log-likelihood, or summed token cross-entropy for softmax."""
        if self.crf is not None:
            return -self.crf.log_likelihood(emissions, tags, mask)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tags, logits=emissions)
        return tf.reduce_sum(cross_entropy * tf.cast(mask, tf.float32), axis=1)

    def decode(self, emissions, mask, with_confidence=True):
        """Best tags and their confidence: (int32 [B, L], float32 [B, L]), zeros where mask is False.

        Confidence is the posterior marginal probability of the chosen tag (CRF forward-backward), or its
        softmax probability for the softmax head. Forward-backward costs about as much as Viterbi again, so
        callers that only need tags (dev scoring) pass with_confidence=False and get 1.0 instead.
        """
        mask = tf.cast(mask, tf.bool)
        if self.crf is not None:
            tags = self.crf(emissions, mask)
            if not with_confidence:
                return tags, tf.cast(mask, tf.float32)
            probabilities = self.crf.marginals(emissions, mask)
        else:
            probabilities = tf.nn.softmax(emissions) * tf.cast(mask, tf.float32)[..., None]
            tags = tf.argmax(emissions, axis=-1, output_type=tf.int32) * tf.cast(mask, tf.int32)
        confidence = tf.gather(probabilities, tags, axis=2, batch_dims=2)
        return tags, confidence * tf.cast(mask, tf.float32)


def build_backbone(config: ModelConfig, vocabulary_size: int, max_seq_length: int) -> keras_hub.models.BertBackbone:
    """A randomly initialised backbone of the configured shape (`init: scratch`), or one loaded from a checkpoint."""
    if config.init == "scratch":
        return keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            hidden_dim=config.hidden_dim,
            intermediate_dim=config.intermediate_dim,
            dropout=config.dropout,
            max_sequence_length=max_seq_length,
        )
    # model.dropout is the backbone's dropout too (README), whatever rate the checkpoint's config names.
    try:
        backbone = checkpoint.load_backbone(config.init, max_sequence_length=max_seq_length, dropout=config.dropout)
    except checkpoint.CheckpointMismatchError:
        raise
    except ValueError as e:  # an unsupported config, or more positions than the checkpoint has: name the keys
        raise ConfigError(f"model.init {config.init} (data.max_seq_length {max_seq_length}): {e}") from None
    if backbone.vocabulary_size != vocabulary_size:
        # Named without looking the checkpoint's vocabulary up: it may be missing (data.vocab set for that reason),
        # and for a preset name the lookup would download it.
        raise ConfigError(
            f"model.init {config.init}: the checkpoint has {backbone.vocabulary_size} token embeddings but the "
            f"vocabulary has {vocabulary_size} entries. If data.vocab is set, use the vocabulary the checkpoint "
            "was trained with (leave data.vocab empty to use the one it ships); if it is empty, the checkpoint's "
            "vocabulary file and its config (vocab_size) do not belong together"
        )
    return backbone


def save_backbone_config(backbone: keras_hub.models.BertBackbone, path: str) -> None:
    """Writes the backbone's class and shape (no weights) as JSON, for rebuilding it without its checkpoint."""
    serialized = keras.saving.serialize_keras_object(backbone)
    write_atomically(path, json.dumps(serialized, indent=1))


def load_backbone_config(path: str) -> keras_hub.models.BertBackbone:
    """A fresh backbone of the class and shape save_backbone_config wrote, at the current dtype policy."""
    with open(path, encoding="utf-8") as f:
        serialized = json.load(f)
    # The dtype policy is the caller's choice: tfner.export.load_run builds under export.precision's.
    serialized["config"].pop("dtype", None)
    return keras.saving.deserialize_keras_object(serialized)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Layers built inside compute under the Keras dtype policy `name` ("float32", "mixed_bfloat16", ...).

    Keras layers take the global policy when they are built, so an export can pick its precision whatever
    policy the process trained under; the previous policy is restored on the way out.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_tagger(config: ModelConfig, vocabulary_size: int, max_seq_length: int, tag_set,
                 backbone: keras_hub.models.BertBackbone | None = None) -> NerTagger:
    """Builds the tagger and creates its variables (so checkpoints can restore into it).

    The backbone is built from `config` (from scratch or from its checkpoint) unless one is given.
    """
    tagger = NerTagger(
        backbone or build_backbone(config, vocabulary_size, max_seq_length),
        num_tags=len(tag_set),
        head=config.head,
        dropout=config.dropout,
        transition_constraints=tag_set.allowed_transitions() if config.constrain_decoding else None,
        fast_encoder=config.fast_encoder,
        name="ner_tagger",
    )
    # The pooler serves sentence classification; tagging never reads it, so it gets no gradients.
    tagger.backbone.get_layer("pooled_dense").trainable = False
    dummy = {
        "token_ids": tf.zeros([1, 3], tf.int32),
        "segment_ids": tf.zeros([1, 3], tf.int32),
        "padding_mask": tf.ones([1, 3], tf.bool),
    }
    emissions = tagger(dummy)
    if tagger.crf is not None:
        tagger.crf.log_likelihood(emissions, tf.zeros([1, 2], tf.int32), tf.ones([1, 2], tf.bool))
    return tagger
