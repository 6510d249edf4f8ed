"""Long texts: no entity is cut where one window hands over to the next (export/README.md, "Long texts")."""

import random

import pytest

from tfner import demo
from tfner.predict import SavedModelPredictor

FILLER = "我们在家里休息了一会儿，"  # no entity in it, so it only shifts the planted ones into place


def plant_entities_across_seams(window: int, stride: int, seams: int, seed: int = 0):
    """A text of demo sentences whose entities lie across every naive seam of its windows.

    Windows start at 0, S, 2S, ... (the text is made exactly (K - 1) * S + W long, so the last one is no
    exception); the naive seam between windows k and k + 1 is the middle of their overlap,
    m_k = kS + (W + S) / 2. For each seam a demo sentence is placed (after some filler) so that its longest
    entity starts at m_k - 1: the entity covers characters m_k - 1 and m_k, one on each side.

    Returns:
        (text, planted): planted holds (start, end, label) of the entity placed across each seam.
    """
    rng = random.Random(seed)
    text, planted = "", []
    for k in range(seams):
        middle = k * stride + (window + stride) // 2
        while True:
            example = demo.sentence(rng)
            spans = [s for s in example.spans if s.end - s.start >= 2]
            if not spans:
                continue
            span = max(spans, key=lambda s: s.end - s.start)
            pad = middle - 1 - len(text) - span.start
            # It must fit before this seam and end before the next seam's entity has to start.
            if pad >= 0 and len(example.text) - span.start <= stride:
                break
        text += (FILLER * (pad // len(FILLER) + 1))[:pad] + example.text
        planted.append((middle - 1, middle - 1 + span.end - span.start, span.label))
    length = seams * stride + window  # K = seams + 1 windows
    return text + (FILLER * (length // len(FILLER) + 1))[: length - len(text)], planted


@pytest.mark.slow
def test_no_entity_is_cut_at_a_window_seam(tiny_run, module_windows):
    """Every entity of a long text is one that a single window, tagged alone, found whole.

    Criterion: (1) each entity in the export's answer is an entity (same span, same type) of some window's
    text tagged on its own; (2) each entity planted across a seam that both windows of the seam find whole
    when tagged alone comes out whole. The old rule (seam always in the middle of the overlap) breaks (1)
    wherever two windows disagree about an entity that crosses the middle.
    """
    window, stride = module_windows
    seams = 40
    text, planted = plant_entities_across_seams(window, stride, seams)
    starts = [k * stride for k in range(seams + 1)]
    assert len(text) == starts[-1] + window
    for k, (start, end, _) in enumerate(planted):  # the construction did what it says
        middle = starts[k] + (window + stride) // 2
        assert start < middle < end

    predictor = SavedModelPredictor(tiny_run["export"])
    found = {(e["start"], e["end"], e["label"]) for e in predictor.predict([text])[0]}
    windows = predictor.predict([text[s : s + window] for s in starts])
    alone = [{(s + e["start"], s + e["end"], e["label"]) for e in entities} for s, entities in zip(starts, windows)]

    assert found, "the tiny model finds entities in demo sentences"
    whole_somewhere = set().union(*alone)
    assert found <= whole_somewhere, sorted(found - whole_somewhere)
    for k, (start, end, label) in enumerate(planted):
        spans_k = {(a, b) for a, b, _ in alone[k]}
        spans_next = {(a, b) for a, b, _ in alone[k + 1]}
        if (start, end) in spans_k and (start, end) in spans_next:
            assert any((a, b) == (start, end) for a, b, _ in found), (k, text[start:end], label)

    # What the old rule did on this text, for the record (printed with -s): entities it cut in two.
    cut = 0
    for k in range(seams):
        middle = starts[k] + (window + stride) // 2
        left = {e for e in alone[k] if e[0] < middle < e[1]}
        right = {e for e in alone[k + 1] if e[0] < middle < e[1]}
        cut += bool(left or right) and left != right
    print(f"{seams} seams: the middle-of-overlap rule would cut {cut} entities; the answer has {len(found)}")


@pytest.fixture(scope="module")
def module_windows(tiny_run):
    from tfner.export import load_run

    module = load_run(tiny_run["run_dir"])
    return module.window, module.stride
