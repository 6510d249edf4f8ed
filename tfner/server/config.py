"""Reads TensorFlow Serving's text-format config files.

Three files configure `tensorflow_model_server`, and `tfner.serve` reads the
same three so that one set of files under `serving/` drives both:

- `--model_config_file`: a `ModelServerConfig` (from the tensorflow-serving-api
  wheel, `tensorflow_serving.config.model_server_config_pb2`).
- `--batching_parameters_file`: a `BatchingParameters`.
- `--monitoring_config_file`: a `MonitoringConfig`.

The wheel does not ship the last two messages (they live in the server's C++
tree). When their generated modules are missing, this file declares the same
messages -- same package, names, field numbers and types -- in a private
descriptor pool, so a file that parses here parses in TF Serving and the other
way round for every field declared. Fields TF Serving added later are
rejected by the parser with the file, line and field name, rather than
silently ignored.
"""

import dataclasses
import os

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

# --------------------------------------------------------------------------
# Messages the tensorflow-serving-api wheel does not ship
# --------------------------------------------------------------------------

_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_INT64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
_BOOL = descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING

# (message, [(field, number, label, type, type_name)]), as declared by
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
# tensorflow_serving/config/monitoring_config.proto.
_DECLARED = {
    "BatchingParameters": [
        ("max_batch_size", 1, _OPTIONAL, _MESSAGE, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, _OPTIONAL, _MESSAGE, ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, _OPTIONAL, _MESSAGE, ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, _OPTIONAL, _MESSAGE, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, _OPTIONAL, _MESSAGE, ".google.protobuf.StringValue"),
        ("allowed_batch_sizes", 6, _REPEATED, _INT64, None),
        ("pad_variable_length_inputs", 7, _OPTIONAL, _BOOL, None),
    ],
    "PrometheusConfig": [
        ("enable", 1, _OPTIONAL, _BOOL, None),
        ("path", 2, _OPTIONAL, _STRING, None),
    ],
    "MonitoringConfig": [
        ("prometheus_config", 1, _OPTIONAL, _MESSAGE, ".tensorflow.serving.PrometheusConfig"),
    ],
}


def _declare_messages():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfner/tf_serving_config_messages.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    for message_name, fields in _DECLARED.items():
        message = file_proto.message_type.add(name=message_name)
        for name, number, label, type_, type_name in fields:
            field = message.field.add(name=name, number=number, label=label, type=type_)
            if type_name:
                field.type_name = type_name
    pool.AddSerializedFile(file_proto.SerializeToString())
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in _DECLARED
    }


try:  # A wheel that ships the generated modules wins.
    from tensorflow_serving.config.monitoring_config_pb2 import MonitoringConfig
    from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import (
        BatchingParameters,
    )
except ImportError:
    _messages = _declare_messages()
    BatchingParameters = _messages["BatchingParameters"]
    MonitoringConfig = _messages["MonitoringConfig"]

ModelServerConfig = model_server_config_pb2.ModelServerConfig

# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


class ConfigError(ValueError):
    """A config file or flag combination is invalid; the message says where."""


def read_text(path):
    """A config file's text. Raises ConfigError, naming the file, if it cannot be read or is not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:  # e.g. saved as GBK by an editor
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from e


def parse_channel_arguments(text):
    """--grpc_channel_arguments, as TF Serving reads it: "key=value,key=value" -> [(key, int or str)].

    A value that is an integer is passed as one (grpc.max_connection_age_ms=30000), any other as a string,
    as TF Serving's server does. Raises ConfigError naming an item that is not key=value.
    """
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key:
            raise ConfigError(f"--grpc_channel_arguments: {item!r} is not key=value; write e.g. "
                              "grpc.max_connection_age_ms=30000,grpc.max_connection_age_grace_ms=10000")
        try:
            arguments.append((key, int(value)))
        except ValueError:
            arguments.append((key, value))
    return arguments


def parse_text_proto(path, message_class, text=None):
    """Parses a text-format proto file into a new `message_class` instance.

    Args:
        path: str. The file to read.
        message_class: type. A protobuf message class.
        text: str or None. The file's text, if already read (see read_text).

    Returns:
        The parsed message.

    Raises:
        ConfigError: the file is missing, not UTF-8 or does not parse; the
            message names the file, line and column.
    """
    if text is None:
        text = read_text(path)
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as e:
        where = f"{path}:{e.GetLine()}:{e.GetColumn()}" if e.GetLine() else path
        raise ConfigError(
            f"{where}: not a valid text-format "
            f"{message_class.DESCRIPTOR.full_name}: {e}"
        ) from e


@dataclasses.dataclass(frozen=True)
class ModelSpecConfig:
    """One model to serve, with its version policy resolved.

    Args:
        name: str. The model name clients put in `model_spec.name`.
        base_path: str. The folder holding integer version subfolders.
        policy: str. "latest", "specific" or "all".
        num_versions: int. For "latest": how many of the highest versions.
        versions: tuple. For "specific": the versions to serve.
        labels: dict. Version label -> version.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple = ()
    labels: dict = dataclasses.field(default_factory=dict)

    def wanted_versions(self, on_disk):
        """Picks, from the versions ready on disk, the ones to serve."""
        on_disk = sorted(set(on_disk))
        if self.policy == "all":
            return on_disk
        if self.policy == "specific":
            return [v for v in on_disk if v in self.versions]
        return on_disk[-self.num_versions:]


def model_specs_from_proto(config, source="ModelServerConfig"):
    """Validates a ModelServerConfig and returns a list of ModelSpecConfig.

    Args:
        config: ModelServerConfig. The parsed config.
        source: str. Where it came from, for error messages.

    Raises:
        ConfigError: on anything tfner.serve cannot serve as asked.
    """
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(
            f"{source}: only model_config_list is supported "
            "(custom_model_config is a TF Serving plug-in hook)"
        )
    specs = []
    seen = set()
    for index, model in enumerate(config.model_config_list.config):
        where = f"{source}: model_config_list.config[{index}]"
        if not model.name:
            raise ConfigError(f"{where}: 'name' is empty; give the model a name")
        where = f"{where} (name {model.name!r})"
        if model.name in seen:
            raise ConfigError(f"{where}: the name is used twice; model names must be unique")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where}: 'base_path' is empty; point it at export/<name>")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{where}: model_platform {model.model_platform!r} is not supported; "
                "use \"tensorflow\""
            )
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        num_versions, versions = 1, ()
        if policy == "latest":
            num_versions = model.model_version_policy.latest.num_versions or 1
        elif policy == "specific":
            versions = tuple(sorted(set(model.model_version_policy.specific.versions)))
            if not versions:
                raise ConfigError(
                    f"{where}: model_version_policy.specific lists no versions"
                )
        labels = dict(model.version_labels)
        for label, version in labels.items():
            if policy == "specific" and version not in versions:
                raise ConfigError(
                    f"{where}: version_labels {label!r} -> {version}, but the "
                    f"specific policy serves only {list(versions)}"
                )
        specs.append(
            ModelSpecConfig(
                name=model.name,
                base_path=model.base_path,
                policy=policy,
                num_versions=num_versions,
                versions=versions,
                labels=labels,
            )
        )
    if not specs:
        raise ConfigError(f"{source}: model_config_list lists no model")
    return specs


def load_model_specs(path, text=None):
    """Reads a --model_config_file (or parses its already read text) into a list of ModelSpecConfig."""
    return model_specs_from_proto(parse_text_proto(path, ModelServerConfig, text), source=path)


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """Dynamic batching options, with TF Serving's defaults for unset fields.

    Args:
        max_batch_size: int. Most texts in one model call.
        batch_timeout_s: float. Longest wait for a batch to fill.
        num_batch_threads: int. Model calls running at once.
        max_enqueued_batches: int. Queue bound, in batches; past it, requests
            fail with UNAVAILABLE (as in TF Serving).
        allowed_batch_sizes: tuple. If set, each batch is padded up to the
            smallest of these that holds it.
    """

    max_batch_size: int = 1000
    batch_timeout_s: float = 0.0
    num_batch_threads: int = os.cpu_count() or 1
    max_enqueued_batches: int = 10
    allowed_batch_sizes: tuple = ()


def batch_options_from_proto(params, source="BatchingParameters"):
    """Validates BatchingParameters and returns BatchOptions."""
    defaults = BatchOptions()

    def value(field, default):
        return getattr(params, field).value if params.HasField(field) else default

    options = BatchOptions(
        max_batch_size=value("max_batch_size", defaults.max_batch_size),
        batch_timeout_s=value("batch_timeout_micros", 0) / 1e6,
        num_batch_threads=value("num_batch_threads", defaults.num_batch_threads),
        max_enqueued_batches=value("max_enqueued_batches", defaults.max_enqueued_batches),
        allowed_batch_sizes=tuple(params.allowed_batch_sizes),
    )
    for field in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if getattr(options, field) < 1:
            raise ConfigError(f"{source}: {field} must be >= 1, got {getattr(options, field)}")
    if options.batch_timeout_s < 0:
        raise ConfigError(f"{source}: batch_timeout_micros must be >= 0")
    sizes = options.allowed_batch_sizes
    if sizes:
        if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
            raise ConfigError(
                f"{source}: allowed_batch_sizes must be positive and strictly "
                f"increasing, got {list(sizes)}"
            )
        if sizes[-1] != options.max_batch_size:
            raise ConfigError(
                f"{source}: the last allowed_batch_sizes entry ({sizes[-1]}) must "
                f"equal max_batch_size ({options.max_batch_size})"
            )
    return options


def load_batch_options(path):
    """Reads a --batching_parameters_file into BatchOptions."""
    return batch_options_from_proto(parse_text_proto(path, BatchingParameters), source=path)


def load_prometheus_path(path):
    """Reads a --monitoring_config_file; returns the metrics path, or None if off."""
    config = parse_text_proto(path, MonitoringConfig)
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    metrics_path = prometheus.path or "/monitoring/prometheus/metrics"
    if not metrics_path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/', got {metrics_path!r}")
    return metrics_path
