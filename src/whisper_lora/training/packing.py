"""Short training clips packed into shared 30-second windows.

Whisper's encoder reads 30 s whatever the clip's length, so on the short clips most fine-tuning
sets hold (2-8 s) it works, forward and backward, mostly on padding: a batch of 8 clips is 8
full windows. The packer puts a batch's clips one after another, with short pauses, into as few
windows as they fit (each window's labels under the decoder's limit). A step then costs about
as many windows as its clips fill, while every clip still trains once per epoch with its own
text, and the batch size still counts clips. Whisper was trained on 30-s windows holding
several utterances, so packed windows are input it knows; the pauses are random, and which
clips share a window changes every epoch with the sampler's shuffle.

A window holds clips of one language. Its target is one kind: one text, the clips' joined in
order, or timestamped, each clip keeping its segments (its own, or one over its speech) moved
to where it starts in the window. Windows are filled first, whatever kind each clip was drawn
for, and the kind decided per window after: a batch of 8 short clips split by kind needed a
window more, and the fit is checked with the pauses actually drawn rather than the longest
(simulated on the Dutch training clips, 3.6 s on average: 266 windows an epoch, not 317).
"""

from __future__ import annotations

import random

from .. import audio
from .dataset import PAUSE_SECONDS, clip_starts, concat_with_pauses
from .prompt_terms import merge
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
        groups: dict[str | None, list[dict]] = {}
        for it in items:
            groups.setdefault(it["language"], []).append(it)
        windows = []
        for language, group in groups.items():
            open_windows: list[tuple[list[dict], list[float]]] = []  # clips, and the pause before each
            for it in group:  # first fit, in the sampler's random order
                pause = rng.uniform(*PAUSE_SECONDS)
                for clips, pauses in open_windows:
                    if self._fits(clips + [it], pauses + [pause], language):
                        clips.append(it)
                        pauses.append(pause)
                        break
                else:
                    open_windows.append(([it], [0.0]))
            windows += [self._window(clips, pauses, language) for clips, pauses in open_windows]
        return windows

    def _fits(self, clips: list[dict], pauses: list[float], language: str | None) -> bool:
        starts, samples = clip_starts([len(c["audio"]) for c in clips], pauses[1:])
        if samples > audio.N_SAMPLES:
            return False
        # Timestamped labels are the longer kind: a window that fits them fits either.
        return len(self._labels(clips, starts, language, True)) <= self.max_label_length

    def _labels(self, clips: list[dict], starts: list[float], language: str | None, timestamped: bool) -> list[int]:
        if not timestamped:
            joiner = "" if language in NO_SPACE_LANGUAGES else " "
            return self.label_maker.labels(joiner.join(c["text"] for c in clips), language)
        segments = [{**s, "start": start + s["start"], "end": start + s["end"]}
                    for c, start in zip(clips, starts) for s in c["segments"]]
        return self.label_maker.labels(" ".join(c["text"] for c in clips), language, segments, timestamps=True)

    def _window(self, clips: list[dict], pauses: list[float], language: str | None) -> dict:
        samples, starts = concat_with_pauses([c["audio"] for c in clips], pauses=pauses[1:])
        features = self.feature_extractor(samples, sampling_rate=audio.SAMPLE_RATE,
                                          return_tensors="np").input_features[0]
        # The window's first clip decides its target kind, so about the timestamp share of the
        # windows (and of the clips) train with timestamps, drawn anew as the windows change.
        timestamped = clips[0]["timestamped"]
        labels = self._labels(clips, starts, language, timestamped)
        # The first clip decides whether the window is prompted too (glossary-aware training).
        prompt = merge([c.get("prompt") for c in clips]) if clips[0].get("prompt") else None
        return {"input_features": features, "labels": labels, "language": language, "index": -1,
                "clips": len(clips), "indices": [c["index"] for c in clips], "timestamped": timestamped,
                "prompt": prompt}
