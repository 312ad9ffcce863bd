"""Word timestamps: when each word of a decoded text is spoken, and how sure the model is of it.

openai-whisper's method (whisper/timing.py; faster-whisper does the same in CTranslate2): the
decoder reads the text once more, teacher-forced, over the window's encoder output; a few of its
cross-attention heads (the alignment heads) look at the audio frames where each token is heard.
Their attention, normalised per frame and median-filtered, is aligned to the frames with dynamic
time warping (DTW): the path's steps between tokens are the word boundaries.

This module holds everything both backends share: DTW, splitting tokens into words, the
timing of words from an alignment path, openai-whisper's fix-ups (overlong words at pauses,
punctuation joined to its word) and placing words inside their segments. How the path is found
is each backend's: `HFAligner` here for transformers (the heads' queries and keys read with
forward hooks, so any attention implementation, LoRA or merged, works the same), CTranslate2's
own `align` for the ct2 backend.

One module for one job, word times: the alignment, the fix-ups and the fitting to the sound
work on the same words in sequence (over 300 lines).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from ..audio import HOP_LENGTH, SAMPLE_RATE
from ..languages import NO_SPACE_LANGUAGES
from .results import Segment, Word

FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH / 2  # 50: the encoder halves the 100 mel frames a second
MEDIAN_FILTER_WIDTH = 7  # frames; openai-whisper's and faster-whisper's
# openai-whisper's defaults: punctuation that belongs to the next word or to the one before.
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_ENDS = ".。!！?？"
MAX_MEDIAN_WORD = 0.7  # seconds: a word longer than twice the median (at most 2 x 0.7 s) is clipped at a pause


@dataclass
class Timing:
    """One word on a window's timeline, while it is being fixed up (mutable, unlike Word)."""
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def default_heads(n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """openai-whisper's choice for a model without known alignment heads: every head of the
    upper half of the decoder layers."""
    return [(layer, head) for layer in range(n_layers // 2, n_layers) for head in range(n_heads)]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through cost (tokens x frames) from (0, 0) to the far corner:
    (token index, frame index) of each step. A step moves to the next token, the next frame, or
    both. Cells on one anti-diagonal depend only on the two before it, so each anti-diagonal is
    computed at once (a Python loop over cells would take a second a window)."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0: diagonal, 1: from the token before, 2: from the frame before
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        options = np.stack([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]])
        best = options.argmin(axis=0)  # the first minimum: the diagonal wins ties
        total[i, j] = cost[i - 1, j - 1] + options[best, np.arange(len(i))]
        trace[i, j] = best
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def split_words(tokens: list[int], decode, language: str | None, first_special: int,
                breaks: frozenset[int] = frozenset()) -> tuple[list[str], list[list[int]]]:
    """Tokens -> (words, tokens of each word). A word is cut only where a whole character ends
    (a token can hold half of one). Languages written without spaces: every character is a
    word; others: a new word starts at a space, at punctuation or at a special token, and at
    each token index in breaks (where a segment starts: a word is never shared by two)."""
    full = decode(tokens)
    pieces, piece_tokens, current, offset, starts = [], [], [], 0, []
    for index, token in enumerate(tokens):
        if not current:
            starts.append(index)
        current.append(token)
        text = decode(current)
        broken = text.find("\ufffd")
        if broken < 0 or full[offset + broken:offset + broken + 1] == "\ufffd":  # a whole character, or a real U+FFFD
            pieces.append(text)
            piece_tokens.append(current)
            offset += len(text)
            current = []
    if language in NO_SPACE_LANGUAGES:
        return pieces, piece_tokens
    words, word_tokens = [], []
    for text, toks, start in zip(pieces, piece_tokens, starts):
        if (not words or toks[0] >= first_special or text.startswith(" ") or text.strip() in string.punctuation
                or start in breaks):
            words.append(text)
            word_tokens.append(list(toks))
        else:
            words[-1] += text
            word_tokens[-1] += toks
    return words, word_tokens


def timings(pieces: list[list[int]], text_indices: np.ndarray, time_indices: np.ndarray, token_probs: np.ndarray,
            decode, language: str | None, eot: int) -> list[Timing]:
    """Words of the segments' text tokens (pieces, one list per segment) timed by an alignment
    path over [their tokens..., eot] (dtw's output): a word starts at the frame where the path
    reaches its first token and ends where it reaches the next word's. token_probs: the model's
    probability of each text token."""
    breaks = frozenset(np.cumsum([len(p) for p in pieces]).tolist())
    text_tokens = [t for p in pieces for t in p]
    words, word_tokens = split_words(text_tokens + [eot], decode, language, eot, breaks)
    if len(word_tokens) <= 1:
        return []
    bounds = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens[:-1]])])
    jumps = np.concatenate([[True], np.diff(text_indices) != 0])
    jump_times = time_indices[jumps] / FRAMES_PER_SECOND
    return [Timing(word, toks, float(jump_times[a]), float(jump_times[b]), float(np.mean(token_probs[a:b])))
            for word, toks, a, b in zip(words[:-1], word_tokens[:-1], bounds[:-1], bounds[1:])]


def _clip_long_words(words: list[Timing]) -> tuple[float, float]:
    """Words longer than twice the median at a sentence's end or start are clipped: the path
    gives a pause to the word beside it. Returns (median, max) word duration."""
    durations = np.array([w.end - w.start for w in words])
    durations = durations[durations.nonzero()]
    median = min(MAX_MEDIAN_WORD, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):
        for before, w in zip(words, words[1:]):
            if w.end - w.start > longest:
                if w.word in SENTENCE_ENDS:
                    w.end = w.start + longest
                elif before.word in SENTENCE_ENDS:
                    w.start = w.end - longest
    return median, longest


def _merge_punctuation(words: list[Timing]) -> None:
    """Opening punctuation joins the word after it, closing punctuation the word before; the
    emptied entries stay (with no text) so token counts still add up."""
    i = len(words) - 2
    j = len(words) - 1
    while i >= 0:
        before, after = words[i], words[j]
        if before.word.startswith(" ") and before.word.strip() in PREPEND_PUNCTUATIONS:
            after.word, after.tokens = before.word + after.word, before.tokens + after.tokens
            before.word, before.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):
        before, after = words[i], words[j]
        if not before.word.endswith(" ") and after.word in APPEND_PUNCTUATIONS:
            before.word, before.tokens = before.word + after.word, before.tokens + after.tokens
            after.word, after.tokens = "", []
        else:
            i = j
        j += 1


def place(pieces: list[tuple[float, float, list[int]]], words: list[Timing], decode,
          last_speech: float = 0.0) -> list[Segment]:
    """Segments of one window with their words: pieces are (start, end, text token ids) as
    decoded, words the window's timings over all those tokens in order. Each segment takes
    the words its tokens make up; openai-whisper's fix-ups then keep a first word after a pause
    from starting in the pause, and set each segment's times from its words, unless a word runs
    over the decoded segment time by more than half a second (then the segment's time wins)."""
    median, longest = _clip_long_words(words) if words else (0.0, 0.0)
    _merge_punctuation(words)
    segments, k = [], 0
    for start, end, ids in pieces:
        mine, counted = [], 0
        while k < len(words) and counted < len(ids):
            if words[k].word:
                mine.append(words[k])
            counted += len(words[k].tokens)
            k += 1
        text = decode(ids).strip()
        if not text:
            continue
        if mine:
            first = mine[0]
            if first.end - last_speech > median * 4 and (
                    first.end - first.start > longest or (len(mine) > 1 and mine[1].end - first.start > longest * 2)):
                if len(mine) > 1 and mine[1].end - mine[1].start > longest:
                    boundary = max(mine[1].end / 2, mine[1].end - longest)
                    first.end = mine[1].start = boundary
                first.start = max(0.0, first.end - longest)
            if start < first.end and start - 0.5 > first.start:
                first.start = max(0.0, min(first.end - median, start))
            else:
                start = first.start
            last = mine[-1]
            if end > last.start and end + 0.5 < last.end:
                last.end = max(last.start + median, end)
            else:
                end = last.end
            last_speech = end
        segments.append(Segment(start, max(start, end), text,
                                tuple(Word(w.start, max(w.start, w.end), w.word, w.probability) for w in mine)))
    return segments


class HFAligner:
    """Alignment paths for a transformers Whisper model: one teacher-forced decoder pass over a
    batch of windows, the alignment heads' cross-attention read through forward hooks on their
    query projections (the keys are projected here from the encoder output)."""

    def __init__(self, whisper, heads: list[tuple[int, int]] | None = None):
        self.whisper = whisper
        config = whisper.config
        self.heads = [tuple(h) for h in (heads or whisper.generation_config.alignment_heads or
                                         default_heads(config.decoder_layers, config.decoder_attention_heads))]
        self.head_dim = config.d_model // config.decoder_attention_heads

    def paths(self, encoder_hidden, rows: list[tuple[list[int], list[int], int]]):
        """rows: (start sequence, text tokens, audio samples) per window of encoder_hidden.
        Returns per row (text indices, time indices, token probabilities), or None for a row
        without text. The start sequence is <|startoftranscript|> (language, task) as decoded."""
        out = []
        for matrices, probs in self.attention(encoder_hidden, rows, self.heads):
            if matrices is None:
                out.append(None)
                continue
            text_indices, time_indices = dtw(-matrices.mean(dim=0).double().cpu().numpy())
            out.append((text_indices, time_indices, probs))
        return out

    def attention(self, encoder_hidden, rows, heads: list[tuple[int, int]]):
        """Per row: (the heads' normalised, median-filtered cross-attention, heads x (text tokens
        + 1) x audio frames, as read while each text token and <|endoftext|> are predicted; the
        model's probability of each text token), or (None, None) for a row without text."""
        import torch

        eot = self.whisper.generation_config.eos_token_id
        no_ts = self.whisper.generation_config.no_timestamps_token_id
        seqs = [list(sot) + [no_ts] + list(text) + [eot] for sot, text, _ in rows]
        width = max(map(len, seqs))
        # Right-padding with <|endoftext|> changes nothing before it: the decoder is causal.
        ids = torch.tensor([s + [eot] * (width - len(s)) for s in seqs], device=encoder_hidden.device)
        layers = self.whisper.model.decoder.layers
        queries, hooks = {}, []
        for layer in sorted({layer for layer, _ in heads}):
            hooks.append(layers[layer].encoder_attn.q_proj.register_forward_hook(
                lambda module, args, out, layer=layer: queries.__setitem__(layer, out)))
        try:
            with torch.inference_mode():
                hidden = self.whisper.model.decoder(input_ids=ids, encoder_hidden_states=encoder_hidden,
                                                    use_cache=False).last_hidden_state
                logits = self.whisper.proj_out(hidden).float()
                keys = {layer: layers[layer].encoder_attn.k_proj(encoder_hidden).float() for layer in queries}
                weights = []
                for layer, head in heads:
                    part = slice(head * self.head_dim, (head + 1) * self.head_dim)
                    qk = queries[layer][..., part].float() @ keys[layer][..., part].transpose(1, 2)
                    weights.append(qk * layers[layer].encoder_attn.scaling)
                weights = torch.stack(weights, dim=1)  # batch x heads x tokens x frames
        finally:
            for hook in hooks:
                hook.remove()
        out = []
        for row, (sot, text, samples) in enumerate(rows):
            if not text:
                out.append((None, None))
                continue
            frames = max(1, min(weights.shape[-1], samples // HOP_LENGTH // 2))
            w = weights[row, :, :len(seqs[row]), :frames].softmax(dim=-1)
            std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
            w = _median_filter((w - mean) / std.clamp(min=1e-10), MEDIAN_FILTER_WIDTH)
            probs = logits[row, len(sot):len(sot) + len(text), :eot].softmax(dim=-1)
            token_probs = probs[torch.arange(len(text)), torch.tensor(text)].cpu().numpy()
            out.append((w[:, len(sot):-1], token_probs))
        return out


def _median_filter(x, width: int):
    """Median over a sliding window of the last dimension, edges reflected (as scipy's)."""
    import torch.nn.functional as F

    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = F.pad(x.reshape(-1, 1, x.shape[-1]), (pad, pad), mode="reflect").reshape(*x.shape[:-1], -1)
    return padded.unfold(-1, width, 1).median(dim=-1).values


SOUND_DB = 40.0  # a 10-ms frame within this many dB of the file's loudest is sound (quiet consonants too)
FIT_TO_SOUND = True  # read at call time: benchmarks/word_times.py turns it off to compare raw DTW times
REACH_SECONDS = 0.6  # how far a word's start or end may move to meet the edge of its sound
PAUSE_SECONDS = 0.15  # quiet this long inside a word's span is a pause, not a stop consonant's closure


def fit_to_sound(segments: list[Segment], audio: np.ndarray) -> list[Segment]:
    """Word times moved to the edges of the sound they lie in, and segments then span their words.

    DTW gives every frame to some token, so a pause is read as part of the word beside it, and
    a boundary can land inside a word: on words spoken with pauses between them, starts were
    0.1-0.3 s off (benchmarks/word_times.py), faster-whisper's as ours. So a start in silence
    moves forward to the sound; a start inside sound moves back to where that sound begins; an
    end likewise. Never past the word before or after, nor more than REACH_SECONDS: in speech
    without pauses, words meet inside sound, and nothing moves. A start in the tail of the word
    before's sound, with a pause (PAUSE_SECONDS) and then sound later in the word's span, moves
    to that sound: DTW gave the pause and that tail to this word (a fine-tuned model's
    attention does so more often)."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    if n == 0 or not FIT_TO_SOUND or not any(s.words for s in segments):
        return segments
    rms = np.sqrt(np.mean(np.square(audio[:n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10)) > -SOUND_DB
    reach = int(REACH_SECONDS * 100)
    words = [w for s in segments for w in s.words]
    fitted = []
    for k, w in enumerate(words):
        before = int(round(fitted[-1].end * 100)) if fitted else 0
        a, b = min(n, int(round(w.start * 100))), min(n, int(round(w.end * 100)))
        if fitted:
            a = _after_pause(loud, max(a, before), b, since=int(round(fitted[-1].start * 100)))
        sound = np.flatnonzero(loud[a:b])
        if len(sound):
            start = _sound_start(loud, a + sound[0], max(before, a - reach))
            after = n
            if k + 1 < len(words):  # where the next word starts, past a pause as it will be fitted
                after = _after_pause(loud, min(n, int(round(words[k + 1].start * 100))),
                                     min(n, int(round(words[k + 1].end * 100))), since=start)
            end = _sound_end(loud, a + sound[-1] + 1, min(after, b + reach))
            w = Word(float(start) / 100, float(max(start, end)) / 100, w.word, w.probability)
        fitted.append(w)
    out, k = [], 0
    for seg in segments:
        mine = tuple(fitted[k:k + len(seg.words)])
        k += len(seg.words)
        out.append(Segment(mine[0].start, mine[-1].end, seg.text, mine) if mine else seg)
    return out


def _after_pause(loud: np.ndarray, start: int, end: int, since: int) -> int:
    """start, or where sound begins again after a pause within [start, end) when start lies in
    the sound of the word that began at `since`: sound that runs from there to start with no
    pause between (stop consonants' closures are shorter)."""
    if start == 0 or start >= end or not (loud[start] and loud[start - 1]) or _pause_in(~loud[since:start]):
        return start
    quiet = np.flatnonzero(~loud[start:end])
    if len(quiet):
        pause = start + quiet[0]
        resumes = np.flatnonzero(loud[pause:end])
        if len(resumes) and resumes[0] >= PAUSE_SECONDS * 100:
            return pause + resumes[0]
    return start


def _pause_in(quiet: np.ndarray) -> bool:
    """Whether quiet (10-ms frames) holds a run of PAUSE_SECONDS."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(np.int8), [0]))))
    return any(stop - begin >= PAUSE_SECONDS * 100 for begin, stop in zip(edges[::2], edges[1::2]))


def _sound_start(loud: np.ndarray, frame: int, limit: int) -> int:
    """Where the run of sound holding `frame` begins, if it begins at or after limit; else frame
    (sound that goes on past the limit, such as steady noise, says nothing about the word)."""
    start = frame
    while start > limit and start > 0 and loud[start - 1]:
        start -= 1
    return start if start == 0 or not loud[start - 1] else frame


def _sound_end(loud: np.ndarray, frame: int, limit: int) -> int:
    """Where the run of sound ending at `frame` ends, if by limit; else frame."""
    end = frame
    while end < limit and end < len(loud) and loud[end]:
        end += 1
    return end if end == len(loud) or not loud[end] else frame
