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
the model learns to write the bank's words (docs/design.md). So, with the sources in sentences.py,
  - evaluation (test, other voice, long file) uses hand-written sentences (resources/*_eval.txt)
    that no training split ever sees;
  - validation uses hand-written training sentences (resources/*_train.txt) held out from training;
  - training uses the rest of the hand-written training sentences, spread over many topics, and,
    when more are asked for than the list holds, generated ones: for Mandarin, sentences whose
    content words are drawn from jieba's word-frequency dictionary; for English, pairs of
    training sentences spoken as one clip.
Training clips vary the voice's speed (+-10%) and pitch (+-8) so the model learns the voice, not
one exact rendering of it; evaluation clips use the voice as given.

Everything is deterministic for a seed, and clips are cached by text and voice, so a second run
(or a larger one) only synthesizes what is new.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionsError
from ..fileio import write_json
from .long_file import build_long_file
from .sentences import LANGUAGES, generated_sentences, read_sentences
from .tts import Voice, speak_all

AUDIO_DIR = "audio"  # clips live in out_dir/audio; manifests refer to them as ./audio/NAME.wav

# Training clips jitter the voice so the model cannot latch onto one exact rendering.
SPEED_JITTER = 0.10  # speed drawn uniformly from speed * (1 +- 0.10)
PITCH_JITTER = 8  # pitch drawn uniformly from pitch +- 8 (espeak-ng pitch is 0-99)


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
# With scoring/metrics.py's normalisation on the 40 default test sentences: en-gb-x-gbclan 24.0%, en-us 13.2%;
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
    paths = speak_all(jobs, audio_dir, opts.workers, progress)
    by_group, start = {}, 0
    for name, group in groups.items():
        by_group[name] = paths[start:start + len(group)]
        start += len(group)

    manifests = {}
    for name in ("train", "validation", "test", "test_other_voice"):
        texts = [text for text, _ in groups[name]]
        manifests[name] = out / f"{name}.json"
        write_json(manifests[name], _rows(by_group[name], texts, out, opts.language), indent=1)

    manifests["long"], long_audio, segments, seconds = _write_long_file(splits.long, opts, out)

    counts = {name: len(groups[name]) for name in ("train", "validation", "test", "test_other_voice")}
    counts.update(long_seconds=round(seconds, 1), long_sentences=len(segments))
    info = _write_info(out / "dataset_info.json", opts, counts, splits.generated)
    return DemoDataset(folder=out, train=manifests["train"], validation=manifests["validation"],
                       test=manifests["test"], test_other_voice=manifests["test_other_voice"],
                       long=manifests["long"], long_audio=long_audio, info=info, options=opts, counts=counts)


def _write_long_file(texts: list[str], opts: DatasetOptions, out: Path) -> tuple[Path, Path, list[dict], float]:
    """Speak the long file and write long.json; return (long.json, the WAV, its segments, its seconds).

    It speaks evaluation sentences, test ones first (their clips are reused), until long_seconds;
    the WAV is named by everything that decides its content."""
    audio_dir = out / AUDIO_DIR
    long_audio = audio_dir / (f"long-{opts.language}-{opts.voice.name}-{opts.voice.speed}-{opts.voice.pitch}"
                              f"-seed{opts.seed}-{opts.long_seconds:g}s.wav")
    segments, seconds = build_long_file(
        texts, lambda batch: speak_all([(t, opts.voice) for t in batch], audio_dir, opts.workers, False),
        long_audio, opts.long_seconds, opts.pause_seconds)
    joiner = " " if opts.language == "en" else ""
    long_row = _rows([long_audio], [joiner.join(s["text"] for s in segments)], out, opts.language)[0]
    long_row["segments"] = segments
    manifest = out / "long.json"
    write_json(manifest, [long_row], indent=1)
    return manifest, long_audio, segments, seconds


def _write_info(path: Path, opts: DatasetOptions, counts: dict, generated: int) -> Path:
    """dataset_info.json: what the data set holds and which options made it."""
    write_json(path, {
        "language": opts.language, "seed": opts.seed, "voice": str(opts.voice),
        "other_voice": str(opts.other_voice), "jitter": opts.jitter, "counts": counts,
        "train_generated": generated,
        "sources": {"train": f"resources/{opts.language}_train.txt + generated",
                    "validation": f"resources/{opts.language}_train.txt (held out)",
                    "test": f"resources/{opts.language}_eval.txt"},
        "options": {k: (str(v) if isinstance(v, Voice) else v) for k, v in vars(opts).items()},
    }, indent=1)
    return path
