"""Bad input of every kind, one table per surface: each row is refused with a message naming the place (file,
line, key, index) and the fix, or, where the input is valid after all (a BOM, CRLF, NUL characters), read or
tagged like any other. README's Hardening table has one line per row.

Surfaces: corpus readers, configs, pretrained checkpoints, exports, gRPC and REST requests, command lines.
Requests that other suites already refuse (wrong dtype, rank, empty batch, unknown output filter:
tests/test_server_grpc.py, tests/test_server_rest.py) are not repeated here.
"""

import base64
import http.client
import io
import json
import logging
import os
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf

from tfner import data
from tfner.checkpoint import CheckpointMismatchError, load_backbone
from tfner.config import ConfigError, load_config
from tfner.predict import SavedModelPredictor, resolve_version
from server_requests import metric, outputs_of, predict_request, rest

# --------------------------------------------------------------------------
# Readers: tfner.data.read_examples
# --------------------------------------------------------------------------

MIXED_SCHEMES = "张 B-PER\n三 I-PER\n\n北 B-LOC\n京 M-LOC\n市 E-LOC\n"

READER_ERRORS = [
    # (kind, file name, content, fragments of the message)
    ("truncated CoNLL file", "a.bio", "张 B-PER\n三", ["a.bio:2: expected one character", "got '三'"]),
    ("truncated JSON file", "a.json", '{"text": "北京"}\n{"text": "上', ["a.json:2: not a JSON object"]),
    ("file cut inside a character", "a.bio", "张 B-PER\n三 E-PER\n北".encode()[:-1],
     ["a.bio:3: the file ends in the middle of a UTF-8 character", "copy it again"]),
    ("GBK file", "gbk.bio", "张 B-PER\n三 E-PER\n".encode("gbk"), ["gbk.bio:1: not UTF-8", "iconv -f GBK -t UTF-8"]),
    ("UTF-16 file", "u16.bio", "张 B-PER\n三 E-PER\n".encode("utf-16"),
     ["u16.bio:1: not UTF-8", "looks like UTF-16", "iconv -f UTF-16 -t UTF-8 u16.bio"]),
    ("mixed tag schemes", "mixed.bio", MIXED_SCHEMES,
     ["mixed.bio:5: the file mixes tag schemes", "first at line 2", "M- tags (BMES"]),
    ("1 MB line", "big.bio", "张 B-PER\n" + "x" * 1_000_000 + " O\n",
     ["big.bio:2: expected one character", "... (1,000,002 characters)"]),
    ("only blank lines", "blank.bio", " \n\t\n\n", ["blank.bio: the file is empty"]),
    ("CLUENER offsets not integers", "c.json", '{"text": "北京", "label": {"LOC": {"北京": [[0, "1"]]}}}\n',
     ["c.json:1: LOC/北京: a position must be [start, end] of two integers, got [0, '1']"]),
    ("CLUENER type not a mapping", "c.json", '{"text": "北京", "label": {"LOC": [[0, 1]]}}\n',
     ["c.json:1: 'label'.LOC must map mention -> [[start, end], ...], got list"]),
    ("JSONL entities not a list", "a.jsonl", '{"text": "北京", "entities": 5}\n', ["a.jsonl:1: 'entities' must be a list"]),
    ("JSONL empty entity type", "a.jsonl", '{"text": "北京", "entities": [{"start": 0, "end": 2, "label": ""}]}\n',
     ["a.jsonl:1: entity type '' must be a non-empty string"]),
    ("JSONL offset true", "a.jsonl", '{"text": "北京", "entities": [{"start": true, "end": 2, "label": "LOC"}]}\n',
     ["a.jsonl:1: entity 'LOC' has start True", "offsets must be integers"]),
    # Half an emoji (a UTF-16 tool cut it): json.loads accepts the escape, TensorFlow then failed on the text
    # with no file or line.
    ("JSONL lone surrogate", "a.jsonl", '{"text": "王五\\ud83d", "entities": []}\n',
     ["a.jsonl:1: 'text' holds U+D83D at character 2, half of a UTF-16 surrogate pair (an emoji cut in two?)",
      "repair the record (a JSON escape of an emoji is a pair, e.g. \\ud83d\\ude00)"]),
    ("CLUENER lone surrogate in a type", "c.json", '{"text": "北京", "label": {"LOC\\uDC00": {"北京": [[0, 1]]}}}\n',
     ["c.json:1: a string of the record holds U+DC00, half of a UTF-16 surrogate pair"]),
]


def write(folder, name, content):
    path = os.path.join(str(folder), name)
    with open(path, "wb") as f:
        f.write(content.encode("utf-8") if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize("name, content, fragments", [c[1:] for c in READER_ERRORS], ids=[c[0] for c in READER_ERRORS])
def test_reader_refuses(tmp_path, name, content, fragments):
    path = write(tmp_path, name, content)
    with pytest.raises(data.DataError) as error:
        data.read_examples(path)
    message = str(error.value)
    assert message.startswith(path)
    for fragment in fragments:
        assert fragment in message
    assert len(message) < 400  # a 1 MB line is named, not printed


def test_reader_refuses_a_folder_where_a_file_is_expected(tmp_path):
    (tmp_path / "corpus").mkdir()
    with pytest.raises(data.DataError, match=r"corpus: a folder, not a file; name the files in it, e.g. .*corpus/\*"):
        data.read_examples(str(tmp_path / "corpus"))


PER, LOC = data.Span(0, 2, "PER"), data.Span(0, 1, "LOC")
READER_ACCEPTS = [
    # (kind, file name, content, the examples it holds)
    ("UTF-8 byte-order mark", "a.bio", b"\xef\xbb\xbf" + "张 B-PER\n三 E-PER\n".encode(), [("张三", (PER,))]),
    ("CRLF line ends", "a.bio", "张 B-PER\r\n三 E-PER\r\n\r\n北 S-LOC\r\n", [("张三", (PER,)), ("北", (LOC,))]),
    ("CR line ends", "a.bio", "张 B-PER\r三 E-PER\r\r北 S-LOC\r", [("张三", (PER,)), ("北", (LOC,))]),
    ("U+2028 inside a JSON string", "a.jsonl", '{"text": "北\u2028京", "entities": []}\n', [("北\u2028京", ())]),
    ("U+0085 as a CoNLL character", "a.bio", "北 S-LOC\n\x85 O\n", [("北\x85", (LOC,))]),
    ("NUL as a CoNLL character", "a.bio", "北 S-LOC\n\x00 O\n", [("北\x00", (LOC,))]),
    ("emoji as a JSON surrogate pair", "a.jsonl", '{"text": "笑\\ud83d\\ude00", "entities": []}\n', [("笑😀", ())]),
    ("1 MB JSONL text", "a.jsonl", json.dumps({"text": "北" * 1_000_000, "entities": []}) + "\n",
     [("北" * 1_000_000, ())]),
]


@pytest.mark.parametrize("name, content, examples", [c[1:] for c in READER_ACCEPTS], ids=[c[0] for c in READER_ACCEPTS])
def test_reader_accepts(tmp_path, name, content, examples):
    got = data.read_examples(write(tmp_path, name, content))
    assert [(e.text, e.spans) for e in got] == examples


def test_unlabelled_reader_refuses_a_lone_surrogate(tmp_path):
    """tfner.pretrain / tfner.distill's text: half an emoji failed inside TensorFlow, with no file or line."""
    from tfner import unlabelled

    path = write(tmp_path, "u.jsonl", '{"text": "好"}\n{"text": "王五\\ud83d"}\n')
    with pytest.raises(data.DataError, match=r"u.jsonl:2: 'text' holds U\+D83D at character 2, half of a UTF-16 "
                                             r"surrogate pair .*repair the record"):
        list(unlabelled.iter_documents([path]))


def test_jsonl_round_trip_keeps_line_separator_characters(tmp_path):
    """write_jsonl writes U+2028 and U+0085 raw (ensure_ascii=False); reading must not split lines at them."""
    examples = [data.Example("北\u2028京\x85上海", (data.Span(4, 6, "LOC"),))]
    path = str(tmp_path / "a.jsonl")
    data.write_jsonl(examples, path)
    assert data.read_examples(path) == examples


def test_entities_longer_than_the_training_window_are_counted_in_one_warning(caplog):
    """split_long cannot keep an entity longer than the window in any piece: its characters train as O. That
    stays so (the pieces do not change), but it is said once, with the fix (Resume NER at max_seq_length 32
    lost 8 entities without a word)."""
    examples = [
        data.Example("我在" + "中" * 35 + "工作", (data.Span(2, 37, "ORG"),)),  # 35 characters
        data.Example("张三" * 20, (data.Span(0, 2, "PER"),)),  # split, its entity kept
        data.Example("在" + "京" * 40, (data.Span(1, 41, "LOC"),)),  # 40 characters, the longest
    ]
    with caplog.at_level(logging.WARNING, logger="tfner.data"):
        pieces = data.split_long(examples, 30)
    assert [(len(p.text), p.spans) for p in pieces] == [
        (2, ()), (30, ()), (7, ()), (30, (data.Span(0, 2, "PER"),)), (10, ()), (1, ()), (30, ()), (10, ())]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "2 entities longer than the training window of 30 characters (data.max_seq_length 32) are in no " \
           "training piece" in warnings[0]
    assert "the longest has 40 characters; to train on them, raise data.max_seq_length to at least 42" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfner.data"):
        data.split_long(examples, 40)
    assert not caplog.records  # every entity fits


def _corpus_config(tmp_path, train, dev):
    overrides = [f"run_dir={tmp_path / 'run'}"]
    for split, rows in (("train", train), ("dev", dev)):
        if rows:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            overrides.append(f"data.{split}={write(tmp_path, f'{split}.jsonl', lines)}")
    return load_config(None, overrides)


def test_types_unseen_in_training_are_named_with_the_fix(tmp_path, caplog):
    from tfner.train import load_corpus

    person = {"text": "张三", "entities": [{"start": 0, "end": 2, "label": "PER"}]}
    title = {"text": "张三经理", "entities": [{"start": 2, "end": 4, "label": "TITLE"}]}
    config = _corpus_config(tmp_path, [person], [person, title])
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(config)
    assert corpus.tag_set.labels == ["PER"]
    assert f"data.dev ({tmp_path / 'dev.jsonl'}) has entity types that data.train never shows: ['TITLE'] (1 mention" \
        in caplog.text
    assert "add examples of them to data.train, or drop them from data.dev" in caplog.text


def test_training_data_without_entities_is_refused(tmp_path):
    from tfner.train import load_corpus

    config = _corpus_config(tmp_path, [{"text": "今天天气很好", "entities": []}], [])
    with pytest.raises(data.DataError, match=r"data.train \(.*train.jsonl\): 1 sentence\(s\) and not one entity"):
        load_corpus(config)


def test_a_dev_set_without_entities_is_refused(tmp_path):
    """Its F1 was 0 every epoch, so best/ (and the export) stayed at epoch 1's weights, without a word."""
    from tfner.train import load_corpus

    person = {"text": "张三", "entities": [{"start": 0, "end": 2, "label": "PER"}]}
    config = _corpus_config(tmp_path, [person], [{"text": "今天天气很好"}])
    with pytest.raises(data.DataError, match=r"data.dev \(.*dev.jsonl\): 1 sentence\(s\) and not one entity, so its "
                                             r"F1 would be 0 every epoch: .* or leave data.dev empty"):
        load_corpus(config)


# --------------------------------------------------------------------------
# Configs: tfner.config.load_config
# --------------------------------------------------------------------------

CONFIG_ERRORS = [
    # (kind, YAML text, --set overrides, fragments)
    ("typo in a key", "train:\n  epoch: 3\n", [], ["unknown key 'train.epoch'; did you mean 'train.epochs'?"]),
    ("wrong type", "train:\n  batch_size: 32x\n", [], ["'train.batch_size' must be an integer, got '32x'"]),
    ("list where a number goes", "train:\n  learning_rate: [1, 2]\n", [],
     ["'train.learning_rate' must be a finite number"]),
    ("zero checkpoint interval", "train:\n  checkpoint_every_steps: 0\n", [],
     ["'train.checkpoint_every_steps' must be >= 1; got 0"]),
    ("dropout out of range", "model:\n  dropout: 1.5\n", [], ["'model.dropout' must be in [0, 1); got 1.5"]),
    ("negative learning rate", "", ["train.learning_rate=-1e-3"], ["'train.learning_rate' must be > 0; got -0.001"]),
    ("--set on an unknown key", "", ["train.lerning_rate=1e-3"],
     ["--set train.lerning_rate=1e-3: unknown key 'train.lerning_rate'; did you mean 'train.learning_rate'?"]),
    ("--set on a section", "", ["train=3"], ["'train' is a section"]),
    ("TPU with float16", "train:\n  distribute: tpu\n  mixed_precision: mixed_float16\n", [],
     ["train.distribute is tpu but train.mixed_precision is mixed_float16", "mixed_bfloat16"]),
    ("overlap as wide as the window", "data:\n  max_seq_length: 32\n", ["export.window_overlap=30"],
     ["--set export.window_overlap=30: export.window_overlap 30 must be below the window", "= 30 characters"]),
    ("hidden size not divisible by heads", "model:\n  hidden_dim: 10\n  num_heads: 3\n", [],
     ["model.hidden_dim 10 must divide evenly into model.num_heads 3 heads"]),
    ("unknown choice", "data:\n  format: csv\n", [], ["'data.format' must be one of auto, conll"]),
    # failed after TensorFlow started, as "No BERT checkpoint at ''", naming no key
    ("empty model.init", "", ["model.init="], ["'model.init' must be scratch, or a checkpoint folder or preset"]),
]


@pytest.mark.parametrize("text, overrides, fragments", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_config_refuses(tmp_path, text, overrides, fragments):
    path = write(tmp_path, "x.yaml", text)
    with pytest.raises(ConfigError) as error:
        load_config(path, overrides)
    message = str(error.value)
    assert path in message or "--set" in message
    for fragment in fragments:
        assert fragment in message


# --------------------------------------------------------------------------
# Pretrained checkpoints: tfner.checkpoint.load_backbone
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def google_template(tmp_path_factory):
    from test_checkpoint import write_google

    return write_google(tmp_path_factory.mktemp("google") / "bert")


def _google_copy(template, folder):
    path = os.path.join(str(folder), "bert")
    shutil.copytree(template, path)
    return path


def _truncate(path, keep=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def wrong_shape(template, folder):
    from test_checkpoint import WEIGHTS, write_google

    weights = dict(WEIGHTS)
    weights["bert/encoder/layer_1/intermediate/dense/bias"] = np.zeros(17, np.float32)
    return write_google(os.path.join(str(folder), "bert"), weights)


def garbage_index(template, folder):
    path = _google_copy(template, folder)
    write(path, "bert_model.ckpt.index", b"not an index" * 8)
    return path


def truncated_data_shard(template, folder):
    path = _google_copy(template, folder)
    _truncate(os.path.join(path, "bert_model.ckpt.data-00000-of-00001"))
    return path


def two_checkpoints(template, folder):
    path = _google_copy(template, folder)
    for name in os.listdir(path):  # bert_model.ckpt.* -> model.ckpt-100.* and model.ckpt-200.*
        if name.startswith("bert_model.ckpt"):
            shutil.copy(os.path.join(path, name), os.path.join(path, name.replace("bert_model.ckpt", "model.ckpt-100")))
            os.rename(os.path.join(path, name), os.path.join(path, name.replace("bert_model.ckpt", "model.ckpt-200")))
    return path  # Its `checkpoint` state file still names the template's bert_model.ckpt, another folder.


def truncated_safetensors(template, folder):
    from test_checkpoint import write_huggingface

    path = write_huggingface(os.path.join(str(folder), "hf"))
    _truncate(os.path.join(path, "model.safetensors"))
    return path


def config_value_as_text(template, folder):
    path = _google_copy(template, folder)
    with open(os.path.join(path, "bert_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config["hidden_size"] = "8"
    write(path, "bert_config.json", json.dumps(config))
    return path


def a_file_not_a_folder(template, folder):
    return os.path.join(_google_copy(template, folder), "vocab.txt")


CHECKPOINT_ERRORS = [
    # (kind, make(template, folder) -> path, error type, fragments)
    ("wrong shape", wrong_shape, CheckpointMismatchError,
     ["bert/encoder/layer_1/intermediate/dense/bias has shape (17,), expected (16,)", "nothing was loaded"]),
    ("wrong format (not an index)", garbage_index, ValueError,
     ["bert_model.ckpt.index is not a readable TF checkpoint index", "download the checkpoint again"]),
    ("truncated .data shard", truncated_data_shard, ValueError,
     ["bert_model.ckpt.index: reading", "the .data-* file beside the index is truncated or corrupt"]),
    ("a folder with two checkpoints", two_checkpoints, FileNotFoundError,
     ["holds several checkpoints (model.ckpt-100.index, model.ckpt-200.index)", "pass the prefix"]),
    ("truncated safetensors", truncated_safetensors, ValueError,
     ["model.safetensors is not a readable safetensors file", "download it again"]),
    ("config value of the wrong type", config_value_as_text, ValueError,
     ["bert_config.json: hidden_size is '8'; each must be a positive integer"]),
    ("a file where the folder goes", a_file_not_a_folder, FileNotFoundError,
     ["vocab.txt is a file; pass the checkpoint's folder"]),
]


@pytest.mark.parametrize("make, error_type, fragments", [c[1:] for c in CHECKPOINT_ERRORS],
                         ids=[c[0] for c in CHECKPOINT_ERRORS])
def test_checkpoint_refuses(google_template, tmp_path, make, error_type, fragments):
    path = make(google_template, tmp_path)
    with pytest.raises(error_type) as error:
        load_backbone(path)
    for fragment in fragments:
        assert fragment in str(error.value)


# --------------------------------------------------------------------------
# Exports: tfner.predict (the in-process loader of tfner.predict and tfner.evaluate)
# --------------------------------------------------------------------------


def _save_module(path, signatures):
    module = tf.Module()
    module.scale = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(x):
        return {"y": x * module.scale}

    module.double = double
    tf.saved_model.save(module, path, signatures={key: double for key in signatures})
    return path


def not_a_saved_model(folder):
    os.makedirs(os.path.join(folder, "1"))
    write(os.path.join(folder, "1"), "saved_model.pb", b"half of a SavedModel")
    return folder


def without_the_signature(folder):
    return _save_module(os.path.join(folder, "1"), ["classify"])


def with_another_input(folder):
    return _save_module(os.path.join(folder, "1"), ["serving_default"])


def with_text_in_and_other_outputs(folder):
    """Takes the contract's input, returns something else: tfner.predict failed on it with KeyError 'num_entities'."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def lengths(text):
        return {"embedding": tf.strings.length(text), "tags": tf.strings.upper(text),
                "entity_scores": tf.strings.length(text)}

    path = os.path.join(folder, "1")
    tf.saved_model.save(module, path, signatures={"serving_default": lengths})
    return path


def only_an_interrupted_version(folder):
    os.makedirs(os.path.join(folder, "3", "variables"))
    return folder


EXPORT_ERRORS = [
    # (kind, make(folder) -> path, error type, fragments)
    ("a version folder that is not a SavedModel", not_a_saved_model, ValueError,
     ["/1 is not a loadable SavedModel", "export it again"]),
    ("a SavedModel without the signature", without_the_signature, ValueError,
     ["has no serving_default signature (it has: ['classify'])"]),
    ("a signature that takes no text", with_another_input, ValueError,
     ["serving_default takes {'x': 'float32 (None,)'}, not a string input 'text'"]),
    ("a signature that takes text but returns no entities", with_text_in_and_other_outputs, ValueError,
     ["serving_default lacks the outputs of a tfner export: num_entities (missing), entity_labels (missing)",
      "entity_texts (missing), entity_scores (int32), where it should return num_entities int32"]),
    ("only an interrupted version", only_an_interrupted_version, FileNotFoundError,
     ["its numbered folders [3] hold no saved_model.pb"]),
    ("no export at all", lambda folder: os.path.join(folder, "missing"), FileNotFoundError,
     ["missing: no such folder", "python -m tfner.export"]),
]


@pytest.mark.parametrize("make, error_type, fragments", [c[1:] for c in EXPORT_ERRORS], ids=[c[0] for c in EXPORT_ERRORS])
def test_export_refuses(tmp_path, make, error_type, fragments, capsys):
    path = make(str(tmp_path / "export"))
    with pytest.raises(error_type) as error:
        SavedModelPredictor(path)
    for fragment in fragments:
        assert fragment in str(error.value)

    # tfner.tag refuses it at launch, before its Beam workers each load the model, with the same message.
    from tfner import tag

    (tmp_path / "input.txt").write_text("张三在北京。\n", encoding="utf-8")
    capsys.readouterr()
    assert tag.main(["--model", path, "--input", str(tmp_path / "input.txt"),
                     "--output", str(tmp_path / "tagged" / "part")]) == 2
    printed = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in printed
    assert not (tmp_path / "tagged").exists()


def test_an_export_into_a_version_folder_is_refused(tiny_run, capsys):
    """--out export/ner/1 wrote export/ner/1/1, which TF Serving and tfner.predict never read: exit 0, old model
    served. Refused, naming the parent to export into; the version folder is left as it was."""
    from tfner import export

    version = tiny_run["export"]
    before = sorted(os.listdir(version))
    assert export.main(["--run", tiny_run["run_dir"], "--out", version]) == 2
    err = capsys.readouterr().err
    assert f"tfner.export: {version} is a version folder (it holds saved_model.pb)" in err, err
    assert f"export into its parent, {os.path.dirname(version)}" in err, err
    assert sorted(os.listdir(version)) == before


def test_model_paths_given_by_mistake_say_what_they_are(tiny_run, tmp_path):
    """Each of these read "neither a SavedModel nor a folder of numbered versions", which said nothing of the fix."""
    version = tiny_run["export"]
    base, exports = os.path.dirname(version), os.path.dirname(os.path.dirname(version))
    for path, said in (
        (os.path.join(base, "7"), f"{base}/7: no such version; {base} holds version(s) 1: name one, or {base} for"),
        (tiny_run["run_dir"], f"{tiny_run['run_dir']} is a training run_dir, not an export"),
        (exports, f"{exports} holds model folder(s) {os.path.basename(base)}: name one, e.g. {base}"),
        (os.path.join(version, "variables"), f"is inside the version folder {version}: name {version}, or {base}"),
        (str(tmp_path / "nothing"), "nothing: no such folder; export one with python -m tfner.export"),
    ):
        with pytest.raises(FileNotFoundError) as error:
            resolve_version(path)
        assert said in str(error.value), str(error.value)


def test_a_half_written_newest_version_is_skipped(tiny_run, tmp_path):
    base = tmp_path / "ner"
    shutil.copytree(tiny_run["export"], base / "1")
    (base / "2" / "variables").mkdir(parents=True)  # A copy that has not reached saved_model.pb yet.
    assert resolve_version(str(base)) == str(base / "1")


# --------------------------------------------------------------------------
# Requests: the server's limits with their defaults, in process
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_predictor(export_factory, tmp_path_factory):
    """A Predictor with tfner.serve's default limits (128 texts, 100,000 characters per request)."""
    from tfner.server.config import ModelSpecConfig
    from tfner.server.metrics import Metrics
    from tfner.server.model_store import ModelStore
    from tfner.server.predictor import Limits, Predictor

    base = str(tmp_path_factory.mktemp("defaults") / "ner")
    export_factory(base, 1)
    store = ModelStore([ModelSpecConfig(name="ner", base_path=base)], poll_seconds=0, warmup=False)
    store.start()
    yield Predictor(store, Limits(), Metrics())
    store.stop()


def _predict_in_process(predictor, texts):
    from tfner.server.predictor import array_from_tensor_proto

    request = predict_request(texts)
    return predictor.predict("ner", None, None, "", dict(request.inputs), array_from_tensor_proto)


@pytest.mark.parametrize(
    "texts, code, fragment",
    [
        (["北京"] * 10_000, grpc.StatusCode.INVALID_ARGUMENT,
         "holds 10000 texts; the limit is 128 per request (--max_texts_per_request); split the request"),
        (["北" * 1_000_000], grpc.StatusCode.RESOURCE_EXHAUSTED,
         "this server takes at most 100000 per request (--max_chars_per_request"),
        (["北" * 60_000, "a" * 60_000], grpc.StatusCode.RESOURCE_EXHAUSTED, "holds 120000 characters in all"),
    ],
    ids=["10,000 texts", "a 1,000,000-character text", "120,000 characters over two texts"],
)
def test_default_limits_refuse_before_the_model_runs(default_predictor, texts, code, fragment):
    from tfner.server.errors import ServingError

    calls = default_predictor.metrics.get("tfner_serving_model_calls_total", model="ner", version="1")
    with pytest.raises(ServingError) as error:
        _predict_in_process(default_predictor, texts)
    assert error.value.code == code and fragment in error.value.message
    assert default_predictor.metrics.get("tfner_serving_model_calls_total", model="ner", version="1") == calls


# --------------------------------------------------------------------------
# Requests over the wire: config_server (8 texts, 64 characters each, 500 in all)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(config_server):
    config_server.wait_ready()
    config_server.wait_health()
    return config_server


@pytest.fixture(scope="module")
def stub(server):
    from server_requests import Clients

    clients = Clients(server.target)
    yield clients.predict
    clients.channel.close()


def _claims_a_trillion_rows():
    request = predict_request(["北京"])
    request.inputs["text"].tensor_shape.dim[0].size = 10**12
    return request


GRPC_ERRORS = [
    # (kind, request, metadata, code, fragment)
    ("10,000 texts", lambda: predict_request(["北京"] * 10_000), (), grpc.StatusCode.INVALID_ARGUMENT,
     "holds 10000 texts; the limit is 8 per request"),
    ("a 1,000,000-character text", lambda: predict_request(["北" * 1_000_000]), (), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "at most 500 per request (--max_chars_per_request"),
    ("a shape claiming 10^12 texts", _claims_a_trillion_rows, (), grpc.StatusCode.INVALID_ARGUMENT,
     "holds 1000000000000 texts; the limit is 8"),
    ("a text cut inside a character", lambda: predict_request(["北京", "上海".encode()[:-1]]), (),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'text'[1] is not valid UTF-8 (unexpected end of data at byte 3)"),
    ("an encoded surrogate", lambda: predict_request([b"\xed\xa0\x80"]), (), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text'[0] is not valid UTF-8"),
    ("1 MB of metadata", lambda: predict_request(["北京"]), (("x-padding", "a" * 1_000_000),),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "metadata size exceeds"),
    ("a 70 MB message", lambda: predict_request([b"a" * 70_000_000]), (), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "larger than max"),
]


@pytest.mark.slow
@pytest.mark.parametrize("build, metadata, code, fragment", [c[1:] for c in GRPC_ERRORS], ids=[c[0] for c in GRPC_ERRORS])
def test_grpc_refuses_and_keeps_serving(server, stub, build, metadata, code, fragment):
    calls = metric(server, "tfner_serving_model_calls_total")
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(build(), metadata=metadata, timeout=60)
    assert error.value.code() == code, error.value.details()
    assert fragment in error.value.details()
    assert metric(server, "tfner_serving_model_calls_total") == calls  # refused before the model ran
    response = stub.Predict(predict_request(["北京欢迎你"]), timeout=30)  # and the next request is served
    assert outputs_of(response)["tags"].shape == (1, 5)


NUL_TEXTS = ["张三\x00在北京\x00工作", "\x00", "北京\x00\x00上海"]


def _assert_tagged_like_any_character(outputs, texts, want):
    np.testing.assert_array_equal(outputs["num_entities"], want["num_entities"])
    for row, text in enumerate(texts):
        tags = [t.decode() if isinstance(t, bytes) else t for t in outputs["tags"][row]]
        assert all(tags[: len(text)]) and not any(tags[len(text):])  # one tag per code point, NULs included
        assert tags[: len(text)] == [t.decode() for t in want["tags"][row, : len(text)]]
        for i in range(int(outputs["num_entities"][row])):
            start, end = int(outputs["entity_starts"][row][i]), int(outputs["entity_ends"][row][i])
            entity = outputs["entity_texts"][row][i]
            assert text[start:end] == (entity.decode() if isinstance(entity, bytes) else entity)


@pytest.mark.slow
def test_nul_characters_are_tagged_like_any_character(server, stub, reference):
    """NUL is valid UTF-8: it gets a tag, may sit inside an entity, and offsets keep counting it."""
    want = reference(os.path.join(server.base_path, "2"), NUL_TEXTS)
    got = outputs_of(stub.Predict(predict_request(NUL_TEXTS), timeout=30))
    _assert_tagged_like_any_character(got, NUL_TEXTS, want)
    status, body = rest(server, "/v1/models/ner:predict", {"inputs": {"text": NUL_TEXTS}})
    assert status == 200, body
    _assert_tagged_like_any_character({k: np.array(v, dtype=object) for k, v in body["outputs"].items()},
                                      NUL_TEXTS, want)


def _raw_rest(server, body, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request("POST", "/v1/models/ner:predict", body, headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


REST_ERRORS = [
    # (kind, raw body, HTTP status, fragment)
    ("a lone surrogate", b'{"instances": ["\\ud800\xe5\x8c\x97"]}', 400, "lone surrogate U+D800 at character 0"),
    ("JSON nested 100,000 deep", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "too deeply"),
    ("a 5,000-digit number", b'{"instances": ["a"], "n": 1' + b"0" * 5_000 + b"}", 400, "not UTF-8 JSON"),
    ("a misspelt key", b'{"instances": ["a"], "signature_nme": "x"}', 400, "did you mean 'signature_name'?"),
    ("signature_name not a string", b'{"instances": ["a"], "signature_name": 5}', 400, '"signature_name" must be a string'),
    ("a body that is not UTF-8", b'{"instances": ["\xff"]}', 400, "not UTF-8 JSON"),
    ("rank 2", json.dumps({"instances": [["北京"]]}).encode(), 400, "has shape [1, 1]; the signature expects [-1]"),
    ("empty columnar batch", json.dumps({"inputs": {"text": []}}).encode(), 400, "holds no rows"),
    ("10,000 texts", json.dumps({"instances": ["北"] * 10_000}).encode(), 400, "holds 10000 texts; the limit is 8"),
    ("a 1,000,000-character text", json.dumps({"instances": ["北" * 1_000_000]}).encode(), 429,
     "at most 500 per request (--max_chars_per_request"),
    ("base64 of invalid UTF-8", json.dumps({"instances": [{"b64": base64.b64encode(b"\xff\xfe").decode()}]}).encode(),
     400, "input 'text'[0] is not valid UTF-8"),
    ("null", json.dumps({"instances": [None]}).encode(), 400, "expects strings; got NoneType null"),
]


@pytest.mark.slow
@pytest.mark.parametrize("body, status, fragment", [c[1:] for c in REST_ERRORS], ids=[c[0] for c in REST_ERRORS])
def test_rest_refuses(server, body, status, fragment):
    got_status, got = _raw_rest(server, body, {"Content-Type": "application/json"})
    assert (got_status, fragment in got["error"]) == (status, True), got


@pytest.mark.slow
def test_rest_refuses_a_huge_body_unread(server):
    """Content-Length over 64 MB is refused from the header alone: nothing is sent, nothing is read."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        connection.putrequest("POST", "/v1/models/ner:predict")
        connection.putheader("Content-Length", str(1 << 30))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 400 and response.getheader("Connection") == "close"
        assert "the request body has 1073741824 bytes; the limit is" in json.loads(response.read())["error"]
    finally:
        connection.close()
    assert rest(server, "/v1/models/ner:predict", {"instances": ["北京"]})[0] == 200


# --------------------------------------------------------------------------
# Command lines: each main() returns 2 with a message, never a traceback
# --------------------------------------------------------------------------


CLI_ERRORS = [
    # (kind, command, argv, fragment)
    ("serve: nothing to serve", "serve", [], "say what to serve: --model_base_path"),
    ("serve: port out of range", "serve", ["--model_base_path", "m", "--port", "70000"],
     "--port must be a TCP port, 0..65535 (0: pick a free port), got 70000"),
    ("serve: REST port out of range", "serve", ["--model_base_path", "m", "--rest_api_port", "-1"],
     "--rest_api_port must be a TCP port"),
    ("serve: batching file without batching", "serve", ["--model_base_path", "m", "--batching_parameters_file", "b"],
     "--batching_parameters_file needs --enable_batching"),
    ("serve: zero character limit", "serve", ["--model_base_path", "m", "--max_chars_per_request", "0"],
     "--max_chars_per_request must be >= 1, got 0"),
    ("serve: zero REST timeout", "serve", ["--model_base_path", "m", "--rest_api_timeout_in_ms", "0"],
     "--rest_api_timeout_in_ms must be >= 1"),
    ("serve: negative thread count", "serve", ["--model_base_path", "m", "--tensorflow_intra_op_parallelism", "-1"],
     "argument --tensorflow_intra_op_parallelism: must be >= 0 (0: TensorFlow's choice), got -1"),
    ("serve: a channel argument without a value", "serve",
     ["--model_base_path", "m", "--grpc_channel_arguments", "grpc.max_connection_age_ms=30000,grpc.keepalive"],
     "--grpc_channel_arguments: 'grpc.keepalive' is not key=value"),
    ("serve: missing config file", "serve", ["--model_config_file", "/nonexistent/models.config"],
     "/nonexistent/models.config"),
    ("predict: no such export", "predict", ["--model", "/nonexistent/ner", "北京"],
     "tfner.predict: /nonexistent/ner: no such folder; export one with python -m tfner.export --run RUN_DIR"),
    ("evaluate: no such data file", "evaluate", ["--model", "/nonexistent/ner", "--data", "/nonexistent/test.bio"],
     "tfner.evaluate: /nonexistent/test.bio: no such file"),
    ("export: not a run_dir", "export", ["--run", "/nonexistent/run"],
     "tfner.export: /nonexistent/run is not a run_dir (it has no config.yaml)"),
    ("train: no such config", "train", ["--config", "/nonexistent/x.yaml"],
     "tfner.train: cannot read config file /nonexistent/x.yaml"),
    ("train: data without a config", "train", ["--set", "data.train=mine.bio"],
     "tfner.train: data.train=mine.bio without --config: the built-in demo brings its own data"),
    ("train: a bad --set", "train", ["--config", "configs/tiny.yaml", "--set", "train.epochs=0"],
     "tfner.train: --set train.epochs=0: 'train.epochs' must be >= 1; got 0"),
    ("train: a data file that is not there", "train",
     ["--config", "configs/tiny.yaml", "--set", "data.train=/nonexistent/train.bio"],
     "tfner.train: /nonexistent/train.bio: no such file"),
    ("train: a vocab file that is not there", "train",
     ["--config", "configs/tiny.yaml", "--set", "data.train=/nonexistent/train.bio",
      "--set", "data.vocab=/nonexistent/vocab.txt"],  # read before the data: the vocab error comes first
     "tfner.train: data.vocab: /nonexistent/vocab.txt: no such file; name a BERT vocab.txt"),
    ("train: a vocab file without BERT's special tokens", "train",
     ["--config", "configs/tiny.yaml", "--set", "data.train=/nonexistent/train.bio",
      "--set", "data.vocab=configs/tiny.yaml"],
     "tfner.train: data.vocab: configs/tiny.yaml: vocabulary lacks [PAD], [UNK], [CLS], [SEP]"),
    ("client: zero timeout", "client", ["--server", "127.0.0.1:1", "--timeout", "0", "北京"],
     "argument --timeout: give seconds > 0 and < 1e9"),
]


@pytest.mark.parametrize("command, argv, fragment", [c[1:] for c in CLI_ERRORS], ids=[c[0] for c in CLI_ERRORS])
def test_command_line_refuses(command, argv, fragment, capsys, monkeypatch):
    import importlib

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/ paths
    main = importlib.import_module(f"tfner.{command}").main
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert fragment in err
    assert "Traceback" not in err


def test_evaluate_reads_lost_characters_when_told(tmp_path, capsys):
    """A Weibo-style test file: tfner.evaluate stops at the lost character with its own flag as the way through;
    with the flag the data reads, and the next error is the (missing) model's."""
    from tfner import evaluate

    path = tmp_path / "weibo.bio"
    path.write_text("我 O\n\ufffd\ufffd O\n北 B-LOC\n京 I-LOC\n", encoding="utf-8")
    assert evaluate.main(["--model", "/nonexistent/ner", "--data", str(path)]) == 2
    assert "weibo.bio:2: the token is two U+FFFD" in capsys.readouterr().err
    assert evaluate.main(["--model", "/nonexistent/ner", "--data", str(path), "--lost_characters", "replace"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/ner: no such folder" in err, err


def test_evaluate_refuses_data_without_gold_entities(tmp_path, capsys):
    """CLUENER's test.json has no labels: scoring against it printed zeros and exited 0."""
    from tfner import evaluate

    path = tmp_path / "test.json"
    path.write_text('{"id": 0, "text": "北京欢迎你"}\n', encoding="utf-8")
    assert evaluate.main(["--model", "/nonexistent/ner", "--data", str(path)]) == 2
    assert "test.json: no gold entity in 1 text(s), nothing to score against" in capsys.readouterr().err


@pytest.mark.parametrize("output, fragment", [
    ("nodir/m.json", "--output {tmp}/nodir/m.json: the folder {tmp}/nodir does not exist; create it"),
    ("sub", "--output {tmp}/sub: a folder; name a file in it, e.g. {tmp}/sub/metrics.json"),
], ids=["missing folder", "a folder"])
def test_evaluate_refuses_an_output_it_cannot_write_before_scoring(tmp_path, capsys, output, fragment):
    """It scored first, then died on open() with a FileNotFoundError traceback; refused before the model loads
    (here the model is not even there)."""
    from tfner import evaluate

    (tmp_path / "sub").mkdir()
    path = write(tmp_path, "gold.jsonl", '{"text": "北京", "entities": [{"start": 0, "end": 2, "label": "LOC"}]}\n')
    code = evaluate.main(["--model", "/nonexistent/ner", "--data", path, "--output", f"{tmp_path}/{output}"])
    err = capsys.readouterr().err
    assert code == 2 and fragment.format(tmp=tmp_path) in err and "Traceback" not in err, err


def test_evaluate_writes_its_output_whole_or_not_at_all(tiny_run, tmp_path, capsys):
    """The real command on the tiny export: its JSON in place, no temporary file beside it (a write cut short
    is tests/test_atomic_write.py's)."""
    from tfner import evaluate

    (tmp_path / "out").mkdir()
    output = tmp_path / "out" / "m.json"
    assert evaluate.main(["--model", tiny_run["export"], "--data", tiny_run["test"], "--output", str(output)]) == 0
    assert json.loads(output.read_text(encoding="utf-8"))["f1"] == pytest.approx(tiny_run["summary"]["test"]["f1"])
    assert os.listdir(tmp_path / "out") == ["m.json"]


def test_serve_refuses_thread_counts_once_tensorflow_ran(capsys):
    import tensorflow as tf

    from tfner import serve

    float(tf.constant(1.0) + 1)  # TensorFlow has run in this process: its pools are fixed
    assert serve.main(["--model_base_path", "m", "--tensorflow_inter_op_parallelism", "7"]) == 2
    err = capsys.readouterr().err
    assert "tfner.serve: cannot set TensorFlow's inter-op threads to 7: TensorFlow already ran in this process" in err
    assert "TF_NUM_INTEROP_THREADS=7" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, stdin, fragment",
    [
        (["--batch_size", "0"], b"", "argument --batch_size: must be >= 1, got 0"),
        ([], "北京\n".encode() + b"\xff\xfe\n", "tfner.predict: stdin line 2 is not UTF-8"),
        (["北京", "王伟\udcff"], b"", "tfner.predict: text 2 holds byte 0xFF at character 2, which is not UTF-8"),
    ],
    ids=["predict: zero batch size", "predict: stdin that is not UTF-8", "predict: argv bytes that are not UTF-8"],
)
def test_predict_command_line_refuses(tiny_run, argv, stdin, fragment, capsys, monkeypatch):
    from tfner import predict

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    try:
        code = predict.main(["--model", tiny_run["export"], *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err
