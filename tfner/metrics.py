"""Entity-level precision, recall and F1 with seqeval.

Gold and predicted spans are both written as well-formed BIOES tags and scored in seqeval's strict IOBES
mode, so the entities seqeval counts are exactly the spans tfner reads and predicts (an entity is right only
if its type, start and end all match).
"""

from collections.abc import Sequence

from seqeval.metrics import classification_report
from seqeval.scheme import IOBES

from tfner.labels import Span, spans_to_tags


def score(texts: Sequence[str], gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict:
    """Micro P/R/F1, macro F1 and per-type figures, as a JSON-ready dict."""
    if not (len(texts) == len(gold) == len(predicted)):
        raise ValueError(f"score() needs one gold and one predicted span list per text: {len(texts)}, {len(gold)}, {len(predicted)}")
    y_true = [spans_to_tags(len(t), g)[0] for t, g in zip(texts, gold)]
    y_pred = [spans_to_tags(len(t), p)[0] for t, p in zip(texts, predicted)]
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOBES, output_dict=True, zero_division=0)
    per_type = {
        name: {"precision": r["precision"], "recall": r["recall"], "f1": r["f1-score"], "support": int(r["support"])}
        for name, r in report.items()
        if not name.endswith(" avg")
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    return {
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1-score"],
        "macro_f1": report.get("macro avg", {}).get("f1-score", 0.0),
        "support": int(micro["support"]),
        "per_type": per_type,
    }


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
