"""python -m tfner.serve: the TensorFlow Serving API for tfner exports.

A server that speaks TensorFlow Serving's gRPC API with the stock protos of
the tensorflow-serving-api wheel, so that every client written for
`tensorflow_model_server` (Go, Java, Node.js, Python; see serving/) works
against it unchanged, and its flags and config files are TF Serving's:

    python -m tfner.serve --port 8500 --rest_api_port 8501 \\
        --model_name ner --model_base_path export/ner \\
        --enable_batching --batching_parameters_file serving/batching.config

Services: tensorflow.serving.PredictionService (Predict, GetModelMetadata;
Classify, Regress and MultiInference answer UNIMPLEMENTED),
tensorflow.serving.ModelService (GetModelStatus, HandleReloadConfigRequest),
grpc.health.v1.Health and server reflection; TF Serving's REST API on
--rest_api_port (see tfner/rest_api.py).

The pieces: model_store.py loads and hot-swaps versions, predictor.py
validates and runs requests, batching.py merges concurrent ones,
serving_config.py reads the config files. This file wires them to gRPC and
owns start-up and shutdown. On SIGTERM it stops taking requests, finishes the
ones in flight, and exits 0.
"""

import argparse
import json
import logging
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
import tensorflow as tf
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfner import serving_config
from tfner import tensor_protos
from tfner.model_store import ModelStore
from tfner.predictor import DEFAULT_MAX_CHARS_PER_TEXT
from tfner.predictor import DEFAULT_MAX_TEXTS_PER_REQUEST
from tfner.predictor import Limits
from tfner.predictor import Predictor
from tfner.predictor import array_from_tensor_proto
from tfner.predictor import invalid
from tfner.rest_api import RestServer
from tfner.serving_errors import ServingError
from tfner.serving_metrics import Metrics

log = logging.getLogger("tfner.serve")

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

# gRPC's 4 MiB default would cut large batches; TF Serving lifts it too.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------
# gRPC servicers
# --------------------------------------------------------------------------


def _spec_args(model_spec):
    """ModelSpec -> (name, version or None, label or None)."""
    if not model_spec.name:
        raise invalid("model_spec.name is empty; name the model, e.g. \"ner\"")
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


def _deadline(context):
    """The RPC's deadline on the time.monotonic() clock, or None."""
    try:
        remaining = context.time_remaining()
    except Exception:  # No deadline set.
        return None
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


class _Servicer:
    """Shared error handling: ServingError -> gRPC status; counts every call."""

    def __init__(self, predictor, metrics):
        self.predictor = predictor
        self.metrics = metrics

    def _handle(self, method, request, context, work):
        model = request.model_spec.name if hasattr(request, "model_spec") else ""
        if model not in self.predictor.store.model_names():
            model = "<other>"  # Callers choose names: keep label values bounded.
        try:
            response = work()
        except ServingError as e:
            error = e
        except Exception as e:
            log.exception("%s failed", method)
            error = ServingError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        else:
            self.metrics.inc("tfner_serving_requests_total", api="grpc", method=method, model=model, code="OK")
            return response
        self.metrics.inc("tfner_serving_requests_total", api="grpc", method=method, model=model,
                         code=error.code.name)
        context.abort(error.code, error.message)


class PredictionServicer(_Servicer, prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def Predict(self, request, context):  # noqa: N802 (proto naming)
        def work():
            name, version, label = _spec_args(request.model_spec)
            servable, signature, outputs = self.predictor.predict(
                name, version, label, request.model_spec.signature_name,
                dict(request.inputs), array_from_tensor_proto,
                output_filter=request.output_filter, deadline=_deadline(context),
            )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature.name
            for key, value in outputs.items():
                proto = tensor_protos.from_numpy(value)
                response.outputs[key].CopyFrom(proto if proto is not None else tf.make_tensor_proto(value))
            return response

        return self._handle("Predict", request, context, work)

    def GetModelMetadata(self, request, context):  # noqa: N802
        def work():
            name, version, label = _spec_args(request.model_spec)
            return self.predictor.metadata(name, version, label, request.metadata_field)

        return self._handle("GetModelMetadata", request, context, work)

    def _unimplemented(self, method, request, context):
        def work():
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method} is not implemented: tfner exports a predict signature "
                "(tensorflow/serving/predict); call Predict",
            )

        return self._handle(method, request, context, work)

    def Classify(self, request, context):  # noqa: N802
        return self._unimplemented("Classify", request, context)

    def Regress(self, request, context):  # noqa: N802
        return self._unimplemented("Regress", request, context)

    def MultiInference(self, request, context):  # noqa: N802
        return self._unimplemented("MultiInference", request, context)


class ModelServicer(_Servicer, model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: version status and config reloads."""

    def GetModelStatus(self, request, context):  # noqa: N802
        def work():
            name, version, label = _spec_args(request.model_spec)
            return self.predictor.status(name, version, label)

        return self._handle("GetModelStatus", request, context, work)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        def work():
            try:
                specs = serving_config.model_specs_from_proto(
                    request.config, source="ReloadConfigRequest.config"
                )
            except serving_config.ConfigError as e:
                raise invalid(str(e)) from None
            self.predictor.store.reload(specs)
            log.info("reloaded model config: %s", ", ".join(s.name for s in specs))
            return model_management_pb2.ReloadConfigResponse()  # status: OK

        return self._handle("HandleReloadConfigRequest", request, context, work)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class ModelServer:
    """tfner.serve's gRPC and REST servers around one ModelStore.

    Args:
        specs: list of serving_config.ModelSpecConfig.
        port: int. gRPC port; 0 picks a free one.
        rest_api_port: int. REST port; 0 turns REST off (as in TF Serving).
        batch_options: serving_config.BatchOptions or None.
        limits: predictor.Limits.
        poll_seconds: float. --file_system_poll_wait_seconds.
        metrics_path: str or None. Prometheus path on the REST port.
        rest_timeout_s: float. Deadline of each REST request.
        grpc_max_workers: int. Threads answering RPCs (a batched request
            holds one while it waits for its batch).
        warmup: bool. Replay warmup requests on load.
        bind_address: str. Interface to listen on.
        config_file: str or None. The --model_config_file the specs came from.
        config_poll_seconds: float. Re-read config_file this often and apply
            changes (--model_config_file_poll_wait_seconds); 0: never.
    """

    def __init__(self, specs, port=8500, rest_api_port=0, batch_options=None, limits=Limits(),
                 poll_seconds=1.0, metrics_path=None, rest_timeout_s=30.0, grpc_max_workers=32,
                 warmup=True, bind_address="0.0.0.0", config_file=None, config_poll_seconds=0.0):
        self.metrics = Metrics()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._health_names = set()
        self.store = ModelStore(specs, poll_seconds=poll_seconds, warmup=warmup,
                                on_change=self._update_health)
        self.predictor = Predictor(self.store, limits, self.metrics, batch_options)
        self._port = port
        self._rest_port = rest_api_port
        self._metrics_path = metrics_path
        self._rest_timeout_s = rest_timeout_s
        self._grpc_max_workers = grpc_max_workers
        self._bind = bind_address
        self.grpc_server = None
        self.rest_server = None
        self.grpc_port = None
        self.rest_port = None
        self._config_file = config_file
        self._config_poll_seconds = config_poll_seconds
        self._stopping = threading.Event()

    def _watch_config_file(self):
        """Applies edits of --model_config_file, as TF Serving does when polling it."""
        with open(self._config_file, encoding="utf-8") as f:
            applied = f.read()
        while not self._stopping.wait(self._config_poll_seconds):
            try:
                with open(self._config_file, encoding="utf-8") as f:
                    text = f.read()
                if text == applied:
                    continue
                specs = serving_config.load_model_specs(self._config_file)
            except (OSError, serving_config.ConfigError) as e:
                log.error("model config file not reloaded, keeping the current one: %s", e)
                continue
            applied = text
            self.store.reload(specs)
            log.info("model config file changed; now serving: %s", ", ".join(s.name for s in specs))

    def _update_health(self):
        loaded = self.store.loaded_versions()
        for name, versions in loaded.items():
            self.metrics.set("tfner_serving_loaded_versions", len(versions), model=name)
        every = bool(loaded) and all(loaded.values())
        statuses = {name: bool(v) for name, v in loaded.items()}
        statuses.update({"": every, PREDICTION_SERVICE: every, MODEL_SERVICE: True})
        for name in self._health_names - set(statuses):
            statuses[name] = False  # A model dropped by a config reload.
        for name, ok in statuses.items():
            self.health.set(
                name,
                health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING,
            )
        self._health_names |= set(statuses)

    def start(self):
        """Loads what is on disk, then opens the ports. Returns self."""
        self.store.start()
        self._update_health()
        if self._config_file and self._config_poll_seconds > 0:
            threading.Thread(target=self._watch_config_file, name="config-poller", daemon=True).start()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._grpc_max_workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),  # A taken port is an error, not a shared one.
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.predictor, self.metrics), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.predictor, self.metrics), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [PREDICTION_SERVICE, MODEL_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
        self.grpc_port = server.add_insecure_port(f"{self._bind}:{self._port}")
        if not self.grpc_port:
            raise OSError(f"cannot listen on {self._bind}:{self._port} for gRPC")
        server.start()
        self.grpc_server = server
        if self._rest_port:
            self.rest_server = RestServer((self._bind, self._rest_port), self.predictor, self.metrics,
                                          self._metrics_path, self._rest_timeout_s)
            self.rest_port = self.rest_server.server_address[1]
            threading.Thread(target=self.rest_server.serve_forever, name="rest", daemon=True).start()
        return self

    def shutdown(self, grace_s=25.0):
        """Refuses new requests, lets in-flight ones finish (up to grace_s), stops."""
        log.info("shutting down: refusing new requests, draining in-flight ones (grace %.0fs)", grace_s)
        self.health.enter_graceful_shutdown()
        self._stopping.set()
        self.store.stop()
        grpc_done = self.grpc_server.stop(grace_s) if self.grpc_server else None
        if self.rest_server:
            self.rest_server.shutdown()  # Stop accepting; handler threads go on.
        self.predictor.drain()  # Queued batches run now instead of waiting to fill.
        if grpc_done is not None:
            grpc_done.wait(grace_s + 1)
        if self.rest_server:
            self.rest_server.server_close()  # Joins in-flight REST handlers.
        self.predictor.stop()
        log.info("drained; exiting")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m tfner.serve",
        description="Serve tfner SavedModels over TensorFlow Serving's gRPC and REST APIs.",
    )
    g = p.add_argument_group("TensorFlow Serving flags (same names and meaning)")
    g.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one). Default 8500.")
    g.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0 turns REST off. Default 0.")
    g.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="Deadline of each REST request. Default 30000.")
    g.add_argument("--model_name", default="ner", help="Model name with --model_base_path. Default ner (TF Serving's: default).")
    g.add_argument("--model_base_path", help="Folder of integer version folders, e.g. export/ner.")
    g.add_argument("--model_config_file",
                   help="Text-format ModelServerConfig (see serving/models.config); "
                        "replaces --model_name/--model_base_path.")
    g.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                   help="Re-read --model_config_file this often and apply edits; 0: never. Default 0.")
    g.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False,
                   help="Merge concurrent requests into one model call.")
    g.add_argument("--batching_parameters_file",
                   help="Text-format BatchingParameters (see serving/batching.config).")
    g.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="How often to look for new versions; 0 looks once. Default 1.")
    g.add_argument("--monitoring_config_file",
                   help="Text-format MonitoringConfig; enables Prometheus metrics on the REST port.")
    g.add_argument("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
                   help="Replay assets.extra/tf_serving_warmup_requests on load. Default true.")
    g.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                   help="Threads inside one op; 0 lets TensorFlow choose.")
    g.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                   help="Ops run at once; 0 lets TensorFlow choose.")
    t = p.add_argument_group("tfner limits and knobs")
    t.add_argument("--max_texts_per_request", type=int, default=DEFAULT_MAX_TEXTS_PER_REQUEST,
                   help=f"Most texts in one request (capped by max_batch_size when batching). "
                        f"Default {DEFAULT_MAX_TEXTS_PER_REQUEST}.")
    t.add_argument("--max_chars_per_text", type=int, default=DEFAULT_MAX_CHARS_PER_TEXT,
                   help=f"Most characters (code points) in one text. Default {DEFAULT_MAX_CHARS_PER_TEXT} "
                        "= BERT's 512 positions - [CLS] - [SEP].")
    t.add_argument("--grpc_max_workers", type=int, default=32,
                   help="Threads answering gRPC calls; with batching, keep it >= 2 x max_batch_size. "
                        "Default 32.")
    t.add_argument("--shutdown_grace_seconds", type=float, default=25.0,
                   help="On SIGTERM, how long in-flight requests may take to finish. Default 25 "
                        "(under Kubernetes' 30 s terminationGracePeriodSeconds).")
    t.add_argument("--bind_address", default="0.0.0.0", help="Interface to listen on. Default 0.0.0.0.")
    return p


def server_from_args(args):
    """Validated flags -> an unstarted ModelServer. Raises ConfigError."""
    if not args.model_config_file and not args.model_base_path:
        raise serving_config.ConfigError(
            "say what to serve: --model_base_path (with --model_name) or --model_config_file"
        )
    if args.model_config_file:
        # As in TF Serving, the config file wins; the tensorflow/serving image's
        # entrypoint always passes --model_name/--model_base_path too.
        if args.model_base_path:
            log.warning("--model_config_file given: ignoring --model_base_path %s", args.model_base_path)
        specs = serving_config.load_model_specs(args.model_config_file)
    else:
        specs = [serving_config.ModelSpecConfig(name=args.model_name, base_path=args.model_base_path)]
    batch_options = None
    if args.batching_parameters_file and not args.enable_batching:
        raise serving_config.ConfigError("--batching_parameters_file needs --enable_batching")
    if args.enable_batching:
        batch_options = (serving_config.load_batch_options(args.batching_parameters_file)
                         if args.batching_parameters_file else serving_config.BatchOptions())
    metrics_path = None
    if args.monitoring_config_file:
        metrics_path = serving_config.load_prometheus_path(args.monitoring_config_file)
        if metrics_path and not args.rest_api_port:
            raise serving_config.ConfigError(
                "--monitoring_config_file serves metrics on the REST port; set --rest_api_port"
            )
    for flag in ("max_texts_per_request", "max_chars_per_text", "grpc_max_workers"):
        if getattr(args, flag) < 1:
            raise serving_config.ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    limits = Limits(max_texts=args.max_texts_per_request, max_chars=args.max_chars_per_text)
    return ModelServer(
        specs,
        port=args.port,
        rest_api_port=args.rest_api_port,
        batch_options=batch_options,
        limits=limits,
        poll_seconds=args.file_system_poll_wait_seconds,
        metrics_path=metrics_path,
        rest_timeout_s=args.rest_api_timeout_in_ms / 1000.0,
        grpc_max_workers=args.grpc_max_workers,
        warmup=args.enable_model_warmup,
        bind_address=args.bind_address,
        config_file=args.model_config_file,
        config_poll_seconds=args.model_config_file_poll_wait_seconds,
    )


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = server_from_args(args)
    except serving_config.ConfigError as e:
        print(f"tfner.serve: {e}", file=sys.stderr)
        return 2
    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (OSError, RuntimeError) as e:  # Typically: the port is taken.
        print(f"tfner.serve: cannot start: {e}", file=sys.stderr)
        server.predictor.stop()
        return 1
    batching = server.predictor.batcher
    log.info(
        "tfner.serve ready: grpc_port=%d rest_port=%s models=%s batching=%s",
        server.grpc_port,
        server.rest_port or "none",
        json.dumps(server.store.loaded_versions(), sort_keys=True),
        f"on(max_batch_size={batching.options.max_batch_size})" if batching else "off",
    )
    while not stop.wait(0.5):
        pass
    server.shutdown(args.shutdown_grace_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
