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


def resolve_version(path: str) -> str:
    """export/NAME -> export/NAME/<highest version>; a version folder is returned as is."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(path) if name.rstrip("/").isdigit()] \
        if tf.io.gfile.isdir(path) else []
    if not versions:
        raise FileNotFoundError(f"{path}: neither a SavedModel nor a folder of numbered versions; export one with "
                                "python -m tfner.export --run RUN_DIR")
    return os.path.join(path, str(max(versions)))


class SavedModelPredictor:
    """Runs the `serving_default` signature of an export on batches of texts.

    Args:
        path: str. export/NAME (latest version) or export/NAME/VERSION.
        batch_size: int. Texts per signature call.
    """

    def __init__(self, path: str, batch_size: int = 64):
        self.path = resolve_version(path)
        self.batch_size = batch_size
        self._loaded = tf.saved_model.load(self.path)
        self.signature = self._loaded.signatures["serving_default"]

    def outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The raw signature outputs for one batch."""
        return {k: v.numpy() for k, v in self.signature(text=tf.constant(texts, tf.string)).items()}

    def predict(self, texts: list[str]) -> list[list[dict]]:
        """Entities per text, as dicts with label, start, end, text and score."""
        results = []
        for i in range(0, len(texts), self.batch_size):
            results.extend(entities_from_outputs(self.outputs(texts[i : i + self.batch_size])))
        return results


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="export/NAME (latest version) or export/NAME/VERSION")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("texts", nargs="*", help="texts to tag; read from stdin, one per line, when omitted")
    args = parser.parse_args(argv)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    predictor = SavedModelPredictor(args.model, args.batch_size)
    for text, entities in zip(texts, predictor.predict(texts)):
        print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
