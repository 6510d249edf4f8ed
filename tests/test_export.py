"""The export contract (export/README.md): TF Serving's load path, core ops only, exact offsets, long texts."""

import collections
import io
import json
import os
import shutil
import uuid

import numpy as np
import pytest
import tensorflow as tf
from tiny import run_python

from tfner import export as export_lib
from tfner.predict import SavedModelPredictor, entities_from_outputs

OUTPUT_DTYPES = {
    "num_entities": tf.int32,
    "entity_labels": tf.string,
    "entity_starts": tf.int32,
    "entity_ends": tf.int32,
    "entity_texts": tf.string,
    "entity_scores": tf.float32,
    "tags": tf.string,
}

TEXTS = [
    "王伟毕业于杭州科技有限公司，现居北京。",
    "",
    "李娜在 Apple 公司工作😀，住在上海。",
    "e\u0301王芳\t去了深圳 ",
    "ＡＢＣ银行与张强签署了协议。",
    "下周赵敏要去广州出差，住在长城研究院附近。" * 3,  # longer than one 30-character window
]
ENCODED = [t.encode("utf-8") for t in TEXTS] + [b"bad\xff\xfeutf8"]  # invalid UTF-8 must not fail the batch


@pytest.fixture(scope="module")
def module(tiny_run):
    return export_lib.load_run(tiny_run["run_dir"])


def test_signature_is_the_contract(tiny_run):
    loaded = tf.saved_model.load(tiny_run["export"])
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["text"] and inputs["text"].dtype == tf.string and inputs["text"].shape.as_list() == [None]
    outputs = signature.structured_outputs
    assert {k: v.dtype for k, v in outputs.items()} == OUTPUT_DTYPES
    assert outputs["num_entities"].shape.as_list() == [None]
    assert all(v.shape.rank == 2 for k, v in outputs.items() if k != "num_entities")


def test_session_path_in_a_fresh_process_equals_in_process_model(tiny_run, module):
    """TF Serving's loader is a TF1 session load: run exactly that, importing nothing but tensorflow."""
    code = f"""
import json, sys
import tensorflow as tf
texts = {ENCODED!r}
assert not {{"tfner", "keras_hub", "tensorflow_text"}} & set(sys.modules)
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], {tiny_run["export"]!r})
    signature = meta.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict", signature.method_name
    fetches = {{k: v.name for k, v in signature.outputs.items()}}
    out = session.run(fetches, {{signature.inputs["text"].name: texts}})
print(json.dumps({{k: (v.tolist() if v.dtype != object else [[x.decode("utf-8", "replace") for x in row] if v.ndim == 2 else row for row in v]) for k, v in out.items()}}))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    texts = ENCODED
    expected = {k: v.numpy() for k, v in module(tf.constant(texts)).items()}
    for key, value in expected.items():
        if value.dtype == object:
            value = [[x.decode("utf-8", "replace") for x in row] for row in value]
            assert served[key] == value, key
        else:
            np.testing.assert_allclose(served[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert len(served["tags"][-1]) >= 9  # invalid bytes became replacement characters, and got tags


def test_graph_holds_only_core_tensorflow_ops(tiny_run):
    """Every op of the graph and its function library is registered by bare TensorFlow (no tf-text), and none
    calls back into Python (tf.py_function and tf.numpy_function are registered ops too, but TF Serving has no
    Python to run them)."""
    code = f"""
import sys
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
proto = saved_model_pb2.SavedModel()
proto.ParseFromString(open({os.path.join(tiny_run["export"], "saved_model.pb")!r}, "rb").read())
graph = proto.meta_graphs[0].graph_def
ops = {{n.op for n in graph.node}} | {{n.op for f in graph.library.function for n in f.node_def}}
functions = {{f.signature.name for f in graph.library.function}}
unknown = sorted(op for op in ops - functions if op_def_registry.get(op) is None)
unknown += sorted(ops & {{"PyFunc", "PyFuncStateless", "EagerPyFunc"}})
assert "tensorflow_text" not in sys.modules
print(len(ops), unknown)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    count, unknown = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert unknown == "[]" and int(count) > 20


def test_offsets_are_python_string_offsets(module):
    texts = TEXTS + ["王强" * 5]
    out = entities_from_outputs({k: v.numpy() for k, v in module(tf.constant(texts)).items()})
    assert any(out), "the tiny model should find some entities in these texts"
    for text, entities in zip(texts, out):
        for entity in entities:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert 0.0 <= entity["score"] <= 1.0


def test_tags_cover_every_code_point_and_pad_with_empty(module):
    out = module(tf.constant(TEXTS))
    tags = out["tags"].numpy()
    for row, text in zip(tags, TEXTS):
        assert all(t != b"" for t in row[: len(text)]) and all(t == b"" for t in row[len(text) :])
    starts = out["entity_starts"].numpy()
    for row, count in zip(starts, out["num_entities"].numpy()):
        assert (row[count:] == -1).all()


def test_long_text_is_tagged_completely_through_windows(module):
    """A 5,000+ character text: every character tagged, windows agree with tagging each piece alone."""
    sentence = "下周赵敏要去广州出差，住在长城研究院附近。"
    text = sentence * 250  # 5,250 characters against 30-character windows
    out = module(tf.constant([text]))
    tags = out["tags"].numpy()[0]
    assert len(text) > 5000 and tags.shape[0] == len(text) and (tags != b"").all()
    entities = entities_from_outputs({k: v.numpy() for k, v in out.items()})[0]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    # Entities far from any seam are what the model finds in the sentence tagged alone.
    alone = entities_from_outputs({k: v.numpy() for k, v in module(tf.constant([sentence])).items()})[0]
    assert alone, "the tiny model finds nothing in the sentence: the comparison below would check nothing"
    span = len(sentence)
    shifted = collections.Counter((e["label"], e["start"] % span, e["end"] - e["start"] // span * span)
                                  for e in entities)
    # Each entity of the sentence alone is found in most of the 250 copies: the tiny model reads a copy in other
    # context (a window may start mid-sentence) and moves a boundary in some (~20 % seen). About as many entities
    # as the copies hold in all: no copy lost, none tagged twice.
    for e in alone:
        assert shifted[(e["label"], e["start"], e["end"])] >= 150, (e, shifted)
    assert abs(sum(shifted.values()) - 250 * len(alone)) <= 125, shifted


def test_batch_composition_does_not_change_predictions(module):
    one_by_one = [entities_from_outputs({k: v.numpy() for k, v in module(tf.constant([t])).items()})[0] for t in TEXTS]
    together = entities_from_outputs({k: v.numpy() for k, v in module(tf.constant(TEXTS)).items()})
    for a, b in zip(one_by_one, together):
        assert [(e["label"], e["start"], e["end"]) for e in a] == [(e["label"], e["start"], e["end"]) for e in b]
        np.testing.assert_allclose([e["score"] for e in a], [e["score"] for e in b], atol=1e-5)


def test_versions_increase_and_carry_assets_and_warmup(tiny_run, module, tmp_path):
    base = str(tmp_path / "ner")
    first = export_lib.export_module(module, base, "ner")
    second = export_lib.export_module(module, base, "ner")
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary folder left behind
    assets = os.path.join(second, "assets")
    assert open(os.path.join(assets, "labels.txt"), encoding="utf-8").read().split() == module.tag_set.labels
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(os.path.join(second, "assets.extra", "tf_serving_warmup_requests")))
    assert 0 < len(records) <= 1000
    request = prediction_log_pb2.PredictionLog.FromString(records[0].numpy()).predict_log.request
    assert request.model_spec.name == "ner" and list(request.inputs) == ["text"]
    with pytest.raises(FileExistsError):
        export_lib.export_module(module, base, "ner", version=2)


def test_an_edited_labels_file_is_refused_not_exported_with_types_swapped(tiny_run, tmp_path):
    """A byte-order mark or a renamed type re-sorted the types: every tag exported under another's name."""
    run_dir = shutil.copytree(tiny_run["run_dir"], tmp_path / "run")
    labels = run_dir / "labels.txt"
    assert labels.read_text(encoding="utf-8") == "LOC\nORG\nPER\n"
    labels.write_bytes("\ufeffLOC\r\nORG\r\nPER\r\n".encode("utf-8"))  # as a Windows editor saves it
    with pytest.raises(ValueError, match=r"labels\.txt:1: '\\ufeffLOC' is not an entity type"):
        export_lib.load_run(str(run_dir))
    labels.write_text("LOC\nORG\nCOMPANY\n", encoding="utf-8")  # PER renamed
    with pytest.raises(ValueError, match=r"not sorted and unique, as training wrote them"):
        export_lib.load_run(str(run_dir))
    labels.write_text("LOC\r\n\nORG\r\nPER\r\n", encoding="utf-8")  # line ends and blank lines are not edits
    assert export_lib.load_run(str(run_dir)).tag_set.labels == ["LOC", "ORG", "PER"]


def test_export_command_names_damaged_weights_and_an_unwritable_out(tiny_run, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_run["run_dir"], tmp_path / "run")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("", encoding="utf-8")
    assert export_lib.main(["--run", str(run_dir), "--out", str(not_a_folder)]) == 2  # was a traceback, exit 1
    assert "tfner.export: " in capsys.readouterr().err
    [data] = [p for p in (run_dir / "best").iterdir() if p.name.startswith("model.data-")]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # cut short
    assert export_lib.main(["--run", str(run_dir), "--out", str(tmp_path / "out")]) == 2
    assert "best: the weights do not load" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_only_ascii_digit_folders_are_versions(tmp_path):
    from tfner.predict import resolve_version
    from tfner.versions import version_folders

    for name in ("1", "01", "2", "\u00b2", "v3", ".tmp-3-host-1-abc"):  # "²".isdigit() is True; int("²") fails
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert version_folders(str(tmp_path)) == {1: str(tmp_path / "1"), 2: str(tmp_path / "2")}
    assert export_lib.next_version(str(tmp_path)) == 3
    assert resolve_version(str(tmp_path)) == str(tmp_path / "2")
    os.remove(tmp_path / "2" / "saved_model.pb")
    os.rename(tmp_path / "1", tmp_path / "one")
    assert resolve_version(str(tmp_path)) == str(tmp_path / "01")  # version 1 where its folder is


def run_evaluate(model, data, output):
    """`python -m tfner.evaluate --model model --data data --output output`, in a fresh interpreter."""
    return run_python(
        f"import sys; from tfner.evaluate import main; "
        f"sys.exit(main(['--model', {model!r}, '--data', {data!r}, '--output', {output!r}]))"
    )


def test_predict_and_evaluate_commands(tiny_run, tmp_path):
    export_base = os.path.dirname(tiny_run["export"])
    result = run_python(
        f"import sys; from tfner.predict import main; sys.exit(main(['--model', {export_base!r}, '王伟去了北京。', '']))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line["text"] for line in lines] == ["王伟去了北京。", ""] and lines[1]["entities"] == []
    output = str(tmp_path / "metrics.json")
    result = run_evaluate(export_base, tiny_run["test"], output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "micro avg" in result.stdout
    metrics = json.load(open(output))
    assert metrics["f1"] == pytest.approx(tiny_run["summary"]["test"]["f1"])
    assert metrics["types_not_in_model"] == [] and "warning" not in result.stderr


def test_evaluate_names_gold_types_the_model_does_not_have(tiny_run, tmp_path):
    """Scoring a model on another dataset's types printed zeros for them and nothing else."""
    data = tmp_path / "other.jsonl"
    records = [{"text": "王伟去了北京。", "entities": [{"start": 0, "end": 2, "label": "PER"},
                                                  {"start": 4, "end": 6, "label": "CITY"}]},
               {"text": "中国的首都", "entities": [{"start": 0, "end": 2, "label": "GPE"}]}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    output = str(tmp_path / "metrics.json")
    result = run_evaluate(tiny_run["export"], str(data), output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: entity type(s) CITY, GPE of the data are not among the model's (LOC, ORG, PER)" in result.stderr
    assert json.load(open(output))["types_not_in_model"] == ["CITY", "GPE"]


def test_predictor_names_a_text_without_utf8_and_stdin_drops_a_byte_order_mark(tiny_run):
    from tfner.predict import read_text_lines

    predictor = SavedModelPredictor(tiny_run["export"], batch_size=2)
    with pytest.raises(ValueError, match="text 2 holds U\\+D83D at character 2, half of a UTF-16 surrogate pair"):
        predictor.predict(["北京", "上海", "王伟\ud83d"])  # JSON's escape of half an emoji reads so
    argv = b"\xff\xfe\xe5\xbc\xa0".decode("utf-8", "surrogateescape")  # how Python reads argv bytes that are not UTF-8
    with pytest.raises(ValueError, match="text 0 holds byte 0xFF at character 0, which is not UTF-8"):
        predictor.predict([argv])
    with pytest.raises(TypeError, match="texts is one str; pass a list"):
        predictor.predict("北京欢迎你")  # not five texts of one character
    assert read_text_lines(io.BytesIO("\ufeff王伟\r\n北京\n".encode()), "stdin") == ["王伟", "北京"]


def test_in_process_predictor_matches_module(tiny_run, module):
    predictor = SavedModelPredictor(tiny_run["export"])
    direct = entities_from_outputs({k: v.numpy() for k, v in module(tf.constant(TEXTS)).items()})
    assert predictor.predict(TEXTS) == direct


def test_module_without_confidence_finds_the_same_entities(module):
    from tfner.inference import NerModule

    fast = NerModule(module.model, module.tokenizer, module.tag_set, module.max_seq_length,
                     module.window - module.stride, with_confidence=False)
    full = entities_from_outputs({k: v.numpy() for k, v in module(tf.constant(TEXTS)).items()})
    quick = entities_from_outputs({k: v.numpy() for k, v in fast(tf.constant(TEXTS)).items()})
    assert [[(e["label"], e["start"], e["end"]) for e in row] for row in quick] == \
        [[(e["label"], e["start"], e["end"]) for e in row] for row in full]
    assert all(e["score"] == 1.0 for row in quick for e in row)


def test_two_exports_at_once_take_two_versions(module, tmp_path, monkeypatch):
    """Another export renames its version N into place while this one, which also chose N, is writing: this one
    takes N + 1 instead of failing with AlreadyExistsError, and N stays the other's."""
    base = str(tmp_path / "ner")
    write_warmup = export_lib.write_warmup

    def write_warmup_while_another_export_finishes(*args, **kwargs):
        write_warmup(*args, **kwargs)
        os.makedirs(os.path.join(base, "1"))
        open(os.path.join(base, "1", "saved_model.pb"), "wb").close()

    monkeypatch.setattr(export_lib, "write_warmup", write_warmup_while_another_export_finishes)
    path = export_lib.export_module(module, base, "ner")
    assert path == os.path.join(base, "2")
    assert os.listdir(os.path.join(base, "1")) == ["saved_model.pb"]
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_a_failed_export_removes_its_staging_folder_on_any_filesystem(module):
    """TensorFlow's in-memory filesystem stands in for gs:// here: a path only tf.io.gfile can write and delete."""
    base = f"ram://{uuid.uuid4().hex}/ner"
    with pytest.raises(TypeError, match="not JSON serializable"):  # the model is written, then this fails
        export_lib.export_module(module, base, "ner", source={"unserializable": object()})
    assert tf.io.gfile.listdir(base) == []


def test_the_staging_folder_of_a_killed_export_is_removed_by_the_next(module, tmp_path):
    """SIGKILLed exports leave their hidden staging folder (a whole model each); the next export on the host removes
    those whose process is gone, and leaves a running export's alone."""
    import socket
    import subprocess
    import sys

    base = tmp_path / "ner"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    abandoned = base / f".tmp-1-{host}-{dead.pid}-0123abcd"
    running = base / f".tmp-1-{host}-{os.getppid()}-4567abcd"  # a live process (pytest's parent)
    for folder in (abandoned, running):
        (folder / "variables").mkdir(parents=True)
    export_lib.export_module(module, str(base), "ner")
    assert sorted(os.listdir(base)) == sorted(["1", running.name])
