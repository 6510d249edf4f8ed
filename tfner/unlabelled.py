"""Unlabelled text: documents streamed from files, cut into model-sized sequences.

Pretraining (tfner.pretrain) and distillation (tfner.distill) read text that has no entity labels. Two file
formats, told apart by extension:

- JSON lines (`.jsonl`, `.json`): one object per line, its text in a string field (`text` by default), as
  CLUENER's files are; other fields (labels, ids) are ignored.
- Anything else: plain text, one document per line.

Paths and globs go through tf.io.gfile (local, gs://, s3://) and are read line by line, so a corpus larger
than memory streams. Blank lines are skipped and the ends of each line are stripped. A document longer than
a model sequence is cut into consecutive pieces, so that every character is seen: with 126 characters a
sequence, a 300-character document gives pieces of 126, 126 and 48.

Bad input raises tfner.data.DataError naming the file and line.
"""

import collections
import dataclasses
import json
from collections.abc import Iterator, Sequence

import tensorflow as tf

from tfner.data import DataError, check_surrogates, expand_paths
from tfner.tokenizer import build_vocabulary


def is_json_lines(path: str) -> bool:
    return path.lower().endswith((".jsonl", ".json"))


def iter_documents(patterns: Sequence[str], text_field: str = "text") -> Iterator[str]:
    """Yields the non-empty documents of every file of `patterns`, in order."""
    for path in expand_paths(patterns):
        json_lines = is_json_lines(path)
        with tf.io.gfile.GFile(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{number}: not UTF-8 ({e.reason}); convert the file, e.g. with iconv") from None
                if not line.strip():
                    continue
                if json_lines:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{number}: not a JSON object ({e.msg}); JSON lines files (.jsonl, "
                                        ".json) hold one object per line; plain text needs another extension") from None
                    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                        raise DataError(f"{path}:{number}: expected an object with a string field {text_field!r} "
                                        "(set pretrain.text_field / distill.text_field to the field that holds the text)")
                    check_surrogates(path, number, line, record, text_field, whole_record=False)  # other fields unread
                    line = record[text_field]
                line = line.strip()
                if line:
                    yield line


def iter_sequences(patterns: Sequence[str], max_chars: int, text_field: str = "text") -> Iterator[str]:
    """Documents cut into consecutive pieces of at most max_chars characters."""
    for document in iter_documents(patterns, text_field):
        for start in range(0, len(document), max_chars):
            yield document[start : start + max_chars]


def sequence_dataset(patterns: Sequence[str], max_chars: int, text_field: str = "text") -> tf.data.Dataset:
    """iter_sequences as a tf.data stream of scalar strings, re-read from the files on every pass."""
    patterns = list(patterns)
    return tf.data.Dataset.from_generator(
        lambda: (s.encode("utf-8") for s in iter_sequences(patterns, max_chars, text_field)),
        output_signature=tf.TensorSpec([], tf.string),
    )


@dataclasses.dataclass(frozen=True)
class Survey:
    """What one pass over a corpus found."""

    sequences: int
    characters: int
    vocabulary: list[str]  # tfner.tokenizer.build_vocabulary over the corpus: special tokens, then by frequency
    lengths: dict[int, int] = dataclasses.field(default_factory=dict)  # characters -> sequences that long
    first_lengths: tuple[int, ...] = ()  # the lengths of the first `first` sequences (the ones held out)


def survey(patterns: Sequence[str], max_chars: int, text_field: str = "text", lowercase: bool = True,
           first: int = 0) -> Survey:
    """Counts sequences, characters and sequences by length, and builds a character vocabulary, in one pass.

    The lengths give an epoch's step count (tfner.data.batches_per_pass); `first` keeps the lengths of the first
    sequences too, so that a caller holding them out can count the rest.
    """
    counts = {"sequences": 0, "characters": 0}
    lengths, first_lengths = collections.Counter(), []

    def counted():
        for sequence in iter_sequences(patterns, max_chars, text_field):
            counts["sequences"] += 1
            counts["characters"] += len(sequence)
            lengths[len(sequence)] += 1
            if len(first_lengths) < first:
                first_lengths.append(len(sequence))
            yield sequence

    vocabulary = build_vocabulary(counted(), lowercase)
    return Survey(counts["sequences"], counts["characters"], vocabulary, dict(lengths), tuple(first_lengths))
