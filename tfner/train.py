"""python -m tfner.train: fine-tune (or train from scratch) a tagger, score it, export it.

    python -m tfner.train                                   # the built-in demo (tfner.demo)
    python -m tfner.train --config configs/resume_ner.yaml --set train.epochs=5

Everything of a run lives in `run_dir`: config.yaml (resolved), vocab.txt, labels.txt, backbone.json (the
backbone's class and shape, so that exporting needs no original checkpoint), checkpoints/ (model,
optimizers, step), best/ (the best-on-dev weights), logs/ (TensorBoard), metrics.json. Re-running the same
command after a crash resumes from the last checkpoint: the step fixes the epoch and the position in it,
every epoch's order comes from seed + epoch, and dropout's random state is checkpointed, so the resumed run
ends where an uninterrupted one would.
"""

import argparse
import collections
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time

import keras
import tensorflow as tf
import yaml
from tensorflow.core.framework import summary_pb2

from tfner import data, demo, faults, metrics, run_lock
from tfner import export as export_lib
from tfner import checkpoint as checkpoint_lib
from tfner.atomic_write import write_atomically
from tfner.config import Config, ConfigError, load_config, save_config
from tfner.distribute import make_strategy
from tfner.evaluate import evaluate_saved_model
from tfner.inference import NerModule
from tfner.labels import TagSet, parse_labels_file
from tfner.model import build_tagger, save_backbone_config
from tfner.optimization import make_optimizers
from tfner.predict import entities_from_outputs
from tfner.tokenizer import CharTokenizer, build_vocabulary, read_vocabulary, write_vocabulary

log = logging.getLogger("tfner.train")


def read_configured_vocabulary(path: str) -> list[str]:
    """data.vocab's tokens; a missing file or one without BERT's special tokens is a ConfigError naming the key."""
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"data.vocab: {path}: no such file; name a BERT vocab.txt, or leave data.vocab empty for "
                          "the checkpoint's own (from scratch: one built from data.train)")
    if tf.io.gfile.isdir(path):
        raise ConfigError(f"data.vocab: {path} is a folder; name the vocab.txt file in it")
    try:
        return read_vocabulary(path)
    except ValueError as e:  # not a BERT vocab.txt
        raise ConfigError(f"data.vocab: {e}") from None


def check_checkpoint_vocabulary(config: Config, vocabulary: list[str]) -> None:
    """Refuses a data.vocab other than the vocabulary model.init's checkpoint ships (where it ships one).

    The checkpoint's embedding rows are indexed by its own vocabulary's ids: another file of the same size (a
    reordered or edited copy) reads every character through another character's row, with no error anywhere.
    """
    if not config.data.vocab or config.model.init == "scratch":
        return
    try:
        own_path = checkpoint_lib.vocabulary_path(config.model.init)
    except FileNotFoundError:  # a checkpoint without a vocabulary: data.vocab is the only one there is
        return
    own = read_vocabulary(own_path)
    if own != vocabulary:
        first = next((i for i, (a, b) in enumerate(zip(own, vocabulary)) if a != b), min(len(own), len(vocabulary)))
        raise ConfigError(
            f"data.vocab {config.data.vocab} ({len(vocabulary)} tokens) is not model.init's own vocabulary "
            f"{own_path} ({len(own)} tokens; they first differ at id {first}): the checkpoint's embedding rows "
            "follow its own ids. Leave data.vocab empty to use the checkpoint's"
        )


@dataclasses.dataclass
class Corpus:
    """A run's data, read once: training, dev and test examples, tags, vocab."""

    train: list[data.Example]
    dev: list[data.Example]
    test: list[data.Example]
    tag_set: TagSet
    vocabulary: list[str]


def load_corpus(config: Config) -> Corpus:
    """Reads the configured data and fixes the tag set and vocabulary of the run."""
    if not config.data.train:
        raise ConfigError("data.train is empty: name the training file(s) in the config or with --set data.train=PATH")
    d = config.data
    configured_vocabulary = read_configured_vocabulary(d.vocab) if d.vocab else None  # fails before the data read

    def read(patterns):
        return data.read_examples(patterns, d.format, d.scheme, d.lost_characters)

    train = read(d.train)
    dev = read(d.dev) if d.dev else []
    test = read(d.test) if d.test else []
    if not data.entity_types(train):
        raise data.DataError(
            f"data.train ({', '.join(d.train)}): {len(train)} sentence(s) and not one entity; a tagger learns from "
            "labelled entities: check the files and data.format"
        )
    tag_set = TagSet(data.entity_types(train))
    for split, examples in (("dev", dev), ("test", test)):
        if examples and not data.entity_types(examples):  # scored, it is F1 0 every epoch; best/ stays epoch 1's
            raise data.DataError(
                f"data.{split} ({', '.join(getattr(d, split))}): {len(examples)} sentence(s) and not one entity, so "
                f"its F1 would be 0 every epoch: check the files and data.format (CLUENER's test.json is "
                f"unlabelled), or leave data.{split} empty"
            )
        unseen = sorted(set(data.entity_types(examples)) - set(tag_set.labels))
        if unseen:
            mentions = sum(s.label in unseen for e in examples for s in e.spans)
            log.warning(
                "data.%s (%s) has entity types that data.train never shows: %s (%d mention(s)); the model cannot "
                "predict them, so they count as misses: add examples of them to data.train, or drop them from "
                "data.%s", split, ", ".join(getattr(d, split)), unseen, mentions, split,
            )
    if d.vocab:
        vocabulary = configured_vocabulary
        check_checkpoint_vocabulary(config, vocabulary)
    elif config.model.init != "scratch":
        vocabulary = read_vocabulary(checkpoint_lib.vocabulary_path(config.model.init))
    else:
        vocabulary = build_vocabulary((e.text for e in train), d.lowercase)
    return Corpus(train, dev, test, tag_set, vocabulary)


def random_states(model: keras.Model) -> dict:
    """The state of every Keras SeedGenerator in the model (dropout's randomness), for the checkpoint.

    Keras does not track these in tf.train.Checkpoint, and without them a resumed run would draw other
    dropout masks than an uninterrupted one.
    """
    generators = [
        generator
        for layer in model._flatten_layers(include_self=True)  # Keras has no public walk of nested layers
        for generator in getattr(layer, "_seed_generators", [])
    ]
    return {f"seed_generator_{i}": generator.state for i, generator in enumerate(generators)}


def summed_over_replicas(gradients: list) -> list:
    """The replicas' gradients summed (call in a replica context): the gradient of the global batch's loss.

    Summed here rather than in the optimizers, because clipping by the global norm must see the sum: each
    replica clipping its own share would clip N replicas' training up to N times more weakly than one device's
    on the same global batch.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return gradients
    present = [g for g in gradients if g is not None]
    if not present:  # a group none of whose variables the loss reaches
        return gradients
    summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in gradients]


def clipped(gradients: list, clip_norm: float, optimizer: keras.optimizers.Optimizer) -> list:
    """Gradients scaled down to a global norm of at most `clip_norm`, measured without the loss scale.

    Under mixed_float16 the gradients are those of the scaled loss, which the LossScaleOptimizer divides by
    its scale later; clipping them at clip_norm x scale clips the true gradients at clip_norm. A step whose
    gradients are not finite stays not finite, so the LossScaleOptimizer skips it and lowers its scale.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        clip_norm = clip_norm * tf.cast(optimizer.dynamic_scale, tf.float32)
    return tf.clip_by_global_norm(gradients, clip_norm)[0]


_WITHOUT_AUTOTUNE = tf.data.Options()
_WITHOUT_AUTOTUNE.autotune.enabled = False


def _runs_on_one_cpu(strategy: tf.distribute.Strategy) -> bool:
    """Whether the strategy is one_device on this host's CPU (train.distribute=one_device or auto, no GPU)."""
    if not isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return False
    (device,) = strategy.extended.worker_devices
    return tf.DeviceSpec.from_string(device).device_type == "CPU"


def uses_static_shapes(config: Config, strategy: tf.distribute.Strategy) -> bool:
    """Whether batches have one shape a bucket (last ones filled up with empty rows): train.static_shapes, or a TPU."""
    return config.train.static_shapes or isinstance(strategy, tf.distribute.TPUStrategy)


def input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """How many input pipelines the strategy runs: one a worker (multi-worker), one a host (TPU), else one."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return max(1, strategy.extended.num_hosts)
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        spec = resolver.cluster_spec()
        return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs))
    return 1


class TrainingLoop:
    """Steps over epochs under a tf.distribute strategy, with checkpoints, exact resume, progress and TensorBoard.

    The loop of python -m tfner.train, shared by tfner.pretrain and tfner.distill so that all three resume,
    checkpoint and report alike. A subclass builds its model under `strategy.scope()`, calls
    `build_optimizers` and then `track(...)` with what its checkpoints hold besides the optimizers and the
    step, and provides:

    - `epoch_dataset(epoch, skip)`: that epoch's batches from step `skip` on, through `distribute`, a function
      of the seed and the epoch only, so a resumed run sees the batches an uninterrupted one would;
    - `replica_loss(batch)`: (loss scaled for the global batch, tokens) of one replica's batch;
    - `end_epoch(record)`: scores the model after an epoch and keeps the best; figures added to record go
      to history.json and TensorBoard (`dev_f1` as `dev/f1`);
    - `end_fit()`: anything owed once the last step is done (e.g. a best/ for a run resumed after it).

    Args:
        config: Config. The run; train.* and run_dir are read here.
        strategy: tf.distribute.Strategy. Where the steps run.
        steps_per_epoch: int. Global batches per epoch, the same on every worker (multi-worker all-reduces
            would hang otherwise), so an epoch is a fixed count of batches over a repeated stream: one pass,
            partial batches included (data.batches_per_pass).
    """

    def __init__(self, config: Config, strategy: tf.distribute.Strategy, steps_per_epoch: int):
        self.config, self.strategy = config, strategy
        t = config.train
        self.global_batch = t.batch_size
        if self.global_batch % strategy.num_replicas_in_sync:
            replicas = strategy.num_replicas_in_sync
            raise ConfigError(
                f"train.batch_size {t.batch_size} does not divide evenly over the {replicas} replicas of "
                f"train.distribute {config.train.distribute!r}; set train.batch_size to a multiple of {replicas}"
            )
        self.static_shapes = uses_static_shapes(config, strategy)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = self.steps_per_epoch * t.epochs
        if t.max_steps:
            self.total_steps = min(self.total_steps, t.max_steps)
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.parameter_groups = {}
        self.is_chief = runs_as_chief(strategy)

    def build_optimizers(self, variables: list, head_variables: list) -> None:
        """AdamW for the backbone and for the freshly initialised head (tfner.optimization); call under scope.

        They are built now, not at the first step, so that a restore fills their slots instead of deferring.
        """
        head_ids = {id(v) for v in head_variables}
        groups = {"backbone": [v for v in variables if id(v) not in head_ids],
                  "head": [v for v in variables if id(v) in head_ids]}
        for (name, group), optimizer in zip(groups.items(), make_optimizers(self.config.train, self.total_steps)):
            optimizer.build(group)
            self.parameter_groups[name] = (optimizer, group)

    def track(self, **objects) -> None:
        """Checkpoints hold the step, the optimizers and `objects` (the model, random states, best score...)."""
        optimizers = {f"{name}_optimizer": optimizer for name, (optimizer, _) in self.parameter_groups.items()}
        self.checkpoint = tf.train.Checkpoint(step=self.step, **optimizers, **objects)
        checkpoint_dir = os.path.join(self.config.run_dir, "checkpoints")
        if not self.is_chief:  # other workers write too (collective save), but to a scratch folder
            checkpoint_dir = os.path.join(self.config.run_dir, f".worker-{self.strategy.cluster_resolver.task_id}")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, checkpoint_dir, max_to_keep=self.config.train.keep_checkpoints
        )

    def resume_manager(self) -> tf.train.CheckpointManager:
        """Where a resume reads: the chief's checkpoints, on every worker.

        Other workers write to scratch folders (deleted at the end of a run, absent on a replaced machine); a
        worker resuming from its own would start at another step than the chief, with other weights. Only where
        the chief's folder is not visible (run_dir not shared) does a worker fall back to its own copy.
        """
        if self.is_chief:
            return self.manager
        chief = tf.train.CheckpointManager(self.checkpoint, os.path.join(self.config.run_dir, "checkpoints"),
                                           max_to_keep=None)
        return chief if chief.checkpoints else self.manager

    def remove_scratch(self) -> None:
        """At the end of a run, a non-chief worker deletes its scratch checkpoints (the chief's are the run's).

        Through tf.io.gfile: run_dir is often on shared storage such as gs://, which shutil would skip in silence.
        """
        if not self.is_chief:
            with contextlib.suppress(tf.errors.NotFoundError):
                tf.io.gfile.rmtree(self.manager.directory)

    def check_workers_agree(self) -> None:
        """Every worker resumes at one step, or none starts: different steps mean mismatched collectives."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return

        def replica():
            step = tf.cast(tf.identity(self.step), tf.float64)
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([1.0, step, step * step]))

        sums = tf.function(lambda: self.strategy.run(replica))()
        n, total, squares = self.strategy.experimental_local_results(sums)[0].numpy()
        if n * squares != total * total:  # Cauchy-Schwarz: equal only when every worker's step is the same
            raise RuntimeError(
                f"the workers resumed at different steps (this one at {int(self.step.numpy())}): every worker must "
                f"read the chief's {os.path.join(self.config.run_dir, 'checkpoints')}; put run_dir on a filesystem "
                "all workers share (NFS, GCS), or delete the run's checkpoints everywhere to start afresh"
            )

    def starting_figure(self, name: str, measure):
        """`measure()` of the model before its first step, measured when the run starts and kept in
        run_dir/NAME.json: a resumed run reads it back and reports it too."""
        path = os.path.join(self.config.run_dir, name + ".json")
        if self.resume_manager().latest_checkpoint is not None:
            return _read_json(path, default=None)
        value = measure()
        if self.is_chief:
            _write_json(path, value)
        return value

    # ---- one step -------------------------------------------------------------------------------------------
    def replica_loss(self, batch) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def make_train_step(self):
        clip = self.config.train.clip_norm
        groups = list(self.parameter_groups.values())

        def replica_step(batch):
            with tf.GradientTape(persistent=True) as tape:
                loss, tokens = self.replica_loss(batch)
                # Each optimizer scales the loss itself under mixed_float16 (a no-op otherwise). A loop, not a
                # comprehension: AutoGraph cannot convert a function whose comprehension reads its closure.
                targets = []
                for optimizer, _ in groups:
                    targets.append(optimizer.scale_loss(loss))
            for (optimizer, variables), target in zip(groups, targets):
                gradients = summed_over_replicas(tape.gradient(target, variables))
                if clip:
                    gradients = clipped(gradients, clip, optimizer)
                optimizer.apply_gradients(zip(gradients, variables))  # they are summed already (make_optimizers)
            del tape
            return loss, tokens

        @tf.function
        def train_step(iterator):
            loss, tokens = self.strategy.run(replica_step, args=(next(iterator),))
            sum_ = tf.distribute.ReduceOp.SUM
            return self.strategy.reduce(sum_, loss, axis=None), self.strategy.reduce(sum_, tokens, axis=None)

        return train_step

    # ---- data ----------------------------------------------------------------------------------------------
    def distribute(self, dataset_fn, skip: int = 0) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        """An epoch's batches for fit() from step `skip` on, from `dataset_fn(input_context)`, one input pipeline.

        A step takes one batch for each replica a pipeline feeds (N from the one pipeline of N mirrored GPUs), so
        resuming at step `skip` skips skip x N of the pipeline's batches.

        fit() drops each epoch's iterator when the next epoch begins, and dropping one waited for tf.data's
        autotuning threads: stalls of up to 40 s at epoch starts on a 2-core CPU (benchmarks/README.md, "The
        epoch-start stall"; benchmarks/epoch_starts.py measures them). So the pipelines run without autotuning
        (their parallel maps take one call a core, their prefetch buffers still grow on demand), and on a single
        CPU device they are iterated as they are: the strategy's input layer would add a second pipeline, which
        autotunes regardless, only to copy host tensors to the host.
        """
        def replica_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
            batches = dataset_fn(context).skip(skip * data.replicas_per_pipeline(context))
            return batches.with_options(_WITHOUT_AUTOTUNE)

        if _runs_on_one_cpu(self.strategy):
            return replica_dataset(tf.distribute.InputContext())
        return self.strategy.distribute_datasets_from_function(replica_dataset)

    # ---- hooks ----------------------------------------------------------------------------------------------
    def epoch_dataset(self, epoch: int, skip: int) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        raise NotImplementedError

    def end_epoch(self, record: dict) -> None:
        pass

    def end_fit(self) -> None:
        pass

    # ---- the loop -------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        config, t = self.config, self.config.train
        resumed_from = None
        restored = restore_newest_intact(self.checkpoint, self.resume_manager())
        self.check_workers_agree()
        if restored:
            resumed_from = int(self.step.numpy())
            print(f"resumed from {restored} at step {resumed_from}")
        writer = tf.summary.create_file_writer(os.path.join(config.run_dir, "logs")) if self.is_chief else None
        train_step = self.make_train_step()
        history_path = os.path.join(config.run_dir, "history.json")
        # The epochs finished before a resume; none after a fresh start (checkpoints/ deleted: the old run's
        # records would stay), and none past the step resumed from.
        history = [h for h in _read_json(history_path, default=[]) if h["step"] <= resumed_from] if restored else []
        started, tokens_seen, step_seconds = time.time(), 0, 0.0
        while int(self.step.numpy()) < self.total_steps:
            epoch, position = divmod(int(self.step.numpy()), self.steps_per_epoch)
            steps_this_epoch = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch) - position
            iterator = iter(self.epoch_dataset(epoch, position))
            bar = keras.utils.Progbar(
                steps_this_epoch, stateful_metrics=["loss", "tokens/s"], verbose=1 if self.is_chief else 0
            )
            print(f"epoch {epoch + 1}/{t.epochs}" + (f" (resuming at step {position})" if position else ""))
            epoch_start, epoch_tokens = time.time(), 0
            for _ in range(steps_this_epoch):
                if writer:  # the rates this step uses: read after it, they would be the next step's
                    rates = {name: float(optimizer.learning_rate) for name, (optimizer, _) in
                             self.parameter_groups.items()}
                step_start = time.time()
                loss, tokens = train_step(iterator)
                self.step.assign_add(1)
                epoch_tokens += int(tokens)
                step_seconds += time.time() - step_start
                step = int(self.step.numpy())
                rate = epoch_tokens / max(time.time() - epoch_start, 1e-9)
                bar.add(1, [("loss", float(loss)), ("tokens/s", rate)])
                if writer:
                    with writer.as_default(step=step):
                        scalar_summary("loss", loss, step)
                        for name, rate in rates.items():
                            scalar_summary(f"learning_rate/{name}", rate, step)
                if step % t.checkpoint_every_steps == 0 and step % self.steps_per_epoch:
                    self.manager.save(checkpoint_number=step, options=_SAVE_OPTIONS)
            tokens_seen += epoch_tokens
            step = int(self.step.numpy())
            record = {"epoch": epoch + 1, "step": step}
            self.end_epoch(record)
            if writer:
                with writer.as_default(step=step):
                    for key, value in record.items():
                        if key not in ("epoch", "step") and isinstance(value, (int, float)):
                            scalar_summary(key.replace("_", "/", 1), value, step)
            history = [h for h in history if h["epoch"] != record["epoch"]] + [record]
            if self.is_chief:  # before the checkpoint: a run killed between the two redoes the epoch and rewrites
                _write_json(history_path, history)  # its record; after it, the record would be lost for good
            self.manager.save(checkpoint_number=step, options=_SAVE_OPTIONS)
        self.end_fit()
        return {
            "history": history,
            "resumed_from_step": resumed_from,
            "train_seconds": time.time() - started,  # this process's fit: steps, scoring, checkpoints
            "step_seconds": step_seconds,  # train steps only (input pipeline and first-step tracing included)
            "train_tokens": tokens_seen,  # characters tagged in this process's steps
            "train_tokens_per_second": tokens_seen / step_seconds if tokens_seen else None,
            "steps": int(self.step.numpy()),
        }


class Trainer(TrainingLoop):
    """One tagging run: the tagger, its optimizers and checkpoints under a strategy, scored on dev each epoch."""

    @property
    def resume_keys(self) -> tuple[str, ...]:
        """The settings a resume must keep (check_resume_settings); a subclass with a recipe of its own adds it."""
        return RESUME_KEYS

    def __init__(self, config: Config, corpus: Corpus, strategy: tf.distribute.Strategy):
        self.corpus = corpus
        self.max_seq_length = config.data.max_seq_length
        self.tokenizer = CharTokenizer(corpus.vocabulary, config.data.lowercase)
        # An epoch is one pass over the pieces (a sentence longer than a window is split; overlap warnings are
        # logged once), not the sentences: counted by sentences, an epoch of CLUENER at max_seq_length 32 never
        # reached 44 % of its pieces. Its steps are the pass's batches, the partial ones of each length bucket
        # included: counted as pieces / batch size, the epoch ended before them, and the longest sentences, in
        # buckets too sparse to fill a batch, were never trained on.
        pieces = data.split_long(corpus.train, self.max_seq_length - 2)
        lengths, pipelines = [len(p.text) for p in pieces], input_pipelines(strategy)
        shards = [collections.Counter(lengths[i::pipelines]) for i in range(pipelines)]  # as Dataset.shard cuts
        steps = data.batches_per_pass(shards, config.train.batch_size, self.max_seq_length,
                                      uses_static_shapes(config, strategy), strategy.num_replicas_in_sync)
        super().__init__(config, strategy, steps)
        with strategy.scope():
            self.model = self.build_model()
            self.build_optimizers(self.model.trainable_variables, self.model.head_variables())
            self.best_f1 = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="best_dev_f1")
        self.backbone_optimizer, self.backbone_vars = self.parameter_groups["backbone"]
        self.head_optimizer, self.head_vars = self.parameter_groups["head"]
        self.track(model=self.model, best_dev_f1=self.best_f1, random=random_states(self.model))
        # Dev scoring runs the export's own function; only the entity scores, which F1 ignores, are skipped.
        self.inference = NerModule(
            self.model, self.tokenizer, corpus.tag_set, self.max_seq_length, config.export.window_overlap,
            with_confidence=False, group_windows=config.export.group_windows,
        )
        # Encoded once: every epoch reshuffles the same dataset.
        self.train_source = data.examples_dataset(pieces, corpus.tag_set)

    def build_model(self):
        """The tagger to train (called under the strategy's scope)."""
        return build_tagger(self.config.model, len(self.corpus.vocabulary), self.max_seq_length, self.corpus.tag_set)

    # ---- data ----------------------------------------------------------------------------------------------
    def replica_dataset(self, context: tf.distribute.InputContext, epoch: int) -> tf.data.Dataset:
        """One input pipeline's endless batches of the training set for an epoch."""
        return self.batches(self.train_source, context, epoch)

    def batches(self, source: tf.data.Dataset, context: tf.distribute.InputContext, epoch: int) -> tf.data.Dataset:
        """Endless batches of encoded examples for one input pipeline: its shard, in the order of seed + epoch."""
        return data.batch_dataset(
            source,
            self.tokenizer,
            context.get_per_replica_batch_size(self.global_batch),
            self.max_seq_length,
            shuffle_seed=self.config.train.seed + epoch,
            static_shapes=self.static_shapes,
            input_context=context,
            repeat=True,
        )

    def epoch_dataset(self, epoch: int, skip: int) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        return self.distribute(lambda context: self.replica_dataset(context, epoch), skip)

    # ---- one step -------------------------------------------------------------------------------------------
    def replica_loss(self, batch):
        features, labels = batch
        emissions = self.model(features, training=True)
        per_example = self.model.example_loss(emissions, labels["tags"], labels["tag_mask"])
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
        return loss, tf.reduce_sum(tf.cast(labels["tag_mask"], tf.int32))

    # ---- evaluation -----------------------------------------------------------------------------------------
    def predict(self, texts: list[str], batch_size: int = 64) -> list[list[data.Span]]:
        """Spans for texts through NerModule, the function the export serves."""
        predictions = []
        for i in range(0, len(texts), batch_size):
            out = {k: v.numpy() for k, v in self.inference(tf.constant(texts[i : i + batch_size])).items()}
            predictions.extend([data.Span(e["start"], e["end"], e["label"]) for e in row]
                               for row in entities_from_outputs(out))
        return predictions

    def evaluate(self, examples: list[data.Example]) -> dict:
        texts = [e.text for e in examples]
        return metrics.score(texts, [e.spans for e in examples], self.predict(texts))

    def end_epoch(self, record: dict) -> None:
        if not self.corpus.dev:  # no dev set: the last epoch is the best we know
            self.save_best()
            return
        dev = self.evaluate(self.corpus.dev)
        record.update({f"dev_{k}": dev[k] for k in ("precision", "recall", "f1")})
        print(f"  dev: P {dev['precision']:.4f}  R {dev['recall']:.4f}  F1 {dev['f1']:.4f}")
        if dev["f1"] > float(self.best_f1.numpy()):
            self.best_f1.assign(dev["f1"])
            self.save_best()

    def end_fit(self) -> None:
        if not tf.io.gfile.exists(os.path.join(self.config.run_dir, "best")):
            self.save_best()  # a run resumed after its last step still leaves a best/

    def fit(self) -> dict:
        summary = super().fit()
        summary["best_dev_f1"] = float(self.best_f1.numpy()) if self.corpus.dev else None
        return summary

    def restore_best(self) -> None:
        """Puts run_dir/best's weights (the best dev epoch's) into the model."""
        best = os.path.join(self.config.run_dir, "best", "model")
        tf.train.Checkpoint(model=self.model).read(best).assert_existing_objects_matched().expect_partial()

    def save_best(self) -> None:
        """Writes the model weights to run_dir/best, through a temporary folder renamed into place.

        Every worker writes (a multi-worker save is collective); only the chief's copy is kept.
        """
        final = os.path.join(self.config.run_dir, "best")
        if not self.is_chief:
            final = os.path.join(self.manager.directory, "best")
        staging = final + ".tmp"
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        tf.train.Checkpoint(model=self.model).write(os.path.join(staging, "model"))
        if tf.io.gfile.exists(final):
            tf.io.gfile.rmtree(final)
        faults.reached("best_write")  # killed here, the run has no best/ until the epoch is redone on resume
        tf.io.gfile.rename(staging, final)


# The manager runs these callbacks once a checkpoint's files are written and before the `checkpoint` index lists
# them: the test hook (tfner.faults) kills the process there to check that such a half-done save is ignored.
_SAVE_OPTIONS = tf.train.CheckpointOptions(
    experimental_write_callbacks=[lambda save_path: faults.reached("checkpoint_write")]
)


def unreadable(prefix: str) -> str | None:
    """Why the checkpoint at prefix does not read back whole (every tensor, sizes and checksums), or None."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # truncated or corrupt files fail in many ways: DataLossError, OpError, IndexError...
        first_line = (str(e).strip().splitlines() or [""])[0]
        return f"{type(e).__name__}: {first_line}"
    return None


def restore_newest_intact(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager) -> str | None:
    """Restores the newest of the manager's checkpoints that reads back whole and returns its path.

    A newest checkpoint that is truncated or corrupt (a full disk, a copy cut short, a bad sector) is reported
    and the one before it is used: the run resumes from that one's step and redoes the rest exactly. None when
    there is no checkpoint yet; an error when there are some but none reads back.
    """
    broken = []
    for path in reversed(manager.checkpoints):
        problem = unreadable(path)
        if problem is None:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        log.warning("checkpoint %s does not read back (%s); resuming from the one before it", path, problem)
        broken.append(path)
    if broken:
        raise RuntimeError(
            f"none of the checkpoints in {manager.directory} reads back whole ({', '.join(broken)}); restore them "
            "from a copy, or delete the folder to train from scratch"
        )
    return None


def _read_json(path: str, default):
    if not tf.io.gfile.exists(path):
        return default
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_json(path: str, value) -> None:
    write_atomically(path, json.dumps(value, indent=2, ensure_ascii=False))


_SCALAR_METADATA = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def scalar_summary(name: str, value, step: int) -> None:
    """A TensorBoard scalar through the core summary op (TF 2.21 no longer ships the tensorboard package)."""
    tf.summary.write(name, tf.cast(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def runs_as_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run (checkpoints, best/, the export): all but a multi-worker run's workers."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0
                                                     and "chief" not in resolver.cluster_spec().as_dict())


# Settings that give a run's checkpoints their shapes: a run_dir whose run had others holds another model.
SHAPE_KEYS = ("model.num_layers", "model.hidden_dim", "model.num_heads", "model.intermediate_dim", "model.head",
              "data.max_seq_length")


# Settings a resumed step depends on: its batch (batch size, seed: each epoch's order), its learning rate, and
# the weights it started from (model.init: a resume reads the checkpoint, so another init would be ignored). A
# run_dir with checkpoints resumes with the settings it ran with. epochs and max_steps may change (to train on):
# the schedule then spans the new step count, which is said. tfner.pretrain and tfner.distill add their own.
RESUME_KEYS = ("train.batch_size", "train.seed", "train.learning_rate", "train.head_learning_rate",
               "train.warmup_ratio", "model.init")
LENGTH_KEYS = ("train.epochs", "train.max_steps")


def changed_settings(config: Config, keys: tuple[str, ...]) -> list[str]:
    """`key then, not now` for each of keys that run_dir/config.yaml sets otherwise than config does."""
    config_path = os.path.join(config.run_dir, "config.yaml")
    if not os.path.exists(config_path):
        return []
    with open(config_path, encoding="utf-8") as f:
        before = yaml.safe_load(f) or {}  # as written, not through load_config: an older run's keys may differ
    differences = []
    for key in keys:
        section, name = key.split(".")
        then, now = (before.get(section) or {}).get(name), getattr(getattr(config, section), name)
        if then is not None and then != now:
            differences.append(f"{key} {then!r}, not {now!r}")
    return differences


def check_same_experiment(config: Config, corpus: Corpus, resume_keys: tuple[str, ...] = RESUME_KEYS) -> None:
    """Refuses a run_dir that holds a run of other entity types, another vocabulary or another model shape, or
    checkpoints of other resume_keys settings (check_resume_settings).

    Checked before anything is written: the restore would fail on the checkpoints' shapes anyway, but only after
    config.yaml and vocab.txt had been overwritten with this run's, which left the old run unexportable.
    """
    labels_path = os.path.join(config.run_dir, "labels.txt")
    if not os.path.exists(labels_path):
        return
    differences = []
    with open(labels_path, encoding="utf-8") as f:
        previous = parse_labels_file(f.read(), labels_path)
    if previous != corpus.tag_set.labels:
        differences.append(f"entity types {previous}, not {corpus.tag_set.labels}")
    vocab_path = os.path.join(config.run_dir, "vocab.txt")
    vocabulary = read_vocabulary(vocab_path) if os.path.exists(vocab_path) else corpus.vocabulary
    if vocabulary != corpus.vocabulary:
        differences.append(f"a vocabulary of {len(vocabulary)} tokens, not this run's {len(corpus.vocabulary)} "
                           "(the training data or data.vocab changed)")
    differences += changed_settings(config, SHAPE_KEYS)
    if differences:
        raise ConfigError(
            f"run_dir {config.run_dir} holds another run: {'; '.join(differences)}. Choose a new run_dir (or delete "
            "the old one) to start afresh, or run again with that run's settings to resume it"
        )
    check_resume_settings(config, resume_keys)


def check_resume_settings(config: Config, resume_keys: tuple[str, ...]) -> None:
    """Refuses to resume run_dir's checkpoints with other resume_keys settings; warns of other LENGTH_KEYS."""
    if not tf.io.gfile.glob(os.path.join(config.run_dir, "checkpoints", "ckpt-*.index")):
        return  # nothing to resume: any training settings start afresh
    differences = changed_settings(config, resume_keys)
    if differences:  # once accepted: the resumed steps read other batches at another rate (or none ran at all)
        raise ConfigError(
            f"run_dir {config.run_dir} holds checkpoints of a run with {'; '.join(differences)}: the resumed steps "
            "would not be those of either setting (other batches, another learning rate or loss, other starting "
            "weights). Run again with those settings to resume, or delete its checkpoints/ (or choose a new "
            "run_dir) to start afresh"
        )
    lengths = changed_settings(config, LENGTH_KEYS)
    if lengths:
        log.warning("run_dir %s resumes with %s: the learning-rate schedule now spans the new step count, so the "
                    "rate moves at the resumed step", config.run_dir, "; ".join(lengths))


def prepare_run_dir(config: Config, corpus: Corpus, resume_keys: tuple[str, ...] = RESUME_KEYS) -> None:
    """Writes config.yaml, vocab.txt and labels.txt; a run_dir of another experiment is refused."""
    os.makedirs(config.run_dir, exist_ok=True)
    check_same_experiment(config, corpus, resume_keys)
    save_config(config, os.path.join(config.run_dir, "config.yaml"))
    write_vocabulary(corpus.vocabulary, os.path.join(config.run_dir, "vocab.txt"))
    # Rewritten on every start, read back by the next one: whole or not at all, so that a kill in the write
    # never leaves an empty labels.txt that refuses every restart as "another experiment".
    write_atomically(os.path.join(config.run_dir, "labels.txt"),
                     "".join(f"{label}\n" for label in corpus.tag_set.labels))


def start_process(config: Config, strategy: tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    """The strategy (made first: multi-worker collectives must be configured before TensorFlow runs anything),
    the seed and the mixed-precision policy of a run."""
    strategy = strategy or make_strategy(config.train.distribute, config.train.tpu, config.train.mixed_precision)
    keras.utils.set_random_seed(config.train.seed)
    if config.train.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(config.train.mixed_precision)
    return strategy


def run(trainer: Trainer) -> dict:
    """Prepares the run_dir, fits, exports the best model and scores test through the export; the summary."""
    config, corpus, strategy = trainer.config, trainer.corpus, trainer.strategy
    if trainer.is_chief:
        if config.export.enabled:
            export_lib.check_base_dir(config.export_dir)  # before the training, not after it
        prepare_run_dir(config, corpus, trainer.resume_keys)
        save_backbone_config(trainer.model.backbone, os.path.join(config.run_dir, "backbone.json"))
    summary = trainer.fit()
    summary["num_replicas"] = strategy.num_replicas_in_sync
    if trainer.is_chief:
        if config.export.enabled:
            # reuse: a run killed after its export and run again ends with that one version, not two.
            summary["export"] = export_lib.export_run(config.run_dir, config.export_dir, reuse=True)
            if corpus.test:
                summary["test"] = evaluate_saved_model(summary["export"], corpus.test)
        elif corpus.test:
            trainer.restore_best()  # the weights tfner.export --run would ship, not the last epoch's
            summary["test"] = trainer.evaluate(corpus.test)
        _write_json(os.path.join(config.run_dir, "metrics.json"), summary)
    trainer.remove_scratch()
    return summary


def train(config: Config, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Trains, scores dev each epoch and test at the end, exports the best model; returns the summary."""
    strategy = start_process(config, strategy)
    with run_lock.hold(config.run_dir, enabled=runs_as_chief(strategy)):
        return run(Trainer(config, load_corpus(config), strategy))


def print_summary(summary: dict, config: Config) -> None:
    print("\n== summary ==")
    if summary.get("best_dev_f1") is not None:
        print(f"best dev F1      {summary['best_dev_f1']:.4f}")
    if "test" in summary:
        print(f"test F1          {summary['test']['f1']:.4f}  (P {summary['test']['precision']:.4f}, "
              f"R {summary['test']['recall']:.4f})")
        print(metrics.format_table(summary["test"]))
    if summary.get("train_tokens_per_second"):
        print(f"train time       {summary['train_seconds']:.1f} s in all, {summary['step_seconds']:.1f} s in train "
              f"steps: {summary['train_tokens_per_second']:.0f} tokens/s")
    if summary.get("resumed_from_step") is not None:
        print(f"resumed          from step {summary['resumed_from_step']} (times cover this process only)")
    print(f"run dir          {config.run_dir}")
    if "export" in summary:
        print(f"export           {summary['export']}")
        print(f"query it:        python -m tfner.predict --model {summary['export']} \"张三在北京的清华大学读书。\"")
        print(f"serve it:        python -m tfner.serve --port 8500 --model_name {config.export.model_name} "
              f"--model_base_path {os.path.abspath(os.path.dirname(summary['export']))}")


# Errors whose message names the file, line or key and the fix: the commands print them without a traceback.
# A checkpoint or metrics write refused (permissions, a full disk) names its path too.
CLEAR_ERRORS = (ConfigError, data.DataError, checkpoint_lib.CheckpointMismatchError, OSError,
                tf.errors.PermissionDeniedError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML experiment file; omit it to run the built-in demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.epochs=3 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data_keys = [o for o in args.set if o.split("=", 1)[0].strip() in ("data.train", "data.dev", "data.test")]
    if data_keys and not args.config:
        print(f"tfner.train: {data_keys[0]} without --config: the built-in demo brings its own data and would "
              "ignore it; pass a config too, e.g. --config configs/tiny.yaml", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, args.set) if args.config else demo.demo_config(args.set)
        summary = train(config)
    except CLEAR_ERRORS as e:
        print(f"tfner.train: {e}", file=sys.stderr)
        return 2
    print_summary(summary, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
