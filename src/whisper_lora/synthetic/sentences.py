"""Where the demo's sentences come from: hand-written lists, and generated ones when more are needed.

Hand-written sentences ship in resources/: <language>_train.txt (many topics, for training and
validation) and <language>_eval.txt (only ever spoken for evaluation). When a training set asks
for more sentences than the list holds, more are generated: for English, pairs of training
sentences spoken as one clip; for Mandarin, templates whose content words are drawn from jieba's
word-frequency dictionary (thousands of nouns, verbs, adjectives, places and idioms), so that
fine-tuning does not learn a small word bank (docs/design.md).
"""

from __future__ import annotations

import functools
import importlib.util
import random
import re
from importlib import resources
from pathlib import Path

from ..errors import OptionsError, WhisperLoraError

LANGUAGES = ("en", "zh")


def read_sentences(language: str, kind: str) -> list[str]:
    """The hand-written sentences shipped in resources/: kind "train" or "eval"."""
    if language not in LANGUAGES or kind not in ("train", "eval"):
        raise OptionsError(f"no sentence list for language {language!r}, kind {kind!r}")
    text = resources.files("whisper_lora").joinpath("resources", f"{language}_{kind}.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def generated_sentences(language: str, count: int, rng: random.Random, natural: list[str]) -> list[str]:
    """count sentences beyond the hand-written list. English: two of `natural` spoken as one clip.
    Mandarin: templates filled with words from jieba's dictionary (see zh_generated_sentence)."""
    if count <= 0:
        return []
    out: list[str] = []
    seen = set(natural)
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 100 * count + 1000:  # only reachable with a tiny `natural` list
            raise WhisperLoraError(f"could not generate {count} distinct {language} sentences")
        if language == "en":
            if len(natural) < 2:
                raise WhisperLoraError("English pairs need at least two training sentences")
            a, b = rng.sample(natural, 2)
            sentence = f"{a} {b}"
        else:
            sentence = zh_generated_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


# Mandarin: content words come from jieba's dictionary (word, frequency, part of speech): the most
# frequent words of each part of speech, so that sentences cover a broad everyday vocabulary. Names,
# times and measure phrases are hand-written (jieba tags many non-names as names).
ZH_TAG_SIZES = {  # jieba tag -> how many of its most frequent 2-4 character words to use
    "n": 3000,  # nouns
    "v": 1500,  # verbs
    "a": 400,  # adjectives
    "ns": 300,  # places
    "vn": 600,  # verbal nouns (发展, 教育, 旅游)
    "d": 150,  # adverbs
    "i": 400,  # idioms (four characters)
}
ZH_NAMES = ["小王", "老李", "张老师", "李明", "王芳", "刘洋", "陈静", "小红", "赵强", "孙丽", "周杰", "吴敏",
            "郑浩", "黄华", "林雪", "马军", "胡波", "高兰", "何平", "罗小兵", "梁爷爷", "宋阿姨", "唐医生",
            "许经理", "韩梅梅", "冯校长", "小刚", "杨师傅"]
ZH_TIMES = ["今天", "明天", "昨天", "早上", "晚上", "下午", "中午", "上个月", "去年", "明年", "周末", "刚才",
            "最近", "每天", "后来", "现在", "以前", "半夜", "春天", "夏天", "秋天", "冬天", "前天", "下个星期"]
ZH_MEASURES = ["一个", "两个", "几个", "一些", "很多", "这个", "那个", "许多", "不少", "三个"]
ZH_TEMPLATES = [
    "{time}{name}在{ns}{v}了{m}{n}。",
    "{ns}的{n}非常{a}。",
    "我们{d}{v}这个{n}，因为它很{a}。",
    "{name}觉得{ns}的{n}比{ns}的更{a}。",
    "你知道{name}为什么要{v}{n}吗？",
    "{name}说，这件事真是{i}。",
    "如果{time}{v}{n}，我们就一起去{ns}。",
    "{n}和{n}都是很{a}的{n}。",
    "请把{n}放在{n}的旁边。",
    "{time}我在{ns}看到了一个{a}的{n}。",
    "他们正在{v}关于{vn}的{n}。",
    "大家都说{ns}是一个{a}的地方。",
    "{name}和{name}{time}要去{ns}{v}{n}。",
    "关于{vn}的问题，{name}有很多{a}的想法。",
    "我{time}没有时间{v}{n}。",
    "{name}问我，{ns}有没有{n}？",
    "为了{vn}，{name}决定{v}{m}{n}。",
    "在{ns}，{n}和{n}随处可见。",
    "{name}一边{v}{n}，一边{v}{n}。",
    "经过{vn}，这里的{n}变得更加{a}了。",
    "听说{name}在{ns}买了{m}{n}。",
    "{name}不喜欢{v}{n}，但是喜欢{v}{n}。",
    "那个{n}是不是太{a}了？",
    "{ns}的{vn}需要更多的{n}。",
    "{name}告诉大家，{n}已经{v}了。",
    "{time}的{vn}{d}很{a}。",
    "这些{n}{i}，{name}看了以后很{a}。",
    "老师让我们{time}{v}{m}{n}。",
    "{name}的{n}和{name}的{n}不一样。",
    "我们应该{d}{v}{vn}，{v}{n}。",
]
_SLOT = re.compile(r"\{(\w+)\}")


def jieba_dictionary_path() -> Path:
    """jieba's dict.txt (MIT licence): ~349,000 lines of "word frequency tag"."""
    spec = importlib.util.find_spec("jieba")  # locate without importing: jieba's import is slow
    if spec is None or not spec.submodule_search_locations:
        raise WhisperLoraError("Mandarin demo data needs jieba's word list: pip install 'jieba>=0.42,<1' "
                               "(or pip install 'whisper-lora[demo]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "dict.txt"
    if not path.is_file():
        raise WhisperLoraError(f"{path} is missing: reinstall jieba (pip install --force-reinstall jieba)")
    return path


@functools.lru_cache(maxsize=1)
def zh_word_lists() -> dict[str, list[str]]:
    """Part of speech -> words, most frequent first, from jieba's dictionary; plus the hand lists."""
    hanzi = re.compile(r"[\u4e00-\u9fff]{2,4}")
    found: dict[str, list[tuple[int, str]]] = {tag: [] for tag in ZH_TAG_SIZES}
    with open(jieba_dictionary_path(), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] in found and hanzi.fullmatch(parts[0]):
                if parts[2] == "i" and len(parts[0]) != 4:
                    continue  # idioms: the four-character chengyu only
                found[parts[2]].append((int(parts[1]), parts[0]))
    words = {tag: [w for _, w in sorted(pairs, key=lambda p: (-p[0], p[1]))[:ZH_TAG_SIZES[tag]]]
             for tag, pairs in found.items()}
    words.update(name=ZH_NAMES, time=ZH_TIMES, m=ZH_MEASURES)
    return words


def zh_generated_sentence(rng: random.Random) -> str:
    """One Mandarin sentence: a template with each slot filled by a random word of its kind."""
    words = zh_word_lists()
    template = rng.choice(ZH_TEMPLATES)
    return _SLOT.sub(lambda m: rng.choice(words[m.group(1)]), template)
