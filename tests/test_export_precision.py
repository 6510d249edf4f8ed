"""export.precision: a bfloat16 export computes its encoder in bfloat16 and keeps the float32 contract."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_export import ENCODED, OUTPUT_DTYPES
from tiny import run_python

from tfner import export as export_lib
from tfner.config import ConfigError, load_config


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("precision") / "ner")
    return {p: export_lib.export_run(tiny_run["run_dir"], base, precision=p) for p in ("float32", "bfloat16")}


def product_dtypes(export_dir: str) -> set:
    """The dtypes of the matrix products in a SavedModel's graph and function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {tf.dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op in ("MatMul", "BatchMatMulV2")}


def test_bfloat16_export_multiplies_in_bfloat16_and_float32_export_does_not(exports):
    assert "bfloat16" in product_dtypes(exports["bfloat16"])
    assert "bfloat16" not in product_dtypes(exports["float32"])
    for precision, path in exports.items():
        with open(os.path.join(path, "assets", "source.json"), encoding="utf-8") as f:
            assert json.load(f)["precision"] == precision


def test_bfloat16_export_serves_the_contract_through_the_session_path(exports):
    """TF Serving's TF1 session load, in a fresh process; outputs typed as the float32 export's."""
    results = {}
    for precision, path in exports.items():
        code = f"""
import json
import tensorflow as tf
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], {path!r})
    signature = meta.signature_def["serving_default"]
    out = session.run({{k: v.name for k, v in signature.outputs.items()}}, {{signature.inputs["text"].name: {ENCODED!r}}})
print(json.dumps({{k: [v.dtype.name, v.tolist() if v.dtype != object else None] for k, v in out.items()}}))
"""
        result = run_python(code)
        assert result.returncode == 0, result.stderr[-3000:]
        results[precision] = json.loads(result.stdout.strip().splitlines()[-1])
    expected_dtypes = {k: ("object" if v == tf.string else v.name) for k, v in OUTPUT_DTYPES.items()}
    for precision, out in results.items():
        assert {k: v[0] for k, v in out.items()} == expected_dtypes, precision
    scores = np.array(results["bfloat16"]["entity_scores"][1], dtype=np.float32)
    assert scores.size and ((scores >= 0) & (scores <= 1)).all()


def test_bfloat16_module_tags_as_the_float32_one(tiny_run):
    """bfloat16 rounding may flip a character the tiny model is unsure of, not the model's tagging."""
    texts = tf.constant([t.decode("utf-8", "replace") for t in ENCODED])
    tags = {p: export_lib.load_run(tiny_run["run_dir"], p)(texts)["tags"].numpy() for p in ("float32", "bfloat16")}
    filled = tags["float32"] != b""
    assert (tags["bfloat16"] != b"").tolist() == filled.tolist()
    agreement = (tags["bfloat16"] == tags["float32"])[filled].mean()
    assert agreement >= 0.9, agreement


def test_precision_is_the_exports_not_the_process_policy(tiny_run):
    """A mixed-precision training process exports at export.precision, and keeps its own policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        module = export_lib.load_run(tiny_run["run_dir"])  # the run's export.precision: float32
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)
    assert {layer.dtype_policy.name for layer in module.model.backbone.layers} == {"float32"}
    assert module(tf.constant(["王伟去了北京。"]))["entity_scores"].dtype == tf.float32


def test_reuse_matches_precision_too(tiny_run, exports):
    base = os.path.dirname(exports["float32"])
    assert export_lib.export_run(tiny_run["run_dir"], base, reuse=True, precision="bfloat16") == exports["bfloat16"]
    assert export_lib.export_run(tiny_run["run_dir"], base, reuse=True, precision="float32") == exports["float32"]


def test_unknown_precision_fails_at_load_naming_the_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("export:\n  precision: float16\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'export.precision' must be one of float32, bfloat16"):
        load_config(str(path))


def test_export_command_takes_precision(tiny_run, tmp_path):
    out = str(tmp_path / "ner")
    result = run_python(f"import sys; from tfner.export import main; "
                        f"sys.exit(main(['--run', {tiny_run['run_dir']!r}, '--out', {out!r}, '--precision', 'bfloat16']))")
    assert result.returncode == 0, result.stderr[-2000:]
    path = result.stdout.strip().splitlines()[-1]
    assert path == os.path.join(out, "1") and "bfloat16" in product_dtypes(path)
