"""TensorFlow Serving's REST API, on tfner.serve's --rest_api_port.

Routes, as tensorflow_model_server exposes them:

    POST /v1/models/NAME[/versions/N | /labels/L]:predict
    GET  /v1/models/NAME[/versions/N | /labels/L]            model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs
    GET  <prometheus path of --monitoring_config_file>       metrics

A predict body is either row format, one entry per text,

    {"instances": ["北京欢迎你", "他从上海来"]}          (sole input)
    {"instances": [{"text": "北京欢迎你"}, ...]}          (named inputs)

answered as {"predictions": [{"num_entities": 1, "entity_texts": [...], ...}]},
or columnar format,

    {"inputs": {"text": ["北京欢迎你", "他从上海来"]}}    or {"inputs": [...]}

answered as {"outputs": {"num_entities": [1, 1], ...}}. Binary strings travel
as {"b64": "<base64>"}. Errors come back as {"error": "<message>"} with the
HTTP status TF Serving uses for the gRPC code.
"""

import base64
import binascii
import difflib
import http.server
import json
import logging
import re
import socket
import threading
import time
import urllib.parse

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format

from tfner.server.predictor import invalid
from tfner.server.errors import ServingError

log = logging.getLogger("tfner.serve")

MAX_BODY_BYTES = 64 * 1024 * 1024

# A GET's body is read and dropped up to this size, so that it is not taken for the next request on the
# connection; a larger one closes the connection instead.
MAX_GET_BODY_BYTES = 64 * 1024

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<tail>:predict|/metadata)?$"
)

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_path(raw):
    """The request target's path, percent-decoded as UTF-8 (as TF Serving url-decodes it), query dropped.

    http.server hands the request line over decoded as latin-1; encoding it back gives the bytes the client sent,
    so a name sent as raw UTF-8 decodes as well as one sent percent-encoded.
    """
    path = raw.split("?", 1)[0]
    bad = _BAD_ESCAPE.search(path)
    if bad:
        raise invalid(f"the path {raw!r} has a bad percent-escape {path[bad.start():bad.start() + 3]!r} at character "
                      f"{bad.start()}; '%' must start two hex digits (send a literal '%' as %25)")
    try:
        return urllib.parse.unquote_to_bytes(path.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError) as e:
        raise invalid(f"the path {raw!r} is not UTF-8 once percent-decoded ({e.reason}); percent-encode model "
                      "names and labels as UTF-8") from None


def _no_duplicate_keys(pairs):
    # json's default keeps the last of a repeated key and TF Serving's RapidJSON the first: refuse the ambiguity.
    body = {}
    for key, value in pairs:
        if key in body:
            raise invalid(f"the request body has the key {key!r} twice in one object; send each key once")
        body[key] = value
    return body


def _string_leaf(key, value):
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON may escape half a surrogate pair, which is no character
            raise invalid(
                f"input {key!r}: the text {value[:20]!r}... holds a lone surrogate "
                f"U+{ord(value[e.start]):04X} at character {e.start}, which is not a character; send valid "
                "Unicode (a JSON escape of an emoji is a pair, e.g. \\ud83d\\ude00)"
            ) from None
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as e:
            raise invalid(f"input {key!r}: bad base64 in {{\"b64\": ...}}: {e}") from None
    raise invalid(f"input {key!r} expects strings; got {type(value).__name__} {json.dumps(value)[:40]}")


def _strings(key, value):
    if isinstance(value, list):
        return [_strings(key, v) for v in value]
    return _string_leaf(key, value)


def json_to_array(key, value, tensor_info, limits):
    """A JSON value for one input -> numpy array of the signature's dtype."""
    del limits  # Checked by the Predictor once the array exists.
    if tensor_info.dtype == tf.string.as_datatype_enum:
        array = np.array(_strings(key, value), dtype=object)
        if not all(isinstance(v, bytes) for v in array.reshape(-1)):
            raise invalid(f"input {key!r} is ragged; every row needs the same length")
        return array
    try:
        return np.array(value, dtype=tf.dtypes.as_dtype(tensor_info.dtype).as_numpy_dtype)
    except (ValueError, TypeError) as e:
        raise invalid(f"input {key!r} does not convert to the signature's dtype: {e}") from None


def array_to_json(array):
    """numpy -> JSON-ready nested lists; strings as UTF-8 text or {"b64": ...}."""
    if array.dtype == object:
        def leaf(value):
            if isinstance(value, bytes):
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(value).decode("ascii")}
            return value
        return np.vectorize(leaf, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def parse_predict_body(body, signature):
    """The decoded JSON body -> (format, {input key: JSON value})."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object with \"instances\" or \"inputs\"")
    known = ("instances", "inputs", "signature_name")
    for key in sorted(set(body) - set(known)):
        # TF Serving ignores other keys (clients may send, e.g., Vertex AI's "parameters"), but a misspelt
        # known key such as "signature_nme" would silently run the default signature: refuse that.
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close:
            raise invalid(f"the request body has the key {key!r}; did you mean {close[0]!r}?")
    keys = set(body) & {"instances", "inputs"}
    if len(keys) != 1:
        raise invalid("the request body needs exactly one of \"instances\" (row format) or \"inputs\" (columnar)")
    sole = next(iter(signature.inputs)) if len(signature.inputs) == 1 else None

    def named(value):
        return isinstance(value, dict) and set(value) != {"b64"}

    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("\"instances\" must be a non-empty list, one entry per example")
        if all(named(i) for i in instances):
            keys = set().union(*instances)
            for index, instance in enumerate(instances):
                if set(instance) != keys:
                    raise invalid(
                        f"instances[{index}] has keys {sorted(instance)}; every instance "
                        f"needs the same keys {sorted(keys)}"
                    )
            return "row", {k: [i[k] for i in instances] for k in keys}
        if any(named(i) for i in instances) or sole is None:
            raise invalid(
                "instances mix named and bare values; with several inputs every "
                "instance must be an object of named inputs"
            )
        return "row", {sole: instances}
    inputs = body["inputs"]
    if named(inputs):
        return "columnar", inputs
    if sole is None:
        raise invalid("\"inputs\" must be an object of named inputs: the signature has several")
    return "columnar", {sole: inputs}


class RestServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer bound to a Predictor.

    Args:
        address: (host, port).
        predictor: predictor.Predictor.
        metrics: metrics.Metrics.
        metrics_path: str or None. Where Prometheus metrics are served.
        timeout_s: float. Deadline given to each REST predict request.
    """

    daemon_threads = False
    block_on_close = True  # server_close() waits for in-flight requests.

    def __init__(self, address, predictor, metrics, metrics_path=None, timeout_s=30.0):
        self.predictor = predictor
        self.metrics = metrics
        self.metrics_path = metrics_path
        self.timeout_s = timeout_s
        self.connections = set()  # Open client sockets, for server_close.
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_close(self):
        # A kept-alive connection idle between requests would hold its handler
        # thread, and so this join, until its idle timeout. Stop reading from
        # every connection: an idle one ends at once, while a request being
        # answered still gets its reply.
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:  # Already closed by the client.
                    pass
        super().server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tfner-serve"
    error_content_type = "application/json"
    # HTTP/1.1: a client may send many requests over one connection, as it can
    # to TF Serving. Every reply carries Content-Length, which keep-alive needs.
    protocol_version = "HTTP/1.1"
    # An idle kept-alive connection is closed after this many seconds, so it
    # never holds a handler thread (and the shutdown that joins them) for long.
    timeout = 10

    def setup(self):
        super().setup()
        self._unread_body = False
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self):
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def send_error(self, code, message=None, explain=None):
        # http.server's own refusals (a method other than GET/POST, a malformed request line, an overlong header)
        # would go out as its HTML page under our Content-Type: application/json. Answer them as every other
        # error, {"error": "..."}, and close: the request may not have been read whole.
        short = self.responses.get(code, ("error",))[0]
        self.close_connection = True
        data = json.dumps({"error": message or short}, ensure_ascii=False).encode("utf-8")
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if getattr(self, "command", "") != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        log.debug("rest %s - %s", self.address_string(), format % args)

    # ---- plumbing ----------------------------------------------------------

    def _send(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self._unread_body:
            # The request's body is still in the socket, where it would be read
            # as the next request: end the connection instead.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _route(self, path):
        match = _ROUTE.match(path)
        if not match:
            return None
        version = int(match["version"]) if match["version"] else None
        return match["name"], version, match["label"], match["tail"] or ""

    def _declared_length(self):
        """The body length the headers declare -> (bytes or None, error message or None)."""
        if "Transfer-Encoding" in self.headers:
            return None, ("the request body is sent chunked (Transfer-Encoding: chunked), which tfner.serve does "
                          "not read; send the JSON body with a Content-Length header")
        header = self.headers.get("Content-Length")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if header is None or not re.fullmatch(r"[0-9]+", header.strip()):
            return None, "send the JSON body with a Content-Length header (chunked bodies are not read)"
        return int(header), None

    def _read_body(self, length):
        """Reads the declared body; raises INVALID_ARGUMENT if the client sent less."""
        try:
            raw = self.rfile.read(length)
        except TimeoutError:  # the client stopped sending mid-body (the handler's timeout)
            raw = None
        if raw is None or len(raw) < length:
            got = f"{len(raw)} bytes, then end of stream" if raw is not None else f"no more bytes for {self.timeout} s"
            raise invalid(f"the request body was shorter than its Content-Length of {length} bytes (got {got}); "
                          "send exactly Content-Length bytes of JSON")
        self._unread_body = False
        return raw

    def _answer(self, method, model, work):
        code = grpc.StatusCode.OK
        try:
            status, payload = 200, work()
        except ServingError as e:
            code, status, payload = e.code, e.http_status, {"error": e.message}
        except Exception as e:  # Never leak a traceback as a half-written reply.
            log.exception("REST %s failed", method)
            code, status, payload = grpc.StatusCode.INTERNAL, 500, {"error": f"internal error: {e}"}
        if model not in self.server.predictor.store.model_names():
            model = "<other>"  # Callers choose names: keep label values bounded.
        self.server.metrics.inc(
            "tfner_serving_requests_total", api="rest", method=method, model=model, code=code.name
        )
        self._send(status, payload)

    # ---- verbs -------------------------------------------------------------

    def do_GET(self):  # noqa: N802 (stdlib naming)
        # A body sent with a GET would otherwise be read as the next request on this connection: drop a small
        # one, and end the connection after the reply if it is large, chunked or of unknown length.
        length, _ = self._declared_length()
        self._unread_body = length != 0 and ("Content-Length" in self.headers or "Transfer-Encoding" in self.headers)
        if self._unread_body and length is not None and length <= MAX_GET_BODY_BYTES:
            try:
                self._unread_body = len(self.rfile.read(length)) < length
            except TimeoutError:
                pass  # still unread: closed after the reply
        try:
            path = decode_path(self.path)
        except ServingError as e:
            self._send(e.http_status, {"error": e.message})
            return
        if self.server.metrics_path and path == self.server.metrics_path:
            self._send(200, self.server.metrics.render().encode("utf-8"), "text/plain; version=0.0.4")
            return
        route = self._route(path)
        if route is None or route[3] == ":predict":
            self._send(404, {"error": f"no such resource {self.path!r}; see /v1/models/NAME[/metadata]"})
            return
        name, version, label, tail = route
        predictor = self.server.predictor
        if tail == "/metadata":
            def work():
                response = predictor.metadata(name, version, label, ["signature_def"])
                payload = json.loads(json_format.MessageToJson(response, preserving_proto_field_name=True))
                payload["metadata"]["signature_def"].pop("@type", None)  # TF Serving omits it.
                return payload
            self._answer("GetModelMetadata", name, work)
        else:
            def work():
                response = predictor.status(name, version, label)
                return json.loads(json_format.MessageToJson(
                    response, preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True))
            self._answer("GetModelStatus", name, work)

    def do_POST(self):  # noqa: N802
        length, length_error = self._declared_length()
        # Without a usable Content-Length the body's end is unknown: the connection is closed after the reply.
        self._unread_body = length != 0
        try:
            path = decode_path(self.path)
        except ServingError as e:
            self._send(e.http_status, {"error": e.message})
            return
        route = self._route(path)
        if route is None or route[3] != ":predict":
            self._send(404, {"error": f"no such resource {self.path!r}; POST /v1/models/NAME:predict"})
            return
        name, version, label, _ = route
        deadline = time.monotonic() + self.server.timeout_s

        def work():
            if length_error:
                raise invalid(length_error)
            if length > MAX_BODY_BYTES:
                raise invalid(f"the request body has {length} bytes; the limit is {MAX_BODY_BYTES}")
            raw = self._read_body(length)
            try:
                body = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
            except (UnicodeDecodeError, ValueError) as e:  # ValueError: bad JSON, or a number of 4,300+ digits
                raise invalid(f"the request body is not UTF-8 JSON: {e}") from None
            except RecursionError:
                raise invalid("the request body nests JSON arrays or objects too deeply; send a flat list of "
                              "texts") from None
            signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
            if not isinstance(signature_name, str):
                raise invalid(f"\"signature_name\" must be a string, e.g. \"serving_default\"; got "
                              f"{json.dumps(signature_name)[:40]}")
            parsed = {}

            def inputs(signature):
                parsed["format"], values = parse_predict_body(body, signature)
                return values

            _, _, outputs = self.server.predictor.predict(
                name, version, label, signature_name, inputs, json_to_array, deadline=deadline
            )
            if parsed["format"] == "columnar":
                if len(outputs) == 1:
                    return {"outputs": array_to_json(next(iter(outputs.values())))}
                return {"outputs": {k: array_to_json(v) for k, v in outputs.items()}}
            columns = {k: array_to_json(v) for k, v in outputs.items()}
            rows = len(next(iter(columns.values())))
            if len(columns) == 1:
                return {"predictions": next(iter(columns.values()))}
            return {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(rows)]}

        self._answer("Predict", name, work)
