"""Tag schemes <-> entity spans.

A span is (start, end, label) over character offsets, end exclusive. A tag scheme writes spans as one tag per
character. For 张三在北京 with PER 张三 [0, 2) and LOC 北京 [3, 5):

    BIO    B-PER I-PER O B-LOC I-LOC
    IOB1   I-PER I-PER O I-LOC I-LOC     (B- only where an entity touches one of the same type)
    BIOES  B-PER E-PER O B-LOC E-LOC     (S- for one-character entities)
    BMES   B-PER E-PER O B-LOC E-LOC     (BIOES with M- for I-; Resume NER's scheme)

Reading tags back uses one rule for every scheme, here and in the exported graph (tfner.export):

    A non-O tag starts an entity if it is B- or S-, or if the tag before it is O, E-, S-, of another type,
    or absent. It ends the entity if it is E- or S-, or if the tag after it starts an entity, is O, or is
    absent.

So an ill-formed continuation (I-, M- or E- with no begin, as in 2 sentences of Resume train) starts a new
entity instead of being dropped or failing the file; `tags_to_spans` counts these repairs so readers can
warn. The model itself always tags in BIOES (`TagSet`), whatever scheme the data came in.
"""

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

SCHEMES = ("BIO", "IOB1", "BIOES", "BMES")

# Prefix classes shared by all schemes (M- is BMES's name for I-).
BEGIN, INSIDE, END, SINGLE, OUTSIDE = "B", "I", "E", "S", "O"
_PREFIX_CLASS = {"B": BEGIN, "I": INSIDE, "M": INSIDE, "E": END, "S": SINGLE}


@dataclasses.dataclass(frozen=True, order=True)
class Span:
    """An entity: characters [start, end) of a text, of type `label`."""

    start: int
    end: int
    label: str


def split_tag(tag: str) -> tuple[str, str]:
    """Returns (prefix class, type) of a tag: "B-ORG" -> ("B", "ORG"); "M-LOC" -> ("I", "LOC"); "O" -> ("O", "")."""
    if tag == "O":
        return OUTSIDE, ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in _PREFIX_CLASS or not label:
        raise ValueError(f"unknown tag {tag!r}: expected O or <B|I|M|E|S>-<TYPE>, e.g. B-ORG")
    return _PREFIX_CLASS[prefix], label


def detect_scheme(tags: Iterable[str]) -> str:
    """Names the scheme a set of tags is written in: M- means BMES, E- or S- BIOES, else BIO.

    IOB1 cannot be told from BIO by the tag set; declare it (`data.scheme: IOB1`) when a file uses it.
    """
    prefixes = {tag.split("-", 1)[0] for tag in tags if tag != "O"}
    if "M" in prefixes:
        return "BMES"
    if prefixes & {"E", "S"}:
        return "BIOES"
    return "BIO"


def tags_to_spans(tags: Sequence[str]) -> tuple[list[Span], int]:
    """Reads spans from tags by the rule in the module docstring.

    Args:
        tags: list of str. One tag per character, in any of SCHEMES.

    Returns:
        (spans, repairs): the spans in order, and how many entities began with a continuation tag
        (I-/M-/E- with no begin before it). IOB1 files legitimately start entities with I-; ignore the
        count for them.
    """
    parsed = [split_tag(tag) for tag in tags]
    spans, repairs, start = [], 0, None
    for i, (prefix, label) in enumerate(parsed):
        if prefix == OUTSIDE:
            continue
        if _starts(parsed, i):
            start = i
            repairs += prefix in (INSIDE, END)
        if _ends(parsed, i):
            spans.append(Span(start, i + 1, label))
    return spans, repairs


def _starts(parsed: list[tuple[str, str]], i: int) -> bool:
    prefix, label = parsed[i]
    if prefix == OUTSIDE:
        return False
    if prefix in (BEGIN, SINGLE) or i == 0:
        return True
    before_prefix, before_label = parsed[i - 1]
    return before_prefix in (OUTSIDE, END, SINGLE) or before_label != label


def _ends(parsed: list[tuple[str, str]], i: int) -> bool:
    prefix = parsed[i][0]
    if prefix in (END, SINGLE) or i == len(parsed) - 1:
        return True
    return parsed[i + 1][0] == OUTSIDE or _starts(parsed, i + 1)


def spans_to_tags(length: int, spans: Iterable[Span], scheme: str = "BIOES") -> tuple[list[str], int]:
    """Writes spans as tags.

    Args:
        length: int. Number of characters.
        spans: iterable of Span. In-range spans; they may overlap.
        scheme: str. One of SCHEMES.

    Returns:
        (tags, dropped): flat tagging cannot hold overlapping entities, so spans are placed longest first
        (ties: earliest first) and a span overlapping one already placed is dropped and counted.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    owner = [None] * length
    placed, dropped = [], 0
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start, s.label)):
        if not 0 <= span.start < span.end <= length:
            raise ValueError(f"span {span} is outside a text of {length} characters")
        if any(owner[i] is not None for i in range(span.start, span.end)):
            dropped += 1
            continue
        for i in range(span.start, span.end):
            owner[i] = span
        placed.append(span)
    tags = ["O"] * length
    for span in sorted(placed):
        first, last, label = span.start, span.end - 1, span.label
        touches_same_type = first > 0 and owner[first - 1] is not None and owner[first - 1].label == label
        for i in range(first, last + 1):
            tags[i] = f"I-{label}"
        if scheme == "BIO":
            tags[first] = f"B-{label}"
        elif scheme == "IOB1":
            if touches_same_type:
                tags[first] = f"B-{label}"
        else:
            inside = "M" if scheme == "BMES" else "I"
            for i in range(first + 1, last):
                tags[i] = f"{inside}-{label}"
            if first == last:
                tags[first] = f"S-{label}"
            else:
                tags[first], tags[last] = f"B-{label}", f"E-{label}"
    return tags, dropped


def parse_labels_file(text: str, source: str) -> list[str]:
    """The entity types of a run's labels.txt: one a line, sorted and each once, as training writes them.

    Tag ids are positions in the sorted types, and the checkpoint's weights are indexed by them. A file saved
    with a byte-order mark, or edited (a type renamed, one added), sorts differently and would give every
    learned tag another type's name without any error; it is refused instead, naming the line.

    Args:
        text: str. The file's content.
        source: str. Its path, for the messages.
    """
    labels = []
    for number, line in enumerate(text.splitlines(), 1):
        label = line.strip()
        if not label:
            continue
        if label.startswith("\ufeff") or any(c.isspace() for c in label):
            raise ValueError(f"{source}:{number}: {label!r} is not an entity type (a byte-order mark or a space "
                             "in it): the file was edited; restore the labels.txt the run wrote")
        labels.append(label)
    if labels != sorted(set(labels)):
        raise ValueError(f"{source}: the entity types {labels} are not sorted and unique, as training wrote them; "
                         "tag ids follow that order, so the edited file would give every type another's name: "
                         "restore the labels.txt the run wrote")
    return labels


class TagSet:
    """The model's tags: "O", then B-, I-, E-, S- of each entity type, in BIOES.

    Ids are positions in `tags`; the order is fixed by the sorted type names, so the same types always give
    the same ids.

    Args:
        labels: iterable of str. Entity types, e.g. ["LOC", "ORG", "PER"].
    """

    def __init__(self, labels: Iterable[str]):
        self.labels = sorted(set(labels))
        if not self.labels:
            raise ValueError("a tag set needs at least one entity type")
        self.tags = ["O"] + [f"{p}-{label}" for label in self.labels for p in "BIES"]
        self.index = {tag: i for i, tag in enumerate(self.tags)}

    def __len__(self) -> int:
        return len(self.tags)

    def encode(self, length: int, spans: Iterable[Span]) -> tuple[list[int], int]:
        """Span list -> tag ids; returns (ids, number of overlapping spans dropped)."""
        tags, dropped = spans_to_tags(length, spans, "BIOES")
        return [self.index[tag] for tag in tags], dropped

    def decode(self, ids: Sequence[int]) -> list[Span]:
        return tags_to_spans([self.tags[i] for i in ids])[0]

    def prefix_classes(self) -> list[str]:
        """Per tag id: its prefix class (O, B, I, E, S); the exported graph reads spans with these."""
        return [split_tag(tag)[0] for tag in self.tags]

    def type_ids(self) -> list[int]:
        """Per tag id: index of its type in `labels`, -1 for O."""
        return [-1] + [t for t in range(len(self.labels)) for _ in "BIES"]

    def allowed_transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BIOES's legal moves as bool arrays ([T, T] from->to, [T] first tag, [T] last tag).

        After O, E-X or S-X comes O, B-Y or S-Y; after B-X or I-X comes I-X or E-X.
        """
        classes, types = self.prefix_classes(), self.type_ids()
        closed = [c in (OUTSIDE, END, SINGLE) for c in classes]
        opens = [c in (OUTSIDE, BEGIN, SINGLE) for c in classes]
        n = len(self.tags)
        allowed = np.zeros((n, n), dtype=bool)
        for i in range(n):
            for j in range(n):
                if closed[i]:
                    allowed[i, j] = opens[j]
                else:
                    allowed[i, j] = classes[j] in (INSIDE, END) and types[j] == types[i]
        return allowed, np.array(opens), np.array(closed)
