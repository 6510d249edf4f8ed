"""make_strategy: the one place that turns `train.distribute` into a tf.distribute.Strategy."""

import json
import logging
import os

import tensorflow as tf

from tfner.config import ConfigError

log = logging.getLogger(__name__)

_TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                      '"index": 0}}, with index 1 on host2; see the README\'s multi-worker section')


def read_tf_config() -> dict:
    """TF_CONFIG as a dict ({} when unset); a value TensorFlow could not use is a ConfigError saying why."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); expected e.g. "
                          f"{_TF_CONFIG_EXAMPLE}") from None
    if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster", {}), dict) or not all(
            isinstance(hosts, list) for hosts in tf_config.get("cluster", {}).values()):
        raise ConfigError(f"TF_CONFIG must be an object whose \"cluster\" maps roles to lists of host:port, "
                          f"e.g. {_TF_CONFIG_EXAMPLE}")
    return tf_config


def _tf_config_workers(tf_config: dict) -> int:
    cluster = tf_config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def check_task(tf_config: dict) -> None:
    """This process's task names a chief or worker of the cluster, by an index it has.

    TensorFlow would otherwise stop in the middle of the strategy's start-up with a traceback, or (an index past
    the list) wait for a peer that never comes.
    """
    cluster, task = tf_config.get("cluster", {}), tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError(f"TF_CONFIG has no \"task\": each process needs its own role and index, e.g. "
                          f"{_TF_CONFIG_EXAMPLE}")
    role, index = task["type"], task.get("index", 0)
    if role not in ("chief", "worker") or role not in cluster:
        raise ConfigError(f"TF_CONFIG task type {role!r}: multi_worker runs a \"chief\" or \"worker\" task named in "
                          f"its cluster (which has {sorted(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[role]):
        raise ConfigError(f"TF_CONFIG task index {index!r}: the cluster's {role!r} list has {len(cluster[role])} "
                          f"hosts, so the index is 0 to {len(cluster[role]) - 1}")


def make_strategy(name: str, tpu: str = "", mixed_precision: str = "none") -> tf.distribute.Strategy:
    """Makes the strategy named by `train.distribute`.

    Args:
        name: str. `one_device` (the first GPU, else the CPU), `mirrored` (all local GPUs, or the CPU),
            `multi_worker` (MultiWorkerMirroredStrategy over the cluster in TF_CONFIG), `tpu` (TPUStrategy),
            or `auto`: tpu if `tpu`/TPU_NAME is set, multi_worker if TF_CONFIG names 2+ workers, mirrored with
            2+ GPUs, else one_device.
        tpu: str. TPU address ("grpc://10.0.0.2:8470", a TPU name, or "local"); "" = TPU_NAME or local.
        mixed_precision: str. `train.mixed_precision`: a TPU refuses mixed_float16, also when `auto` chose it.
    """
    # Physical, not logical, devices: listing logical ones starts the runtime, after which multi-worker
    # collectives can no longer be configured.
    gpus = tf.config.list_physical_devices("GPU")
    tf_config = read_tf_config() if name in ("auto", "multi_worker") else {}  # read only where it is used
    requested = name
    if name == "auto":
        if tpu or os.environ.get("TPU_NAME"):
            name = "tpu"
        elif _tf_config_workers(tf_config) > 1:
            name = "multi_worker"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "one_device"
        log.info("train.distribute=auto chose %s", name)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if _tf_config_workers(tf_config) < 1:
            raise ConfigError(f"train.distribute=multi_worker needs TF_CONFIG naming the cluster and this task, e.g. "
                              f"{_TF_CONFIG_EXAMPLE}")
        check_task(tf_config)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if mixed_precision == "mixed_float16":  # config.py refuses `tpu` at load; `auto` finds one only here
            chosen = "train.distribute=auto chose a TPU (train.tpu or TPU_NAME is set)" if requested == "auto" else \
                "train.distribute is tpu"
            raise ConfigError(f"{chosen}, but train.mixed_precision is mixed_float16, which TPUs do not compute in; "
                              "set train.mixed_precision: mixed_bfloat16")
        address = tpu or os.environ.get("TPU_NAME", "") or "local"
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ConfigError(
                f"train.distribute=tpu: no TPU found at {address!r} ({type(e).__name__}: {e}). Run on a TPU VM, or "
                "set train.tpu / TPU_NAME to the TPU's address, or choose another train.distribute"
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown train.distribute {name!r}; expected auto, one_device, mirrored, multi_worker or tpu")
