"""The one character tokenizer, in graph, for training and for the exported SavedModel.

Chinese NER labels characters, so tfner gives every Unicode code point of the input exactly one token:
token i is character i, and entity offsets in tokens are offsets in the text. It runs on core TF ops only
(`tf.strings.unicode_decode` and a `tf.lookup.StaticHashTable`), so TensorFlow Serving, which links an old
tf-text, can run it.

How a character becomes an id (the table is computed once in Python, then used in graph):

1. Invalid UTF-8 bytes decode to U+FFFD, never an error that fails a batch.
2. A character that is itself a vocabulary entry maps to that entry (emoji included, if the vocab has them).
3. Otherwise its normal form is looked up: full-width ASCII folded to half-width (Ａ -> A, ０ -> 0), then
   A-Z lowercased when `lowercase` is set, then accents stripped (é -> e), as BERT's own normaliser does;
   only normal forms that are one character keep the 1:1 mapping, so only those are used. Astral-plane
   characters too: the CJK Compatibility Ideographs Supplement (U+2F800-U+2FA1F, which BERT treats as
   Chinese) decomposes to unified ideographs, e.g. U+2F804 -> 你.
4. Whitespace (space, tab, newline, U+3000, ...) maps to `[unused1]` when the vocab has it, else `[UNK]`:
   BERT deletes whitespace, which would break the 1:1 mapping, so it gets a token of its own.
5. Everything else (other emoji, control characters, lone combining marks) maps to `[UNK]`.

`pack` adds [CLS] ... [SEP] and pads with [PAD] to a fixed length.
"""

import collections
import functools
import unicodedata
from collections.abc import Iterable

import tensorflow as tf

from tfner.atomic_write import write_atomically

PAD, UNK, CLS, SEP, MASK, SPACE = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]"
SPECIAL_TOKENS = (PAD, SPACE, UNK, CLS, SEP, MASK)

REPLACEMENT_CHARACTER = 0xFFFD


def read_vocabulary(path: str) -> list[str]:
    """Reads a BERT vocab.txt: one token per line, id = line number."""
    with tf.io.gfile.GFile(path, "r") as f:
        tokens = [line.rstrip("\n").rstrip("\r") for line in f]
    if tokens and tokens[-1] == "":
        tokens.pop()
    if tokens and tokens[0].startswith("\ufeff"):  # a byte-order mark (Windows editors write one), not token text
        tokens[0] = tokens[0][1:]
    missing = [t for t in (PAD, UNK, CLS, SEP) if t not in tokens]
    if missing:
        raise ValueError(f"{path}: vocabulary lacks {', '.join(missing)}; a BERT vocab.txt has them in its first lines")
    return tokens


def write_vocabulary(tokens: list[str], path: str) -> None:
    write_atomically(path, "".join(f"{t}\n" for t in tokens))


def normalize_character(char: str, lowercase: bool = True) -> str:
    """The normal form a character is looked up by when it is not in the vocab itself (steps 3-4 above)."""
    if char.isspace():
        return " "
    code = ord(char)
    if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII block: same order as ASCII, 0xFEE0 above it
        char = chr(code - 0xFEE0)
    if lowercase and len(char.lower()) == 1:
        char = char.lower()
    stripped = "".join(c for c in unicodedata.normalize("NFD", char) if unicodedata.category(c) != "Mn")
    if len(stripped) != 1:
        return char
    # İ (U+0130) lowercases to i + U+0307, two characters, so only its stripped form "I" can still be lowercased.
    return stripped.lower() if lowercase and len(stripped.lower()) == 1 else stripped


def build_vocabulary(texts: Iterable[str], lowercase: bool = True, min_count: int = 1) -> list[str]:
    """A character vocabulary for models trained from scratch: special tokens, then characters by frequency.

    Characters are counted by their normal form, so Ａ and a share one entry.
    """
    counts = collections.Counter(normalize_character(c, lowercase) for text in texts for c in text)
    counts.pop(" ", None)  # whitespace has [unused1]
    # NUL reads as [UNK]: as a vocabulary entry it is a zero-length key to keras-hub's tokenizer, which then
    # refused to save a pretrained backbone, after every step of its run had been trained.
    counts.pop("\x00", None)
    chars = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    return list(SPECIAL_TOKENS) + [c for c in chars if c not in SPECIAL_TOKENS]


class CharTokenizer(tf.Module):
    """UTF-8 text -> one token id per code point, in graph.

    Args:
        vocabulary: list of str. BERT vocab entries; id = position.
        lowercase: bool. Fold A-Z to a-z when the character itself is not in the vocab.
    """

    def __init__(self, vocabulary: list[str], lowercase: bool = True, name: str = "char_tokenizer"):
        super().__init__(name=name)
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        index = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id, self.unk_id = index[PAD], index[UNK]
        self.cls_id, self.sep_id = index[CLS], index[SEP]
        self.space_id = index.get(SPACE, self.unk_id)
        mapping = self.character_ids(index, lowercase, self.space_id)
        keys, values = zip(*sorted(mapping.items()))
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.int32), tf.constant(values, tf.int32), tf.int32, tf.int32
            ),
            default_value=self.unk_id,
        )

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @staticmethod
    def character_ids(index: dict[str, int], lowercase: bool, space_id: int) -> dict[int, int]:
        """Code point -> id for every character with an id other than [UNK] (steps 2-4 of the docstring)."""
        mapping = {}
        for code in range(0x10000):
            if 0xD800 <= code <= 0xDFFF:  # surrogates never come out of a UTF-8 decoder
                continue
            char = chr(code)
            if char in index:
                mapping[code] = index[char]
            elif char.isspace():
                mapping[code] = space_id
            else:
                normal = normalize_character(char, lowercase)
                if normal in index:
                    mapping[code] = index[normal]
        for code in _astral_with_a_normal_form():  # e.g. the CJK compatibility supplement: U+2F804 -> 你
            normal = normalize_character(chr(code), lowercase)
            if normal in index:
                mapping[code] = index[normal]
        for token, i in index.items():  # astral-plane entries (emoji): themselves, before any normal form
            if len(token) == 1 and ord(token) >= 0x10000:
                mapping[ord(token)] = i
        return mapping

    def code_points(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[B] UTF-8 strings -> [B, (chars)] int32 code points, invalid bytes as U+FFFD."""
        return tf.strings.unicode_decode(
            texts, "UTF-8", errors="replace", replacement_char=REPLACEMENT_CHARACTER
        )

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[B] UTF-8 strings (or a scalar) -> token ids, one per code point, ragged ([B, (chars)] or [(chars)])."""
        return self.ids(self.code_points(texts))

    def ids(self, code_points: tf.Tensor | tf.RaggedTensor) -> tf.Tensor | tf.RaggedTensor:
        """Code points (from code_points()) -> token ids of the same shape."""
        if isinstance(code_points, tf.RaggedTensor):
            return code_points.with_flat_values(self.table.lookup(code_points.flat_values))
        return self.table.lookup(code_points)

    def pack(self, ids: tf.RaggedTensor, sequence_length: int | tf.Tensor) -> dict[str, tf.Tensor]:
        """[B, (chars)] ids -> BertBackbone inputs of shape [B, sequence_length]: [CLS] ids [SEP] [PAD]...

        Rows longer than sequence_length - 2 characters are cut; callers that must not lose characters
        (training splits long sentences, the export uses windows) cut them first.
        """
        ids = ids[:, : sequence_length - 2]
        rows = ids.nrows(out_type=tf.int32)
        cls = tf.fill([rows, 1], self.cls_id)
        sep = tf.fill([rows, 1], self.sep_id)
        packed = tf.concat([cls, ids, sep], axis=1)
        token_ids = packed.to_tensor(default_value=self.pad_id, shape=[rows, sequence_length])
        padding_mask = tf.sequence_mask(packed.row_lengths(), sequence_length)
        return {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": padding_mask,
        }


@functools.cache
def _astral_with_a_normal_form() -> tuple[int, ...]:
    """Code points above U+FFFF that lowercase or decompose: ~2,000 of the 1.1 million, found once a process."""
    return tuple(code for code in range(0x10000, 0x110000)
                 if chr(code).lower() != chr(code) or unicodedata.decomposition(chr(code)))
