"""Readers and writers of python -m tfner.tag: input lines -> documents or dead letters -> JSON lines.

A record is one line of an input file, read as bytes and numbered from 1:

- text (`--format text`, or any name but .json/.jsonl): the line is the document; its id is the line number.
  Every line is a document, an empty line too (it gets an empty entity list), so ids stay line numbers.
- JSON lines (`--format json`, or .jsonl / .json, which covers tfner JSONL and CLUENER2020): one object per
  line; its `--text_field` is the document, its `--id_field` the id (the line number when the record has
  none), every other field is passed through to the output. Blank lines are not records.

A compression suffix (.gz, .bz2, .zst, .xz, .deflate) is looked through: corpus.jsonl.gz is JSON lines.

A record that cannot be tagged becomes a dead letter naming the file, the line and the reason, never an
exception: a long corpus run must not die on line 3,000,000. Reasons:

    not_utf8           the line is not valid UTF-8
    bad_json           the line does not parse as JSON
    not_an_object      it parses, but not to a JSON object
    missing_text       the object has no --text_field
    text_not_a_string  the field is there but is not a string
    lone_surrogate     a string of the record holds half a UTF-16 surrogate pair (JSON may escape one, "\\ud83d",
                       e.g. an emoji cut in two): not a character, and no UTF-8 can hold it
    too_long           more code points than --max_chars
    truncated          a compressed file ends before its end-of-stream marker (a copy cut short): one dead letter
                       after its last line; that line may itself be cut (a partial document or bad_json)
    corrupt            a compressed file's data is damaged (its decompressor fails): one dead letter after the last
                       line read; the rest of that file is not read, the other files are

Output records have the shape of python -m tfner.predict's lines plus where they came from:

    {"id": 7, "source": "corpus/a.txt", "text": "...", "entities": [{"label", "start", "end", "text", "score"}],
     ...passed-through fields}

Offsets are Unicode code points (Python str indices), as in the serving contract. A passed-through field whose
name the output already uses (id, source, text, entities; e.g. the gold `entities` of a tfner JSONL file) is
written as input_<name> (input_input_<name> if the record has an input_<name> too, and so on).
"""

import dataclasses
import json
import lzma
import os
import re
import zlib
from collections.abc import Iterator
from typing import Any

FORMATS = ("auto", "text", "json")
REASONS = ("not_utf8", "bad_json", "not_an_object", "missing_text", "text_not_a_string", "lone_surrogate",
           "too_long", "truncated", "corrupt")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud83d in a JSON line: maybe half a pair
_SURROGATE = re.compile("[\ud800-\udfff]")
OUTPUT_KEYS = ("id", "source", "text", "entities")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".zstd", ".xz", ".lzma", ".deflate")
RAW_CHARS = 1000  # characters of a bad record kept in its dead letter: enough to see what it is


@dataclasses.dataclass(frozen=True)
class ReadSettings:
    """How input lines become documents.

    Args:
        format: str. `auto`, `text` or `json` (see the module docstring).
        text_field: str. The JSON field that holds the document.
        id_field: str. The JSON field that holds its id.
        max_chars: int. Documents with more code points go to the dead letters; 0 = no limit.
    """

    format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    max_chars: int = 100_000


@dataclasses.dataclass(frozen=True)
class Document:
    """One document to tag: where it came from, its id, its text and the fields passed through."""

    source: str
    line: int
    id: Any
    text: str
    fields: dict = dataclasses.field(default_factory=dict)


def compression_suffix(path: str) -> str:
    """The path's compression suffix (one of COMPRESSION_SUFFIXES, lower case), or "" for none."""
    suffix = os.path.splitext(path)[1].lower()
    return suffix if suffix in COMPRESSION_SUFFIXES else ""


def detect_format(path: str) -> str:
    """`json` for .jsonl / .json (compression suffix looked through), else `text`."""
    name = path.lower()
    name = name[: len(name) - len(compression_suffix(name))]
    return "json" if name.endswith((".jsonl", ".json")) else "text"


def dead_letter(source: str, line: int, reason: str, error: str, raw: bytes | str) -> dict:
    """The record written to PREFIX-errors-*.jsonl: file, line, reason code, message and the first characters."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return {"source": source, "line": line, "reason": reason, "error": error, "raw": raw[:RAW_CHARS]}


def parse_record(raw: bytes, source: str, line: int, fmt: str, settings: ReadSettings) -> Document | dict | None:
    """One input line (without its newline) -> a Document, a dead letter (dict), or None (a blank JSON line).

    Args:
        raw: bytes. The line as read.
        source: str. The file it came from.
        line: int. Its 1-based line number.
        fmt: str. `text` or `json` (already resolved from `auto`).
        settings: ReadSettings. Fields and limits.
    """
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return dead_letter(source, line, "not_utf8", f"not UTF-8 ({e.reason} at byte {e.start}); "
                           "re-encode the file as UTF-8, e.g. with iconv", raw)
    if line == 1 and decoded.startswith("\ufeff"):  # a UTF-8 byte-order mark is not part of the text
        decoded = decoded[1:]
    if fmt == "text":
        text, doc_id, fields = decoded, line, {}
    else:
        if not decoded.strip():
            return None
        try:
            record = json.loads(decoded)
        except json.JSONDecodeError as e:
            return dead_letter(source, line, "bad_json", f"not JSON ({e.msg} at column {e.colno})", decoded)
        if not isinstance(record, dict):
            return dead_letter(source, line, "not_an_object",
                               f"a JSON {type(record).__name__}, not an object with a {settings.text_field!r} field",
                               decoded)
        if settings.text_field not in record:
            return dead_letter(source, line, "missing_text",
                               f"no {settings.text_field!r} field (has {', '.join(sorted(record)) or 'none'}); "
                               "name the text field with --text_field", decoded)
        text = record.pop(settings.text_field)
        if not isinstance(text, str):
            return dead_letter(source, line, "text_not_a_string",
                               f"field {settings.text_field!r} is a JSON {type(text).__name__}, not a string",
                               decoded)
        if _ESCAPED_SURROGATE.search(decoded):  # a pair reads as one character; half of one stays a surrogate
            lone = _SURROGATE.search(json.dumps([text, record], ensure_ascii=False))
            if lone:
                return dead_letter(source, line, "lone_surrogate",
                                   f"a string holds U+{ord(lone.group()):04X}, half of a UTF-16 surrogate pair (an "
                                   "emoji cut in two?), which is no character and has no UTF-8 form; repair the "
                                   "record (a JSON escape of an emoji is a pair, e.g. \\ud83d\\ude00)", decoded)
        doc_id = record.pop(settings.id_field, line)
        fields = record
    if settings.max_chars and len(text) > settings.max_chars:
        return dead_letter(source, line, "too_long",
                           f"{len(text)} characters, over --max_chars {settings.max_chars}; split the document or "
                           "raise --max_chars (the whole document is one model call: memory grows with its length)",
                           decoded)
    return Document(source, line, doc_id, text, fields)


def read_lines(stream) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its line break) for a binary stream; split on \\n only.

    Only \\n ends a line (and a \\r before it is dropped), so U+2028 and other Unicode line separators stay
    inside their document, as they would in JSON.
    """
    number = 0
    for number, chunk in enumerate(iter(stream.readline, b""), start=1):
        if chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        yield number, chunk


def read_file(path: str, settings: ReadSettings, open_fn) -> Iterator[Document | dict]:
    """Every record of one file, as Documents and dead letters, in line order.

    Args:
        path: str. The file (any Beam filesystem path).
        settings: ReadSettings. Format, fields, limits.
        open_fn: callable. path -> binary stream, decompressing by suffix (Beam's FileSystems.open).
    """
    fmt = detect_format(path) if settings.format == "auto" else settings.format
    if fmt not in ("text", "json"):
        raise ValueError(f"--format {settings.format!r}: expected one of {', '.join(FORMATS)}")
    number = 0
    with open_fn(path) as stream:
        compressed = hasattr(stream, "_decompressor")
        try:
            for number, raw in read_lines(stream):
                result = parse_record(raw, path, number, fmt, settings)
                if result is not None:
                    yield result
        except Exception as e:
            if not (compressed and is_decompression_error(e)):
                raise
            # One damaged file must not end the run (and cost every other file's output with it): what was read
            # stands, and a dead letter says where the damage starts.
            yield dead_letter(path, number + 1, "corrupt",
                              f"the compressed data is damaged after line {number} ({type(e).__name__}: {e}); the "
                              "rest of the file was not read; check it (e.g. gzip -t) and copy it again", b"")
            return
        # Beam's CompressedFile stops quietly at the end of the bytes even when the compressed stream is cut
        # short; its decompressor (zlib, bz2, lzma, zstandard: all have `eof`) knows whether it saw the end.
        decompressor = getattr(stream, "_decompressor", None)
        if decompressor is not None and getattr(decompressor, "eof", True) is False:
            yield dead_letter(path, number + 1, "truncated",
                              "the compressed file ends before its end-of-stream marker (cut short?); the "
                              f"records after line {number} are missing and line {number} may be cut; "
                              "copy the file again", b"")


def is_decompression_error(error: Exception) -> bool:
    """Whether `error` is a decompressor's complaint about its data, rather than a failure to read the bytes.

    zlib (gzip, deflate), lzma and zstandard raise their own types; bz2 raises a bare OSError ("Invalid data
    stream"), which unlike an I/O error carries no errno. An I/O error is left to fail the bundle, which the runner
    retries.
    """
    if isinstance(error, (zlib.error, lzma.LZMAError, EOFError)):
        return True
    if type(error).__name__ == "ZstdError":  # zstandard is Beam's optional dependency: not imported for this
        return True
    return type(error) is OSError and error.errno is None


def output_record(document: Document, entities: list[dict], with_text: bool = True) -> dict:
    """The JSON object written for a tagged document (see the module docstring)."""
    record = {"id": document.id, "source": document.source}
    if with_text:
        record["text"] = document.text
    record["entities"] = entities
    for name, value in document.fields.items():
        if name in OUTPUT_KEYS:
            # input_<name>, or input_input_<name> ... when the record has that field too (tfner.tag's own output
            # tagged again has both `entities` and `input_entities`): never one field written over another.
            name = f"input_{name}"
            while name in document.fields or name in record:
                name = f"input_{name}"
        record[name] = value
    return record


def to_json_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def output_paths(prefix: str) -> dict[str, str]:
    """The file-name patterns a run writes under PREFIX (shards are -SSSSS-of-NNNNN)."""
    return {
        "output": f"{prefix}-[0-9]*-of-*.jsonl",
        "errors": f"{prefix}-errors-*-of-*.jsonl",
        "summary": f"{prefix}-summary.json",
    }

