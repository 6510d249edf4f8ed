"""make_strategy: the one place that turns `train.distribute` into a tf.distribute.Strategy."""

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def _tf_config_workers() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e.msg}); see the README's multi-worker section") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """Makes the strategy named by `train.distribute`.

    Args:
        name: str. `one_device` (the first GPU, else the CPU), `mirrored` (all local GPUs, or the CPU),
            `multi_worker` (MultiWorkerMirroredStrategy over the cluster in TF_CONFIG), `tpu` (TPUStrategy),
            or `auto`: tpu if `tpu`/TPU_NAME is set, multi_worker if TF_CONFIG names 2+ workers, mirrored with
            2+ GPUs, else one_device.
        tpu: str. TPU address ("grpc://10.0.0.2:8470", a TPU name, or "local"); "" = TPU_NAME or local.
    """
    # Physical, not logical, devices: listing logical ones starts the runtime, after which multi-worker
    # collectives can no longer be configured.
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if tpu or os.environ.get("TPU_NAME"):
            name = "tpu"
        elif _tf_config_workers() > 1:
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
        if _tf_config_workers() < 1:
            raise ValueError(
                "train.distribute=multi_worker needs TF_CONFIG naming the cluster and this task, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        address = tpu or os.environ.get("TPU_NAME", "") or "local"
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise RuntimeError(
                f"train.distribute=tpu: no TPU found at {address!r} ({type(e).__name__}: {e}). Run on a TPU VM, or "
                "set train.tpu / TPU_NAME to the TPU's address, or choose another train.distribute"
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown train.distribute {name!r}; expected auto, one_device, mirrored, multi_worker or tpu")
