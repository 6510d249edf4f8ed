"""Unlabelled text: documents streamed from files, cut into model-sized sequences.

Pretraining (tfner.pretrain) and distillation (tfner.distill) read text that has no entity labels. Two file
formats, told apart by extension:

- JSON lines (`.jsonl`, `.json`): one object per line, its text in a string field (`text` by default), as
  CLUENER's files are; other fields (labels, ids) are ignored.
- Anything else: plain text, one document per line.

A compression suffix (.gz, .bz2, .xz) is looked through: corpus.jsonl.gz is JSON lines, decompressed as it is
read; the other suffixes tfner.tag reads through Beam (.zst, .deflate, ...) are refused by name. Paths and
globs go through tf.io.gfile (local, gs://, s3://) and are read line by line, so a corpus larger than memory
streams. A line ends at \n, \r\n or a lone \r. Blank lines are skipped and the ends of each line
are stripped. A document longer than a model sequence is cut into consecutive pieces, so that every character
is seen: with 126 characters a sequence, a 300-character document gives pieces of 126, 126 and 48.

Bad input raises tfner.data.DataError naming the file and line.
"""

import bz2
import collections
import contextlib
import dataclasses
import gzip
import json
import lzma
import re
import zlib
from collections.abc import Iterator, Sequence

import tensorflow as tf

from tfner.data import DataError, check_surrogates, expand_paths
from tfner.tag_io import compression_suffix, detect_format
from tfner.tokenizer import build_vocabulary


# Suffix -> a reader that decompresses a binary stream as it is read.
DECOMPRESSORS = {
    ".gz": lambda f: gzip.GzipFile(fileobj=f),  # several members, and zero padding after them, as gzip -d reads
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}

_LINE_END = re.compile(rb"\r\n|\r|\n")


@contextlib.contextmanager
def open_binary(path: str):
    """The file's bytes, decompressed by its suffix (DECOMPRESSORS)."""
    suffix = compression_suffix(path)
    if suffix and suffix not in DECOMPRESSORS:  # tfner.tag reads it; say so, not "not UTF-8"
        raise DataError(f"{path}: {suffix} compression is not read here, only {', '.join(DECOMPRESSORS)}; "
                        "decompress the file or recompress it with gzip")
    with tf.io.gfile.GFile(path, "rb") as f:
        decompressor = DECOMPRESSORS.get(suffix)
        if decompressor is None:
            yield f
        else:
            with decompressor(f) as stream:
                yield stream


def binary_lines(stream, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a binary stream without their ends: a line ends at \n, \r\n or a lone \r.

    Split here rather than by GFile's own lines, which drop every \r: a file with \r line ends (old Mac
    editors) read as one line, in memory, its documents run together. UTF-8 never has these bytes inside a
    character, so the split is safe before decoding.

    Each read is searched once: a line longer than a read gathers its pieces in a list and joins them at its
    end (adding each read to one buffer and searching it all again took time growing with the square of the
    line: 4.4 s for one line of 32 MB).
    """
    pending = []  # the pieces of the line not ended yet
    held = b""  # a \r that ended the last read: its \n may begin the next one
    while chunk := stream.read(chunk_size):
        chunk = held + chunk
        held = chunk[-1:] if chunk.endswith(b"\r") else b""
        *ended, rest = _LINE_END.split(chunk[: len(chunk) - len(held)])
        if ended:
            ended[0] = b"".join(pending) + ended[0]
            pending = []
            yield from ended
        pending.append(rest)
    line = b"".join(pending)
    if line or held:
        yield line


# A line of a CoNLL char-tag file (tfner.data's training format): one character, a space or tab, a tag.
_TAGGED_CHARACTER = re.compile(r"\S[ \t]+(O|[BIMES]-\S+)")
_LINES_LOOKED_AT = 20


def iter_documents(patterns: Sequence[str], text_field: str = "text") -> Iterator[str]:
    """Yields the non-empty documents of every file of `patterns`, in order.

    A text file whose first 20 documents are all CoNLL char-tag lines ("吴 B-NAME") is refused: read as text it
    trains on tags, and puts them in the vocabulary.
    """
    for path in expand_paths(patterns):
        json_lines = detect_format(path) == "json"
        number = 0
        tagged = 0
        try:
            with open_binary(path) as stream:
                for number, line in enumerate(binary_lines(stream), start=1):
                    for document in _document(path, number, line, json_lines, text_field):
                        if not json_lines and tagged < _LINES_LOOKED_AT:
                            tagged = tagged + 1 if _TAGGED_CHARACTER.fullmatch(document) else _LINES_LOOKED_AT + 1
                            if tagged == _LINES_LOOKED_AT:
                                raise DataError(
                                    f"{path}: a CoNLL char-tag file (its lines read like {document!r}), not "
                                    "text: unlabelled text is one document a line; give the text, or the file's "
                                    "first column joined into sentences")
                        yield document
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as e:
            if isinstance(e, OSError) and e.errno is not None:  # a failure to read the bytes, not their content
                raise
            raise DataError(f"{path}: the compressed data is damaged or cut short ({e}), {number} line(s) into "
                            "the file; check it (gzip -t, bzip2 -t or xz -t) and copy it again") from None


def _document(path: str, number: int, raw: bytes, json_lines: bool, text_field: str) -> Iterator[str]:
    """The document of one line (none for a blank one)."""
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data":  # the line's bytes stop inside a character
            raise DataError(f"{path}:{number}: the line ends in the middle of a UTF-8 character; if it is the "
                            "file's last, the file was cut short (an interrupted copy?): copy it again") from None
        raise DataError(f"{path}:{number}: not UTF-8 ({e.reason}); convert the file, e.g. with iconv") from None
    if not line.strip():
        return
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
