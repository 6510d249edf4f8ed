"""python -m tfner.evaluate: entity-level P/R/F1 of an exported model, through its serving signature.

    python -m tfner.evaluate --model export/ner --data ../shared/data/resume_ner/test.char.bmes

The SavedModel is what ships, so it is what gets scored: same tokenizer, windows and decode as in
production. Prints a per-type table and writes the figures as JSON (--output). Gold entity types the
model does not have (its assets/labels.txt) are named on stderr: the model cannot find them, so they
score as missed, which usually means the data and the model do not belong together.
"""

import argparse
import json
import os
import sys

import tensorflow as tf

from tfner import data, metrics
from tfner.atomic_write import write_atomically
from tfner.labels import Span
from tfner.predict import SavedModelPredictor


def evaluate_saved_model(path: str, examples: list[data.Example], batch_size: int = 64) -> dict:
    """Scores an export on examples; returns metrics.score's dict plus the export path."""
    predictor = SavedModelPredictor(path, batch_size)
    texts = [e.text for e in examples]
    predicted = [[Span(e["start"], e["end"], e["label"]) for e in row] for row in predictor.predict(texts)]
    result = metrics.score(texts, [e.spans for e in examples], predicted)
    result["model"] = predictor.path
    known = model_entity_types(predictor.path)
    gold = {span.label for e in examples for span in e.spans}
    result["types_not_in_model"] = sorted(gold - set(known)) if known is not None else []
    return result


def model_entity_types(path: str) -> list[str] | None:
    """The entity types an export can find (its assets/labels.txt), or None if it carries no such list."""
    labels = os.path.join(path, "assets", "labels.txt")
    if not tf.io.gfile.exists(labels):
        return None
    with tf.io.gfile.GFile(labels) as f:
        return [line.strip() for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfner.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="export/NAME (latest version) or export/NAME/VERSION")
    parser.add_argument("--data", required=True, nargs="+", help="files or globs with gold entities")
    parser.add_argument("--format", default="auto", choices=("auto", "conll", "cluener", "jsonl"))
    parser.add_argument("--scheme", default="auto", choices=("auto", "BIO", "IOB1", "BIOES", "BMES"))
    parser.add_argument("--lost_characters", default="error", choices=data.LOST_CHARACTERS,
                        help="a CoNLL token of two U+FFFD (Weibo NER's trace of a lost emoji): stop at it, or read "
                             "it as one U+FFFD (data.lost_characters in training)")
    parser.add_argument("--output", help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    if args.output:  # checked before scoring, which can take minutes, not found after it
        folder, problem = os.path.dirname(args.output) or ".", None
        if tf.io.gfile.isdir(args.output):
            problem = f"a folder; name a file in it, e.g. {os.path.join(args.output, 'metrics.json')}"
        elif not tf.io.gfile.isdir(folder):
            problem = f"the folder {folder} does not exist; create it (mkdir -p {folder}) or name another file"
        if problem:
            print(f"tfner.evaluate: --output {args.output}: {problem}", file=sys.stderr)
            return 2
    try:
        examples = data.read_examples(args.data, args.format, args.scheme, args.lost_characters)
        if not any(e.spans for e in examples):
            raise data.DataError(f"{', '.join(args.data)}: no gold entity in {len(examples)} text(s), nothing to "
                                 "score against (CLUENER's test.json has no labels; score on dev.json)")
        result = evaluate_saved_model(args.model, examples)
    except (OSError, ValueError) as e:  # DataError, a missing or malformed export
        print(f"tfner.evaluate: {e}", file=sys.stderr)
        return 2
    print(f"model {result['model']}")
    print(metrics.format_table(result))
    if result["types_not_in_model"]:
        unknown = result["types_not_in_model"]
        print(f"tfner.evaluate: warning: entity type(s) {', '.join(unknown)} of the data are not among the model's "
              f"({', '.join(model_entity_types(result['model']))}): it cannot find them, so they score as missed; "
              "check that --data belongs to this model", file=sys.stderr)
    if args.output:  # a temporary name renamed into place: a kill mid-write leaves no half a JSON file
        try:
            write_atomically(args.output, json.dumps(result, indent=2, ensure_ascii=False))
        except (OSError, tf.errors.OpError) as e:  # e.g. the folder is not writable (the scores are printed above)
            print(f"tfner.evaluate: --output {args.output}: cannot write it ({getattr(e, 'message', e)})",
                  file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
