"""Versioned SavedModels on disk, kept loaded in step with the filesystem.

A model's base path holds one folder per version, named by an integer:

    export/ner/
      1/            saved_model.pb, variables/, assets.extra/...
      2/
      .tmp-3-a1b2/  a writer's staging folder: not an integer, ignored

`ModelStore.poll()` lists each base path, asks the model's version policy
(latest N / specific / all) which ready versions to serve, loads the missing
ones, and only then retires the ones no longer wanted, so that a swap from
version 1 to 2 never leaves a gap. A retired version leaves the routing table
at once but is dropped only when its last in-flight request has released it.

Requests reach a servable through `acquire()`, a context manager that counts
users; that count is what makes unloading safe under traffic.

Faults, and what the store does about them (tests/test_server_faults.py):
a version folder that fails to load (half-written, truncated by a full disk,
not a SavedModel) is logged with the reason, reported by GetModelStatus, and
retried once any of its files changes, while the versions already loaded keep
serving; a base path that is deleted or emptied keeps its loaded versions
answering from memory, with one warning, until version folders appear again.
"""

import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import logging
import os
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_log_pb2

from tfner.server.errors import ServingError

log = logging.getLogger("tfner.serve")

State = get_model_status_pb2.ModelVersionStatus.State

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's cap on warmup records.
MAX_VERSION = 2**63 - 1  # Versions are int64, in TF Serving and in the protos (model_spec.version).

_warned_folders = set()  # Version folders already warned about, so that each poll does not repeat it.


def dims_of(tensor_info):
    """TensorInfo -> list of dims (-1 unknown), or None for unknown rank."""
    shape = tensor_info.tensor_shape
    if shape.unknown_rank:
        return None
    return [d.size for d in shape.dim]


class Signature:
    """One callable signature of a loaded SavedModel.

    Args:
        name: str. The signature key, e.g. "serving_default".
        fn: ConcreteFunction. `loaded.signatures[name]`.
        signature_def: SignatureDef. The proto from saved_model.pb, the
            source of truth for input/output names, dtypes and shapes.
    """

    def __init__(self, name, fn, signature_def):
        self.name = name
        self.fn = fn
        self.signature_def = signature_def
        self.inputs = dict(signature_def.inputs)
        self.outputs = dict(signature_def.outputs)
        self._numpy_dtypes = {
            key: tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
            for key, info in self.inputs.items()
        }

    def run(self, arrays):
        """Calls the signature on numpy inputs; returns numpy outputs by name."""
        feeds = {
            key: tf.constant(np.asarray(value, dtype=self._numpy_dtypes[key]))
            for key, value in arrays.items()
        }
        return {key: value.numpy() for key, value in self.fn(**feeds).items()}

    def describe_inputs(self):
        return ", ".join(
            f"{key} ({types_pb2.DataType.Name(info.dtype)} "
            f"{dims_of(info) if dims_of(info) is not None else 'any shape'})"
            for key, info in sorted(self.inputs.items())
        )


class Servable:
    """One loaded version of one model."""

    def __init__(self, name, version, path, loaded, signature_defs):
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded  # Keeps the TF resources alive.
        self.signature_defs = signature_defs  # Every SignatureDef, for metadata.
        self.signatures = {
            key: Signature(key, loaded.signatures[key], signature_defs[key])
            for key in loaded.signatures.keys()
            if key in signature_defs
        }
        self.users = 0
        self.retired = False  # out of routing; dropped once users reaches 0

    def signature(self, key):
        key = key or "serving_default"
        if key not in self.signatures:
            raise ServingError(  # TF Serving's status for an unknown signature key (predict_util.cc)
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {self.name!r} version {self.version} has no signature {key!r}; "
                f"its signatures are: {', '.join(sorted(self.signatures))}",
            )
        return self.signatures[key]


def read_signature_defs(path):
    """Reads the "serve" MetaGraph's SignatureDef map from saved_model.pb."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path}/saved_model.pb has no MetaGraph tagged 'serve'")


def release_freed_memory():
    """Hands the memory of dropped versions back to the operating system; returns whether it could.

    A version's graph and weights are freed when its last request ends, but glibc's malloc keeps freed pages in
    its heaps while requests allocate around them. malloc_trim(0) hands back every whole free page of every
    heap: in benchmarks/soak.py the +100 MB of a swap (two versions resident) then goes back within seconds
    instead of staying. It does not stop all growth (see the soak's figures). Other C libraries (musl, macOS)
    have no malloc_trim: nothing to do there.
    """
    gc.collect()  # the loaded object graph holds reference cycles: free it now, not at some later collection
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


class LoadStopped(Exception):
    """A load given up because the server is shutting down."""


def load_servable(name, version, path, warmup=True, stop=None):
    """Loads one version directory and replays its warmup requests.

    stop: threading.Event or None. Checked between warmup records: once set, the load is given up (LoadStopped),
    so that a shutdown need not wait for up to MAX_WARMUP_RECORDS model calls.
    """
    loaded = tf.saved_model.load(path, tags=["serve"])
    servable = Servable(name, version, path, loaded, read_signature_defs(path))
    if not servable.signatures:
        raise ValueError(f"{path} has no callable signatures")
    warmup_path = os.path.join(path, WARMUP_FILE)
    if warmup and os.path.exists(warmup_path):
        log.info("warming up %s version %d from %s", name, version, warmup_path)  # may take long: say so
        count = 0
        for record in tf.data.TFRecordDataset(warmup_path).take(MAX_WARMUP_RECORDS):
            if stop is not None and stop.is_set():
                raise LoadStopped(f"loading {path} stopped after {count} warmup request(s): shutting down")
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                raise ValueError(
                    f"{warmup_path}: record {count} is a "
                    f"{entry.WhichOneof('log_type')}; tfner.serve replays predict_log only"
                )
            request = entry.predict_log.request
            signature = servable.signature(request.model_spec.signature_name)
            signature.run({k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            count += 1
        log.info("warmed up %s version %d with %d request(s)", name, version, count)
    return servable


def list_versions(base_path):
    """Integer-named version folders holding a SavedModel -> {version: path}."""
    found = {}
    try:
        entries = os.listdir(base_path)
    except OSError:
        return None
    for entry in entries:
        # TF Serving's rule: the folder name is the version, digits only.
        if not (entry.isascii() and entry.isdigit()):
            continue
        path = os.path.join(base_path, entry)
        if int(entry) > MAX_VERSION:
            if path not in _warned_folders:
                _warned_folders.add(path)
                log.warning("skipping %s: version %s is larger than the largest int64 version (%d); rename the "
                            "folder to a smaller integer", path, entry, MAX_VERSION)
            continue
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            found[int(entry)] = path
    return found


def _stamp(path):
    """Changes whenever any file of a version folder changes.

    A version that failed to load (say, a writer that copied saved_model.pb
    before variables/) is retried once its stamp moves.
    """
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            entries.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


class _Model:
    def __init__(self, spec):
        self.spec = spec
        self.available = {}  # version -> Servable
        self.status = {}  # version -> (State, grpc.StatusCode, message)
        self.failed = {}  # version -> stamp of the folder that failed to load
        self.warned_missing = False
        # After a reload moved the model to another base_path: the _Model of the old path, whose versions keep
        # answering until the new path has one loaded (no gap, as for a version swap).
        self.previous = None
        # Labels of a reload, installed once the versions they name are loaded (see ModelStore.reload).
        self.pending_labels = None
        self.waiting_labels = {}  # label -> version it waits for; logged when this changes

    def serving(self):
        """{version: Servable} that requests are routed to."""
        if self.available or self.previous is None:
            return self.available
        return self.previous.available


class ModelStore:
    """Serves the versions each model's policy wants, as the disk changes.

    Args:
        specs: list of ModelSpecConfig. The models to serve.
        poll_seconds: float. Filesystem poll period; 0 polls once at start.
        warmup: bool. Replay assets.extra/tf_serving_warmup_requests on load.
        on_change: callable or None. Called after a poll that changed what is
            loaded (the server updates health and metrics there).
    """

    def __init__(self, specs, poll_seconds=1.0, warmup=True, on_change=None):
        self._lock = threading.Lock()  # Guards the routing tables below.
        self._poll_lock = threading.Lock()  # One poll or reload at a time.
        self._models = {spec.name: _Model(spec) for spec in specs}
        self._retiring = []  # Servables out of routing, waiting for users == 0.
        self._poll_seconds = poll_seconds
        self._warmup = warmup
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = None

    # ---- lifecycle -------------------------------------------------------

    def start(self):
        """Polls once now, then in a background thread every poll_seconds."""
        self.poll()
        if self._poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def _poll_loop(self):
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll()
            except Exception:  # Keep serving what is loaded; say why.
                log.exception("filesystem poll failed")

    def stop(self, timeout=60):
        """Stops polling; a load in progress ends at its next warmup record. Waits up to timeout seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    # ---- polling ---------------------------------------------------------

    def poll(self):
        """Brings every model in line with its base path and policy."""
        with self._poll_lock:
            changed = False
            for model in list(self._models.values()):
                changed |= self._sync(model)
            changed |= self._drop_retired()
        if changed and self._on_change:
            self._on_change()

    def _sync(self, model):
        spec = model.spec
        on_disk = list_versions(spec.base_path)
        if not on_disk:
            # A base path that vanishes or empties (a deleted folder, a remount, an rsync --delete) does not take
            # the model down: loaded versions keep answering from memory (TF Serving's behaviour with
            # --servable_versions_always_present) until a version folder appears again. Said once per outage.
            if not model.warned_missing:
                serving = sorted(model.available)
                if on_disk is None:
                    state = "does not exist"
                elif os.path.exists(os.path.join(spec.base_path, "saved_model.pb")):  # export/ner/1 for export/ner
                    state = (f"is itself a version folder (it holds saved_model.pb); give its parent, "
                             f"{os.path.dirname(os.path.normpath(spec.base_path))}, as the base path")
                else:
                    state = "holds no version folder"
                log.warning("model %s: base path %s %s; %s", spec.name, spec.base_path, state,
                            f"still serving version(s) {serving} from memory; watching it" if serving
                            else "watching it")
                model.warned_missing = True
            on_disk = {}
        else:
            model.warned_missing = False
        # A version that failed to load is retried only once its folder changes.
        candidates = {
            v: p for v, p in on_disk.items()
            if v not in model.failed or model.failed[v] != _stamp(p)
        }
        wanted = spec.wanted_versions(candidates)
        changed = False
        for version in wanted:
            if version in model.available:
                continue
            if self._stop.is_set():  # Shutting down: start no other load.
                break
            changed = True
            self._load(model, version, candidates[version])
        with self._lock:
            if model.pending_labels is not None:  # the reload's labels, now that their versions had their load
                self._install_labels(model)
            if model.previous is not None and model.available:  # the new base_path serves: drop the old one's
                for version in sorted(model.previous.available):
                    self._retire(model.previous, version)
                model.previous = None
                changed = True
            keep = set(wanted) & set(model.available)
            if not keep:
                keep = set(model.available)  # Nothing new came up: keep what serves.
            for version in sorted(set(model.available) - keep):
                self._retire(model, version)
                changed = True
        return changed

    def _load(self, model, version, path):
        name = model.spec.name
        with self._lock:
            model.status[version] = (State.LOADING, grpc.StatusCode.OK, "")
        started = time.monotonic()
        try:
            servable = load_servable(name, version, path, warmup=self._warmup, stop=self._stop)
        except LoadStopped as e:
            log.info("model %s version %d: %s", name, version, e)
            with self._lock:
                model.status[version] = (State.END, grpc.StatusCode.CANCELLED, str(e))
            return
        except Exception as e:  # A bad export must not take the server down.
            log.error("model %s version %d at %s failed to load: %s", name, version, path, e)
            with self._lock:
                model.failed[version] = _stamp(path)
                model.status[version] = (
                    State.END,
                    grpc.StatusCode.UNKNOWN,
                    f"failed to load {path}: {type(e).__name__}: {e}",
                )
            return
        with self._lock:
            model.failed.pop(version, None)
            model.available[version] = servable
            model.status[version] = (State.AVAILABLE, grpc.StatusCode.OK, "")
        log.info("model %s: loaded version %d from %s in %.1fs", name, version, path, time.monotonic() - started)

    def _install_labels(self, model):
        # Caller holds self._lock. A label moves only once the version it names is loaded: one whose version failed
        # to load (or is not on disk yet) keeps its old target, and moves when a later poll loads the version.
        serving = model.serving()
        labels = dict(model.spec.labels)  # staged by reload: old targets for the labels that move
        waiting = {}
        for label, version in model.pending_labels.items():
            if version in serving:
                labels[label] = version
            elif labels[label] != version:
                waiting[label] = version
        model.spec = dataclasses.replace(model.spec, labels=labels)
        if waiting != model.waiting_labels:
            for label, version in sorted(waiting.items()):
                state = model.status.get(version)
                why = (f"its state is {State.Name(state[0])}{': ' + state[2] if state[2] else ''}" if state
                       else f"it is not in {model.spec.base_path}")
                log.warning("model %s: label %r stays on version %d until version %d is loaded; %s",
                            model.spec.name, label, labels[label], version, why)
        model.waiting_labels = waiting
        model.pending_labels = model.pending_labels if waiting else None

    def _retire(self, model, version):
        # Caller holds self._lock.
        servable = model.available.pop(version)
        servable.retired = True
        model.status[version] = (State.UNLOADING, grpc.StatusCode.OK, "")
        self._retiring.append((model, servable))
        log.info("model %s: retiring version %d", model.spec.name, version)

    def _drop_retired(self):
        dropped = False
        with self._lock:
            still = []
            for model, servable in self._retiring:
                if servable.users:
                    still.append((model, servable))
                    continue
                if model.status.get(servable.version, (None,))[0] == State.UNLOADING:
                    model.status[servable.version] = (State.END, grpc.StatusCode.OK, "")
                log.info("model %s: unloaded version %d", servable.name, servable.version)
                dropped = True
            self._retiring = still
        if dropped:
            release_freed_memory()
        return dropped

    def reload(self, specs):
        """Replaces the served model list (HandleReloadConfigRequest) and polls."""
        with self._poll_lock:
            with self._lock:
                models = {}
                for spec in specs:
                    current = self._models.get(spec.name)
                    model = current or _Model(spec)
                    if current is not None and current.spec.base_path != spec.base_path:
                        # The old path's versions answer until the new path has one loaded (_sync retires them).
                        model = _Model(spec)
                        model.previous = current if current.available else current.previous
                    # A label moved to a version that is not loaded yet would answer NOT_FOUND until it is:
                    # keep its old target until this reload's poll has loaded the new one (TF Serving refuses
                    # the whole edit instead; its --allow_version_labels_for_unavailable_models admits only a
                    # label that is new, not one moved).
                    serving = model.serving()
                    old_labels = current.spec.labels if current is not None else {}
                    staged = {k: v if v in serving else old_labels.get(k, v) for k, v in spec.labels.items()}
                    model.spec = dataclasses.replace(spec, labels=staged)
                    model.pending_labels = dict(spec.labels)
                    models[spec.name] = model
                for name, model in self._models.items():
                    if name not in models:
                        for old in (model, model.previous):
                            for version in sorted(old.available if old is not None else ()):
                                self._retire(old, version)
                self._models = models
        self.poll()

    # ---- routing ---------------------------------------------------------

    @contextlib.contextmanager
    def acquire(self, name, version=None, label=None):
        """Yields the Servable a request names; holds it until the block exits.

        Args:
            name: str. Model name.
            version: int or None. A specific version.
            label: str or None. A version label from the config.

        Raises:
            ServingError: NOT_FOUND for an unknown model, version or label;
                UNAVAILABLE when the model has no loaded version yet.
        """
        with self._lock:
            servable = self._resolve(name, version, label)
            servable.users += 1
        try:
            yield servable
        finally:
            with self._lock:
                servable.users -= 1
                idle_retired = servable.retired and servable.users == 0
            if idle_retired:
                # Drop it now rather than at the next poll, which never comes with --file_system_poll_wait_seconds 0
                # (the version stayed UNLOADING, and in memory, for good). Off the request's thread: gc + malloc_trim.
                threading.Thread(target=self._drop_retired, name="drop-retired", daemon=True).start()

    def _resolve(self, name, version, label):
        model = self._models.get(name)
        available = model.serving() if model is not None else {}
        if model is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} is not served here; served models: "
                f"{', '.join(sorted(self._models)) or 'none'}",
            )
        if label:
            if label not in model.spec.labels:
                known = ", ".join(f"{k}->{v}" for k, v in sorted(model.spec.labels.items()))
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"model {name!r} has no version label {label!r}; labels: {known or 'none'}",
                )
            version = model.spec.labels[label]
        if version is None:
            if not available:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"model {name!r} has no loaded version yet; tfner.serve is watching "
                    f"{model.spec.base_path} for integer version folders",
                )
            return available[max(available)]
        if version not in available:
            via = f" (label {label!r})" if label else ""
            state = model.status.get(version)
            detail = f"; its state is {State.Name(state[0])}" if state else ""
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} version {version}{via} is not loaded{detail}; "
                f"loaded versions: {sorted(available) or 'none'}",
            )
        return available[version]

    # ---- introspection ---------------------------------------------------

    def model_names(self):
        with self._lock:
            return sorted(self._models)

    def loaded_versions(self):
        """{model name: sorted loaded versions}."""
        with self._lock:
            return {name: sorted(m.serving()) for name, m in self._models.items()}

    def version_status(self, name, version=None, label=None):
        """[(version, State, grpc.StatusCode, message)], highest version first."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"model {name!r} is not served here; served models: "
                    f"{', '.join(sorted(self._models)) or 'none'}",
                )
            if label:
                if label not in model.spec.labels:
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND, f"model {name!r} has no version label {label!r}"
                    )
                version = model.spec.labels[label]
            status = dict(model.status)
            if model.serving() is not model.available:
                # Moved to a new base path that has no version loaded yet: the old path's versions still answer
                # requests, so report them (over any of the new path's of the same number, which do not).
                status.update({v: model.previous.status[v] for v in model.previous.available})
            if version is not None:
                if version not in status:
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND,
                        f"model {name!r} has no version {version}; known versions: "
                        f"{sorted(status) or 'none'}",
                    )
                return [(version, *status[version])]
            if not status:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"model {name!r} has no versions yet; tfner.serve is watching "
                    f"{model.spec.base_path} for integer version folders",
                )
            return [(v, *status[v]) for v in sorted(status, reverse=True)]
