"""NerClient: texts in, entities out, over TF Serving's gRPC Predict API."""

import json
import random
import time

import grpc

from tfner_client import errors
from tfner_client._proto.tensorflow_serving.apis import model_service_pb2_grpc
from tfner_client._proto.tensorflow_serving.apis import predict_pb2
from tfner_client._proto.tensorflow_serving.apis import prediction_service_pb2_grpc
from tfner_client.entities import ENTITY_OUTPUTS
from tfner_client.entities import entities_from_response
from tfner_client.errors import MalformedResponseError
from tfner_client.status import status_request
from tfner_client.status import versions_from_response
from tfner_client.tensors import string_tensor

# Only UNAVAILABLE means "nobody answered, the same call may succeed later"
# (server starting, restarting, between pods). Any other status is the
# server's verdict on this request, and repeating it would get the same.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
# One exception: a server that stops cancels the calls gRPC accepted but had
# not yet handed to a handler, so they never ran. A CANCELLED that this client
# did not cause itself (close()) is such a call, and predict is read-only, so
# it is retried like UNAVAILABLE.

LOAD_BALANCING_POLICIES = ("pick_first", "round_robin")

# gRPC adds the timeout to the clock in int64 nanoseconds: past the year 2262 (today + ~7.4e9 s) it wraps into
# the past and every call fails DEADLINE_EXCEEDED at once, as it does for inf and nan. The Java client's bound.
MAX_TIMEOUT_S = 1e9

# A response holds at most chunk_size rows of entities; 64 MiB is far above
# any of them and keeps gRPC's 4 MiB default from refusing a very long text.
_MAX_RECEIVE_BYTES = 64 * 1024 * 1024


class NerClient:
    """Calls a tfner model's `serving_default` Predict signature over gRPC.

    One client holds one gRPC channel; share it between threads (every method
    is thread-safe) and close it when done, or use it as a context manager.

    Args:
        target: str. "host:port" of TF Serving or tfner.serve (any gRPC target,
            e.g. "dns:///ner.default.svc:8500").
        model: str. `model_spec.name`.
        version: int or None. Pin one version.
        label: str or None. Pin a version label ("stable", "canary").
        timeout: float. Deadline of each call, in seconds: > 0 and < 1e9 (no
            infinite deadline).
        retries: int. Retries after UNAVAILABLE (server starting, restarting
            or between pods, or its batch queue full), with exponential backoff
            and full jitter.
        chunk_size: int. Most texts per call; keep it <= the server's
            --max_texts_per_request and max_batch_size.
        backoff_s: float. The first retry waits up to this; each next one
            twice as long, up to max_backoff_s.
        max_backoff_s: float.
        tls: bool. Use TLS with the system's root certificates (plaintext when False).
        credentials: grpc.ChannelCredentials or None. TLS with these (a private
            CA, client certificates: `grpc.ssl_channel_credentials(...)`); implies tls.
        load_balancing: str or None. "round_robin" spreads calls over every
            address the target's DNS name resolves to (a Kubernetes headless
            Service); None or "pick_first" keeps gRPC's default, one connection.
        max_concurrent_chunks: int. How many chunks of one `predict` call are
            in flight at once.
    """

    def __init__(self, target, model="ner", version=None, label=None, timeout=10.0, retries=3,
                 chunk_size=16, backoff_s=0.1, max_backoff_s=2.0, *, tls=False, credentials=None,
                 load_balancing=None, max_concurrent_chunks=8):
        if version is not None and label:
            raise ValueError("pin either a version or a label, not both")
        if chunk_size < 1 or retries < 0 or max_concurrent_chunks < 1:
            raise ValueError("chunk_size and max_concurrent_chunks must be >= 1 and retries >= 0")
        if not 0 < timeout < MAX_TIMEOUT_S:  # nan fails both comparisons.
            raise ValueError(f"timeout is {timeout!r}; give seconds > 0 and < 1e9, e.g. 10.0")
        if backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0")
        if load_balancing not in (None, *LOAD_BALANCING_POLICIES):
            raise ValueError(f"load_balancing is {load_balancing!r}; use one of {LOAD_BALANCING_POLICIES} or None")
        self.target = target
        self.model = model
        self.version = version
        self.label = label
        self.timeout = timeout
        self.retries = retries
        self.chunk_size = chunk_size
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_concurrent_chunks = max_concurrent_chunks
        # model_spec.version of the latest response any thread received; None
        # until then, or when the server does not say.
        self.last_version = None
        self._closed = False

        options = [
            ("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),
            # After a lost connection gRPC waits 1 s, then up to 120 s, between
            # reconnect attempts, and calls fail fast meanwhile: a server back
            # after a restart could go unnoticed for longer than our retries
            # last. Reconnect on the retries' own schedule instead.
            ("grpc.initial_reconnect_backoff_ms", max(100, int(backoff_s * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(100, int(max_backoff_s * 1000))),
        ]
        channel_target = target
        if load_balancing == "round_robin":
            options.append(("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})))
            # Resolve with DNS explicitly: round_robin needs every address of the name.
            if "://" not in target and not target.startswith(("unix:", "unix-abstract:", "ipv4:", "ipv6:")):
                channel_target = f"dns:///{target}"
        if credentials is not None or tls:
            self._channel = grpc.secure_channel(
                channel_target, credentials or grpc.ssl_channel_credentials(), options=options
            )
        else:
            self._channel = grpc.insecure_channel(channel_target, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict
        self._get_model_status = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        pin = f", version={self.version}" if self.version is not None else f", label={self.label!r}" if self.label else ""
        return f"NerClient({self.target!r}, model={self.model!r}{pin})"

    def close(self):
        """Closes the channel; calls in flight end with CANCELLED. Idempotent."""
        self._closed = True
        self._channel.close()

    def build_request(self, texts):
        """The PredictRequest for one chunk of texts (list of str)."""
        return self._request(_encode(texts))

    def predict(self, texts):
        """Finds the entities of each text.

        Texts go out in chunks of `chunk_size`, up to `max_concurrent_chunks`
        of them in flight at once; the results keep the input order.

        Args:
            texts: iterable of str.

        Returns:
            list of list of Entity, one list per text, in order.

        Raises:
            TypeError: a text is not a str, or `texts` is one str (which
                would be read as one text per character).
            ValueError: a text holds a lone surrogate (not encodable as
                UTF-8), or the client is closed.
            MalformedResponseError: (a ValueError) the server answered, but not
                as a tfner model does.
            NerError: the server refused a chunk (InvalidArgumentError,
                ResourceExhaustedError, NotFoundError, ...), a chunk hit its
                deadline (DeadlineExceededError), or no server answered
                through every retry (UnavailableError). Also a grpc.RpcError.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts is one {type(texts).__name__}, which would be one text per character; "
                            "pass a list: predict([text])")
        encoded = _encode(list(texts))
        self._check_open()
        chunks = [encoded[begin:begin + self.chunk_size] for begin in range(0, len(encoded), self.chunk_size)]
        requests = [self._request(chunk) for chunk in chunks]
        results = []
        for chunk, response in zip(chunks, self._run_all(self._predict, requests)):
            if response.model_spec.HasField("version"):
                self.last_version = response.model_spec.version.value
            try:
                results.extend(entities_from_response(response, len(chunk)))
            except MalformedResponseError as e:  # Name the model: the response may not (an empty one does not).
                raise MalformedResponseError(f"malformed response from model {self.model!r}: {e}") from e
        return results

    def status(self):
        """The model's versions and their states (ModelService.GetModelStatus).

        Returns:
            list of VersionStatus, by version number; whichever version or
            label this client pins, every version the server knows of.

        Raises:
            NerError: e.g. NotFoundError for a model the server does not serve.
        """
        self._check_open()
        return versions_from_response(self._call(self._get_model_status, status_request(self.model)))

    # ------------------------------------------------------------------ calls

    def _request(self, encoded):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = "serving_default"
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        elif self.label:
            request.model_spec.version_label = self.label
        request.inputs["text"].CopyFrom(string_tensor(encoded))
        request.output_filter.extend(ENTITY_OUTPUTS)
        return request

    def _check_open(self):
        if self._closed:
            raise ValueError("this NerClient is closed; make a new one")

    def _start(self, method, request):
        """The call's future; a typed CANCELLED if close() came after the call began (before a chunk or a retry)."""
        if self._closed:  # grpc would raise an untyped ValueError("Cannot invoke RPC on closed channel!")
            raise errors.NerError(grpc.StatusCode.CANCELLED,
                                  f"the NerClient for {self.target} was closed during the call; make a new one")
        return method.future(request, timeout=self.timeout)

    def _run_all(self, method, requests):
        """Responses of `requests`, in order, at most max_concurrent_chunks in flight."""
        window = self.max_concurrent_chunks
        in_flight = {i: self._start(method, requests[i]) for i in range(min(window, len(requests)))}
        responses = []
        try:
            for i, request in enumerate(requests):
                responses.append(self._finish(method, request, in_flight.pop(i)))
                if i + window < len(requests):
                    in_flight[i + window] = self._start(method, requests[i + window])
        finally:
            for future in in_flight.values():  # Left over when a chunk failed: its result is moot.
                future.cancel()
        return responses

    def _call(self, method, request):
        return self._finish(method, request, self._start(method, request))

    def _finish(self, method, request, future):
        """Waits for `future`; retries `request` after UNAVAILABLE (or a server's CANCELLED) with full-jitter backoff."""
        attempt = 0
        while True:
            try:
                return future.result()
            except grpc.RpcError as error:
                server_cancelled = error.code() == grpc.StatusCode.CANCELLED and not self._closed
                if (error.code() not in RETRYABLE and not server_cancelled) or attempt >= self.retries:
                    raise errors.from_rpc_error(error) from error
                # Full jitter: many clients retrying after one outage spread
                # over the window instead of arriving together.
                window = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
                time.sleep(random.uniform(0, window))
                attempt += 1
                future = self._start(method, request)


def _encode(texts):
    """UTF-8 bytes of each text; TypeError/ValueError naming the first text that cannot be sent."""
    encoded = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}; pass str")
        try:
            encoded.append(text.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ValueError(
                f"texts[{index}] holds a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}, "
                "which is not Unicode text and has no UTF-8 form (the server would refuse it); "
                "decode the text's source correctly (e.g. not with errors='surrogateescape')"
            ) from None
    return encoded
