"""tfner: Chinese named-entity recognition with TensorFlow/Keras, from fine-tuning to TensorFlow Serving."""

__version__ = "0.1.0"
