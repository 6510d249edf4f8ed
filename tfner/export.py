"""python -m tfner.export: write a run's best model as a versioned SavedModel for TensorFlow Serving.

    python -m tfner.export --run runs/demo [--out export/ner]

Writes export/<model_name>/<N>/ with N one above the highest version there: a SavedModel whose
`serving_default` signature takes raw UTF-8 texts and returns entity spans (contract: export/README.md),
plus assets/ (vocab.txt, labels.txt, tags.txt, and source.json: the run and a digest of the files the export
was made from) and assets.extra/tf_serving_warmup_requests. The version is written to a hidden temporary
folder and renamed into place, so TF Serving (which polls the folder) never sees half of it; a process killed
before the rename leaves only that hidden folder, which TF Serving and tfner.serve ignore.

The SavedModel is written with keras.export.ExportArchive, tracking the Keras model and the tokenizer's
lookup table: a Keras 3 model saved through a plain tf.Module fails TF Serving's TF1-style session load
("Could not find variable"), while ExportArchive's output loads there (tests check both load paths).
"""

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import sys
import uuid

import keras
import tensorflow as tf

from tfner.config import ConfigError, load_config
from tfner.inference import NerModule
from tfner.labels import TagSet, parse_labels_file
from tfner.model import build_tagger, dtype_policy, load_backbone_config
from tfner.tokenizer import CharTokenizer, read_vocabulary
from tfner.versions import version_folders

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
WARMUP_TEXTS = [
    "张三在北京的清华大学读书。",
    "",
    "Apple公司的CEO库克访问了上海。",
    "2023年，李明担任浙江省杭州市某科技有限公司董事长兼总经理，主持公司全面工作。" * 4,
]

# export.precision -> the Keras dtype policy the model is rebuilt under. mixed_bfloat16 keeps the variables
# (so the SavedModel) float32 and casts them for each product; tfner.encoder runs every projection and
# attention product in bfloat16, LayerNorm and the CRF stay float32 (Keras and tfner.crf upcast).
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def check_training_run(run_dir: str, role: str = "") -> None:
    """Refuses a run_dir without the files of a tfner.train run (labels.txt, vocab.txt beside config.yaml), naming
    a tfner.pretrain run as what it is: a backbone to fine-tune, not a tagger. role prefixes the message."""
    missing = [name for name in ("labels.txt", "vocab.txt") if not tf.io.gfile.exists(os.path.join(run_dir, name))]
    if not missing:
        return
    where = f"{role} {run_dir}" if role else run_dir
    if "labels.txt" in missing and tf.io.gfile.exists(os.path.join(run_dir, "backbone", "config.json")):
        raise ConfigError(f"{where} is a tfner.pretrain run: it holds a backbone, not a tagger; fine-tune a tagger "
                          f"from it first, python -m tfner.train --config CONFIG --set "
                          f"model.init={os.path.join(run_dir, 'backbone')}")
    raise ConfigError(f"{where}: no {' or '.join(missing)} beside its config.yaml; give the whole run_dir of a "
                      "python -m tfner.train run (copy it again if it was cut short)")


def load_run(run_dir: str, precision: str | None = None) -> NerModule:
    """Rebuilds the NerModule of a run from its config, vocab, labels and best weights.

    precision: "float32" or "bfloat16"; default the run's export.precision. It, not the policy the process
    happens to run under (a mixed-precision training run exports at the end), sets what the model computes in.
    """
    check_training_run(run_dir)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    precision = precision or config.export.precision
    if precision not in PRECISION_POLICIES:
        raise ValueError(f"precision must be one of {sorted(PRECISION_POLICIES)}, got {precision!r}")
    labels_path = os.path.join(run_dir, "labels.txt")
    with open(labels_path, encoding="utf-8") as f:
        tag_set = TagSet(parse_labels_file(f.read(), labels_path))
    vocabulary = read_vocabulary(os.path.join(run_dir, "vocab.txt"))
    best = os.path.join(run_dir, "best", "model")
    if not tf.io.gfile.exists(best + ".index"):
        raise FileNotFoundError(f"{run_dir}: no best/ weights yet; train first (python -m tfner.train)")
    # backbone.json holds the architecture (class, so the GELU variant, and shape), so a fine-tuned run
    # exports without the checkpoint it started from. Runs written before it existed rebuild from the config.
    backbone_file = os.path.join(run_dir, "backbone.json")
    with dtype_policy(PRECISION_POLICIES[precision]):
        backbone = load_backbone_config(backbone_file) if os.path.exists(backbone_file) else None
        model = build_tagger(config.model, len(vocabulary), config.data.max_seq_length, tag_set, backbone=backbone)
    try:
        tf.train.Checkpoint(model=model).read(best).assert_existing_objects_matched().expect_partial()
    except (tf.errors.OpError, IndexError, AssertionError) as e:  # damaged files, or another model's weights
        raise ValueError(f"{run_dir}/best: the weights do not load ({type(e).__name__}: {e}); the files are "
                         "damaged or belong to another model: restore best/ from a copy, or train again") from None
    tokenizer = CharTokenizer(vocabulary, config.data.lowercase)
    return NerModule(model, tokenizer, tag_set, config.data.max_seq_length, config.export.window_overlap,
                     group_windows=config.export.group_windows)


def next_version(base_dir: str) -> int:
    return max(version_folders(base_dir), default=0) + 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_staging(base_dir: str) -> None:
    """Deletes the staging folders of exports killed on this host (their process is gone): nothing else would."""
    host, this = socket.gethostname(), os.getpid()
    for name in tf.io.gfile.listdir(base_dir):
        match = re.fullmatch(r"\.tmp-\d+-(.+)-(\d+)-[0-9a-f]{8}", name.rstrip("/"))
        if match and match.group(1) == host and int(match.group(2)) != this and not _alive(int(match.group(2))):
            log.info("removing %s, the staging folder of a killed export", name.rstrip("/"))
            tf.io.gfile.rmtree(os.path.join(base_dir, name.rstrip("/")))


def write_warmup(path: str, model_name: str, texts: list[str]) -> None:
    """assets.extra/tf_serving_warmup_requests: one PredictionLog per text (TF Serving reads at most 1000)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for text in texts:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE)
            )
            request.inputs["text"].CopyFrom(tf.make_tensor_proto([text.encode("utf-8")], dtype=tf.string))
            log_record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log_record.SerializeToString())


def check_base_dir(base_dir: str) -> None:
    """Refuses a version folder (export/ner/1) given where a model's folder of versions (export/ner) belongs:
    the export would become export/ner/1/1, which neither TF Serving nor tfner.predict ever reads."""
    if tf.io.gfile.exists(os.path.join(base_dir, "saved_model.pb")):
        raise ConfigError(f"{base_dir} is a version folder (it holds saved_model.pb), not a model's folder of "
                          f"versions; export into its parent, {os.path.dirname(os.path.normpath(base_dir))}")


def export_module(module: NerModule, base_dir: str, model_name: str, version: int | None = None,
                  source: dict | None = None) -> str:
    """Writes module as base_dir/<version>/ (next free version by default) and returns that path.

    `source` (where the model comes from) is written as assets/source.json.
    """
    check_base_dir(base_dir)
    chosen = version is not None
    version = version or next_version(base_dir)
    final = os.path.join(base_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} exists; versions are never overwritten (version=None takes the next free one)")
    # Not a number: TF Serving skips it. Host and pid let a later export remove it if this process is killed.
    staging = os.path.join(base_dir, f".tmp-{version}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tf.io.gfile.makedirs(base_dir)
    remove_abandoned_staging(base_dir)
    try:
        archive = keras.export.ExportArchive()
        archive.track(module.model)
        archive.track(module.tokenizer.table)

        def serve(text):
            return module(text)

        archive.add_endpoint(SIGNATURE, serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        archive.write_out(staging, verbose=False)
        assets = os.path.join(staging, "assets")
        tf.io.gfile.makedirs(assets)
        for name, lines in (
            ("vocab.txt", module.tokenizer.vocabulary),
            ("labels.txt", module.tag_set.labels),
            ("tags.txt", module.tag_set.tags),
        ):
            with tf.io.gfile.GFile(os.path.join(assets, name), "w") as f:
                f.write("".join(f"{line}\n" for line in lines))
        if source:
            with tf.io.gfile.GFile(os.path.join(assets, "source.json"), "w") as f:
                json.dump(source, f, indent=2)
        extra = os.path.join(staging, "assets.extra")
        tf.io.gfile.makedirs(extra)
        write_warmup(os.path.join(extra, "tf_serving_warmup_requests"), model_name, WARMUP_TEXTS)
        while True:
            try:
                tf.io.gfile.rename(staging, final)
                break
            except tf.errors.OpError:
                if chosen or not tf.io.gfile.exists(final):
                    raise
                # Another export took this number since next_version: take the next free one.
                version = next_version(base_dir)
                final = os.path.join(base_dir, str(version))
    except BaseException:
        # tf.io.gfile, not shutil: the base path may be gs:// (shutil would skip it without a word). The error
        # being raised says more than a failed cleanup would (an export that failed early has no staging).
        with contextlib.suppress(tf.errors.OpError):
            tf.io.gfile.rmtree(staging)
        raise
    log.info("exported %s", final)
    return final


RUN_FILES = ("config.yaml", "vocab.txt", "labels.txt", "backbone.json")


def run_digest(run_dir: str) -> str:
    """sha256 of everything an export is made from: the run's config, vocab, labels, backbone.json and best/."""
    digest = hashlib.sha256()
    best = os.path.join(run_dir, "best")
    names = sorted(tf.io.gfile.listdir(best)) if tf.io.gfile.isdir(best) else []  # none: load_run says so
    paths = [os.path.join(run_dir, name) for name in RUN_FILES] + [os.path.join(best, name) for name in names]
    for path in paths:
        if tf.io.gfile.exists(path):
            digest.update(os.path.relpath(path, run_dir).encode("utf-8") + b"\0")
            with tf.io.gfile.GFile(path, "rb") as f:
                digest.update(f.read())
    return "sha256:" + digest.hexdigest()


def find_export(base_dir: str, digest: str, precision: str = "float32") -> str | None:
    """The newest version under base_dir exported from a run of this digest at this precision, if any."""
    for version, folder in sorted(version_folders(base_dir).items(), reverse=True):
        path = os.path.join(folder, "assets", "source.json")
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                source = json.load(f)
                if source.get("digest") == digest and source.get("precision", "float32") == precision:
                    return folder
    return None


def export_run(run_dir: str, out: str | None = None, reuse: bool = False, precision: str | None = None) -> str:
    """Exports a run's best model to `out` (default: the run's export.dir) as the next version.

    precision: "float32" or "bfloat16" (see load_run); default the run's export.precision.

    With reuse, a version already exported from the very same run files (see run_digest) is returned
    instead of writing another: tfner.train uses it, so a run killed after its export and run again ends
    with one version, as an uninterrupted run does.
    """
    check_training_run(run_dir)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    base_dir = out or config.export_dir
    precision = precision or config.export.precision
    source = {"run_dir": os.path.abspath(run_dir), "digest": run_digest(run_dir), "precision": precision}
    if reuse:
        existing = find_export(base_dir, source["digest"], precision)
        if existing:
            log.info("%s was exported from these very weights already; not exporting again", existing)
            return existing
    return export_module(load_run(run_dir, precision), base_dir, config.export.model_name, source=source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.export", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="the run_dir of a training run")
    parser.add_argument("--out", help="export base folder (default: the run's export.dir, export/<model_name>)")
    parser.add_argument("--precision", choices=sorted(PRECISION_POLICIES),
                        help="what the encoder computes in (default: the run's export.precision, float32); bfloat16 "
                             "serves batches faster on CPUs with AMX or AVX512_BF16 and slower on others")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not tf.io.gfile.exists(os.path.join(args.run, "config.yaml")):
        print(f"tfner.export: {args.run} is not a run_dir (it has no config.yaml); pass the run_dir of a "
              "training run (python -m tfner.train writes it)", file=sys.stderr)
        return 2
    try:
        print(export_run(args.run, args.out, precision=args.precision))
    except (OSError, ValueError, tf.errors.OpError) as e:  # no best/ yet, a config or checkpoint that does not
        # load, an --out TensorFlow cannot write (OpError is not an OSError)
        print(f"tfner.export: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
