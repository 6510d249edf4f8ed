"""BERT fine-tuning optimisation: AdamW with linear warmup then linear decay, two learning rates.

The backbone starts from pretrained weights and wants a small rate (e.g. 5e-5); the emission layer and CRF
start from random values and want a larger one (e.g. 1e-3), or the CRF transitions barely move in a few
epochs. Weight decay skips biases and LayerNorm scales/offsets, as in the original BERT recipe.
"""

import keras
import tensorflow as tf

from tfner.config import TrainConfig

NO_DECAY = ["bias", "gamma", "beta"]  # Keras names: Dense biases, LayerNormalization scale and offset


@keras.saving.register_keras_serializable(package="tfner")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `peak` over `warmup_steps`, then falls linearly to 0 at `total_steps`."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, max(total_steps, 1)

    def __call__(self, step):
        # Keras counts updates from 0. Update i of total_steps warms up as (i + 1) / warmup_steps (the first
        # update already gets a rate) and decays as (total_steps - i) / (total_steps - warmup_steps): the first
        # update after warmup gets the peak and the last one a rate of 1 / (total_steps - warmup_steps), not 0.
        step = tf.cast(step, tf.float32)
        warmup = (step + 1.0) / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * tf.maximum(0.0, tf.minimum(warmup, decay) if self.warmup_steps else decay)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


@keras.saving.register_keras_serializable(package="tfner")
class AdamW(keras.optimizers.AdamW):
    """Keras' AdamW with each update as one fused TensorFlow kernel (ResourceApplyAdam).

    Keras writes Adam's update as seven element-wise ops, each reading and writing a full-size tensor, and
    turns a sparse gradient (the token embedding's) into a dense one twice. On Resume NER the optimizers
    were 12 % of a train step's op time, mostly on the 21,128 x 256 embedding table. ResourceApplyAdam does the
    same arithmetic (m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= lr sqrt(1 - b2^t) / (1 - b1^t)
    m / (sqrt(v) + eps)) in one multi-threaded pass. The slots, their names and the decoupled weight decay
    are Keras', so checkpoints are interchangeable with keras.optimizers.AdamW's.

    `sums_replicas=False` is for a train step that sums the replicas' gradients itself (tfner.train clips
    the sum by its global norm, as one device would): Keras would otherwise sum the already summed gradients
    again inside `apply_gradients`.
    """

    def __init__(self, *args, sums_replicas: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.sums_replicas = sums_replicas

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras' hook (keras/src/backend/tensorflow/optimizer.py) between apply_gradients and the updates;
        # tests/test_train.py's mirrored test checks that Keras still sums there and that this skips it.
        if self.sums_replicas:
            return super()._all_reduce_sum_gradients(grads_and_vars)
        return list(grads_and_vars)

    def get_config(self):
        return {**super().get_config(), "sums_replicas": self.sums_replicas}

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(m), v=_handle(v),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype),  # a sparse gradient becomes dense once
        )


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (the local copy inside a strategy's update)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def make_optimizers(config: TrainConfig, total_steps: int) -> tuple[keras.optimizers.Optimizer, keras.optimizers.Optimizer]:
    """(backbone optimizer, head optimizer), both AdamW on the same warmup/decay shape.

    They apply the gradients they are given: tfner.train's step sums the replicas' gradients before it clips
    them. Under the mixed_float16 policy each is wrapped in Keras' LossScaleOptimizer (dynamic loss scaling:
    float16 gradients would otherwise underflow to 0)."""
    warmup = int(total_steps * config.warmup_ratio)
    optimizers = []
    for name, peak in (("backbone", config.learning_rate), ("head", config.head_learning_rate)):
        optimizer = AdamW(
            learning_rate=WarmupLinearDecay(peak, warmup, total_steps),
            weight_decay=config.weight_decay,
            epsilon=1e-6,
            name=f"{name}_adamw",
            sums_replicas=False,
        )
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
        optimizers.append(optimizer)
    return tuple(optimizers)
