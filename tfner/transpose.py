"""`transpose(x, perm)`: `tf.transpose` that oneDNN's graph rewrite leaves to TensorFlow's own kernel.

With oneDNN on (tfner's default on x86), TensorFlow rewrites every float `Transpose` into `_MklTranspose`, a
oneDNN reorder that costs more than TensorFlow's own (Eigen) transpose on small tensors: the eight transposes
of attention's heads were 23 % of the op time of a one-sentence serving call of the demo model on an AMD EPYC
(benchmarks/README.md, "A third CPU"). The rewrite is for floats only (TensorFlow logs "oneDNN supports DT_INT32
only on platforms with AVX-512. Falling back to the default Eigen-based implementation" once a process when it
meets another type, on any CPU), and a transpose only moves bits. So a float tensor is moved as the integers of
its width: `tf.bitcast` relabels the buffer without copying it. The gradient is the transpose back, the same
way, because `tf.bitcast` has no gradient of its own.

tfner.encoder uses it for attention's heads (tagging x1.09-1.11). The CRF's transposes to time-major, through it
too, measured x1.00-1.02: they stay plain `tf.transpose`.
"""

import numpy as np
import tensorflow as tf

_SAME_WIDTH_INTEGER = {tf.float32: tf.int32, tf.bfloat16: tf.int16, tf.float16: tf.int16}


def transpose(x: tf.Tensor, perm: list[int]) -> tf.Tensor:
    """`tf.transpose(x, perm)`, the same values and gradient; floats moved as integers of their width."""
    if x.dtype not in _SAME_WIDTH_INTEGER:  # float64, integers, booleans: oneDNN leaves them alone already
        return tf.transpose(x, perm)
    inverse = [int(axis) for axis in np.argsort(perm)]

    @tf.custom_gradient
    def moved(tensor):
        return _as_integers(tensor, perm), lambda upstream: _as_integers(upstream, inverse)

    return moved(x)


def _as_integers(x, perm):
    return tf.bitcast(tf.transpose(tf.bitcast(x, _SAME_WIDTH_INTEGER[x.dtype]), perm), x.dtype)
