"""python -m tfner.tag: tag a corpus with an export on Apache Beam, from one laptop to a cluster.

    python -m tfner.tag --model export/ner --input 'corpus/*.txt' --output tagged/part
    python -m tfner.tag --model gs://b/export/ner --input 'gs://b/docs/*.jsonl' --output gs://b/tagged/part \\
        --runner DataflowRunner --project P --region R --temp_location gs://b/tmp
    python -m tfner.tag ... --runner FlinkRunner --flink_master host:8081

Any flag that is not tfner.tag's is a Beam pipeline option (--runner, --direct_num_workers, ...). Writes

    PREFIX-SSSSS-of-NNNNN.jsonl         one line per tagged document (shape: tfner/tag_io.py)
    PREFIX-errors-SSSSS-of-NNNNN.jsonl  one line per record that could not be tagged: file, line, reason
    PREFIX-summary.json                 the run's Beam metrics: records, documents, characters, entities by
                                        type, errors by reason; records = documents + errors

The pipeline: match the input patterns -> spread the files over the workers -> read each file's lines into
documents and dead letters (tfner.tag_io) -> spread the documents (--no_reshuffle to skip) -> batch them by
length -> RunInference with the export (tfner.tag_model) -> JSON lines. The model version is resolved once,
here, so every worker tags with the same one.
"""

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from tfner import tag_io
from tfner.predict import NotAnExport, check_saved_model, non_negative_int, positive_int, resolve_version
from tfner.tag_io import Document, ReadSettings
from tfner.tag_model import BATCHING, DEFAULT_BUCKETS, ExportModelHandler, LengthBatches
from tfner.tf_threads import thread_count

log = logging.getLogger("tfner.tag")

NAMESPACE = "tfner.tag"
ERRORS = "errors"
DIRECT_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "FnApiRunner", "TestDirectRunner")


# --------------------------------------------------------------------------
# Pipeline steps
# --------------------------------------------------------------------------

class ReadRecords(beam.DoFn):
    """A matched file -> its Documents (main output) and dead letters (ERRORS); counts records and errors."""

    def __init__(self, settings: ReadSettings):
        self.settings = settings
        self.files = Metrics.counter(NAMESPACE, "files")
        self.records = Metrics.counter(NAMESPACE, "records")
        self.errors = Metrics.counter(NAMESPACE, "errors")

    def process(self, path):
        self.files.inc()  # an empty corpus is complete with 0 records, but only if the runner reports metrics
        # FileSystems.open reads any Beam filesystem and decompresses by suffix (compression_type AUTO).
        for result in tag_io.read_file(path, self.settings, FileSystems.open):
            self.records.inc()
            if isinstance(result, Document):
                yield result
            else:
                self.errors.inc()
                Metrics.counter(NAMESPACE, f"errors_{result['reason']}").inc()
                yield beam.pvalue.TaggedOutput(ERRORS, tag_io.to_json_line(result))


class _Progress:
    """Documents tagged by this worker process, logged every `every` seconds (one per process, all threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.documents = self.characters = 0
        self.started = self.logged = None

    def add(self, characters: int, every: float) -> None:
        with self.lock:
            now = time.monotonic()
            if self.started is None:
                self.started = self.logged = now
            self.documents += 1
            self.characters += characters
            if every and now - self.logged >= every:
                self.logged = now
                rate = self.documents / max(now - self.started, 1e-9)
                log.info("tfner.tag progress: %d documents (%d characters) tagged by this worker, %.1f documents/s",
                         self.documents, self.characters, rate)


_PROGRESS = _Progress()


class FormatOutput(beam.DoFn):
    """PredictionResult(document, entities) -> a JSON line; counts documents, characters and entities by type."""

    def __init__(self, with_text: bool, progress_seconds: float):
        self.with_text, self.progress_seconds = with_text, progress_seconds
        self.documents = Metrics.counter(NAMESPACE, "documents")
        self.characters = Metrics.counter(NAMESPACE, "characters")
        self.entities = Metrics.counter(NAMESPACE, "entities")

    def process(self, result):
        document, entities = result.example, result.inference
        self.documents.inc()
        self.characters.inc(len(document.text))
        self.entities.inc(len(entities))
        for entity in entities:
            Metrics.counter(NAMESPACE, f"entities_{entity['label']}").inc()
        _PROGRESS.add(len(document.text), self.progress_seconds)
        yield tag_io.to_json_line(tag_io.output_record(document, entities, self.with_text))


def build_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace, model_path: str) -> None:
    """Adds the tagging steps for the parsed command line to `pipeline` (see the module docstring)."""
    settings = ReadSettings(args.format, args.text_field, args.id_field, args.max_chars)
    read = (
        pipeline
        | "Input patterns" >> beam.Create(args.input)
        | "Match files" >> fileio.MatchAll()
        # A file matched by two patterns (a glob and a file in it), or named two ways (a/b.txt, ./a/b.txt, an
        # absolute path), is read once, not tagged twice; its records keep the first of its names.
        | "Paths" >> beam.Map(lambda metadata: (same_file_key(metadata.path), metadata.path))
        | "Each file once" >> beam.CombinePerKey(min)
        | "Its name" >> beam.Values()
        # Without this the runner fuses everything after the one-element Create into one worker.
        | "Spread files" >> beam.Reshuffle()
        | "Read records" >> beam.ParDo(ReadRecords(settings)).with_outputs(ERRORS, main="documents")
    )
    documents = read.documents
    if args.reshuffle:
        # A file is read by one worker; this spreads its documents over all of them before the model.
        documents = documents | "Spread documents" >> beam.Reshuffle()
    handler = ExportModelHandler(
        model_path, max_batch_size=args.max_batch_size, max_batch_chars=args.max_batch_chars,
        batching=args.batching, buckets=args.length_buckets, max_batch_wait_secs=args.max_batch_wait_secs,
        model_copies=args.model_copies, intra_op_threads=args.tensorflow_intra_op_parallelism,
        inter_op_threads=args.tensorflow_inter_op_parallelism,
    )
    if args.batching == "lengths":
        batches = documents | "Batch by length" >> beam.ParDo(
            LengthBatches(args.max_batch_size, args.max_batch_chars, args.sort_buffer))
        results = batches | "Tag" >> RunInference(handler.with_no_batching())
    else:
        results = documents | "Tag" >> RunInference(handler)
    written = (
        results
        | "Format" >> beam.ParDo(FormatOutput(not args.no_text, args.progress_seconds))
        | "Write documents" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl", num_shards=args.num_shards)
    )
    # WriteToText deletes files matching PREFIX-*-of-NNNNN.jsonl when it finalizes (stale shards of an earlier
    # run), and PREFIX-errors-00000-of-00001.jsonl matches that: the errors are written after the documents.
    (
        read[ERRORS]
        | "After the documents" >> beam.Map(lambda line, _: line, beam.pvalue.AsList(written))
        | "Write errors" >> beam.io.WriteToText(f"{args.output}-errors", file_name_suffix=".jsonl")
    )


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------

def read_counters(result) -> dict[str, int]:
    """tfner.tag's Beam counters of a finished run (committed values where the runner has them)."""
    counters = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.attempted if counter.committed is None else counter.committed  # Prism: committed only
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
    return counters


def summarize(counters: dict[str, int], seconds: float, **about) -> dict:
    """Counters -> the summary record; `complete` says whether every record is accounted for."""

    def prefixed(prefix):
        return {k[len(prefix):]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}

    files, records, documents, errors = (counters.get(k, 0) for k in ("files", "records", "documents", "errors"))
    characters = counters.get("characters", 0)
    return {
        **about,
        "files": files,
        "records": records,
        "documents": documents,
        "errors": errors,
        "errors_by_reason": prefixed("errors_"),
        "characters": characters,
        "entities": counters.get("entities", 0),
        "entities_by_type": prefixed("entities_"),
        "seconds": round(seconds, 3),
        "documents_per_second": round(documents / seconds, 2) if seconds > 0 else None,
        "characters_per_second": round(characters / seconds, 1) if seconds > 0 else None,
        # files > 0: the runner reported metrics (check_paths made sure every pattern matches a file).
        "complete": files > 0 and records == documents + errors,
    }


def write_summary(path: str, summary: dict) -> None:
    """Writes the summary beside the output, through a temporary name renamed into place."""
    temporary = f"{path}.tmp"
    with FileSystems.create(temporary, mime_type="application/json") as f:
        f.write((json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def format_summary(summary: dict) -> str:
    by_reason = ", ".join(f"{k} {v}" for k, v in summary["errors_by_reason"].items())
    by_type = ", ".join(f"{k} {v}" for k, v in summary["entities_by_type"].items())
    return (
        f"tfner.tag: {summary['files']} files, {summary['records']} records -> {summary['documents']} documents "
        f"tagged, {summary['errors']} errors{f' ({by_reason})' if by_reason else ''}\n"
        f"  {summary['characters']} characters, {summary['entities']} entities{f' ({by_type})' if by_type else ''}\n"
        f"  {summary['seconds']} s: {summary['documents_per_second']} documents/s, "
        f"{summary['characters_per_second']} characters/s"
    )


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def _buckets(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values != sorted(values) or values[0] <= 0:
        raise argparse.ArgumentTypeError(f"expected increasing positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfner.tag", description=__doc__.split("\n")[0], allow_abbrev=False,
        epilog="Other flags are Beam pipeline options, e.g. --runner DataflowRunner --project P --region R "
               "--temp_location gs://b/tmp, or --direct_num_workers 2 --direct_running_mode multi_processing.",
    )
    p.add_argument("--model", required=True, help="export/NAME (its latest version) or export/NAME/VERSION")
    p.add_argument("--input", required=True, action="append",
                   help="file or glob on any Beam filesystem; repeat for more; .gz/.bz2/.zst/... are decompressed")
    p.add_argument("--output", required=True, help="output prefix: PREFIX-SSSSS-of-NNNNN.jsonl and friends")
    g = p.add_argument_group("input")
    g.add_argument("--format", default="auto", choices=tag_io.FORMATS,
                   help="text: a document per line; json: JSON lines (tfner JSONL, CLUENER); "
                        "auto: json for .jsonl/.json, else text. Default auto.")
    g.add_argument("--text_field", default="text", help="JSON field holding the document. Default text.")
    g.add_argument("--id_field", default="id", help="JSON field holding its id (missing: the line number). Default id.")
    g.add_argument("--max_chars", type=non_negative_int, default=100_000,
                   help="longer documents go to the dead letters (each is one model call); 0 = no limit. Default 100000.")
    g = p.add_argument_group("output")
    g.add_argument("--no_text", action="store_true", help="leave the document text out of the output")
    g.add_argument("--num_shards", type=non_negative_int, default=0,
                   help="output shards; 0 = the runner decides. Default 0.")
    g.add_argument("--progress_seconds", type=float, default=30.0,
                   help="each worker logs its progress this often; 0 = never. Default 30.")
    g = p.add_argument_group("batching and scale-out")
    g.add_argument("--batching", default="lengths", choices=BATCHING,
                   help="lengths: sort a buffer of documents by length, then batch (any runner); buckets: Beam's "
                        "length-bucketed stateful batching (portable runners: Prism, Flink, Dataflow; not the "
                        "DirectRunner); plain: Beam's BatchElements, no length awareness. Default lengths.")
    g.add_argument("--max_batch_size", type=positive_int, default=64, help="documents per model call. Default 64.")
    g.add_argument("--max_batch_chars", type=positive_int, default=8192,
                   help="padded characters (documents x the longest) per model call. Default 8192.")
    g.add_argument("--sort_buffer", type=positive_int, default=4096,
                   help="documents sorted together by --batching lengths. Default 4096.")
    g.add_argument("--length_buckets", type=_buckets, default=list(DEFAULT_BUCKETS),
                   help="bucket boundaries in characters for --batching buckets. Default 16,32,64,128,256,512.")
    g.add_argument("--max_batch_wait_secs", type=positive_int, default=10,
                   help="how long --batching buckets holds a partial batch. Default 10.")
    g.add_argument("--model_copies", type=int, default=0,
                   help="0: one model per worker process, shared by its threads; N: N copies per machine shared "
                        "by all its processes (Beam's model_copies). Default 0.")
    g.add_argument("--tensorflow_intra_op_parallelism", type=thread_count, default=0,
                   help="threads inside one op, in each worker process; 0 lets TensorFlow choose. On 2 cores 1 "
                        "tagged ~1.2x faster (tfner/tf_threads.py). Default 0.")
    g.add_argument("--tensorflow_inter_op_parallelism", type=thread_count, default=0,
                   help="ops run at once, in each worker process; 0 lets TensorFlow choose. Default 0.")
    g.add_argument("--no_reshuffle", dest="reshuffle", action="store_false",
                   help="tag each file's documents on the worker that read it (no shuffle; one file = one worker)")
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, PipelineOptions]:
    """tfner.tag's flags and the Beam pipeline options; a flag that is neither is an error, not a warning."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    options = PipelineOptions(rest)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    if unknown:
        parser.error(f"unknown flags (neither tfner.tag's nor Beam pipeline options): "
                     f"{', '.join('--' + name for name in sorted(unknown))}")
    if args.batching == "buckets" and runner_name(options) in DIRECT_RUNNERS:
        parser.error("--batching buckets needs a runner with processing-time timers (Prism, Flink, Dataflow); the "
                     "DirectRunner would fall back to its single-process engine and miscount (tfner/tag_model.py). "
                     "Use --batching lengths here.")
    return args, options


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name (Beam's default when none is given is the DirectRunner)."""
    return (options.get_all_options()["runner"] or "DirectRunner").split(".")[-1]


def same_file_key(path: str) -> str:
    """A local path made absolute and free of ./, .. and symbolic links; any other filesystem's path as it is."""
    return path if "://" in path else os.path.realpath(path)


def check_paths(args: argparse.Namespace) -> None:
    """Fails before launching: a pattern matching nothing, or outputs of an earlier run under the prefix."""
    for pattern in args.input:
        if "://" not in pattern and os.path.isdir(pattern):
            raise IsADirectoryError(f"--input {pattern}: a folder; name its files, e.g. --input "
                                    f"'{os.path.join(pattern, '*')}'")
        if not FileSystems.match([pattern], limits=[1])[0].metadata_list:
            raise FileNotFoundError(f"--input {pattern}: no file matches")
    for kind, pattern in tag_io.output_paths(args.output).items():
        found = FileSystems.match([pattern], limits=[1])[0].metadata_list
        if found:
            raise FileExistsError(f"--output {args.output}: {found[0].path} exists (an earlier run's {kind}); "
                                  "remove the earlier outputs or choose another prefix")
    # WriteToText's finalize deletes every PREFIX-*-of-NNNNN.jsonl it did not write (stale shards), whatever the
    # '*' holds: the output of a run whose prefix extends this one (PREFIX-news-00000-of-00001.jsonl) too.
    found = FileSystems.match([f"{args.output}-*-of-*.jsonl"], limits=[1])[0].metadata_list
    if found:
        raise FileExistsError(f"--output {args.output}: {found[0].path} exists, and Beam would delete it when it "
                              f"writes the shards (it removes every {args.output}-*-of-NNNNN.jsonl); move it or "
                              "choose another prefix")


@contextlib.contextmanager
def beam_scratch_dir():
    """Points the temp dir of this process and its children at a folder of ours, and removes it afterwards.

    Beam's local runners (the DirectRunner, its worker processes, Prism's job server) create folders with
    `tempfile` and leave some behind, empty, in the user's temp dir on every run.
    """
    scratch = tempfile.mkdtemp(prefix="tfner-tag-")
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(scratch, ignore_errors=True)


def run(argv: list[str] | None = None) -> dict:
    """Parses, checks, runs the pipeline to the end and writes PREFIX-summary.json; returns the summary."""
    args, options = parse_args(argv)
    check_paths(args)
    model_path = resolve_version(args.model)
    check_saved_model(model_path)
    log.info("tfner.tag: model %s, input %s, output %s", model_path, " ".join(args.input), args.output)
    started = time.monotonic()
    with beam_scratch_dir():
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, args, model_path)
        result = pipeline.run()
        result.wait_until_finish()
    summary = summarize(
        read_counters(result), time.monotonic() - started,
        model=model_path, input=args.input, output=args.output,
        runner=runner_name(options),
    )
    write_summary(tag_io.output_paths(args.output)["summary"], summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # Beam configures the root logger too: print each line once
    try:
        summary = run(argv)
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotAnExport) as e:
        print(f"tfner.tag: {e}", file=sys.stderr)  # the launch checks: the message names the path
        return 2
    print(format_summary(summary))
    paths = tag_io.output_paths(summary["output"])
    print(f"  output {paths['output']}, errors {paths['errors']}, summary {paths['summary']}")
    if not summary["complete"]:
        print("tfner.tag: the counts do not add up (records != documents + errors) or the runner reported no "
              "metrics (files 0); check the runner's logs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
