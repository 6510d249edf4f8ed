import collections
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from tiny import SHARED_DATA

from tfner import data
from tfner.labels import Span, TagSet
from tfner.tokenizer import CharTokenizer, build_vocabulary


def write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return str(path)


def test_conll_space_and_tab_separated(tmp_path):
    path = write(tmp_path, "a.bio", "张 B-PER\n三 I-PER\n在\tO\n\n北 B-LOC\n京 I-LOC\n")
    assert data.read_examples(path) == [
        data.Example("张三在", (Span(0, 2, "PER"),)),
        data.Example("北京", (Span(0, 2, "LOC"),)),
    ]


def test_conll_trailing_whitespace_after_the_tag_is_not_part_of_it(tmp_path):
    path = write(tmp_path, "a.bio", "张\tB-PER \n三\tI-PER\t\n在 O  \n")
    assert data.read_examples(path) == [data.Example("张三在", (Span(0, 2, "PER"),))]


def test_conll_ill_formed_tags_are_repaired_and_counted(tmp_path, caplog):
    path = write(tmp_path, "a.bmes", "深 M-ORG\n圳 E-ORG\n人 O\n")
    with caplog.at_level(logging.WARNING):
        examples = data.read_examples(path)
    assert examples[0].spans == (Span(0, 2, "ORG"),)
    assert "1 sentence(s) have a continuation tag with no begin (line 1)" in caplog.text


def test_conll_repair_warning_names_the_line_of_the_tag(tmp_path, caplog):
    path = write(tmp_path, "a.bio", "一 O\n" * 30 + "张 I-PER\n三 I-PER\n")
    with caplog.at_level(logging.WARNING):
        examples = data.read_examples(path)
    assert examples[0].spans == (Span(30, 32, "PER"),)
    assert "1 sentence(s) have a continuation tag with no begin (line 31)" in caplog.text


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.bio", "张 B-PER\n三三 I-PER\n", "a.bio:2: expected one character"),
        ("a.bio", "张 B-PER\n三 X-PER\n", "a.bio:2: unknown tag 'X-PER'"),
        ("a.bio", "张B-PER\n", "a.bio:1: expected one character"),
        ("a.bio", "张\tB-JOB TITLE\n", "a.bio:1: tag 'B-JOB TITLE' holds whitespace; an entity type is one word"),
        ("a.bio", "\n\n", "a.bio: the file is empty"),
        ("a.json", '{"text": "北京", "label": {"LOC": {"北京": [[0, 2]]}}}\n', "a.json:1: entity '北京' of type 'LOC' [0, 2] (end inclusive) is outside"),
        ("a.json", '{"text": "北京", "label": {"LOC": {"上海": [[0, 1]]}}}\n', "reads '北京', not '上海'"),
        ("a.json", '{"text": "x"}\n{"text": \n', "a.json:2: not a JSON object"),
        ("a.jsonl", '{"text": "北京", "entities": [{"start": 0, "label": "LOC"}]}\n', "a.jsonl:1: each entity needs"),
        ("a.jsonl", '{"txt": "北京"}\n', "a.jsonl:1: expected an object with a string field 'text'"),
        # Each of these read as no entities, or other ones, without a word:
        ("a.jsonl", '{"text": "北京", "label": {"LOC": {"北京": [[0, 1]]}}}\n',
         "a.jsonl:1: a CLUENER record ('label', no 'entities') in a file read as tfner JSONL (.jsonl); name the "
         "file .json, or set data.format: cluener"),
        ("a.json", '{"text": "北京", "entities": [{"start": 0, "end": 2, "label": "LOC"}]}\n',
         "a.json:1: a tfner JSONL record ('entities', no 'label') in a file read as CLUENER (.json)"),
        ("a.json", '{"text": "张三李四", "label": {"PER": {"张三": [[0, 1]]}, "PER": {"李四": [[2, 3]]}}}\n',
         "a.json:1: the key 'PER' appears twice in one object"),
        ("a.json", '{"text": "北京", "label": false}\n', "a.json:1: 'label' must map type -> {mention"),
        ("a.json", '{"text": "北京", "label": {"LOC": []}}\n', "a.json:1: 'label'.LOC must map mention"),
        ("a.json", '{"text": "北京", "label": {"LOC": {"北京": []}}}\n',
         "a.json:1: LOC/北京: positions must be a non-empty list of [start, end], got []"),
        ("a.jsonl", '{"text": "😀张三在", "entities": [{"start": 2, "end": 4, "label": "PER", "text": "张三"}]}\n',
         "a.jsonl:1: entity 'PER' [2, 4) reads '三在', not its 'text' '张三'; offsets count code points"),
        ("a.bio", "张 B-PER\u200b\n三 I-PER\u200b\n", "a.bio:1: tag 'B-PER\\u200b' holds the invisible character U+200B"),
        ("a.jsonl", '{"text": "北京", "entities": [{"start": 0, "end": 2, "label": "LOC\\u200b"}]}\n',
         "a.jsonl:1: entity type 'LOC\\u200b' holds the invisible character U+200B"),
        ("a.bio", "张 B-PER\n\u3000\n三 I-PER\n", "a.bio:2: expected one character"),  # was a sentence break
        ("a.bio", "e\u0301 B-PER\n", "a.bio:1: the token 'e\u0301' is 2 code points (U+0065, U+0301); tfner reads one"),
        ("a.bio.gz", "", "a.bio.gz: compressed (.gz); training data is read uncompressed: decompress it first"),
    ],
)
def test_bad_input_names_file_line_and_problem(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(data.DataError) as error:
        data.read_examples(path)
    assert message in str(error.value)


def test_a_crlf_file_written_again_in_text_mode_keeps_its_sentences(tmp_path):
    """\r\r\n (a CRLF file rewritten by Windows' text mode) put a blank line after every line: every character
    was its own sentence, and multi-character entities became one-character ones."""
    path = tmp_path / "a.bio"
    path.write_bytes("张 B-PER\r\r\n三 I-PER\r\r\n在 O\r\r\n\r\r\n北 B-LOC\r\r\n京 I-LOC\r\r\n".encode())
    assert data.read_examples(str(path)) == [data.Example("张三在", (Span(0, 2, "PER"),)),
                                             data.Example("北京", (Span(0, 2, "LOC"),))]


def test_an_iob1_file_read_as_bio_is_told_to_set_its_scheme(tmp_path, caplog):
    path = write(tmp_path, "a.bio", "张 I-PER\n三 I-PER\n\n北 I-LOC\n京 I-LOC\n\n王 B-PER\n")
    with caplog.at_level(logging.WARNING):
        data.read_examples(path)
    assert "2 sentence(s) have a continuation tag with no begin" in caplog.text
    assert "if the file is IOB1" in caplog.text and "set data.scheme: IOB1" in caplog.text


def test_wrong_encoding_names_the_line(tmp_path):
    path = write(tmp_path, "gbk.bio", "张 B-PER\n三 I-PER\n", encoding="gbk")
    with pytest.raises(data.DataError, match=r"gbk.bio:1: not UTF-8 .*iconv -f GBK"):
        data.read_examples(path)


def test_missing_file_or_glob(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.read_examples(str(tmp_path / "*.bio"))


def test_jsonl_round_trip_and_cluener_inclusive_ends(tmp_path):
    cluener = write(tmp_path, "c.json", '{"text": "去北京天安门", "label": {"scene": {"天安门": [[3, 5]]}, "address": {"北京": [[1, 2]]}}}\n')
    examples = data.read_examples(cluener)
    assert examples[0].spans == (Span(1, 3, "address"), Span(3, 6, "scene"))
    out = str(tmp_path / "out.jsonl")
    data.write_jsonl(examples, out)
    assert data.read_examples(out) == examples


@pytest.mark.parametrize(
    "folder, split, sentences, chars, entities",
    [
        # SOURCE.txt: 13,438 entities (B + S) and 2 ill-formed continuations, which the rule reads as 2 more.
        ("resume_ner", "train.char.bmes", 3821, 124099, 13438 + 2),
        ("resume_ner", "dev.char.bmes", 463, 13890, 1497),
        ("resume_ner", "test.char.bmes", 477, 15100, 1630),
        ("cluener2020", "train.json", 10748, 401764, 23971),
        ("cluener2020", "dev.json", 1343, 50260, 3072),
        ("cluener2020", "test.json", 1345, 50972, 0),
    ],
)
def test_real_corpora_read_completely(folder, split, sentences, chars, entities):
    path = os.path.join(SHARED_DATA, folder, split)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (set TFNER_DATA)")
    examples = data.read_examples(path)
    assert len(examples) == sentences
    assert sum(len(e.text) for e in examples) == chars
    assert sum(len(e.spans) for e in examples) == entities


def test_cluener_overlap_is_dropped_with_a_warning(caplog):
    path = os.path.join(SHARED_DATA, "cluener2020", "train.json")
    if not os.path.exists(path):
        pytest.skip("CLUENER not present")
    examples = data.read_examples(path)
    with caplog.at_level(logging.WARNING):
        data.encode_examples(examples, TagSet(data.entity_types(examples)))
    # SOURCE.txt's one overlapping pair is a book title holding two company names: both companies go.
    assert "2 overlapping span(s) dropped" in caplog.text


def test_split_long_never_cuts_an_entity():
    example = data.Example("0123456789", (Span(3, 6, "X"), Span(8, 10, "Y")))
    pieces = data.split_long([example], 5)
    assert [p.text for p in pieces] == ["012", "34567", "89"]
    assert [p.spans for p in pieces] == [(), (Span(0, 3, "X"),), (Span(0, 2, "Y"),)]


def test_split_long_keeps_overlapping_entities_together_when_a_cut_before_both_exists():
    """The cut moved back to A's start, inside B, which overlaps A: B was in no piece, without a warning."""
    example = data.Example("abcdefghijklmnopqrst", (Span(1, 7, "B"), Span(6, 10, "A")))
    pieces = data.split_long([example], 9)
    assert [p.text for p in pieces] == ["a", "bcdefghij", "klmnopqrs", "t"]
    assert pieces[1].spans == (Span(0, 6, "B"), Span(5, 9, "A"))


EXAMPLES = [
    data.Example("张三在北京", (Span(0, 2, "PER"), Span(3, 5, "LOC"))),
    data.Example("李四", (Span(0, 2, "PER"),)),
    data.Example("上海很大" * 5, (Span(0, 2, "LOC"),)),
]


def _tools():
    tag_set = TagSet(["LOC", "PER"])
    return tag_set, CharTokenizer(build_vocabulary(e.text for e in EXAMPLES))


def test_batches_align_tags_with_characters():
    tag_set, tokenizer = _tools()
    batches = list(data.batch_dataset(data.examples_dataset(EXAMPLES, tag_set), tokenizer, 8, 32))
    assert len(batches) == 2  # lengths 7 and 4 share the 8-token bucket; the 22-token text has its own
    features, labels = batches[0]
    tokens = features["token_ids"].numpy()
    assert tokens.shape == (2, 7) and labels["tags"].shape == (2, 6)
    first = [tokenizer.vocabulary[i] for i in tokens[0]]
    assert first == ["[CLS]", "张", "三", "在", "北", "京", "[SEP]"]
    assert [tag_set.tags[i] for i in labels["tags"][0].numpy()[:5]] == ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]
    np.testing.assert_array_equal(labels["tag_mask"].numpy()[1], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(features["padding_mask"].numpy()[1], [1, 1, 1, 1, 0, 0, 0])


def test_buckets_are_narrow_unless_shapes_are_static():
    tag_set, tokenizer = _tools()
    examples = [data.Example("张三在北京", ()), data.Example("李四" * 7, ())]  # 7 and 16 tokens
    dataset = data.examples_dataset(examples, tag_set)
    widths = sorted(f["token_ids"].shape[1] for f, _ in data.batch_dataset(dataset, tokenizer, 8, 64))
    assert widths == [7, 16]  # 8-token buckets: the short text is not padded to the long one
    assert data.bucket_boundaries(40) == [8, 16, 24, 32]
    assert data.bucket_boundaries(40, static_shapes=True) == [16, 32]


def test_static_shapes_pad_to_bucket_and_fill_the_last_batch_with_empty_rows():
    """One shape a bucket, batch size included, and no example dropped (the last, partial batch of a bucket was
    dropped: the longest sentences, in the sparsest buckets, were never trained on, on a TPU)."""
    tag_set, tokenizer = _tools()
    dataset = data.batch_dataset(data.examples_dataset(EXAMPLES * 3, tag_set), tokenizer, 2, 64, static_shapes=True)
    assert dataset.element_spec[0]["token_ids"].shape[0] == 2
    batches = [(tuple(f["token_ids"].shape), sorted(l["tag_mask"].numpy().sum(axis=1).tolist())) for f, l in dataset]
    assert sorted(batches) == [((2, 16), [2, 5])] * 3 + [((2, 32), [0, 20]), ((2, 32), [20, 20])]  # 3 x 20: 0 filled


def test_input_context_shards():
    tag_set, tokenizer = _tools()
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    dataset = data.batch_dataset(data.examples_dataset(EXAMPLES, tag_set), tokenizer, 8, 32, input_context=context)
    texts = ["".join(tokenizer.vocabulary[i] for i in row[1:-1] if i) for f, _ in dataset for row in f["token_ids"].numpy()]
    assert texts == ["李四"]


def test_tfrecord_round_trip(tmp_path):
    tag_set, _ = _tools()
    paths = data.write_tfrecords(EXAMPLES, tag_set, str(tmp_path / "train"), num_shards=2)
    assert [os.path.basename(p) for p in paths] == ["train.tfrecord-00000-of-00002", "train.tfrecord-00001-of-00002"]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    back = data.read_tfrecords([str(tmp_path / "train.tfrecord-*")])
    assert sorted(back, key=lambda e: e.text) == sorted(EXAMPLES, key=lambda e: e.text)


def test_tfrecord_shards_of_two_writers_read_through_their_own_tag_sets(tmp_path):
    """Each prefix's shards hold ids of the tag set written beside them; ids of one read with the other's set
    would turn LOC into ORG."""
    data.write_tfrecords([data.Example("北京", (Span(0, 2, "LOC"),))], TagSet(["LOC", "PER"]), str(tmp_path / "a"))
    data.write_tfrecords([data.Example("李四", (Span(0, 2, "PER"),))], TagSet(["ORG", "PER"]), str(tmp_path / "b"))
    back = data.read_tfrecords([str(tmp_path / "a.tfrecord-*"), str(tmp_path / "b.tfrecord-*")])
    assert back == [data.Example("北京", (Span(0, 2, "LOC"),)), data.Example("李四", (Span(0, 2, "PER"),))]


def test_tfrecord_writes_refuse_bad_input_and_leave_nothing_behind(tmp_path):
    tag_set = TagSet(["PER"])
    with pytest.raises(data.DataError, match=r"example 1 \('北京'\) has entity type\(s\) \['LOC'\] that the tag set "
                                             r"\(PER\) does not hold"):  # was a bare KeyError: 'B-LOC'
        data.write_tfrecords([data.Example("北京", (Span(0, 2, "LOC"),))], tag_set, str(tmp_path / "a"))
    with pytest.raises(ValueError, match="num_shards must be an integer >= 1; got 0"):  # was a ZeroDivisionError
        data.write_tfrecords(EXAMPLES[:1], tag_set, str(tmp_path / "a"), num_shards=0)
    with pytest.raises(data.DataError, match=r"example 2 \('a\\ud800b'\): U\+D800 at character 1 is half of a UTF-16"):
        data.write_tfrecords([EXAMPLES[1], data.Example("a\ud800b", ())], tag_set, str(tmp_path / "a"), num_shards=2)
    assert os.listdir(tmp_path) == []  # the staged shards of the failed write were left behind
    with pytest.raises(data.DataError, match=r"no-folder/a: the folder .*no-folder does not exist; create it first"):
        data.write_tfrecords([EXAMPLES[1]], tag_set, str(tmp_path / "no-folder" / "a"))  # a hidden .tmp was named


@pytest.mark.parametrize("ids, problem", [([1, 9], "tag id 9, outside 0..4 of"), ([-4, -2], "tag id -4, outside"),
                                          ([1, 3, 0], "3 tag ids for 2 characters")])
def test_tfrecord_tag_ids_that_do_not_fit_the_text_or_tag_set_are_named(tmp_path, ids, problem):
    """An id past the tag list was a bare IndexError; a negative one read silently as another tag."""
    data.write_tfrecords([data.Example("张三", (Span(0, 2, "PER"),))], TagSet(["PER"]), str(tmp_path / "a"))
    shard = str(tmp_path / "a.tfrecord-00000-of-00001")
    feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=["张三".encode()])),
               "tags": tf.train.Feature(int64_list=tf.train.Int64List(value=ids))}
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    with pytest.raises(data.DataError, match=rf"a.tfrecord-00000-of-00001: record 1 has {problem}"):
        data.read_tfrecords([shard])


def test_one_steps_replicas_get_batches_of_one_bucket():
    """Two replicas fed by one pipeline (mirrored GPUs, a TPU host) take consecutive batches: they come from one
    length bucket, so under static shapes (TPU) they have one shape."""
    tag_set, tokenizer = _tools()
    examples = [data.Example("张" * n, ()) for n in (3, 20, 4, 21, 5, 19, 6, 18)]  # <= 8 and 17-24 tokens
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    assert data.replicas_per_pipeline(context) == 2
    for static_shapes in (True, False):
        batches = data.batch_dataset(data.examples_dataset(examples, tag_set), tokenizer, 2, 64,
                                     static_shapes=static_shapes, input_context=context)
        lengths = [sorted(f["padding_mask"].numpy().sum(axis=1)) for f, _ in batches]
        assert len(lengths) == 4 and all(len(batch) == 2 for batch in lengths)
        steps = [sorted(lengths[i] + lengths[i + 1]) for i in (0, 2)]
        assert sorted(steps) == [[5, 6, 7, 8], [20, 21, 22, 23]], steps  # [CLS] and [SEP] counted
        if static_shapes:
            shapes = [f["token_ids"].shape for f, _ in batches]
            assert shapes[0] == shapes[1] and shapes[2] == shapes[3]
    alone = data.batch_dataset(data.examples_dataset(examples, tag_set), tokenizer, 2, 64)
    assert [f["token_ids"].shape[0] for f, _ in alone] == [2, 2, 2, 2]


@pytest.mark.parametrize("replicas, static_shapes", [(1, False), (2, False), (1, True), (2, True)])
def test_an_epoch_of_the_repeated_stream_is_one_pass_with_its_partial_batches(replicas, static_shapes):
    """Resume train's pieces, batched as the Trainer batches them: the first batches_per_pass global steps of the
    endless stream hold every piece once.
    The stream was repeated before its buckets, and an epoch counted pieces / batch size steps: the sentences of
    111 characters and more, in buckets too sparse to fill a batch of 32 by then, were never trained on."""
    pieces = data.split_long(data.read_examples(os.path.join(SHARED_DATA, "resume_ner", "train.char.bmes")), 126)
    tag_set = TagSet(sorted({s.label for e in pieces for s in e.spans}))
    tokenizer = CharTokenizer(build_vocabulary(e.text for e in pieces))
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=replicas)
    stream = data.batch_dataset(data.examples_dataset(pieces, tag_set), tokenizer, 32 // replicas, 128,
                                shuffle_seed=7, static_shapes=static_shapes, input_context=context, repeat=True)
    lengths = [len(p.text) for p in pieces]
    steps = data.batches_per_pass([collections.Counter(lengths)], 32, 128, static_shapes, replicas)
    seen = [int(n) - 2 for f, _ in stream.take(steps * replicas) for n in f["padding_mask"].numpy().sum(axis=1)]
    one_pass = [int(n) - 2 for f, _ in data.batch_dataset(
        data.examples_dataset(pieces, tag_set), tokenizer, 32 // replicas, 128, shuffle_seed=7,
        static_shapes=static_shapes, input_context=context) for n in f["padding_mask"].numpy().sum(axis=1)]
    assert sorted(seen) == sorted(one_pass)  # the epoch ends where the pass ends
    # Every piece once (static shapes: and the empty rows that fill each bucket's last batch up).
    assert sorted(n for n in seen if n) == sorted(len(p.text) for p in pieces)
    assert max(seen) == 126 and steps > -(-len(pieces) // 32) and (0 in seen) == static_shapes
    # Two pipelines (workers), a replica each: the epoch is the longer of the two shards' passes.
    shards = [collections.Counter(lengths[0::2]), collections.Counter(lengths[1::2])]
    alone = [data.batches_per_pass([shard], 16, 128, static_shapes) for shard in shards]
    assert data.batches_per_pass(shards, 32, 128, static_shapes, replicas=2) == max(alone)


WEIBO_LIKE = "我 O\n\ufffd\ufffd O\n在 O\n北 B-GPE.NAM\n京 I-GPE.NAM\n\n\ufffd\ufffd O\n好 O\n"  # Weibo NER's tags


def test_conll_lost_astral_character_stops_by_default_with_the_way_through(tmp_path):
    """Weibo NER (2nd version) writes an emoji lost in a UTF-16 round trip as two U+FFFD in one token."""
    path = write(tmp_path, "weibo.bio", WEIBO_LIKE)
    with pytest.raises(data.DataError, match=r"weibo.bio:2: the token is two U\+FFFD.*data.lost_characters: replace"):
        data.read_examples(path)


def test_conll_lost_astral_character_read_as_one_character_and_counted(tmp_path, caplog):
    from tfner.config import ConfigError, load_config
    from tfner.train import load_corpus

    path = write(tmp_path, "weibo.bio", WEIBO_LIKE)
    with caplog.at_level(logging.WARNING):
        examples = data.read_examples(path, lost_characters="replace")
    # One character for the lost one, so offsets count the original text's code points.
    assert examples == [data.Example("我\ufffd在北京", (Span(3, 5, "GPE.NAM"),)), data.Example("\ufffd好")]
    assert "weibo.bio: 2 token(s) of two U+FFFD (a lost astral character) read as one U+FFFD each (line 2, line 7)" \
        in caplog.text
    corpus = load_corpus(load_config(None, [f"data.train={path}", "data.lost_characters=replace"]))
    assert [e.text for e in corpus.train] == ["我\ufffd在北京", "\ufffd好"]
    with pytest.raises(ConfigError, match="'data.lost_characters' must be one of error, replace"):
        load_config(None, ["data.lost_characters=drop"])
    for token in ("\ufffd\ufffd\ufffd", "\ufffd\ufffd\ufffd\ufffd"):  # not one lost character: still an error
        bad = write(tmp_path, "bad.bio", f"{token} O\n")
        with pytest.raises(data.DataError, match="bad.bio:1: expected one character"):
            data.read_examples(bad, lost_characters="replace")


_KILLED_REWRITE = """
import os, signal, sys
import tensorflow as tf
from tfner import data
from tfner.labels import Span, TagSet

point, prefix = sys.argv[1], sys.argv[2]
real_rename, real_gfile = tf.io.gfile.rename, tf.io.gfile.GFile

def die():
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a lost machine would: no cleanup

def rename(src, dst, overwrite=False):
    if point == "first shard rename" or (point == "tags.txt write" and "tags.txt" in dst):
        die()
    return real_rename(src, dst, overwrite)

def gfile(path, mode="r"):
    if point == "tags.txt write" and "tags.txt" in path and "w" in mode:
        die()
    return real_gfile(path, mode)

tf.io.gfile.rename, tf.io.gfile.GFile = rename, gfile
examples = [data.Example("李四在上海", (Span(0, 2, "PER"), Span(3, 5, "PER")))] * 40
data.write_tfrecords(examples, TagSet(["PER"]), prefix, num_shards=2)
"""


@pytest.mark.parametrize("point", ["first shard rename", "tags.txt write"])
def test_a_killed_rewrite_of_shards_never_reads_back_as_other_data(tmp_path, point):
    """A prefix rewritten with another tag set, the writer SIGKILLed halfway: a reader of the usual glob gets the
    previous shards whole or a DataError, never the new shards through the old tag set (entities silently of the
    wrong type) nor a half-written temporary shard (DataLossError)."""
    import signal
    import subprocess
    import sys

    from tiny import REPO

    prefix = str(tmp_path / "train")
    before = [data.Example("李四在上海", (Span(0, 2, "PER"), Span(3, 5, "LOC")))] * 40
    data.write_tfrecords(before, TagSet(["LOC", "PER"]), prefix, num_shards=2)
    done = subprocess.run([sys.executable, "-c", _KILLED_REWRITE, point, prefix], cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    try:
        back = data.read_tfrecords([prefix + ".tfrecord-*"])
    except data.DataError as e:  # refused, naming what is missing: fine
        assert "tags.txt" in str(e), e
        return
    assert back == before
