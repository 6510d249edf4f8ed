"""tfner: Chinese named-entity recognition with TensorFlow/Keras, from fine-tuning to TensorFlow Serving.

The package map, in pipeline order (README's layout table says the same):

    config.py                           one config system: dataclasses, YAML, typed --set a.b=c
    atomic_write.py                     a run's small files (config, vocab, labels, metrics) written whole or not at all
    run_lock.py                         one process at a time in a run_dir (an flock held for the run)
    labels.py, data.py, demo.py         tag schemes <-> spans; readers -> examples -> tf.data; the demo corpus
    tokenizer.py                        the one character tokenizer, in graph, for training and serving
    checkpoint.py, model.py, crf.py     pretrained BERT -> BertBackbone; the tagger; our CRF layer
    encoder.py                          the backbone's forward pass through faster ops (same weights)
    transpose.py                        a transpose oneDNN's graph rewrite leaves to TensorFlow's own kernel
    optimization.py, distribute.py      AdamW parameter groups and schedules; the tf.distribute strategy
    train.py, evaluate.py, metrics.py   python -m tfner.train / tfner.evaluate; seqeval scores
    inference.py, export.py             the serving graph (text in, spans out); python -m tfner.export
    versions.py                         an export base's version folders, by TF Serving's rule
    faults.py                           the TFNER_FAULT test hook: SIGKILL at a named crash window
    unlabelled.py, masked_lm.py         unlabelled text streams; masked-LM masking and model
    pretrain.py, distill.py             python -m tfner.pretrain / tfner.distill
    predict.py                          python -m tfner.predict: an export called in process
    tag.py, tag_io.py, tag_model.py     python -m tfner.tag: bulk tagging on Apache Beam (RunInference)
    tf_threads.py                       TensorFlow's CPU thread pools for inference (serve, tag)
    server/, serve.py                   the TF-Serving-API gRPC/REST server; python -m tfner.serve
    client.py                           python -m tfner.client: the light gRPC client (tfner_client), re-exported

Two halves. The model half (everything but server/) stays flat: each module is
one concept, and each command is the module of its name (python -m tfner.X is
tfner/X.py), which is what a newcomer looks for first; a `training/`
sub-package would only add a level to every path. The server is a sub-package
because it is a program of its own, with its own concerns (see
tfner/server/__init__.py).

The dependency rule (tests/test_layout.py checks it on the import graph):
tfner.server imports nothing of tfner outside tfner.server, so a change to
training code cannot break the server and the server never loads keras-hub; and
nothing in tfner imports tfner.server except its entry point, serve.py.
serve.py may also use tf_threads.py, a leaf both halves share that imports
nothing of tfner.
The Python client is the light `tfner_client` package (serving/clients/python:
grpcio and protobuf, no TensorFlow); client.py re-exports it.

Importing tfner turns TensorFlow's oneDNN kernels on (below), so import it before
TensorFlow in a process of your own.
"""

import os

# oneDNN's CPU kernels (fused matmuls, LayerNorm, GELU) instead of TensorFlow's own Eigen ones. TensorFlow turns
# them on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on an AMD EPYC with AVX2 they trained the
# Resume model x1.65 faster and tagged x1.2 faster (benchmarks/README.md, "oneDNN on AVX2 CPUs"). TensorFlow reads
# the variable once, when it loads, so this works only if tfner is imported first (every tfner command is);
# TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
