"""Synthetic speech data sets for the demo, the training checks and the benchmarks.

build_dataset speaks sentences with espeak-ng and writes, under one folder:
  train.json, validation.json, test.json   the original README's JSON list format
                                            ([{"audio_path": "./audio/....wav", "text": ...}]),
  test_other_voice.json                    the test sentences in a second voice, to check that
                                            fine-tuning on one voice does not hurt another,
  long.json + audio/long-*.wav             ~3 minutes of evaluation sentences joined with short
                                            pauses, one manifest row with per-sentence segments,
                                            for long-form transcription and timestamp checks,
  dataset_info.json                        voices, seed, counts and sentence sources,
  audio/                                   the clips (espeak-ng's 22.05 kHz mono WAV).

Where the sentences come from decides what fine-tuning teaches: with a small template word bank
the model learns to write the bank's words (DESIGN.md). So
  - evaluation (test, other voice, long file) uses hand-written sentences (resources/*_eval.txt)
    that no training split ever sees;
  - validation uses hand-written training sentences (resources/*_train.txt) held out from training;
  - training uses the rest of the hand-written training sentences, spread over many topics, and,
    when more are asked for than the list holds, generated ones: for Mandarin, sentences whose
    content words are drawn from jieba's word-frequency dictionary (thousands of nouns, verbs,
    adjectives, places and idioms); for English, pairs of training sentences spoken as one clip.
Training clips vary the voice's speed (+-10%) and pitch (+-8) so the model learns the voice, not
one exact rendering of it; evaluation clips use the voice as given.

Everything is deterministic for a seed, and clips are cached by text and voice, so a second run
(or a larger one) only synthesizes what is new.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile

from ..errors import OptionsError, WhisperLoraError
from ..fileio import atomic_path, write_json
from .tts import synthesize_cached

LANGUAGES = ("en", "zh")
AUDIO_DIR = "audio"  # clips live in out_dir/audio; manifests refer to them as ./audio/NAME.wav

# Training clips jitter the voice so the model cannot latch onto one exact rendering.
SPEED_JITTER = 0.10  # speed drawn uniformly from speed * (1 +- 0.10)
PITCH_JITTER = 8  # pitch drawn uniformly from pitch +- 8 (espeak-ng pitch is 0-99)
SILENCE_LEVEL = 0.01  # |sample| below this counts as silence when trimming clips for the long file


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice with its rate and pitch; written "name[:speed[:pitch]]" on command lines."""

    name: str  # espeak-ng voice, optionally with a variant: "en-us", "en-gb-x-gbclan+m3", "cmn-latn-pinyin"
    speed: int = 160  # words per minute (espeak-ng -s); 80-450
    pitch: int = 50  # base pitch (espeak-ng -p); 0-99

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\+[A-Za-z0-9_-]+)?", self.name or ""):
            raise OptionsError(f"voice {self.name!r}: expected an espeak-ng voice such as en-us or "
                               f"en-gb-scotland+m3 (list them with `espeak-ng --voices`)")
        if not 80 <= self.speed <= 450:
            raise OptionsError(f"voice {self.name}: speed {self.speed} words per minute is outside 80-450")
        if not 0 <= self.pitch <= 99:
            raise OptionsError(f"voice {self.name}: pitch {self.pitch} is outside 0-99")

    @classmethod
    def parse(cls, spec: str | Voice) -> Voice:
        """"en-us+m3:150:40" -> Voice("en-us+m3", 150, 40); speed and pitch may be left out."""
        if isinstance(spec, Voice):
            return spec
        name, *numbers = str(spec).strip().split(":")
        if len(numbers) > 2 or not all(n.strip().isdigit() for n in numbers):
            raise OptionsError(f"voice {spec!r}: write it as NAME[:SPEED[:PITCH]], e.g. en-gb-scotland:160:50")
        return cls(name, *(int(n) for n in numbers))

    def __str__(self) -> str:
        return f"{self.name}:{self.speed}:{self.pitch}"


# Per language: the voice to fine-tune on (one the bundled model gets measurably wrong, yet clear
# enough to learn from), the second voice whose error rate must not rise, and the split sizes.
# Measured on 20 evaluation sentences, plain model.generate, lower case and punctuation stripped
# (speed 160, pitch 50 unless given):
#   bundled tiny.en WER: en-us 15.0%, en-us+m3 15.0%, en-us+m7 16.6%, en-gb-x-rp 18.2%, en-us+f3 24.1%,
#     en-gb 24.6%, en-gb+f2 24.6%, en-us+croak 24.6%, en-us+whisper 26.7%, en-gb-x-gbclan 27.8%,
#     en-us+klatt 30.5%, en-us+klatt4 32.1%, en-us:140 38.0%, en-gb-x-gbcwmd 40.6%, en-us-nyc 42.8%,
#     en-029+m3 43.9%, en-us:200 44.9%, en-gb-scotland 45.5%, en-gb-scotland+f3 55.1%, en-029 83.4%
#   bundled base CER (language zh): cmn 364.5%, cmn+f3 385.7%, cmn-latn-pinyin 128.7%,
#     cmn-latn-pinyin+m3 84.9%, cmn-latn-pinyin+f3 57.3% (over 100%: repetition loops)
# With metrics.py's normalisation on the 40 default test sentences: en-gb-x-gbclan 24.0%, en-us 13.2%;
# after LoRA on the 240 default training clips (r 32, lr 1e-3, batch 8, 2 epochs, encoder and
# decoder attention + MLP): 0.8% and 1.1%, so the voice is learnable and the other voice gains too.
# Mandarin uses cmn-latn-pinyin: espeak-ng 1.51's plain "cmn" voice reads most characters as pinyin
# spelt out in English ("们" -> "men five"); cmn-latn-pinyin speaks the same readings as Mandarin.
@dataclass(frozen=True)
class LanguageDefaults:
    voice: Voice  # the voice the train/validation/test splits are spoken in
    other_voice: Voice  # a different voice, for the "does another voice get worse" test set
    n_train: int  # training clips
    n_val: int  # validation clips
    n_test: int  # test clips (also spoken in other_voice)
    natural_share: float  # share of training sentences taken from the hand-written list


DEFAULTS = {
    "en": LanguageDefaults(voice=Voice("en-gb-x-gbclan", 160, 50), other_voice=Voice("en-us", 160, 50),
                           n_train=240, n_val=20, n_test=40, natural_share=1.0),
    "zh": LanguageDefaults(voice=Voice("cmn-latn-pinyin", 160, 50),
                           other_voice=Voice("cmn-latn-pinyin+f3", 160, 50), n_train=200, n_val=15, n_test=30,
                           natural_share=0.5),
}


@dataclass(frozen=True)
class DatasetOptions:
    """What build_dataset makes. None means the language's default from DEFAULTS."""

    language: str = "en"  # "en" or "zh" (Mandarin, spoken by espeak-ng's cmn-latn-pinyin voice)
    n_train: int | None = None  # training clips
    n_val: int | None = None  # validation clips (held-out hand-written training sentences)
    n_test: int | None = None  # test clips (hand-written evaluation sentences), in both voices
    voice: Voice | str | None = None  # the voice to fine-tune on and test with
    other_voice: Voice | str | None = None  # the second voice, spoken over the same test sentences
    seed: int = 0  # picks and orders sentences and the training jitter; same seed, same data set
    natural_share: float | None = None  # share of training sentences from the hand-written list
    jitter: bool = True  # vary speed and pitch of training clips around the voice
    long_seconds: float = 180.0  # length the long file grows to (it stops when eval sentences run out)
    pause_seconds: float = 0.6  # silence between sentences in the long file
    workers: int = 2  # espeak-ng processes run at once

    def resolved(self) -> DatasetOptions:
        """A copy with every None replaced by the language default, checked; raises OptionsError."""
        if self.language not in LANGUAGES:
            raise OptionsError(f"language {self.language!r}: demo data exists for {', '.join(LANGUAGES)}")
        d = DEFAULTS[self.language]
        opts = DatasetOptions(
            language=self.language,
            n_train=d.n_train if self.n_train is None else self.n_train,
            n_val=d.n_val if self.n_val is None else self.n_val,
            n_test=d.n_test if self.n_test is None else self.n_test,
            voice=Voice.parse(self.voice) if self.voice is not None else d.voice,
            other_voice=Voice.parse(self.other_voice) if self.other_voice is not None else d.other_voice,
            seed=self.seed,
            natural_share=d.natural_share if self.natural_share is None else self.natural_share,
            jitter=self.jitter, long_seconds=self.long_seconds, pause_seconds=self.pause_seconds,
            workers=self.workers)
        opts._check()
        return opts

    def _check(self):
        for name in ("n_train", "n_val", "n_test"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise OptionsError(f"{name} must be a positive whole number, got {value!r}")
        n_eval = len(read_sentences(self.language, "eval"))
        if self.n_test > n_eval:
            raise OptionsError(f"n_test {self.n_test}: there are only {n_eval} hand-written {self.language} "
                               f"evaluation sentences")
        n_natural = len(read_sentences(self.language, "train"))
        if self.n_val >= n_natural:
            raise OptionsError(f"n_val {self.n_val}: there are only {n_natural} hand-written {self.language} "
                               f"training sentences, and training needs some of them")
        if not 0.0 <= self.natural_share <= 1.0:
            raise OptionsError(f"natural_share must be between 0 and 1, got {self.natural_share}")
        if self.voice == self.other_voice:
            d = DEFAULTS[self.language]
            hint = d.voice if self.voice == d.other_voice else d.other_voice
            raise OptionsError(f"other_voice must differ from voice (both {self.voice}); pass another "
                               f"other_voice, e.g. {hint}")
        if self.long_seconds <= 0 or self.pause_seconds < 0:
            raise OptionsError(f"long_seconds must be positive and pause_seconds not negative, got "
                               f"{self.long_seconds} and {self.pause_seconds}")
        if self.workers < 1:
            raise OptionsError(f"workers must be at least 1, got {self.workers}")


@dataclass
class DemoDataset:
    """Where build_dataset put things; every manifest is in the original README's JSON list format."""

    folder: Path  # out_dir
    train: Path  # train.json
    validation: Path  # validation.json
    test: Path  # test.json: the voice, hand-written evaluation sentences
    test_other_voice: Path  # test_other_voice.json: the same sentences in other_voice
    long: Path  # long.json: one row, the long file, with "segments" (start, end, text per sentence)
    long_audio: Path  # the long WAV file itself
    info: Path  # dataset_info.json
    options: DatasetOptions  # the resolved options it was built with
    counts: dict = field(default_factory=dict)  # clips per split, and the long file's seconds and sentences


# ---------------------------------------------------------------------------------------------
# Sentences


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


@dataclass(frozen=True)
class SentenceSplits:
    train: list[str]  # hand-written training sentences first, then generated ones, shuffled together
    validation: list[str]  # hand-written training sentences kept out of train
    test: list[str]  # hand-written evaluation sentences
    long: list[str]  # every evaluation sentence, test ones first; the long file uses a prefix
    generated: int  # how many of train are generated rather than hand-written


def split_sentences(opts: DatasetOptions) -> SentenceSplits:
    """Pick each split's sentences for resolved options; no sentence is in two of train/validation/test."""
    rng = random.Random(f"{opts.seed}|{opts.language}|sentences")
    natural = read_sentences(opts.language, "train")
    rng.shuffle(natural)
    validation, pool = natural[:opts.n_val], natural[opts.n_val:]
    n_natural = min(len(pool), round(opts.n_train * opts.natural_share))
    train_natural = pool[:n_natural]
    # Generated English pairs draw from every non-validation sentence; Mandarin needs no list.
    generated = generated_sentences(opts.language, opts.n_train - n_natural, rng, pool)
    train = train_natural + generated
    rng.shuffle(train)
    evaluation = read_sentences(opts.language, "eval")
    rng.shuffle(evaluation)
    return SentenceSplits(train=train, validation=validation, test=evaluation[:opts.n_test], long=evaluation,
                          generated=len(generated))


# ---------------------------------------------------------------------------------------------
# Speech


def _speak_all(jobs: list[tuple[str, Voice]], folder: Path, workers: int, progress: bool) -> list[Path]:
    """Synthesize (text, voice) jobs into folder, workers at a time, and return one path per job.

    Repeated jobs are spoken once (two processes must never write the same file at once), and clips
    already in folder are reused."""
    unique = list(dict.fromkeys(jobs))

    def one(job):
        text, voice = job
        return synthesize_cached(text, folder, voice=voice.name, speed=voice.speed, pitch=voice.pitch)

    bar = None
    if progress and unique:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(unique), desc="espeak-ng speech", unit="clip")
    done = {}
    # espeak-ng runs as a separate process per clip, so threads run them in parallel.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job, path in zip(unique, pool.map(one, unique)):
            done[job] = path
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return [done[job] for job in jobs]


def _jittered(voice: Voice, rng: random.Random) -> Voice:
    speed = round(voice.speed * rng.uniform(1 - SPEED_JITTER, 1 + SPEED_JITTER))
    pitch = voice.pitch + rng.randint(-PITCH_JITTER, PITCH_JITTER)
    return Voice(voice.name, min(max(speed, 80), 450), min(max(pitch, 0), 99))


def _rows(paths: list[Path], texts: list[str], out_dir: Path, language: str) -> list[dict]:
    rows = []
    for path, text in zip(paths, texts):
        row = {"audio_path": "./" + path.relative_to(out_dir).as_posix(), "text": text}
        if language != "en":
            # Multilingual models must be told the language; English rows keep the original two keys
            # (English-only models such as tiny.en have no language token).
            row["language"] = language
        rows.append(row)
    return rows


def _trim(samples: np.ndarray, rate: int) -> np.ndarray:
    """Drop leading and trailing silence, keeping 20 ms either side of the speech."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL)
    if loud.size == 0:
        return samples[:0]
    margin = int(0.02 * rate)
    return samples[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def build_long_file(texts: list[str], speak, path: Path, long_seconds: float,
                    pause_seconds: float) -> tuple[list[dict], float]:
    """Speak texts in order (speak(list of texts) -> list of WAV paths) and join the clips, trimmed
    of silence, with pauses into one WAV at path, stopping once it reaches long_seconds or the texts
    run out. Returns the segments ({"start", "end", "text"}, in seconds, of the speech itself) and
    the file's length in seconds."""
    rate = pause = None
    pieces, segments = [], []
    position = 0  # samples so far
    done = 0
    while done < len(texts) and (rate is None or position / rate < long_seconds):
        # Speak a batch at once, for the worker pool: clips last at least ~2 s with their pause.
        batch = texts[done:done + max(2, int((long_seconds - (position / rate if rate else 0)) / 2) + 1)]
        for clip, text in zip(speak(batch), batch):
            done += 1
            samples, clip_rate = soundfile.read(clip, dtype="float32")
            if rate is None:
                rate = clip_rate
                pause = np.zeros(int(round(pause_seconds * rate)), dtype=np.float32)
                pieces.append(pause)  # start with a pause, as real recordings do
                position = len(pause)
            elif clip_rate != rate:
                raise WhisperLoraError(f"{clip}: sample rate {clip_rate} differs from the other clips' {rate}")
            if samples.ndim == 2:
                samples = samples.mean(axis=1)
            speech = _trim(samples, rate)
            segments.append({"start": round(position / rate, 3),
                             "end": round((position + len(speech)) / rate, 3), "text": text})
            pieces += [speech, pause]
            position += len(speech) + len(pause)
            if position / rate >= long_seconds:
                break
    if rate is None:
        raise WhisperLoraError("the long file needs at least one sentence")
    with atomic_path(path) as tmp:
        soundfile.write(tmp, np.concatenate(pieces), rate, subtype="PCM_16")
    return segments, position / rate


def build_dataset(out_dir: str | os.PathLike, language: str = "en", n_train: int | None = None,
                  n_val: int | None = None, n_test: int | None = None, voice: Voice | str | None = None,
                  other_voice: Voice | str | None = None, seed: int = 0, *, long_seconds: float = 180.0,
                  workers: int = 2, progress: bool = False, options: DatasetOptions | None = None) -> DemoDataset:
    """Speak train/validation/test sets, a second-voice test set and a long file into out_dir.

    Pass either the keyword arguments or a DatasetOptions (options wins). None means the language's
    default (DEFAULTS). Existing clips are reused; manifests are rewritten atomically."""
    if options is None:
        options = DatasetOptions(language=language, n_train=n_train, n_val=n_val, n_test=n_test, voice=voice,
                                 other_voice=other_voice, seed=seed, long_seconds=long_seconds, workers=workers)
    opts = options.resolved()
    out = Path(out_dir)
    audio_dir = out / AUDIO_DIR
    audio_dir.mkdir(parents=True, exist_ok=True)
    splits = split_sentences(opts)

    jitter_rng = random.Random(f"{opts.seed}|{opts.language}|jitter")
    train_voices = [_jittered(opts.voice, jitter_rng) if opts.jitter else opts.voice for _ in splits.train]
    # One job list for everything, so all clips share the worker pool and one progress bar.
    groups = {
        "train": list(zip(splits.train, train_voices)),
        "validation": [(t, opts.voice) for t in splits.validation],
        "test": [(t, opts.voice) for t in splits.test],
        "test_other_voice": [(t, opts.other_voice) for t in splits.test],
    }
    jobs = [job for group in groups.values() for job in group]
    paths = _speak_all(jobs, audio_dir, opts.workers, progress)
    by_group, start = {}, 0
    for name, group in groups.items():
        by_group[name] = paths[start:start + len(group)]
        start += len(group)

    manifests = {}
    for name in ("train", "validation", "test", "test_other_voice"):
        texts = [text for text, _ in groups[name]]
        manifests[name] = out / f"{name}.json"
        write_json(manifests[name], _rows(by_group[name], texts, out, opts.language), indent=1)

    # The long file speaks evaluation sentences, test ones first (their clips are reused), until
    # long_seconds; it is named by everything that decides its content.
    long_audio = audio_dir / (f"long-{opts.language}-{opts.voice.name}-{opts.voice.speed}-{opts.voice.pitch}"
                              f"-seed{opts.seed}-{opts.long_seconds:g}s.wav")
    segments, seconds = build_long_file(
        splits.long, lambda texts: _speak_all([(t, opts.voice) for t in texts], audio_dir, opts.workers, False),
        long_audio, opts.long_seconds, opts.pause_seconds)
    joiner = " " if opts.language == "en" else ""
    long_row = _rows([long_audio], [joiner.join(s["text"] for s in segments)], out, opts.language)[0]
    long_row["segments"] = segments
    manifests["long"] = out / "long.json"
    write_json(manifests["long"], [long_row], indent=1)

    counts = {name: len(groups[name]) for name in ("train", "validation", "test", "test_other_voice")}
    counts.update(long_seconds=round(seconds, 1), long_sentences=len(segments))
    info = out / "dataset_info.json"
    write_json(info, {
        "language": opts.language, "seed": opts.seed, "voice": str(opts.voice),
        "other_voice": str(opts.other_voice), "jitter": opts.jitter, "counts": counts,
        "train_generated": splits.generated,
        "sources": {"train": f"resources/{opts.language}_train.txt + generated",
                    "validation": f"resources/{opts.language}_train.txt (held out)",
                    "test": f"resources/{opts.language}_eval.txt"},
        "options": {k: (str(v) if isinstance(v, Voice) else v) for k, v in vars(opts).items()},
    }, indent=1)
    return DemoDataset(folder=out, train=manifests["train"], validation=manifests["validation"],
                       test=manifests["test"], test_other_voice=manifests["test_other_voice"],
                       long=manifests["long"], long_audio=long_audio, info=info, options=opts, counts=counts)
