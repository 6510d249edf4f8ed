"""Properties of the serving graph on arbitrary Unicode, checked with hypothesis: tokenizer, windows, spans.

The tiny export (conftest's export_factory) is loaded once and fed texts drawn from every Unicode plane,
mixed with the export's own vocabulary and demo sentences (so that entities come out), with whitespace, NUL, U+FFFD, emoji
and combining marks, and long enough to need several of its 30-character windows. For every batch:

- nothing fails, and every code point gets exactly one tag (padding gets "");
- every entity's offsets slice the text to the entity's text, and the graph's spans are what
  tfner.labels.tags_to_spans reads from the graph's own tags (one span rule, in graph and in Python);
- a text's entities, tags and scores do not depend on which texts share its batch;
- invalid UTF-8 decodes as Python's decoder does with errors="replace" (one U+FFFD per maximal bad subpart).

Bounded: a few dozen examples per property, no deadline (a first call traces the graph), no example database
written into the tree.
"""

import os
import random

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfner import demo
from tfner.labels import tags_to_spans
from tfner.tokenizer import CharTokenizer, read_vocabulary

BOUNDED = settings(max_examples=30, deadline=None, database=None)

SPECIALS = ["\x00", " ", "\t", "\n", "\u3000", "\ufffd", "😀", "\u0301", "\u2028", "Ａ", "é"]


@pytest.fixture(scope="module")
def export(export_factory, tmp_path_factory):
    """(signature, vocabulary) of the tiny export, loaded once."""
    path = export_factory(str(tmp_path_factory.mktemp("properties") / "ner"), 1)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    return signature, read_vocabulary(os.path.join(path, "assets", "vocab.txt"))


def characters(vocabulary):
    in_vocab = [t for t in vocabulary if len(t) == 1]
    return st.one_of(
        st.sampled_from(in_vocab),  # the model's own characters: entities come out
        st.characters(codec="utf-8"),  # any code point of any plane, surrogates excluded
        st.sampled_from(SPECIALS),
    )


# Sentences of the demo corpus the tiny model learned from: drawn into the texts, they make entities come out
# (on characters alone, a tiny model may find none, and the offset checks would run on nothing).
DEMO_SENTENCES = [demo.sentence(random.Random(seed)).text for seed in range(20)]


def texts_strategy(vocabulary, max_texts=4):
    around = st.text(alphabet=characters(vocabulary), max_size=50)
    text = st.tuples(around, st.sampled_from(DEMO_SENTENCES + [""]), around).map("".join)  # up to ~5 windows of 30
    return st.lists(text, min_size=1, max_size=max_texts)


def run(signature, encoded):
    return {k: v.numpy() for k, v in signature(text=tf.constant(encoded, tf.string)).items()}


def rows(outputs, texts):
    """Per text: (tags, [(label, start, end, text, score)]) with the padding cut off."""
    result = []
    for r, text in enumerate(texts):
        n = int(outputs["num_entities"][r])
        entities = [
            (outputs["entity_labels"][r, i].decode(), int(outputs["entity_starts"][r, i]),
             int(outputs["entity_ends"][r, i]), outputs["entity_texts"][r, i].decode("utf-8"),
             float(outputs["entity_scores"][r, i]))
            for i in range(n)
        ]
        result.append(([t.decode() for t in outputs["tags"][r]], entities))
    return result


def check_row(text, tags, entities):
    assert all(tags[: len(text)]) and not any(tags[len(text):]), "one tag per code point, padding empty"
    spans = tags_to_spans(tags[: len(text)])[0]
    assert [(s.label, s.start, s.end) for s in spans] == [(e[0], e[1], e[2]) for e in entities]
    for label, start, end, entity_text, score in entities:
        assert 0 <= start < end <= len(text)
        assert text[start:end] == entity_text
        assert 0.0 <= score <= 1.0


def test_every_code_point_is_tagged_and_every_offset_slices(export):
    signature, vocabulary = export

    found = []

    @BOUNDED
    @given(texts_strategy(vocabulary))
    def check(texts):
        outputs = run(signature, [t.encode("utf-8") for t in texts])
        assert outputs["tags"].shape[0] == len(texts)
        for text, (tags, entities) in zip(texts, rows(outputs, texts)):
            check_row(text, tags, entities)
            found.append(len(entities))

    check()
    assert sum(found) > 0, "no entity in any drawn text: the offset checks ran on nothing"


def test_results_do_not_depend_on_batch_composition(export):
    signature, vocabulary = export

    @BOUNDED
    @given(texts_strategy(vocabulary, max_texts=5), st.data())
    def check(texts, data):
        together = rows(run(signature, [t.encode("utf-8") for t in texts]), texts)
        index = data.draw(st.integers(0, len(texts) - 1), label="text tagged alone")
        alone = rows(run(signature, [texts[index].encode("utf-8")]), [texts[index]])[0]
        length = len(texts[index])
        assert alone[0][:length] == together[index][0][:length]
        assert [e[:4] for e in alone[1]] == [e[:4] for e in together[index][1]]
        np.testing.assert_allclose([e[4] for e in alone[1]], [e[4] for e in together[index][1]], atol=1e-5)

    check()


def test_invalid_utf8_decodes_as_python_replaces_it(export):
    signature, vocabulary = export

    @BOUNDED
    @given(st.lists(st.binary(max_size=60), min_size=1, max_size=4))
    def check(encoded):
        texts = [b.decode("utf-8", errors="replace") for b in encoded]
        for text, (tags, entities) in zip(texts, rows(run(signature, encoded), texts)):
            check_row(text, tags, entities)

    check()


def test_tokenizer_gives_one_id_per_code_point(export):
    _, vocabulary = export
    tokenizer = CharTokenizer(vocabulary)
    index = {token: i for i, token in enumerate(vocabulary)}

    @BOUNDED
    @given(texts_strategy(vocabulary, max_texts=6))
    def check(texts):
        ids = tokenizer(tf.constant([t.encode("utf-8") for t in texts]))
        assert ids.row_lengths().numpy().tolist() == [len(t) for t in texts]
        for text, row in zip(texts, ids.to_list()):
            for char, token in zip(text, row):
                if char in index:
                    assert token == index[char], char
                elif char.isspace():
                    assert token == tokenizer.space_id
                assert 0 <= token < len(vocabulary)

    check()
