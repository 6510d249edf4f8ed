"""The demo a new user runs first (python -m tfner.train): its model must get everyday sentences right.

The demo config is trained as the README's first command trains it (tfner/demo.yaml, the built-in corpus),
then its export tags the example the command prints and hand-written everyday sentences: names, places,
schools, and sentences with no entity at all. None of them is a sentence of the demo corpus, and 清华 and
复旦 are no school names of its lists.
"""

import re

import pytest

from tfner import data, demo
from tfner.predict import SavedModelPredictor
from tfner.train import print_summary, train

# (text, entities as (mention, type)): what a reader of Chinese would tag.
EVERYDAY = [
    ("李明每天早上坐地铁去公司上班。", [("李明", "PER")]),
    ("王芳周末和父母一起去公园散步。", [("王芳", "PER")]),
    ("昨天晚上我们在家看了一部电影。", []),
    ("刘洋在上海的复旦大学教书。", [("刘洋", "PER"), ("上海", "LOC"), ("复旦大学", "ORG")]),
    ("今天天气很好，适合出去走走。", []),
    ("陈静下个月要去深圳出差。", [("陈静", "PER"), ("深圳", "LOC")]),
    ("赵强毕业于武汉大学，现在在杭州工作。", [("赵强", "PER"), ("武汉大学", "ORG"), ("杭州", "LOC")]),
    ("孩子们放学后在操场上踢足球。", []),
    ("黄磊在成都开了一家小餐馆。", [("黄磊", "PER"), ("成都", "LOC")]),
    ("周末我打算在家读书，不出门了。", []),
    ("孙丽和同事一起去南京参加会议。", [("孙丽", "PER"), ("南京", "LOC")]),
    ("马上就要下雨了，记得带伞。", []),
    ("吴刚的女儿在西安上大学。", [("吴刚", "PER"), ("西安", "LOC")]),
    ("欧阳娜娜和妈妈去了杭州。", [("欧阳娜娜", "PER"), ("杭州", "LOC")]),
    ("下班以后，我和同事去看了一场电影。", []),
    ("郭靖的老家在江西省赣州。", [("郭靖", "PER"), ("江西省赣州", "LOC")]),
    ("请问去北京大学怎么走？", [("北京大学", "ORG")]),
]
PRINTED_EXAMPLE = ("张三在北京的清华大学读书。", [("张三", "PER"), ("北京", "LOC"), ("清华大学", "ORG")])


def score(predicted: list[list[dict]], gold: list[list[tuple[str, str]]]) -> tuple[list[bool], int]:
    """(exact match per sentence, entities predicted that are not gold)."""
    exact, spurious = [], 0
    for entities, expected in zip(predicted, gold):
        found = [(e["text"], e["label"]) for e in entities]
        exact.append(sorted(found) == sorted(expected))
        spurious += sum(entity not in expected for entity in found)
    return exact, spurious


@pytest.mark.slow
def test_demo_model_gets_its_example_and_everyday_sentences_right(tmp_path, capsys):
    config = demo.demo_config([f"run_dir={tmp_path / 'run'}", f"export.dir={tmp_path / 'export' / 'ner'}"])
    corpus_texts = {e.text for path in config.data.train + config.data.dev + config.data.test
                    for e in data.read_examples(path)}
    assert not {text for text, _ in EVERYDAY + [PRINTED_EXAMPLE]} & corpus_texts

    summary = train(config)
    capsys.readouterr()
    print_summary(summary, config)
    printed = re.search(r'tfner\.predict --model \S+ "([^"]+)"', capsys.readouterr().out).group(1)
    assert printed == PRINTED_EXAMPLE[0]  # the example this test checks is the one the command prints

    predictor = SavedModelPredictor(summary["export"])
    texts = [PRINTED_EXAMPLE[0]] + [text for text, _ in EVERYDAY]
    predicted = predictor.predict(texts)
    exact, spurious = score(predicted, [PRINTED_EXAMPLE[1]] + [entities for _, entities in EVERYDAY])
    report = "\n".join(f"{'ok ' if ok else 'BAD'} {text} {[(e['text'], e['label']) for e in entities]}"
                       for ok, text, entities in zip(exact, texts, predicted))
    print(f"dev F1 {summary['best_dev_f1']:.4f}, test F1 {summary['test']['f1']:.4f}; everyday sentences: "
          f"{sum(exact[1:])}/{len(EVERYDAY)} exact, {spurious} spurious entities\n{report}")
    assert exact[0], report
    assert sum(exact[1:]) >= 12, report
    assert spurious <= 3, report
    assert summary["test"]["f1"] > 0.9
