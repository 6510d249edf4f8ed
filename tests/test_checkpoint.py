"""Tests for tfner.checkpoint: Google TF1, Hugging Face and keras-hub preset loading.

A tiny BERT's weights are drawn at random in Google's layout, written in each
format, loaded, and the backbone's outputs are compared with an independent
NumPy implementation of BERT over the same arrays.
"""

import json
import logging
import math
import os
import shutil

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from tfner import checkpoint
from tfner.checkpoint import CheckpointMismatchError, ErfGeluBertBackbone, load_backbone, vocabulary_path

VOCAB = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(24)]
V, LAYERS, H, HEADS, I, P, TYPES = len(VOCAB), 2, 8, 2, 16, 16, 2
BERT_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "directionality": "bidi",
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": H,
    "initializer_range": 0.02,
    "intermediate_size": I,
    "max_position_embeddings": P,
    "num_attention_heads": HEADS,
    "num_hidden_layers": LAYERS,
    "type_vocab_size": TYPES,
    "vocab_size": V,
}
HF_CONFIG = {
    **BERT_CONFIG,
    "architectures": ["BertForMaskedLM"],
    "model_type": "bert",
    "layer_norm_eps": 1e-12,
    "position_embedding_type": "absolute",
    "pad_token_id": 0,
}
TOL = 1e-4


# ---------------------------------------------------------------------------
# Weights and the NumPy reference
# ---------------------------------------------------------------------------


def make_weights(seed=0):
    """Google-layout BERT weights. Scales are large enough that GELU's erf and
    tanh forms give visibly different outputs, so the activation is tested too."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {
        "bert/embeddings/word_embeddings": normal(V, H),
        "bert/embeddings/position_embeddings": normal(P, H),
        "bert/embeddings/token_type_embeddings": normal(TYPES, H),
        "bert/embeddings/LayerNorm/gamma": 1 + normal(H, scale=0.2),
        "bert/embeddings/LayerNorm/beta": normal(H, scale=0.2),
        "bert/pooler/dense/kernel": normal(H, H),
        "bert/pooler/dense/bias": normal(H, scale=0.2),
    }
    for n in range(LAYERS):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            w[f"{p}/attention/self/{part}/kernel"] = normal(H, H)
            w[f"{p}/attention/self/{part}/bias"] = normal(H, scale=0.2)
        w[f"{p}/attention/output/dense/kernel"] = normal(H, H)
        w[f"{p}/attention/output/dense/bias"] = normal(H, scale=0.2)
        w[f"{p}/attention/output/LayerNorm/gamma"] = 1 + normal(H, scale=0.2)
        w[f"{p}/attention/output/LayerNorm/beta"] = normal(H, scale=0.2)
        w[f"{p}/intermediate/dense/kernel"] = normal(H, I)
        w[f"{p}/intermediate/dense/bias"] = normal(I, scale=0.2)
        w[f"{p}/output/dense/kernel"] = normal(I, H)
        w[f"{p}/output/dense/bias"] = normal(H, scale=0.2)
        w[f"{p}/output/LayerNorm/gamma"] = 1 + normal(H, scale=0.2)
        w[f"{p}/output/LayerNorm/beta"] = normal(H, scale=0.2)
    return w


WEIGHTS = make_weights()

_erf = np.vectorize(math.erf)


def gelu_erf(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def reference_bert(w, token_ids, segment_ids, padding_mask, gelu=gelu_erf):
    """BERT forward pass in float64 NumPy, written from the paper's equations."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    batch, seq = token_ids.shape
    d = H // HEADS
    e = "bert/embeddings/"
    x = w[e + "word_embeddings"][token_ids] + w[e + "position_embeddings"][:seq] + w[e + "token_type_embeddings"][segment_ids]
    x = layer_norm(x, w[e + "LayerNorm/gamma"], w[e + "LayerNorm/beta"])
    # Keys at padded positions get -inf-like scores, so no query attends to them.
    key_bias = np.where(padding_mask[:, None, None, :] > 0, 0.0, -1e9)
    for n in range(LAYERS):
        p = f"bert/encoder/layer_{n}/"

        def project(part):
            y = x @ w[p + f"attention/self/{part}/kernel"] + w[p + f"attention/self/{part}/bias"]
            return y.reshape(batch, seq, HEADS, d).transpose(0, 2, 1, 3)  # [B, heads, S, d]

        q, k, v = project("query"), project("key"), project("value")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + key_bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, H)
        attended = context @ w[p + "attention/output/dense/kernel"] + w[p + "attention/output/dense/bias"]
        x = layer_norm(x + attended, w[p + "attention/output/LayerNorm/gamma"], w[p + "attention/output/LayerNorm/beta"])
        inner = gelu(x @ w[p + "intermediate/dense/kernel"] + w[p + "intermediate/dense/bias"])
        out = inner @ w[p + "output/dense/kernel"] + w[p + "output/dense/bias"]
        x = layer_norm(x + out, w[p + "output/LayerNorm/gamma"], w[p + "output/LayerNorm/beta"])
    pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
    return x, pooled


def make_inputs(seq=7):
    rng = np.random.default_rng(1)
    token_ids = rng.integers(0, V, size=(3, seq)).astype("int32")
    segment_ids = np.zeros((3, seq), "int32")
    segment_ids[:, seq // 2 :] = 1
    padding_mask = np.ones((3, seq), "int32")
    padding_mask[1, seq - 2 :] = 0  # one padded row, one heavily padded row
    padding_mask[2, 3:] = 0
    token_ids[padding_mask == 0] = 0
    segment_ids[padding_mask == 0] = 0
    return token_ids, segment_ids, padding_mask


INPUTS = make_inputs()


def assert_matches_reference(backbone, gelu=gelu_erf, inputs=INPUTS):
    token_ids, segment_ids, padding_mask = inputs
    out = backbone({"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask})
    sequence, pooled = reference_bert(WEIGHTS, token_ids, segment_ids, padding_mask, gelu)
    np.testing.assert_allclose(np.asarray(out["sequence_output"]), sequence, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out["pooled_output"]), pooled, atol=TOL, rtol=0)


def outputs(backbone, inputs=INPUTS):
    token_ids, segment_ids, padding_mask = inputs
    out = backbone({"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask})
    return np.asarray(out["sequence_output"]), np.asarray(out["pooled_output"])


# ---------------------------------------------------------------------------
# Writing checkpoints
# ---------------------------------------------------------------------------

# Tensors a real pretraining checkpoint carries besides the backbone.
GOOGLE_EXTRAS = {
    "cls/predictions/output_bias": np.zeros(V, np.float32),
    "cls/predictions/transform/dense/kernel": np.zeros((H, H), np.float32),
    "cls/seq_relationship/output_weights": np.zeros((2, H), np.float32),
    "bert/embeddings/word_embeddings/adam_m": np.zeros((V, H), np.float32),
    "bert/encoder/layer_0/output/dense/kernel/adam_v": np.zeros((I, H), np.float32),
    "global_step": np.array(1000, np.int64),
}


def write_google(folder, weights=None, extras=GOOGLE_EXTRAS, config=BERT_CONFIG):
    """A name-based TF1 checkpoint as Google's BERT code writes it."""
    weights = WEIGHTS if weights is None else weights
    os.makedirs(folder, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in {**weights, **extras}.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, os.path.join(folder, "bert_model.ckpt"), write_meta_graph=False)
    write_json(os.path.join(folder, "bert_config.json"), config)
    write_vocab(os.path.join(folder, "vocab.txt"))
    return str(folder)


def to_huggingface(weights, prefix="bert.", layer_norm=("weight", "bias")):
    """Google names/layout -> Hugging Face names/layout (Linear weights are [out, in])."""
    out = {}
    for name, value in weights.items():
        parts = name.split("/")[1:]
        parts = ["layer." + p[len("layer_") :] if p.startswith("layer_") else p for p in parts]
        last = parts[-1]
        if last == "kernel":
            parts[-1], value = "weight", value.T
        elif last == "gamma":
            parts[-1] = layer_norm[0]
        elif last == "beta":
            parts[-1] = layer_norm[1]
        elif last.endswith("embeddings"):
            parts.append("weight")
        out[prefix + ".".join(parts)] = np.ascontiguousarray(value)
    return out


def write_huggingface(folder, tensors=None, config=HF_CONFIG, extras=True):
    os.makedirs(folder, exist_ok=True)
    tensors = to_huggingface(WEIGHTS) if tensors is None else dict(tensors)
    if extras:
        tensors["cls.predictions.bias"] = np.zeros(V, np.float32)
        tensors["cls.predictions.transform.dense.weight"] = np.zeros((H, H), np.float32)
        tensors["bert.embeddings.position_ids"] = np.arange(P, dtype=np.int64)[None]
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    write_json(os.path.join(folder, "config.json"), config)
    write_vocab(os.path.join(folder, "vocab.txt"))
    return str(folder)


def write_json(path, content):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)


def write_vocab(path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")


@pytest.fixture(scope="module")
def google_dir(tmp_path_factory):
    return write_google(tmp_path_factory.mktemp("google"))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return write_huggingface(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def google_backbone(google_dir):
    return load_backbone(google_dir)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def test_reference_distinguishes_gelu_variants():
    # Otherwise the output comparisons below could not tell erf from tanh GELU.
    erf_out, _ = reference_bert(WEIGHTS, *INPUTS, gelu=gelu_erf)
    tanh_out, _ = reference_bert(WEIGHTS, *INPUTS, gelu=gelu_tanh)
    assert np.abs(erf_out - tanh_out).max() > 10 * TOL


def test_google_checkpoint_matches_reference(google_backbone):
    assert isinstance(google_backbone, keras_hub.models.BertBackbone)
    assert isinstance(google_backbone, ErfGeluBertBackbone)  # "gelu" means the erf form
    assert google_backbone.max_sequence_length == P
    assert_matches_reference(google_backbone)


def test_google_checkpoint_logs_skipped_tensors(google_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tfner.checkpoint"):
        load_backbone(google_dir)
    skipped = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
    assert len(skipped) == 1
    for name in GOOGLE_EXTRAS:
        assert name in skipped[0]
    assert "bert_model.ckpt.index" in skipped[0]


def test_google_checkpoint_prefix_path(google_dir):
    backbone = load_backbone(os.path.join(google_dir, "bert_model.ckpt"))
    np.testing.assert_array_equal(
        backbone.get_layer("token_embedding").embeddings.numpy(), WEIGHTS["bert/embeddings/word_embeddings"]
    )
    assert vocabulary_path(os.path.join(google_dir, "bert_model.ckpt")) == os.path.join(google_dir, "vocab.txt")


def test_huggingface_folder_matches_reference(hf_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tfner.checkpoint"):
        backbone = load_backbone(hf_dir)
    assert isinstance(backbone, ErfGeluBertBackbone)
    assert_matches_reference(backbone)
    skipped = " ".join(r.getMessage() for r in caplog.records if "Skipped" in r.getMessage())
    for name in ("cls.predictions.bias", "bert.embeddings.position_ids"):
        assert name in skipped
    assert vocabulary_path(hf_dir) == os.path.join(hf_dir, "vocab.txt")


def test_huggingface_without_prefix_and_legacy_layer_norm_names(tmp_path):
    tensors = to_huggingface(WEIGHTS, prefix="", layer_norm=("gamma", "beta"))
    folder = write_huggingface(tmp_path, tensors, extras=False)
    assert_matches_reference(load_backbone(folder))


def test_huggingface_tanh_gelu_gives_plain_backbone(tmp_path):
    folder = write_huggingface(tmp_path, config={**HF_CONFIG, "hidden_act": "gelu_new"})
    backbone = load_backbone(folder)
    assert type(backbone) is keras_hub.models.BertBackbone
    assert_matches_reference(backbone, gelu=gelu_tanh)


def test_huggingface_sharded_safetensors(tmp_path):
    tensors = to_huggingface(WEIGHTS)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, shard_names in shards.items():
        save_file({n: tensors[n] for n in shard_names}, str(tmp_path / shard))
    weight_map = {n: shard for shard, shard_names in shards.items() for n in shard_names}
    write_json(tmp_path / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    write_json(tmp_path / "config.json", HF_CONFIG)
    assert_matches_reference(load_backbone(str(tmp_path)))


def test_a_safetensors_index_that_is_damaged_is_named(tmp_path):
    write_huggingface(tmp_path)
    os.remove(tmp_path / "model.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text('{"weight_map": {"bert.embeddings', encoding="utf-8")  # cut short
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json is not valid JSON .*download"):
        load_backbone(str(tmp_path))
    write_json(index, {"metadata": {}})  # it was a bare KeyError: 'weight_map'
    with pytest.raises(ValueError, match=r"is not a safetensors index: it lacks a 'weight_map'"):
        load_backbone(str(tmp_path))


def test_tf1_files_without_bert_config_beside_a_huggingface_folder_are_left_alone(tmp_path):
    """Leftover bert_model.ckpt.* (no bert_config.json) made a whole Hugging Face folder unloadable."""
    google = write_google(tmp_path / "google")
    folder = write_huggingface(tmp_path / "hf")
    for name in os.listdir(google):
        if name.startswith("bert_model.ckpt"):
            shutil.copy(os.path.join(google, name), folder)
    assert_matches_reference(load_backbone(folder))
    shutil.copy(os.path.join(google, "bert_config.json"), folder)  # both complete: the TF1 checkpoint wins
    assert checkpoint._locate(folder)[0] == "google"


@pytest.fixture
def hugging_face_hub(monkeypatch):
    """hf://owner/name served from local folders: huggingface_hub's download, the network's edge, replaced."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    repositories = {}

    def download(repo_id, filename, **_):
        path = os.path.join(repositories[repo_id], filename)
        if not os.path.isfile(path):
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return repositories


def test_hf_uri_of_a_transformers_repository_loads_as_its_folder_does(hugging_face_hub, tmp_path):
    """keras-hub's own converter took these: tanh GELU where config.json says exact, and none of the checks."""
    hugging_face_hub["owner/bert"] = write_huggingface(tmp_path / "bert")
    backbone = load_backbone("hf://owner/bert")
    assert isinstance(backbone, ErfGeluBertBackbone)
    assert_matches_reference(backbone)
    assert vocabulary_path("hf://owner/bert") == os.path.abspath(tmp_path / "bert" / "vocab.txt")

    hugging_face_hub["owner/relative"] = write_huggingface(
        tmp_path / "relative", config={**HF_CONFIG, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="position_embedding_type"):
        load_backbone("hf://owner/relative")
    hugging_face_hub["owner/empty"] = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="hf://owner/empty has no config.json"):
        load_backbone("hf://owner/empty")


def test_hf_uri_unreachable_is_named_not_taken_for_a_repository_without_config(tmp_path, monkeypatch):
    """Offline, huggingface_hub raises a subclass of EntryNotFoundError: it read as "has no config.json"."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the real download, which refuses to reach the hub
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"hf://owner/bert: config.json could not be fetched from the Hugging "
                                                r"Face hub and is not in its cache; .*huggingface-cli download "
                                                r"owner/bert --local-dir DIR"):
        load_backbone("hf://owner/bert")


def test_hf_uri_of_a_keras_hub_preset_goes_to_keras_hub(hugging_face_hub, google_backbone, tmp_path):
    preset = str(tmp_path / "preset")
    google_backbone.save_to_preset(preset)
    keras_hub.models.BertTokenizer(vocabulary=VOCAB).save_to_preset(preset)
    hugging_face_hub["owner/preset"] = preset
    assert checkpoint._locate("hf://owner/preset") == ("keras", "hf://owner/preset")
    assert_matches_reference(load_backbone("hf://owner/preset"))


def test_shorter_max_sequence_length_slices_positions(google_dir):
    backbone = load_backbone(google_dir, max_sequence_length=8)
    assert backbone.max_sequence_length == 8
    np.testing.assert_array_equal(
        backbone.get_layer("position_embedding").position_embeddings.numpy(),
        WEIGHTS["bert/embeddings/position_embeddings"][:8],
    )
    assert_matches_reference(backbone)


def test_keras_preset_round_trip(google_backbone, tmp_path):
    preset = str(tmp_path / "preset")
    google_backbone.save_to_preset(preset)
    keras_hub.models.BertTokenizer(vocabulary=VOCAB).save_to_preset(preset)

    loaded = load_backbone(preset)
    assert isinstance(loaded, ErfGeluBertBackbone)  # the activation survives saving
    for mine, theirs in zip(outputs(loaded), outputs(google_backbone)):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)
    assert_matches_reference(loaded)

    short = load_backbone(preset, max_sequence_length=8)
    assert short.max_sequence_length == 8 and isinstance(short, ErfGeluBertBackbone)
    assert_matches_reference(short)

    vocab = vocabulary_path(preset)
    assert vocab == os.path.join(preset, "assets", "tokenizer", "vocabulary.txt")
    with open(vocab, encoding="utf-8") as f:
        assert f.read().split() == VOCAB

    with pytest.raises(ValueError, match="exceeds the 16 position embeddings"):
        load_backbone(preset, max_sequence_length=17)


# ---------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------


def test_google_mismatches_reported_together(tmp_path):
    weights = dict(WEIGHTS)
    del weights["bert/encoder/layer_1/output/dense/bias"]
    weights["bert/embeddings/word_embeddings"] = np.zeros((V + 1, H), np.float32)
    extras = {**GOOGLE_EXTRAS, "output_weights": np.zeros((5, H), np.float32)}
    folder = write_google(tmp_path, weights, extras)
    with pytest.raises(CheckpointMismatchError) as error:
        load_backbone(folder)
    message = str(error.value)
    assert os.path.join(folder, "bert_model.ckpt.index") in message
    assert "missing (1)" in message and "bert/encoder/layer_1/output/dense/bias" in message
    assert "unexpected" in message and "output_weights (shape (5, 8))" in message
    assert f"bert/embeddings/word_embeddings has shape ({V + 1}, 8), expected ({V}, 8)" in message
    # Known non-backbone tensors are not complaints.
    assert "global_step" not in message and "cls/" not in message and "adam_m" not in message


def test_huggingface_token_classification_checkpoint_without_pooler(tmp_path, caplog):
    # What BertForTokenClassification.save_pretrained writes: no pooler, a classifier head.
    tensors = to_huggingface(WEIGHTS)
    del tensors["bert.pooler.dense.weight"], tensors["bert.pooler.dense.bias"]
    tensors["classifier.weight"] = np.ones((5, H), np.float32)
    tensors["classifier.bias"] = np.ones(5, np.float32)
    folder = write_huggingface(tmp_path, tensors)
    with caplog.at_level(logging.INFO, logger="tfner.checkpoint"):
        backbone = load_backbone(folder)
    sequence, pooled = outputs(backbone)
    want_sequence, want_pooled = reference_bert(WEIGHTS, *INPUTS)
    np.testing.assert_allclose(sequence, want_sequence, atol=TOL, rtol=0)
    assert not np.allclose(pooled, want_pooled, atol=TOL)  # The pooler kept its initial values.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("has no pooler" in m and "bert.pooler.dense.weight" in m for m in warnings), warnings
    skipped = " ".join(r.getMessage() for r in caplog.records if "Skipped" in r.getMessage())
    assert "classifier.weight" in skipped and "task head" in skipped


def test_huggingface_half_a_pooler_is_refused(tmp_path):
    tensors = to_huggingface(WEIGHTS)
    del tensors["bert.pooler.dense.weight"]
    folder = write_huggingface(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\):\n\s+bert\.pooler\.dense\.weight") as error:
        load_backbone(folder)
    assert os.path.join(folder, "model.safetensors") in str(error.value)


def test_huggingface_unknown_extra_tensor(tmp_path):
    tensors = to_huggingface(WEIGHTS)
    tensors["ner_head.weight"] = np.zeros((3, H), np.float32)
    folder = write_huggingface(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected.*\n\s+ner_head\.weight \(shape \(3, 8\)\)"):
        load_backbone(folder)


def test_huggingface_misshaped_tensor(tmp_path):
    tensors = to_huggingface(WEIGHTS)
    # Forgot to transpose a Linear weight: [in, out] instead of [out, in].
    tensors["bert.encoder.layer.0.intermediate.dense.weight"] = WEIGHTS["bert/encoder/layer_0/intermediate/dense/kernel"]
    folder = write_huggingface(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError,
                       match=r"bert\.encoder\.layer\.0\.intermediate\.dense\.weight has shape \(8, 16\), expected \(16, 8\)"):
        load_backbone(folder)


def test_huggingface_non_float_tensor(tmp_path):
    tensors = to_huggingface(WEIGHTS)
    tensors["bert.pooler.dense.bias"] = np.zeros(H, np.int32)
    folder = write_huggingface(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError, match=r"bert\.pooler\.dense\.bias has dtype I32"):
        load_backbone(folder)


def test_huggingface_both_layer_norm_spellings(tmp_path):
    tensors = to_huggingface(WEIGHTS)
    tensors["bert.embeddings.LayerNorm.gamma"] = tensors["bert.embeddings.LayerNorm.weight"]
    folder = write_huggingface(tmp_path, tensors)
    with pytest.raises(CheckpointMismatchError, match="given twice"):
        load_backbone(folder)


def test_nothing_assigned_when_check_fails(tmp_path, monkeypatch):
    tensors = to_huggingface(WEIGHTS)
    del tensors["bert.pooler.dense.bias"]
    folder = write_huggingface(tmp_path, tensors)
    reads = []
    monkeypatch.setattr(checkpoint._SafetensorsReader, "get", lambda self, name: reads.append(name))
    with pytest.raises(CheckpointMismatchError, match=r"bert\.pooler\.dense\.bias"):
        load_backbone(folder)
    assert reads == []


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*bert_config.json.*model.safetensors.*keras-hub"):
        load_backbone(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vocabulary_path(str(tmp_path / "nope"))


@pytest.mark.parametrize("fixture, kind", [("google_dir", "a Google TF1 checkpoint"),
                                           ("hf_dir", "a Hugging Face folder")])
def test_a_remote_folder_that_is_no_preset_is_refused_by_name(request, fixture, kind):
    """A gs:// Google TF1 folder went to keras-hub as a preset, which failed on a preset file it lacks. ram:// is
    TensorFlow's in-memory filesystem, standing in for gs:// here."""
    folder = f"ram://checkpoints/{fixture}"
    for name in os.listdir(request.getfixturevalue(fixture)):
        tf.io.gfile.copy(os.path.join(request.getfixturevalue(fixture), name), f"{folder}/{name}", overwrite=True)
    with pytest.raises(FileNotFoundError, match=rf"{folder} holds {kind}, which is read from a local folder only .*"
                                                rf"copy it first, e.g. gsutil -m cp -r {folder} \."):
        load_backbone(folder + "/")


def test_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected bert_config.json .* or config.json"):
        load_backbone(str(tmp_path))


def test_google_folder_without_checkpoint(tmp_path):
    write_json(tmp_path / "bert_config.json", BERT_CONFIG)
    with pytest.raises(FileNotFoundError, match=r"bert_model\.ckpt\.index"):
        load_backbone(str(tmp_path))


def test_google_checkpoint_without_config(tmp_path):
    folder = write_google(tmp_path)
    os.remove(os.path.join(folder, "bert_config.json"))
    with pytest.raises(FileNotFoundError, match="bert_config.json"):
        load_backbone(folder)


def test_huggingface_folder_without_safetensors(tmp_path):
    write_json(tmp_path / "config.json", HF_CONFIG)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"lacks .*model\.safetensors.*pytorch_model\.bin"):
        load_backbone(str(tmp_path))


def test_missing_vocabulary(tmp_path):
    folder = write_huggingface(tmp_path)
    os.remove(os.path.join(folder, "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        vocabulary_path(folder)


def test_max_sequence_length_too_large(google_dir):
    with pytest.raises(ValueError, match=r"max_sequence_length=32 exceeds the 16 position embeddings.*bert_config\.json"):
        load_backbone(google_dir, max_sequence_length=32)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_act": "relu"}, "hidden_act is 'relu'"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"layer_norm_eps": 1e-5}, "layer_norm_eps"),
        ({"model_type": "roberta"}, "model_type"),
        ({"num_attention_heads": 3}, "not divisible"),
    ],
)
def test_unsupported_config(tmp_path, change, message):
    write_json(tmp_path / "config.json", {**HF_CONFIG, **change})
    save_file(to_huggingface(WEIGHTS), str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=message):
        load_backbone(str(tmp_path))


def test_keras_preset_with_leftover_weights(google_backbone, tmp_path):
    # Keras itself would silently ignore the second layer's weights.
    preset = str(tmp_path / "preset")
    google_backbone.save_to_preset(preset)
    config_file = os.path.join(preset, "config.json")
    with open(config_file, encoding="utf-8") as f:
        config = json.load(f)
    config["config"]["num_layers"] = 1
    write_json(config_file, config)
    with pytest.raises(CheckpointMismatchError, match=r"model\.weights\.h5 holds 39 arrays .* 23 variables"):
        load_backbone(preset)


def test_keras_preset_without_weights(tmp_path):
    write_json(tmp_path / "config.json", {"registered_name": "keras_hub>BertBackbone", "config": {}})
    with pytest.raises(FileNotFoundError, match=r"model\.weights\.h5 is missing"):
        load_backbone(str(tmp_path))


def test_converted_folder_with_both_configs_reads_safetensors(tmp_path):
    # Conversion tools often leave bert_config.json beside the Hugging Face files.
    folder = write_huggingface(tmp_path)
    write_json(tmp_path / "bert_config.json", BERT_CONFIG)
    assert_matches_reference(load_backbone(folder))


# ---------------------------------------------------------------------------
# A fine-tuned run, end to end
# ---------------------------------------------------------------------------


def test_fine_tuned_run_exports_without_its_checkpoint(tmp_path):
    """Fine-tune from a Hugging Face folder, delete the folder, export again: same model, same erf GELU."""
    from tiny import train_tiny

    from tfner import export as export_lib

    source = write_huggingface(tmp_path / "hf")  # hidden_act "gelu": the erf backbone
    summary = train_tiny(str(tmp_path / "tiny"), [f"model.init={source}", "data.max_seq_length=16",
                                                  "export.window_overlap=4", "train.max_steps=3"])
    run_dir = str(tmp_path / "tiny" / "run")
    with open(os.path.join(run_dir, "backbone.json"), encoding="utf-8") as f:
        assert json.load(f)["class_name"] == "ErfGeluBertBackbone"

    for name in os.listdir(source):
        os.remove(os.path.join(source, name))
    module = export_lib.load_run(run_dir)
    assert isinstance(module.model.backbone, ErfGeluBertBackbone)
    assert module.model.backbone.num_layers == LAYERS and module.model.backbone.hidden_dim == H
    second = export_lib.export_run(run_dir)
    assert os.path.basename(second) == "2" and os.path.basename(summary["export"]) == "1"

    texts = tf.constant(["一丁七万丈三上下不与丐丑专且丕世丘丙业丛东丝".encode(), "丁七".encode(), b""])
    first_out = tf.saved_model.load(summary["export"]).signatures["serving_default"](text=texts)
    second_out = tf.saved_model.load(second).signatures["serving_default"](text=texts)
    assert first_out["tags"].numpy().tolist() == second_out["tags"].numpy().tolist()
    np.testing.assert_allclose(first_out["entity_scores"].numpy(), second_out["entity_scores"].numpy(), atol=1e-6)


def test_model_dropout_reaches_a_loaded_backbone(hf_dir, google_backbone, tmp_path):
    """model.dropout is "backbone and head dropout" (README) for checkpoints too, not only for scratch."""
    from tfner.config import ModelConfig
    from tfner.model import build_backbone

    preset = str(tmp_path / "preset")
    google_backbone.save_to_preset(preset)
    keras_hub.models.BertTokenizer(vocabulary=VOCAB).save_to_preset(preset)
    for init in (hf_dir, preset):
        backbone = build_backbone(ModelConfig(init=init, dropout=0.3), V, 8)
        assert backbone.dropout == 0.3
        assert {layer._self_attention_dropout.rate for layer in backbone.transformer_layers} == {0.3}
        assert backbone.get_layer("embeddings_dropout").rate == 0.3
        assert_matches_reference(backbone)  # the weights load as before


def test_checkpoint_config_mistakes_name_the_config_keys(hf_dir):
    """tfner.train prints ConfigErrors without a traceback; both messages name what to change."""
    from tfner.config import ConfigError, ModelConfig
    from tfner.model import build_backbone

    with pytest.raises(ConfigError, match=r"data\.max_seq_length 32.*exceeds the 16 position embeddings"):
        build_backbone(ModelConfig(init=hf_dir), V, 32)
    with pytest.raises(ConfigError, match=r"has 30 token embeddings but the vocabulary has 28 entries.*data\.vocab"
                                          r".*do not belong together") as error:
        build_backbone(ModelConfig(init=hf_dir), V - 2, 16)
    assert "(leave data.vocab empty)" not in str(error.value)


def test_a_vocabulary_size_mismatch_is_named_when_the_checkpoint_ships_no_vocab_txt(hf_dir, tmp_path):
    """data.vocab set because the folder has none: the mismatch used to be hidden behind "No vocabulary"."""
    from tfner.config import ConfigError, ModelConfig
    from tfner.model import build_backbone

    folder = shutil.copytree(hf_dir, tmp_path / "hf")
    os.remove(folder / "vocab.txt")
    with pytest.raises(ConfigError, match=r"has 30 token embeddings but the vocabulary has 32 entries"):
        build_backbone(ModelConfig(init=str(folder)), V + 2, 16)
