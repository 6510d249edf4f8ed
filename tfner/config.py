"""Experiment configuration: nested dataclasses, loaded from YAML, overridden with `--set a.b=c`.

This is tfner's one config system. A YAML file names only the fields it changes; every other field keeps
the default written here. Unknown keys and values of the wrong type are errors that name the key and the
file, so a typo never trains a model with a silently ignored setting.

    config = load_config("configs/resume_ner.yaml", overrides=["train.epochs=3", "model.head=softmax"])
"""

import dataclasses
import difflib
import math
import os
import typing
from typing import Any

import yaml

from tfner.atomic_write import write_atomically


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the source."""


class _Int(int):
    """A YAML integer that remembers how it was written (010, 2024_12_07, 0x1F) for fields that are strings."""


class _Float(float):
    """A YAML float that remembers how it was written, as _Int."""


class _DuplicateKey(yaml.YAMLError):
    """A mapping names one key twice; `name` is its dotted path, `first` and `second` the 1-based lines."""

    def __init__(self, name: str, first: int, second: int):
        super().__init__(f"{name!r} is written twice, at lines {first} and {second}")
        self.name, self.first, self.second = name, first, second


def _check_duplicate_keys(node: yaml.Node, prefix: str, seen_nodes: set) -> None:
    """Refuses a key written twice in one mapping, at any depth: YAML keeps the last and silently drops the
    first, so a second `train:` section appended to a file threw away every setting of the first."""
    if id(node) in seen_nodes:  # an alias of a node already walked (and a node that holds itself)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                name = f"{prefix}{key.value}"
                if key.value in lines:
                    raise _DuplicateKey(name, lines[key.value], key.start_mark.line + 1)
                lines[key.value] = key.start_mark.line + 1
                _check_duplicate_keys(value, f"{name}.", seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, prefix, seen_nodes)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but numbers keep their text: `run_dir: 2024_12_07` or `model_name: 010` (YAML 1.1
    reads them as 20241207 and 8) stay the strings written when the field is a string; and a key written twice
    in one mapping is an error (_DuplicateKey), not the last one winning."""

    def construct_document(self, node):
        _check_duplicate_keys(node, "", set())
        return super().construct_document(node)


def _remember_text(number_type, construct):
    def constructor(loader, node):
        value = number_type(construct(loader, node))
        value.text = node.value
        return value

    return constructor


_Loader.add_constructor("tag:yaml.org,2002:int", _remember_text(_Int, yaml.SafeLoader.construct_yaml_int))
_Loader.add_constructor("tag:yaml.org,2002:float", _remember_text(_Float, yaml.SafeLoader.construct_yaml_float))
# No field is a date: `run_dir: 2024-12-07` is the folder name written, not a datetime.date to refuse.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: node.value)


@dataclasses.dataclass
class DataConfig:
    """What to train and score on.

    train/dev/test take a file, a glob, or a list of either. Formats: `conll` (one `char TAG` per line),
    `cluener` (CLUENER2020 JSON lines, inclusive ends), `jsonl` (tfner's own spans, exclusive ends),
    `tfrecord` (shards written by `tfner.data.write_tfrecords`); `auto` picks by file extension.
    """

    train: list[str] = dataclasses.field(default_factory=list)
    dev: list[str] = dataclasses.field(default_factory=list)
    test: list[str] = dataclasses.field(default_factory=list)
    format: str = "auto"  # auto | conll | cluener | jsonl | tfrecord
    scheme: str = "auto"  # tag scheme of conll files: auto | BIO | IOB1 | BIOES | BMES
    vocab: str = ""  # vocab.txt; "" = the checkpoint's vocab, or one built from the training data (scratch)
    max_seq_length: int = 128  # tokens per window, [CLS] and [SEP] included: 126 characters
    lowercase: bool = True  # fold A-Z to a-z (BERT-Base Chinese is an uncased vocabulary)
    # A CoNLL token of two U+FFFD is one astral character (an emoji) lost in a UTF-16 conversion, as Weibo NER
    # (2nd version) writes them: error = stop at its line; replace = read it as one U+FFFD, counted in a warning.
    lost_characters: str = "error"


@dataclasses.dataclass
class ModelConfig:
    """The tagger: BERT backbone -> dropout -> dense -> CRF (or softmax)."""

    init: str = "scratch"  # scratch | a checkpoint folder or keras-hub preset (see tfner.checkpoint)
    num_layers: int = 2  # the shape fields apply to `scratch` only; a checkpoint brings its own
    hidden_dim: int = 128
    num_heads: int = 2
    intermediate_dim: int = 512
    dropout: float = 0.1
    head: str = "crf"  # crf | softmax
    constrain_decoding: bool = True  # CRF decode never emits transitions the tag scheme forbids (O -> I-X)
    fast_encoder: bool = True  # run the backbone's layers through tfner.encoder's cheaper ops (same weights and
    # results); false = keras-hub's own call, e.g. to compare, or for a keras-hub release that renames its layers


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and distribution."""

    epochs: int = 3
    batch_size: int = 32  # global: split evenly over replicas
    learning_rate: float = 5e-5  # backbone peak learning rate
    head_learning_rate: float = 1e-3  # dense + CRF peak learning rate (they start from random values)
    weight_decay: float = 0.01  # AdamW; not applied to biases, LayerNorm or embeddings' norms
    warmup_ratio: float = 0.1  # linear warmup over this share of all steps, then linear decay to 0
    clip_norm: float = 1.0  # global gradient norm clip; 0 disables
    seed: int = 42
    distribute: str = "auto"  # auto | one_device | mirrored | multi_worker | tpu
    tpu: str = ""  # TPU address for `tpu`; "" = TPU_NAME env var, else the local TPU
    mixed_precision: str = "none"  # none | mixed_float16 | mixed_bfloat16
    checkpoint_every_steps: int = 200
    keep_checkpoints: int = 3
    max_steps: int = 0  # stop after this many steps in all (0 = run all epochs); for smoke tests
    static_shapes: bool = False  # pad batches to their bucket, last ones filled with empty rows (TPU); auto for tpu


@dataclasses.dataclass
class ExportConfig:
    """Where the SavedModel goes; see export/README.md for the signature."""

    dir: str = ""  # versions go to <dir>/<N>/; "" = export/<model_name>
    model_name: str = "ner"
    window_overlap: int = 32  # characters shared by consecutive windows of a long text
    # Windows per model call inside the signature, shortest first, each call padded to its own longest window:
    # mixed-length batches waste less on padding. 0 = every window in one call (wide products, e.g. GPUs).
    group_windows: int = 8
    enabled: bool = True  # export the best checkpoint at the end of training
    # float32 | bfloat16: the encoder's matrix products in bfloat16 (weights stay float32, the CRF float32).
    # Faster batched serving on CPUs with AMX or AVX512_BF16; slower on CPUs without them (README, "Precision").
    precision: str = "float32"


@dataclasses.dataclass
class PretrainConfig:
    """Masked-LM pretraining of the backbone (python -m tfner.pretrain); data.*, model.* and train.* apply too.

    Text files hold one document per line (`.txt`, any other name) or JSON lines with a string field
    (`.jsonl`, `.json`); paths and globs go through tf.io.gfile and are streamed, never held in memory.
    """

    text: list[str] = dataclasses.field(default_factory=list)  # unlabelled text files or globs
    text_field: str = "text"  # the field that holds the text in JSON lines files
    held_out: int = 1000  # the corpus's first N sequences: scored (masked accuracy, perplexity), never trained on
    mask_rate: float = 0.15  # share of each sequence's characters the model must predict
    mask_token_rate: float = 0.8  # of those: replaced by [MASK] (80 %), by a random character (10 %), kept (10 %)
    random_token_rate: float = 0.1
    shuffle_buffer: int = 100_000  # sequences; bounds memory for corpora larger than it
    output: str = ""  # the backbone folder (keras-hub preset) to write; "" = <run_dir>/backbone


@dataclasses.dataclass
class DistillConfig:
    """Distillation into a smaller student (python -m tfner.distill); the student's shape is model.*."""

    teacher: str = ""  # run_dir of the trained teacher (config.yaml, vocab.txt, labels.txt, best/)
    unlabelled: list[str] = dataclasses.field(default_factory=list)  # extra text, as pretrain.text; soft loss only
    text_field: str = "text"  # the text field of unlabelled JSON lines files
    temperature: float = 2.0  # teacher and student distributions are both taken at this temperature
    soft_weight: float = 0.5  # loss = soft_weight * T^2 * KL(teacher || student) + (1 - soft_weight) * gold loss


@dataclasses.dataclass
class Config:
    """One experiment: data, model, training and export, all living under run_dir."""

    run_dir: str = "runs/demo"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)

    @property
    def export_dir(self) -> str:
        return self.export.dir or os.path.join("export", self.export.model_name)


# Fields that take one of a few words; a wrong word fails at load time, not an hour into training.
_CHOICES = {
    "data.format": ("auto", "conll", "cluener", "jsonl", "tfrecord"),
    "data.scheme": ("auto", "BIO", "IOB1", "BIOES", "BMES"),
    "data.lost_characters": ("error", "replace"),
    "model.head": ("crf", "softmax"),
    "train.distribute": ("auto", "one_device", "mirrored", "multi_worker", "tpu"),
    "train.mixed_precision": ("none", "mixed_float16", "mixed_bfloat16"),
    "export.precision": ("float32", "bfloat16"),
}

# Numbers with a range: a value outside it fails at load time, naming the key, instead of mid-run as a
# division by zero (checkpoint_every_steps: 0), an empty loop (batch_size: 0) or a diverging loss. An empty
# run_dir (`run_dir: ~`, `--set run_dir=`) failed at the first write with "No such file or directory: ''".
_RANGES = {
    "run_dir": (lambda v: bool(v.strip()), "a folder for the run's files, e.g. runs/resume_ner"),
    "model.init": (lambda v: bool(v.strip()), "scratch, or a checkpoint folder or preset (README, model.init)"),
    "data.max_seq_length": (lambda v: v >= 3, ">= 3 ([CLS], at least one character, [SEP])"),
    "model.num_layers": (lambda v: v >= 1, ">= 1"),
    "model.hidden_dim": (lambda v: v >= 1, ">= 1"),
    "model.num_heads": (lambda v: v >= 1, ">= 1"),
    "model.intermediate_dim": (lambda v: v >= 1, ">= 1"),
    "model.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "export.group_windows": (lambda v: v >= 0, ">= 0 (0 = one call)"),
    "train.epochs": (lambda v: v >= 1, ">= 1"),
    "train.batch_size": (lambda v: v >= 1, ">= 1"),
    "train.learning_rate": (lambda v: v > 0, "> 0"),
    "train.head_learning_rate": (lambda v: v > 0, "> 0"),
    "train.weight_decay": (lambda v: v >= 0, ">= 0"),
    "train.warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "train.clip_norm": (lambda v: v >= 0, ">= 0 (0 turns clipping off)"),
    "train.checkpoint_every_steps": (lambda v: v >= 1, ">= 1"),
    "train.keep_checkpoints": (lambda v: v >= 1, ">= 1"),
    "train.max_steps": (lambda v: v >= 0, ">= 0 (0: all epochs)"),
    "train.seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32) (TensorFlow's and NumPy's seed range)"),
    "export.window_overlap": (lambda v: v >= 0, ">= 0"),
    "pretrain.shuffle_buffer": (lambda v: v >= 1, ">= 1 (sequences shuffled at once; 1: read in file order)"),
}


def load_config(path: str | None = None, overrides: list[str] = ()) -> Config:
    """Builds a Config from defaults, then a YAML file, then `a.b=c` overrides, in that order."""
    config = Config()
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.load(f, Loader=_Loader)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except _DuplicateKey as e:
            raise ConfigError(f"{path}:{e.second}: {e}; YAML would keep only the second and silently drop the "
                              "first's settings: write the key once (merge the two)") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if raw is not None:
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
            _merge(config, raw, source=path, prefix="", from_command_line=False)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {override!r}: expected key=value, e.g. --set train.epochs=3")
        try:
            value = yaml.load(text, Loader=_Loader) if text.strip() else ""
        except _DuplicateKey as e:
            raise ConfigError(f"--set {override}: {key.strip() + '.' + e.name!r} is written twice; write it once") \
                from None
        except yaml.YAMLError:
            # Text YAML cannot parse (a glob starting with *, an unclosed [, a leading @) is taken as written:
            # a string field gets it as is (data.train=*.bmes just works); any other field refuses it by key
            # and type in _coerce ("'train.epochs' must be an integer, got '[3'").
            value = text.strip()
        _merge(config, _nest(key.strip(), value), f"--set {override}", "", from_command_line=True)
    sources = ([path] if path else []) + [f"--set {o}" for o in overrides]
    _check_consistency(config, ", ".join(sources) or "the default config")
    return config


def _check_consistency(config: Config, source: str) -> None:
    """Settings that are each valid but contradict each other; caught here, not hours into a run."""
    window = config.data.max_seq_length - 2
    if config.export.window_overlap >= window:
        raise ConfigError(
            f"{source}: export.window_overlap {config.export.window_overlap} must be below the window of "
            f"data.max_seq_length - 2 = {window} characters; lower it (e.g. to {window // 4})"
        )
    if config.train.distribute == "tpu" and config.train.mixed_precision == "mixed_float16":
        raise ConfigError(
            f"{source}: train.distribute is tpu but train.mixed_precision is mixed_float16, which TPUs do not "
            "compute in; set train.mixed_precision: mixed_bfloat16"
        )
    if config.model.init == "scratch" and config.model.hidden_dim % config.model.num_heads:
        raise ConfigError(
            f"{source}: model.hidden_dim {config.model.hidden_dim} must divide evenly into model.num_heads "
            f"{config.model.num_heads} heads; change either"
        )


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Config, path: str) -> None:
    write_atomically(path, yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))


def _nest(dotted: str, value: Any) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _merge(node: Any, raw: dict, source: str, prefix: str, from_command_line: bool) -> None:
    fields = {f.name: f for f in dataclasses.fields(node)}
    hints = typing.get_type_hints(type(node))
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {prefix + close[0]!r}? " if close else ""
            raise ConfigError(f"{source}: unknown key {name!r}; {hint}known keys here: {known}")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {name!r} is a section; give it a mapping, not {value!r}")
            _merge(current, value, source, f"{name}.", from_command_line)
        else:
            value = _coerce(value, hints[key], name, source, from_command_line)
            if name in _CHOICES and value not in _CHOICES[name]:
                raise ConfigError(f"{source}: {name!r} must be one of {', '.join(_CHOICES[name])}; got {value!r}")
            if name in _RANGES and not _RANGES[name][0](value):
                raise ConfigError(f"{source}: {name!r} must be {_RANGES[name][1]}; got {value!r}")
            setattr(node, key, value)


def _coerce(value: Any, hint: Any, name: str, source: str, from_command_line: bool) -> Any:
    def fail(expected: str):
        if isinstance(value, bool) and hint is not bool:
            expected += " (YAML reads yes, no, on, off, true and false as booleans: quote the word)"
        raise ConfigError(f"{source}: {name!r} must be {expected}, got {value!r}")

    if typing.get_origin(hint) is list:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            if not from_command_line:  # a file's one string is one path or glob, commas and all
                return [value]
            return [v.strip() for v in value.split(",") if v.strip()]  # --set data.train=a.txt,b.txt
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        fail("a string or a list of strings")
    if hint is bool:
        if isinstance(value, bool):
            return value
        fail("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        fail("an integer")
    if hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # PyYAML reads 5e-5 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):  # .inf passed every `> 0` range and trained on NaNs
            fail("a finite number")
        return number
    if hint is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return getattr(value, "text", str(value))  # as written: 010 stays "010", not "8"
        fail("a string")
    raise TypeError(f"config field {name!r} has an unsupported type {hint}")
