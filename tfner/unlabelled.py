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
    # Lengths of the sequences after the first `held_out`: {characters: sequences}, one per shard (sequence k
    # after them goes to shard k % shards, as Dataset.shard cuts), for an epoch's step count
    # (tfner.data.batches_per_pass).
    train_lengths: tuple[dict[int, int], ...] = ()


def survey(patterns: Sequence[str], max_chars: int, text_field: str = "text", lowercase: bool = True,
           held_out: int = 0, shards: int = 1) -> Survey:
    """Counts sequences, characters and the lengths of those after the first held_out (by shard), and builds a
    character vocabulary, in one streaming pass."""
    counts = {"sequences": 0, "characters": 0}
    train_lengths = [collections.Counter() for _ in range(shards)]

    def counted():
        for sequence in iter_sequences(patterns, max_chars, text_field):
            if counts["sequences"] >= held_out:
                train_lengths[(counts["sequences"] - held_out) % shards][len(sequence)] += 1
            counts["sequences"] += 1
            counts["characters"] += len(sequence)
            yield sequence

    vocabulary = build_vocabulary(counted(), lowercase)
    return Survey(counts["sequences"], counts["characters"], vocabulary, tuple(dict(c) for c in train_lengths))
