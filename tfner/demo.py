"""The built-in demo: a synthetic Chinese NER corpus and the config that trains on it.

`python -m tfner.train` with no --config writes the corpus to <run_dir>/data/ and trains a small model on it
from scratch: no network and nothing from outside the package. Sentences come from templates such as
"{PER}毕业于{ORG}，现居{LOC}。" filled with person names (a surname + one or two given-name characters),
places and organisations (a place + a kind, e.g. 杭州 + 科技有限公司). Names are drawn fresh for every
sentence, so dev and test are full of names the model never saw: it has to learn from context and from
the shapes of names, not memorise a list.
"""

import os
import random

from tfner.config import Config, load_config
from tfner.data import Example, write_jsonl
from tfner.labels import Span

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国晓文斌宇浩凯俊雪琳晨欣怡子涵梓轩一诺思远嘉欣雨泽宏志海波春燕立新永庆德胜"
PLACES = [
    "北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州", "长沙", "郑州",
    "青岛", "厦门", "宁波", "合肥", "昆明", "大连", "沈阳", "济南", "福州", "南昌", "贵阳", "兰州", "太原", "石家庄",
    "哈尔滨", "长春", "南宁", "海口", "乌鲁木齐", "呼和浩特", "无锡", "佛山", "东莞", "珠海", "温州", "绍兴",
]
PROVINCES = ["浙江省", "江苏省", "广东省", "四川省", "湖北省", "湖南省", "山东省", "河南省", "福建省", "云南省"]
ORG_KINDS = [
    "科技有限公司", "银行", "大学", "人民医院", "证券股份有限公司", "网络科技公司", "师范大学", "第一中学",
    "电力集团", "研究院", "汽车制造厂", "律师事务所", "航空公司", "出版社", "食品有限公司",
]
ORG_WORDS = ["华信", "新东方", "长城", "远航", "星辰", "蓝天", "恒通", "泰和", "博雅", "锦程", "天成", "宏达", "云帆", "正道"]
TEMPLATES = [
    "{PER}毕业于{ORG}，现居{LOC}。",
    "{PER}在{LOC}的{ORG}工作了三年。",
    "记者从{ORG}获悉，{PER}将于下月赴{LOC}考察。",
    "{LOC}警方通报，{PER}已被依法拘留。",
    "据{ORG}消息，该项目由{PER}负责。",
    "{PER}和{PER}昨天一起去了{LOC}。",
    "{ORG}宣布{PER}出任首席执行官。",
    "今年{LOC}的房价上涨了百分之五。",
    "{PER}出生于{LOC}，曾任{ORG}董事长。",
    "我们明天下午三点在{LOC}见面吧。",
    "{ORG}与{ORG}签署了战略合作协议。",
    "{PER}表示，{LOC}的营商环境越来越好。",
    "你好，我想查询一下订单的物流信息。",
    "{PER}老师的课讲得非常精彩。",
    "下周{PER}要去{LOC}出差，住在{ORG}附近。",
    "{LOC}和{LOC}之间开通了高铁。",
]


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _place(rng: random.Random) -> str:
    return rng.choice(PROVINCES) + rng.choice(PLACES) if rng.random() < 0.2 else rng.choice(PLACES)


def _organisation(rng: random.Random) -> str:
    head = rng.choice(PLACES) if rng.random() < 0.5 else rng.choice(ORG_WORDS)
    return head + rng.choice(ORG_KINDS)


FILLERS = {"PER": _person, "LOC": _place, "ORG": _organisation}


def sentence(rng: random.Random) -> Example:
    """One synthetic sentence with its entities."""
    template, text, spans = rng.choice(TEMPLATES), "", []
    while "{" in template:
        before, _, rest = template.partition("{")
        label, _, template = rest.partition("}")
        text += before
        mention = FILLERS[label](rng)
        spans.append(Span(len(text), len(text) + len(mention), label))
        text += mention
    return Example(text + template, tuple(spans))


def write_corpus(folder: str, sizes=(3000, 400, 400), seed: int = 7) -> dict[str, str]:
    """Writes train/dev/test.jsonl (tfner's span format) and returns their paths."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for split, size in zip(("train", "dev", "test"), sizes):
        paths[split] = os.path.join(folder, f"{split}.jsonl")
        write_jsonl([sentence(rng) for _ in range(size)], paths[split])
    return paths


DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "demo.yaml")


def demo_config(overrides: list[str] = ()) -> Config:
    """The demo's config (tfner/demo.yaml + overrides), with the corpus written under its run_dir."""
    config = load_config(DEMO_CONFIG, overrides)
    paths = write_corpus(os.path.join(config.run_dir, "data"))
    config.data.train, config.data.dev, config.data.test = [paths["train"]], [paths["dev"]], [paths["test"]]
    return config
