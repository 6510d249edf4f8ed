"""Resume NER from random initialisation: tfner (BERT + CRF, TF/Keras) against a PyTorch peer.

    python benchmarks/train_resume.py                         # both sides, configs/resume_ner.yaml's epochs
    python benchmarks/train_resume.py --epochs 1 --max_train_sentences 320   # a quick look
    python benchmarks/train_resume.py --skip_peer

tfner side: `tfner.train.train(config)` on configs/resume_ner.yaml (4 layers, hidden 256, 4 heads,
intermediate 1024, CRF head), export enabled. Its test F1 is the one in train()'s summary: measured through
the exported SavedModel's serving signature, i.e. what ships.

Peer: Hugging Face transformers `BertForTokenClassification` (PyTorch, softmax head) built from a BertConfig of
the same shape, randomly initialised, trained on the same sentences for the same number of optimizer steps
with the same batch size, AdamW recipe (two learning rates, warmup then linear decay, weight decay,
per-group gradient clipping) and loss scale, and scored with the same seqeval scorer (tfner.metrics.score)
on the same test set, from its best-on-dev epoch as tfner is.

Like with like, choices made:
- Vocabulary: both sides use the BERT-Base Chinese vocab.txt (21,128 entries; --vocab), tfner through
  `--set data.vocab=...` (its scratch default would build a 1,771-entry vocab from train), so both models
  have the same embedding table. One token per character on both sides: the peer maps characters to ids
  with the rule of tfner.tokenizer (the character itself, else its whitespace / full-width / lowercase /
  accent-free form, else [UNK]) -- no wordpiece.
- Tags: both train on BIOES ids of tfner.labels.TagSet and read spans back with tfner.labels' rule.
- Loss: the peer sums token cross-entropy over each sentence and averages over the batch, the scale of
  tfner's CRF negative log-likelihood (HF's built-in loss averages over tokens instead).
- GELU: keras-hub's BertBackbone uses the tanh approximation, so the peer uses hidden_act gelu_pytorch_tanh.
- Precision: `--set train.mixed_precision=mixed_bfloat16` trains tfner under Keras' mixed_bfloat16 policy and
  the peer with its forward pass under torch.autocast(bfloat16), float32 weights on both sides (the peer has no
  counterpart for mixed_float16's loss scaling, so it refuses that one).

Each side runs in its own subprocess so that its peak RSS (resource.getrusage ru_maxrss) is its own. The peer
runs under --peer_python (default: /work/bench-venv/bin/python if present, else this interpreter), a venv with
torch, transformers and seqeval; without torch the peer is skipped with a message.

Reported per side: best dev F1, test F1, train tokens/s (characters per second over the optimizer steps -- tfner:
its fit's step_seconds, the train-step calls (first-step tracing included); peer: its fit minus dev evaluation --
and over the whole fit, dev evaluation and saves included), tokens per CPU-second over the fit minus dev
evaluation (tfner's checkpoint and export saves included: fit keeps no CPU clock of its steps alone), and peak
RSS. The two full runs are sequential, so on a shared machine their wall-clock rates see different loads; after
them (--throughput_rounds, default 6) both sides' train steps run again in alternating rounds, each process idle
while the other works, which gives the throughput ratio to quote; each round also tags the Resume test set on
each side, raw text to entities (tfner: the export's NerModule with confidences; peer: character ids, forward,
argmax, spans), 32 sentences a call, once in float32 and once in bfloat16 (tfner: the model as `export.precision:
bfloat16` builds it; peer: the same forward under torch.autocast). --throughput_only runs just these rounds.

`--cpu_isa avx2` caps both sides' vector kernels at AVX2 through the libraries' own variables (ISA_CAPS), for
a look at an AVX2-only CPU from this AVX-512 one.

Length buckets: tfner groups batches into 8-token buckets (tfner.data.BUCKET_WIDTH); the peer into 16, 32, 64,
128, 192 (what both used before), or every --peer_bucket_width tokens for padding like tfner's.
"""

import argparse
import copy
import datetime
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import unicodedata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import tfner  # noqa: E402,F401  (first: it turns oneDNN on, and TensorFlow reads that only when it loads)
DATA = os.path.join(REPO, "..", "shared", "data")
DEFAULT_PEER_PYTHON = "/work/bench-venv/bin/python"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def data_paths(args) -> dict:
    folder = args.data_dir
    return {split: os.path.join(folder, f"{split}.char.bmes") for split in ("train", "dev", "test")}


# ---- tfner side -----------------------------------------------------------------------------------------------
def tfner_config(args):
    """configs/resume_ner.yaml with the benchmark's data, vocab, epochs and run_dir; the train subset patched in."""
    from tfner import train as train_lib
    from tfner.config import load_config

    paths = data_paths(args)
    overrides = [
        f"run_dir={args.run_dir}/tfner",
        f"export.dir={args.run_dir}/tfner/export",
        f"data.train={paths['train']}",
        f"data.dev={paths['dev']}",
        f"data.test={paths['test']}",
        f"data.vocab={args.vocab}",
        "export.enabled=true",
    ]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config(args.config, overrides + args.set)

    if args.max_train_sentences:  # the first N training sentences, as the peer takes them
        load_corpus = train_lib.load_corpus

        def first_sentences(config):
            corpus = load_corpus(config)
            corpus.train = corpus.train[: args.max_train_sentences]
            return corpus

        train_lib.load_corpus = first_sentences
    return config


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds of this process spent inside a wrapped function, summed over calls."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - wall
                self.cpu += cpu_seconds() - cpu

        return timed


def run_tfner(args) -> dict:
    import keras
    import tensorflow as tf

    from tfner import train as train_lib
    from tfner.export import load_run

    config = tfner_config(args)
    # Clock fit() and the per-epoch dev scoring inside it, so throughput can be given without the scoring.
    fit_clock, eval_clock = Clock(), Clock()
    train_lib.Trainer.fit = fit_clock.wrap(train_lib.Trainer.fit)
    train_lib.Trainer.evaluate = eval_clock.wrap(train_lib.Trainer.evaluate)
    summary = train_lib.train(config)
    tokens = summary["train_tokens"]
    module = load_run(config.run_dir)
    return {
        "side": "tfner",
        "framework": f"tensorflow {tf.__version__}, keras {keras.__version__}",
        "head": config.model.head,
        "trainable_parameters": int(sum(math.prod(v.shape) for v in module.model.trainable_variables)),
        "epochs": config.train.epochs,
        "steps": summary["steps"],
        "batch_size": config.train.batch_size,
        "train_tokens": int(round(tokens)),
        "train_seconds": fit_clock.wall,
        "dev_eval_seconds": eval_clock.wall,
        # fit's own clock around its train-step calls: fit minus dev eval would also hold checkpoint and
        # best-export saves and iterator creation.
        "step_seconds": summary["step_seconds"],
        "tokens_per_second_steps": tokens / summary["step_seconds"],
        "tokens_per_second_fit": tokens / fit_clock.wall,
        # fit keeps no CPU clock of its steps alone, so this is fit minus dev eval (saves in it); the label says so.
        "tokens_per_cpu_second_steps": tokens / (fit_clock.cpu - eval_clock.cpu),
        "history": summary["history"],
        "best_dev_f1": summary["best_dev_f1"],
        "test": {k: summary["test"][k] for k in ("precision", "recall", "f1", "macro_f1", "support")},
        "test_scored_through": summary["test"]["model"],
        "peak_rss_mb": peak_rss_mb(),
    }


TAG_BATCH = 32  # sentences per call in the tagging rounds


def tag_precisions(args) -> tuple:
    """float32 and bfloat16; float32 alone under --cpu_isa: TensorFlow picks oneDNN's bfloat16 kernels by the real
    CPU's flags, and oneDNN capped below them has none (a bfloat16 MatMul then crashes the process)."""
    return ("float32", "bfloat16") if args.cpu_isa == "native" else ("float32",)


class TfnerSteps:
    """tfner's own train step on its own input pipeline, outside fit(): for the interleaved throughput rounds."""

    def __init__(self, args):
        import keras
        import tensorflow as tf

        from tfner import train as train_lib

        config = tfner_config(args)
        config.run_dir = os.path.join(args.run_dir, "tfner_steps")  # never the trained run's checkpoints
        strategy = train_lib.start_process(config)  # as a run: its strategy, seed and mixed-precision policy
        self.trainer = train_lib.Trainer(config, train_lib.load_corpus(config), strategy)
        self.step = self.trainer.make_train_step()
        self.iterator = iter(self.trainer.epoch_dataset(0, 0))
        # Tagging as the export serves it: raw texts to entities, with the CRF's confidences; in each precision
        # a model built as tfner.export.load_run builds it, holding the trained model's weights.
        from tfner.export import PRECISION_POLICIES
        from tfner.inference import NerModule
        from tfner.model import build_tagger, dtype_policy

        trainer = self.trainer
        self.modules = {}
        for precision in tag_precisions(args):
            with dtype_policy(PRECISION_POLICIES[precision]):
                model = build_tagger(config.model, len(trainer.tokenizer.vocabulary), trainer.max_seq_length,
                                     trainer.corpus.tag_set)
            model.set_weights(trainer.model.get_weights())
            self.modules[precision] = NerModule(model, trainer.tokenizer, trainer.corpus.tag_set,
                                                trainer.max_seq_length, config.export.window_overlap,
                                                group_windows=config.export.group_windows)
        self.test_texts = [e.text for e in trainer.corpus.test]
        self.tf = tf
        self.setup = f"tfner train steps: Keras policy {keras.mixed_precision.global_policy().name}"

    def tag(self, precision: str = "float32", batch: int = TAG_BATCH) -> int:
        """One pass over the test sentences, `batch` a call; returns the sentences tagged."""
        for i in range(0, len(self.test_texts), batch):
            self.modules[precision](self.tf.constant(self.test_texts[i : i + batch]))["num_entities"].numpy()
        return len(self.test_texts)

    def run(self, steps: int) -> int:
        tokens = 0
        for _ in range(steps):
            loss, count = self.step(self.iterator)
            float(loss)  # as fit() does: the step has finished when its loss is read
            tokens += int(count)
        return tokens


# ---- peer side (PyTorch; imports no TensorFlow) ----------------------------------------------------------------
def read_bmes(path: str):
    """(text, spans) per sentence of a char-tag file, spans read with tfner.labels' rule."""
    from tfner.labels import tags_to_spans

    sentences, chars, tags = [], [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in list(f) + [""]:
            line = line.rstrip("\n")
            if not line.strip():
                if chars:
                    sentences.append(("".join(chars), tuple(tags_to_spans(tags)[0])))
                chars, tags = [], []
                continue
            char, _, tag = line.rpartition("\t") if "\t" in line else line.rpartition(" ")
            chars.append(char)
            tags.append(tag)
    return sentences


class CharIds:
    """Character -> id over a BERT vocab.txt, one id per character, by tfner.tokenizer's rule."""

    def __init__(self, vocab_path: str, lowercase: bool = True):
        with open(vocab_path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n").rstrip("\r") for line in f]
        self.index = {t: i for i, t in enumerate(tokens) if t}
        self.size = len(tokens)
        self.lowercase = lowercase
        self.pad, self.unk = self.index["[PAD]"], self.index["[UNK]"]
        self.cls, self.sep = self.index["[CLS]"], self.index["[SEP]"]
        self.space = self.index.get("[unused1]", self.unk)
        self.cache = {}

    def normal_form(self, char: str) -> str:
        code = ord(char)
        if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII sits 0xFEE0 above ASCII
            char = chr(code - 0xFEE0)
        if self.lowercase and len(char.lower()) == 1:
            char = char.lower()
        bare = "".join(c for c in unicodedata.normalize("NFD", char) if unicodedata.category(c) != "Mn")
        return bare if len(bare) == 1 else char

    def __call__(self, char: str) -> int:
        if char not in self.cache:
            if char in self.index:
                self.cache[char] = self.index[char]
            elif char.isspace():
                self.cache[char] = self.space
            else:
                self.cache[char] = self.index.get(self.normal_form(char), self.unk)
        return self.cache[char]


def bucketed_batches(examples, batch_size, max_chars, seed, bucket_width=0):
    """Endless batches: each pass shuffled with seed + pass, grouped by packed length into buckets (16, 32,
    64, ... up to max_seq_length, tfner's rule before its 8-token buckets; or every `bucket_width` tokens, as
    tfner.data now does), a batch leaving as soon as its bucket holds batch_size examples."""
    boundaries, length = [], bucket_width or 16
    while length < max_chars + 2:
        boundaries.append(length)
        length = length + bucket_width if bucket_width else length * 2
    boundaries.append(max_chars + 2)
    buckets = [[] for _ in boundaries]
    rounds = 0
    while True:
        order = list(range(len(examples)))
        random.Random(seed + rounds).shuffle(order)
        rounds += 1
        for i in order:
            packed = len(examples[i][0]) + 2
            b = next(k for k, bound in enumerate(boundaries) if packed <= bound)
            buckets[b].append(examples[i])
            if len(buckets[b]) == batch_size:
                yield buckets[b]
                buckets[b] = []


# tfner's train.mixed_precision -> the dtype the peer's forward pass runs in under torch.autocast. Not
# mixed_float16: the peer would need a gradient scaler as well to mirror tfner's loss scaling.
PEER_AUTOCAST = {"none": "float32", "mixed_bfloat16": "bfloat16"}


class Peer:
    """The PyTorch peer: BertForTokenClassification of the config's shape, with tfner's training recipe.

    Reads model.*, train.* and data.max_seq_length from the YAML config and from --set (so a --set meant for
    tfner, e.g. train.learning_rate, applies to both sides).
    """

    def __init__(self, args):
        import torch
        import transformers
        import yaml

        from tfner.labels import TagSet

        self.torch = torch
        if args.peer_threads:
            torch.set_num_threads(args.peer_threads)
        with open(args.config, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
        for override in args.set:  # a.b=c, into the raw mapping
            key, _, value = override.partition("=")
            node = raw
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = yaml.safe_load(value)
        shape, t = raw.get("model", {}), raw.get("train", {})
        max_seq_length = int(raw.get("data", {}).get("max_seq_length", 128))
        self.epochs = args.epochs or int(t.get("epochs", 3))
        self.batch_size = int(t.get("batch_size", 32))
        self.clip = float(t.get("clip_norm", 1.0))
        seed = int(t.get("seed", 42))
        dropout = float(shape.get("dropout", 0.1))
        # train.mixed_precision as tfner's Keras policy: float32 weights, the forward pass under autocast,
        # the loss in float32.
        precision = str(t.get("mixed_precision", "none"))
        if precision not in PEER_AUTOCAST:
            raise SystemExit(f"peer: train.mixed_precision {precision!r} has no peer counterpart here; "
                             f"use one of {', '.join(PEER_AUTOCAST)}")
        self.train_autocast = PEER_AUTOCAST[precision]

        paths = data_paths(args)
        self.train = read_bmes(paths["train"])[: args.max_train_sentences or None]
        self.dev, self.test = read_bmes(paths["dev"]), read_bmes(paths["test"])
        self.tag_set = TagSet({s.label for _, spans in self.train for s in spans})
        self.ids = CharIds(args.vocab)
        max_chars = max_seq_length - 2
        too_long = sum(len(text) > max_chars for text, _ in self.train + self.dev + self.test)
        if too_long:  # Resume's longest is 178; tfner would split (train) or window (test) these
            raise SystemExit(f"peer: {too_long} sentences exceed {max_chars} characters; this peer does not window")
        encoded = [([self.ids(c) for c in text], self.tag_set.encode(len(text), spans)[0]) for text, spans in self.train]

        torch.manual_seed(seed)
        self.config = transformers.BertConfig(
            vocab_size=self.ids.size,
            hidden_size=int(shape["hidden_dim"]),
            num_hidden_layers=int(shape["num_layers"]),
            num_attention_heads=int(shape["num_heads"]),
            intermediate_size=int(shape["intermediate_dim"]),
            hidden_act="gelu_pytorch_tanh",  # keras-hub's BertBackbone uses the tanh approximation
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            max_position_embeddings=max_seq_length,
            type_vocab_size=2,
            num_labels=len(self.tag_set),
        )
        self.model = transformers.BertForTokenClassification(self.config)
        self.setup = f"peer train steps: forward pass in {self.train_autocast}"
        self.framework = (f"torch {torch.__version__}, transformers {transformers.__version__} "
                          f"(attention {self.model.config._attn_implementation}, {torch.get_num_threads()} threads)")

        # Full batches of one pass's sentences an epoch, from an endless stream. tfner's epoch is one pass with its
        # buckets' partial batches (133 steps on Resume, since 2026-12-07): the same sentences, a few more steps.
        self.steps_per_epoch = math.ceil(len(self.train) / self.batch_size)
        total = self.total_steps = self.steps_per_epoch * self.epochs
        warmup = int(total * float(t.get("warmup_ratio", 0.1)))

        def schedule(step):  # tfner.optimization.WarmupLinearDecay, as a factor of the peak
            decay = (total - step) / max(total - warmup, 1)
            return max(0.0, min(step / max(warmup, 1), decay) if warmup else decay)

        def no_decay(name):  # biases and LayerNorm, as tfner's NO_DECAY
            return name.endswith("bias") or "LayerNorm" in name

        groups = []
        weight_decay = float(t.get("weight_decay", 0.01))
        for name, peak in (("backbone", t.get("learning_rate", 5e-5)), ("head", t.get("head_learning_rate", 1e-3))):
            params = [(n, p) for n, p in self.model.named_parameters() if n.startswith("classifier.") == (name == "head")]
            for decay in (weight_decay, 0.0):
                chosen = [p for n, p in params if no_decay(n) == (decay == 0.0)]
                groups.append({"params": chosen, "lr": float(peak), "weight_decay": decay, "group": name})
        self.optimizer = torch.optim.AdamW(groups, eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        # tfner clips the backbone's and the head's gradients separately (one optimizer each): so does the peer.
        self.clip_sets = [[p for g in groups if g["group"] == name for p in g["params"]] for name in ("backbone", "head")]
        self.batches = bucketed_batches(encoded, self.batch_size, max_chars, seed, args.peer_bucket_width)
        self.model.train()

    def pack(self, rows):
        torch = self.torch
        longest = max(len(r) for r in rows) + 2
        token_ids = torch.full((len(rows), longest), self.ids.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            token_ids[i, : len(r) + 2] = torch.tensor([self.ids.cls] + r + [self.ids.sep])
            mask[i, : len(r) + 2] = 1
        return token_ids, mask

    def run(self, steps: int) -> int:
        """`steps` optimizer steps on the next batches; returns the characters they held."""
        torch, tokens = self.torch, 0
        for _ in range(steps):
            batch = next(self.batches)
            token_ids, mask = self.pack([r for r, _ in batch])
            tags = torch.zeros((len(batch), token_ids.shape[1]), dtype=torch.long)
            tag_mask = torch.zeros_like(tags, dtype=torch.float32)
            for i, (_, tag_ids) in enumerate(batch):
                tags[i, 1 : len(tag_ids) + 1] = torch.tensor(tag_ids)
                tag_mask[i, 1 : len(tag_ids) + 1] = 1.0
            with self.autocast(self.train_autocast):
                logits = self.model(input_ids=token_ids, attention_mask=mask).logits
            per_token = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), tags, reduction="none")
            loss = (per_token * tag_mask).sum(dim=1).mean()  # per-sentence sum, batch mean: tfner's scale
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip:
                for params in self.clip_sets:
                    torch.nn.utils.clip_grad_norm_(params, self.clip)
            self.optimizer.step()
            self.scheduler.step()
            self.last_loss = loss.item()
            tokens += int(tag_mask.sum())
        return tokens

    def tag(self, precision: str = "float32", batch: int = TAG_BATCH) -> int:
        """One pass over the test sentences: characters to ids, forward, argmax, spans; returns the count."""
        self.predict(self.test, batch, precision)
        return len(self.test)

    def autocast(self, dtype: str):
        """torch.autocast on CPU to `dtype` ("bfloat16"), or nothing for "float32"."""
        import contextlib

        if dtype == "float32":
            return contextlib.nullcontext()
        return self.torch.autocast("cpu", dtype=getattr(self.torch, dtype))

    def predict(self, examples, batch=64, precision="float32"):
        self.model.eval()
        spans = []
        with self.torch.no_grad(), self.autocast(precision):
            for i in range(0, len(examples), batch):
                texts = [text for text, _ in examples[i : i + batch]]
                token_ids, mask = self.pack([[self.ids(c) for c in text] for text in texts])
                best = self.model(input_ids=token_ids, attention_mask=mask).logits.argmax(-1)
                spans.extend(self.tag_set.decode(best[r, 1 : len(text) + 1].tolist()) for r, text in enumerate(texts))
        self.model.train()
        return spans

    def score(self, examples) -> dict:
        from tfner import metrics

        return metrics.score([t for t, _ in examples], [s for _, s in examples], self.predict(examples))


def run_peer(args) -> dict:
    peer = Peer(args)
    fit_clock, eval_clock = Clock(), Clock()
    score = eval_clock.wrap(peer.score)
    history, best_f1, best_state, tokens = [], -1.0, None, 0

    @fit_clock.wrap
    def fit():
        nonlocal best_f1, best_state, tokens
        for epoch in range(peer.epochs):
            started = time.perf_counter()
            epoch_tokens = peer.run(peer.steps_per_epoch)
            tokens += epoch_tokens
            print(f"peer epoch {epoch + 1}/{peer.epochs}: loss {peer.last_loss:.3f}, "
                  f"{epoch_tokens / (time.perf_counter() - started):.0f} tokens/s", flush=True)
            dev = score(peer.dev)
            print(f"  dev: P {dev['precision']:.4f}  R {dev['recall']:.4f}  F1 {dev['f1']:.4f}", flush=True)
            history.append({"epoch": epoch + 1, "step": (epoch + 1) * peer.steps_per_epoch, "dev_f1": dev["f1"]})
            if dev["f1"] > best_f1:
                best_f1, best_state = dev["f1"], copy.deepcopy(peer.model.state_dict())

    fit()
    peer.model.load_state_dict(best_state)
    test = peer.score(peer.test)
    return {
        "side": "peer",
        "framework": peer.framework,
        "head": "softmax",
        "trainable_parameters": int(sum(p.numel() for p in peer.model.parameters() if p.requires_grad)),
        "epochs": peer.epochs,
        "steps": peer.total_steps,
        "batch_size": peer.batch_size,
        "train_tokens": tokens,
        "train_seconds": fit_clock.wall,
        "dev_eval_seconds": eval_clock.wall,
        "tokens_per_second_steps": tokens / (fit_clock.wall - eval_clock.wall),
        "tokens_per_second_fit": tokens / fit_clock.wall,
        "tokens_per_cpu_second_steps": tokens / (fit_clock.cpu - eval_clock.cpu),
        "history": history,
        "best_dev_f1": best_f1,
        "test": {k: test[k] for k in ("precision", "recall", "f1", "macro_f1", "support")},
        "test_scored_through": "in-process PyTorch model, best-on-dev epoch",
        "peak_rss_mb": peak_rss_mb(),
    }


def serve_steps(args) -> None:
    """A child for the interleaved throughput rounds: set up, warm up, then run `N` steps per "go N" line.

    Prints "ready" once warm, then one JSON line per round: {"tokens", "seconds", "cpu_seconds"}.
    """
    runner = TfnerSteps(args) if args.side == "tfner_steps" else Peer(args)
    runner.run(args.warmup_steps)
    for precision in tag_precisions(args):
        runner.tag(precision)  # traces / warms the tagging path
    print(runner.setup, flush=True)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] not in ("go", "tag"):
            break
        wall, cpu = time.perf_counter(), cpu_seconds()
        done = runner.run(int(command[1])) if command[0] == "go" else runner.tag(command[1])
        print(json.dumps({"tokens" if command[0] == "go" else "sentences": done,
                          "seconds": time.perf_counter() - wall, "cpu_seconds": cpu_seconds() - cpu}), flush=True)


# ---- driver -----------------------------------------------------------------------------------------------------
def child_command(python: str, side: str, args, result_path: str = "") -> list[str]:
    command = [python, os.path.abspath(__file__), "--side", side, "--run_dir", args.run_dir, "--config", args.config,
               "--vocab", args.vocab, "--data_dir", args.data_dir, "--epochs", str(args.epochs),
               "--max_train_sentences", str(args.max_train_sentences), "--warmup_steps", str(args.warmup_steps),
               "--peer_bucket_width", str(args.peer_bucket_width), "--cpu_isa", args.cpu_isa,
               "--tfner_intra_op_threads", str(args.tfner_intra_op_threads), "--peer_threads", str(args.peer_threads)]
    if result_path:
        command += ["--result", result_path]
    for s in args.set:
        command += ["--set", s]
    return command


CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p),
                 TF_CPP_MIN_LOG_LEVEL="2")

# --cpu_isa avx2: both sides' vector kernels capped at AVX2, the nearest this AVX-512 machine gets to an AVX2-only
# CPU. oneDNN (TensorFlow's matmuls and fused ops; PyTorch's bfloat16 path), MKL (PyTorch's float32 GEMMs) and
# PyTorch's own ATen kernels each read their variable; TensorFlow's Eigen kernels are built for the wheel's
# baseline and read none. Not the same as a different CPU: caches, clocks and memory stay this machine's.
ISA_CAPS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}


def child_env(args) -> dict:
    return dict(CHILD_ENV, **ISA_CAPS.get(args.cpu_isa, {}))


def run_side(side: str, python: str, args) -> dict:
    """Trains one side in a fresh interpreter (so its peak RSS is its own); returns its result file."""
    result_path = os.path.join(args.run_dir, f"{side}.json")
    command = child_command(python, side, args, result_path)
    print(f"\n=== {side}: {' '.join(command)}", flush=True)
    completed = subprocess.run(command, cwd=REPO, env=child_env(args))
    if completed.returncode:
        return {"side": side, "skipped": f"exited with status {completed.returncode} (see its output above)"}
    with open(result_path, encoding="utf-8") as f:
        return json.load(f)


def interleaved_throughput(pythons: dict, args) -> dict:
    """Both sides' train steps in alternation, each child idle while the other runs: the ratio then sees the
    same machine load, which a sequential pair of full runs on a shared machine does not."""
    children = {}
    for side, python in pythons.items():
        command = child_command(python, f"{side}_steps", args)
        children[side] = subprocess.Popen(command, cwd=REPO, env=child_env(args), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
    try:
        for side, child in children.items():  # set-up and warm-up run concurrently; they are not measured
            for line in child.stdout:
                if line.strip() == "ready":
                    break
                print(line, end="", flush=True)  # what the child set up (its precision)
            else:
                raise RuntimeError(f"{side} step server exited before it was ready")
        rounds = {side: [] for side in children}
        precisions = tag_precisions(args)
        tag_rounds = {precision: {side: [] for side in children} for precision in precisions}
        commands = [(f"go {args.throughput_steps}", rounds)] + [(f"tag {p}", tag_rounds[p]) for p in precisions]
        for r in range(args.throughput_rounds):
            order = list(children) if r % 2 == 0 else list(children)[::-1]
            for side in order:
                for command, results in commands:
                    children[side].stdin.write(command + "\n")
                    children[side].stdin.flush()
                    results[side].append(json.loads(children[side].stdout.readline()))
            print(f"throughput round {r + 1}/{args.throughput_rounds}: " + ", ".join(
                f"{side} {rounds[side][-1]['tokens'] / rounds[side][-1]['seconds']:.0f} tokens/s, sentences/s tagged "
                + " / ".join(f"{tag_rounds[p][side][-1]['sentences'] / tag_rounds[p][side][-1]['seconds']:.0f}"
                             for p in precisions) + f" ({' / '.join(precisions)})"
                for side in children), flush=True)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.stdin.close()
                child.wait(timeout=120)
    summary = {}
    for side, measured in rounds.items():
        tokens = sum(m["tokens"] for m in measured)
        summary[side] = {
            "tokens_per_second": tokens / sum(m["seconds"] for m in measured),
            "tokens_per_cpu_second": tokens / sum(m["cpu_seconds"] for m in measured),
            "per_round_tokens_per_second": [m["tokens"] / m["seconds"] for m in measured],
        }
        for p in precisions:
            tagged = tag_rounds[p][side]
            summary[side][f"tag_sentences_per_second_{p}"] = \
                sum(m["sentences"] for m in tagged) / sum(m["seconds"] for m in tagged)
    if len(rounds) == 2:
        def median_ratio(a, b, count):
            return statistics.median((x[count] / x["seconds"]) / (y[count] / y["seconds"]) for x, y in zip(a, b))

        tfner, peer = children
        summary["median_round_ratio"] = median_ratio(rounds[tfner], rounds[peer], "tokens")
        for p in precisions:
            summary[f"median_tag_round_ratio_{p}"] = median_ratio(tag_rounds[p][tfner], tag_rounds[p][peer],
                                                                  "sentences")
    summary["rounds"], summary["steps_per_round"] = args.throughput_rounds, args.throughput_steps
    summary["tag_precisions"] = precisions
    return summary


def peer_python(args) -> str | None:
    if args.peer_python:
        return args.peer_python
    if os.path.exists(DEFAULT_PEER_PYTHON):
        return DEFAULT_PEER_PYTHON
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def report(results: list[dict], throughput: dict | None) -> str:
    rows = [
        ("framework", lambda r: r["framework"]),
        ("head", lambda r: r["head"]),
        ("trainable parameters", lambda r: f"{r['trainable_parameters']:,}"),
        ("epochs / steps / batch", lambda r: f"{r['epochs']} / {r['steps']} / {r['batch_size']}"),
        ("best dev F1", lambda r: f"{r['best_dev_f1']:.4f}"),
        ("test F1 (P / R)", lambda r: f"{r['test']['f1']:.4f} ({r['test']['precision']:.4f} / {r['test']['recall']:.4f})"),
        ("test macro F1", lambda r: f"{r['test']['macro_f1']:.4f}"),
        ("train tokens/s, steps only (tfner: fit's step_seconds, first-step tracing in it; peer: fit minus dev eval, "
         "best-state copies in it)", lambda r: f"{r['tokens_per_second_steps']:.0f}"),
        ("train tokens/s, whole fit (dev eval and saves in it)", lambda r: f"{r['tokens_per_second_fit']:.0f}"),
        ("train tokens per CPU-second, fit minus dev eval (tfner: checkpoint and export saves in it)",
         lambda r: f"{r['tokens_per_cpu_second_steps']:.0f}"),
        ("fit time (dev eval in it)", lambda r: f"{r['train_seconds']:.0f} s ({r['dev_eval_seconds']:.0f} s)"),
        ("peak RSS", lambda r: f"{r['peak_rss_mb']:.0f} MB"),
    ]
    done = [r for r in results if "skipped" not in r]
    lines = []
    if done:
        lines = ["| | " + " | ".join(r["side"] for r in done) + " |", "|---|" + "---|" * len(done)]
        lines += [f"| {name} | " + " | ".join(get(r) for r in done) + " |" for name, get in rows]
    if len(done) == 2:
        a, b = done
        lines.append("")
        lines.append(f"tfner / peer: test F1 {a['test']['f1'] - b['test']['f1']:+.4f}, "
                     f"tokens/s (steps) x{a['tokens_per_second_steps'] / b['tokens_per_second_steps']:.2f}, "
                     f"tokens/s (fit) x{a['tokens_per_second_fit'] / b['tokens_per_second_fit']:.2f}, "
                     f"peak RSS x{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}")
    lines += [f"\n{r['side']}: skipped: {r['skipped']}" for r in results if "skipped" in r]
    if throughput:
        sides = [k for k in ("tfner", "peer") if k in throughput]
        lines += ["", f"interleaved train steps ({throughput['rounds']} rounds x {throughput['steps_per_round']} steps "
                      "per side, alternating):", "",
                  "| | " + " | ".join(sides) + " |", "|---|" + "---|" * len(sides),
                  "| tokens/s | " + " | ".join(f"{throughput[k]['tokens_per_second']:.0f}" for k in sides) + " |",
                  "| tokens per CPU-second | " + " | ".join(f"{throughput[k]['tokens_per_cpu_second']:.0f}"
                                                       for k in sides) + " |"]
        lines += [f"| Resume test tagged, sentences/s ({TAG_BATCH} a call), {p} | "
                  + " | ".join(f"{throughput[k][f'tag_sentences_per_second_{p}']:.0f}" for k in sides) + " |"
                  for p in throughput["tag_precisions"]]
        if "median_round_ratio" in throughput:
            tfner, peer = throughput["tfner"], throughput["peer"]
            lines += ["", f"tfner / peer tokens/s: x{tfner['tokens_per_second'] / peer['tokens_per_second']:.2f} "
                          f"pooled, x{throughput['median_round_ratio']:.2f} median of per-round ratios"]
            lines += [f"tfner / peer sentences/s tagged, both {p}: x{tfner[f'tag_sentences_per_second_{p}'] / peer[f'tag_sentences_per_second_{p}']:.2f} "
                      f"pooled, x{throughput[f'median_tag_round_ratio_{p}']:.2f} median of per-round ratios"
                      for p in throughput["tag_precisions"]]
            if "bfloat16" in throughput["tag_precisions"]:
                lines.append(f"tfner bfloat16 / peer float32 sentences/s tagged: x"
                             f"{tfner['tag_sentences_per_second_bfloat16'] / peer['tag_sentences_per_second_float32']:.2f} pooled")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "resume_ner.yaml"))
    parser.add_argument("--data_dir", default=os.path.join(DATA, "resume_ner"),
                        help="folder with train/dev/test.char.bmes")
    parser.add_argument("--vocab", default=os.path.join(DATA, "vocab", "vocab.txt"),
                        help="vocab.txt both sides use (BERT-Base Chinese's by default)")
    parser.add_argument("--epochs", type=int, default=0, help="0 = the config's train.epochs")
    parser.add_argument("--max_train_sentences", type=int, default=0, help="train on the first N only (0 = all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra tfner config override (the peer reads model/train/data.max_seq_length keys too)")
    parser.add_argument("--run_dir", default="", help="default: runs/bench/resume-<timestamp> (must be new)")
    parser.add_argument("--skip_peer", action="store_true")
    parser.add_argument("--skip_tfner", action="store_true")
    parser.add_argument("--peer_bucket_width", type=int, default=0,
                        help="the peer's length buckets: 0 = powers of two (16, 32, 64, ...), N = every N tokens")
    parser.add_argument("--throughput_only", action="store_true",
                        help="no full runs: only the interleaved train-step rounds of both sides")
    parser.add_argument("--peer_python", default="", help=f"interpreter with torch (default {DEFAULT_PEER_PYTHON})")
    parser.add_argument("--throughput_rounds", type=int, default=6,
                        help="interleaved rounds of train steps after training (0 = none)")
    parser.add_argument("--throughput_steps", type=int, default=15, help="train steps per side per round")
    parser.add_argument("--warmup_steps", type=int, default=5, help="unmeasured steps before the rounds")
    parser.add_argument("--cpu_isa", choices=("native", *ISA_CAPS), default="native",
                        help="cap both sides' vector kernels (avx2: as on a CPU without AVX-512; see ISA_CAPS)")
    parser.add_argument("--tfner_intra_op_threads", type=int, default=0,
                        help="TensorFlow's intra-op threads on tfner's side (0: TensorFlow's choice)")
    parser.add_argument("--peer_threads", type=int, default=0, help="torch.set_num_threads on the peer's side (0: torch's choice)")
    parser.add_argument("--output", help="also write all results as JSON here")
    parser.add_argument("--side", choices=("tfner", "peer", "tfner_steps", "peer_steps"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.config, args.vocab, args.data_dir = map(os.path.abspath, (args.config, args.vocab, args.data_dir))

    if args.side:  # a child
        if args.side.startswith("tfner"):
            from tfner.tf_threads import set_tf_threads

            set_tf_threads(intra_op=args.tfner_intra_op_threads)  # before anything runs TensorFlow
        if args.side.startswith("peer"):
            try:
                import torch  # noqa: F401
                import transformers  # noqa: F401
            except ImportError as e:
                if args.result:
                    with open(args.result, "w", encoding="utf-8") as f:
                        json.dump({"side": "peer", "skipped": f"{sys.executable} cannot import torch/transformers: {e}"}, f)
                return 0 if args.result else 1
        if args.side.endswith("_steps"):
            serve_steps(args)
            return 0
        result = run_tfner(args) if args.side == "tfner" else run_peer(args)
        with open(args.result, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        return 0

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.run_dir = os.path.abspath(args.run_dir or os.path.join(REPO, "runs", "bench", f"resume-{stamp}"))
    if os.path.exists(args.run_dir) and os.listdir(args.run_dir):
        # A run_dir with checkpoints would resume instead of training: refuse rather than time a resume.
        raise SystemExit(f"{args.run_dir} is not empty; give a new --run_dir (a reused one would resume training)")
    os.makedirs(args.run_dir, exist_ok=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; kernels capped at: {args.cpu_isa}; threads: "
          f"tfner intra-op {args.tfner_intra_op_threads or 'default'}, peer {args.peer_threads or 'default'}; "
          f"run_dir {args.run_dir}")
    results, pythons = [], {}
    if args.throughput_only:
        args.skip_tfner = args.skip_peer = True
        pythons = {"tfner": sys.executable, "peer": peer_python(args)}
        if pythons["peer"] is None:
            raise SystemExit("--throughput_only needs torch: install it into a venv and pass --peer_python")
    if not args.skip_tfner:
        results.append(run_side("tfner", sys.executable, args))
        pythons["tfner"] = sys.executable
    if args.skip_peer:
        results.append({"side": "peer", "skipped": "--throughput_only" if args.throughput_only else "--skip_peer"})
    else:
        python = peer_python(args)
        if python is None:
            results.append({"side": "peer", "skipped": "torch is not installed; install it into a venv "
                            "(pip install torch transformers seqeval pyyaml) and pass --peer_python"})
        else:
            results.append(run_side("peer", python, args))
            if "skipped" not in results[-1]:
                pythons["peer"] = python
    throughput = None
    if args.throughput_rounds and pythons:
        print("\n=== interleaved throughput", flush=True)
        throughput = interleaved_throughput(pythons, args)
    table = report(results, throughput)
    print(f"\n== results ({datetime.date.today().isoformat()}, {os.cpu_count()} CPUs, kernels: {args.cpu_isa}) ==\n"
          + table)
    with open(os.path.join(args.run_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"date": datetime.date.today().isoformat(), "cpu_isa": args.cpu_isa, "sides": results,
                   "threads": {"tfner_intra_op": args.tfner_intra_op_threads, "peer": args.peer_threads},
                   "interleaved": throughput}, f, indent=2)
    if args.output:
        shutil.copy(os.path.join(args.run_dir, "results.json"), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
