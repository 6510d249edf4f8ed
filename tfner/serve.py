"""python -m tfner.serve: the TensorFlow Serving API for tfner exports.

A server that speaks TensorFlow Serving's gRPC API with the stock protos of
the tensorflow-serving-api wheel, so that every client written for
`tensorflow_model_server` (Go, Java, Node.js, Python; see serving/) works
against it unchanged, and its flags and config files are TF Serving's:

    python -m tfner.serve --port 8500 --rest_api_port 8501 \\
        --model_name ner --model_base_path export/ner \\
        --enable_batching --batching_parameters_file serving/batching.config

Services: tensorflow.serving.PredictionService, tensorflow.serving.ModelService,
grpc.health.v1.Health and server reflection; TF Serving's REST API on
--rest_api_port. The server itself is the tfner.server package; this file is
its command line: flags -> ModelServer, then wait for SIGTERM or SIGINT, stop
taking requests, finish the ones in flight, and exit 0.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading

from tfner.server import config as server_config
from tfner.server.model_server import ModelServer
from tfner.server.predictor import DEFAULT_MAX_CHARS_PER_REQUEST
from tfner.server.predictor import DEFAULT_MAX_CHARS_PER_TEXT
from tfner.server.predictor import DEFAULT_MAX_TEXTS_PER_REQUEST
from tfner.server.predictor import Limits
from tfner.tf_threads import ThreadsAlreadySet, onednn_state, set_tf_threads, thread_count

log = logging.getLogger("tfner.serve")




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
    g.add_argument("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?", const=True,
                   default=False, help="Accepted for TF Serving's command lines; tfner.serve always lets a new "
                   "label wait for its version to load.")
    g.add_argument("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
                   help="Replay assets.extra/tf_serving_warmup_requests on load. Default true.")
    g.add_argument("--grpc_channel_arguments", default="",
                   help="gRPC server options, key=value,key=value; e.g. grpc.max_connection_age_ms=30000,"
                        "grpc.max_connection_age_grace_ms=10000 closes each connection after 30 s, so that "
                        "clients reconnect and spread over new pods (serving/k8s/deployment.yaml).")
    g.add_argument("--tensorflow_intra_op_parallelism", type=thread_count, default=0,
                   help="Threads inside one op; 0 lets TensorFlow choose (small machines: tfner/tf_threads.py).")
    g.add_argument("--tensorflow_inter_op_parallelism", type=thread_count, default=0,
                   help="Ops run at once; 0 lets TensorFlow choose.")
    t = p.add_argument_group("tfner limits and knobs")
    t.add_argument("--max_texts_per_request", type=int, default=DEFAULT_MAX_TEXTS_PER_REQUEST,
                   help=f"Most texts in one request (capped by max_batch_size when batching). "
                        f"Default {DEFAULT_MAX_TEXTS_PER_REQUEST}.")
    t.add_argument("--max_chars_per_text", type=int, default=DEFAULT_MAX_CHARS_PER_TEXT,
                   help="Most characters (code points) in one text; 0: no limit, as in TF Serving "
                        "(the export windows long texts). Default 0.")
    t.add_argument("--max_chars_per_request", type=int, default=DEFAULT_MAX_CHARS_PER_REQUEST,
                   help="Most characters in one request, all texts together: bounds the memory of one "
                        "model call; more is RESOURCE_EXHAUSTED. With batching, one call holds up to "
                        f"max_batch_size texts of several requests. Default {DEFAULT_MAX_CHARS_PER_REQUEST}.")
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
        raise server_config.ConfigError(
            "say what to serve: --model_base_path (with --model_name) or --model_config_file"
        )
    if args.model_config_file:
        # As in TF Serving, the config file wins; the tensorflow/serving image's
        # entrypoint always passes --model_name/--model_base_path too.
        if args.model_base_path:
            log.warning("--model_config_file given: ignoring --model_base_path %s", args.model_base_path)
        # The text parsed here is what the config watcher compares later reads with: an edit made while the
        # models first load is then seen as an edit.
        config_text = server_config.read_text(args.model_config_file)
        specs = server_config.load_model_specs(args.model_config_file, config_text)
    else:
        config_text = None
        specs = [server_config.ModelSpecConfig(name=args.model_name, base_path=args.model_base_path)]
    batch_options = None
    if args.batching_parameters_file and not args.enable_batching:
        raise server_config.ConfigError("--batching_parameters_file needs --enable_batching")
    if args.enable_batching:
        batch_options = (server_config.load_batch_options(args.batching_parameters_file)
                         if args.batching_parameters_file else server_config.BatchOptions())
    metrics_path = None
    if args.monitoring_config_file:
        metrics_path = server_config.load_prometheus_path(args.monitoring_config_file)
        if metrics_path and not args.rest_api_port:
            raise server_config.ConfigError(
                "--monitoring_config_file serves metrics on the REST port; set --rest_api_port"
            )
    for flag, off in (("port", "pick a free port"), ("rest_api_port", "no REST API")):
        # gRPC would take 70000 as 70000 % 65536 = 4464 and listen there without a word.
        if not 0 <= getattr(args, flag) <= 65535:
            raise server_config.ConfigError(f"--{flag} must be a TCP port, 0..65535 (0: {off}), got {getattr(args, flag)}")
    for flag in ("max_texts_per_request", "max_chars_per_request", "grpc_max_workers", "rest_api_timeout_in_ms"):
        if getattr(args, flag) < 1:
            raise server_config.ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not args.shutdown_grace_seconds >= 0:  # also refuses nan
        raise server_config.ConfigError(
            f"--shutdown_grace_seconds must be >= 0 (0: stop without waiting), got {args.shutdown_grace_seconds}")
    if args.max_chars_per_text < 0:
        raise server_config.ConfigError(f"--max_chars_per_text must be >= 0 (0: no limit), got {args.max_chars_per_text}")
    limits = Limits(max_texts=args.max_texts_per_request, max_chars=args.max_chars_per_text,
                    max_request_chars=args.max_chars_per_request)
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
        config_text=config_text,
        config_poll_seconds=args.model_config_file_poll_wait_seconds,
        grpc_channel_arguments=server_config.parse_channel_arguments(args.grpc_channel_arguments),
    )


def start_or_stop(server, stop, grace_s):
    """Starts server (loads what is on disk, opens the ports) unless stop is set first.

    The first load can take minutes (a large model, a long warmup). It runs in a
    thread so that a SIGTERM meanwhile is acted on at once, as it is once serving:
    no further version starts loading, a warmup ends at its next record, and what
    remains of the load is waited for at most grace_s seconds.

    Returns "serving"; or "stopped" if stopped first (the ports, if they were
    opened, are closed again); or "abandoned" if the load outlived the grace.
    Raises what server.start() raised.
    """
    failure = []

    def start():
        try:
            server.start()
        except BaseException as e:  # Raised again in the main thread, where main() reports it.
            failure.append(e)

    thread = threading.Thread(target=start, name="first-load", daemon=True)
    thread.start()
    while thread.is_alive() and not stop.wait(0.2):
        pass
    if not stop.is_set():
        if failure:
            raise failure[0]
        return "serving"
    log.info("stop asked for during the first load: giving it up (grace %.0fs)", grace_s)
    server.store.stop(timeout=0)
    thread.join(grace_s)
    if thread.is_alive():
        log.info("the first load did not end within the grace; exiting without it")
        return "abandoned"
    if not failure:
        server.shutdown(0)
    server.predictor.stop()
    return "stopped"


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # First: the pools are fixed once TensorFlow has run an op, and loading a model runs many.
        threads = set_tf_threads(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism)
        server = server_from_args(args)
    except (ThreadsAlreadySet, server_config.ConfigError) as e:
        print(f"tfner.serve: {e}", file=sys.stderr)
        return 2
    log.info("TensorFlow threads: %s; oneDNN %s", threads, onednn_state())

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        started = start_or_stop(server, stop, args.shutdown_grace_seconds)
    except (OSError, RuntimeError) as e:  # Typically: the port is taken.
        print(f"tfner.serve: cannot start: {e}", file=sys.stderr)
        server.predictor.stop()
        return 1
    if started == "abandoned":
        # Still inside TensorFlow's loader, which cannot be interrupted. Nothing is serving and nothing is
        # written; leave at once rather than let interpreter teardown race that thread.
        logging.shutdown()
        os._exit(0)
    if started == "stopped":
        return 0
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
