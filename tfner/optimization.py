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
        step = tf.cast(step, tf.float32) + 1.0  # Keras counts from 0; the first update already gets a rate
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * tf.maximum(0.0, tf.minimum(warmup, decay) if self.warmup_steps else decay)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def make_optimizers(config: TrainConfig, total_steps: int) -> tuple[keras.optimizers.Optimizer, keras.optimizers.Optimizer]:
    """(backbone optimizer, head optimizer), both AdamW on the same warmup/decay shape."""
    warmup = int(total_steps * config.warmup_ratio)
    optimizers = []
    for name, peak in (("backbone", config.learning_rate), ("head", config.head_learning_rate)):
        optimizer = keras.optimizers.AdamW(
            learning_rate=WarmupLinearDecay(peak, warmup, total_steps),
            weight_decay=config.weight_decay,
            epsilon=1e-6,
            name=f"{name}_adamw",
        )
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
        optimizers.append(optimizer)
    return tuple(optimizers)
