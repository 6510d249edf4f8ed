"""python -m tfner.tag: a corpus through Beam (DirectRunner, one and two worker processes) against tfner.predict.

The corpus is a few hundred real documents (Resume NER test sentences as plain text, CLUENER2020 dev records as
JSON lines) plus long ones (many windows of the tiny model's 30 characters), empty ones, emoji, and one record
of each kind that cannot be tagged, spread over a plain file, a gzip JSONL file and a CLUENER .json file.
"""

import glob
import gzip
import json
import os
import tempfile

import pytest

beam = pytest.importorskip("apache_beam", reason="tfner.tag needs the beam extra: pip install -e '.[beam]'")

from tiny import SHARED_DATA  # noqa: E402

from tfner import data, tag, tag_io  # noqa: E402
from tfner.predict import SavedModelPredictor  # noqa: E402
from tfner.tag_io import Document, ReadSettings  # noqa: E402
from tfner.tag_model import budget_batches, length_batches  # noqa: E402

MAX_CHARS = 2000
EMOJI = "张伟😀在北京🇨🇳的清华大学工作，👨‍👩‍👧一家住在上海。"


def resume_texts():
    return [e.text for e in data.read_examples(os.path.join(SHARED_DATA, "resume_ner", "test.char.bmes"))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Writes the input files; returns their paths and what each should become (documents and dead letters)."""
    root = tmp_path_factory.mktemp("corpus")
    resume = resume_texts()
    long_texts = ["".join(resume[i : i + n]) for i, n in ((0, 4), (10, 9), (30, 20))]  # ~150-700 characters
    assert max(len(t) for t in long_texts) < MAX_CHARS

    # Plain text: a document per line, the line number is its id.
    lines = [t.encode() for t in resume[:150]]
    lines += [b"", EMOJI.encode(), *(t.encode() for t in long_texts)]
    lines += [b"bad \xff\xfe bytes", ("长" * (MAX_CHARS + 1)).encode()]
    text_path = root / "resume.txt"
    text_path.write_bytes(b"\n".join(lines) + b"\n")
    text_errors = {len(lines) - 1: "not_utf8", len(lines): "too_long"}

    # tfner JSONL, gzip: ids, pass-through fields (the gold `entities` clashes with the output's), bad records.
    records = [json.dumps({"id": f"doc-{i}", "text": t, "meta": {"n": i}, "entities": []}, ensure_ascii=False).encode()
               for i, t in enumerate(resume[150:230])]
    records += [
        json.dumps({"id": "empty", "text": ""}).encode(),
        json.dumps({"text": EMOJI, "lang": "zh"}, ensure_ascii=False).encode(),  # no id: the line number
        b"",  # a blank line is not a record
        b'{"id": "broken", "text": ',
        b'{"id": "no-text", "body": "x"}',
        b'{"id": "number", "text": 12}',
        b'["a", "list"]',
        b'{"id": "latin1", "text": "caf\xe9"}',
    ]
    jsonl_path = root / "docs.jsonl.gz"
    with gzip.open(jsonl_path, "wb") as f:
        f.write(b"\n".join(records) + b"\n")
    first_bad = 80 + 4  # 80 documents, 2 more, the blank line, then the bad records from line 84
    jsonl_errors = dict(zip(range(first_bad, first_bad + 5),
                            ("bad_json", "missing_text", "text_not_a_string", "not_an_object", "not_utf8")))

    # CLUENER2020 dev records, as they are (JSON lines with `label`).
    with open(os.path.join(SHARED_DATA, "cluener2020", "dev.json"), "rb") as f:
        cluener_lines = f.read().splitlines()[:100]
    cluener_path = root / "cluener.json"
    cluener_path.write_bytes(b"\n".join(cluener_lines) + b"\n")

    return {
        "paths": [str(text_path), str(jsonl_path), str(cluener_path)],
        "records": len(lines) + (len(records) - 1) + len(cluener_lines),
        "errors": {(str(text_path), line): reason for line, reason in text_errors.items()}
        | {(str(jsonl_path), line): reason for line, reason in jsonl_errors.items()},
        "text_path": str(text_path), "jsonl_path": str(jsonl_path), "cluener_path": str(cluener_path),
        "resume": resume, "long": long_texts,
    }


@pytest.fixture(scope="module")
def model(tmp_path_factory, export_factory):
    """export/ner with version 1 (tfner.tag resolves the version) and the predictor tfner.predict would use."""
    base = str(tmp_path_factory.mktemp("export") / "ner")
    export_factory(base, 1)
    return {"base": base, "predictor": SavedModelPredictor(base)}


def run_tag(corpus, model, output, *extra):
    argv = ["--model", model["base"], "--output", output, "--max_chars", str(MAX_CHARS), "--progress_seconds", "0"]
    for path in corpus["paths"]:
        argv += ["--input", path]
    assert tag.main(argv + list(extra)) == 0
    return read_outputs(output)


def read_outputs(prefix):
    def lines(pattern):
        return [json.loads(line) for path in sorted(glob.glob(pattern)) for line in open(path, encoding="utf-8")]

    paths = tag_io.output_paths(prefix)
    with open(paths["summary"], encoding="utf-8") as f:
        summary = json.load(f)
    return {"shards": sorted(glob.glob(paths["output"])), "documents": lines(paths["output"]),
            "errors": lines(paths["errors"]), "summary": summary}


def assert_same_entities(got, want):
    assert [(e["label"], e["start"], e["end"], e["text"]) for e in got] == \
        [(e["label"], e["start"], e["end"], e["text"]) for e in want]
    # Scores are floats computed in a batch whose width depends on its other texts.
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-4)


@pytest.fixture(scope="module")
def single(corpus, model, tmp_path_factory):
    """The corpus tagged by the DirectRunner in this process, 3 output shards."""
    output = str(tmp_path_factory.mktemp("single") / "tagged" / "part")
    return run_tag(corpus, model, output, "--runner", "DirectRunner", "--num_shards", "3")


@pytest.mark.slow
def test_every_record_is_tagged_like_predict_or_a_dead_letter(corpus, model, single):
    documents, errors, summary = single["documents"], single["errors"], single["summary"]
    assert len(single["shards"]) == 3 and all(p.endswith("-of-00003.jsonl") for p in single["shards"])

    # Nothing lost: every record is a document or a dead letter, and the Beam metrics say the same.
    assert len(documents) + len(errors) == corpus["records"]
    assert summary["records"] == corpus["records"]
    assert (summary["documents"], summary["errors"]) == (len(documents), len(errors))
    assert summary["complete"]

    # Dead letters: each kind of bad record, with its file, line and reason.
    assert {(e["source"], e["line"]): e["reason"] for e in errors} == corpus["errors"]
    assert summary["errors_by_reason"] == {r: list(corpus["errors"].values()).count(r)
                                           for r in set(corpus["errors"].values())}
    assert all(e["error"] and isinstance(e["raw"], str) and len(e["raw"]) <= tag_io.RAW_CHARS for e in errors)

    # The entities tfner.predict gives, document by document (long, empty and emoji ones included).
    texts = [d["text"] for d in documents]
    for document, want in zip(documents, model["predictor"].predict(texts)):
        assert_same_entities(document["entities"], want)
        assert all(document["text"][e["start"] : e["end"]] == e["text"] for e in document["entities"])
    assert {"", EMOJI, *corpus["long"]} <= set(texts)
    assert sum(len(d["entities"]) for d in documents) > 100  # the check above compared something
    by_type = {}
    for document in documents:
        for entity in document["entities"]:
            by_type[entity["label"]] = by_type.get(entity["label"], 0) + 1
    assert summary["entities_by_type"] == dict(sorted(by_type.items()))
    assert summary["characters"] == sum(len(t) for t in texts)


@pytest.mark.slow
def test_ids_sources_and_passed_through_fields(corpus, single):
    by_key = {(d["source"], d["id"]): d for d in single["documents"]}
    # Plain text: the line number is the id.
    for line, text in enumerate(corpus["resume"][:150], start=1):
        assert by_key[(corpus["text_path"], line)]["text"] == text
    assert by_key[(corpus["text_path"], 151)]["text"] == ""
    # tfner JSONL from a gzip file: ids and fields passed through; its gold `entities` kept as input_entities.
    record = by_key[(corpus["jsonl_path"], "doc-3")]
    assert record["text"] == corpus["resume"][153]
    assert record["meta"] == {"n": 3} and record["input_entities"] == []
    assert by_key[(corpus["jsonl_path"], "empty")]["entities"] == []
    assert by_key[(corpus["jsonl_path"], 82)]["lang"] == "zh"  # no id field: the line number
    # CLUENER: no ids, the gold `label` passed through.
    cluener = [d for d in single["documents"] if d["source"] == corpus["cluener_path"]]
    assert len(cluener) == 100 and all("label" in d for d in cluener)
    assert sorted(d["id"] for d in cluener) == list(range(1, 101))


@pytest.mark.slow
def test_two_worker_processes_give_the_same_output(corpus, model, single, tmp_path, monkeypatch, capfd):
    # The worker processes and Beam's job server make scratch folders in the temp dir; none may outlive the run.
    temp_dir = tmp_path / "temp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    monkeypatch.setenv("TMPDIR", str(temp_dir))
    # Fresh worker processes, so TensorFlow's thread pools can be sized there (tfner/tf_threads.py).
    multi = run_tag(corpus, model, str(tmp_path / "part"),
                    "--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
                    "--num_shards", "3", "--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "2")
    assert os.listdir(temp_dir) == []
    # Each worker process loaded the model once, and sized its pools first.
    assert capfd.readouterr().err.count("TensorFlow threads in this worker: intra-op 1, inter-op 2; oneDNN on") == 2

    def keyed(run):
        return {(d["source"], d["id"]): d for d in run["documents"]}

    one, two = keyed(single), keyed(multi)
    assert one.keys() == two.keys()
    for key in one:
        assert_same_entities(two[key]["entities"], one[key]["entities"])
        assert {k: v for k, v in two[key].items() if k != "entities"} == \
            {k: v for k, v in one[key].items() if k != "entities"}
    assert sorted(map(json.dumps, multi["errors"])) == sorted(map(json.dumps, single["errors"]))
    assert multi["summary"]["records"] == single["summary"]["records"] and multi["summary"]["complete"]
    assert len(multi["shards"]) == 3


@pytest.mark.slow
def test_plain_batching_tags_the_same_and_text_can_be_left_out(corpus, model, single, tmp_path):
    """--batching plain (Beam's BatchElements, no length awareness) on the CLUENER file, without the texts."""
    want = {d["id"]: d for d in single["documents"] if d["source"] == corpus["cluener_path"]}
    output = str(tmp_path / "part")
    assert tag.main(["--model", model["base"], "--input", corpus["cluener_path"], "--output", output,
                     "--batching", "plain", "--max_batch_size", "16", "--progress_seconds", "0", "--no_text"]) == 0
    got = read_outputs(output)
    assert {d["id"] for d in got["documents"]} == want.keys()
    for document in got["documents"]:
        assert "text" not in document and "label" in document
        assert_same_entities(document["entities"], want[document["id"]]["entities"])
    assert got["summary"]["complete"] and got["errors"] == []


PRISM = os.environ.get("TFNER_PRISM_LOCATION", "")


@pytest.mark.slow
@pytest.mark.skipif(not PRISM, reason="no Prism binary: set TFNER_PRISM_LOCATION (README, Bulk tagging)")
@pytest.mark.parametrize("batching", ["lengths", "buckets"])
def test_a_portable_runner_gives_the_same_output(corpus, model, single, tmp_path, batching):
    """Prism, Beam's portable runner (a job server speaking the Job API), with tfner's and Beam's batching."""
    got = run_tag(corpus, model, str(tmp_path / "part"), "--runner", "PrismRunner", "--prism_location", PRISM,
                  "--batching", batching, "--length_buckets", "32,64,256", "--max_batch_wait_secs", "1")
    want = {(d["source"], d["id"]): d for d in single["documents"]}
    assert {(d["source"], d["id"]) for d in got["documents"]} == want.keys()
    for document in got["documents"]:
        assert_same_entities(document["entities"], want[(document["source"], document["id"])]["entities"])
    assert got["summary"]["complete"] and got["summary"]["runner"] == "PrismRunner"
    assert got["summary"]["records"] == single["summary"]["records"]


def test_existing_outputs_and_empty_patterns_are_refused_before_running(corpus, model, single, tmp_path):
    prefix = single["summary"]["output"]
    with pytest.raises(FileExistsError, match="earlier run"):
        tag.run(["--model", model["base"], "--input", corpus["text_path"], "--output", prefix])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        tag.run(["--model", model["base"], "--input", str(tmp_path / "*.nothing"), "--output", str(tmp_path / "o")])
    common = ["--model", "m", "--input", "i", "--output", "o"]
    with pytest.raises(SystemExit):  # a typo is not passed on to Beam, which would drop it with a warning
        tag.parse_args(common + ["--max_char", "5"])
    with pytest.raises(SystemExit):  # a negative thread count is refused here, not in every worker
        tag.parse_args(common + ["--tensorflow_intra_op_parallelism", "-1"])
    with pytest.raises(SystemExit):  # Beam's bucketed batching on the DirectRunner (tfner/tag_model.py)
        tag.parse_args(common + ["--batching", "buckets"])
    assert tag.parse_args(common + ["--batching", "buckets", "--runner", "FlinkRunner"])[0].batching == "buckets"


# --------------------------------------------------------------------------
# The functions under the pipeline
# --------------------------------------------------------------------------

SETTINGS = ReadSettings(max_chars=10)


@pytest.mark.parametrize("raw, fmt, want", [
    (b"abc", "text", Document("f", 3, 3, "abc")),
    (b"", "text", Document("f", 3, 3, "")),
    (b'{"text": "abc", "id": 9, "x": [1]}', "json", Document("f", 3, 9, "abc", {"x": [1]})),
    (b'{"text": "abc"}', "json", Document("f", 3, 3, "abc")),
    (b"   ", "json", None),
    (b"\xff", "text", "not_utf8"),
    (b"{", "json", "bad_json"),
    (b"3", "json", "not_an_object"),
    (b'{"body": "abc"}', "json", "missing_text"),
    (b'{"text": null}', "json", "text_not_a_string"),
    (b'{"text": "\\u738b\\ud83d"}', "json", "lone_surrogate"),  # half of an emoji's pair
    (b'{"text": "abc", "note": "\\udc00"}', "json", "lone_surrogate"),  # in a passed-through field
    (b'{"text": "\\u738b\\ud83d\\ude00"}', "json", Document("f", 3, 3, "\u738b\U0001f600")),  # a whole pair
    ("一二三四五六七八九十一".encode(), "text", "too_long"),
])
def test_parse_record(raw, fmt, want):
    got = tag_io.parse_record(raw, "f", 3, fmt, SETTINGS)
    if isinstance(want, str):
        assert got["reason"] == want and (got["source"], got["line"]) == ("f", 3)
    else:
        assert got == want


def test_byte_order_mark_and_line_breaks():
    import io

    stream = io.BytesIO("\ufeffa\r\nb\u2028c\n\nd".encode())
    assert list(tag_io.read_lines(stream)) == [(1, "\ufeffa".encode()), (2, "b\u2028c".encode()), (3, b""), (4, b"d")]
    assert tag_io.parse_record("\ufeffa".encode(), "f", 1, "text", SETTINGS).text == "a"


@pytest.mark.parametrize("path, fmt", [
    ("a.txt", "text"), ("a.jsonl", "json"), ("gs://b/a.json", "json"), ("a.JSONL.GZ", "json"), ("a.txt.bz2", "text"),
    ("a", "text"),
])
def test_detect_format(path, fmt):
    assert tag_io.detect_format(path) == fmt


def test_output_record_renames_clashing_fields_and_can_drop_the_text():
    document = Document("f", 1, "x", "北京", {"entities": [1], "id": 2, "k": 3})
    entities = [{"label": "LOC", "start": 0, "end": 2, "text": "北京", "score": 0.9}]
    assert tag_io.output_record(document, entities) == {
        "id": "x", "source": "f", "text": "北京", "entities": entities, "input_entities": [1], "input_id": 2, "k": 3}
    assert "text" not in tag_io.output_record(document, entities, with_text=False)


def docs(*lengths):
    return [Document("f", i, i, "字" * n) for i, n in enumerate(lengths)]


def test_budget_batches_keep_order_and_bound_documents_and_padded_characters():
    batches = list(budget_batches(docs(1, 2, 3, 4, 50, 1, 1), max_batch_size=3, max_batch_chars=20))
    assert [[d.line for d in b] for b in batches] == [[0, 1, 2], [3], [4], [5, 6]]
    for batch in batches[:1] + batches[2:]:
        assert len(batch) <= 3 and (len(batch) * max(len(d.text) for d in batch) <= 20 or len(batch) == 1)


def test_length_batches_put_similar_lengths_together():
    batches = list(length_batches(docs(100, 1, 90, 2, 95, 3), max_batch_size=3, max_batch_chars=1000))
    assert [[len(d.text) for d in b] for b in batches] == [[1, 2, 3], [90, 95, 100]]


@pytest.mark.parametrize("suffix, compress", [(".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma"), (".deflate", "zlib")])
def test_a_compressed_file_cut_short_leaves_a_truncated_dead_letter(tmp_path, suffix, compress):
    import importlib

    from apache_beam.io.filesystems import FileSystems

    body = "".join(f"第{i}行文本\n" for i in range(2000)).encode()
    blob = importlib.import_module(compress).compress(body)
    whole, cut = tmp_path / f"whole.txt{suffix}", tmp_path / f"cut.txt{suffix}"
    whole.write_bytes(blob)
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    read = [list(tag_io.read_file(str(p), ReadSettings(), FileSystems.open)) for p in (whole, cut)]
    assert len(read[0]) == 2000 and all(isinstance(r, Document) for r in read[0])
    assert isinstance(read[1][-1], dict) and read[1][-1]["reason"] == "truncated"
    assert read[1][-1]["source"] == str(cut) and read[1][-1]["line"] == len(read[1])


def test_a_renamed_field_never_overwrites_another():
    """tfner.tag's output tagged again: its `entities` cannot become `input_entities`, which holds the gold."""
    record = {"id": 1, "source": "a", "text": "北京", "entities": ["run 1"], "input_entities": ["gold"]}
    raw = json.dumps(record).encode()
    document = tag_io.parse_record(raw, "f", 1, "json", ReadSettings())
    record = tag_io.output_record(document, [])
    assert record["input_entities"] == ["gold"] and record["input_input_entities"] == ["run 1"]
    assert record["input_source"] == "a" and record["entities"] == []


def test_the_command_line_names_a_bad_path_without_a_traceback(tmp_path, capsys):
    common = ["--output", str(tmp_path / "o" / "part")]
    assert tag.main(["--model", str(tmp_path / "no-model"), "--input", __file__, *common]) == 2
    assert tag.main(["--model", str(tmp_path), "--input", str(tmp_path / "*.nothing"), *common]) == 2
    err = capsys.readouterr().err
    assert "tfner.tag: " in err and "no-model: no such folder" in err and "no file matches" in err
    assert "Traceback" not in err


def test_a_file_matched_by_two_patterns_is_tagged_once(corpus, model, tmp_path):
    output = str(tmp_path / "part")
    folder = os.path.dirname(corpus["text_path"])
    assert tag.main(["--model", model["base"], "--input", corpus["text_path"], "--input", os.path.join(folder, "*.txt"),
                     "--output", output, "--max_chars", str(MAX_CHARS), "--progress_seconds", "0"]) == 0
    got = read_outputs(output)
    keys = [(d["source"], d["id"]) for d in got["documents"]] + [(e["source"], e["line"]) for e in got["errors"]]
    assert len(keys) == len(set(keys)) == got["summary"]["records"]
    assert {k[0] for k in keys} == {corpus["text_path"]}


def test_an_output_prefix_that_would_delete_another_runs_files_is_refused(tmp_path):
    import argparse

    source = tmp_path / "in.txt"
    source.write_text("北京\n", encoding="utf-8")
    other = tmp_path / "part-news-00000-of-00001.jsonl"  # the output of --output part-news
    other.write_text("{}\n", encoding="utf-8")
    args = argparse.Namespace(input=[str(source)], output=str(tmp_path / "part"))
    with pytest.raises(FileExistsError, match="part-news-00000-of-00001.jsonl exists, and Beam would delete it"):
        tag.check_paths(args)
    tag.check_paths(argparse.Namespace(input=[str(source)], output=str(tmp_path / "other")))  # nothing in the way


@pytest.mark.parametrize("flag", ["--max_chars", "--num_shards"])
def test_a_negative_count_is_refused_by_the_parser(flag):
    with pytest.raises(SystemExit):  # --max_chars -5 sent every document to the dead letters as too_long
        tag.parse_args(["--model", "m", "--input", "i", "--output", "o", flag, "-5"])
    assert getattr(tag.parse_args(["--model", "m", "--input", "i", "--output", "o", flag, "0"])[0], flag[2:]) == 0


@pytest.mark.parametrize("suffix, compress", [(".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma"), (".deflate", "zlib")])
def test_a_damaged_compressed_file_leaves_a_corrupt_dead_letter(tmp_path, suffix, compress):
    """Bytes flipped mid-file make the decompressor fail: what was read stands, a dead letter says where the
    damage starts, and the run goes on (the error used to end the whole run, other files' output with it)."""
    import importlib

    from apache_beam.io.filesystems import FileSystems

    body = "".join(f"第{i}行文本北京欢迎你\n" for i in range(20000)).encode()
    blob = bytearray(importlib.import_module(compress).compress(body))
    for i in range(len(blob) // 2, len(blob) // 2 + 8):
        blob[i] ^= 0xFF
    damaged = tmp_path / f"damaged.txt{suffix}"
    damaged.write_bytes(bytes(blob))
    read = list(tag_io.read_file(str(damaged), ReadSettings(), FileSystems.open))
    assert read and isinstance(read[-1], dict) and read[-1]["reason"] == "corrupt", read[-1:]
    assert read[-1]["line"] == len(read) and "the rest of the file was not read" in read[-1]["error"]
    assert all(isinstance(r, Document) for r in read[:-1]) and len(read) < 20000


def test_empty_corpora_damaged_files_and_two_spellings_of_a_file(model, tmp_path, monkeypatch):
    """An empty corpus is a complete run of 0 records (it used to exit 1, "the counts do not add up"); a damaged
    file beside a good one costs only its own rest; a file named two ways (./a, an absolute path) is read once."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    (tmp_path / "in" / "blank.jsonl").write_bytes(b"\n\n")
    common = ["--model", model["base"], "--progress_seconds", "0"]
    assert tag.main([*common, "--input", "in/empty.txt", "--input", "in/blank.jsonl", "--output", "empty/part"]) == 0
    summary = read_outputs("empty/part")["summary"]
    assert summary["complete"] and (summary["files"], summary["records"]) == (2, 0)

    (tmp_path / "in" / "good.txt").write_text("张三在北京工作。\n李四去了上海。\n", encoding="utf-8")
    blob = bytearray(gzip.compress("".join(f"第{i}行北京\n" for i in range(20000)).encode()))
    blob[len(blob) // 2: len(blob) // 2 + 8] = bytes(b ^ 0xFF for b in blob[len(blob) // 2: len(blob) // 2 + 8])
    (tmp_path / "in" / "damaged.txt.gz").write_bytes(bytes(blob))
    assert tag.main([*common, "--input", "./in/good.txt", "--input", str(tmp_path / "in" / "*.txt*"),
                     "--output", "out/part"]) == 0
    got = read_outputs("out/part")
    good = [d for d in got["documents"] if d["source"].endswith("good.txt")]
    assert [d["id"] for d in sorted(good, key=lambda d: d["id"])] == [1, 2]  # once, under one of its names
    assert [e["reason"] for e in got["errors"]] == ["corrupt"]
    assert got["summary"]["complete"] and got["summary"]["files"] == 3


def test_a_folder_given_as_input_is_refused_before_running(tmp_path, capsys):
    assert tag.main(["--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert ": a folder; name its files, e.g. --input" in err and "Traceback" not in err
