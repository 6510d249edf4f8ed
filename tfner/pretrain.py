"""python -m tfner.pretrain: masked-LM pretraining of the backbone on unlabelled text.

    python -m tfner.pretrain --config configs/pretrain_resume.yaml
    python -m tfner.pretrain --config configs/pretrain_resume.yaml --set run_dir=runs/pretrain_more \
        --set model.init=runs/pretrain_resume/backbone          # continue from a backbone, in a run_dir of its own

Starts from scratch (model.* gives the shape) or from any checkpoint model.init accepts, reads the text files
of pretrain.text (one document per line, or JSON lines; streamed), masks whole characters (tfner.masked_lm)
and trains keras-hub's BertMaskedLM under the same tf.distribute strategies, checkpoints, exact resume and
progress output as python -m tfner.train (tfner.train.TrainingLoop): train.epochs passes over the corpus,
or train.max_steps steps. The corpus's first pretrain.held_out sequences are never trained on: after every
epoch they are scored (masked-character accuracy and perplexity, the exponent of the mean cross-entropy over
the masked characters, with masks fixed once).

Writes run_dir/config.yaml, vocab.txt, checkpoints/, logs/, history.json, metrics.json, and the backbone
as a keras-hub preset folder (pretrain.output, default run_dir/backbone: config.json with the backbone's
class, so its GELU, model.weights.h5, assets/tokenizer/vocabulary.txt), written to a temporary folder and
renamed into place. Fine-tune from it with `--set model.init=<that folder>`: tfner.checkpoint loads it
strictly, with its own vocabulary. The masked-LM head is not part of it (like BERT's cls/* tensors, which
tfner skips); it lives in the run's checkpoints.
"""

import argparse
import logging
import math
import os
import sys

import keras_hub
import tensorflow as tf

from tfner import checkpoint as checkpoint_lib
from tfner import data, masked_lm, run_lock, unlabelled
from tfner.config import Config, ConfigError, load_config, save_config
from tfner.model import build_backbone
from tfner.tokenizer import MASK, CharTokenizer, read_vocabulary, write_vocabulary
from tfner.train import (CLEAR_ERRORS, RESUME_KEYS, SHAPE_KEYS, TrainingLoop, _write_json, changed_settings,
                         check_checkpoint_vocabulary, check_resume_settings, input_pipelines, random_states,
                         read_configured_vocabulary, runs_as_chief, start_process, uses_static_shapes)

log = logging.getLogger("tfner.pretrain")


# What a resumed pretraining must keep, besides tfner.train's RESUME_KEYS (model.init among them: continuing from
# a backbone takes a new run_dir, or the run's checkpoints win and nothing of the backbone is read): the corpus
# and its held-out slice (another would train on what was held out, and score the two ends on different texts)
# and the masking.
PRETRAIN_RESUME_KEYS = ("pretrain.text", "pretrain.text_field", "pretrain.held_out", "pretrain.mask_rate",
                        "pretrain.mask_token_rate", "pretrain.random_token_rate", "pretrain.shuffle_buffer")


def check_config(config: Config) -> None:
    """Refuses settings pretraining cannot run with, naming the field (a ConfigError: main() prints it in one
    line, exit 2)."""
    p = config.pretrain
    if not p.text:
        raise ConfigError("pretrain.text is empty: name the unlabelled text files, e.g. --set pretrain.text=a.txt,b.jsonl")
    for name in ("mask_rate", "mask_token_rate", "random_token_rate"):
        if not 0.0 <= getattr(p, name) <= 1.0:
            raise ConfigError(f"pretrain.{name} must be in [0, 1], got {getattr(p, name)}; BERT uses "
                              f"{getattr(type(p), name)}")
    if p.mask_rate == 0.0:
        raise ConfigError("pretrain.mask_rate is 0: nothing would be predicted; BERT uses 0.15")
    if p.mask_token_rate + p.random_token_rate > 1.0:
        raise ConfigError(f"pretrain.mask_token_rate + pretrain.random_token_rate must be at most 1, got "
                          f"{p.mask_token_rate} + {p.random_token_rate}; BERT uses 0.8 + 0.1")
    if p.held_out < 0:
        raise ConfigError(f"pretrain.held_out must be 0 or more, got {p.held_out}; 0 holds nothing out")


def output_dir(config: Config) -> str:
    return config.pretrain.output or os.path.join(config.run_dir, "backbone")


# What keras-hub's save_to_preset writes into a backbone preset folder; a folder holding anything else is not
# one, and is never replaced by the backbone.
PRESET_ENTRIES = {"assets", "config.json", "metadata.json", "model.weights.h5", "tokenizer.json", "preprocessor.json"}
# What a pretraining run writes into its run_dir besides the backbone: pretrain.output must not be one of them.
RUN_ENTRIES = {"checkpoints", "logs", "config.yaml", "vocab.txt", "history.json", "metrics.json", ".lock"}


def check_output(config: Config) -> None:
    """Refuses a pretrain.output that writing the backbone would destroy: the run_dir or a folder holding it, a
    file or folder the run writes, or an existing folder that is not a backbone preset (it is replaced whole)."""
    output, run_dir = os.path.abspath(output_dir(config)), os.path.abspath(config.run_dir)
    inside = os.path.relpath(output, run_dir).split(os.sep)
    if output == run_dir or run_dir.startswith(output.rstrip(os.sep) + os.sep) or inside[0] in RUN_ENTRIES:
        raise ConfigError(f"pretrain.output {output_dir(config)} would replace the run's own files (run_dir "
                          f"{config.run_dir}); leave it empty for {os.path.join(config.run_dir, 'backbone')}, or name "
                          "a folder of its own")
    if os.path.isdir(output):
        foreign = sorted(set(os.listdir(output)) - PRESET_ENTRIES)
        if foreign:
            raise ConfigError(f"pretrain.output {output_dir(config)} holds {', '.join(foreign[:5])}: not a backbone "
                              "preset, and the backbone replaces the folder whole; name a new folder, or empty it")


def run_vocabulary(config: Config, corpus: unlabelled.Survey) -> list[str]:
    """data.vocab if set, else the checkpoint's (model.init), else the one built from the corpus."""
    if config.data.vocab:
        vocabulary = read_configured_vocabulary(config.data.vocab)
        check_checkpoint_vocabulary(config, vocabulary)
        return vocabulary
    if config.model.init != "scratch":
        return read_vocabulary(checkpoint_lib.vocabulary_path(config.model.init))
    return corpus.vocabulary


class MaskedLMTrainer(TrainingLoop):
    """Masked-LM training of a backbone on a text stream (the loop, checkpoints and resume of TrainingLoop).

    Args:
        config: Config. data.max_seq_length/lowercase, model.* (init or shape), train.*, pretrain.*.
        strategy: tf.distribute.Strategy. Where the steps run.
        vocabulary: list of str. The run's vocabulary.
        corpus: unlabelled.Survey. The corpus's sequences (held-out ones included), surveyed with the run's
            pretrain.held_out and one shard a pipeline (tfner.train.input_pipelines).
    """

    def __init__(self, config: Config, strategy: tf.distribute.Strategy, vocabulary: list[str],
                 corpus: unlabelled.Survey):
        p = config.pretrain
        num_sequences = corpus.sequences
        if MASK not in vocabulary:
            source = f"data.vocab {config.data.vocab}" if config.data.vocab else f"model.init {config.model.init}"
            raise ConfigError(f"the vocabulary of {source} has no {MASK} token, which masked-LM training needs; use "
                              f"a BERT vocabulary (it has {MASK})")
        self.max_seq_length = config.data.max_seq_length
        self.tokenizer = CharTokenizer(vocabulary, config.data.lowercase)
        self.num_train = num_sequences - p.held_out
        if num_sequences == 0:
            raise ConfigError(f"pretrain.text ({', '.join(p.text)}) holds no text: every line is blank, or its "
                              f"{p.text_field!r} field empty; check the files and pretrain.text_field")
        try:  # the backbone is saved with keras-hub's tokenizer at the end: a vocabulary it refuses fails now
            keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=config.data.lowercase)
        except Exception as e:
            raise ConfigError(f"the vocabulary cannot be saved with the backbone: keras-hub's BertTokenizer refuses "
                              f"it ({type(e).__name__}: {e}); remove the entry it names from the vocabulary") from None
        if self.num_train <= 0:  # said as such: "after the 5000 held out, -3657 are left" read as a bug
            raise ConfigError(
                f"pretrain.held_out {p.held_out} is not below the {num_sequences} sequences of pretrain.text (of up "
                f"to {self.max_seq_length - 2} characters): nothing is left to train on; hold out fewer (e.g. "
                f"pretrain.held_out={num_sequences // 10}) or give more text"
            )
        if self.num_train < config.train.batch_size:
            raise ConfigError(
                f"pretrain.text has {num_sequences} sequences of up to {self.max_seq_length - 2} characters; after "
                f"the {p.held_out} held out (pretrain.held_out), {self.num_train} are left, fewer than one batch "
                f"(train.batch_size {config.train.batch_size}); give more text or hold out less"
            )
        # An epoch is one pass over the sequences not held out, partial batches included (tfner.train.Trainer).
        if len(corpus.train_lengths) != input_pipelines(strategy):
            raise ValueError(f"the survey has {len(corpus.train_lengths)} shards; the strategy reads "
                             f"{input_pipelines(strategy)} (survey with shards=tfner.train.input_pipelines)")
        steps = data.batches_per_pass(corpus.train_lengths, config.train.batch_size, self.max_seq_length,
                                      uses_static_shapes(config, strategy), strategy.num_replicas_in_sync)
        super().__init__(config, strategy, steps)
        with strategy.scope():
            self.backbone = build_backbone(config.model, len(vocabulary), self.max_seq_length)
            self.model, head_variables = masked_lm.build_masked_lm(self.backbone)
            self.build_optimizers(self.model.trainable_variables, head_variables)
        self.track(model=self.model, random=random_states(self.model))
        self.source = unlabelled.sequence_dataset(p.text, self.max_seq_length - 2, p.text_field)
        # Scored after each epoch with masks drawn once (seed -1), so the figures of two epochs compare.
        self.held_out = list(masked_lm.masked_lm_batches(
            self.source.take(p.held_out), self.tokenizer, p, 64, self.max_seq_length, (-1, 0), bucket=False,
        )) if p.held_out else []
        self._score = tf.function(lambda f, l: tf.stack(masked_lm.token_losses(self.model, f, l)),
                                  reduce_retracing=True)

    # ---- data ----------------------------------------------------------------------------------------------
    def epoch_dataset(self, epoch: int, skip: int) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        config, seed = self.config, self.config.train.seed

        def dataset_fn(context: tf.distribute.InputContext):
            texts = self.source.skip(config.pretrain.held_out)
            if context.num_input_pipelines > 1:
                texts = texts.shard(context.num_input_pipelines, context.input_pipeline_id)
            # One permutation a pass (a bounded buffer for corpora larger than memory); the masks follow each
            # sequence's place in this order. Repeated after the batching, as tfner.data.batch_dataset does, so
            # that each pass ends with its buckets' partial batches and an epoch of steps_per_epoch steps is one
            # pass: repeated before, a bucket too sparse to fill a batch was never trained on.
            texts = texts.shuffle(config.pretrain.shuffle_buffer, seed=seed + epoch, reshuffle_each_iteration=False)
            return masked_lm.masked_lm_batches(
                texts,
                self.tokenizer,
                config.pretrain,
                context.get_per_replica_batch_size(self.global_batch),
                self.max_seq_length,
                seed=(seed * 1_000_003 + epoch, context.input_pipeline_id * 2**40),
                static_shapes=self.static_shapes,
                replicas=data.replicas_per_pipeline(context),
            ).repeat()

        return self.distribute(dataset_fn, skip)

    # ---- one step -------------------------------------------------------------------------------------------
    def replica_loss(self, batch):
        features, labels = batch
        cross_entropy, _, slots = masked_lm.token_losses(self.model, features, labels, training=True)
        # The mean over every masked character of the global batch: replicas add up their counts first.
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(slots))
        characters = tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32)) - 2 * tf.shape(features["token_ids"])[0]
        return cross_entropy / tf.maximum(total, 1.0), characters

    # ---- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Masked-character accuracy, mean cross-entropy and perplexity on the held-out sequences."""
        if not self.held_out:
            return {}
        totals = tf.zeros([3])
        for features, labels in self.held_out:
            totals += self._score(features, labels)
        cross_entropy, correct, slots = (float(x) for x in totals.numpy())
        loss = cross_entropy / max(slots, 1.0)
        return {"accuracy": correct / max(slots, 1.0), "loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                "masked": int(slots)}

    def end_epoch(self, record: dict) -> None:
        held_out = self.evaluate()
        if held_out:
            record.update({f"held_out_{k}": v for k, v in held_out.items() if k != "masked"})
            print(f"  held out: masked accuracy {held_out['accuracy']:.4f}  perplexity {held_out['perplexity']:.2f}  "
                  f"({held_out['masked']} masked characters)")

    def end_fit(self) -> None:
        if self.is_chief:
            save_backbone_preset(self.backbone, self.tokenizer.vocabulary, self.config.data.lowercase,
                                 output_dir(self.config))


def save_backbone_preset(backbone: keras_hub.models.BertBackbone, vocabulary: list[str], lowercase: bool,
                         folder: str) -> None:
    """Writes the backbone as a keras-hub preset folder that tfner.checkpoint.load_backbone reads strictly.

    config.json names the backbone's class (ErfGeluBertBackbone keeps exact GELU, BertBackbone the tanh form)
    and shape; model.weights.h5 the weights; the tokenizer entry writes assets/tokenizer/vocabulary.txt,
    where tfner.checkpoint.vocabulary_path looks. Written beside the target and renamed into place.
    """
    staging = folder.rstrip("/") + ".tmp"
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    backbone.save_to_preset(staging)
    keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase).save_to_preset(staging)
    if tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)
    tf.io.gfile.rename(staging, folder)
    log.info("wrote the backbone to %s", folder)


def prepare_run_dir(config: Config, vocabulary: list[str]) -> None:
    """Writes config.yaml and vocab.txt; a run_dir pretrained with another vocabulary or shape is refused.

    Checked before anything is written: the restore would fail on the checkpoints' shapes anyway, but only after
    config.yaml had been rewritten to describe a model its checkpoints are not.
    """
    os.makedirs(config.run_dir, exist_ok=True)
    vocab_path = os.path.join(config.run_dir, "vocab.txt")
    if os.path.exists(vocab_path) and read_vocabulary(vocab_path) != vocabulary:
        raise ConfigError(f"run_dir {config.run_dir} holds a run with another vocabulary ({vocab_path}); choose a "
                          "new run_dir (or delete the old one) to start afresh")
    differences = changed_settings(config, tuple(k for k in SHAPE_KEYS if k != "model.head"))  # no tagging head
    if differences:
        raise ConfigError(f"run_dir {config.run_dir} holds another run: {'; '.join(differences)}. Choose a new "
                          "run_dir (or delete the old one) to start afresh, or run again with that run's settings "
                          "to resume it")
    check_resume_settings(config, RESUME_KEYS + PRETRAIN_RESUME_KEYS)
    save_config(config, os.path.join(config.run_dir, "config.yaml"))
    write_vocabulary(vocabulary, vocab_path)


def pretrain(config: Config, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Pretrains, scores the held-out slice each epoch, writes the backbone; returns the summary."""
    check_config(config)
    if "://" not in output_dir(config) + config.run_dir:  # local paths; on gs:// the folder is the run's to manage
        check_output(config)
    strategy = start_process(config, strategy)
    with run_lock.hold(config.run_dir, enabled=runs_as_chief(strategy)):
        corpus = unlabelled.survey(config.pretrain.text, config.data.max_seq_length - 2, config.pretrain.text_field,
                                   config.data.lowercase, config.pretrain.held_out, input_pipelines(strategy))
        vocabulary = run_vocabulary(config, corpus)
        trainer = MaskedLMTrainer(config, strategy, vocabulary, corpus)
        if trainer.is_chief:
            prepare_run_dir(config, vocabulary)
        before = trainer.starting_figure("held_out_before", trainer.evaluate)  # random, or the checkpoint given
        summary = trainer.fit()
        summary.update({
            "corpus": {"sequences": corpus.sequences, "characters": corpus.characters,
                       "held_out_sequences": config.pretrain.held_out, "vocabulary": len(vocabulary)},
            "held_out_before": before,
            "held_out": trainer.evaluate(),
            "num_replicas": strategy.num_replicas_in_sync,
            "backbone": output_dir(config),
        })
        if trainer.is_chief:
            _write_json(os.path.join(config.run_dir, "metrics.json"), summary)
        trainer.remove_scratch()
        return summary


def print_summary(summary: dict, config: Config) -> None:
    print("\n== summary ==")
    corpus = summary["corpus"]
    print(f"corpus           {corpus['sequences']:,} sequences, {corpus['characters']:,} characters "
          f"({corpus['held_out_sequences']:,} held out), vocabulary {corpus['vocabulary']:,}")
    for name, figures in (("held out before", summary.get("held_out_before")), ("held out after", summary["held_out"])):
        if figures:
            print(f"{name:<17}masked accuracy {figures['accuracy']:.4f}, perplexity {figures['perplexity']:.2f}")
    if summary.get("train_tokens_per_second"):
        print(f"cost             {summary['steps']} steps, {summary['train_seconds']:.1f} s in all, "
              f"{summary['step_seconds']:.1f} s in train steps: {summary['train_tokens_per_second']:.0f} characters/s")
    print(f"run dir          {config.run_dir}")
    print(f"backbone         {summary['backbone']}")
    print(f"fine-tune it:    python -m tfner.train --config CONFIG --set model.init={summary['backbone']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML experiment file (a pretrain section, plus data/model/train)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set pretrain.text=corpus.txt (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, args.set)
        summary = pretrain(config)
    except CLEAR_ERRORS as e:  # the message names the file, line or key: no traceback, as python -m tfner.train
        print(f"tfner.pretrain: {e}", file=sys.stderr)
        return 2
    print_summary(summary, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
