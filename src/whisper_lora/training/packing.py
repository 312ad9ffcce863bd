"""Short training clips packed into shared 30-second windows.

Whisper's encoder reads 30 s whatever the clip's length, so on the short clips most fine-tuning
sets hold (2-8 s) it works, forward and backward, mostly on padding: a batch of 8 clips is 8
full windows. The packer puts a batch's clips one after another, with short pauses, into as few
windows as they fit (each window's labels under the decoder's limit). A step then costs about
as many windows as its clips fill, while every clip still trains once per epoch with its own
text, and the batch size still counts clips. Whisper was trained on 30-s windows holding
several utterances, so packed windows are input it knows; the pauses are random, and which
clips share a window changes every epoch with the sampler's shuffle.

A window holds clips of one language and one target kind: text-only clips give one text,
joined in order; timestamped clips keep one segment each (their own segments, or one over
their speech), moved to where they start in the window.
"""

from __future__ import annotations

import random

from .. import audio
from .dataset import PAUSE_SECONDS, concat_with_pauses
from ..languages import NO_SPACE_LANGUAGES


class WindowPacker:
    """Collator step: items with raw `audio` -> items with `input_features` and `labels`, one per window."""

    def __init__(self, feature_extractor, label_maker, max_label_length: int, seed: int = 0):
        self.feature_extractor = feature_extractor
        self.label_maker = label_maker
        self.max_label_length = max_label_length
        self.seed = seed

    def __call__(self, items: list[dict]) -> list[dict]:
        # The same batch always gets the same pauses, so a resumed run repeats its windows.
        rng = random.Random(f"{self.seed}|pack|" + ",".join(str(it["index"]) for it in items))
        groups: dict[tuple, list[dict]] = {}
        for it in items:
            groups.setdefault((it["language"], it["segments"] is not None), []).append(it)
        windows = []
        for (language, timestamped), group in groups.items():
            open_windows: list[list[dict]] = []
            for it in group:  # first fit, in the sampler's random order
                for window in open_windows:
                    if self._fits(window + [it], language, timestamped):
                        window.append(it)
                        break
                else:
                    open_windows.append([it])
            windows += [self._window(w, language, timestamped, rng) for w in open_windows]
        return windows

    def _fits(self, clips: list[dict], language: str | None, timestamped: bool) -> bool:
        longest_pauses = PAUSE_SECONDS[1] * (len(clips) - 1) * audio.SAMPLE_RATE
        if sum(len(c["audio"]) for c in clips) + longest_pauses > audio.N_SAMPLES:
            return False
        return len(self._labels(clips, [0.0] * len(clips), language, timestamped)) <= self.max_label_length

    def _labels(self, clips: list[dict], starts: list[float], language: str | None, timestamped: bool) -> list[int]:
        if not timestamped:
            joiner = "" if language in NO_SPACE_LANGUAGES else " "
            return self.label_maker.labels(joiner.join(c["text"] for c in clips), language)
        segments = [{**s, "start": start + s["start"], "end": start + s["end"]}
                    for c, start in zip(clips, starts) for s in c["segments"]]
        return self.label_maker.labels(" ".join(c["text"] for c in clips), language, segments, timestamps=True)

    def _window(self, clips: list[dict], language: str | None, timestamped: bool, rng: random.Random) -> dict:
        samples, starts = concat_with_pauses([c["audio"] for c in clips], rng)
        features = self.feature_extractor(samples, sampling_rate=audio.SAMPLE_RATE,
                                          return_tensors="np").input_features[0]
        return {"input_features": features, "labels": self._labels(clips, starts, language, timestamped),
                "language": language, "index": -1, "clips": len(clips)}
