"""The cross-language parity corpus: texts every client must tag exactly as the SavedModel does.

Resume NER test sentences (real text, read from the shared data), demo-corpus sentences (where the tiny model
finds entities) and hand-made hard cases for offsets and encodings. Expected answers come from the export called
in process, the ground truth no client can influence.
"""

import json
import random

from tfner import demo
from tfner.data import read_examples
from tfner.predict import SavedModelPredictor

# Each case stresses one thing a client can get wrong when it converts offsets or encodes text.
HARD_CASES = [
    "",                                              # empty string: one row, no entities
    "王小明😀在北京工作。",                            # astral emoji: 1 code point, 2 UTF-16 units, 4 UTF-8 bytes
    "👨‍👩‍👧 张伟和李娜去了上海。",                          # ZWJ sequence: 5 code points drawn as one glyph
    "🇨🇳北京欢迎你🇨🇳",                                # regional-indicator pairs
    "𠀀𠀁王𪚥在上海的复旦大学读书。",                      # CJK Extension B characters (astral, not emoji)
    "Café 张三 e\u0301 在杭州",                        # combining acute accent after e
    "李\u0301娜在南京的东南大学任教。",                    # a combining mark on a CJK character
    "Zhang San (张三) works at 阿里巴巴 in 杭州, 2023年。",  # mixed script
    "张三   在\t\t北京  工作",                          # whitespace runs, tabs
    "  前后空格  ",                                    # leading and trailing spaces
    "\u3000王芳\u3000在\u3000深圳\u3000",               # ideographic spaces
    "ＡＢＣ科技有限公司位于深圳市南山区。",                 # full-width Latin
    "。。。！！！？？？",                                # punctuation only
    "1234567890",                                     # digits only
    "北京" * 300,                                      # 600 characters of one repeated entity-like word
    "张三\n在北京",                                     # a newline inside a text
    "ñandú Ωmega дом 东京",                            # other scripts
]


def long_text(length=3000, seed=3):
    """A text of exactly `length` characters made of demo sentences (windows and seams in the graph)."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < length:
        parts.append(demo.sentence(rng).text)
        size += len(parts[-1])
    return "".join(parts)[:length]


def parity_texts(shared_data, demo_test_path, resume_count=150):
    """At least 200 texts: Resume test sentences, demo sentences, the hard cases and a 3,000-character text."""
    resume = [e.text for e in read_examples(f"{shared_data}/resume_ner/test.char.bmes")][:resume_count]
    demo_texts = [e.text for e in read_examples(demo_test_path)]
    return resume + demo_texts + HARD_CASES + [long_text()]


def write_parity_file(path, export_path, texts):
    """Writes one {"text", "entities"} JSON line per text, as `python -m tfner.predict` prints it."""
    results = SavedModelPredictor(export_path, batch_size=32).predict(texts)
    with open(path, "w", encoding="utf-8") as f:
        for text, entities in zip(texts, results):
            f.write(json.dumps({"text": text, "entities": entities}, ensure_ascii=False) + "\n")
    return results
