"""python -m tfner.distill: distil a trained tagger (the teacher) into a smaller one (the student).

    python -m tfner.distill --config configs/distill_resume.yaml
    python -m tfner.distill --config configs/distill_resume.yaml --set distill.teacher=runs/resume_ner \
        --set distill.unlabelled=../shared/data/cluener2020/train.json

The teacher is a run_dir of python -m tfner.train (its config.yaml, vocab.txt, labels.txt, backbone.json and
best/ weights). The student is model.* of this config (e.g. 2 layers, hidden 128, from scratch or from a
pretrained backbone) with the teacher's vocabulary, tokenizer settings and tag set. It trains on the
labelled data of data.train, plus any unlabelled text of distill.unlabelled, with

    labelled:    soft_weight * T^2 * KL(teacher || student) + (1 - soft_weight) * gold loss
    unlabelled:  soft_weight * T^2 * KL(teacher || student)

per sentence, averaged over the batch (each step takes one batch of each). KL is summed over characters
between the per-character tag distributions at temperature T: CRF marginals (forward-backward) of
emissions / T for a CRF head, softmax(emissions / T) for a softmax head. tfner's CRF layer takes the
temperature on the emissions only; its transition scores stay as learned. The T^2 keeps the soft gradients'
scale independent of T (Hinton et al., 2015). The teacher runs in every step, on the student's batch, in
inference mode; its weights never change.

The rest is python -m tfner.train's: the same loop, strategies, checkpoints and exact resume, dev F1 each
epoch (plus the student's agreement with the teacher: the share of dev characters whose decoded tag is the
teacher's), best-on-dev weights, the export, test F1 through the export. The run_dir is an ordinary run:
tfner.export, tfner.evaluate, tfner.serve and the clients take it or its export unchanged.

A teacher given as an export is refused: its serving signature returns decoded tags, not the distributions
distillation learns from.
"""

import argparse
import logging
import os
import sys

import tensorflow as tf

from tfner import checkpoint, data
from tfner import export as export_lib
from tfner import run_lock, unlabelled
from tfner.config import Config, ConfigError, load_config
from tfner.inference import NerModule
from tfner.labels import TagSet, parse_labels_file
from tfner.model import NerTagger
from tfner.predict import resolve_version
from tfner.tokenizer import read_vocabulary
from tfner.train import (CLEAR_ERRORS, RESUME_KEYS, Corpus, Trainer, load_corpus, print_summary, run, runs_as_chief,
                         start_process)

log = logging.getLogger("tfner.distill")


def tag_distributions(model: NerTagger, emissions: tf.Tensor, mask: tf.Tensor, temperature: float) -> tf.Tensor:
    """float32 [B, L, tags]: per-character tag probabilities at a temperature, zero where mask is False."""
    scaled = emissions / temperature
    if model.crf is not None:
        return model.crf.marginals(scaled, mask)
    return tf.nn.softmax(scaled) * tf.cast(mask, tf.float32)[..., None]


def distillation_loss(teacher: tf.Tensor, student: tf.Tensor, temperature: float) -> tf.Tensor:
    """[B]: T^2 * KL(teacher || student), summed over characters (masked ones are all-zero rows: they add 0)."""
    # xlogy: 0 * log 0 = 0 where the teacher gives a tag no mass; a floor keeps log of the student finite.
    kl = tf.math.xlogy(teacher, teacher) - teacher * tf.math.log(tf.maximum(student, 1e-12))
    return temperature**2 * tf.reduce_sum(kl, axis=[1, 2])


def read_teacher(config: Config) -> tuple[Config, TagSet]:
    """The teacher run's config and tag set; the student's config adopts its vocabulary and lowercasing.

    Refusals are ConfigErrors naming the key: main() prints them in one line, exit 2.
    """
    teacher = config.distill.teacher
    if not teacher:
        raise ConfigError("distill.teacher is empty: name the teacher's run_dir, e.g. --set distill.teacher=runs/resume_ner")
    if not tf.io.gfile.exists(os.path.join(teacher, "config.yaml")):
        try:
            resolve_version(teacher)
            is_export = True
        except FileNotFoundError:
            is_export = False
        if is_export:
            raise ConfigError(
                f"distill.teacher {teacher} is an export: its serving signature returns decoded tags, not the "
                "per-character tag distributions a student learns from; give the run_dir it was exported from "
                "(the folder with config.yaml, vocab.txt, labels.txt and best/)"
            )
        raise FileNotFoundError(f"distill.teacher {teacher}: no config.yaml there; give the run_dir of a "
                                "python -m tfner.train run")
    export_lib.check_training_run(teacher, role="distill.teacher")  # a train run writes them at its start
    teacher_config = load_config(os.path.join(teacher, "config.yaml"))
    labels_path = os.path.join(teacher, "labels.txt")
    with tf.io.gfile.GFile(labels_path) as f:
        tag_set = TagSet(parse_labels_file(f.read(), labels_path))
    vocab = os.path.join(teacher, "vocab.txt")
    if config.data.vocab and os.path.abspath(config.data.vocab) != os.path.abspath(vocab):
        raise ConfigError(f"data.vocab {config.data.vocab}: the student shares the teacher's vocabulary ({vocab}); "
                         "leave data.vocab empty")
    if config.data.max_seq_length > teacher_config.data.max_seq_length:
        raise ConfigError(
            f"data.max_seq_length {config.data.max_seq_length} is above the teacher's "
            f"{teacher_config.data.max_seq_length} ({teacher}/config.yaml): the teacher reads the student's batches "
            "and has no position embeddings beyond its own length; set data.max_seq_length to at most "
            f"{teacher_config.data.max_seq_length}"
        )
    if config.model.init != "scratch":
        # The student reads the teacher's token ids; a checkpoint of another vocabulary (even one of the same
        # size, which nothing later would notice) would look every id up in the wrong embedding row.
        try:
            own = checkpoint.vocabulary_path(config.model.init)
        except (FileNotFoundError, ValueError):
            own = None  # none ships with it: only its embedding count can be checked (tfner.model)
        if own is not None and read_vocabulary(own) != read_vocabulary(vocab):
            raise ConfigError(f"model.init {config.model.init}: its vocabulary ({own}) is not the teacher's ({vocab}); "
                              "the student reads the teacher's token ids: start it from a checkpoint of the "
                              "teacher's vocabulary, or from scratch")
    config.data.vocab = vocab
    config.data.lowercase = teacher_config.data.lowercase
    return teacher_config, tag_set


def load_distill_corpus(config: Config, tag_set: TagSet) -> Corpus:
    """The labelled data of config.data, with the teacher's tag set (types it does not know are an error)."""
    corpus = load_corpus(config)
    unknown = sorted(set(data.entity_types(corpus.train)) - set(tag_set.labels))
    if unknown:
        raise data.DataError(f"data.train has entity types the teacher ({config.distill.teacher}) was not trained on: "
                         f"{unknown}; distil on data with the teacher's types {tag_set.labels}")
    corpus.tag_set = tag_set
    return corpus


# The recipe a resumed distillation must keep, besides tfner.train's: another teacher, temperature, weight or
# unlabelled set would make the resumed steps those of neither run.
DISTILL_RESUME_KEYS = ("distill.teacher", "distill.temperature", "distill.soft_weight", "distill.unlabelled",
                       "distill.text_field")


class DistillTrainer(Trainer):
    """A Trainer whose loss mixes the teacher's soft targets with the gold tags (see the module docstring).

    Args:
        config: Config. The student's run (model.* is the student's shape; distill.* the recipe).
        corpus: Corpus. Labelled data, with the teacher's vocabulary and tag set.
        strategy: tf.distribute.Strategy. Where the steps run; the teacher must be built under its scope.
        teacher: NerModule. The teacher's model and tokenizer (tfner.export.load_run).
        extra_texts: list of str. Unlabelled texts (soft loss only); may be empty.
    """

    resume_keys = RESUME_KEYS + DISTILL_RESUME_KEYS

    def __init__(self, config: Config, corpus: Corpus, strategy: tf.distribute.Strategy, teacher: NerModule,
                 extra_texts: list[str]):
        d = config.distill
        if d.temperature <= 0:
            raise ConfigError(f"distill.temperature must be above 0, got {d.temperature}; give a positive "
                              "temperature (tfner's default is 2)")
        if not 0.0 <= d.soft_weight <= 1.0:
            raise ConfigError(f"distill.soft_weight must be in [0, 1], got {d.soft_weight}; tfner's default is 0.5")
        self.teacher = teacher.model
        self.teacher.trainable = False
        super().__init__(config, corpus, strategy)
        self.teacher_inference = NerModule(self.teacher, teacher.tokenizer, corpus.tag_set, teacher.max_seq_length,
                                           teacher.window - teacher.stride, with_confidence=False,
                                           group_windows=teacher.group_windows)
        examples = data.split_long([data.Example(text) for text in extra_texts], self.max_seq_length - 2)
        self.extra_source = data.examples_dataset(examples, corpus.tag_set) if examples else None

    # ---- data ----------------------------------------------------------------------------------------------
    def replica_dataset(self, context: tf.distribute.InputContext, epoch: int) -> tf.data.Dataset:
        """Labelled batches, zipped with unlabelled ones when there is unlabelled text."""
        labelled = super().replica_dataset(context, epoch)
        if self.extra_source is None:
            return labelled
        return tf.data.Dataset.zip((labelled, self.batches(self.extra_source, context, epoch)))

    # ---- one step -------------------------------------------------------------------------------------------
    def soft_loss(self, features: dict, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(student emissions, [B] distillation loss) for one batch."""
        temperature = self.config.distill.temperature
        teacher = tag_distributions(self.teacher, self.teacher(features, training=False), mask, temperature)
        emissions = self.model(features, training=True)
        student = tag_distributions(self.model, emissions, mask, temperature)
        return emissions, distillation_loss(tf.stop_gradient(teacher), student, temperature)

    def replica_loss(self, batch):
        weight = self.config.distill.soft_weight
        (features, labels), extra = batch if self.extra_source is not None else (batch, None)
        emissions, soft = self.soft_loss(features, labels["tag_mask"])
        gold = self.model.example_loss(emissions, labels["tags"], labels["tag_mask"])
        loss = tf.nn.compute_average_loss(weight * soft + (1.0 - weight) * gold, global_batch_size=self.global_batch)
        tokens = tf.reduce_sum(tf.cast(labels["tag_mask"], tf.int32))
        if extra is not None:
            features, labels = extra
            _, soft = self.soft_loss(features, labels["tag_mask"])
            loss += tf.nn.compute_average_loss(weight * soft, global_batch_size=self.global_batch)
            tokens += tf.reduce_sum(tf.cast(labels["tag_mask"], tf.int32))
        return loss, tokens

    # ---- evaluation -----------------------------------------------------------------------------------------
    def agreement(self, texts: list[str], batch_size: int = 64) -> float:
        """The share of characters whose decoded tag (Viterbi, or argmax for softmax) is the teacher's."""
        same = total = 0
        for i in range(0, len(texts), batch_size):
            batch = tf.constant(texts[i : i + batch_size])
            student = self.inference(batch)["tags"].numpy()
            teacher = self.teacher_inference(batch)["tags"].numpy()
            for row, text in enumerate(texts[i : i + batch_size]):
                n = len(text)
                same += int((student[row, :n] == teacher[row, :n]).sum())
                total += n
        return same / max(total, 1)

    def end_epoch(self, record: dict) -> None:
        super().end_epoch(record)
        if self.corpus.dev:
            record["dev_agreement"] = self.agreement([e.text for e in self.corpus.dev])
            print(f"  dev: agreement with the teacher {record['dev_agreement']:.4f}")

    def fit(self) -> dict:
        dev_texts = [e.text for e in self.corpus.dev]
        # The student as initialised.
        before = self.starting_figure("agreement_before", lambda: self.agreement(dev_texts)) if dev_texts else None
        summary = super().fit()
        unlabelled = int(self.extra_source.cardinality()) if self.extra_source else 0
        # Each labelled step takes one batch of the unlabelled text, so an epoch reads at most this many of them
        # (a new shuffle each epoch, through a buffer of 100,000: past that many, the set's end is never read).
        per_epoch = min(unlabelled, self.steps_per_epoch * self.config.train.batch_size)
        summary["distill"] = {"teacher": self.config.distill.teacher, "dev_agreement_before": before,
                              "unlabelled_sequences": unlabelled, "unlabelled_sequences_per_epoch": per_epoch}
        return summary


def distill(config: Config, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Distils the teacher into the configured student, scores and exports it; returns the summary."""
    strategy = start_process(config, strategy)
    with run_lock.hold(config.run_dir, enabled=runs_as_chief(strategy)):
        _, tag_set = read_teacher(config)
        corpus = load_distill_corpus(config, tag_set)
        with strategy.scope():
            # float32 soft targets, whatever the teacher's export.precision or the student's training policy.
            teacher = export_lib.load_run(config.distill.teacher, precision="float32")
        extra = list(unlabelled.iter_documents(config.distill.unlabelled, config.distill.text_field)) \
            if config.distill.unlabelled else []
        return run(DistillTrainer(config, corpus, strategy, teacher, extra))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.distill", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML experiment file (the student's model.*, data, and a distill section)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set distill.teacher=runs/resume_ner (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, args.set)
        summary = distill(config)
    except CLEAR_ERRORS as e:  # the message names the file, line or key: no traceback, as python -m tfner.train
        print(f"tfner.distill: {e}", file=sys.stderr)
        return 2
    if summary["distill"]["dev_agreement_before"] is not None and summary["history"]:
        print(f"\nagreement with the teacher on dev: {summary['distill']['dev_agreement_before']:.4f} as initialised, "
              f"{summary['history'][-1].get('dev_agreement', float('nan')):.4f} after the last epoch")
    print_summary(summary, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
