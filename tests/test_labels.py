import numpy as np
import pytest

from tfner.labels import Span, TagSet, detect_scheme, spans_to_tags, tags_to_spans

# 张三在北京: PER [0, 2), LOC [3, 5); then two touching PERs and a one-character LOC.
SPANS = [Span(0, 2, "PER"), Span(3, 5, "LOC"), Span(5, 7, "PER"), Span(7, 9, "PER"), Span(10, 11, "LOC")]
EXPECTED = {
    "BIO": "B-PER I-PER O B-LOC I-LOC B-PER I-PER B-PER I-PER O B-LOC",
    "IOB1": "I-PER I-PER O I-LOC I-LOC I-PER I-PER B-PER I-PER O I-LOC",
    "BIOES": "B-PER E-PER O B-LOC E-LOC B-PER E-PER B-PER E-PER O S-LOC",
    "BMES": "B-PER E-PER O B-LOC E-LOC B-PER E-PER B-PER E-PER O S-LOC",
}


@pytest.mark.parametrize("scheme", sorted(EXPECTED))
def test_round_trip_in_every_scheme(scheme):
    tags, dropped = spans_to_tags(11, SPANS, scheme)
    assert " ".join(tags) == EXPECTED[scheme] and dropped == 0
    spans, repairs = tags_to_spans(tags)
    assert spans == SPANS
    assert repairs == (4 if scheme == "IOB1" else 0)  # IOB1 begins entities with I- by design


def test_long_entity_uses_inside_tags():
    assert spans_to_tags(4, [Span(0, 4, "ORG")], "BMES")[0] == ["B-ORG", "M-ORG", "M-ORG", "E-ORG"]
    assert spans_to_tags(4, [Span(0, 4, "ORG")], "BIOES")[0] == ["B-ORG", "I-ORG", "I-ORG", "E-ORG"]


@pytest.mark.parametrize(
    "tags, spans, repairs",
    [
        # Resume train starts two sentences with M-ORG: the continuation starts an entity.
        ("M-ORG M-ORG E-ORG O", [Span(0, 3, "ORG")], 1),
        ("O I-PER I-PER", [Span(1, 3, "PER")], 1),
        ("B-PER I-LOC", [Span(0, 1, "PER"), Span(1, 2, "LOC")], 1),
        ("B-PER E-PER E-PER", [Span(0, 2, "PER"), Span(2, 3, "PER")], 1),
        ("B-PER B-PER", [Span(0, 1, "PER"), Span(1, 2, "PER")], 0),
        ("B-LOC O", [Span(0, 1, "LOC")], 0),
        ("", [], 0),
    ],
)
def test_ill_formed_sequences_follow_one_rule(tags, spans, repairs):
    assert tags_to_spans(tags.split()) == (spans, repairs)


def test_overlapping_spans_keep_the_longest():
    tags, dropped = spans_to_tags(5, [Span(0, 2, "PER"), Span(0, 5, "ORG"), Span(3, 4, "LOC")], "BIO")
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG"] and dropped == 2


@pytest.mark.parametrize("bad", ["X-PER", "B-", "B", "BPER"])
def test_unknown_tag_is_an_error(bad):
    with pytest.raises(ValueError, match="unknown tag"):
        tags_to_spans([bad])


def test_span_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="outside a text of 3 characters"):
        spans_to_tags(3, [Span(2, 4, "PER")])


@pytest.mark.parametrize(
    "tags, scheme", [("B-A I-A O", "BIO"), ("B-A E-A S-B", "BIOES"), ("B-A M-A E-A", "BMES"), ("O", "BIO")]
)
def test_detect_scheme(tags, scheme):
    assert detect_scheme(tags.split()) == scheme


def test_tag_set_ids_and_transitions():
    tag_set = TagSet(["PER", "LOC", "PER"])
    assert tag_set.tags == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]
    ids, _ = tag_set.encode(5, [Span(0, 2, "PER"), Span(3, 5, "LOC")])
    assert tag_set.decode(ids) == [Span(0, 2, "PER"), Span(3, 5, "LOC")]
    allowed, starts, ends = tag_set.allowed_transitions()
    index = tag_set.index
    assert not allowed[index["O"], index["I-PER"]] and allowed[index["O"], index["B-PER"]]
    assert allowed[index["B-PER"], index["E-PER"]] and not allowed[index["B-PER"], index["E-LOC"]]
    assert not allowed[index["I-LOC"], index["O"]]
    assert list(np.flatnonzero(starts)) == [index[t] for t in ("O", "B-LOC", "S-LOC", "B-PER", "S-PER")]
    assert list(np.flatnonzero(ends)) == [index[t] for t in ("O", "E-LOC", "S-LOC", "E-PER", "S-PER")]
