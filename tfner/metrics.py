"""Entity-level precision, recall and F1 with seqeval.

Gold and predicted spans are both written as well-formed BIOES tags and scored in seqeval's strict IOBES
mode, so the entities seqeval counts are exactly the spans tfner reads and predicts (an entity is right only
if its type, start and end all match).

A row of tags holds no overlapping entities, but gold may nest them (CLUENER: a company inside a book title).
So each text is given to seqeval as rows that cannot overlap: the entities gold and prediction share, in as
many rows as they need, then the ones only gold has (misses), then the ones only the prediction has. Every
gold entity counts, nested or not, and seqeval's counts equal those of exact (start, end, type) matching.
"""

from collections.abc import Sequence

from seqeval.metrics import classification_report
from seqeval.scheme import IOBES

from tfner.labels import Span, spans_to_tags


def score(texts: Sequence[str], gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict:
    """Micro P/R/F1, macro F1 and per-type figures, as a JSON-ready dict (all 0 when there is no entity)."""
    if not (len(texts) == len(gold) == len(predicted)):
        raise ValueError(f"score() needs one gold and one predicted span list per text: {len(texts)}, {len(gold)}, {len(predicted)}")
    # seqeval reads a type out of its tag text (and strips '-' from it: 'PER-' would merge with 'PER'), so it
    # is given neutral names and the figures are reported under the real ones.
    types = sorted({s.label for spans in (*gold, *predicted) for s in spans})
    alias = {name: f"T{i}" for i, name in enumerate(types)}
    y_true, y_pred = [], []
    for text, gold_spans, predicted_spans in zip(texts, gold, predicted):
        gold_set, predicted_set = set(gold_spans), set(predicted_spans)
        for row_gold, row_predicted in _rows(gold_set & predicted_set, gold_set - predicted_set,
                                             predicted_set - gold_set):
            y_true.append(_tags(len(text), row_gold, alias))
            y_pred.append(_tags(len(text), row_predicted, alias))
    zeros = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "macro_f1": 0.0, "support": 0, "per_type": {}}
    if not types:
        return zeros
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOBES, output_dict=True, zero_division=0)
    per_type = {
        name: {"precision": r["precision"], "recall": r["recall"], "f1": r["f1-score"], "support": int(r["support"])}
        for name, r in ((name, report[alias[name]]) for name in types)
    }
    micro = report["micro avg"]
    return {
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1-score"],
        "macro_f1": sum(r["f1"] for r in per_type.values()) / len(per_type),
        "support": int(micro["support"]),
        "per_type": per_type,
    }


def _rows(shared: set, missed: set, spurious: set) -> list[tuple[list, list]]:
    """(gold, predicted) span rows for one text, no row holding overlapping spans; [([], [])] for none."""
    rows = [(layer, layer) for layer in _layers(shared)]
    rows += [(layer, []) for layer in _layers(missed)]
    rows += [([], layer) for layer in _layers(spurious)]
    return rows or [([], [])]


def _layers(spans: set) -> list[list[Span]]:
    """Spans in as few rows as the greedy takes, none of a row overlapping another of it."""
    layers = []
    for span in sorted(spans):
        for layer in layers:
            if all(span.end <= other.start or other.end <= span.start for other in layer):
                layer.append(span)
                break
        else:
            layers.append([span])
    return layers


def _tags(length: int, spans: list[Span], alias: dict) -> list[str]:
    tags, dropped = spans_to_tags(length, [Span(s.start, s.end, alias[s.label]) for s in spans])
    assert not dropped  # _layers keeps every row free of overlaps
    return tags


def format_table(metrics: dict) -> str:
    """A fixed-width table of per-type and overall figures."""
    lines = [f"{'type':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, r in sorted(metrics["per_type"].items()):
        lines.append(f"{name:<16}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}{r['support']:>10d}")
    lines.append(
        f"{'micro avg':<16}{metrics['precision']:>10.4f}{metrics['recall']:>10.4f}{metrics['f1']:>10.4f}"
        f"{metrics['support']:>10d}"
    )
    lines.append(f"{'macro f1':<16}{'':>20}{metrics['macro_f1']:>10.4f}")
    return "\n".join(lines)
