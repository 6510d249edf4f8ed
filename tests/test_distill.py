"""python -m tfner.distill: the soft loss, a student whose agreement with its teacher rises, refusals that name
the problem, and a student run that is an ordinary run: its export keeps the serving contract
(tests/test_export.py's own tests, run on it), tfner.evaluate scores it and tfner.serve serves it."""

import os

import numpy as np
import pytest
import tensorflow as tf
from test_export import (  # noqa: F401  (the contract tests and their fixture, run here on the student's export)
    module,
    test_graph_holds_only_core_tensorflow_ops,
    test_predict_and_evaluate_commands,
    test_session_path_in_a_fresh_process_equals_in_process_model,
    test_signature_is_the_contract,
)
from tiny import tiny_config

from tfner import export as export_lib
from tfner.config import ConfigError
from tfner.distill import distill, distillation_loss, tag_distributions
from tfner.predict import SavedModelPredictor

STUDENT = ["model.num_layers=1", "model.hidden_dim=8", "model.num_heads=2", "model.intermediate_dim=16"]


@pytest.fixture(scope="module")
def tiny_run(tiny_run, tmp_path_factory):
    """A 1-layer, hidden-8 student distilled from the shared tiny run, with unlabelled text: the run under test."""
    folder = str(tmp_path_factory.mktemp("student"))
    config = tiny_config(folder, [*STUDENT, f"distill.teacher={tiny_run['run_dir']}",
                                  f"distill.unlabelled={tiny_run['test']}", "train.epochs=1"])
    summary = distill(config)
    return {"run_dir": config.run_dir, "export": summary["export"], "test": os.path.join(folder, "data", "test.jsonl"),
            "summary": summary, "teacher": tiny_run}


def test_the_student_learns_to_agree_with_its_teacher(tiny_run):
    summary = tiny_run["summary"]
    before = summary["distill"]["dev_agreement_before"]
    after = [h["dev_agreement"] for h in summary["history"]]
    assert after[-1] > before + 0.2 and after[-1] > 0.8, (before, after)


def test_unlabelled_text_reaches_the_loss(tiny_run, tmp_path):
    """A step's unlabelled batch adds the soft loss of its characters: the same step's labelled batch alone gives
    a smaller loss over fewer characters (the figures of the summary would read the same without it)."""
    from tfner import data
    from tfner.distill import DistillTrainer, load_distill_corpus, read_teacher
    from tfner.train import start_process

    teacher = tiny_run["teacher"]
    config = tiny_config(str(tmp_path), [*STUDENT, f"distill.teacher={teacher['run_dir']}", "model.dropout=0.0",
                                         f"distill.unlabelled={teacher['test']}"])
    strategy = start_process(config)
    _, tag_set = read_teacher(config)
    with strategy.scope():
        teacher_module = export_lib.load_run(config.distill.teacher, precision="float32")
        texts = [e.text for e in data.read_examples(teacher["test"])]
        trainer = DistillTrainer(config, load_distill_corpus(config, tag_set), strategy, teacher_module, texts)
    labelled, extra = next(iter(trainer.replica_dataset(tf.distribute.InputContext(), 0)))
    loss, tokens = trainer.replica_loss((labelled, extra))
    trainer.extra_source = None
    labelled_loss, labelled_tokens = trainer.replica_loss(labelled)
    assert int(tokens) == int(labelled_tokens) + int(tf.reduce_sum(tf.cast(extra[1]["tag_mask"], tf.int32)))
    assert float(loss) > float(labelled_loss) + 1e-4, (float(loss), float(labelled_loss))


def test_a_resume_keeps_the_distillation_recipe(tiny_run):
    """Another temperature or soft weight resumed the student's checkpoints under the new loss without a word."""
    from tfner.config import load_config

    config = load_config(os.path.join(tiny_run["run_dir"], "config.yaml"), ["distill.temperature=7.0"])
    with pytest.raises(ConfigError, match="holds checkpoints of a run with distill.temperature 2.0, not 7.0"):
        distill(config)


def test_the_student_is_smaller_and_keeps_the_teachers_vocabulary_and_tags(tiny_run):
    student, teacher = (export_lib.load_run(r["run_dir"]) for r in (tiny_run, tiny_run["teacher"]))
    assert student.model.count_params() < teacher.model.count_params() / 2
    assert student.tokenizer.vocabulary == teacher.tokenizer.vocabulary
    assert student.tag_set.tags == teacher.tag_set.tags


def test_soft_loss_is_zero_for_the_teachers_own_distribution_and_positive_otherwise(tiny_run):
    model = export_lib.load_run(tiny_run["teacher"]["run_dir"]).model
    emissions = tf.random.stateless_normal([2, 5, model.num_tags], seed=[1, 2])
    mask = tf.constant([[True] * 5, [True, True, True, False, False]])
    teacher = tag_distributions(model, emissions, mask, 2.0)
    np.testing.assert_allclose(tf.reduce_sum(teacher, axis=-1).numpy(), tf.cast(mask, tf.float32).numpy(), atol=1e-5)
    np.testing.assert_allclose(distillation_loss(teacher, teacher, 2.0).numpy(), [0.0, 0.0], atol=1e-5)
    other = tag_distributions(model, emissions * 0.0, mask, 2.0)
    assert (distillation_loss(teacher, other, 2.0).numpy() > 0.01).all()


def test_a_teacher_export_or_another_vocabulary_is_refused(tiny_run, tmp_path):
    teacher = tiny_run["teacher"]
    with pytest.raises(ConfigError, match="is an export: its serving signature returns decoded tags"):
        distill(tiny_config(str(tmp_path), [*STUDENT, f"distill.teacher={os.path.dirname(teacher['export'])}"]))
    with pytest.raises(ConfigError, match="the student shares the teacher's vocabulary"):
        distill(tiny_config(str(tmp_path), [*STUDENT, f"distill.teacher={teacher['run_dir']}",
                                            f"data.vocab={tmp_path / 'other_vocab.txt'}"]))


def test_a_student_checkpoint_of_another_vocabulary_is_refused_even_at_the_same_size(tiny_run, tmp_path):
    """The teacher's vocabulary in another order was accepted: every token id looked up in another row."""
    from tfner.checkpoint import ErfGeluBertBackbone
    from tfner.pretrain import save_backbone_preset
    from tfner.tokenizer import SPECIAL_TOKENS, read_vocabulary

    teacher = tiny_run["teacher"]["run_dir"]
    vocabulary = read_vocabulary(os.path.join(teacher, "vocab.txt"))
    shuffled = list(SPECIAL_TOKENS) + vocabulary[len(SPECIAL_TOKENS):][::-1]
    backbone = ErfGeluBertBackbone(vocabulary_size=len(shuffled), num_layers=1, num_heads=2, hidden_dim=8,
                                   intermediate_dim=16, max_sequence_length=32)
    save_backbone_preset(backbone, shuffled, True, str(tmp_path / "preset"))
    with pytest.raises(ConfigError, match=r"its vocabulary \(.*\) is not the teacher's"):
        distill(tiny_config(str(tmp_path), [*STUDENT, f"distill.teacher={teacher}",
                                            f"model.init={tmp_path / 'preset'}"]))


def test_tfner_serve_serves_the_student(tiny_run, start_server):
    from tfner.client import NerClient

    server = start_server("--model_name", "ner", "--model_base_path", os.path.dirname(tiny_run["export"]))
    server.wait_ready()
    texts = ["王伟毕业于杭州科技有限公司，现居北京。", "李娜去了上海。"]
    with NerClient(server.target) as client:
        served = client.predict(texts)
    expected = SavedModelPredictor(tiny_run["export"]).predict(texts)
    assert [[(e.label, e.start, e.end) for e in row] for row in served] == \
        [[(e["label"], e["start"], e["end"]) for e in row] for row in expected]


def test_the_command_line_names_a_missing_teacher_without_a_traceback(tmp_path, capsys):
    from tfner.distill import main

    assert main(["--set", f"run_dir={tmp_path / 'run'}", "--set", f"distill.teacher={tmp_path / 'nope'}",
                 "--set", "train.distribute=one_device"]) == 2
    assert f"tfner.distill: distill.teacher {tmp_path / 'nope'}: no config.yaml there" in capsys.readouterr().err
    (tmp_path / "partial").mkdir()  # a run_dir copied in part: TensorFlow's NotFoundError traceback before
    (tmp_path / "partial" / "config.yaml").write_text("train:\n  epochs: 1\n", encoding="utf-8")
    assert main(["--set", f"run_dir={tmp_path / 'run'}", "--set", f"distill.teacher={tmp_path / 'partial'}",
                 "--set", "train.distribute=one_device"]) == 2
    err = capsys.readouterr().err
    assert "no labels.txt or vocab.txt beside its config.yaml; give the whole run_dir" in err, err


@pytest.mark.parametrize("teacher, message", [
    ("", "tfner.distill: distill.teacher is empty: name the teacher's run_dir"),
    ("export", "is an export: its serving signature returns decoded tags"),
], ids=["no teacher", "an export as teacher"])
def test_the_command_line_refuses_a_bad_teacher_in_one_line(tmp_path, capsys, teacher, message):
    """They were ValueErrors, which main() printed as tracebacks with exit 1."""
    from tfner.distill import main

    if teacher:  # the shape resolve_version sees of an export: a numbered folder holding saved_model.pb
        (tmp_path / teacher / "1").mkdir(parents=True)
        (tmp_path / teacher / "1" / "saved_model.pb").write_bytes(b"")
        teacher = str(tmp_path / teacher)
    assert main(["--set", f"run_dir={tmp_path / 'run'}", "--set", f"distill.teacher={teacher}",
                 "--set", "train.distribute=one_device"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
