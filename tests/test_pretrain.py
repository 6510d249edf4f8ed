"""python -m tfner.pretrain: masking, the text reader, MLM steps that lower the held-out loss, exact resume, a
backbone that loads back strictly (same class, so the same GELU; same vocabulary), and a model fine-tuned from
it whose export keeps the serving contract (tests/test_export.py's own tests, run on that export)."""

import bz2
import collections
import dataclasses
import gzip
import io
import json
import lzma
import os
import random
import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_export import (  # noqa: F401  (the contract tests and their fixture, run here on the fine-tuned export)
    module,
    test_graph_holds_only_core_tensorflow_ops,
    test_session_path_in_a_fresh_process_equals_in_process_model,
    test_signature_is_the_contract,
)
from tiny import run_python, train_tiny

from tfner import checkpoint, demo, masked_lm, unlabelled
from tfner.config import ConfigError, PretrainConfig, load_config
from tfner.data import DataError
from tfner.pretrain import MaskedLMTrainer, pretrain, prepare_run_dir, save_backbone_preset
from tfner.tokenizer import MASK, CharTokenizer, build_vocabulary, read_vocabulary
from tfner.train import start_process

TINY_SHAPE = dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)


def pretrain_config(folder: str, corpus: str, init: str, overrides=()):
    return load_config(None, [
        f"run_dir={os.path.join(folder, 'run')}",
        f"pretrain.text={corpus}",
        "pretrain.held_out=32",
        f"model.init={init}",
        "model.dropout=0.1",  # dropout on: resuming must restore its random state too
        "data.max_seq_length=32",
        "export.window_overlap=8",  # below the 30-character window
        "train.batch_size=16",
        "train.max_steps=6",
        "train.epochs=1",
        "train.learning_rate=1e-2",
        "train.head_learning_rate=1e-2",
        "train.warmup_ratio=0",
        "train.checkpoint_every_steps=3",
        "train.distribute=one_device",
        *overrides,
    ])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The demo corpus's texts as JSON lines (train, 320) and plain text (dev, one per line)."""
    folder = tmp_path_factory.mktemp("pretrain_corpus")
    paths = demo.write_corpus(str(folder), sizes=(320, 64, 64))
    with open(paths["dev"], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    plain = folder / "dev.txt"
    plain.write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    return {"jsonl": paths["train"], "txt": str(plain), "texts": texts, **paths}


@pytest.fixture(scope="module")
def erf_preset(corpus, tmp_path_factory):
    """A random tiny ErfGeluBertBackbone as a keras-hub preset over the corpus's vocabulary: the start point."""
    vocabulary = build_vocabulary(unlabelled.iter_documents([corpus["jsonl"]]))
    keras.utils.set_random_seed(3)
    backbone = checkpoint.ErfGeluBertBackbone(vocabulary_size=len(vocabulary), max_sequence_length=32, **TINY_SHAPE)
    folder = str(tmp_path_factory.mktemp("erf") / "preset")
    save_backbone_preset(backbone, vocabulary, True, folder)
    return folder


@pytest.fixture(scope="module")
def pretrained(corpus, erf_preset, tmp_path_factory):
    """6 steps of continued pretraining from the erf preset, uninterrupted."""
    config = pretrain_config(str(tmp_path_factory.mktemp("pretrained")), corpus["jsonl"], erf_preset)
    return {"config": config, "summary": pretrain(config)}


def test_masking_is_80_10_10_per_character_and_a_function_of_the_seed():
    vocabulary = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", MASK] + [chr(0x4E00 + i) for i in range(50)]
    ids = tf.constant(np.random.default_rng(0).integers(6, 56, size=4000), tf.int32)
    config = PretrainConfig()
    random_ids = tf.constant(masked_lm.replacement_ids(vocabulary), tf.int32)

    def mask(seed):
        return {k: v.numpy() for k, v in masked_lm.mask_characters(
            ids, tf.constant(seed, tf.int64), config, 1000, vocabulary.index(MASK), random_ids).items()}

    out = mask([1, 2])
    positions, original = out["positions"], ids.numpy()
    assert len(positions) == 600 and len(set(positions)) == 600  # round(4000 * 0.15), without replacement
    assert (np.diff(positions) > 0).all() and (out["targets"] == original[positions]).all()
    untouched = np.setdiff1d(np.arange(4000), positions)
    assert (out["ids"][untouched] == original[untouched]).all()
    replaced = out["ids"][positions]
    share_mask = (replaced == vocabulary.index(MASK)).mean()
    share_kept = (replaced == original[positions]).mean()  # 10 % kept, plus random draws of the same character
    assert 0.75 < share_mask < 0.85 and 0.08 < share_kept < 0.16
    assert set(replaced[replaced != vocabulary.index(MASK)]) <= set(range(6, 56))  # never a special token
    again, other = mask([1, 2]), mask([1, 3])
    assert all((again[k] == out[k]).all() for k in out)
    assert not (other["positions"] == positions).all()


def test_masked_batches_point_at_the_masked_characters(corpus):
    vocabulary = build_vocabulary(corpus["texts"])
    tokenizer = CharTokenizer(vocabulary)
    texts = tf.data.Dataset.from_tensor_slices(corpus["texts"][:40])
    batches = list(masked_lm.masked_lm_batches(texts, tokenizer, PretrainConfig(), 8, 32, (0, 0)))
    assert sum(int(b[0]["token_ids"].shape[0]) for b in batches) == 40
    slots = masked_lm.max_predictions(32, 0.15)
    for features, labels in batches:
        assert features["mask_positions"].shape[1] == slots == 5  # ceil(30 * 0.15)
        weights = labels["mask_weights"].numpy()
        lengths = features["padding_mask"].numpy().sum(axis=1) - 2
        expected = np.minimum(slots, np.maximum(1, np.floor(lengths * np.float32(0.15) + 0.5)))  # halves up
        assert (weights.sum(axis=1) == expected).all()
        positions = features["mask_positions"].numpy()
        inside = (positions >= 1) & (positions <= lengths[:, None])
        assert inside[weights > 0].all()  # real slots sit on characters, never on [CLS], [SEP] or padding


def test_unlabelled_reader_streams_both_formats_and_names_bad_lines(corpus, tmp_path):
    documents = list(unlabelled.iter_documents([corpus["txt"], corpus["jsonl"]]))
    assert len(documents) == 64 + 320 and documents[0] == corpus["texts"][0]  # the blank lines are skipped
    long = tmp_path / "long.txt"
    long.write_text("张" * 70 + "\n", encoding="utf-8")
    assert [len(s) for s in unlabelled.iter_sequences([str(long)], 30)] == [30, 30, 10]
    survey = unlabelled.survey([str(long), corpus["txt"]], 30)
    pieces = sum(-(-len(text) // 30) for text in corpus["texts"])  # ceil: demo texts run past 30 characters
    assert survey.sequences == 3 + pieces and survey.characters == 70 + sum(map(len, corpus["texts"]))
    assert survey.vocabulary[:6] == ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", MASK]
    assert survey.vocabulary[6] == "张"  # the most frequent character comes first
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "好"}\n{"content": "坏"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected an object with a string field 'text'"):
        list(unlabelled.iter_documents([str(bad)]))


def test_a_conll_file_given_as_text_is_refused(tmp_path):
    """Read as text, Resume NER's dev.char.bmes was 13,890 documents like '吴 B-NAME': tags trained on, and in the
    vocabulary. A text with fewer such lines before its first sentence still reads."""
    conll = tmp_path / "dev.char.bmes"
    conll.write_text("".join(f"{c} {t}\n" for c, t in zip("吴重阳中国国籍" * 4, ["B-NAME", "M-NAME", "E-NAME", "O"] * 7)),
                     encoding="utf-8")
    with pytest.raises(DataError, match=r"dev.char.bmes: a CoNLL char-tag file \(its lines read like '.+'\), not text"):
        list(unlabelled.iter_documents([str(conll)]))
    text = tmp_path / "notes.txt"
    text.write_text("".join(f"{c} O\n" for c in "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未") + "这一行是正文。\n", encoding="utf-8")
    assert len(list(unlabelled.iter_documents([str(text)]))) == 19


def test_a_pretraining_run_dir_given_for_a_tagging_run_or_a_checkpoint_says_what_it_is(pretrained):
    from tfner import export as export_lib

    run_dir = pretrained["config"].run_dir
    with pytest.raises(ConfigError, match="is a tfner.pretrain run: it holds a backbone, not a tagger"):
        export_lib.load_run(run_dir)  # tfner.export --run, distill.teacher
    with pytest.raises(FileNotFoundError, match=f"is a tfner.pretrain run_dir; its backbone is {run_dir}/backbone"):
        checkpoint.load_backbone(run_dir)  # model.init


def test_unlabelled_files_may_be_compressed_and_end_lines_with_cr(corpus, tmp_path):
    """A .gz corpus was refused as "not UTF-8 ... iconv"; \r line ends made one document of a whole file."""
    texts = corpus["texts"][:5]
    body = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(body) + b"\0" * 64)  # zero padding, as gzip -d reads
    (tmp_path / "b.txt.bz2").write_bytes(bz2.compress("\r".join(texts).encode("utf-8")))
    (tmp_path / "c.txt.xz").write_bytes(lzma.compress("\r\n".join(texts).encode("utf-8")))
    for name in ("a.jsonl.gz", "b.txt.bz2", "c.txt.xz"):
        assert list(unlabelled.iter_documents([str(tmp_path / name)])) == texts, name
    whole = gzip.compress("".join(t + "\n" for t in corpus["texts"] * 20).encode("utf-8"))
    (tmp_path / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.txt\.gz: the compressed data is damaged or cut short"):
        list(unlabelled.iter_documents([str(tmp_path / "cut.txt.gz")]))
    (tmp_path / "d.jsonl.zst").write_bytes(b"(\xb5/\xfd")  # tfner.tag reads .zst (Beam); this reader does not
    with pytest.raises(DataError, match=r"d\.jsonl\.zst: \.zst compression is not read here, only \.gz, \.bz2, \.xz"):
        list(unlabelled.iter_documents([str(tmp_path / "d.jsonl.zst")]))


@pytest.mark.parametrize("size", [1, 2, 3, 1 << 20])
def test_binary_lines_end_at_lf_crlf_or_cr_across_reads(size):
    data = b"a\r\nb\rc\n\nd\r"
    assert list(unlabelled.binary_lines(io.BytesIO(data), size)) == [b"a", b"b", b"c", b"", b"d"]


def test_binary_lines_are_the_same_whatever_the_read_size():
    """Lines gathered across reads (a \r\n cut between two, a line spanning many) are the regular expression's
    split of the whole stream, a final line end ending the last line: 2,000 random streams, reads of 1-7 bytes."""
    rng = random.Random(7)
    for _ in range(2000):
        data = bytes(rng.choice(b"aa\r\n") for _ in range(rng.randrange(0, 24)))
        pieces = re.split(rb"\r\n|\r|\n", data)
        want = [] if not data else pieces[:-1] if data.endswith((b"\r", b"\n")) else pieces
        for size in (*range(1, 8), 1 << 20):
            assert list(unlabelled.binary_lines(io.BytesIO(data), size)) == want, (data, size)


def test_a_nul_in_the_corpus_is_unknown_not_a_vocabulary_entry_that_fails_the_save(corpus, tmp_path):
    """keras-hub's tokenizer refused "\\x00" as a zero-length key, after every step had been trained."""
    text = tmp_path / "nul.txt"
    text.write_text("\n".join(corpus["texts"]) + "\n王\x00伟\n", encoding="utf-8")
    assert "\x00" not in unlabelled.survey([str(text)], 30).vocabulary
    config = pretrain_config(str(tmp_path), str(text), "scratch", [
        "train.max_steps=1", "model.num_layers=1", "model.hidden_dim=8", "model.num_heads=2",
        "model.intermediate_dim=16"])
    assert checkpoint.load_backbone(pretrain(config)["backbone"]).vocabulary_size > 6


def test_a_run_dir_of_another_shape_is_refused_before_its_config_is_rewritten(corpus, tmp_path):
    shape = ["train.max_steps=1", "model.num_layers=1", "model.hidden_dim=8", "model.intermediate_dim=16"]
    pretrain(pretrain_config(str(tmp_path), corpus["txt"], "scratch", shape))
    before = (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"holds another run: model.hidden_dim 8, not 16"):  # was a restore traceback
        pretrain(pretrain_config(str(tmp_path), corpus["txt"], "scratch", [*shape, "model.hidden_dim=16"]))
    assert (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8") == before
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pretrain.text \(.*blank.txt\) holds no text"):
        pretrain(pretrain_config(str(tmp_path / "b"), str(blank), "scratch"))


def test_a_few_steps_lower_the_held_out_loss(pretrained):
    summary = pretrained["summary"]
    assert summary["steps"] == 6 and summary["held_out"]["masked"] > 0
    assert summary["held_out"]["loss"] < summary["held_out_before"]["loss"] - 0.05, summary
    assert summary["held_out"]["perplexity"] == pytest.approx(np.exp(summary["held_out"]["loss"]))


def test_the_backbone_loads_back_strictly_with_its_gelu_and_vocabulary(pretrained, erf_preset):
    config = pretrained["config"]
    folder = pretrained["summary"]["backbone"]
    loaded = checkpoint.load_backbone(folder)
    assert type(loaded) is checkpoint.ErfGeluBertBackbone  # continued from an erf-GELU checkpoint: still erf
    assert checkpoint.vocabulary_path(folder) == os.path.join(folder, "assets", "tokenizer", "vocabulary.txt")
    with open(checkpoint.vocabulary_path(folder), encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == open(checkpoint.vocabulary_path(erf_preset), encoding="utf-8").read().split("\n")[:-1]
    start = checkpoint.load_backbone(erf_preset)
    moved = [not np.allclose(a.numpy(), b.numpy()) for a, b in zip(loaded.weights, start.weights)]
    assert sum(moved) > len(moved) // 2  # pretraining changed the weights it wrote
    # The written weights are the trained ones: the training checkpoint restored into a fresh model agrees.
    trainer = MaskedLMTrainer(config, start_process(config), _vocab(config), _survey(config))
    trainer.checkpoint.restore(trainer.manager.latest_checkpoint).assert_existing_objects_matched()
    for a, b in zip(trainer.backbone.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_an_epoch_is_one_pass_over_the_sequences_not_held_out(pretrained):
    """Its steps are the pass's batches, partial ones included: the stream was repeated before its length buckets,
    and a bucket too sparse to fill a batch by an epoch's last step was never trained on."""
    config = pretrained["config"]
    corpus = _survey(config)
    (lengths,) = corpus.train_lengths
    assert sum(lengths.values()) == corpus.sequences - config.pretrain.held_out
    trainer = MaskedLMTrainer(config, start_process(config), _vocab(config), corpus)
    seen = sorted(int(n) - 2 for features, _ in trainer.epoch_dataset(0, 0).take(trainer.steps_per_epoch)
                  for n in features["padding_mask"].numpy().sum(axis=1))
    assert seen == sorted(collections.Counter(lengths).elements())
    # Two shards (workers) of the same sequences: each sequence after the held-out ones in one, alternately.
    halves = unlabelled.survey(config.pretrain.text, config.data.max_seq_length - 2,
                               held_out=config.pretrain.held_out, shards=2).train_lengths
    assert collections.Counter(halves[0]) + collections.Counter(halves[1]) == collections.Counter(lengths)
    assert abs(sum(halves[0].values()) - sum(halves[1].values())) <= 1


def _vocab(config):
    return read_vocabulary(os.path.join(config.run_dir, "vocab.txt"))


def _survey(config):
    return unlabelled.survey(config.pretrain.text, config.data.max_seq_length - 2, held_out=config.pretrain.held_out)


def test_resume_after_an_interruption_reaches_the_same_backbone(pretrained, corpus, erf_preset, tmp_path):
    """Stopped after 3 of 6 steps (as a crash after the step-3 checkpoint would), then run again: it resumes."""
    config = pretrain_config(str(tmp_path), corpus["jsonl"], erf_preset)
    strategy = start_process(config)
    vocabulary = _vocab(pretrained["config"])
    first = MaskedLMTrainer(config, strategy, vocabulary, _survey(config))
    prepare_run_dir(config, vocabulary)
    first.total_steps = 3
    first.fit()
    resumed = pretrain(config)
    expected = pretrained["summary"]
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 6
    assert resumed["held_out"]["loss"] == pytest.approx(expected["held_out"]["loss"], rel=1e-5)
    for a, b in zip(checkpoint.load_backbone(resumed["backbone"]).weights,
                    checkpoint.load_backbone(expected["backbone"]).weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_settings_are_refused_by_name(corpus, tmp_path):
    sequences = unlabelled.survey([corpus["jsonl"]], 30).sequences  # data.max_seq_length 32 - 2
    for override, message in (("pretrain.mask_rate=0", "pretrain.mask_rate is 0"),
                              ("pretrain.random_token_rate=0.5", "mask_token_rate \\+ pretrain.random_token_rate"),
                              (f"pretrain.held_out={sequences - 5}", "5 are left, fewer than one batch"),
                              (f"pretrain.held_out={sequences + 80}",
                               f"pretrain.held_out {sequences + 80} is not below the {sequences} sequences")):
        with pytest.raises(ConfigError, match=message):  # a ConfigError: the commands print it without a traceback
            pretrain(pretrain_config(str(tmp_path), corpus["jsonl"], "scratch", [override]))


def test_a_resume_keeps_its_recipe_and_its_starting_point(pretrained, tmp_path):
    """Another batch size resumed into a schedule its step had passed (no step ran, exit 0); another held-out
    slice trained on what had been held out; model.init of the run's own backbone resumed at the last step and
    trained nothing. All refused while checkpoints/ holds the run, before config.yaml is rewritten."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(pretrained["config"].run_dir, run_dir)
    before = (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8")
    base = dataclasses.replace(pretrained["config"], run_dir=run_dir)
    for changed, said in ((dataclasses.replace(base.train, batch_size=4), "train.batch_size 16, not 4"),
                          (dataclasses.replace(base.pretrain, held_out=8), "pretrain.held_out 32, not 8"),
                          (dataclasses.replace(base.pretrain, mask_rate=0.3), "pretrain.mask_rate 0.15, not 0.3"),
                          (dataclasses.replace(base.model, init=os.path.join(run_dir, "backbone")), "model.init")):
        section = {type(base.train): "train", type(base.pretrain): "pretrain", type(base.model): "model"}[type(changed)]
        with pytest.raises(ConfigError, match=f"holds checkpoints of a run with {said}"):
            pretrain(dataclasses.replace(base, **{section: changed}))
    assert (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8") == before


def test_an_output_that_would_replace_other_files_is_refused(corpus, tmp_path):
    """pretrain.output replaces its folder whole: it deleted the run_dir it named (checkpoints and all), or a
    folder of other files. Refused before the run starts; what was there stays."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "other_model.txt").write_text("keep me", encoding="utf-8")
    run = str(tmp_path / "run")
    for output, said in ((run, "would replace the run's own files"),
                         (str(tmp_path), "would replace the run's own files"),
                         (os.path.join(run, "checkpoints"), "would replace the run's own files"),
                         (str(tmp_path / "models"), "holds other_model.txt: not a backbone preset")):
        with pytest.raises(ConfigError, match=f"pretrain.output {re.escape(output)} {said}"):
            pretrain(pretrain_config(str(tmp_path), corpus["jsonl"], "scratch", [f"pretrain.output={output}"]))
    assert (tmp_path / "models" / "other_model.txt").read_text(encoding="utf-8") == "keep me"
    assert not os.path.exists(run)


def test_a_data_vocab_other_than_the_checkpoints_own_is_refused(corpus, erf_preset, tmp_path):
    """The checkpoint's vocabulary reordered has its size, so nothing failed: every character read another's
    embedding row, and the saved backbone kept the scrambled vocabulary."""
    own = read_vocabulary(checkpoint.vocabulary_path(erf_preset))
    reordered = tmp_path / "vocab.txt"
    reordered.write_text("".join(t + "\n" for t in own[:6] + own[6:][::-1]), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data.vocab .*vocab.txt \(\d+ tokens\) is not model.init's own vocabulary "
                                          r".* they first differ at id 6"):
        pretrain(pretrain_config(str(tmp_path), corpus["jsonl"], erf_preset, [f"data.vocab={reordered}"]))


def test_pretraining_runs_under_mixed_precision(corpus, tmp_path):
    """keras-hub's masked-LM head, built by an eager call, failed under mixed_bfloat16 and mixed_float16 (a float32
    bias added to half-precision logits). In a process of its own (the policy is global), both policies in turn."""
    result = run_python(f"""
from tfner.config import load_config
from tfner.pretrain import pretrain
for policy in ("mixed_bfloat16", "mixed_float16"):
    config = load_config(None, [f"run_dir={tmp_path}/{{policy}}", {f"pretrain.text={corpus['jsonl']}"!r},
        "pretrain.held_out=32", "data.max_seq_length=32", "export.window_overlap=8", "model.num_layers=1",
        "model.hidden_dim=16", "model.num_heads=2", "model.intermediate_dim=32", "train.batch_size=16",
        "train.max_steps=2", "train.distribute=one_device", f"train.mixed_precision={{policy}}"])
    print(policy, "steps", pretrain(config)["steps"])
""")
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line for line in result.stdout.splitlines() if line.startswith("mixed_")]
    assert steps == ["mixed_bfloat16 steps 2", "mixed_float16 steps 2"], result.stdout
    for policy in ("mixed_bfloat16", "mixed_float16"):
        assert (tmp_path / policy / "backbone" / "model.weights.h5").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "tfner.pretrain: pretrain.text is empty: name the unlabelled text files"),
        (["pretrain.mask_rate=0"], "tfner.pretrain: pretrain.mask_rate is 0: nothing would be predicted"),
        (["pretrain.held_out=100000"], "tfner.pretrain: pretrain.held_out 100000 is not below the"),
    ],
    ids=["no text", "mask rate 0", "everything held out"],
)
def test_the_command_line_refuses_bad_settings_in_one_line(corpus, tmp_path, capsys, overrides, message):
    """They were ValueErrors, which main() printed as tracebacks with exit 1."""
    from tfner.pretrain import main

    text = [f"pretrain.text={corpus['txt']}"] if overrides else []
    argv = [f"run_dir={tmp_path / 'run'}", "train.distribute=one_device", *text, *overrides]
    assert main([a for o in argv for a in ("--set", o)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def tiny_run(pretrained, tmp_path_factory):
    """The tiny tagger fine-tuned from the pretrained backbone: the run the imported contract tests check."""
    folder = str(tmp_path_factory.mktemp("finetuned"))
    summary = train_tiny(folder, [f"model.init={pretrained['summary']['backbone']}", "train.epochs=1",
                                  "train.max_steps=4"])
    return {"run_dir": os.path.join(folder, "run"), "export": summary["export"],
            "test": os.path.join(folder, "data", "test.jsonl"), "summary": summary}


def test_the_command_line_pretrains_and_the_fine_tuned_run_records_its_backbone(tiny_run, pretrained, corpus, tmp_path):
    with open(os.path.join(tiny_run["run_dir"], "backbone.json"), encoding="utf-8") as f:
        assert json.load(f)["class_name"] == "ErfGeluBertBackbone"  # the export rebuilds it with erf GELU
    result = run_python(
        "import sys; from tfner.pretrain import main; sys.exit(main(['--set', 'run_dir="
        f"{tmp_path / 'cli'}', '--set', 'pretrain.text={corpus['txt']}', '--set', 'pretrain.held_out=16', "
        "'--set', 'train.max_steps=2', '--set', 'train.batch_size=16', '--set', 'data.max_seq_length=32', "
        "'--set', 'export.window_overlap=8', "
        "'--set', 'model.num_layers=1', '--set', 'model.hidden_dim=8', '--set', 'model.intermediate_dim=16', "
        "'--set', 'train.distribute=one_device']))"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held out after" in result.stdout and "fine-tune it:" in result.stdout
    assert type(checkpoint.load_backbone(str(tmp_path / "cli" / "backbone"))).__name__ == "BertBackbone"  # scratch: tanh


def test_the_command_line_names_a_bad_line_without_a_traceback(tmp_path, capsys):
    from tfner.pretrain import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "好"}\n{"content": "坏"}\n', encoding="utf-8")
    assert main(["--set", f"run_dir={tmp_path / 'run'}", "--set", f"pretrain.text={bad}",
                 "--set", "train.distribute=one_device"]) == 2
    assert f"tfner.pretrain: {bad}:2: expected an object with a string field 'text'" in capsys.readouterr().err


def test_a_resumed_run_still_reports_where_it_started(corpus, erf_preset, tmp_path):
    """held_out_before (the model before any step) is measured once, at the start: a run stopped and run again
    (a crash, or more steps) must report the same figure as when it started, not None."""
    first = pretrain(pretrain_config(str(tmp_path), corpus["jsonl"], erf_preset, ["train.max_steps=3"]))
    resumed = pretrain(pretrain_config(str(tmp_path), corpus["jsonl"], erf_preset, ["train.max_steps=6"]))
    assert first["held_out_before"] is not None and resumed["resumed_from_step"] == 3
    assert resumed["held_out_before"] == first["held_out_before"]
