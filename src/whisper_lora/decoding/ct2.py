"""The CTranslate2 backend: decode with faster-whisper on a CTranslate2 model folder (model.bin,
config.json, tokenizer.json), such as `whisper-lora export` writes or faster-whisper uses.

Short audio (<= 30 s) is decoded in batches across files: one CTranslate2 `generate` call per
batch, with the <|nospeech|> probability and scores it returns used the way openai-whisper uses
them; a file whose text loops or is unreliable is decoded again with faster-whisper's own
temperature fallback. Long audio goes through faster-whisper's BatchedInferencePipeline: Silero
VAD cuts it at pauses into pieces of at most 30 s, decoded in batches, so silence is skipped and
nothing is cut mid-word (or, with long_form "sequential", through its sequential transcribe).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from ..devices import pick_device
from ..errors import ModelLoadError, OptionsError
from ..data.glossary import prompt_text
from .backend import Backend
from .guards import verdict
from .options import FALLBACK_SEED, TranscribeOptions
from . import long_form, vad, words
from .results import Decoded, Segment, Word, clamped, pieces_to_segments, timed_pieces

log = logging.getLogger(__name__)

# CTranslate2 compute type for each precision (see TranscribeOptions.precision).
COMPUTE_TYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def ct2_compute_type(options: TranscribeOptions, device: str) -> str:
    """The CTranslate2 compute type for these options on this device ("cpu", "cuda", "cuda:N"):
    options.compute_type when this device supports it, else the one that follows the precision,
    or CTranslate2's default where the device lacks that one (bfloat16 on most CPUs)."""
    import ctranslate2

    ct2_device = "cuda" if device.startswith("cuda") else "cpu"
    supported = ctranslate2.get_supported_compute_types(ct2_device)
    if options.compute_type:
        if options.compute_type not in supported | {"default", "auto"}:
            raise OptionsError(f"--compute_type {options.compute_type}: not supported on this {ct2_device}; "
                               f"choose one of {', '.join(sorted(supported))}")
        return options.compute_type
    compute_type = COMPUTE_TYPES[options.resolved_precision(device)]
    if compute_type not in supported:
        log.warning("%s is not supported by CTranslate2 on this %s; using its default instead", compute_type, ct2_device)
        return "default"
    return compute_type


def _cpu_threads() -> int:
    """The same thread count as torch uses (physical cores, or OMP_NUM_THREADS): faster-whisper's
    own default is a fixed 4, which oversubscribes a 2-core machine."""
    import torch

    return torch.get_num_threads()


class CT2Backend(Backend):
    """Decodes 16 kHz float32 arrays with faster-whisper; see the module docstring."""

    name = "ct2"

    def __init__(self, folder: str | os.PathLike, options: TranscribeOptions, model_name: str = "model"):
        try:
            import ctranslate2  # noqa: F401  (ct2_compute_type reads it)
            from faster_whisper import BatchedInferencePipeline, WhisperModel
        except ImportError as exc:
            raise ModelLoadError("--backend ct2 needs faster-whisper: pip install 'whisper-lora[ct2]'") from exc
        device = pick_device(options.device)
        if device not in ("cpu",) and not device.startswith("cuda"):
            raise OptionsError(f"--backend ct2 runs on cpu or cuda, not {device}; use --backend hf")
        ct2_device = "cuda" if device.startswith("cuda") else "cpu"
        compute_type = ct2_compute_type(options, device)
        self.model = WhisperModel(str(folder), device=ct2_device, compute_type=compute_type,
                                  cpu_threads=_cpu_threads() if device == "cpu" else 0)
        self.pipeline = BatchedInferencePipeline(self.model)
        self.multilingual = bool(self.model.model.is_multilingual)
        self.options = options.check_for_model(self.multilingual, model_name)
        self._tokenizers = {}

    def encode_text(self, text: str) -> list[int]:
        """Text tokens of `text` (no special tokens): how long a prompt it makes."""
        return self.model.hf_tokenizer.encode(text, add_special_tokens=False).ids

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(self.model.hf_tokenizer, self.multilingual,
                                                   task=self.options.task, language=language)
        return self._tokenizers[language]

    def _features(self, audios: list[np.ndarray]) -> np.ndarray:
        # Pad the audio (not the spectrogram) to 30 s, as Whisper's and HF's feature extractors do:
        # zero mel frames differ from the log-mel of silence, and that changed ~1 in 4 transcripts
        # against the HF backend on the same weights.
        return np.stack([self.model.feature_extractor(a, padding=max(0, N_SAMPLES - len(a)))[..., :N_FRAMES]
                         for a in audios])

    def decode_batch(self, audios: list[np.ndarray], timestamps: bool | None = None, retry: bool = True,
                     languages: list[str] | None = None, terms=None) -> tuple[list[Decoded], list[bool]]:
        """One batch: (Decoded per audio, trouble per audio); see Backend.decode_batch. The files
        in trouble are decoded again, one by one, by faster-whisper's own fallback (_sequential)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        opts = self.options
        timestamps = opts.return_timestamps if timestamps is None else timestamps
        durations = [len(a) / SAMPLE_RATE for a in audios]
        encoded = self.model.encode(self._features(audios))
        if languages is not None:
            langs = [(code, None) for code in languages]
        elif opts.language is None and self.multilingual:
            langs = [(tok_probs[0][0][2:-2], float(tok_probs[0][1]))
                     for tok_probs in self.model.model.detect_language(encoded)]
        else:
            langs = [(opts.language or "en", None)] * len(audios)
        terms = terms or [()] * len(audios)
        prompts = [self._prompt(self._tokenizer(code), timestamps, row) for (code, _), row in zip(langs, terms)]
        tokenizer = self._tokenizer(langs[0][0])  # the language only changes the prompt
        results, limits = [None] * len(audios), [0] * len(audios)
        # CTranslate2 needs <|startoftranscript|> at the same place in every row of a call: rows
        # whose prompts (glossary terms) differ in length are decoded in one call per length.
        for length in dict.fromkeys(map(len, prompts)):
            rows = [i for i, prompt in enumerate(prompts) if len(prompt) == length]
            limit = min(self.model.max_length, length + opts.max_new_tokens)
            out = self.model.model.generate(
                encoded if len(rows) == len(audios) else _rows_of(encoded, rows), [prompts[i] for i in rows],
                beam_size=opts.beam_size, max_length=limit, return_scores=True, return_no_speech_prob=True,
                suppress_blank=True, suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])))
            for i, result in zip(rows, out):
                results[i], limits[i] = result, limit
        decoded, avg_logprobs, truncated, pieces = [], [], [], []
        for result, prompt, limit, (code, prob), duration in zip(results, prompts, limits, langs, durations):
            tokens = result.sequences_ids[0]
            # faster-whisper's mean log-probability: the score covers the tokens plus the end token.
            avg_logprobs.append(result.scores[0] * len(tokens) / (len(tokens) + 1))
            pieces.append(timed_pieces(tokens, tokenizer.timestamp_begin, tokenizer.eot, duration))
            segments = pieces_to_segments(pieces[-1], tokenizer.decode, duration)
            if not timestamps and segments:
                segments = [Segment(0.0, duration, " ".join(s.text for s in segments))]
            decoded.append(Decoded(segments, code, prob))
            truncated.append(len(prompt) + len(tokens) >= limit)
        trouble = verdict(decoded, avg_logprobs, [r.no_speech_prob for r in results], truncated, opts)
        if opts.word_timestamps and timestamps:
            self._add_words(encoded, decoded, pieces, [len(a) for a in audios], skip=trouble if retry else None)
        if not (retry and any(trouble) and len(opts.temperatures) > 1):
            return decoded, trouble
        for i in (i for i, bad in enumerate(trouble) if bad):
            decoded[i] = self._sequential(audios[i], decoded[i].language, decoded[i].language_probability, terms[i])
        return decoded, [False] * len(audios)

    def _prompt(self, tokenizer, timestamps: bool, terms=()) -> list[int]:
        """faster-whisper's prompt: hotwords (with the glossary terms after them, best first:
        faster-whisper keeps the first tokens that fit) and the initial prompt before the start sequence."""
        opts = self.options
        previous = tokenizer.encode(" " + opts.initial_prompt.strip()) if opts.initial_prompt else []
        return self.model.get_prompt(tokenizer, previous, without_timestamps=not timestamps,
                                     hotwords=self._hotwords(terms))

    def _hotwords(self, terms=()) -> str | None:
        """options.hotwords followed by the glossary terms, or None for neither."""
        text = " ".join(t.strip() for t in (self.options.hotwords, prompt_text(terms)) if t and t.strip())
        return text or None

    def _add_words(self, encoded, decoded: list[Decoded], pieces, samples: list[int], skip=None) -> None:
        """Word timestamps from CTranslate2's alignment (its DTW over the alignment heads), then
        the same word splitting and fix-ups as the transformers backend (words.py). Rows are
        aligned per language, since the start sequence is shared by a call."""
        for code in dict.fromkeys(d.language for d in decoded):
            rows = [i for i, d in enumerate(decoded) if d.language == code and not (skip and skip[i])
                    and any(ids for _, _, ids in pieces[i])]
            if not rows:
                continue
            tokenizer = self._tokenizer(code)
            texts = [[t for _, _, ids in pieces[i] for t in ids] for i in rows]
            frames = [min(N_FRAMES, samples[i] // HOP_LENGTH) for i in rows]
            features = encoded if len(rows) == len(decoded) else _rows_of(encoded, rows)
            results = self.model.model.align(features, tokenizer.sot_sequence, texts, frames,
                                             median_filter_width=words.MEDIAN_FILTER_WIDTH)
            for i, text, result in zip(rows, texts, results):
                path = np.array(result.alignments).reshape(-1, 2)
                timed = words.timings([ids for _, _, ids in pieces[i]], path[:, 0], path[:, 1],
                                      np.array(result.text_token_probs),
                                      tokenizer.decode, code, tokenizer.eot)
                decoded[i].segments = clamped(((s.start, s.end, s.text, s.words) for s in
                                               words.place(pieces[i], timed, tokenizer.decode)),
                                              samples[i] / SAMPLE_RATE)

    def _sequential(self, audio: np.ndarray, language: str | None, probability: float | None, terms=()) -> Decoded:
        """faster-whisper's WhisperModel.transcribe: openai-whisper's algorithm, fallback included.
        language None: detected by faster-whisper (on the first 30 s) and reported."""
        import ctranslate2

        opts = self.options
        ctranslate2.set_random_seed(FALLBACK_SEED)  # the fallback's sampling, the same in every run
        segments, info = self.model.transcribe(
            audio, language=language, task=opts.task, beam_size=opts.beam_size, best_of=1,
            temperature=list(opts.temperatures), compression_ratio_threshold=opts.compression_ratio_threshold,
            log_prob_threshold=opts.logprob_threshold, no_speech_threshold=opts.no_speech_threshold,
            condition_on_previous_text=opts.condition_on_previous_text,
            without_timestamps=not opts.return_timestamps, vad_filter=False, max_new_tokens=opts.max_new_tokens,
            word_timestamps=opts.word_timestamps, initial_prompt=opts.initial_prompt, hotwords=self._hotwords(terms))
        segments = _segments(segments, len(audio) / SAMPLE_RATE)  # a generator: decoding happens here
        if language is None:
            return Decoded(segments, info.language, float(info.language_probability))
        return Decoded(segments, language, probability)

    def decode_long(self, audios: list[np.ndarray], terms=None) -> list[Decoded]:
        """Audio over 30 s: VAD pieces decoded in batches by faster-whisper's batched pipeline, or
        with long_form "sequential" faster-whisper's sequential transcribe.

        With --vad, the speech is found by vad.py, whose times stay right across the stretches
        it leaves out: faster-whisper's own mapping put segments that cross a join over the
        whole stretch left out (a minute early, on benchmarks/vad_check.py's file). Batched, that
        needs the language, to plan the pieces (long_form.decode_pieces) as the hf backend does."""
        opts = self.options
        # faster-whisper's own loops take one prompt per file: all of the file's terms
        file_terms = [long_form.piece_terms(t, 0, len(a)) for a, t in zip(audios, terms)] if terms else [()] * len(audios)
        if opts.long_form == "sequential":
            if opts.vad:
                return [vad.decode_speech_only([audio], [opts.language], lambda speech, langs: [
                    self._sequential(a, code, None, t) for a, code in zip(speech, langs)])[0]
                    for audio, t in zip(audios, file_terms)]
            return [self._sequential(audio, opts.language, None, t) for audio, t in zip(audios, file_terms)]
        if opts.vad and opts.language is not None:
            segments = long_form.decode_pieces(audios, [opts.language] * len(audios), self.decode_batch, opts, terms)
            return [Decoded(segs, opts.language, None) for segs in segments]
        out = []
        for audio, t in zip(audios, file_terms):
            segments, info = self.pipeline.transcribe(
                audio, language=opts.language, task=opts.task, beam_size=opts.beam_size,
                batch_size=opts.batch_size, without_timestamps=not opts.return_timestamps,
                temperature=list(opts.temperatures), compression_ratio_threshold=opts.compression_ratio_threshold,
                log_prob_threshold=opts.logprob_threshold, no_speech_threshold=opts.no_speech_threshold,
                word_timestamps=opts.word_timestamps, initial_prompt=opts.initial_prompt, hotwords=self._hotwords(t))
            segments = _segments(segments, len(audio) / SAMPLE_RATE)
            detected = opts.language is None and self.multilingual
            out.append(Decoded(segments, info.language, float(info.language_probability) if detected else None))
        return out


def _rows_of(encoded, rows: list[int]):
    """Some rows of the encoder's output (a CTranslate2 StorageView), as a StorageView."""
    import ctranslate2

    if encoded.device == "cpu":
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))
    import torch

    return ctranslate2.StorageView.from_array(torch.as_tensor(encoded, device="cuda")[rows].contiguous())


def _segments(fw_segments, duration: float) -> list[Segment]:
    """faster-whisper's segments (a generator: the decoding happens as it is read) -> Segments."""
    return clamped(((s.start, s.end, s.text.strip(),
                     [Word(w.start, w.end, w.word, w.probability) for w in (s.words or ())])
                    for s in fw_segments), duration)
