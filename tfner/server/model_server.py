"""The server: one ModelStore behind the gRPC and REST front ends.

ModelServer wires the pieces together and owns start-up and shutdown:
model_store.py loads and hot-swaps versions, predictor.py validates and runs
requests, batching.py merges concurrent ones, grpc_api.py and rest_api.py
speak TF Serving's two APIs, config.py reads its config files, metrics.py
counts. On shutdown it stops taking requests, finishes the ones in flight,
then stops.
"""

import logging
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfner.server import config as server_config
from tfner.server.grpc_api import MODEL_SERVICE
from tfner.server.grpc_api import PREDICTION_SERVICE
from tfner.server.grpc_api import ModelServicer
from tfner.server.grpc_api import PredictionServicer
from tfner.server.metrics import Metrics
from tfner.server.model_store import ModelStore
from tfner.server.predictor import Limits
from tfner.server.predictor import Predictor
from tfner.server.rest_api import RestServer

log = logging.getLogger("tfner.serve")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

# How long shutdown answers new gRPC calls UNAVAILABLE before it stops the port.
REFUSE_BEFORE_STOP_S = 0.5

# gRPC's 4 MiB default would cut large batches; TF Serving lifts it too.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024




class ModelServer:
    """tfner.serve's gRPC and REST servers around one ModelStore.

    Args:
        specs: list of server_config.ModelSpecConfig.
        port: int. gRPC port; 0 picks a free one.
        rest_api_port: int. REST port; 0 turns REST off (as in TF Serving).
        batch_options: server_config.BatchOptions or None.
        limits: predictor.Limits.
        poll_seconds: float. --file_system_poll_wait_seconds.
        metrics_path: str or None. Prometheus path on the REST port.
        rest_timeout_s: float. Deadline of each REST request.
        grpc_max_workers: int. Threads answering RPCs (a batched request
            holds one while it waits for its batch).
        warmup: bool. Replay warmup requests on load.
        bind_address: str. Interface to listen on.
        config_file: str or None. The --model_config_file the specs came from.
        config_text: str or None. The text of config_file the specs were
            parsed from; a later read that differs is an edit to apply.
        config_poll_seconds: float. Re-read config_file this often and apply
            changes (--model_config_file_poll_wait_seconds); 0: never.
        grpc_channel_arguments: [(key, value)]. gRPC server options
            (--grpc_channel_arguments), over the defaults below.
    """

    def __init__(self, specs, port=8500, rest_api_port=0, batch_options=None, limits=Limits(),
                 poll_seconds=1.0, metrics_path=None, rest_timeout_s=30.0, grpc_max_workers=32,
                 warmup=True, bind_address="0.0.0.0", config_file=None, config_text=None,
                 config_poll_seconds=0.0, grpc_channel_arguments=()):
        self.metrics = Metrics()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._health_names = set()
        self._gauged_models = set()  # Models given a tfner_serving_loaded_versions gauge.
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
        self._config_text = config_text
        self._config_poll_seconds = config_poll_seconds
        self._grpc_options = {
            "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
            "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
            "grpc.so_reuseport": 0,  # A taken port is an error, not a shared one.
            **dict(grpc_channel_arguments),
        }
        self._stopping = threading.Event()

    def _watch_config_file(self):
        """Applies edits of --model_config_file, as TF Serving does when polling it."""
        applied = self._config_text
        if applied is None:  # Built without the parsed text: take the file as it is now.
            try:
                applied = server_config.read_text(self._config_file)
            except server_config.ConfigError:
                pass
        reported = None  # The last poll's error: a bad edit is logged once, not at every poll until it is fixed.
        while not self._stopping.wait(self._config_poll_seconds):
            try:
                text = server_config.read_text(self._config_file)
                if text == applied:
                    reported = None
                    continue
                specs = server_config.load_model_specs(self._config_file, text)
            except server_config.ConfigError as e:
                if str(e) != reported:
                    log.error("model config file not reloaded, keeping the current one: %s", e)
                reported = str(e)
                continue
            except Exception as e:  # This thread must outlive any one bad poll, or no later edit is ever applied.
                if repr(e) != reported:
                    log.exception("model config file not reloaded, keeping the current one; still watching it")
                reported = repr(e)
                continue
            applied = text
            reported = None
            try:
                self.store.reload(specs)
            except Exception:
                log.exception("model config file reload failed; still watching it")
                continue
            log.info("model config file changed; now serving: %s", ", ".join(s.name for s in specs))

    def _update_health(self):
        loaded = self.store.loaded_versions()
        for name, versions in loaded.items():
            self.metrics.set("tfner_serving_loaded_versions", len(versions), model=name)
        for name in self._gauged_models - set(loaded):
            self.metrics.set("tfner_serving_loaded_versions", 0, model=name)  # removed by a config reload
        self._gauged_models |= set(loaded)
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
            options=list(self._grpc_options.items()),
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.predictor, self.metrics, self._stopping), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.predictor, self.metrics, self._stopping), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [PREDICTION_SERVICE, MODEL_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
        self.grpc_port = server.add_insecure_port(f"{self._bind}:{self._port}")
        if not self.grpc_port:
            raise OSError(f"cannot listen on {self._bind}:{self._port} for gRPC (--port)")
        server.start()
        self.grpc_server = server
        if self._rest_port:
            try:
                self.rest_server = RestServer((self._bind, self._rest_port), self.predictor, self.metrics,
                                              self._metrics_path, self._rest_timeout_s)
            except OSError as e:
                server.stop(0)
                raise OSError(f"cannot listen on {self._bind}:{self._rest_port} for REST (--rest_api_port): "
                              f"{e.strerror or e}") from e
            self.rest_port = self.rest_server.server_address[1]
            threading.Thread(target=self.rest_server.serve_forever, name="rest", daemon=True).start()
        return self

    def shutdown(self, grace_s=25.0):
        """Refuses new requests, lets in-flight ones finish (up to grace_s), stops."""
        log.info("shutting down: refusing new requests, draining in-flight ones (grace %.0fs)", grace_s)
        deadline = time.monotonic() + grace_s
        self.health.enter_graceful_shutdown()
        self._stopping.set()  # From here new gRPC calls are answered UNAVAILABLE (grpc_api._Servicer).
        # Only ask the poller to stop here: a version it is loading (a long warmup) must not hold up the drain;
        # its wait is bounded by what is left of the grace, at the end.
        self.store.stop(timeout=0)
        # grpc's stop() cancels the calls it has accepted but not yet handed to
        # a handler thread: their clients see CANCELLED, which our clients
        # retry but other gRPC clients treat as final. Keep the port open a
        # moment first, so that every call that arrived gets a handler and an
        # UNAVAILABLE every client retries; clients watching health saw
        # NOT_SERVING above and go elsewhere.
        time.sleep(min(REFUSE_BEFORE_STOP_S, grace_s))
        grpc_done = self.grpc_server.stop(grace_s) if self.grpc_server else None
        if self.rest_server:
            self.rest_server.shutdown()  # Stop accepting; handler threads go on.
        self.predictor.drain()  # Queued batches run now instead of waiting to fill.
        if grpc_done is not None:
            grpc_done.wait(grace_s + 1)
        if self.rest_server:
            self.rest_server.server_close()  # Joins in-flight REST handlers.
        self.predictor.stop()
        self.store.stop(timeout=max(0.0, deadline - time.monotonic()))
        log.info("drained; exiting")
