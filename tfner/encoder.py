"""A faster forward pass through a keras-hub BertBackbone: the same weights and layers, cheaper TF ops.

`sequence_output(backbone, inputs, training)` computes what `backbone(inputs)["sequence_output"]` computes
(tests/test_encoder.py holds the two equal, in inference and in training, and their gradients), with every
projection written as a 2-D `MatMul` + `BiasAdd`:

- keras-hub's feed-forward `Dense` layers multiply 3-D activations through `Tensordot` (reshape, MatMul,
  reshape) and apply GELU as eight separate element-wise ops. Flattened to 2-D first, `MatMul` + `BiasAdd` +
  `tf.nn.gelu` is a pattern TensorFlow's graph optimizer fuses into one oneDNN kernel (`_FusedMatMul` with
  GELU), as it fuses a MatMul with its bias and the residual add after it, when it optimises a graph for
  inference (TF Serving's too).
- Keras' `MultiHeadAttention` projects through `EinsumDense`, which runs as `Einsum` at about half the rate
  per FLOP of a `MatMul` on the same CPU; here query, key and value are 2-D `MatMul`s against their
  kernels seen as [hidden, heads * head_dim] matrices (a reshape, no copy), and the scores and context are
  `BatchMatMul`s.
- The heads' split and merge go through `tfner.transpose`, which oneDNN's graph rewrite leaves to TensorFlow's
  own, cheaper transpose.

What is not rewritten is called as it is: the embeddings, LayerNorms and dropouts are the backbone's own
layers, so their variables, seeds and checkpoint names are untouched. Any backbone `model.init` builds
(scratch, Google checkpoint, Hugging Face folder, keras-hub preset) is a `BertBackbone` of these layers; a
backbone of another class is run as it is (`backbone(inputs)`).

The layers are reached through keras-hub's private attributes (`_self_attention_layer`, `_query_dense`, ...).
setup.cfg pins keras-hub, and tests/test_encoder.py fails on a release that renames them;
`model.fast_encoder: false` runs keras-hub's own call meanwhile.

Measured (benchmarks/README.md, "profile_step.py"): tagging ~1.2x faster; a train step no faster, because the
backward pass cannot use the fused kernels.
"""

import contextlib

import keras_hub
import tensorflow as tf

from tfner.transpose import transpose


def sequence_output(backbone, inputs: dict, training=False) -> tf.Tensor:
    """[B, T, hidden] encoder output for {"token_ids", "segment_ids", "padding_mask"} [B, T]."""
    if not is_supported(backbone):
        return backbone(inputs, training=training)["sequence_output"]
    token_ids, segment_ids = inputs["token_ids"], inputs["segment_ids"]
    tokens = backbone.token_embedding(token_ids)
    x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens), backbone.segment_embedding(segment_ids)))
    x = backbone.embeddings_layer_norm(x)
    x = backbone.embeddings_dropout(x, training=training)
    # Added to the attention scores of padding keys: exp() of it is 0, as Keras' masked softmax makes it.
    key_bias = (1.0 - tf.cast(inputs["padding_mask"], x.dtype)) * _large_negative(x.dtype)
    key_bias = key_bias[:, None, None, :]  # [B, 1 (heads), 1 (queries), T (keys)]
    for layer in backbone.transformer_layers:
        x = _encoder_layer(layer, x, key_bias, training)
    return x


def is_supported(backbone) -> bool:
    """True for a keras-hub BertBackbone of post-LayerNorm encoder layers (every BERT `model.init` loads)."""
    return isinstance(backbone, keras_hub.models.BertBackbone) and all(
        not layer.normalize_first for layer in backbone.transformer_layers)


def _encoder_layer(layer, x, key_bias, training):
    """One keras-hub TransformerEncoder (post-LN) over [B, T, hidden]."""
    batch, length, hidden = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
    rows = tf.reshape(x, [-1, hidden])  # [B * T, hidden]: every projection is a 2-D MatMul

    # Name scopes as Keras' own layers would give them, so profiles (benchmarks/profile_step.py) sort the ops.
    with tf.name_scope(layer.name):
        attention = layer._self_attention_layer
        with tf.name_scope(attention.name):  # the residual add too: in inference it fuses into the MatMul
            context = _self_attention(attention, rows, batch, length, key_bias, training)
            context = layer._self_attention_dropout(context, training=training) + rows
        rows = layer._self_attention_layer_norm(context)

        intermediate = layer._feedforward_intermediate_dense
        with tf.name_scope(intermediate.name):
            hidden_rows = _activation(layer, training)(_dense(rows, intermediate.kernel, intermediate.bias))
        output = layer._feedforward_output_dense
        with tf.name_scope(output.name):
            out = _dense(hidden_rows, output.kernel, output.bias)
            out = layer._feedforward_dropout(out, training=training) + rows
        rows = layer._feedforward_layer_norm(out)
    return tf.reshape(rows, [batch, length, hidden])


def _self_attention(attention, rows, batch, length, key_bias, training):
    """Keras MultiHeadAttention(query=value=key=x) over [B * T, hidden] rows -> [B * T, hidden]."""
    heads, head_dim = attention.num_heads, attention.key_dim
    # [B * T, hidden] -> [B, heads, T, head_dim] for each projection: its [hidden, heads, head_dim] kernel as a
    # [hidden, heads * head_dim] matrix. Not one MatMul over the three kernels side by side: that copies them
    # into one tensor every call (7 MB a layer for BERT-base) and measured slower at every size.
    def project(dense):
        projected = _dense(rows, dense.kernel, dense.bias, [-1, heads * head_dim])
        return transpose(tf.reshape(projected, [batch, length, heads, head_dim]), [0, 2, 1, 3])

    q, k, v = (project(d) for d in (attention._query_dense, attention._key_dense, attention._value_dense))
    # Keras scales the query before the product, not the scores after it; the same here, for equal rounding.
    q = q * tf.cast(1.0 / head_dim ** 0.5, q.dtype)
    scores = tf.matmul(q, k, transpose_b=True) + key_bias  # [B, heads, T, T]
    probabilities = tf.nn.softmax(scores)
    probabilities = attention._dropout_layer(probabilities, training=training)
    context = tf.matmul(probabilities, v)  # [B, heads, T, head_dim]
    context = tf.reshape(transpose(context, [0, 2, 1, 3]), [-1, heads * head_dim])
    output = attention._output_dense
    return _dense(context, output.kernel, output.bias, [heads * head_dim, -1])


def _dense(rows, kernel, bias, kernel_shape=None):
    """[N, in] @ [in, out] + bias, in the activations' dtype (float32 variables under mixed precision). With
    `kernel_shape`, the kernel is reshaped to it and the bias flattened (attention's [hidden, heads, head_dim])."""
    kernel, bias = _in_dtype(kernel, rows.dtype), _in_dtype(bias, rows.dtype)
    if kernel_shape is not None:
        kernel, bias = tf.reshape(kernel, kernel_shape), tf.reshape(bias, [-1])
    return tf.nn.bias_add(tf.matmul(rows, kernel), bias)


_cast_once = {}  # id(variable) -> the variable cast to a 16-bit dtype, while `weights_cast_once` is open


@contextlib.contextmanager
def weights_cast_once(backbone, dtype):
    """Casts the encoder's kernels and biases to `dtype` here, once, for every `sequence_output` traced inside.

    Under a 16-bit policy each projection casts its float32 variables at each call. Inside the export's loop over
    window groups that is once per group, 13 % of a 32-sentence bfloat16 call's op time on Resume; opened
    before the loop, the loop body reads these tensors instead.
    """
    if not is_supported(backbone) or dtype == tf.float32:
        yield
        return
    casts = {}
    for layer in backbone.transformer_layers:
        attention = layer._self_attention_layer
        for dense in (attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense,
                      layer._feedforward_intermediate_dense, layer._feedforward_output_dense):
            for variable in (dense.kernel, dense.bias):
                casts[id(variable)] = tf.cast(variable, dtype)
    _cast_once.update(casts)
    try:
        yield
    finally:  # only this backbone's: another model may be tracing in another thread (tfner.serve loads in one)
        for key in casts:
            _cast_once.pop(key, None)


def _in_dtype(variable, dtype):
    cast = _cast_once.get(id(variable))
    return cast if cast is not None and cast.dtype == dtype else tf.cast(variable, dtype)


# The GELUs BERT backbones use (keras-hub's tanh form; tfner.checkpoint's erf form for "hidden_act": "gelu"),
# by function name, as `tf.nn.gelu`: the graph the MatMul + BiasAdd + GELU fusion matches.
_BERT_GELUS = {"gelu_approximate": True, "gelu_erf": False}


def _activation(layer, training=False):
    """The layer's feed-forward activation; a BERT GELU as `tf.nn.gelu`, any other as it is."""
    name = getattr(layer.activation, "__name__", "")
    if name not in _BERT_GELUS:
        return layer.activation
    approximate = _BERT_GELUS[name]

    def gelu(x):
        if training is True and x.dtype != tf.float32 and _cpu_only():
            # Training under a 16-bit policy on CPU: TensorFlow's element-wise CPU kernels are slower in bfloat16
            # than in float32, and GELU forward and backward is ~20 of them over [B * T, intermediate]. Two casts
            # cost less: train steps x1.09-1.11 faster on AMX (benchmarks/README.md). Not in inference, where
            # the 16-bit GELU fuses into its MatMul, nor on GPUs, whose 16-bit element-wise kernels are fast.
            return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=approximate), x.dtype)
        return tf.nn.gelu(x, approximate=approximate)

    return gelu


def _cpu_only() -> bool:
    return not tf.config.list_physical_devices("GPU")


def _large_negative(dtype):
    """The masking constant of Keras' softmax: -3e4 in float16, else -1e9. Not float16's most negative value:
    a score below -16 added to it is -inf, and a row whose keys are all padding (train.static_shapes fills
    partial batches with such rows) was NaN, and its NaN reached every weight's gradient."""
    return tf.cast(-3e4 if dtype == tf.float16 else -1e9, dtype)
