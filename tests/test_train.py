"""Training under tf.distribute, mixed precision, and the command line (kills and resume: test_faults.py)."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import REPO, run_python, tiny_config

from tfner.config import ConfigError, load_config
from tfner.distribute import make_strategy
from tfner.optimization import AdamW
from tfner.train import Trainer, clipped, load_corpus


def test_tiny_run_learns_and_writes_everything(tiny_run):
    summary, run_dir = tiny_run["summary"], tiny_run["run_dir"]
    assert summary["best_dev_f1"] > 0.3, summary  # a random tagger scores ~0 on entity F1
    assert summary["test"]["f1"] > 0.3 and summary["test"]["model"] == summary["export"]
    for name in ("config.yaml", "vocab.txt", "labels.txt", "metrics.json", "best/model.index", "checkpoints/checkpoint"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert os.listdir(os.path.join(run_dir, "logs"))  # TensorBoard event file
    # Throughput is characters over step time; the count itself is given, so nobody rebuilds it from a rate.
    config = load_config(os.path.join(run_dir, "config.yaml"))
    assert 0 < summary["train_tokens"] <= summary["steps"] * config.train.batch_size * config.data.max_seq_length
    assert summary["train_tokens_per_second"] == pytest.approx(summary["train_tokens"] / summary["step_seconds"])


def _train_steps(strategy, tmp_dir, batch, steps=3, clip_norm=1.0):
    keras.utils.set_random_seed(1)
    # No dropout: replicas draw their own masks. Small steps: Adam turns float rounding in near-zero gradients
    # into whole steps.
    config = tiny_config(tmp_dir, ["model.dropout=0", "train.learning_rate=5e-3", "train.head_learning_rate=1e-2",
                                   f"train.clip_norm={clip_norm}"])
    trainer = Trainer(config, load_corpus(config), strategy)
    train_step = trainer.make_train_step()
    iterator = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat(steps)))
    losses = [float(train_step(iterator)[0]) for _ in range(steps)]
    return losses, trainer.model.emission.kernel.numpy()


def test_one_cpu_iterates_the_epoch_pipeline_itself_without_autotuning(tmp_path):
    """On one CPU, fit() iterates each epoch's tf.data pipeline without the strategy's input layer or tf.data's
    autotuning (dropping an epoch's iterator waited for their threads), and gets the batches that layer gives."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = tiny_config(str(tmp_path), ["train.batch_size=4"])
    trainer = Trainer(config, load_corpus(config), strategy)
    epoch = trainer.epoch_dataset(1, 2)
    assert isinstance(epoch, tf.data.Dataset)
    assert epoch.options().autotune.enabled is False
    through_the_strategy = strategy.distribute_datasets_from_function(
        lambda context: trainer.replica_dataset(context, 1).skip(2))
    compared = 0
    for ours, theirs in zip(epoch.take(3), through_the_strategy):
        for a, b in zip(tf.nest.flatten(ours), tf.nest.flatten(theirs), strict=True):
            np.testing.assert_array_equal(a, b)
        compared += 1
    assert compared == 3
    mirrored = Trainer(config, load_corpus(config), tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert isinstance(mirrored.epoch_dataset(0, 0), tf.distribute.DistributedDataset)


def test_mirrored_over_two_cpus_matches_one_device(tmp_path):
    """MirroredStrategy over 2 logical CPUs: same losses and weights as one device on the same global batch,
    with a gradient clip that bites (each replica clipping its own half-batch's gradients did not match)."""
    code = f"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
from tiny import tiny_config
from test_train import _train_steps
from tfner.train import Trainer, load_corpus
from tfner import data
config = tiny_config({str(tmp_path)!r})
corpus = load_corpus(config)
tokenizer = Trainer(config, corpus, tf.distribute.OneDeviceStrategy("/cpu:0")).tokenizer
examples = data.split_long(corpus.train, 30)
batches = data.batch_dataset(data.examples_dataset(examples, corpus.tag_set), tokenizer, 16, 32)
batch = next(b for b in batches if b[0]["token_ids"].shape[0] == 16)
one = _train_steps(tf.distribute.OneDeviceStrategy("/cpu:0"), {str(tmp_path / "one")!r}, batch, clip_norm=0.01)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one instance: collectives key by it
two = _train_steps(mirrored, {str(tmp_path / "two")!r}, batch, clip_norm=0.01)
unclipped = _train_steps(tf.distribute.OneDeviceStrategy("/cpu:0"), {str(tmp_path / "free")!r}, batch, clip_norm=0)
# AdamW's first moment after one step is (1 - beta_1) x the gradient it applied: did it sum the replicas' again?
from tfner.optimization import AdamW
moments = {{}}
for sums in (True, False):
    with mirrored.scope():
        variable = tf.Variable([0.0, 0.0])
        optimizer = AdamW(learning_rate=1e-3, sums_replicas=sums)
        optimizer.build([variable])
    tf.function(lambda: mirrored.run(lambda: optimizer.apply_gradients([(tf.constant([1.0, 2.0]), variable)])))()
    moments[str(sums)] = optimizer._momentums[0].numpy().tolist()
print(json.dumps({{"one": one[0], "two": two[0], "unclipped": unclipped[0], "moments": moments,
                  "max_weight_diff": float(abs(one[1] - two[1]).max()), "batch": int(batch[0]["token_ids"].shape[0])}}))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["batch"] == 16
    # The clip bites: without it the same steps end elsewhere (by ~2e-2 relative; per-replica clipping, by ~5e-3).
    assert abs(out["unclipped"][1] - out["one"][1]) > 1e-3 * out["one"][1]
    # The sums of the two half-batches' gradients differ from one device's in float rounding only.
    np.testing.assert_allclose(out["one"], out["two"], rtol=1e-5)
    assert out["max_weight_diff"] < 1e-5
    assert out["one"][0] > out["one"][-1]  # the steps really trained
    # Keras sums the replicas' gradients in the optimizer's hook, which tfner's step does itself beforehand.
    np.testing.assert_allclose(out["moments"]["True"], [0.2, 0.4], rtol=1e-6)
    np.testing.assert_allclose(out["moments"]["False"], [0.1, 0.2], rtol=1e-6)


def test_resume_under_two_replicas_takes_up_the_batches_where_they_were(tmp_path):
    """A step of 2 mirrored replicas takes two batches of the one pipeline: resuming at step 3 skips 6 of them,
    so steps 3-5 of a resumed epoch are those of an uninterrupted one."""
    code = f"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
from tiny import tiny_config
from tfner.train import Trainer, load_corpus
config = tiny_config({str(tmp_path)!r}, ["train.batch_size=4"])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
trainer = Trainer(config, load_corpus(config), strategy)

def steps(skip, count):
    iterator = iter(trainer.epoch_dataset(1, skip))
    return [[t.numpy().tolist() for t in strategy.experimental_local_results(next(iterator)[0]["token_ids"])]
            for _ in range(count)]

print(json.dumps({{"uninterrupted": steps(0, 6), "resumed": steps(3, 3)}}))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(len(step) == 2 for step in out["uninterrupted"])  # each step: one batch for each replica
    assert out["resumed"] == out["uninterrupted"][3:]


def test_an_epoch_covers_every_piece_and_tfrecords_train_through_the_runs_tags(tmp_path):
    """Training splits sentences longer than a window, and an epoch counts the pieces. TFRecord shards go the
    same way, their ids read through the tag set written beside them, not taken as the run's own ids."""
    from tfner import data
    from tfner.labels import Span, TagSet, tags_to_spans

    long_sentence = data.Example("王伟" + "在" * 40 + "北京大学", (Span(0, 2, "PER"), Span(42, 46, "ORG")))
    examples = [long_sentence] + [data.Example("李四去了北京大学。", (Span(0, 2, "PER"), Span(4, 8, "ORG")))] * 7
    data.write_tfrecords(examples, TagSet(["LOC", "ORG", "PER"]), str(tmp_path / "train"), num_shards=2)
    config = tiny_config(str(tmp_path), ["data.format=tfrecord", f"data.train={tmp_path / 'train.tfrecord-*'}",
                                         "data.dev=", "data.test=", "train.batch_size=2", "train.max_steps=3"])
    corpus = load_corpus(config)
    assert corpus.tag_set.labels == ["ORG", "PER"]  # no LOC in the data: the writer's ids would be off
    trainer = Trainer(config, corpus, tf.distribute.OneDeviceStrategy("/cpu:0"))
    pieces = data.split_long(corpus.train, config.data.max_seq_length - 2)
    # 9 pieces of 8 sentences in batches of 2, by length bucket: 4 of the 7 short ones, 1 + 1 of the long one's two
    assert len(pieces) == 9 and trainer.steps_per_epoch == 6
    read_back = []
    for element in trainer.train_source:
        tags = [corpus.tag_set.tags[i] for i in element["tags"].numpy()]
        read_back.append(data.Example(element["text"].numpy().decode(), tuple(tags_to_spans(tags)[0])))
    assert sorted(read_back, key=repr) == sorted(pieces, key=repr)
    assert trainer.fit()["steps"] == 3  # ids inside the run's tag set (the writer's went out of range on CPU)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_workers(tmp_path, overrides, timeout=400):
    """tfner.train in two worker processes on loopback (TF_CONFIG); their outputs, once both exited 0."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    code = ("import sys; sys.path.insert(0, 'tests'); from tiny import tiny_config; from tfner.train import train; "
            f"train(tiny_config({str(tmp_path)!r}, {overrides!r}, sizes=(96, 16, 16)))")
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"}
        processes.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=timeout)[0])
        finally:
            process.kill()
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    return outputs


@pytest.mark.slow
def test_multi_worker_two_processes_train_finish_and_resume_together(tmp_path):
    """Two worker processes on loopback, MultiWorkerMirroredStrategy: both finish, the chief exports. Run again
    with more steps (as after a preemption that replaced a worker's machine), the other worker's scratch
    checkpoints are gone: it must resume from the chief's, at the chief's step, not from step 0 on new weights
    (which ran mismatched collectives until it crashed)."""
    base = ["train.distribute=multi_worker", "train.epochs=1"]
    _two_workers(tmp_path, base + ["train.max_steps=3"])
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert metrics["num_replicas"] == 2 and metrics["steps"] == 3
    assert os.path.exists(metrics["export"])
    assert not [n for n in os.listdir(tmp_path / "run") if n.startswith(".worker")]

    for output in _two_workers(tmp_path, base + ["train.max_steps=6"]):
        assert "resuming at step 3" in output, output[-3000:]
    assert json.load(open(tmp_path / "run" / "metrics.json"))["steps"] == 6


def test_tpu_without_a_tpu_fails_clearly(tmp_path, capsys):
    with pytest.raises(ConfigError, match="(?s)no TPU found at 'local'.*set train.tpu / TPU_NAME"):
        make_strategy("tpu")
    from tfner.train import main  # one line, exit 2 (a RuntimeError was a traceback, exit 1)

    assert main(["--config", os.path.join(REPO, "configs", "tiny.yaml"), "--set", "train.distribute=tpu",
                 "--set", f"run_dir={tmp_path / 'run'}"]) == 2
    assert "tfner.train: train.distribute=tpu: no TPU found at 'local'" in capsys.readouterr().err


def test_a_tpu_that_auto_finds_refuses_mixed_float16_before_connecting(monkeypatch):
    """config.py refuses `distribute: tpu` with mixed_float16; `auto` picks a TPU from train.tpu or TPU_NAME."""
    with pytest.raises(ConfigError, match="auto chose a TPU .* set train.mixed_precision: mixed_bfloat16"):
        make_strategy("auto", tpu="grpc://10.0.0.2:8470", mixed_precision="mixed_float16")
    monkeypatch.setenv("TPU_NAME", "local")
    with pytest.raises(ConfigError, match="auto chose a TPU"):
        make_strategy("auto", mixed_precision="mixed_float16")
    with pytest.raises(ConfigError, match="no TPU found at 'local'"):  # bfloat16 goes on to look for it
        make_strategy("auto", mixed_precision="mixed_bfloat16")
    with pytest.raises(ConfigError, match="train.distribute is tpu, but train.mixed_precision is mixed_float16"):
        make_strategy("tpu", mixed_precision="mixed_float16")


def test_clipping_under_loss_scaling_measures_the_true_gradients():
    """Under mixed_float16 the step holds the scaled loss's gradients: the clip applies to them unscaled."""
    variable = tf.Variable([0.0, 0.0])
    plain = AdamW(learning_rate=1e-3)
    scaled = keras.optimizers.LossScaleOptimizer(AdamW(learning_rate=1e-3))
    for optimizer in (plain, scaled):
        optimizer.build([variable])
    gradient = tf.constant([3.0, 4.0])  # norm 5
    np.testing.assert_allclose(clipped([gradient, None], 1.0, plain)[0], [0.6, 0.8], rtol=1e-6)
    scale = float(scaled.dynamic_scale)
    assert scale > 1
    np.testing.assert_allclose(clipped([gradient * scale], 1.0, scaled)[0], [0.6 * scale, 0.8 * scale], rtol=1e-6)
    small = clipped([gradient * scale], 10.0, scaled)[0]  # true norm 5 < 10: unchanged
    np.testing.assert_allclose(small, gradient * scale, rtol=1e-6)


def test_multi_worker_without_tf_config_fails_clearly(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        make_strategy("multi_worker")


CLUSTER = {"worker": ["localhost:1", "localhost:2"]}


@pytest.mark.parametrize("tf_config, fragment", [
    ("{'cluster': {}}", "TF_CONFIG is not valid JSON (Expecting property name enclosed in double quotes at character 1)"),
    ('["localhost:1"]', 'must be an object whose "cluster" maps roles to lists of host:port'),
    ('{"cluster": {"worker": "localhost:1,localhost:2"}}', 'must be an object whose "cluster" maps roles'),
    (json.dumps({"cluster": CLUSTER}), 'TF_CONFIG has no "task": each process needs its own role and index'),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "ps", "index": 0}}),
     "TF_CONFIG task type 'ps': multi_worker runs a \"chief\" or \"worker\" task named in its cluster (which has ['worker'])"),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}),
     "TF_CONFIG task index 2: the cluster's 'worker' list has 2 hosts, so the index is 0 to 1"),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": "1"}}), "TF_CONFIG task index '1'"),
])
def test_a_tf_config_tensorflow_cannot_use_is_refused_before_the_strategy_starts(monkeypatch, tf_config, fragment):
    """Each of these ended in a TensorFlow traceback mid start-up (or, an index past the list, a wait for a peer)."""
    monkeypatch.setenv("TF_CONFIG", tf_config)
    for name in ("auto", "multi_worker"):
        with pytest.raises(ConfigError) as error:
            make_strategy(name)
        assert fragment in str(error.value)
    assert isinstance(make_strategy("one_device"), tf.distribute.OneDeviceStrategy)  # TF_CONFIG is not read there


def test_tfner_train_prints_a_tf_config_mistake_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tfner.train", "--config", "configs/tiny.yaml",
                           "--set", f"run_dir={tmp_path}/run", "--set", "train.distribute=multi_worker"],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps({"cluster": CLUSTER})})
    assert done.returncode == 2, done.stderr[-2000:]
    assert 'tfner.train: TF_CONFIG has no "task"' in done.stderr and "Traceback" not in done.stderr


def test_mixed_precision_keeps_the_crf_in_float32_and_scales_the_loss(tmp_path):
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        config = tiny_config(str(tmp_path), ["train.mixed_precision=mixed_float16"])
        trainer = Trainer(config, load_corpus(config), tf.distribute.OneDeviceStrategy("/cpu:0"))
        train_step = trainer.make_train_step()
        iterator = iter(trainer.epoch_dataset(0, 0))
        losses = [float(train_step(iterator)[0]) for _ in range(6)]
        assert all(np.isfinite(losses))
        # Dynamic loss scaling: a step whose float16 gradients overflow is skipped and halves the scale (Keras
        # starts at 2**15 and doubles it only after 2,000 good steps); the others are applied.
        for optimizer, variables in trainer.parameter_groups.values():
            assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            skipped = np.log2(2.0 ** 15 / float(optimizer.dynamic_scale))
            applied = int(optimizer.inner_optimizer.iterations)
            assert applied >= 1 and applied + skipped == len(losses), (applied, skipped)
            assert all(np.isfinite(v.numpy()).all() for v in variables)
        assert trainer.model.backbone.get_layer("token_embedding").compute_dtype == "float16"
        assert trainer.model.crf.transitions.dtype == "float32"
        emissions = trainer.model(trainer.tokenizer.pack(trainer.tokenizer(tf.constant(["王伟"])), 4))
        assert emissions.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


_KILLED_IN_LABELS_WRITE = """
import os, signal, sys
sys.path.insert(0, "tests")
import tensorflow as tf
from tiny import tiny_config
from tfner.train import load_corpus, prepare_run_dir

real_open = tf.io.gfile.GFile

class Dying:
    def __init__(self, f):
        self.f = f
    def write(self, text):
        os.kill(os.getpid(), signal.SIGKILL)  # the file is open for writing, nothing written yet
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def __getattr__(self, name):
        return getattr(self.f, name)

def dying_open(file, mode="r"):
    f = real_open(file, mode)
    return Dying(f) if "w" in mode and "labels.txt" in os.fspath(file) else f

config = tiny_config(sys.argv[1])
corpus = load_corpus(config)
tf.io.gfile.GFile = dying_open
prepare_run_dir(config, corpus)
"""


def test_a_start_killed_while_it_rewrites_labels_txt_does_not_refuse_the_next(tmp_path):
    """Every start (a resume too) rewrites run_dir/labels.txt and the next start reads it back: SIGKILLed inside that
    write, the run must still resume, not be refused as "a run with entity types []"."""
    from tfner.train import prepare_run_dir

    config = tiny_config(str(tmp_path))
    corpus = load_corpus(config)
    prepare_run_dir(config, corpus)  # the first start
    done = subprocess.run([sys.executable, "-c", _KILLED_IN_LABELS_WRITE, str(tmp_path)], cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-2000:]
    prepare_run_dir(config, corpus)  # the restart
    with open(os.path.join(config.run_dir, "labels.txt"), encoding="utf-8") as f:
        assert f.read().split() == corpus.tag_set.labels


def test_a_run_dir_of_another_experiment_is_refused_before_anything_is_overwritten(tmp_path):
    """Re-running into a run_dir with other training data (another vocabulary), other types or another model shape
    is refused naming what differs, and the old run's files stay as they were. It used to overwrite config.yaml
    and vocab.txt first, then fail in the restore with a shape traceback, leaving the old run unexportable."""
    from tfner import demo
    from tfner.train import prepare_run_dir

    config = tiny_config(str(tmp_path))
    prepare_run_dir(config, load_corpus(config))
    kept = {name: open(tmp_path / "run" / name, "rb").read() for name in ("config.yaml", "vocab.txt", "labels.txt")}
    other_data = demo.write_corpus(str(tmp_path / "other"), sizes=(40, 8, 8), seed=5)["train"]
    for overrides, fragment in ([f"data.train={other_data}"], "a vocabulary of"), \
            (["model.hidden_dim=32"], "model.hidden_dim 16, not 32"):
        changed = tiny_config(str(tmp_path), overrides)
        with pytest.raises(ConfigError, match=f"run_dir .* holds another run: {fragment}.*Choose a new run_dir"):
            prepare_run_dir(changed, load_corpus(changed))
        assert {name: open(tmp_path / "run" / name, "rb").read() for name in kept} == kept
    prepare_run_dir(tiny_config(str(tmp_path), ["train.epochs=3"]), load_corpus(config))  # more epochs: a resume


def test_a_vocab_folder_is_named_as_one(tmp_path):
    from tfner.train import read_configured_vocabulary

    with pytest.raises(ConfigError, match="data.vocab: .* is a folder; name the vocab.txt file in it"):
        read_configured_vocabulary(str(tmp_path))


def test_without_an_export_test_is_scored_with_the_best_dev_epochs_weights(tiny_run, tmp_path):
    """export.enabled false: run() scores test on run_dir/best's weights, which tfner.export --run ships, not on
    the last epoch's it holds in memory."""
    import shutil

    shutil.copytree(tiny_run["run_dir"], tmp_path / "run")
    config = tiny_config(str(tmp_path), ["export.enabled=false", f"data.test={tiny_run['test']}"])
    trainer = Trainer(config, load_corpus(config), tf.distribute.OneDeviceStrategy("/cpu:0"))
    for variable in trainer.model.trainable_variables:
        variable.assign(tf.zeros_like(variable))  # not the best weights, whatever the last epoch was
    trainer.restore_best()
    best = tf.train.load_checkpoint(str(tmp_path / "run" / "best" / "model"))
    stored = best.get_tensor("model/crf/transitions/.ATTRIBUTES/VARIABLE_VALUE")
    assert np.array_equal(stored, trainer.model.crf.transitions.numpy()) and stored.any()
    assert trainer.evaluate(trainer.corpus.test)["f1"] == pytest.approx(tiny_run["summary"]["test"]["f1"], abs=1e-9)


def test_static_shapes_train_on_every_piece_their_last_batches_filled_with_empty_rows(tmp_path):
    """A TPU's batches (train.static_shapes) have one size: a bucket's last batch is filled up with rows of length
    0, which add no loss, gradient or token, rather than dropped with the sentences in it."""
    config = tiny_config(str(tmp_path), ["train.static_shapes=true", "train.epochs=1", "data.dev=", "data.test="])
    trainer = Trainer(config, load_corpus(config), tf.distribute.OneDeviceStrategy("/cpu:0"))
    batches = list(trainer.epoch_dataset(0, 0).take(trainer.steps_per_epoch))
    rows = [int(n) for _, labels in batches for n in labels["tag_mask"].numpy().sum(axis=1)]
    assert {f["token_ids"].shape[0] for f, _ in batches} == {config.train.batch_size}
    assert 0 in rows and sorted(n for n in rows if n) == sorted(len(p.text) for p in data_pieces(trainer))
    summary = trainer.fit()
    assert summary["steps"] == trainer.steps_per_epoch and summary["train_tokens"] == sum(rows)
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.trainable_variables)


def data_pieces(trainer):
    from tfner import data

    return data.split_long(trainer.corpus.train, trainer.max_seq_length - 2)


def test_tfrecord_shards_are_read_by_name_in_every_split(tmp_path):
    """data.format auto reads *.tfrecord-* shards as TFRecord, in dev and test too, beside files of other formats;
    they used to be read only as data.train under data.format: tfrecord (auto: "read them with
    read_tfrecords()"), and a CoNLL dev beside TFRecord train got that message too."""
    from tfner import data
    from tfner.labels import Span, TagSet

    examples = [data.Example("李四去了北京大学。", (Span(0, 2, "PER"), Span(4, 8, "ORG")))] * 4
    data.write_tfrecords(examples, TagSet(["ORG", "PER"]), str(tmp_path / "train"), num_shards=2)
    data.write_tfrecords(examples[:2], TagSet(["ORG", "PER"]), str(tmp_path / "dev"))
    (tmp_path / "test.bio").write_text("王 B-PER\n五 I-PER\n", encoding="utf-8")
    shards = {"data.train": tmp_path / "train.tfrecord-*", "data.dev": tmp_path / "dev.tfrecord-*"}
    config = tiny_config(str(tmp_path), [f"{k}={v}" for k, v in shards.items()] + [f"data.test={tmp_path / 'test.bio'}"])
    corpus = load_corpus(config)
    assert (corpus.train, corpus.dev) == (examples, examples[:2]) and corpus.test[0].spans == (Span(0, 2, "PER"),)
    with pytest.raises(data.DataError, match="test.bio: data.format is tfrecord, but this is no TFRecord shard"):
        load_corpus(tiny_config(str(tmp_path), [f"{k}={v}" for k, v in shards.items()]
                                + [f"data.test={tmp_path / 'test.bio'}", "data.format=tfrecord"]))


def _logged(run_dir: str, tag: str) -> dict[int, float]:
    """TensorBoard scalars of `tag` by step, from the run's event files."""
    values = {}
    for path in tf.io.gfile.glob(os.path.join(run_dir, "logs", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_a_resume_keeps_the_settings_its_steps_depend_on_and_history_is_this_runs(tmp_path, caplog):
    """A resume with another batch size ran no step at all (the restored step was past the new total) and
    exported epoch 1's weights; after checkpoints/ was deleted, history.json kept the old run's epochs."""
    from tfner.optimization import WarmupLinearDecay
    from tiny import train_tiny

    common = ["export.enabled=false", "train.checkpoint_every_steps=5"]
    first = train_tiny(str(tmp_path), [*common, "train.epochs=1"])
    assert [h["step"] for h in first["history"]] == [22]
    config = tiny_config(str(tmp_path))
    rates = _logged(config.run_dir, "learning_rate/backbone")  # the rate each step used, logged at its number
    schedule = WarmupLinearDecay(config.train.learning_rate, int(22 * config.train.warmup_ratio), 22)
    assert sorted(rates) == list(range(1, 23))
    np.testing.assert_allclose([rates[s] for s in (1, 2, 22)], [float(schedule(s - 1)) for s in (1, 2, 22)],
                               rtol=1e-6)

    with pytest.raises(ConfigError, match=r"holds checkpoints of a run with train.batch_size 16, not 8: the resumed "
                                          r"steps would not be those of either setting \(other batches"):
        train_tiny(str(tmp_path), [*common, "train.epochs=1", "train.batch_size=8"])
    with caplog.at_level("WARNING", logger="tfner.train"):
        second = train_tiny(str(tmp_path), [*common, "train.epochs=2"])  # to train on: accepted, and said
    assert "resumes with train.epochs 1, not 2: the learning-rate schedule now spans" in caplog.text
    assert [h["step"] for h in second["history"]] == [22, 44]

    tf.io.gfile.rmtree(os.path.join(config.run_dir, "checkpoints"))  # a fresh start in the same run_dir
    third = train_tiny(str(tmp_path), [*common, "train.epochs=1", "train.batch_size=8", "train.max_steps=3"])
    assert [h["step"] for h in third["history"]] == [3] and third["resumed_from_step"] is None  # not 22, 44
