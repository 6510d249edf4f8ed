"""predict() against the real server: parity with the SavedModel, offsets, chunking, pinning, threads."""

import threading

import pytest

from tfner_client import Entity, NerClient


def assert_matches(got, want, where):
    """Entities equal the parity answer: labels, offsets and texts exactly, scores within 1e-4."""
    assert [(e.label, e.start, e.end, e.text) for e in got] == [
        (w["label"], w["start"], w["end"], w["text"]) for w in want
    ], where
    for entity, expected in zip(got, want):
        assert entity.score == pytest.approx(expected["score"], abs=1e-4), where


def test_parity_corpus(server, parity):
    texts = [text for text, _ in parity]
    with NerClient(server, label="stable") as client:
        results = client.predict(texts)
    assert len(results) == len(texts)
    for index, ((text, want), got) in enumerate(zip(parity, results)):
        assert_matches(got, want, f"text {index}: {text[:40]!r}")
    assert sum(map(len, results)) > 0, "the corpus should hold entities"


def test_offsets_slice_the_original_string(server, parity):
    """Python indexes str by code point, the server's unit: no conversion, even for emoji and combining marks."""
    texts = [text for text, _ in parity]
    with NerClient(server) as client:
        results = client.predict(texts)
    assert any(ord(c) > 0xFFFF for text in texts for c in text), "the corpus should hold astral characters"
    for text, entities in zip(texts, results):
        for entity in entities:
            assert text[entity.start:entity.end] == entity.text, (text, entity)


def test_chunks_keep_input_order(server, parity):
    short = [text for text, _ in parity if len(text) < 200]
    texts = (short * (100 // len(short) + 1))[:100]
    with NerClient(server, chunk_size=7, max_concurrent_chunks=4) as client:  # 15 calls, 4 in flight
        chunked = client.predict(texts)
    with NerClient(server, chunk_size=100) as client:
        whole = client.predict(texts)
    assert len(chunked) == 100
    assert [[(e.label, e.start, e.end, e.text) for e in row] for row in chunked] == \
           [[(e.label, e.start, e.end, e.text) for e in row] for row in whole]
    answers = dict(parity)
    for text, got in zip(texts, chunked):
        assert_matches(got, answers[text], text)


@pytest.mark.parametrize("pin, version", [
    ({}, 2),                    # no pin: the highest version
    ({"version": 1}, 1),
    ({"version": 2}, 2),
    ({"label": "stable"}, 1),
    ({"label": "canary"}, 2),
])
def test_version_and_label_pinning(server, pin, version):
    with NerClient(server, **pin) as client:
        assert client.last_version is None
        entities = client.predict(["他从上海来，去北京。"])
        assert client.last_version == version
    assert all(isinstance(e, Entity) for e in entities[0])


def test_empty_input_makes_no_call():
    with NerClient("127.0.0.1:1") as client:  # Nothing listens there.
        assert client.predict([]) == []


def test_sixteen_threads_share_one_client(server, parity):
    texts = [text for text, _ in parity][:64]
    answers = dict(parity)
    failures = []

    def caller(offset):
        try:
            for round_ in range(3):
                begin = (offset * 4 + round_ * 16) % len(texts)
                batch = texts[begin:begin + 4]
                for text, got in zip(batch, client.predict(batch)):
                    assert_matches(got, answers[text], text)
        except Exception as e:  # noqa: BLE001 -- reported below, with the thread that saw it.
            failures.append((offset, repr(e)))

    with NerClient(server) as client:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_status_lists_both_versions(server):
    with NerClient(server, label="canary") as client:
        versions = client.status()
    assert [(v.version, v.state, v.error_code) for v in versions] == [(1, "AVAILABLE", "OK"), (2, "AVAILABLE", "OK")]


def test_round_robin_reaches_the_server_through_a_name(server):
    """round_robin resolves the name through DNS (`dns:///`) and calls the addresses that answer (one here: the
    server listens on 127.0.0.1 only, so the spreading itself is not observed)."""
    host, port = server.rsplit(":", 1)
    target = f"localhost:{port}" if host == "127.0.0.1" else server  # A name, as in a cluster.
    with NerClient(target, load_balancing="round_robin") as client:
        for _ in range(5):
            assert client.predict(["北京欢迎你"])[0]


def test_closed_client_refuses_calls(server):
    with NerClient(server) as client:
        pass
    with pytest.raises(ValueError, match="closed"):
        client.predict(["北京"])
