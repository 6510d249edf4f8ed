"""The export inside Beam's RunInference: a ModelHandler over the SavedModel's `serving_default` signature.

Why not Beam's own TensorFlow handlers (apache_beam.ml.inference.tensorflow_inference, checked in 2.77):

- the module imports `tensorflow_hub` at the top, which neither apache-beam nor tfner depends on, so
  `TFModelHandlerTensor` / `TFModelHandlerNumpy` do not even import here;
- they load with `tf.keras.models.load_model`, which under Keras 3 refuses a SavedModel ("Keras 3 only
  supports V3 `.keras` files and legacy H5 format files"): our export is a SavedModel, as TF Serving needs;
- their default inference `tf.stack`s the examples and calls the model positionally, while the signature takes
  a keyword `text` and returns padded, batch-major outputs that must be cut by `num_entities`.

So `ExportModelHandler` loads the export with `tf.saved_model.load` through `tfner.predict.SavedModelPredictor`
and reads entities with `tfner.predict.entities_from_outputs`: the same code as `python -m tfner.predict`, so
offline and online results are the same (up to float rounding of the scores, which depends on the batch).

How documents reach the model (`batching`):

- `lengths` (default): `LengthBatches` sorts a bounded buffer of documents by length and cuts it into batches,
  so short documents are not padded to long ones. A stateless DoFn: it runs on every runner, the local one in
  multi-process mode included, and holds at most `buffer_size` documents.
- `buckets`: Beam's own length-aware batching, RunInference's `batch_length_fn` + `batch_bucket_boundaries`.
  In Beam 2.77 these only take effect together with `max_batch_duration_secs`, which switches BatchElements
  to a stateful DoFn keyed by (worker, length bucket) with a processing-time timer. Portable runners run it
  (checked on Prism; Flink and Dataflow support such timers). The DirectRunner cannot run that timer on its
  fast engine and falls back to its single-process bundle-based engine, whatever --direct_num_workers says,
  and there the counters miss the documents flushed by timers (93 of 100 counted in a repro; the output
  itself is complete), so tfner.tag refuses `buckets` on the DirectRunner.
- `plain`: Beam's BatchElements (adaptive size between 1 and `max_batch_size`), no length awareness.

Whatever the batching, one model call never holds more than `max_batch_size` documents nor more than
`max_batch_chars` padded characters (documents x the longest of them), so memory per call is bounded
(except for one document longer than that, which goes alone; --max_chars caps those).

One model per worker process, shared by its threads (RunInference keeps it in Beam's `shared.Shared`). With
`model_copies` set, Beam shares that many copies across all the processes of a machine instead
(`share_model_across_processes`), for models too big to load once per process.
"""

import logging
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.transforms import window

from tfner.predict import SavedModelPredictor, entities_from_outputs
from tfner.tag_io import Document
from tfner.tf_threads import onednn_state, set_tf_threads

log = logging.getLogger("tfner.tag")

BATCHING = ("lengths", "buckets", "plain")
DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512)  # Beam's own default boundaries, in characters


def document_length(document: Document) -> int:
    return len(document.text)


def budget_batches(documents: Iterable[Document], max_batch_size: int, max_batch_chars: int) -> Iterator[list]:
    """Consecutive documents in batches of at most max_batch_size documents and max_batch_chars padded characters.

    A batch's padded size is its number of documents times its longest document, what the model computes on
    (for documents longer than a window it is an upper bound). Order is kept; a document larger than the
    budget on its own is a batch of one.

    Args:
        documents: Iterable[Document]. In the order to keep.
        max_batch_size: int. Documents per batch.
        max_batch_chars: int. Padded characters per batch.
    """
    batch, longest = [], 0
    for document in documents:
        length = len(document.text)
        if batch and (len(batch) >= max_batch_size or (len(batch) + 1) * max(longest, length) > max_batch_chars):
            yield batch
            batch, longest = [], 0
        batch.append(document)
        longest = max(longest, length)
    if batch:
        yield batch


def length_batches(documents: Sequence[Document], max_batch_size: int, max_batch_chars: int) -> Iterator[list]:
    """budget_batches over the documents sorted by length: neighbours in a batch have similar lengths."""
    return budget_batches(sorted(documents, key=document_length), max_batch_size, max_batch_chars)


class LengthBatches(beam.DoFn):
    """Documents -> batches of documents of similar length, sorted within a buffer of buffer_size documents.

    Args:
        max_batch_size: int. Documents per batch.
        max_batch_chars: int. Padded characters per batch.
        buffer_size: int. Documents held before sorting and emitting; the rest are emitted at bundle end.
    """

    def __init__(self, max_batch_size: int, max_batch_chars: int, buffer_size: int):
        self.max_batch_size, self.max_batch_chars, self.buffer_size = max_batch_size, max_batch_chars, buffer_size

    def start_bundle(self):
        self._buffer = []

    def process(self, document):
        self._buffer.append(document)
        if len(self._buffer) >= self.buffer_size:
            yield from self._flush()

    def finish_bundle(self):
        # finish_bundle has no element to take a window from; the corpus is in the global window.
        for batch in self._flush():
            yield window.GlobalWindows.windowed_value(batch)

    def _flush(self):
        buffer, self._buffer = self._buffer, []
        return length_batches(buffer, self.max_batch_size, self.max_batch_chars)


class ExportModelHandler(ModelHandler[Document, PredictionResult, SavedModelPredictor]):
    """Documents -> PredictionResult(document, entities) with a tfner export's `serving_default` signature.

    Args:
        model_path: str. A version folder (export/NAME/VERSION; resolve it once, before the run, so every
            worker loads the same version).
        max_batch_size: int. Documents per model call.
        max_batch_chars: int. Padded characters per model call.
        batching: str. `lengths`, `buckets` or `plain` (module docstring). With `lengths` the pipeline
            batches before RunInference (`with_no_batching()`); the others configure Beam's BatchElements.
        buckets: Sequence[int]. Length boundaries (characters) of `buckets`.
        max_batch_wait_secs: int. How long `buckets` holds a partial batch (Beam's max_batch_duration_secs).
        model_copies: int. 0: one model per process; N > 0: N per machine, shared across its processes.
        intra_op_threads, inter_op_threads: int. TensorFlow's thread pools in each worker process, set when the
            model loads (tfner.tf_threads); 0 leaves TensorFlow's choice.
    """

    def __init__(self, model_path: str, *, max_batch_size: int = 64, max_batch_chars: int = 8192,
                 batching: str = "lengths", buckets: Sequence[int] = DEFAULT_BUCKETS, max_batch_wait_secs: int = 10,
                 model_copies: int = 0, intra_op_threads: int = 0, inter_op_threads: int = 0):
        if batching not in BATCHING:
            raise ValueError(f"batching {batching!r}: expected one of {', '.join(BATCHING)}")
        batching_kwargs = {"min_batch_size": 1, "max_batch_size": max_batch_size}
        if batching == "buckets":
            batching_kwargs.update(batch_length_fn=document_length, batch_bucket_boundaries=list(buckets),
                                   max_batch_duration_secs=max_batch_wait_secs)
        super().__init__(**batching_kwargs, model_copies=model_copies or None)
        self.model_path = model_path
        self.max_batch_size, self.max_batch_chars = max_batch_size, max_batch_chars
        self.threads = (intra_op_threads, inter_op_threads)

    def load_model(self) -> SavedModelPredictor:
        # Here, in the worker process: the pools are per process.
        log.info("TensorFlow threads in this worker: %s; oneDNN %s", set_tf_threads(*self.threads), onednn_state())
        return SavedModelPredictor(self.model_path, self.max_batch_size)

    def run_inference(self, batch: Sequence[Document], model: SavedModelPredictor,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        results = []
        for chunk in budget_batches(batch, self.max_batch_size, self.max_batch_chars):
            outputs = model.outputs([document.text for document in chunk])
            results.extend(PredictionResult(d, e) for d, e in zip(chunk, entities_from_outputs(outputs)))
        return results

    def get_num_bytes(self, batch: Sequence[Document]) -> int:
        # Beam's default pickles the whole batch just to measure it.
        return sum(len(document.text.encode("utf-8")) for document in batch)

    def get_metrics_namespace(self) -> str:
        return "tfner.tag.RunInference"
