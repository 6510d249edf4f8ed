"""Corpus readers and the tf.data input pipeline.

Every reader returns the same thing, a list of `Example(text, spans)`:

- CoNLL char-tag files: one `char TAG` per line (space or tab), a blank line between sentences; tags in BIO,
  IOB1, BIOES or BMES (`scheme="auto"` tells BIO/BIOES/BMES apart by the tags used).
- CLUENER JSON lines: {"text": ..., "label": {type: {mention: [[start, end], ...]}}}, end INCLUSIVE.
- tfner JSONL: {"text": ..., "entities": [{"start", "end", "label"}]}, end exclusive; `write_jsonl` writes it.
- TFRecord shards (`write_tfrecords`): text + per-character BIOES tag ids, for corpora that are streamed
  rather than held in memory, from any `tf.io.gfile` path (local, gs://, s3://).

Bad input raises `DataError` naming the file, the line (or JSON record) and what to do.

The pipeline turns examples into padded batches. Take 张三在北京 with PER [0, 2), LOC [3, 5) and
max_seq_length 8:

    token_ids     [CLS] 张   三   在  北   京   [SEP] [PAD]
    padding_mask  1     1    1    1   1    1    1     0
    tags                B-PER E-PER O B-LOC E-LOC 0     0      (one per token after [CLS]; 7 = 8 - 1)
    tag_mask            1    1    1   1    1    0     0

Tags sit on the characters only: the model drops the [CLS] position and masks [SEP] and padding out of the
loss, so tags[i] is the tag of character i.
"""

import bisect
import collections
import dataclasses
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

import tensorflow as tf

from tfner import labels as labels_lib
from tfner.atomic_write import write_atomically
from tfner.labels import Span, TagSet
from tfner.tag_io import compression_suffix
from tfner.tokenizer import CharTokenizer

log = logging.getLogger(__name__)

FORMATS = ("conll", "cluener", "jsonl", "tfrecord")


class DataError(ValueError):
    """A corpus file is malformed; the message names file, line or record, and the problem."""


@dataclasses.dataclass(frozen=True)
class Example:
    text: str
    spans: tuple[Span, ...] = ()


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Files for a list of paths or globs, in order, each glob sorted; a pattern matching nothing is an error."""
    paths = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise DataError(f"{pattern}: no such file (or no match for the glob); check the path where it was given "
                            "(data.train/dev/test, pretrain.text, distill.unlabelled, or tfner.evaluate --data)")
        for path in matched:
            if tf.io.gfile.isdir(path):
                raise DataError(f"{path}: a folder, not a file; name the files in it, e.g. {os.path.join(path, '*')}")
        paths.extend(matched)
    return paths


def detect_format(path: str) -> str:
    name = path.lower()
    if name.endswith((".tfrecord", ".tfrecords")) or ".tfrecord-" in name:
        return "tfrecord"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "cluener"
    return "conll"


def read_examples(patterns: str | Sequence[str], format: str = "auto", scheme: str = "auto",
                  lost_characters: str = "error") -> list[Example]:
    """Reads every file of `patterns` (paths or globs) into examples (lost_characters: see read_conll)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    examples = []
    for path in expand_paths(patterns):
        suffix = compression_suffix(path)
        if suffix:  # read whole into memory: decompressing first costs the user one command
            raise DataError(f"{path}: compressed ({suffix}); training data is read uncompressed: decompress it "
                            "first (gunzip, bunzip2, unxz ...)")
        fmt = detect_format(path) if format == "auto" else format
        if fmt == "conll":
            examples.extend(read_conll(path, scheme, lost_characters))
        elif fmt == "cluener":
            examples.extend(read_cluener(path))
        elif fmt == "jsonl":
            examples.extend(read_jsonl(path))
        elif fmt == "tfrecord":
            if detect_format(path) != "tfrecord":  # format: tfrecord named for the train shards, applied to all
                raise DataError(f"{path}: data.format is tfrecord, but this is no TFRecord shard (*.tfrecord-*); "
                                "set data.format: auto to read each file by its name")
            examples.extend(read_tfrecords([path]))  # each shard through the tag set beside it
        else:
            raise DataError(f"{path}: unknown format {fmt!r}; expected one of auto, {', '.join(FORMATS)}")
    return examples


# Lines end at \n, \r\n or \r only. str.splitlines() would also break at U+2028, U+0085, \x1c and other
# characters that are text here: a CoNLL token, or raw inside a JSON string (write_jsonl writes them so).
# \r\r\n is one line end too: a CRLF file written again in Windows' text mode, where a blank line between
# every two lines broke every CoNLL sentence into one-character sentences.
_LINE_END = re.compile(r"\r\r\n|\r\n|\r|\n")


def _read_lines(path: str) -> list[str]:
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        # A UTF-16 file (Windows' "Unicode") starts with a byte-order mark or is full of NUL bytes.
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[:200].count(b"\x00") > len(raw[:200]) // 4
        encoding = "UTF-16" if utf16 else "GBK"
        if e.reason == "unexpected end of data" and e.end == len(raw):
            raise DataError(
                f"{path}:{line}: the file ends in the middle of a UTF-8 character: it was cut short (an "
                "interrupted copy or download?); copy it again"
            ) from None
        raise DataError(
            f"{path}:{line}: not UTF-8 ({e.reason} at byte {e.start}){'; it looks like UTF-16' if utf16 else ''}; "
            f"convert the file, e.g. `iconv -f {encoding} -t UTF-8 {os.path.basename(path)}`"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    lines = _LINE_END.split(text)
    return lines[:-1] if lines[-1] == "" else lines


def _excerpt(line: str, limit: int = 40) -> str:
    """A line for an error message: a 1 MB line is named by its start and its length, not printed whole."""
    return repr(line) if len(line) <= limit else f"{line[:limit]!r}... ({len(line):,} characters)"


LOST_CHARACTER = "\ufffd\ufffd"  # one astral character after a UTF-16 round trip that dropped its surrogates
LOST_CHARACTERS = ("error", "replace")


def read_conll(path: str, scheme: str = "auto", lost_characters: str = "error") -> list[Example]:
    """Reads a char-tag file; see the module docstring. Ill-formed tag sequences are repaired and counted.

    Args:
        path: str. The file.
        scheme: str. "auto" or one of tfner.labels.SCHEMES.
        lost_characters: str. What to do with a token of two U+FFFD, the trace of one character outside the
            Basic Multilingual Plane (an emoji, a rare CJK character) lost in a UTF-16 conversion, as Weibo NER
            (2nd version) writes them: "error" stops at the first with a DataError naming the line;
            "replace" reads each as one U+FFFD (one character, so later offsets keep counting the original
            text's code points) and counts them in a warning.
    """
    if lost_characters not in LOST_CHARACTERS:
        raise ValueError(f"lost_characters must be one of {', '.join(LOST_CHARACTERS)}; got {lost_characters!r}")
    sentences, chars, tags, first_line, lost = [], [], [], 1, []
    first_prefix = {}  # tag prefix letter -> first line using it
    lines = _read_lines(path)
    for number, line in enumerate(lines + [""], start=1):
        if not line.strip(" \t"):  # not str.strip(): a line of U+3000 or \x1c is a token without a tag
            if chars:
                sentences.append((first_line, "".join(chars), tags))
            chars, tags, first_line = [], [], number + 1
            continue
        line = line.rstrip()  # trailing spaces or tabs after the tag are not part of it
        char, sep, tag = line.rpartition("\t") if "\t" in line else line.rpartition(" ")
        if char == LOST_CHARACTER:
            if lost_characters == "error":
                raise DataError(
                    f"{path}:{number}: the token is two U+FFFD, a character outside the Basic Multilingual Plane "
                    "lost in a UTF-16 conversion (Weibo NER writes emoji so); to read each such token as one "
                    "U+FFFD, set data.lost_characters: replace in the config (tfner.evaluate: --lost_characters "
                    "replace)"
                )
            char = "\ufffd"
            lost.append(number)
        # ❤️, 🇨🇳, e + U+0301: several code points drawn as one
        if sep and len(char) > 1 and any(_joins_previous(c) for c in char[1:]):
            raise DataError(
                f"{path}:{number}: the token {char!r} is {len(char)} code points "
                f"({', '.join(f'U+{ord(c):04X}' for c in char)}); tfner reads one code point a line (as the "
                "model's tokenizer and the served offsets count them): write each on its own line, with its tag"
            )
        if not sep or len(char) != 1:
            raise DataError(
                f"{path}:{number}: expected one character, a space or tab, and a tag (e.g. '张 B-PER'); "
                f"got {_excerpt(line)}"
            )
        try:
            labels_lib.split_tag(tag)
        except ValueError as e:
            raise DataError(f"{path}:{number}: {e}") from None
        if any(c.isspace() for c in tag):  # 'B-JOB TITLE' after a tab: labels.txt could not hold the type
            raise DataError(f"{path}:{number}: tag {tag!r} holds whitespace; an entity type is one word: join "
                            "its words with _ (B-JOB_TITLE)")
        _check_visible(path, number, tag, "tag")
        first_prefix.setdefault(tag[0], number)
        chars.append(char)
        tags.append(tag)
    if "I" in first_prefix and "M" in first_prefix:  # BIO/BIOES say I-, BMES says M-: two schemes in one file
        raise DataError(
            f"{path}:{max(first_prefix['I'], first_prefix['M'])}: the file mixes tag schemes: I- tags (BIO or "
            f"BIOES, first at line {first_prefix['I']}) and M- tags (BMES, first at line {first_prefix['M']}); "
            "write every sentence in one scheme (convert the M- tags to I-, or the I- tags to M-)"
        )
    if scheme == "auto":
        scheme = labels_lib.detect_scheme(t for _, _, sentence_tags in sentences for t in sentence_tags)
    examples, repaired = [], []
    for first, text, sentence_tags in sentences:
        spans, repairs = labels_lib.tags_to_spans(sentence_tags)
        if repairs and scheme != "IOB1":  # the line of the first entity begun by a continuation tag
            repaired.append(first + next(s.start for s in spans if labels_lib.split_tag(sentence_tags[s.start])[0]
                                         in (labels_lib.INSIDE, labels_lib.END)))
        examples.append(Example(text, tuple(spans)))
    if lost:
        log.warning(
            "%s: %d token(s) of two U+FFFD (a lost astral character) read as one U+FFFD each (%s)",
            path, len(lost), _line_list(lost),
        )
    if repaired:
        where = _line_list(repaired)
        with_entities = sum(1 for _, _, sentence_tags in sentences if any(t != labels_lib.OUTSIDE
                                                                              for t in sentence_tags))
        log.warning(
            "%s: %d sentence(s) have a continuation tag with no begin (%s); each such tag starts a new entity%s",
            path, len(repaired), where,
            "; most sentences with entities do: if the file is IOB1 (I- starts an entity, B- only one right after "
            "another of its type), set data.scheme: IOB1" if 2 * len(repaired) > with_entities else "",
        )
    return examples


def _line_list(numbers: list[int]) -> str:
    return ", ".join(f"line {n}" for n in numbers[:5]) + (" ..." if len(numbers) > 5 else "")


# A JSON escape of half a UTF-16 surrogate pair ("\ud83d": an emoji cut in two by a UTF-16 tool) loads as a lone
# surrogate, which is no character and has no UTF-8 form: TensorFlow failed on it at the first batch, naming no
# file or line. Only an escape makes one (UTF-8 decoding refuses an encoded surrogate), so lines without one
# are not searched.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_FIX = ("half of a UTF-16 surrogate pair (an emoji cut in two?), which is no character and has no UTF-8 "
                  "form; repair the record (a JSON escape of an emoji is a pair, e.g. \\ud83d\\ude00)")


def check_surrogates(path: str, number: int, line: str, record: dict, field: str = "text",
                     whole_record: bool = True) -> None:
    """Refuses a JSON record whose `field` (or, with whole_record, any string: labels, mentions) holds a lone
    surrogate, naming the file, line, code point and the fix. `line` is the record's JSON text."""
    if not _ESCAPED_SURROGATE.search(line):
        return
    lone = _SURROGATE.search(record[field])
    if lone:
        raise DataError(f"{path}:{number}: {field!r} holds U+{ord(lone.group()):04X} at character {lone.start()}, "
                        f"{_SURROGATE_FIX}")
    lone = _SURROGATE.search(json.dumps(record, ensure_ascii=False)) if whole_record else None
    if lone:
        raise DataError(f"{path}:{number}: a string of the record holds U+{ord(lone.group()):04X}, {_SURROGATE_FIX}")


def _read_json_records(path: str) -> Iterable[tuple[int, dict]]:
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not a JSON object ({e.msg}); expected one JSON object per line") from None
        except _DuplicateKey as e:
            raise DataError(f"{path}:{number}: the key {e.args[0]!r} appears twice in one object, and a JSON reader "
                            "keeps only the last (its entities would be lost): merge the two") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{path}:{number}: expected an object with a string field 'text'")
        check_surrogates(path, number, line, record)
        yield number, record


def _joins_previous(c: str) -> bool:
    """A code point drawn as part of the one before: a combining mark, a variation selector, a zero-width joiner, a
    flag's second regional indicator."""
    return unicodedata.category(c) in ("Mn", "Mc", "Me", "Cf") or 0x1F1E6 <= ord(c) <= 0x1F1FF


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _check_visible(path: str, number: int, name: str, what: str) -> None:
    """Refuses an invisible character (a zero-width space, a control) in a tag or type: 'PER\u200b' would be a
    second type, shown as PER."""
    hidden = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf")), None)
    if hidden is not None:
        raise DataError(f"{path}:{number}: {what} {name!r} holds the invisible character U+{ord(hidden):04X}; "
                        "remove it")


def _is_offset(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_label(path: str, number: int, label) -> str:
    if not isinstance(label, str) or not label or any(c.isspace() for c in label):
        raise DataError(
            f"{path}:{number}: entity type {label!r} must be a non-empty string without spaces, e.g. \"PER\""
        )
    _check_visible(path, number, label, "entity type")
    return label


def _check_span(path: str, number: int, text: str, span: Span, what: str, shown: str | None = None) -> Span:
    """`shown`: the offsets as the file writes them (CLUENER's inclusive [start, end]), for the message."""
    if not (_is_offset(span.start) and _is_offset(span.end)):
        raise DataError(
            f"{path}:{number}: {what} {span.label!r} has start {span.start!r} and end {span.end!r}; "
            "offsets must be integers (character positions)"
        )
    if not 0 <= span.start < span.end <= len(text):
        raise DataError(
            f"{path}:{number}: {what} {span.label!r} {shown or f'[{span.start}, {span.end})'} is outside the text "
            f"({len(text)} characters) or empty"
        )
    return span


def read_cluener(path: str) -> list[Example]:
    """Reads CLUENER2020 JSON lines (inclusive ends). Records without `label` (the test split) have no spans."""
    examples = []
    for number, record in _read_json_records(path):
        text, spans = record["text"], []
        if "label" not in record and isinstance(record.get("entities"), list):
            raise DataError(f"{path}:{number}: a tfner JSONL record ('entities', no 'label') in a file read as "
                            "CLUENER (.json); name the file .jsonl, or set data.format: jsonl")
        label_map = record.get("label")
        if label_map is None:  # the test split: no labels
            label_map = {}
        if not isinstance(label_map, dict):
            raise DataError(f"{path}:{number}: 'label' must map type -> {{mention: [[start, end], ...]}}, got "
                            f"{label_map!r}")
        for label, mentions in label_map.items():
            _check_label(path, number, label)
            if not isinstance(mentions, dict):
                raise DataError(
                    f"{path}:{number}: 'label'.{label} must map mention -> [[start, end], ...], "
                    f"got {type(mentions).__name__}"
                )
            for mention, positions in mentions.items():
                if not isinstance(positions, list) or not positions:
                    raise DataError(f"{path}:{number}: {label}/{mention}: positions must be a non-empty list of "
                                    f"[start, end], got {positions!r}")
                for position in positions:
                    if not (isinstance(position, list) and len(position) == 2 and all(map(_is_offset, position))):
                        raise DataError(
                            f"{path}:{number}: {label}/{mention}: a position must be [start, end] of two "
                            f"integers, got {position!r}"
                        )
                    span = _check_span(path, number, text, Span(position[0], position[1] + 1, label),
                                       f"entity {mention!r} of type", f"{position} (end inclusive)")
                    if text[span.start : span.end] != mention:
                        raise DataError(
                            f"{path}:{number}: {label} at {position} reads {text[span.start:span.end]!r}, "
                            f"not {mention!r}; CLUENER ends are inclusive"
                        )
                    spans.append(span)
        examples.append(Example(text, tuple(sorted(spans))))
    return examples


def read_jsonl(path: str) -> list[Example]:
    """Reads tfner JSONL (exclusive ends)."""
    examples = []
    for number, record in _read_json_records(path):
        if "entities" not in record and isinstance(record.get("label"), dict):
            raise DataError(f"{path}:{number}: a CLUENER record ('label', no 'entities') in a file read as tfner "
                            "JSONL (.jsonl); name the file .json, or set data.format: cluener")
        spans, entities = [], record.get("entities", [])
        if not isinstance(entities, list):
            raise DataError(
                f"{path}:{number}: 'entities' must be a list of {{\"start\", \"end\", \"label\"}} objects, "
                f"got {type(entities).__name__}"
            )
        for entity in entities:
            try:
                span = Span(entity["start"], entity["end"], _check_label(path, number, entity["label"]))
            except (KeyError, TypeError):
                raise DataError(f"{path}:{number}: each entity needs 'start', 'end' and 'label'") from None
            spans.append(_check_span(path, number, record["text"], span, "entity"))
            shown = record["text"][span.start : span.end]
            if "text" in entity and entity["text"] != shown:
                raise DataError(f"{path}:{number}: entity {span.label!r} [{span.start}, {span.end}) reads {shown!r}, "
                                f"not its 'text' {entity['text']!r}; offsets count code points (Python str "
                                "indices), not UTF-16 units or bytes, and ends are exclusive")
        examples.append(Example(record["text"], tuple(sorted(spans))))
    return examples


def write_jsonl(examples: Iterable[Example], path: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        for example in examples:
            entities = [{"start": s.start, "end": s.end, "label": s.label} for s in example.spans]
            f.write(json.dumps({"text": example.text, "entities": entities}, ensure_ascii=False) + "\n")


def entity_types(examples: Iterable[Example]) -> list[str]:
    return sorted({span.label for example in examples for span in example.spans})


def split_long(examples: Iterable[Example], max_chars: int) -> list[Example]:
    """Cuts examples longer than max_chars into pieces, never inside an entity when a cut outside one exists.

    Training sees every character this way; the export tags long texts with overlapping windows instead. An
    entity longer than max_chars fits in no piece: its characters train as O, counted in one warning.
    """
    pieces, too_long = [], []
    for example in examples:
        text, spans, start = example.text, sorted(example.spans), 0
        too_long.extend(s.end - s.start for s in spans if s.end - s.start > max_chars)
        while len(text) - start > max_chars:
            cut = start + max_chars
            moved = True
            while moved:  # move the cut back to the start of an entity it would split, until it splits none
                moved = False  # (a moved cut can split an earlier entity that overlaps the one it moved for)
                for span in spans:
                    if span.start < cut < span.end and span.start > start:
                        cut, moved = span.start, True
            inside = [s for s in spans if start <= s.start and s.end <= cut]
            pieces.append(Example(text[start:cut], tuple(Span(s.start - start, s.end - start, s.label) for s in inside)))
            start = cut
        rest = [s for s in spans if s.start >= start]
        pieces.append(Example(text[start:], tuple(Span(s.start - start, s.end - start, s.label) for s in rest)))
    if too_long:
        log.warning(
            "%d %s longer than the training window of %d characters (data.max_seq_length %d) %s in no training "
            "piece: their characters train as O; the longest has %d characters; to train on them, raise "
            "data.max_seq_length to at least %d",
            len(too_long), "entity" if len(too_long) == 1 else "entities", max_chars, max_chars + 2,
            "is" if len(too_long) == 1 else "are", max(too_long), max(too_long) + 2,
        )
    return pieces


def encode_examples(examples: Sequence[Example], tag_set: TagSet) -> tuple[list[str], list[list[int]]]:
    """Examples -> (texts, per-character tag ids); overlapping spans (flat tagging holds one) are counted."""
    texts, tag_ids, dropped = [], [], 0
    for number, example in enumerate(examples, start=1):
        unknown = sorted({s.label for s in example.spans} - set(tag_set.labels))
        if unknown:  # a bare KeyError('B-LOC') otherwise
            raise DataError(f"example {number} ({_excerpt(example.text)}) has entity type(s) {unknown} that the tag "
                            f"set ({', '.join(tag_set.labels)}) does not hold; build the TagSet from every split's "
                            "types, or drop those entities")
        ids, n = tag_set.encode(len(example.text), example.spans)
        texts.append(example.text)
        tag_ids.append(ids)
        dropped += n
    if dropped:
        log.warning("%d overlapping span(s) dropped: flat tagging keeps the longest of overlapping entities", dropped)
    return texts, tag_ids


def write_tfrecords(examples: Sequence[Example], tag_set: TagSet, prefix: str, num_shards: int = 1) -> list[str]:
    """Writes examples as `prefix.tfrecord-0000i-of-0000n` shards of tf.train.Example and `prefix.tags.txt`.

    Each record holds `text` (bytes) and `tags` (int64 BIOES ids of tag_set, one per character). Shards are
    written under hidden names the shards' globs (`prefix.tfrecord*`) do not match. Rewriting a prefix first
    deletes its tags.txt (and the shards of the previous write), then renames the new shards into place and
    writes tags.txt last: a write killed halfway leaves the previous prefix whole or one without tags.txt,
    which read_tfrecords refuses, never new shards read through the previous tag set.
    """
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1; got {num_shards!r}")
    texts, tag_ids = encode_examples(examples, tag_set)
    paths = [f"{prefix}.tfrecord-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    folder, name = os.path.split(prefix)
    if not tf.io.gfile.isdir(folder or "."):  # TensorFlow's error named a hidden staging file
        raise DataError(f"{prefix}: the folder {folder} does not exist; create it first")
    staged = [os.path.join(folder, f".{name}.shard-{i:05d}.tmp") for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in staged]
    try:
        for i, (text, ids) in enumerate(zip(texts, tag_ids)):
            try:
                encoded = text.encode("utf-8")
            except UnicodeEncodeError as e:  # a lone surrogate: no UTF-8 form
                raise DataError(f"example {i + 1} ({_excerpt(text)}): U+{ord(text[e.start]):04X} at character "
                                f"{e.start} is {_SURROGATE_FIX}") from None
            feature = {
                "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "tags": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
            }
            writers[i % num_shards].write(tf.train.Example(features=tf.train.Features(feature=feature))
                                          .SerializeToString())
    except BaseException:
        for writer, staging in zip(writers, staged):  # nothing half-written left behind
            writer.close()
            tf.io.gfile.remove(staging)
        raise
    for writer in writers:
        writer.close()
    tags_path = prefix + ".tags.txt"
    if tf.io.gfile.exists(tags_path):
        tf.io.gfile.remove(tags_path)
    shard = re.compile(re.escape(prefix) + r"\.tfrecord-\d{5}-of-\d{5}")
    for old in tf.io.gfile.glob(prefix + ".tfrecord-*"):  # a previous write's shards (another num_shards too)
        if shard.fullmatch(old) and old not in paths:
            tf.io.gfile.remove(old)
    for staging, path in zip(staged, paths):
        tf.io.gfile.rename(staging, path, overwrite=True)
    write_atomically(tags_path, "".join(f"{tag}\n" for tag in tag_set.tags))
    return paths


_RECORD_SPEC = {"text": tf.io.FixedLenFeature([], tf.string), "tags": tf.io.VarLenFeature(tf.int64)}


def _parse_record(record):
    parsed = tf.io.parse_single_example(record, _RECORD_SPEC)
    return {"text": parsed["text"], "tags": tf.cast(tf.sparse.to_dense(parsed["tags"]), tf.int32)}


def read_tfrecords(patterns: Sequence[str]) -> list[Example]:
    """Reads shards back into examples, each shard through the tag set written beside it (its own prefix's:
    shards of two write_tfrecords calls may hold different tag sets)."""
    examples, tag_lists = [], {}
    for path in expand_paths(patterns):
        tags_path = path.rsplit(".tfrecord", 1)[0] + ".tags.txt"
        if tags_path not in tag_lists:
            if not tf.io.gfile.exists(tags_path):
                raise DataError(f"{path}: no {tags_path} beside it; write shards with tfner.data.write_tfrecords")
            with tf.io.gfile.GFile(tags_path) as f:
                tag_lists[tags_path] = f.read().split()
        tags = tag_lists[tags_path]
        for number, r in enumerate(tf.data.TFRecordDataset(path).map(_parse_record).as_numpy_iterator(), start=1):
            text = r["text"].decode("utf-8")
            outside = [int(i) for i in r["tags"] if not 0 <= i < len(tags)]
            if len(r["tags"]) != len(text) or outside:
                problem = (f"tag id {outside[0]}, outside 0..{len(tags) - 1} of {tags_path}" if outside else
                           f"{len(r['tags'])} tag ids for {len(text)} characters")
                raise DataError(f"{path}: record {number} has {problem}; write shards with "
                                "tfner.data.write_tfrecords, or copy them again with their tags.txt")
            examples.append(Example(text, tuple(labels_lib.tags_to_spans([tags[i] for i in r["tags"]])[0])))
    return examples


def examples_dataset(examples: Sequence[Example], tag_set: TagSet) -> tf.data.Dataset:
    """In-memory examples as a dataset of {"text": string, "tags": int32 [chars]}, the input of batch_dataset."""
    texts, tag_ids = encode_examples(examples, tag_set)
    tags = tf.ragged.constant(tag_ids, dtype=tf.int32, ragged_rank=1) if tag_ids else tf.zeros([0, 0], tf.int32)
    return tf.data.Dataset.from_tensor_slices({"text": tf.constant(texts, tf.string), "tags": tags})


# Width of the length buckets when batch shapes are free. A batch is padded to its longest row, so the
# bucket's width bounds the padding: on Resume NER's training set, 8-token buckets put 91 % real tokens in a
# batch against 72 % for power-of-two buckets, and the train step runs that much less work per character
# (benchmarks/README.md, profile_step.py).
BUCKET_WIDTH = 8


def bucket_boundaries(max_seq_length: int, static_shapes: bool = False) -> list[int]:
    """Token lengths to bucket by, below max_seq_length.

    Static shapes (TPU, XLA): 16, 32, 64, ..., so that few shapes compile. Otherwise every BUCKET_WIDTH
    tokens (8, 16, 24, ...): shapes cost nothing to change, padding costs compute.
    """
    if not static_shapes:
        return list(range(BUCKET_WIDTH, max_seq_length, BUCKET_WIDTH))
    boundaries, length = [], 16
    while length < max_seq_length:
        boundaries.append(length)
        length *= 2
    return boundaries


def replicas_per_pipeline(context: tf.distribute.InputContext) -> int:
    """How many replicas one input pipeline feeds: each train step takes that many of its batches, one each."""
    return max(1, context.num_replicas_in_sync // max(1, context.num_input_pipelines))


def bucket_batches(dataset: tf.data.Dataset, boundaries: list[int], batch_size: int, padded_shapes: dict,
                   padding_values: dict, static_shapes: bool, replicas: int = 1) -> tf.data.Dataset:
    """Padded batches of `batch_size` elements from one length bucket each (element["length"] + 2 tokens, up to
    boundaries[k]); with static_shapes, a bucket's last, partial batch is filled up with empty rows.

    `replicas` consecutive batches come from one bucket: the replicas of one step (N GPUs fed by one pipeline,
    a TPU host's cores) get batches of one length, which a TPU's replicas must have (static_shapes then gives
    them one shape) and which lets GPUs finish their step together.
    """
    bucket_size = batch_size * replicas
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda e: e["length"] + 2,
        bucket_boundaries=[b + 1 for b in boundaries[:-1]],  # tf.data's boundaries are exclusive upper bounds
        bucket_batch_sizes=[bucket_size] * len(boundaries),
        padded_shapes=padded_shapes,
        padding_values=padding_values,
    )
    if static_shapes:
        # One batch size for XLA to compile, and no example dropped: rows of length 0 make up the rest (the CRF's
        # log-likelihood of an empty row is 0, a masked-LM row of weight 0 adds nothing; neither counts tokens).
        dataset = dataset.map(lambda batch: {key: _filled(value, bucket_size, padding_values[key])
                                             for key, value in batch.items()})
    if replicas == 1:
        return dataset
    # Each bucket batch cut on its own (Dataset.rebatch would join the leftover of one to the next one, of
    # another length, at the end of a finite dataset).
    return dataset.flat_map(
        lambda batch: tf.data.Dataset.from_tensors(batch).unbatch().batch(batch_size, drop_remainder=static_shapes))


def _filled(value: tf.Tensor, rows: int, padding_value) -> tf.Tensor:
    """`value` with rows of `padding_value` added at the end of dimension 0, up to `rows`; that dimension static."""
    missing = rows - tf.shape(value)[0]
    paddings = [[0, missing]] + [[0, 0]] * (value.shape.rank - 1)
    filled = tf.pad(value, paddings, constant_values=tf.cast(padding_value, value.dtype))
    return tf.ensure_shape(filled, [rows] + value.shape.as_list()[1:])


def batch_dataset(
    dataset: tf.data.Dataset,
    tokenizer: CharTokenizer,
    batch_size: int,
    max_seq_length: int,
    shuffle_seed: int | None = None,
    static_shapes: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """{"text", "tags"} elements -> (features, labels) batches, bucketed by length.

    Args:
        dataset: tf.data.Dataset. Elements {"text": string, "tags": int32 [chars]}, chars <= max_seq_length - 2.
        tokenizer: CharTokenizer. The tokenizer the export will use.
        batch_size: int. Examples per batch (per replica when input_context is given).
        max_seq_length: int. Longest packed sequence, [CLS] and [SEP] included.
        shuffle_seed: int or None. Shuffle with this seed (one fixed order; pass seed + epoch for a new order
            each epoch, reproducibly), or keep file order if None.
        static_shapes: bool. Pad every batch to its bucket boundary, and a bucket's last batch to the batch size
            with empty rows (TPU).
        input_context: tf.distribute.InputContext or None. Shard by input pipeline for multi-worker runs.
        repeat: bool. Pass after pass without end, for loops that count steps; every pass is the same
            permutation and ends with its buckets' partial batches (batches_per_pass counts a pass's steps).

    Returns:
        Batches (features, labels): features {"token_ids", "segment_ids", "padding_mask"} of shape [B, T];
        labels {"tags", "tag_mask"} of shape [B, T - 1].
    """
    if input_context is not None and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(100_000, seed=shuffle_seed, reshuffle_each_iteration=False)

    def tokenize(element):
        ids = tokenizer(element["text"])[: max_seq_length - 2]
        return {"ids": ids, "tags": element["tags"][: max_seq_length - 2], "length": tf.shape(ids)[0]}

    # Bucket k holds packed lengths up to boundaries[k]; the last bucket is max_seq_length itself.
    boundaries = bucket_boundaries(max_seq_length, static_shapes) + [max_seq_length]
    dataset = dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    replicas = replicas_per_pipeline(input_context) if input_context is not None else 1
    dataset = bucket_batches(dataset, boundaries, batch_size, {"ids": [None], "tags": [None], "length": []},
                             {"ids": tokenizer.pad_id, "tags": 0, "length": 0}, static_shapes, replicas)

    def to_model_inputs(batch):
        longest = tf.reduce_max(batch["length"]) + 2
        if static_shapes:  # the bucket's own length, so each bucket has one shape and XLA compiles it once
            length = tf.reduce_min(tf.boolean_mask(boundaries, tf.constant(boundaries) >= longest))
        else:
            length = longest
        ids = tf.RaggedTensor.from_tensor(batch["ids"], lengths=batch["length"])
        features = tokenizer.pack(ids, length)
        tags = tf.RaggedTensor.from_tensor(batch["tags"], lengths=batch["length"])
        labels = {
            "tags": tags.to_tensor(default_value=0, shape=[tf.shape(batch["tags"])[0], length - 1]),
            "tag_mask": tf.sequence_mask(batch["length"], length - 1),
        }
        return features, labels

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if repeat:
        # After the batching, not before: each pass ends with its buckets' partial batches. Repeated before,
        # the stream never ended, so a bucket too sparse to fill a batch before the epoch's last step (the
        # longest sentences: Resume's 111-178 characters) was never trained on, in any epoch.
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def batches_per_pass(shards: Sequence[Mapping[int, int]], global_batch: int, max_seq_length: int,
                     static_shapes: bool = False, replicas: int = 1) -> int:
    """Train steps that one pass of batch_dataset (or masked_lm_batches) takes: an epoch's steps.

    An epoch is this many steps, so that it ends where its pass ends, partial batches included. With several
    input pipelines (workers, TPU hosts) each reads its own shard, and the steps are those of the longest
    shard's pass; a pipeline whose pass is shorter wraps into its next pass for the last steps (and sees a few
    examples twice).

    Args:
        shards: one {characters: examples of that length} per input pipeline, for the examples of its shard
            (pieces: at most max_seq_length - 2 characters). One pipeline but for multi-worker and multi-host TPU.
        global_batch: int. Examples per step, over all replicas.
        max_seq_length: int. As batch_dataset's.
        static_shapes: bool. As batch_dataset's (its buckets are wider; their last batches are filled up).
        replicas: int. Replicas in sync.
    """
    boundaries = bucket_boundaries(max_seq_length, static_shapes) + [max_seq_length]
    pipelines = len(shards)
    pipeline_batch = global_batch // pipelines  # one bucket batch: a batch for each replica the pipeline feeds
    replica_batch = global_batch // replicas
    replicas_per_pipeline = max(1, replicas // pipelines)
    steps = 1
    for length_counts in shards:
        per_bucket = collections.Counter()
        for length, count in length_counts.items():
            per_bucket[bisect.bisect_left(boundaries, min(length, max_seq_length - 2) + 2)] += count
        batches = 0  # per replica
        for count in per_bucket.values():
            full, rest = divmod(count, pipeline_batch)
            # A partial bucket batch: cut into per-replica batches, or, static, filled up (one batch a replica).
            partial = replicas_per_pipeline if static_shapes else -(-rest // replica_batch)
            batches += full * replicas_per_pipeline + (partial if rest else 0)
        steps = max(steps, -(-batches // replicas_per_pipeline))
    return steps
