"""The built-in demo: a synthetic Chinese NER corpus and the config that trains on it.

`python -m tfner.train` with no --config writes the corpus to <run_dir>/data/ and trains a small model on it
from scratch: no network and nothing from outside the package.

Sentences come from a small grammar (GRAMMAR below): a rule such as "{subject}{time}{where}{activity}" is
expanded part by part, lower-case parts from the grammar's own phrase lists and upper-case parts PER, LOC and
ORG from fresh entity mentions: person names (a surname + one or two given-name characters), places (cities,
provinces, counties, countries) and organisations (a head + a kind, e.g. 杭州 + 科技有限公司, 南开 + 大学).
One name character in ten, and some place and organisation heads, are any CJK character at all. The
grammar is what makes the model useful outside its corpus:

- entities sit anywhere in a sentence and are followed by many different words (在, 和, 每天, 的女儿, 老师,
  说, 上班, ...), so a name ends where the name's shape ends, not where a template's next word begins;
- a quarter of the sentences hold no entity at all, and every sentence mixes in distractors: everyday
  verbs and nouns (上班, 读书, 散步, 电影, 父母), place-like words that are not names (公园, 银行, 大学, 北方,
  老家), person-like words (老师, 同事, 邻居) and words that begin with a surname character (周末, 马上, 高兴,
  黄色, 方便).

Names are drawn fresh for every sentence, so dev and test are full of names the model never saw: it has to
learn from context and from the shapes of names, not memorise a list. tests/test_demo.py trains the demo
config and checks the export on hand-written sentences that no rule here produces verbatim.
"""

import os
import random

from tfner.config import Config, load_config
from tfner.data import Example, write_jsonl
from tfner.labels import Span

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
COMPOUND_SURNAMES = ["欧阳", "司马", "上官", "诸葛", "东方", "慕容"]
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国晓文斌宇浩凯俊雪琳晨欣怡子涵梓轩一诺思远"
    "嘉雨泽宏志海波春燕立新永庆德胜亮鑫飞琴云峰婷健翔鸿蕾倩璐瑶佳颖婉茜博昊然瀚天佑若曦锦程安可心彤悦阳光辰"
)
CITIES = [
    "北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州", "长沙", "郑州",
    "青岛", "厦门", "宁波", "合肥", "昆明", "大连", "沈阳", "济南", "福州", "南昌", "贵阳", "兰州", "太原", "石家庄",
    "哈尔滨", "长春", "南宁", "海口", "乌鲁木齐", "呼和浩特", "无锡", "佛山", "东莞", "珠海", "温州", "绍兴",
    "桂林", "洛阳", "扬州", "拉萨", "丽江", "三亚", "烟台", "徐州", "常州", "嘉兴",
]
PROVINCES = [
    "浙江", "江苏", "广东", "四川", "湖北", "湖南", "山东", "河南", "福建", "云南", "江西", "安徽", "河北",
    "山西", "陕西", "辽宁", "吉林", "贵州", "甘肃", "海南",
]
PROVINCE_CITIES = [
    ("浙江", "杭州"), ("浙江", "宁波"), ("浙江", "温州"), ("江苏", "南京"), ("江苏", "苏州"), ("江苏", "无锡"),
    ("广东", "广州"), ("广东", "深圳"), ("广东", "佛山"), ("四川", "成都"), ("湖北", "武汉"), ("湖南", "长沙"),
    ("山东", "青岛"), ("山东", "济南"), ("河南", "郑州"), ("河南", "洛阳"), ("福建", "厦门"), ("福建", "福州"),
    ("云南", "昆明"), ("云南", "丽江"), ("江西", "南昌"), ("安徽", "合肥"), ("陕西", "西安"), ("河北", "石家庄"),
]
COUNTRIES = ["日本", "美国", "英国", "法国", "德国", "韩国", "新加坡", "澳大利亚", "加拿大", "意大利", "泰国"]
ORG_KINDS = [
    "科技有限公司", "银行", "人民医院", "证券股份有限公司", "网络科技公司", "电力集团", "研究院", "汽车制造厂",
    "律师事务所", "航空公司", "出版社", "食品有限公司", "电视台", "日报社", "图书馆", "博物馆", "体育中心",
]
ORG_WORDS = [
    "华信", "新东方", "长城", "远航", "星辰", "蓝天", "恒通", "泰和", "博雅", "锦程", "天成", "宏达", "云帆", "正道",
    "万家", "金桥", "同心", "海纳", "瑞丰", "启明", "光华", "东方红",
]
# School names: a place or one of these heads, then a kind. The demo's own printed example, 清华大学, and the
# other universities of tests/test_demo.py (复旦, ...) are deliberately absent: the model must generalise.
SCHOOL_HEADS = ["南开", "同济", "中山", "暨南", "华南", "东南", "西南", "华东", "华中", "北方", "人民", "育才", "光明"]
SCHOOL_KINDS = ["大学", "大学", "大学", "师范大学", "理工大学", "医科大学", "第一中学", "实验小学", "外国语学校", "职业技术学院"]


def _rare(rng: random.Random) -> str:
    """Any of the 20,902 basic CJK characters: most of them appear once in the corpus, if at all.

    Users' own names are full of characters outside the lists above, which the demo's vocabulary (built from
    this corpus) reads as [UNK]. With these among the names, the model learns that an unfamiliar character in
    a name's place is part of the name, rather than noise that ends it.
    """
    return chr(rng.randrange(0x4E00, 0x9FA6))


def _given(rng: random.Random) -> str:
    return _rare(rng) if rng.random() < 0.1 else rng.choice(GIVEN)


def _person(rng: random.Random) -> str:
    surname = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.04 else rng.choice(SURNAMES)
    return surname + "".join(_given(rng) for _ in range(rng.choice((1, 2, 2))))


def _place(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(CITIES)
    if roll < 0.65:
        return rng.choice(CITIES) + "市"
    if roll < 0.8:
        province, city = rng.choice(PROVINCE_CITIES)
        return province + rng.choice(("", "省")) + city
    if roll < 0.88:
        return rng.choice(PROVINCES) + rng.choice(("", "省"))
    if roll < 0.94:
        return _rare(rng) + _rare(rng) + rng.choice(("县", "镇", "市", "村"))
    return rng.choice(COUNTRIES)


def _organisation(rng: random.Random) -> str:
    school, roll = rng.random() < 0.4, rng.random()
    if roll < 0.45:
        head = rng.choice(CITIES)
    elif roll < 0.6:
        head = _rare(rng) + _rare(rng)
    else:
        head = rng.choice(SCHOOL_HEADS if school else ORG_WORDS)
    return head + rng.choice(SCHOOL_KINDS if school else ORG_KINDS)


ENTITIES = {"PER": _person, "LOC": _place, "ORG": _organisation}

# The grammar: each lower-case name lists its expansions (repeats weigh an expansion); {name} in an expansion is
# expanded in turn, {PER}/{LOC}/{ORG} becomes a fresh entity mention.
GRAMMAR = {
    "sentence": [
        "{clause}。", "{clause}。", "{clause}。", "{clause}。", "{clause}！", "{clause}，{clause}。",
        "{clause}，{clause}。", "{when}，{clause}。", "{subject}说，{clause}。", "{news}", "{news}", "{chat}",
        "{chat}",
    ],
    "clause": [
        "{subject}{time}{predicate}", "{subject}{time}{predicate}", "{subject}{time}{predicate}",
        "{when}{subject}{predicate}", "{subject}{thing}",
    ],
    "subject": [
        "{PER}", "{PER}", "{PER}", "{PER}", "{PER}", "{PER}", "{PER}{role}", "{PER}和{PER}", "{PER}的{kin}",
        "{pronoun}", "{pronoun}", "{pronoun}", "{pronoun}", "{kin}", "{role}",
    ],
    "pronoun": ["我", "他", "她", "我们", "他们", "大家", "孩子们", "同学们", "邻居", "我的朋友", "这位老人",
                "那个小伙子", "同事们", "我们班"],
    "kin": ["妈妈", "爸爸", "女儿", "儿子", "爷爷", "奶奶", "哥哥", "妹妹", "父母", "丈夫", "妻子", "孩子"],
    "role": ["老师", "医生", "师傅", "经理", "同学", "教授", "先生", "女士", "阿姨", "叔叔", "主任", "老板", "司机"],
    "time": ["", "", "", "", "", "{when}", "{when}", "{when}", "经常", "马上", "已经", "也", "一直", "常常"],
    "when": [
        "今天", "昨天", "明天", "每天", "每天早上", "周末", "上周", "下个月", "去年", "晚上", "中午", "下午",
        "刚才", "最近", "平时", "春节前", "暑假里", "白天", "每个周末", "前天晚上", "放学后", "下班以后",
    ],
    "predicate": [
        "{where}{activity}{aspect}", "{where}{activity}{aspect}", "{where}{activity}{aspect}",
        "{where}{activity}{aspect}", "{where}{event}", "{where}{event}", "{activity}{aspect}", "{activity}{aspect}",
        "和{companion}一起{activity}", "和{companion}一起去{place}{activity}", "{motion}", "{motion}", "{motion}",
        "{motion}", "{study}", "{study}", "{study}", "{social}", "{social}", "{describe}", "{describe}",
    ],
    "aspect": ["", "", "", "", "了", "呢", "去了"],
    "where": [
        "在{LOC}", "在{LOC}", "在{LOC}的{ORG}", "在{ORG}", "在{ORG}", "在{LOC}的{place}", "在{place}", "在{place}",
        "在{place}", "在{place}", "在{place}", "去{place}", "到{place}",
    ],
    "place": [
        "家", "家", "公司", "学校", "公园", "图书馆", "医院", "食堂", "操场上", "办公室", "咖啡馆", "超市", "楼下",
        "江边", "海边", "市中心", "郊区", "老家", "宿舍", "银行", "大学", "车站", "机场", "广场", "商场", "菜市场",
        "健身房", "电影院", "体育馆", "小区门口", "村里", "山上", "北方", "南方", "城里", "国外", "外地", "教室",
    ],
    "activity": [
        "上班", "读书", "工作", "散步", "看电影", "吃饭", "学习", "教书", "开会", "打球", "跑步", "买菜", "做饭",
        "写作业", "听音乐", "看书", "休息", "加班", "值班", "上课", "画画", "唱歌", "游泳", "健身", "逛街", "喝咖啡",
        "看病", "排队", "实习", "复习", "练琴", "钓鱼", "爬山", "等车", "打太极拳", "下棋", "聊天", "拍照", "看报纸",
        "上网", "写论文", "做实验", "买东西", "踢足球", "上大学", "过周末", "带孩子", "看演出", "喝茶", "洗衣服",
    ],
    "event": [
        "开了一家店", "买了一套房子", "待了三天", "住了一晚", "认识了很多朋友", "参加了一个会议", "遇到了老同学",
        "租了一间房", "办了一场婚礼", "过了一个暑假", "丢了一把伞", "拍了很多照片", "吃到了好吃的面条",
    ],
    "companion": ["{PER}", "{PER}", "{PER}", "父母", "朋友", "同事", "家人", "孩子", "同学", "女朋友", "邻居",
                  "老同学", "{kin}"],
    "motion": [
        "去了{LOC}", "要去{LOC}出差", "回{LOC}过年", "从{LOC}回来了", "搬到了{LOC}", "去{LOC}旅游", "去{ORG}面试",
        "去{ORG}开会", "去{place}{activity}", "回家了", "坐高铁去{LOC}", "开车去{LOC}", "飞往{LOC}",
        "到{LOC}看望{PER}", "在{LOC}转机", "去{LOC}看{kin}", "出门{activity}", "坐地铁去{place}",
    ],
    "study": [
        "在{ORG}工作", "毕业于{ORG}", "考上了{ORG}", "在{ORG}读书", "在{ORG}上学", "在{ORG}当老师", "是{ORG}的学生",
        "是{ORG}的工程师", "加入了{ORG}", "在{LOC}的{ORG}读书", "在{LOC}的{ORG}工作", "从{ORG}辞职了",
        "在{ORG}实习", "在{LOC}上大学", "在{ORG}教书", "在{LOC}的{ORG}教书", "在{ORG}找到了工作",
    ],
    "social": [
        "给{PER}打了个电话", "请{PER}吃饭", "借了{PER}一本书", "帮{PER}搬家", "在等{PER}", "和{PER}是老同学",
        "把钥匙交给了{PER}", "跟{PER}学画画", "约了{PER}看电影", "收到了{PER}的信", "去{ORG}看望{PER}",
    ],
    "describe": [
        "住在{LOC}", "出生于{LOC}", "是{LOC}人", "很喜欢{LOC}的天气", "觉得{LOC}的菜很好吃", "在{LOC}生活了十年",
        "老家在{LOC}", "对{LOC}很熟悉", "在{place}住了很多年", "很喜欢{activity}", "每天都{activity}",
        "觉得{place}很方便", "最近很忙", "今天很高兴", "马上就到",
    ],
    "thing": [
        "买了一台新电脑", "喜欢看电影", "正在写作业", "感冒了", "找到了新工作", "养了一只猫", "开车去上班",
        "在厨房做饭", "丢了钱包", "穿着一件红毛衣", "捡到一块石头", "煮了一碗汤圆", "写了一个程序", "种了许多花",
        "喜欢黄色", "向前走了几步", "把叶子扫干净了", "打算换一份工作", "把作业写完了", "很想念父母",
    ],
    "news": [
        "记者从{ORG}获悉，{PER}将于下月赴{LOC}考察。", "{LOC}警方通报，{PER}已被依法拘留。",
        "据{ORG}消息，该项目由{PER}负责。", "{ORG}宣布{PER}出任首席执行官。", "{PER}出生于{LOC}，曾任{ORG}董事长。",
        "{ORG}与{ORG}签署了战略合作协议。", "{PER}表示，{LOC}的营商环境越来越好。", "{LOC}和{LOC}之间开通了高铁。",
        "{ORG}在{LOC}新开了一家分店。", "今年{LOC}的房价上涨了百分之五。", "{ORG}今年的营业收入增长了两成。",
        "{LOC}{when}举办了国际马拉松比赛。", "{ORG}的{PER}获得了年度优秀教师奖。",
    ],
    "chat": [
        "你好，我想查询一下订单的物流信息。", "这家餐馆的菜很好吃。", "天气预报说明天有雨。", "请问附近有地铁站吗？",
        "周末的电影票已经卖完了。", "我们下午三点见面吧。", "大家辛苦了，早点休息。", "这本书我已经读完了。",
        "楼下新开了一家面包店。", "白天太热，晚上再去散步吧。", "父母身体都很好，不用担心。", "高铁比飞机方便多了。",
        "孩子们都很喜欢这位老师。", "银行几点开门？", "大学生活过得真快。",
    ],
}
MAX_CHARS = 60  # the demo's windows hold 62 characters (max_seq_length 64); longer draws are drawn again


def _expand(symbol: str, rng: random.Random, text: list[str], spans: list[Span]) -> None:
    """Appends one expansion of `symbol` to text (a list of pieces), and its entity mentions to spans."""
    if symbol in ENTITIES:
        start = sum(map(len, text))
        text.append(ENTITIES[symbol](rng))
        spans.append(Span(start, start + len(text[-1]), symbol))
        return
    rest = rng.choice(GRAMMAR[symbol])
    while "{" in rest:
        before, _, rest = rest.partition("{")
        name, _, rest = rest.partition("}")
        text.append(before)
        _expand(name, rng, text, spans)
    text.append(rest)


def sentence(rng: random.Random) -> Example:
    """One synthetic sentence with its entities."""
    while True:
        text, spans = [], []
        _expand("sentence", rng, text, spans)
        if len("".join(text)) <= MAX_CHARS:
            return Example("".join(text), tuple(spans))


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
