import os
import unicodedata

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
        ("İ", ["i"]),  # lowercases to two characters (i + U+0307); BERT gives i, as for every accented capital
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
    import transformers  # a test dependency (setup.cfg), BERT's own tokenizer as the reference

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


def test_agrees_with_berts_own_tokenizer_on_cjk_compatibility_supplement(bert_tokenizer):
    # BERT counts U+2F800-U+2FA1F as Chinese and NFD-normalises them to unified ideographs (U+2F804 -> 你).
    import transformers  # a test dependency (setup.cfg), BERT's own tokenizer as the reference

    reference = transformers.BertTokenizer(VOCAB, do_lower_case=True)
    text = "".join(chr(c) for c in range(0x2F800, 0x2FA20) if unicodedata.name(chr(c), ""))
    expected = reference.convert_tokens_to_ids(reference.tokenize(text))
    assert len(expected) == len(text)
    assert bert_tokenizer(tf.constant([text]))[0].numpy().tolist() == expected
    assert tokens(bert_tokenizer, "\U0002F804们") == ["你", "们"]


def test_vocabulary_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "[PAD]\n[UNK]\n[CLS]\n[SEP]\n中\n".encode())
    assert read_vocabulary(str(path)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "中"]
