"""Each error class from a real server's answer, and the texts refused before any call."""

from concurrent import futures

import grpc
import pytest

import tfner_client
from conftest import free_port
from tfner_client import NerClient

LONG_SENTENCE = "张三在北京的清华大学工作，李四去了上海。"


def test_unknown_model_is_not_found(server):
    with NerClient(server, model="nope") as client:
        with pytest.raises(tfner_client.NotFoundError) as info:
            client.predict(["北京"])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in info.value.message


def test_unknown_label_is_not_found(server):
    with NerClient(server, label="nope") as client:
        with pytest.raises(tfner_client.NotFoundError) as info:
            client.predict(["北京"])
    assert "nope" in info.value.message


def test_too_many_texts_is_invalid_argument(server, limits, backoff_sleeps):
    count = limits["max_texts"] + 1
    with NerClient(server, chunk_size=count) as client:
        with pytest.raises(tfner_client.InvalidArgumentError) as info:
            client.predict(["北京"] * count)
    assert str(limits["max_texts"]) in info.value.message
    assert isinstance(info.value, grpc.RpcError) and info.value.details() == info.value.message
    assert backoff_sleeps == [], "only UNAVAILABLE is retried"


def test_too_many_characters_is_resource_exhausted(server, limits):
    text = (LONG_SENTENCE * (3000 // len(LONG_SENTENCE) + 1))[:3000]
    count = limits["max_chars"] // len(text) + 1  # Over the per-call limit, under the text count.
    assert count <= limits["max_texts"]
    with NerClient(server, chunk_size=count) as client:
        with pytest.raises(tfner_client.ResourceExhaustedError) as info:
            client.predict([text] * count)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_closed_port_is_unavailable_after_retries(backoff_sleeps):
    with NerClient(f"127.0.0.1:{free_port()}", retries=3, backoff_s=0.05, max_backoff_s=0.1) as client:
        with pytest.raises(tfner_client.UnavailableError) as info:
            client.predict(["北京"])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(backoff_sleeps) == 3
    for attempt, slept in enumerate(backoff_sleeps):
        assert 0.0 <= slept <= min(0.1, 0.05 * 2 ** attempt)  # full jitter under the exponential cap


def test_deadline_that_expires_is_deadline_exceeded(server, parity, backoff_sleeps):
    longest = max((text for text, _ in parity), key=len)
    with NerClient(server, timeout=0.001) as client:
        with pytest.raises(tfner_client.DeadlineExceededError) as info:
            client.predict([longest])
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert backoff_sleeps == []


def test_tls_against_plaintext_server_is_unavailable(server):
    with NerClient(server, tls=True, retries=1, backoff_s=0.01, timeout=5) as client:
        with pytest.raises(tfner_client.UnavailableError):
            client.predict(["北京"])


def test_response_that_is_not_a_tfner_models_is_malformed_response_error(empty_answer_server):
    with NerClient(empty_answer_server, retries=0) as client:
        with pytest.raises(tfner_client.MalformedResponseError, match="malformed response from model 'ner'"):
            client.predict(["北京"])
    assert issubclass(tfner_client.MalformedResponseError, ValueError)  # What entities_from_response raised before.


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 1e10, 0, -1])
def test_timeout_must_be_finite_positive_seconds(timeout):
    # inf, nan and 1e10 s reach gRPC as a deadline in the past: every call would fail DEADLINE_EXCEEDED at once.
    with pytest.raises(ValueError, match=r"timeout is .*; give seconds > 0 and < 1e9"):
        NerClient("127.0.0.1:1", timeout=timeout)


def test_typed_errors_share_one_base():
    for cls in (tfner_client.NotFoundError, tfner_client.InvalidArgumentError, tfner_client.ResourceExhaustedError,
                tfner_client.UnavailableError, tfner_client.DeadlineExceededError):
        assert issubclass(cls, tfner_client.NerError) and issubclass(cls, grpc.RpcError)


@pytest.mark.parametrize("texts, index", [
    (["ok", "bad \ud83d half an emoji"], 1),   # a lone high surrogate
    (["\udc80"], 0),                          # what surrogateescape makes of an invalid UTF-8 byte
])
def test_lone_surrogate_is_refused_client_side(texts, index):
    with NerClient("127.0.0.1:1") as client:  # No call is made: nothing listens there.
        with pytest.raises(ValueError, match=rf"texts\[{index}\] holds a lone surrogate"):
            client.predict(texts)


def test_non_str_is_refused_and_pins_are_exclusive():
    with pytest.raises(ValueError, match="either a version or a label"):
        NerClient("127.0.0.1:1", version=1, label="stable")
    with NerClient("127.0.0.1:1") as client:
        with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
            client.predict(["ok", b"bytes"])
        with pytest.raises(TypeError, match=r"texts is one str, which would be one text per character"):
            client.predict("北京欢迎你")


def test_a_call_the_server_cancelled_is_retried(backoff_sleeps):
    # A stopping server cancels calls it accepted but never ran; the retry reaches whatever answers next
    # (here the same stub server, which refuses the second call with NOT_FOUND so the test can tell).
    calls = []

    def predict(request, context):
        calls.append(request)
        if len(calls) == 1:
            context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")
        context.abort(grpc.StatusCode.NOT_FOUND, "second call")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": grpc.unary_unary_rpc_method_handler(predict)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with NerClient(f"127.0.0.1:{port}", retries=3, backoff_s=0.01, max_backoff_s=0.01) as client:
            with pytest.raises(tfner_client.NotFoundError, match="second call"):
                client.predict(["北京"])
    finally:
        server.stop(None)
    assert len(calls) == 2 and calls[0] == calls[1]
    assert len(backoff_sleeps) == 1
