"""python -m tfner.predict: entities for texts, from an exported SavedModel run in-process.

    python -m tfner.predict --model export/ner "张三在北京工作。" "李四去了上海。"
    cat texts.txt | python -m tfner.predict --model export/ner/3

Prints one JSON line per text: {"text": ..., "entities": [{"label", "start", "end", "text", "score"}]}.
"""

import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from tfner.versions import version_folders


def resolve_version(path: str) -> str:
    """export/NAME -> export/NAME/<highest version holding a saved_model.pb>; a version folder is returned as is.

    As TF Serving does, a numbered folder without saved_model.pb (an export still being written, or one that
    was interrupted) is not a version.
    """
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    numbered = version_folders(path)
    versions = {v: folder for v, folder in numbered.items()
                if tf.io.gfile.exists(os.path.join(folder, "saved_model.pb"))}
    if not versions:
        raise FileNotFoundError(_no_export_here(path, numbered))
    return versions[max(versions)]


def _served_versions(base: str) -> list[int]:
    return sorted(v for v, folder in version_folders(base).items()
                  if tf.io.gfile.exists(os.path.join(folder, "saved_model.pb")))


def _no_export_here(path: str, numbered: dict) -> str:
    """Why `path` is no export, for the paths people give by mistake: a version that is not there, a run_dir, the
    export folder above the models, a folder inside a version."""
    normalized = os.path.normpath(path)
    base, name = os.path.split(normalized)
    fix = "export one with python -m tfner.export --run RUN_DIR"
    if name.isdigit() and not tf.io.gfile.exists(path) and _served_versions(base):  # export/ner/7
        held = ", ".join(map(str, _served_versions(base)))
        return f"{path}: no such version; {base} holds version(s) {held}: name one, or {base} for the newest"
    if tf.io.gfile.exists(os.path.join(path, "config.yaml")) and tf.io.gfile.isdir(os.path.join(path, "checkpoints")):
        return (f"{path} is a training run_dir, not an export: its export is in the config's export.dir (export/"
                f"<model_name>), or {fix.replace('RUN_DIR', path)}")
    if tf.io.gfile.isdir(path):
        models = sorted(entry.rstrip("/") for entry in tf.io.gfile.listdir(path)
                        if _served_versions(os.path.join(path, entry.rstrip("/"))))
        if models:  # export/ given for export/ner
            return f"{path} holds model folder(s) {', '.join(models)}: name one, e.g. {os.path.join(path, models[0])}"
    parent = os.path.dirname(normalized)
    while parent and parent != os.path.dirname(parent):
        if tf.io.gfile.exists(os.path.join(parent, "saved_model.pb")):  # export/ner/1/variables
            return f"{path} is inside the version folder {parent}: name {parent}, or {os.path.dirname(parent)}"
        parent = os.path.dirname(parent)
    if not tf.io.gfile.exists(path):
        return f"{path}: no such folder; {fix}"
    found = f" (its numbered folders {sorted(numbered)} hold no saved_model.pb)" if numbered else ""
    return f"{path}: neither a SavedModel nor a folder of numbered versions{found}; {fix}"


# Signature keys TensorFlow writes for itself (tf.saved_model.load does not list them among the signatures).
_SAVED_MODEL_OPS = {"__saved_model_init_op", "__saved_model_train_op"}
# The outputs of the contract (export/README.md) and their dtypes.
CONTRACT_OUTPUTS = {"num_entities": tf.int32, "entity_labels": tf.string, "entity_starts": tf.int32,
                    "entity_ends": tf.int32, "entity_texts": tf.string, "entity_scores": tf.float32,
                    "tags": tf.string}


class NotAnExport(ValueError):
    """A model path that is not a tfner export (unreadable, or another contract); the message says which and why."""


def check_saved_model(path: str) -> None:
    """The export's contract, read from saved_model.pb alone (no graph loaded, no variables read).

    Launchers run it too: tfner.tag's workers each load the export, and a corrupt or foreign one would fail
    there, in every worker, after the pipeline has started; this fails before, in a fraction of a second.
    """
    saved_model = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
    except (OSError, DecodeError, tf.errors.OpError) as e:
        raise NotAnExport(f"{path} is not a loadable SavedModel ({type(e).__name__}: {e}); export it again with "
                          "python -m tfner.export --run RUN_DIR") from None
    signatures = {name: s for graph in saved_model.meta_graphs for name, s in graph.signature_def.items()
                  if name not in _SAVED_MODEL_OPS}
    if "serving_default" not in signatures:
        raise NotAnExport(f"{path} has no serving_default signature (it has: {sorted(signatures) or 'none'}); "
                          "a tfner export serves one, see export/README.md")
    inputs = signatures["serving_default"].inputs
    if set(inputs) != {"text"} or inputs["text"].dtype != tf.string.as_datatype_enum:
        described = {k: f"{tf.dtypes.as_dtype(v.dtype).name} {tf.TensorShape(v.tensor_shape)}" for k, v in inputs.items()}
        raise NotAnExport(f"{path}: serving_default takes {described}, not a string input 'text'; is it a tfner "
                          "export? (export/README.md has the contract)")
    outputs = signatures["serving_default"].outputs
    wrong = [f"{name} ({'missing' if name not in outputs else tf.dtypes.as_dtype(outputs[name].dtype).name})"
             for name, dtype in CONTRACT_OUTPUTS.items()
             if name not in outputs or outputs[name].dtype != dtype.as_datatype_enum]
    if wrong:
        raise NotAnExport(f"{path}: serving_default lacks the outputs of a tfner export: {', '.join(wrong)}, where "
                          f"it should return {', '.join(f'{n} {d.name}' for n, d in CONTRACT_OUTPUTS.items())}; is "
                          "it a tfner export? (export/README.md has the contract)")


def load_signature(path: str):
    """(loaded SavedModel, its serving_default signature), or NotAnExport saying why it is not a tfner export."""
    check_saved_model(path)
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:  # e.g. its variables are missing or corrupt
        raise NotAnExport(f"{path} is not a loadable SavedModel ({type(e).__name__}: {e}); export it again with "
                          "python -m tfner.export --run RUN_DIR") from None
    return loaded, loaded.signatures["serving_default"]


class SavedModelPredictor:
    """Runs the `serving_default` signature of an export on batches of texts.

    Args:
        path: str. export/NAME (latest version) or export/NAME/VERSION.
        batch_size: int. Texts per signature call.
    """

    def __init__(self, path: str, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = resolve_version(path)
        self.batch_size = batch_size
        self._loaded, self.signature = load_signature(self.path)

    def outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The raw signature outputs for one batch."""
        return self._call(utf8_texts(texts))

    def predict(self, texts: list[str]) -> list[list[dict]]:
        """Entities per text, as dicts with label, start, end, text and score."""
        if isinstance(texts, (str, bytes)):  # a str is iterable: it would be one text per character
            raise TypeError(f"texts is one {type(texts).__name__}; pass a list: predict([text])")
        encoded, results = utf8_texts(texts), []
        for i in range(0, len(texts), self.batch_size):
            results.extend(entities_from_outputs(self._call(encoded[i : i + self.batch_size])))
        return results

    def _call(self, encoded: list[bytes]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.signature(text=tf.constant(encoded, tf.string)).items()}


def utf8_texts(texts: list[str], first: int = 0) -> list[bytes]:
    """UTF-8 of each text; a ValueError names the first that has none (numbered from `first`)."""
    encoded = []
    for number, text in enumerate(texts, start=first):
        try:
            encoded.append(text.encode("utf-8"))
        except UnicodeEncodeError as e:  # a lone surrogate: JSON's "\ud83d", or bytes argv could not decode
            point = ord(text[e.start])
            if 0xDC80 <= point <= 0xDCFF:  # how Python carries a byte that is not UTF-8 (surrogateescape)
                raise ValueError(
                    f"text {number} holds byte 0x{point - 0xDC00:02X} at character {e.start}, which is not UTF-8 "
                    f"(or a lone surrogate U+{point:04X}); pass UTF-8 text, e.g. convert it with iconv"
                ) from None
            raise ValueError(
                f"text {number} holds U+{point:04X} at character {e.start}, half of a UTF-16 surrogate "
                "pair, which is no character and has no UTF-8 form; pass UTF-8 text"
            ) from None
    return encoded


def entities_from_outputs(outputs: dict) -> list[list[dict]]:
    """Padded signature outputs -> one list of entity dicts per text (the padding cut off by num_entities)."""
    rows = []
    for r, count in enumerate(np.asarray(outputs["num_entities"])):
        rows.append([
            {
                "label": outputs["entity_labels"][r, i].decode("utf-8"),
                "start": int(outputs["entity_starts"][r, i]),
                "end": int(outputs["entity_ends"][r, i]),
                "text": outputs["entity_texts"][r, i].decode("utf-8"),
                "score": round(float(outputs["entity_scores"][r, i]), 6),
            }
            for i in range(int(count))
        ])
    return rows


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer_at_least(text, 0)


def _integer_at_least(text: str, minimum: int) -> int:
    value = int(text)  # a ValueError: argparse says "invalid <type> value: 'x'"
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def read_text_lines(stream, name: str) -> list[str]:
    """One text per line of a stream (binary, or already text); a line that is not UTF-8 is an error naming it."""
    texts = []
    for number, raw in enumerate(stream, start=1):
        try:
            text = (raw.decode("utf-8") if isinstance(raw, bytes) else raw).rstrip("\r\n")
            texts.append(text[1:] if number == 1 and text.startswith("\ufeff") else text)  # a byte-order mark
        except UnicodeDecodeError as e:
            raise ValueError(f"{name} line {number} is not UTF-8 ({e.reason} at byte {e.start}); "
                             "convert the input, e.g. with iconv -f GBK -t UTF-8") from None
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="export/NAME (latest version) or export/NAME/VERSION")
    parser.add_argument("--batch_size", type=positive_int, default=64)
    parser.add_argument("texts", nargs="*", help="texts to tag; read from stdin, one per line, when omitted")
    args = parser.parse_args(argv)
    try:
        texts = args.texts or read_text_lines(getattr(sys.stdin, "buffer", sys.stdin), "stdin")
        utf8_texts(texts, first=1)  # refused here, before the model loads, not mid-output
        predictor = SavedModelPredictor(args.model, args.batch_size)
    except (OSError, ValueError) as e:
        print(f"tfner.predict: {e}", file=sys.stderr)
        return 2
    for text, entities in zip(texts, predictor.predict(texts)):
        print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
