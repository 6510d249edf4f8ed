"""Validation and model calls shared by tfner.serve's gRPC and REST APIs.

Every request goes through the same steps, in this order, so that both front
ends fail the same way for the same mistake:

1. resolve the servable (model, version or label) -> NOT_FOUND / UNAVAILABLE;
2. resolve the signature                            -> NOT_FOUND;
3. check input names, dtypes, shapes and the text limits -> INVALID_ARGUMENT
   (RESOURCE_EXHAUSTED past --max_chars_per_request);
4. check the deadline                               -> DEADLINE_EXCEEDED;
5. run: directly, or through the batcher            -> UNAVAILABLE when its
   queue is full (TF Serving's code for it: clients retry it with backoff).

Steps 1-4 happen before a request joins a batch, so a bad request fails alone.
"""

import dataclasses
import logging
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2

from tfner.server import batching
from tfner.server import tensor_protos
from tfner.server.model_store import dims_of
from tfner.server.errors import ServingError

log = logging.getLogger("tfner.serve")

DEFAULT_MAX_TEXTS_PER_REQUEST = 128
# The export tags a text of any length through its windows, and TF Serving has
# no per-text limit, so neither has tfner.serve by default (0 = off). Memory
# is bounded per request instead: the graph runs every window of a request at
# once, and 100,000 characters are ~1,050 windows of 128 positions (96 new
# characters each at overlap 32); at BERT-base width that peaks near 3 GB
# (~2.5 MB of activations per window and layer), at the demo's width ~0.2 GB.
DEFAULT_MAX_CHARS_PER_TEXT = 0
DEFAULT_MAX_CHARS_PER_REQUEST = 100_000


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits on what a client may send.

    Args:
        max_texts: int. Most rows (texts) in one request.
        max_chars: int. Most Unicode code points in one text; 0: no limit.
        max_request_chars: int. Most code points in one request, summed
            over its texts (a memory bound; RESOURCE_EXHAUSTED past it).
        max_texts_source: str. Which setting fixes max_texts, for messages.
    """

    max_texts: int = DEFAULT_MAX_TEXTS_PER_REQUEST
    max_chars: int = DEFAULT_MAX_CHARS_PER_TEXT
    max_request_chars: int = DEFAULT_MAX_CHARS_PER_REQUEST
    max_texts_source: str = "--max_texts_per_request"


def invalid(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def dtype_name(enum):
    """DataType enum -> "DT_STRING" etc., as TF Serving's messages spell it."""
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"DataType {enum}"


def check_shape(key, dims, tensor_info):
    """Raises INVALID_ARGUMENT unless `dims` fits the signature's shape."""
    expected = dims_of(tensor_info)
    if expected is None:
        return
    fits = len(dims) == len(expected) and all(e < 0 or e == d for e, d in zip(expected, dims))
    if not fits:
        raise invalid(
            f"input {key!r} has shape {list(dims)}; the signature expects "
            f"{expected} (-1: any size)"
        )


def array_from_tensor_proto(key, proto, tensor_info, limits):
    """TensorProto of a gRPC request -> numpy, checking dtype and shape first.

    The header is checked before any data is materialised, so a request that
    claims a huge shape is refused without allocating it.
    """
    if proto.dtype != tensor_info.dtype:
        raise invalid(
            f"input {key!r} has dtype {dtype_name(proto.dtype)}; the signature "
            f"expects {dtype_name(tensor_info.dtype)}"
        )
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"input {key!r} has no shape; set tensor_shape")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid(f"input {key!r} has shape {dims}; a request's dimensions must be >= 0")
    check_shape(key, dims, tensor_info)
    check_rows(key, dims, limits)
    count = int(np.prod(dims)) if dims else 1
    if proto.dtype == tf.string.as_datatype_enum and len(proto.string_val) != count:
        raise invalid(
            f"input {key!r} has shape {dims} ({count} elements) but carries "
            f"{len(proto.string_val)} string_val entries"
        )
    try:
        array = tensor_protos.to_numpy(proto)
        return array if array is not None else tf.make_ndarray(proto)
    except Exception as e:  # Inconsistent content vs. shape.
        raise invalid(f"input {key!r} is malformed: {e}") from e


def check_rows(key, dims, limits):
    if not dims:
        raise invalid(f"input {key!r} is a scalar; send a batch, e.g. a list of texts")
    if dims[0] == 0:
        raise invalid(f"input {key!r} holds no rows; send at least one text")
    if dims[0] > limits.max_texts:
        raise invalid(
            f"input {key!r} holds {dims[0]} texts; the limit is {limits.max_texts} per "
            f"request ({limits.max_texts_source}); split the request"
        )


def check_texts(key, array, limits):
    """UTF-8 validity and code-point lengths of a string input, per text and in all.

    Texts are checked in order and the check stops at the first one that takes the request past
    --max_chars_per_request; a text of more than 4 bytes per allowed character (UTF-8 spends 1 to 4 bytes on a
    code point) is past it for certain and is not even decoded.
    """
    total = 0
    values = array.reshape(-1)
    for index, value in enumerate(values):
        raw = bytes(value)
        if total + len(raw) // 4 > limits.max_request_chars:
            _too_many_characters(key, total + len(raw) // 4, limits, certain=False)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise invalid(
                f"input {key!r}[{index}] is not valid UTF-8 ({e.reason} at byte {e.start}); "
                "send texts encoded as UTF-8"
            ) from None
        if limits.max_chars and len(text) > limits.max_chars:
            raise invalid(
                f"input {key!r}[{index}] has {len(text)} characters; the limit is "
                f"{limits.max_chars} (--max_chars_per_text); split long texts into sentences"
            )
        total += len(text)
        if total > limits.max_request_chars:
            _too_many_characters(key, total, limits, certain=index == len(values) - 1)


def _too_many_characters(key, count, limits, certain):
    raise ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"input {key!r} holds {'' if certain else 'at least '}{count} characters in all; this server takes at most "
        f"{limits.max_request_chars} per request (--max_chars_per_request, which bounds the memory "
        "of one model call); send fewer texts per request, or split long texts",
    )


class Predictor:
    """Runs Predict / metadata / status requests against a ModelStore.

    Args:
        store: model_store.ModelStore.
        limits: Limits.
        metrics: metrics.Metrics.
        batch_options: config.BatchOptions or None (no batching).
    """

    def __init__(self, store, limits, metrics, batch_options=None):
        self.store = store
        self.metrics = metrics
        self.batcher = None
        if batch_options is not None:
            if batch_options.max_batch_size < limits.max_texts:
                limits = dataclasses.replace(
                    limits,
                    max_texts=batch_options.max_batch_size,
                    max_texts_source="max_batch_size of --batching_parameters_file",
                )
            self.batcher = batching.Batcher(
                batch_options, on_batch=self._count_batch, on_expired=self._count_expired
            )
        self.limits = limits

    # ---- metrics hooks -----------------------------------------------------

    def _count_call(self, model, version, requests, rows, padded, seconds):
        labels = dict(model=model, version=str(version))
        self.metrics.inc("tfner_serving_model_calls_total", **labels)
        self.metrics.inc("tfner_serving_model_call_requests_total", requests, **labels)
        self.metrics.inc("tfner_serving_model_call_texts_total", rows, **labels)
        self.metrics.inc("tfner_serving_model_call_padded_texts_total", padded, **labels)
        self.metrics.inc("tfner_serving_model_call_seconds_total", seconds, **labels)
        self.metrics.set_max("tfner_serving_max_requests_per_call", requests, model=model)
        log.debug("model %s v%s: one call for %d request(s), %d texts (%d padded)",
                  model, version, requests, rows, padded)

    def _count_batch(self, stats):
        model, version = stats.key[:2]
        self._count_call(model, version, stats.requests, stats.rows, stats.padded_rows, stats.seconds)

    def _count_expired(self, key):
        self.metrics.inc("tfner_serving_deadline_exceeded_total", model=key[0])

    # ---- Predict -----------------------------------------------------------

    def predict(self, name, version, label, signature_name, inputs, convert,
                output_filter=(), deadline=None):
        """Validates and runs one Predict request.

        Args:
            name: str. Model name.
            version: int or None.
            label: str or None.
            signature_name: str. "" means "serving_default".
            inputs: dict, input key -> the request's raw value for it; or a
                callable(Signature) returning that dict, for APIs whose
                parsing depends on the signature.
            convert: callable(key, raw, tensor_info, limits) -> np.ndarray.
                Checks dtype and shape and returns the array (one per API).
            output_filter: iterable of str. Outputs to return; empty: all.
            deadline: float or None. time.monotonic() deadline.

        Returns:
            (Servable, Signature, dict of np.ndarray outputs).
        """
        self.metrics.inc("tfner_serving_in_flight_requests", 1)
        try:
            with self.store.acquire(name, version, label) as servable:
                signature = servable.signature(signature_name)
                arrays = self._validate(signature, inputs, convert)
                wanted = self._wanted_outputs(signature, output_filter)
                outputs = self._run(servable, signature, arrays, deadline)
                return servable, signature, {k: outputs[k] for k in wanted}
        finally:
            self.metrics.inc("tfner_serving_in_flight_requests", -1)

    def _validate(self, signature, inputs, convert):
        if callable(inputs):
            inputs = inputs(signature)
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if extra:
                parts.append(f"unexpected input(s) {extra}")
            raise invalid(
                f"{' and '.join(parts)}; signature {signature.name!r} takes exactly: "
                f"{signature.describe_inputs()}"
            )
        arrays = {}
        for key, info in signature.inputs.items():
            array = convert(key, inputs[key], info, self.limits)
            check_shape(key, list(array.shape), info)
            check_rows(key, list(array.shape), self.limits)
            if info.dtype == tf.string.as_datatype_enum:
                check_texts(key, array, self.limits)
            arrays[key] = array
        rows = {len(a) for a in arrays.values()}
        if len(rows) > 1:
            raise invalid(f"inputs disagree on the batch size (dimension 0): {sorted(rows)}")
        return arrays

    @staticmethod
    def _wanted_outputs(signature, output_filter):
        wanted = list(output_filter) or sorted(signature.outputs)
        unknown = [k for k in wanted if k not in signature.outputs]
        if unknown:
            raise invalid(
                f"output_filter names {unknown}, which signature {signature.name!r} "
                f"does not have; its outputs: {sorted(signature.outputs)}"
            )
        repeated = sorted({k for k in wanted if wanted.count(k) > 1})
        if repeated:  # as TF Serving: a response holds each output once
            raise invalid(f"output_filter names {repeated} more than once; name each output once")
        return wanted

    def _run(self, servable, signature, arrays, deadline):
        if deadline is not None and time.monotonic() >= deadline:
            self.metrics.inc("tfner_serving_deadline_exceeded_total", model=servable.name)
            raise ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the deadline passed before the model ran; the request was not run",
            )
        if self.batcher is None:
            started = time.monotonic()
            outputs = self._call(signature, arrays)
            rows = len(next(iter(arrays.values())))
            self._count_call(servable.name, servable.version, 1, rows, rows, time.monotonic() - started)
            return outputs
        key = (
            servable.name,
            servable.version,
            id(servable),
            signature.name,
            tuple(sorted((k, a.shape[1:], a.dtype.str) for k, a in arrays.items())),
        )
        try:
            return self.batcher.submit(key, lambda merged: self._call(signature, merged), arrays, deadline)
        except batching.QueueFullError as e:
            # UNAVAILABLE, as TF Serving's shared batch scheduler answers a full queue: clients written against
            # this server must meet the code they will meet in production (they retry it with backoff).
            raise ServingError(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        except batching.DeadlineExpiredError as e:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, str(e)) from None
        except batching.BatcherStoppedError as e:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, str(e)) from None

    @staticmethod
    def _call(signature, arrays):
        try:
            return signature.run(arrays)
        except ServingError:
            raise
        except Exception as e:
            log.exception("signature %s failed", signature.name)
            raise ServingError(
                grpc.StatusCode.INTERNAL, f"the model failed: {type(e).__name__}: {e}"
            ) from e

    # ---- metadata and status -----------------------------------------------

    def metadata(self, name, version, label, fields):
        """GetModelMetadataResponse with the SignatureDef map, as TF Serving returns it."""
        fields = list(fields)
        if not fields:
            raise invalid("metadata_field is empty; ask for \"signature_def\"")
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            raise invalid(
                f"metadata field(s) {unsupported} are not supported; the only one is \"signature_def\""
            )
        with self.store.acquire(name, version, label) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response.metadata["signature_def"].Pack(signature_map)
            return response

    def status(self, name, version, label):
        """GetModelStatusResponse for one model (and optionally one version)."""
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state, code, message in self.store.version_status(name, version, label):
            entry = response.model_version_status.add(version=number, state=state)
            entry.status.error_code = code.value[0]
            entry.status.error_message = message
        return response

    def stop(self):
        if self.batcher is not None:
            self.batcher.stop()

    def drain(self):
        if self.batcher is not None:
            self.batcher.drain()
