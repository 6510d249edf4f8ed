"""Loads pretrained BERT weights into a keras-hub `BertBackbone`, strictly.

Three on-disk formats are accepted (see `load_backbone`):

(a) Google's original TF1 BERT release (`bert_config.json`, `vocab.txt`,
    `bert_model.ckpt.index` + `bert_model.ckpt.data-*`), as published for
    chinese_L-12_H-768_A-12 and HFL's chinese-roberta-wwm-ext;
(b) a Hugging Face folder (`config.json`, `vocab.txt`, `model.safetensors`,
    or shards listed in `model.safetensors.index.json`), read without torch;
(c) a keras-hub preset folder written by `save_to_preset`, or a keras-hub
    preset name.

For (a) and (b) this module does the conversion itself instead of relying on a
log-and-skip loader: a table maps every backbone variable to exactly one source
tensor and a transform, and loading only starts once the whole table checks out.
Anything the table does not explain is either a known non-backbone tensor
(pretraining heads, a Hugging Face task model's `classifier`, optimizer slots,
step counters, buffers), which is skipped and logged, or an error. One group of
the table may be absent: the pooler (`pooler/dense`), which checkpoints saved
from Hugging Face's token-classification and masked-LM models lack. Tagging
never reads it, so it keeps its initial values, with a warning; half a pooler
is still an error.

How a name travels, on one example. The layer-3 query projection of a
BERT-base model is stored by Google as

    bert/encoder/layer_3/attention/self/query/kernel      shape [768, 768]

Its kernel is [in, out] like a Keras Dense kernel, but keras-hub's
`MultiHeadAttention` keeps one [in, head_dim] slice per head, so the out axis is
split into (heads, head_dim) = (12, 64); BERT lays heads out contiguously along
that axis, so a plain reshape is exact:

    transformer_layer_3/self_attention_layer/query/kernel  shape [768, 12, 64]

The matching bias [768] becomes [12, 64]. For the attention output projection
(`attention/output/dense/kernel`, [768 in, 768 out]) the *input* axis is the
concatenation of the heads, so it becomes [12, 64, 768].

Hugging Face stores the same tensor as

    bert.encoder.layer.3.attention.self.query.weight      shape [768, 768]

i.e. the Google name with `bert/` -> `bert.` (the prefix may be absent),
`layer_3` -> `layer.3`, `/` -> `.`, and `kernel` -> `weight`. A torch Linear
weight is [out, in], so it is transposed before the reshape. LayerNorm
`gamma`/`beta` are `weight`/`bias` (older exports kept `gamma`/`beta`; both are
accepted, but not both at once), and embedding tables get a `.weight` suffix.

The remaining pairs, per layer N:

    attention/output/LayerNorm   -> transformer_layer_N/self_attention_layer_norm
    intermediate/dense           -> transformer_layer_N/feedforward_intermediate_dense
    output/dense                 -> transformer_layer_N/feedforward_output_dense
    output/LayerNorm             -> transformer_layer_N/feedforward_layer_norm

and once: `embeddings/word_embeddings` -> `token_embedding`,
`embeddings/position_embeddings` -> `position_embedding` (rows sliced when a
shorter `max_sequence_length` is asked for), `embeddings/token_type_embeddings`
-> `segment_embedding`, `embeddings/LayerNorm` -> `embeddings_layer_norm`,
`pooler/dense` -> `pooled_dense`.

GELU: keras-hub's `BertBackbone` hard-codes the tanh approximation of GELU.
BERT configs say `"hidden_act": "gelu"`, which Hugging Face computes exactly,
with erf (its notes say Google's BERT code did too when first released; the
current google-research/bert `gelu` is the tanh form). The two differ by up to
~5e-4 per activation. We follow Hugging Face: `gelu` loads as
`ErfGeluBertBackbone` (a registered `BertBackbone` subclass using erf GELU, so
the choice survives `save_to_preset` / `.keras` round trips as long as this
module is imported), and the tanh names (`gelu_new`, `gelu_pytorch_tanh`,
`gelu_fast`) load as a plain `BertBackbone`. Any other activation is refused.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
from collections.abc import Callable

import keras
import keras_hub
import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointMismatchError",
    "ErfGeluBertBackbone",
    "load_backbone",
    "vocabulary_path",
]

HF_SCHEME = "hf://"

ACCEPTED_FORMATS = (
    "Accepted formats: (a) a Google TF1 BERT checkpoint folder with bert_config.json, "
    "vocab.txt and bert_model.ckpt.index/.data-*; (b) a Hugging Face folder with "
    "config.json, vocab.txt and model.safetensors (or model.safetensors.index.json + "
    "shards); (c) a keras-hub preset folder (config.json, model.weights.h5, "
    "assets/tokenizer/vocabulary.txt) or a keras-hub preset name such as 'bert_base_zh' or URI "
    "(kaggle://, gs://); (d) hf://owner/name, a Hugging Face repository holding (b) or (c)."
)

# Layer-norm epsilon is fixed at 1e-12 inside keras-hub's BertBackbone; anything
# else in a config would make the loaded model compute something different.
_LAYER_NORM_EPS = 1e-12

# hidden_act -> True for exact (erf) GELU, False for the tanh approximation.
# Names follow Hugging Face's ACT2FN; Google's configs only ever say "gelu".
_ACTIVATIONS = {
    "gelu": True,
    "gelu_python": True,
    "gelu_new": False,
    "gelu_pytorch_tanh": False,
    "gelu_fast": False,
}

# How many names each section of a mismatch error lists before summarising;
# a completely wrong checkpoint would otherwise produce hundreds of lines.
_MAX_LISTED = 25


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not match the architecture its config describes."""


@keras.saving.register_keras_serializable(package="tfner")
def gelu_erf(x):
    """Exact GELU, x * Phi(x), computed with erf."""
    return keras.activations.gelu(x, approximate=False)


@keras.saving.register_keras_serializable(package="tfner")
class ErfGeluBertBackbone(keras_hub.models.BertBackbone):
    """A `BertBackbone` whose feed-forward activation is the exact (erf) GELU.

    keras-hub builds every BERT with the tanh approximation and has no argument
    to change it. The activation is only looked up when a layer is called, so
    swapping it on the already-built feed-forward layers changes the computation
    without touching any variable. Being its own registered class (rather than a
    patched instance) is what lets the choice survive serialization.

    Args:
        *args: Positional arguments of `keras_hub.models.BertBackbone`.
        **kwargs: Keyword arguments of `keras_hub.models.BertBackbone`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for layer in self.transformer_layers:
            layer.activation = gelu_erf  # keeps the layer's own get_config truthful
            layer._feedforward_intermediate_dense.activation = gelu_erf


@dataclasses.dataclass(frozen=True)
class _Architecture:
    """The fields of a BERT config that decide the backbone's shapes and maths."""

    vocab_size: int
    num_layers: int
    num_heads: int
    hidden: int
    intermediate: int
    positions: int
    type_vocab_size: int
    dropout: float
    exact_gelu: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    def describe(self) -> str:
        return (
            f"{self.num_layers} layers, hidden {self.hidden}, {self.num_heads} heads, "
            f"intermediate {self.intermediate}, vocab {self.vocab_size}, "
            f"{self.positions} positions, {self.type_vocab_size} token types"
        )


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One row of the mapping table: where a backbone variable comes from."""

    target: str  # keras variable path, e.g. "transformer_layer_0/self_attention_layer/query/kernel"
    sources: tuple[str, ...]  # accepted source names; exactly one must be present
    source_shape: tuple[int, ...]  # shape the config implies for the stored tensor
    transform: Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def load_backbone(path: str, max_sequence_length: int | None = None,
                  dropout: float | None = None) -> keras_hub.models.BertBackbone:
    """Builds a keras-hub BERT backbone from a pretrained checkpoint.

    The architecture comes from the checkpoint's own config file. For Google
    and Hugging Face checkpoints every backbone variable must be found exactly
    once with the shape the config implies, and every stored tensor must either
    be used or be a known non-backbone tensor (pretraining heads `cls/*` and
    `cls.*`, optimizer slots such as `*/adam_m` and `*/adam_v`, `global_step`
    and similar step counters, Hugging Face `position_ids` / `token_type_ids`
    buffers); those are skipped and logged at INFO level. Otherwise nothing is
    loaded and one `CheckpointMismatchError` lists all problems. keras-hub
    presets are loaded by keras-hub itself.

    Args:
        path: str. A Google TF1 checkpoint folder (or its `bert_model.ckpt`
            prefix), a Hugging Face folder, a keras-hub preset folder, or a
            keras-hub preset name (names need network access).
        max_sequence_length: int or None. Longest input the backbone will take.
            None keeps all of the checkpoint's position embeddings. A smaller
            value keeps only the first `max_sequence_length` rows of the
            position embedding table (the rest is dropped, which saves memory
            and is exact for inputs that fit). A larger value is an error: BERT
            has no trained embeddings for those positions.
        dropout: float or None. The backbone's dropout rate; None keeps the
            checkpoint's (`hidden_dropout_prob`, or the preset's). Dropout has
            no weights, so any rate loads the same tensors.

    Returns:
        keras_hub.models.BertBackbone. An `ErfGeluBertBackbone` when the config
        asks for exact GELU (`"hidden_act": "gelu"`), else a plain one.

    Raises:
        FileNotFoundError: The path or a file the format needs is missing.
        CheckpointMismatchError: Tensors are missing, unexpected or mis-shaped.
        ValueError: Unsupported config settings or a too large
            `max_sequence_length`.
    """
    _check_length_argument(max_sequence_length)
    kind, location = _locate(path)
    if kind == "keras":
        return _load_keras_preset(location, max_sequence_length, dropout)

    if kind == "google":
        config_file = os.path.join(os.path.dirname(location), "bert_config.json")
        arch = _read_architecture(config_file, huggingface=False)
        reader = _TF1Reader(location)
    else:
        config_file = os.path.join(location, "config.json")
        arch = _read_architecture(config_file, huggingface=True)
        reader = _SafetensorsReader(location)
    if dropout is not None:
        arch = dataclasses.replace(arch, dropout=float(dropout))
    positions = _resolve_positions(arch.positions, max_sequence_length, config_file)

    table = _mapping_table(arch, positions, huggingface=(kind == "huggingface"), names=reader.shapes)
    # Check names and shapes before building anything: a mismatch fails fast.
    plan = _match(table, reader, arch, config_file, huggingface=(kind == "huggingface"))
    backbone = _new_backbone(arch, positions)
    _check_table_covers(backbone, table)
    variables = {v.path: v for v in backbone.weights}
    for entry, name in plan:
        value = entry.transform(reader.get(name)).astype(variables[entry.target].dtype)
        variables[entry.target].assign(value)
    logger.info("Loaded %d tensors from %s into %s (%s).", len(plan), reader.description,
                type(backbone).__name__, arch.describe())
    return backbone


def vocabulary_path(path: str) -> str:
    """Finds the WordPiece vocabulary file that belongs to a checkpoint.

    Args:
        path: str. Anything `load_backbone` accepts.

    Returns:
        str. Path of the vocabulary file (one token per line, id = line number):
        `vocab.txt` for Google and Hugging Face folders,
        `assets/tokenizer/vocabulary.txt` for keras-hub presets (a preset name
        is downloaded by keras-hub).

    Raises:
        FileNotFoundError: The checkpoint or its vocabulary file is missing.
    """
    kind, location = _locate(path)
    if kind == "keras" and not os.path.isdir(location):
        # A preset name: keras-hub resolves and downloads it; it has no public
        # helper for single files, so use the one its own loaders use.
        from keras_hub.src.utils.preset_utils import get_file

        return get_file(location, "assets/tokenizer/vocabulary.txt")
    folder = os.path.dirname(location) if kind == "google" else location
    candidates = [os.path.join(folder, "vocab.txt")]
    if kind == "keras":
        candidates.insert(0, os.path.join(folder, "assets", "tokenizer", "vocabulary.txt"))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise FileNotFoundError(
        f"No vocabulary for the checkpoint at {path!r}: expected {' or '.join(candidates)}. "
        + ("A keras-hub preset stores it when the tokenizer is saved with "
           "tokenizer.save_to_preset(folder)." if kind == "keras" else "It ships with the checkpoint.")
    )


# ---------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------


def _locate(path: str) -> tuple[str, str]:
    """Works out the format. Returns (kind, location).

    kind is "google" (location = checkpoint prefix), "huggingface" (folder) or
    "keras" (preset folder or preset name).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isfile(path + ".index"):
        # A TF1 checkpoint prefix such as ".../bert_model.ckpt", as Google's
        # own scripts take it.
        return "google", _check_google_files(path)
    if os.path.isdir(path):
        google_config = os.path.join(path, "bert_config.json")
        config = os.path.join(path, "config.json")
        indexes = sorted(glob.glob(os.path.join(path, "*.index")))
        has_google_config, has_config = os.path.isfile(google_config), os.path.isfile(config)
        # A TF1 checkpoint with its bert_config.json wins: converted folders sometimes keep it next to a Hugging
        # Face config.json and weights. TF1 files without bert_config.json beside a config.json are the leftovers.
        if (indexes and (has_google_config or not has_config)) or (has_google_config and not has_config):
            return "google", _check_google_files(_google_prefix(path, indexes))
        if has_config:
            content = _read_json(config, "checkpoint")
            if "registered_name" in content:
                weights = os.path.join(path, "model.weights.h5")
                sharded = os.path.join(path, "model.weights.json")
                if not (os.path.isfile(weights) or os.path.isfile(sharded)):
                    raise FileNotFoundError(
                        f"{path} looks like a keras-hub preset (config.json has 'registered_name') "
                        f"but {weights} is missing. {ACCEPTED_FORMATS}"
                    )
                return "keras", path
            return "huggingface", path
        if os.path.isfile(os.path.join(path, "backbone", "config.json")):  # a tfner.pretrain run_dir
            raise FileNotFoundError(f"{path} is a tfner.pretrain run_dir; its backbone is "
                                    f"{os.path.join(path, 'backbone')}: give that as model.init")
        raise FileNotFoundError(
            f"{path} holds no BERT checkpoint: expected bert_config.json (Google TF1) or "
            f"config.json (Hugging Face, keras-hub preset). {ACCEPTED_FORMATS}"
        )
    if path.startswith(HF_SCHEME):
        return _locate_on_hugging_face(path)
    if "://" in path:
        _refuse_remote_folder(path)
        return "keras", path
    if _is_preset_name(path):
        return "keras", path
    if os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is a file; pass the checkpoint's folder (or the prefix of a TF1 checkpoint, e.g. "
            f".../bert_model.ckpt). {ACCEPTED_FORMATS}"
        )
    raise FileNotFoundError(f"No BERT checkpoint at {path!r}: the path does not exist. {ACCEPTED_FORMATS}")


def _locate_on_hugging_face(uri: str) -> tuple[str, str]:
    """hf://owner/name: a keras-hub preset uploaded there, or a Transformers BERT repository.

    keras-hub would take either, but it converts a Transformers repository
    with none of the checks of a local Hugging Face folder and with tanh GELU
    where the config says exact. So only a preset (its config.json has
    'registered_name') goes to keras-hub; a Transformers repository is
    downloaded into Hugging Face's cache (just the files read here) and
    loaded as the local folder it then is.
    """
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo = uri[len(HF_SCHEME):]

    def download(filename):
        try:
            return huggingface_hub.hf_hub_download(repo_id=repo, filename=filename)
        except LocalEntryNotFoundError:  # the hub unreachable (or HF_HUB_OFFLINE) and not cached; an EntryNotFound
            raise FileNotFoundError(
                f"{uri}: {filename} could not be fetched from the Hugging Face hub and is not in its cache; check "
                f"the network (and HF_ENDPOINT, HF_HUB_OFFLINE), or download the repository where the hub can be "
                f"reached (huggingface-cli download {repo} --local-dir DIR) and set model.init to DIR") from None
        except RepositoryNotFoundError:  # gated ones too
            raise FileNotFoundError(f"{uri}: the Hugging Face hub has no such repository, or it is private or gated "
                                    "(log in with huggingface-cli login, or set HF_TOKEN)") from None
        except EntryNotFoundError:
            return None

    config = download("config.json")
    if config is None:
        raise FileNotFoundError(f"{uri} has no config.json: neither a keras-hub preset nor a Transformers BERT "
                                f"repository. {ACCEPTED_FORMATS}")
    if "registered_name" in _read_json(config, "config.json"):
        return "keras", uri
    download("vocab.txt")  # The folder's own check names it if it is missing.
    index = download("model.safetensors.index.json")
    if index is not None:
        for shard in sorted(set(_read_safetensors_index(index).values())):
            download(shard)
    else:
        download("model.safetensors")
    return "huggingface", os.path.dirname(config)


def _refuse_remote_folder(uri: str) -> None:
    """A gs:// (or other tf.io.gfile) URI is a keras-hub preset, which keras-hub reads remotely; a Google TF1 or
    Hugging Face folder there is refused by name, not handed to keras-hub to fail on a missing preset file."""
    import tensorflow as tf

    folder = uri.rstrip("/")
    try:
        if tf.io.gfile.exists(folder + ".index") or tf.io.gfile.exists(f"{folder}/bert_config.json"):
            kind = "a Google TF1 checkpoint"
        elif (tf.io.gfile.exists(f"{folder}/config.json") and "registered_name" not in
              tf.io.gfile.GFile(f"{folder}/config.json").read()):
            kind = "a Hugging Face folder"
        else:
            return
    except tf.errors.UnimplementedError:  # a scheme only keras-hub knows (kaggle://)
        return
    raise FileNotFoundError(f"{folder} holds {kind}, which is read from a local folder only (keras-hub presets are "
                            f"read remotely): copy it first, e.g. gsutil -m cp -r {folder} . {ACCEPTED_FORMATS}")


def _read_json(path: str, what: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            content = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}): copy or download the {what} again") from e
    if not isinstance(content, dict):
        raise ValueError(f"{path} is not a JSON object: copy or download the {what} again")
    return content


def _read_safetensors_index(path: str) -> dict:
    """model.safetensors.index.json -> its weight_map (tensor name -> shard file name)."""
    weight_map = _read_json(path, "checkpoint").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{path} is not a safetensors index: it lacks a 'weight_map' of tensor name -> shard "
                         "file; copy or download the checkpoint again")
    return weight_map


def _is_preset_name(path: str) -> bool:
    """True for keras-hub's built-in BERT preset names."""
    return path in keras_hub.models.BertBackbone.presets


def _google_prefix(folder: str, indexes: list[str]) -> str:
    """Picks the checkpoint prefix inside a Google folder."""
    default = os.path.join(folder, "bert_model.ckpt")
    if os.path.isfile(default + ".index"):
        return default
    if os.path.isfile(os.path.join(folder, "checkpoint")):
        # A training directory: the `checkpoint` state file names the newest.
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(folder)
        # The state file may hold an absolute path into the folder this one was copied from: never load
        # weights from somewhere else than the folder named.
        if latest and os.path.samefile(os.path.dirname(latest), folder):
            return latest
        if latest:
            logger.warning("%s/checkpoint names %s, outside this folder; ignoring it", folder, latest)
    if len(indexes) == 1:
        return indexes[0][: -len(".index")]
    if indexes:
        raise FileNotFoundError(
            f"{folder} holds several checkpoints ({', '.join(os.path.basename(i) for i in indexes)}) "
            "and no bert_model.ckpt.index; pass the prefix of the one to load, e.g. "
            f"{indexes[0][: -len('.index')]}"
        )
    raise FileNotFoundError(
        f"{folder} has bert_config.json but no checkpoint: expected {default}.index and "
        f"{default}.data-00000-of-00001 next to it. {ACCEPTED_FORMATS}"
    )


def _check_google_files(prefix: str) -> str:
    """Checks that a TF1 checkpoint's data shards and config exist."""
    if not glob.glob(glob.escape(prefix) + ".data-*"):
        raise FileNotFoundError(
            f"{prefix}.index exists but its data file {prefix}.data-00000-of-00001 is missing."
        )
    config = os.path.join(os.path.dirname(prefix), "bert_config.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(
            f"Found the TF1 checkpoint {prefix} but not {config}, which gives its architecture. "
            f"{ACCEPTED_FORMATS}"
        )
    return prefix


# ---------------------------------------------------------------------------
# Reading configs
# ---------------------------------------------------------------------------


def _read_architecture(config_file: str, huggingface: bool) -> _Architecture:
    """Reads and validates a Google or Hugging Face BERT config."""
    config = _read_json(config_file, "checkpoint")
    required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size"]
    absent = [key for key in required if key not in config]
    if absent:
        raise ValueError(f"{config_file} lacks {', '.join(absent)}; a BERT config has all of {', '.join(required)}.")
    not_counts = [f"{key} is {config[key]!r}" for key in required
                  if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1]
    if not_counts:
        raise ValueError(f"{config_file}: {', '.join(not_counts)}; each must be a positive integer (a JSON number).")

    # Settings a keras-hub BertBackbone cannot express: loading anyway would
    # give a model that runs but computes something else.
    problems = []
    if huggingface and config.get("model_type", "bert") != "bert":
        problems.append(f"model_type is {config['model_type']!r}, only 'bert' is supported "
                        "(RoBERTa-style models offset their position ids)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type is {config['position_embedding_type']!r}, "
                        "only 'absolute' is supported")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        problems.append("the config describes a decoder / cross-attention model")
    eps = config.get("layer_norm_eps", _LAYER_NORM_EPS)
    if not np.isclose(eps, _LAYER_NORM_EPS, rtol=1e-3, atol=0):
        problems.append(f"layer_norm_eps is {eps}, keras-hub's BertBackbone uses {_LAYER_NORM_EPS}")
    act = config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        problems.append(f"hidden_act is {act!r}, supported: {', '.join(sorted(_ACTIVATIONS))}")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    if heads <= 0 or hidden % heads:
        problems.append(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if problems:
        raise ValueError(f"Unsupported BERT config {config_file}: " + "; ".join(problems) + ".")

    dropout = float(config.get("hidden_dropout_prob", 0.1))
    attention_dropout = float(config.get("attention_probs_dropout_prob", dropout))
    if attention_dropout != dropout:
        # keras-hub has a single rate for both; it only matters in training.
        logger.warning("%s: attention_probs_dropout_prob %s differs from hidden_dropout_prob %s; "
                       "keras-hub uses one rate, taking %s.", config_file, attention_dropout, dropout, dropout)
    return _Architecture(
        vocab_size=int(config["vocab_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=int(heads),
        hidden=int(hidden),
        intermediate=int(config["intermediate_size"]),
        positions=int(config["max_position_embeddings"]),
        type_vocab_size=int(config["type_vocab_size"]),
        dropout=dropout,
        exact_gelu=_ACTIVATIONS[act],
    )


def _check_length_argument(max_sequence_length) -> None:
    if max_sequence_length is None:
        return
    if isinstance(max_sequence_length, bool) or not isinstance(max_sequence_length, (int, np.integer)):
        raise TypeError(f"max_sequence_length must be an int or None, got {max_sequence_length!r}")
    if max_sequence_length < 1:
        raise ValueError(f"max_sequence_length must be positive, got {max_sequence_length}")


def _resolve_positions(available: int, requested: int | None, source: str) -> int:
    """The position-table length to build: the checkpoint's, or fewer."""
    if requested is None:
        return available
    if requested > available:
        raise ValueError(
            f"max_sequence_length={requested} exceeds the {available} position embeddings of the "
            f"checkpoint ({source}); BERT has no trained embeddings beyond them. "
            f"Use max_sequence_length <= {available}."
        )
    return int(requested)


def _new_backbone(arch: _Architecture, positions: int) -> keras_hub.models.BertBackbone:
    cls = ErfGeluBertBackbone if arch.exact_gelu else keras_hub.models.BertBackbone
    return cls(
        vocabulary_size=arch.vocab_size,
        num_layers=arch.num_layers,
        num_heads=arch.num_heads,
        hidden_dim=arch.hidden,
        intermediate_dim=arch.intermediate,
        dropout=arch.dropout,
        max_sequence_length=positions,
        num_segments=arch.type_vocab_size,
    )


# ---------------------------------------------------------------------------
# Reading tensors
# ---------------------------------------------------------------------------


class _TF1Reader:
    """Name-based TF1 checkpoint (what Google's BERT code saves)."""

    def __init__(self, prefix: str):
        import tensorflow as tf

        self.description = prefix + ".index"
        try:
            self._reader = tf.train.load_checkpoint(prefix)
        except tf.errors.OpError as e:
            raise ValueError(
                f"{self.description} is not a readable TF checkpoint index ({e.message}): the file is truncated "
                "or not a checkpoint; copy or download the checkpoint again"
            ) from None
        self.shapes = {name: tuple(shape) for name, shape in self._reader.get_variable_to_shape_map().items()}
        self._dtypes = self._reader.get_variable_to_dtype_map()

    def dtype_problem(self, name: str) -> str | None:
        """Why the tensor cannot become a float32 weight, or None."""
        dtype = self._dtypes[name]
        return None if dtype.is_floating else f"dtype {dtype.name}, expected floating point"

    def get(self, name: str) -> np.ndarray:
        try:
            return np.asarray(self._reader.get_tensor(name))
        except Exception as e:  # A short .data shard fails here, as IndexError or an OpError.
            raise ValueError(
                f"{self.description}: reading {name} failed ({type(e).__name__}: {e}); the .data-* file beside "
                "the index is truncated or corrupt; copy or download the checkpoint again"
            ) from None


class _SafetensorsReader:
    """Hugging Face safetensors, single file or sharded, read as NumPy."""

    def __init__(self, folder: str):
        from safetensors import safe_open

        single = os.path.join(folder, "model.safetensors")
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.isfile(single):
            files = {None: single}
            self.description = single
        elif os.path.isfile(index):
            weight_map = _read_safetensors_index(index)
            files = {name: os.path.join(folder, shard) for name, shard in weight_map.items()}
            self.description = index
        else:
            others = [n for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
                      if os.path.isfile(os.path.join(folder, n))]
            hint = (f" It has {', '.join(others)}, which needs torch or TF-HF code to read; "
                    "re-save it as safetensors (model.save_pretrained(folder, safe_serialization=True))."
                    if others else "")
            raise FileNotFoundError(
                f"Hugging Face folder {folder} (it has config.json) lacks {single} "
                f"(or {index} with its shards).{hint} {ACCEPTED_FORMATS}"
            )
        self.shapes, self._dtypes, self._file_of = {}, {}, {}
        for path in sorted(set(files.values())):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{index} lists the shard {path}, which is missing.")
            try:
                handle = safe_open(path, framework="np")
            except Exception as e:  # safetensors' own error type names neither the file nor the cause's fix.
                raise ValueError(
                    f"{path} is not a readable safetensors file ({e}): it is truncated or not safetensors; "
                    "copy or download it again"
                ) from None
            with handle as f:
                for name in f.keys():
                    if None not in files and files.get(name) != path:
                        continue  # a shard holding a tensor the index assigns elsewhere
                    piece = f.get_slice(name)
                    self.shapes[name] = tuple(piece.get_shape())
                    self._dtypes[name] = piece.get_dtype()
                    self._file_of[name] = path
        missing_from_shards = set(files) - {None} - set(self.shapes)
        if missing_from_shards:
            raise FileNotFoundError(
                f"{index} lists tensors that no shard holds: {', '.join(sorted(missing_from_shards)[:_MAX_LISTED])}"
            )

    def dtype_problem(self, name: str) -> str | None:
        """Why the tensor cannot become a float32 weight, or None."""
        dtype = self._dtypes[name]  # safetensors codes: F32, F16, BF16, I64, ...
        if dtype in ("F16", "F32", "F64"):
            return None
        if dtype == "BF16":
            # NumPy has no bfloat16, so safetensors' NumPy reader refuses it.
            return "dtype BF16, which safetensors cannot read into NumPy; re-save as float32 or float16"
        return f"dtype {dtype}, expected floating point"

    def get(self, name: str) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(self._file_of[name], framework="np") as f:
            return f.get_tensor(name)


# ---------------------------------------------------------------------------
# The mapping table
# ---------------------------------------------------------------------------


_POOLER = "pooled_dense/"  # The one table group a checkpoint may lack (see the module docstring).


def _google_layout(arch: _Architecture, positions: int):
    """Yields (target, google_name, kind, google_shape) for every backbone variable.

    kind is one of "table", "positions", "vector", "kernel", "qkv_kernel",
    "qkv_bias", "out_kernel" and decides the transform.
    """
    h, i = arch.hidden, arch.intermediate
    yield "token_embedding/embeddings", "bert/embeddings/word_embeddings", "table", (arch.vocab_size, h)
    yield "position_embedding/embeddings", "bert/embeddings/position_embeddings", "positions", (arch.positions, h)
    yield "segment_embedding/embeddings", "bert/embeddings/token_type_embeddings", "table", (arch.type_vocab_size, h)
    yield "embeddings_layer_norm/gamma", "bert/embeddings/LayerNorm/gamma", "vector", (h,)
    yield "embeddings_layer_norm/beta", "bert/embeddings/LayerNorm/beta", "vector", (h,)
    for n in range(arch.num_layers):
        src, dst = f"bert/encoder/layer_{n}", f"transformer_layer_{n}"
        for part in ("query", "key", "value"):
            yield f"{dst}/self_attention_layer/{part}/kernel", f"{src}/attention/self/{part}/kernel", "qkv_kernel", (h, h)
            yield f"{dst}/self_attention_layer/{part}/bias", f"{src}/attention/self/{part}/bias", "qkv_bias", (h,)
        yield f"{dst}/self_attention_layer/attention_output/kernel", f"{src}/attention/output/dense/kernel", "out_kernel", (h, h)
        yield f"{dst}/self_attention_layer/attention_output/bias", f"{src}/attention/output/dense/bias", "vector", (h,)
        yield f"{dst}/self_attention_layer_norm/gamma", f"{src}/attention/output/LayerNorm/gamma", "vector", (h,)
        yield f"{dst}/self_attention_layer_norm/beta", f"{src}/attention/output/LayerNorm/beta", "vector", (h,)
        yield f"{dst}/feedforward_intermediate_dense/kernel", f"{src}/intermediate/dense/kernel", "kernel", (h, i)
        yield f"{dst}/feedforward_intermediate_dense/bias", f"{src}/intermediate/dense/bias", "vector", (i,)
        yield f"{dst}/feedforward_output_dense/kernel", f"{src}/output/dense/kernel", "kernel", (i, h)
        yield f"{dst}/feedforward_output_dense/bias", f"{src}/output/dense/bias", "vector", (h,)
        yield f"{dst}/feedforward_layer_norm/gamma", f"{src}/output/LayerNorm/gamma", "vector", (h,)
        yield f"{dst}/feedforward_layer_norm/beta", f"{src}/output/LayerNorm/beta", "vector", (h,)
    yield "pooled_dense/kernel", "bert/pooler/dense/kernel", "kernel", (h, h)
    yield "pooled_dense/bias", "bert/pooler/dense/bias", "vector", (h,)


def _huggingface_names(google_name: str, kind: str, prefix: str) -> tuple[str, ...]:
    """The accepted Hugging Face names for a Google name (see the module docstring)."""
    parts = google_name.split("/")[1:]  # drop "bert"
    parts = [f"layer.{p[len('layer_'):]}" if p.startswith("layer_") else p for p in parts]
    stem = prefix + ".".join(parts)
    if kind in ("table", "positions"):
        return (stem + ".weight",)
    head, last = stem.rsplit(".", 1)
    if last == "gamma":
        return (head + ".weight", head + ".gamma")
    if last == "beta":
        return (head + ".bias", head + ".beta")
    if last == "kernel":
        return (head + ".weight",)
    return (stem,)


def _huggingface_prefix(names) -> str:
    """"bert." when the backbone lives under it (BertModel saved inside a task model), else ""."""
    return "bert." if any(name.startswith("bert.") for name in names) else ""


def _mapping_table(arch: _Architecture, positions: int, huggingface: bool, names) -> list[_Entry]:
    heads, head_dim, h = arch.num_heads, arch.head_dim, arch.hidden
    prefix = _huggingface_prefix(names) if huggingface else ""

    # Google kernels are [in, out], as Keras wants; torch Linear weights are
    # [out, in] and are transposed first. Everything after that is shared.
    def as_kernel(x):
        return x.T if huggingface else x

    transforms = {
        "table": lambda x: x,
        "vector": lambda x: x,
        "positions": lambda x: x[:positions],
        "kernel": as_kernel,
        "qkv_kernel": lambda x: as_kernel(x).reshape(h, heads, head_dim),
        "qkv_bias": lambda x: x.reshape(heads, head_dim),
        "out_kernel": lambda x: as_kernel(x).reshape(heads, head_dim, h),
    }
    table = []
    for target, google_name, kind, shape in _google_layout(arch, positions):
        if huggingface:
            sources = _huggingface_names(google_name, kind, prefix)
            if kind in ("kernel", "qkv_kernel", "out_kernel"):
                shape = shape[::-1]
        else:
            sources = (google_name,)
        table.append(_Entry(target, sources, tuple(shape), transforms[kind]))
    return table


def _check_table_covers(backbone: keras_hub.models.BertBackbone, table: list[_Entry]) -> None:
    """Guards against a keras-hub release that lays out BertBackbone differently."""
    have = {v.path: tuple(v.shape) for v in backbone.weights}
    want = [e.target for e in table]
    unmapped = sorted(set(have) - set(want))
    unknown = sorted(set(want) - set(have))
    if unmapped or unknown or len(want) != len(set(want)) or len(have) != len(backbone.weights):
        raise RuntimeError(
            "This keras-hub version lays out BertBackbone's variables differently from what "
            f"tfner.checkpoint maps. Unmapped backbone variables: {unmapped}; mapped but absent: {unknown}."
        )


# ---------------------------------------------------------------------------
# Matching and known skips
# ---------------------------------------------------------------------------

_GOOGLE_COUNTERS = {"global_step", "beta1_power", "beta2_power", "good_steps", "bad_steps",
                    "loss_scale", "current_loss_scale"}
_GOOGLE_SLOT_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum", "/lamb_m", "/lamb_v")


def _skip_reason(name: str, huggingface: bool, prefix: str) -> str | None:
    """Why a stored tensor that is not a backbone weight may be ignored, or None."""
    if huggingface:
        if name.startswith("cls."):
            return "pretraining head"
        if name in ("classifier.weight", "classifier.bias"):
            return "task head (BertForTokenClassification / BertForSequenceClassification)"
        if name in (prefix + "embeddings.position_ids", prefix + "embeddings.token_type_ids"):
            return "buffer"
        return None
    if name.startswith("cls/"):
        return "pretraining head"
    if name.endswith(_GOOGLE_SLOT_SUFFIXES):
        return "optimizer slot"
    if name in _GOOGLE_COUNTERS:
        return "training counter"
    return None


def _match(table, reader, arch: _Architecture, config_file: str, huggingface: bool):
    """Pairs each table entry with its stored tensor, or raises listing every problem."""
    available = reader.shapes
    plan, used = [], set()
    missing, misshaped, ambiguous = [], [], []
    pooler = [entry for entry in table if entry.target.startswith(_POOLER)]
    pooler_absent = not any(name in available for entry in pooler for name in entry.sources)
    for entry in table:
        present = [name for name in entry.sources if name in available]
        if not present:
            if not (pooler_absent and entry.target.startswith(_POOLER)):
                missing.append(f"{' or '.join(entry.sources)} (for {entry.target}, shape {entry.source_shape})")
            continue
        used.update(present)
        if len(present) > 1:
            ambiguous.append(f"{' and '.join(present)} (both would fill {entry.target})")
            continue
        name = present[0]
        shape = available[name]
        if shape != entry.source_shape:
            misshaped.append(f"{name} has shape {shape}, expected {entry.source_shape} (for {entry.target})")
        elif reader.dtype_problem(name):
            misshaped.append(f"{name} has {reader.dtype_problem(name)} (for {entry.target})")
        else:
            plan.append((entry, name))

    prefix = _huggingface_prefix(available) if huggingface else ""
    skipped, unexpected = {}, []
    for name in sorted(set(available) - used):
        reason = _skip_reason(name, huggingface, prefix)
        if reason is None:
            unexpected.append(f"{name} (shape {available[name]})")
        else:
            skipped.setdefault(reason, []).append(name)

    if missing or misshaped or ambiguous or unexpected:
        lines = [f"Checkpoint {reader.description} does not match the BERT in {config_file} "
                 f"({arch.describe()}); nothing was loaded."]
        for title, items in (("missing", missing), ("unexpected (unused, not a known non-backbone tensor)", unexpected),
                             ("wrong shape or dtype", misshaped), ("given twice", ambiguous)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items[:_MAX_LISTED])
                if len(items) > _MAX_LISTED:
                    lines.append(f"    ... and {len(items) - _MAX_LISTED} more")
        if "_CHECKPOINTABLE_OBJECT_GRAPH" in available:
            lines.append("  This is a TF2 object-based checkpoint; only TF1 name-based checkpoints "
                         "(Google's BERT release format) are read.")
        raise CheckpointMismatchError("\n".join(lines))

    if pooler_absent:
        logger.warning("%s has no pooler (%s); it keeps its initial values, which tagging never reads",
                       reader.description, ", ".join(name for entry in pooler for name in entry.sources))
    if skipped:
        logger.info("Skipped %d known non-backbone tensors in %s: %s", sum(map(len, skipped.values())),
                    reader.description,
                    "; ".join(f"{reason}: {_listing(names)}" for reason, names in sorted(skipped.items())))
    return plan


def _listing(names: list[str]) -> str:
    """Comma-separated names, shortened (a pretraining checkpoint has two Adam slots per weight)."""
    shown = ", ".join(names[:_MAX_LISTED])
    return shown if len(names) <= _MAX_LISTED else f"{shown}, ... and {len(names) - _MAX_LISTED} more"


# ---------------------------------------------------------------------------
# keras-hub presets
# ---------------------------------------------------------------------------


def _load_keras_preset(preset: str, max_sequence_length: int | None,
                       dropout: float | None = None) -> keras_hub.models.BertBackbone:
    """Loads a preset with keras-hub's own loader, optionally trimming positions.

    keras-hub wrote the file, so its loader owns the layout; building with a
    smaller max_sequence_length up front would make the saved position table
    not fit, so the full backbone is loaded first and copied into a shorter one.
    """
    full = keras_hub.models.BertBackbone.from_preset(preset, **({} if dropout is None else {"dropout": dropout}))
    if os.path.isdir(preset):
        _check_preset_weight_count(preset, full)
    positions = _resolve_positions(full.max_sequence_length, max_sequence_length, preset)
    if positions == full.max_sequence_length:
        return full
    config = full.get_config()
    config["max_sequence_length"] = positions
    short = type(full).from_config(config)
    source = {v.path: v for v in full.weights}
    for variable in short.weights:
        value = keras.ops.convert_to_numpy(source[variable.path])
        if variable.path == "position_embedding/embeddings":
            value = value[:positions]
        variable.assign(value)
    return short


def _check_preset_weight_count(folder: str, backbone: keras_hub.models.BertBackbone) -> None:
    """Fails if model.weights.h5 holds arrays the backbone did not take.

    Keras' loader raises on missing or mis-shaped weights but silently ignores
    leftovers, e.g. weights for 12 layers under a config that says 6.
    """
    weights_file = os.path.join(folder, "model.weights.h5")
    if not os.path.isfile(weights_file):
        return  # sharded presets: Keras' own checks only
    import h5py

    arrays = []
    with h5py.File(weights_file, "r") as f:
        f.visititems(lambda name, item: arrays.append(name) if isinstance(item, h5py.Dataset) else None)
    if len(arrays) != len(backbone.weights):
        raise CheckpointMismatchError(
            f"{weights_file} holds {len(arrays)} arrays but the backbone described by "
            f"{os.path.join(folder, 'config.json')} has {len(backbone.weights)} variables; "
            "the config and the weights do not belong together."
        )
