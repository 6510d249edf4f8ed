import os

import pytest
import tensorflow as tf
from tiny import SHARED_DATA

from tfner.tokenizer import CharTokenizer, build_vocabulary, read_vocabulary

VOCAB = os.path.join(SHARED_DATA, "vocab", "vocab.txt")


@pytest.fixture(scope="module")
def bert_tokenizer():
    if not os.path.exists(VOCAB):
        pytest.skip("BERT vocab not present (set TFNER_DATA)")
    return CharTokenizer(read_vocabulary(VOCAB))


def tokens(tokenizer, text):
    ids = tokenizer(tf.constant([text]))[0].numpy()
    return [tokenizer.vocabulary[i] for i in ids]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("张三在北京", ["张", "三", "在", "北", "京"]),
        ("Apple", ["a", "p", "p", "l", "e"]),  # lowercased: BERT-Base Chinese is uncased
        ("2024年", ["2", "0", "2", "4", "年"]),
        ("ＡＢ１２", ["a", "b", "１", "２"]),  # full-width folded only where the vocab lacks the form itself
        ("a b\t\n\u3000c", ["a", "[unused1]", "b", "[unused1]", "[unused1]", "[unused1]", "c"]),
        ("😀中", ["[UNK]", "中"]),  # an astral-plane character missing from the vocab
        ("e\u0301", ["e", "[UNK]"]),  # a lone combining mark keeps its own token
        ("é", ["e"]),  # precomposed: accent stripped, as BERT's normaliser does
        ("", []),
    ],
)
def test_one_token_per_code_point(bert_tokenizer, text, expected):
    assert tokens(bert_tokenizer, text) == expected


def test_invalid_utf8_is_replaced_not_an_error(bert_tokenizer):
    ids = bert_tokenizer(tf.constant([b"a\xff\xfeb", "好".encode()]))
    assert ids.row_lengths().numpy().tolist() == [4, 1]
    assert [bert_tokenizer.vocabulary[i] for i in ids[0].numpy()] == ["a", "[UNK]", "[UNK]", "b"]


def test_agrees_with_berts_own_tokenizer_on_cjk(bert_tokenizer):
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertTokenizer(VOCAB, do_lower_case=True)
    with open(os.path.join(SHARED_DATA, "resume_ner", "test.char.bmes"), encoding="utf-8") as f:
        chars = [line.split()[0] for line in f if line.strip()]
    cjk = "".join(c for c in chars if "\u4e00" <= c <= "\u9fff")[:3000]
    expected = reference.convert_tokens_to_ids(reference.tokenize(cjk))
    assert len(expected) == len(cjk)
    assert bert_tokenizer(tf.constant([cjk]))[0].numpy().tolist() == expected


def test_pack_adds_cls_sep_and_padding(bert_tokenizer):
    packed = bert_tokenizer.pack(bert_tokenizer(tf.constant(["张三", ""])), 5)
    assert packed["token_ids"].numpy().tolist() == [[101, 2476, 676, 102, 0], [101, 102, 0, 0, 0]]
    assert packed["padding_mask"].numpy().tolist() == [[True] * 4 + [False], [True, True, False, False, False]]


def test_build_vocabulary_from_training_text():
    vocabulary = build_vocabulary(["北京北京", "Ａa 上"])
    assert vocabulary[:6] == ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocabulary[6:] == ["a", "京", "北", "上"]  # by count, then by character; Ａ folded into a
    tokenizer = CharTokenizer(vocabulary)
    assert tokens(tokenizer, "北Ａ 京?") == ["北", "a", "[unused1]", "京", "[UNK]"]


def test_vocabulary_without_special_tokens_is_refused(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks \[PAD\], \[UNK\], \[CLS\], \[SEP\]"):
        read_vocabulary(str(path))
