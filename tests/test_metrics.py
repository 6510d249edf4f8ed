"""Proposed tests/test_metrics.py: tfner.metrics.score against a hand count of exact (start, end, type) matches."""
import json
import random

import pytest

from tfner.labels import Span
from tfner.metrics import score


def hand_count(gold, predicted):
    g = {(i, s) for i, spans in enumerate(gold) for s in spans}
    p = {(i, s) for i, spans in enumerate(predicted) for s in spans}
    correct = len(g & p)
    precision, recall = (correct / len(p) if p else 0.0), (correct / len(g) if g else 0.0)
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0), len(g)


def random_flat_spans(length, rng):
    spans, i = [], 0
    while i < length:
        size = rng.randint(1, 4)
        if rng.random() < 0.4 and i + size <= length:
            spans.append(Span(i, i + size, rng.choice(["PER", "LOC", "ORG"])))
            i += size
        else:
            i += 1
    return spans


def test_score_matches_a_hand_count_on_random_spans():
    rng = random.Random(0)
    for _ in range(100):
        texts = ["x" * rng.randint(0, 10) for _ in range(rng.randint(1, 4))]
        gold = [random_flat_spans(len(t), rng) for t in texts]
        predicted = [[s for s in (g if rng.random() < 0.5 else random_flat_spans(len(t), rng)) if rng.random() < 0.8]
                     for t, g in zip(texts, gold)]
        result = score(texts, gold, predicted)
        if not any(gold) and not any(predicted):
            continue
        assert (result["precision"], result["recall"], result["f1"], result["support"]) == pytest.approx(
            hand_count(gold, predicted))


def test_nested_gold_counts_every_entity():
    # CLUENER train's book title holding company names: a flat tagger finds the book, misses the company.
    result = score(["《招商银行年报》"], [[Span(0, 8, "book"), Span(1, 5, "company")]], [[Span(0, 8, "book")]])
    assert result["recall"] == 0.5 and result["support"] == 2
    assert result["per_type"]["company"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


@pytest.mark.parametrize("texts", [["今天天气很好"], []])
def test_no_entities_or_no_texts_score_zero(texts):
    result = score(texts, [[] for _ in texts], [[] for _ in texts])
    assert result["macro_f1"] == 0.0 and result["f1"] == 0.0 and result["per_type"] == {}
    json.dumps(result, allow_nan=False)  # metrics.json stays valid JSON


def test_types_that_differ_by_a_dash_stay_apart():
    result = score(["ab"], [[Span(0, 1, "PER"), Span(1, 2, "PER-")]], [[Span(0, 1, "PER-"), Span(1, 2, "PER")]])
    assert result["f1"] == 0.0 and sorted(result["per_type"]) == ["PER", "PER-"]
