"""Dutch speech from the voice acting of the game Fish Fillets NG: about 1,500 lines by several
actors (Ogg Vorbis, 22.05 kHz), with the script they read.

The recordings are in fillets-ng-data-nl (sound/<level>/nl/<id>.ogg), the lines in fillets-ng-data
(script/<level>/dialogs_nl.lua, as `dialogId("<id>", <font>, "<English>") dialogStr("<Dutch>")`).
The split is by game level, so no test line shares a scene (or its vocabulary) with training:
every HOLDOUT_EVERY-th level is test, and validation is every VALIDATION_EVERY-th clip of the
training levels. Clips of fewer than MIN_WORDS words (grunts, "Ja.") are left out."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..fileio import write_text
from .debian import package_root

SPEECH_PACKAGE = "fillets-ng-data-nl"
SCRIPT_PACKAGE = "fillets-ng-data"
GAME = Path("usr/share/games/fillets-ng")
HOLDOUT_EVERY = 5  # level i (sorted by name) is test when i % 5 == 0: 287 test clips, 1,196 others
VALIDATION_EVERY = 20  # of the training levels' clips, every 20th validates (about 60)
MIN_WORDS = 2
LANGUAGE = "nl"
EMPTY_OGG_BYTES = 5000  # an Ogg Vorbis file this small holds headers and no sound
LONG_FILE_PAUSE = 0.8  # seconds of silence between the clips of the long file

_LINE = re.compile(r'dialogId\(\s*"([^"]+)"[^)]*\)\s*dialogStr\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


@dataclass(frozen=True)
class Clip:
    level: str
    id: str
    audio_path: Path
    text: str

    def row(self) -> dict:
        return {"audio_path": str(self.audio_path), "text": self.text, "language": LANGUAGE}


@dataclass(frozen=True)
class Split:
    train: Path
    validation: Path
    test: Path
    counts: dict


def parse_dialogs(text: str) -> dict[str, str]:
    """{id: Dutch line} from a dialogs_nl.lua file."""
    lines = {}
    for match in _LINE.finditer(text):
        line = re.sub(r"\\(.)", lambda m: " " if m.group(1) == "n" else m.group(1), match.group(2))
        lines[match.group(1)] = " ".join(line.split())
    return lines


def clips(cache_dir: str | os.PathLike | None = None) -> list[Clip]:
    """Every recorded Dutch line with its text, level by level (fetches the packages once)."""
    sound = package_root(SPEECH_PACKAGE, cache_dir) / GAME / "sound"
    script = package_root(SCRIPT_PACKAGE, cache_dir) / GAME / "script"
    found = []
    for level_dir in sorted(p for p in script.iterdir() if (p / "dialogs_nl.lua").is_file()):
        recordings = sound / level_dir.name / "nl"
        for clip_id, text in parse_dialogs((level_dir / "dialogs_nl.lua").read_text(encoding="utf-8")).items():
            path = recordings / f"{clip_id}.ogg"
            # A few recordings are empty files: nothing to hear, so not a clip.
            if text and path.is_file() and path.stat().st_size > EMPTY_OGG_BYTES:
                found.append(Clip(level_dir.name, clip_id, path, text))
    return found


def split(all_clips: list[Clip]) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """(train, validation, test): test levels are every HOLDOUT_EVERY-th level."""
    levels = sorted({c.level for c in all_clips})
    held_out = {level for i, level in enumerate(levels) if i % HOLDOUT_EVERY == 0}
    usable = [c for c in all_clips if len(c.text.split()) >= MIN_WORDS]
    test = [c for c in usable if c.level in held_out]
    rest = [c for c in usable if c.level not in held_out]
    validation = rest[::VALIDATION_EVERY]
    train = [c for i, c in enumerate(rest) if i % VALIDATION_EVERY]
    return train, validation, test


def write_split(folder: str | os.PathLike, cache_dir: str | os.PathLike | None = None, max_train: int | None = None,
                max_validation: int | None = None, max_test: int | None = None) -> Split:
    """Write train/validation/test .jsonl manifests (absolute paths into the cache) into folder.
    max_*: evenly spread subsets (a short run keeps every level's voices)."""
    train, validation, test = split(clips(cache_dir))
    train, validation, test = _spread(train, max_train), _spread(validation, max_validation), _spread(test, max_test)
    folder = Path(folder)
    paths = {}
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        paths[name] = folder / f"{name}.jsonl"
        write_text(paths[name], "".join(json.dumps(c.row(), ensure_ascii=False) + "\n" for c in rows))
    return Split(paths["train"], paths["validation"], paths["test"],
                 {"train": len(train), "validation": len(validation), "test": len(test)})


def _spread(rows: list, limit: int | None) -> list:
    if limit is None or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def write_long_file(manifest: str | os.PathLike, path: str | os.PathLike, seconds: float) -> Path:
    """The manifest's clips one after another, LONG_FILE_PAUSE apart, into one 16-kHz WAV of
    about `seconds`: a long recording of several people for long-form transcription."""
    import numpy as np
    import soundfile

    from ..audio import SAMPLE_RATE, load_audio
    from ..fileio import atomic_path

    pause = np.zeros(int(LONG_FILE_PAUSE * SAMPLE_RATE), np.float32)
    pieces, total = [pause], len(pause)
    for line in Path(manifest).read_text(encoding="utf-8").splitlines():
        if total >= seconds * SAMPLE_RATE:
            break
        samples = load_audio(json.loads(line)["audio_path"])
        pieces += [samples, pause]
        total += len(samples) + len(pause)
    with atomic_path(path) as tmp:
        soundfile.write(tmp, np.concatenate(pieces), SAMPLE_RATE, format="WAV")
    return Path(path)


DISTRACTORS = 4  # per held-out term, in the glossary a held-out test is given


def write_glossary(train: str | os.PathLike, test: str | os.PathLike, path: str | os.PathLike,
                   distractors: int = DISTRACTORS, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """A glossary for a held-out test (benchmarks/glossary.py's protocol): every word of the test
    transcripts that no training transcript contains, spelled as the transcript spells it, plus
    `distractors` words for each from Debian's Dutch word list (wdutch) that no test transcript
    contains, shuffled. One term per line, written atomically."""
    import random

    from ..data.glossary import surface_words

    def words(manifest) -> list[str]:
        return [w for line in Path(manifest).read_text(encoding="utf-8").splitlines() if line.strip()
                for w in surface_words(json.loads(line)["text"])]

    trained = {w.casefold() for w in words(train)}
    spoken = words(test)
    held = {}
    for w in spoken:
        if w.casefold() not in trained and len(w) > 1:
            held.setdefault(w.casefold(), w)
    said = {w.casefold() for w in spoken}
    dictionary = (package_root("wdutch", cache_dir) / "usr/share/dict/dutch").read_text(encoding="utf-8").split()
    pool = sorted({w for w in dictionary if w.isalpha() and w.casefold() not in said})
    rng = random.Random(seed)
    terms = list(held.values()) + rng.sample(pool, distractors * len(held))
    rng.shuffle(terms)
    return write_text(path, "\n".join(terms) + "\n")
