"""The transformers backend: decode audio arrays with a WhisperForConditionalGeneration (plain,
peft LoRA or merged).

Short audio (<= 30 s) is decoded in batches the way openai-whisper decodes one window:
  1. the encoder runs once per file;
  2. one decoder step on <|startoftranscript|> gives both the language distribution (for
     detection, with its probability) and the <|nospeech|> probability;
  3. greedy or beam decoding reuses the encoder output;
  4. a file whose text is a repetition loop (gzip compression ratio too high) or unreliable
     (mean log-probability too low) is decoded again at rising temperatures, unless it is
     silence (high <|nospeech|> probability and low log-probability), which gives no text.
transformers' own `generate` fallback would run the encoder a second time for its no-speech
check, which on a CPU costs as much as the decoding; here it only serves the rare retries
(hf_fallback.py).

With options.pack (the default) and a known language, several short files share one window
(packing.py, through Backend.decode_short).

Long audio (> 30 s) is cut at its pauses into pieces of at most 30 s, decoded together in batches
like short audio, with timestamps and one language per file (long_form.decode_pieces plans it;
this module decodes). With options.long_form "sequential", long audio goes through transformers'
sequential long-form `generate` instead (hf_fallback.py): 30-second windows that advance to the
last complete timestamped segment, the previous window's text as a prompt, temperature fallback
and no-speech detection.

One module for one job, the backend's own decoding of a batch: the encoder, the first step
and the search share one encoder output and one cache (over 300 lines); generate's fallback
is apart (hf_fallback.py), as are the cache that spares generate its copies (hf_cache.py), the
logits processors (hf_logits.py) and the rows' prompts (hf_prompts.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging

import numpy as np
import torch
from transformers import LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutput

from . import hf_fallback, long_form, vad, words
from ..audio import N_SAMPLES, SAMPLE_RATE
from .backend import Backend
from .guards import verdict
from .hf_cache import cross_cache, decoder_cache, lean_generate
from .hf_prompts import PromptIds
from .lm_fusion import LMFusion, word_ends
from .hf_logits import Suppress, TokenLogprobs, quiet_generate_warnings
from .int8_head import Int8Head, build_int8_head
from ..devices import cpu_has_native_bf16, pick_device
from ..data.lm import load as load_lm
from .results import Decoded, Segment, clamped, pieces_to_segments, timed_pieces
from .options import TranscribeOptions

log = logging.getLogger(__name__)


class HFBackend(PromptIds, Backend):
    """Decodes 16 kHz float32 arrays with a transformers Whisper model; see the module docstring.

    The model is moved to the chosen device (and dtype, on a GPU) and put in eval mode: a caller
    that goes on training it calls model.train() afterwards."""

    name = "hf"

    def __init__(self, model, processor, options: TranscribeOptions, model_name: str = "model"):
        quiet_generate_warnings()
        self.device = pick_device(options.device)
        self.precision = options.resolved_precision(self.device)
        # A peft model's LoRA layers live inside the base model's modules, so the base model's own
        # Whisper methods (generate, encoder) decode with the adapter applied.
        whisper = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.whisper = whisper.to(self.device).eval()
        if self.device != "cpu" and self.precision in ("fp16", "bf16"):
            self.whisper.to(torch.float16 if self.precision == "fp16" else torch.bfloat16)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.gen = whisper.generation_config
        self.multilingual = bool(getattr(self.gen, "is_multilingual", False)
                                 and getattr(self.gen, "lang_to_id", None))
        self.options = options.check_for_model(self.multilingual, model_name)
        self.timestamp_begin = self.gen.no_timestamps_token_id + 1
        self.no_speech_token = self.gen.no_timestamps_token_id - 1  # <|nospeech|> / <|nocaptions|>
        self.eos = self.gen.eos_token_id
        if self.multilingual:
            self.lang_ids = torch.tensor(list(self.gen.lang_to_id.values()))
            self.lang_codes = [tok[2:-2] for tok in self.gen.lang_to_id]
        # precision "auto" that comes to fp32 on a CPU decodes with proj_out swapped for an int8
        # copy (int8_head.py); an explicit fp32 stays exact. The model keeps its own head, tied
        # to the token embeddings, for any training that follows.
        self._int8 = self.device == "cpu" and options.precision == "auto" and self.precision == "fp32"
        self._head, self._head_key = None, None
        # ... and on a CPU that multiplies bf16 in hardware (AVX512-BF16, AMX) it runs the encoder
        # under bf16 autocast: the encoder is most of a window's time (1,500 positions) and runs
        # 1.7x faster there; the decoder stays fp32, where bf16 made its small per-step products
        # slower. Its transcripts differ from fp32's on some files: benchmarks/encoder_precision.py.
        self._bf16_encoder = self._int8 and cpu_has_native_bf16()
        self._fp32_head = self.whisper.proj_out
        self.prompt_ids = self._prompt(self.options)
        self.aligner = words.HFAligner(self.whisper) if self.options.word_timestamps else None
        # --lm_weight 0 is the model alone (no word bonus either)
        self.lm = load_lm(self.options.lm) if self.options.lm and self.options.lm_weight > 0 else None
        self.lm_ends = word_ends(self.tokenizer, self.eos, self.whisper.config.vocab_size) if self.lm else None

    def encode_text(self, text: str) -> list[int]:
        """Text tokens of `text` (no special tokens): how long a prompt it makes."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    @property
    def uses_int8_head(self) -> bool:
        """Decoding runs with proj_out swapped for an int8 copy (precision auto on a CPU), unless
        this torch could not build a good one."""
        return self._int8

    # ---- helpers -------------------------------------------------------------------------------

    def _processors(self, prompt_length: int, extra=()) -> LogitsProcessorList:
        """Suppression processors with their token columns listed once (see Suppress), then `extra`.

        generate() is called with suppress_tokens=None and begin_suppress_tokens=None so that
        transformers does not add its own per-step-isin versions as well."""
        vocab = self.whisper.config.vocab_size
        procs = []
        if self.gen.suppress_tokens:
            procs.append(Suppress(self.gen.suppress_tokens, vocab))
        if self.gen.begin_suppress_tokens:
            procs.append(Suppress(self.gen.begin_suppress_tokens, vocab, begin_index=prompt_length))
        return LogitsProcessorList(procs + list(extra))

    @contextlib.contextmanager
    def _decoding(self):
        """bf16 autocast where chosen on a CPU; the int8 output head in place where chosen."""
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.device == "cpu" and self.precision == "bf16"
                    else contextlib.nullcontext())
        previous = self.whisper.proj_out  # an Int8Head already when called inside another _decoding
        if not isinstance(previous, Int8Head):
            self._fp32_head = previous
        head = self._int8_head()
        if head is not None:
            self.whisper.proj_out = head
        try:
            with autocast:
                yield
        finally:
            self.whisper.proj_out = previous

    @property
    def uses_bf16_encoder(self) -> bool:
        """The encoder runs under bf16 autocast (precision auto on a CPU with bf16 instructions)."""
        return self._bf16_encoder

    def _encode(self, features: torch.Tensor) -> torch.Tensor:
        """The encoder's output, in the decoder's dtype."""
        if self._bf16_encoder:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.whisper.model.encoder(features).last_hidden_state.float()
        with self._decoding():
            return self.whisper.model.encoder(features).last_hidden_state

    def _int8_head(self):
        if not self._int8:
            return None
        weight = self._fp32_head.weight
        key = (weight.data_ptr(), weight._version)  # rebuilt if the weights were changed since
        if key != self._head_key:
            self._head, self._head_key = build_int8_head(self._fp32_head), key
            self._int8 = self._head is not None
        return self._head

    def _features(self, audios: list[np.ndarray], long: bool = False):
        fe = self.processor.feature_extractor
        if long:
            out = fe(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                     padding="longest", return_attention_mask=True)
            mask = out.attention_mask.to(self.device)
        else:
            out = fe(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            mask = None
        return out.input_features.to(self.device, self.whisper.dtype), mask

    def _language_kwargs(self, languages) -> dict:
        # English-only models take neither language nor task: generate rejects them there.
        if not self.multilingual:
            return {}
        return {"language": languages, "task": self.options.task}

    def _first_step(self, encoder_hidden: torch.Tensor, cross=None):
        """One decoder step on <|startoftranscript|>: (language probs or None, no-speech probs).
        cross: the files' cross-attention keys and values (hf_cache.cross_cache), computed here if not given."""
        batch = encoder_hidden.shape[0]
        sot = torch.full((batch, 1), self.gen.decoder_start_token_id, device=self.device)
        cross = cross_cache(self.whisper, encoder_hidden) if cross is None else cross
        hidden = self.whisper.model.decoder(input_ids=sot, encoder_hidden_states=encoder_hidden,
                                            cache=decoder_cache(self.whisper, cross),
                                            use_cache=True).last_hidden_state
        # The fp32 head even where decoding uses the int8 one: one step, and the language and
        # no-speech probabilities stay exact.
        logits = self._fp32_head(hidden)[:, 0].float()
        no_speech = logits.softmax(-1)[:, self.no_speech_token].cpu()
        lang_probs = logits[:, self.lang_ids.to(logits.device)].softmax(-1).cpu() if self.multilingual else None
        return lang_probs, no_speech

    def _settle_languages(self, lang_probs, batch: int):
        """Per row: (code, probability or None)."""
        if self.options.language is not None:
            return [(self.options.language, None)] * batch
        if lang_probs is None:
            return [("en", None)] * batch
        best = lang_probs.argmax(-1)
        return [(self.lang_codes[int(i)], float(lang_probs[row, i])) for row, i in enumerate(best)]

    def _text(self, tokens) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    # ---- short audio ---------------------------------------------------------------------------

    @torch.inference_mode()
    def decode_batch(self, audios: list[np.ndarray], timestamps: bool | None = None, retry: bool = True,
                     languages: list[str] | None = None, terms=None) -> tuple[list[Decoded], list[bool]]:
        """One batch: (Decoded per audio, trouble per audio); see Backend.decode_batch. The encoder
        runs once, for the first step (language, no-speech) and the decoding; only the files in
        trouble go through transformers' own fallback (hf_fallback.py)."""
        opts = self.options
        timestamps = opts.return_timestamps if timestamps is None else timestamps
        durations = [len(a) / SAMPLE_RATE for a in audios]
        features, _ = self._features(audios)
        encoder_hidden = self._encode(features)
        with self._decoding():
            cross = cross_cache(self.whisper, encoder_hidden)  # for the first step and the search
            lang_probs, no_speech = self._first_step(encoder_hidden, cross)
        if languages is not None:
            langs = [(code, None) for code in languages]
        else:
            langs = self._settle_languages(lang_probs, len(audios))
        prompts = self._row_prompts(terms)
        generated, avg_logprob = self._generate(encoder_hidden, [code for code, _ in langs], timestamps, prompts,
                                                terms if prompts is not None else None, cross)
        results, truncated, pieces = [], [], []
        for row, (code, prob), duration in zip(generated, langs, durations):
            tokens = [t for t in row if t != self.eos]
            if timestamps:
                pieces.append(timed_pieces(tokens, self.timestamp_begin, self.eos, duration))
                segments = pieces_to_segments(pieces[-1], self._text, duration)
            else:
                text = self._text(tokens)
                segments = [Segment(0.0, duration, text)] if text else []
            results.append(Decoded(segments, code, prob))
            truncated.append(self.eos not in row)
        trouble = verdict(results, avg_logprob, no_speech, truncated, opts)
        failed = [i for i, bad in enumerate(trouble) if bad]
        if retry and failed and len(opts.temperatures) > 1:
            log.debug("temperature fallback for %d of %d files", len(failed), len(audios))
            redone = hf_fallback.retry(self, audios, langs, failed, prompts, timestamps)
            for i, segs in zip(failed, redone):
                pieces_i = [(seg["start"], seg["end"], self._text_ids(seg["tokens"])) for seg in segs]
                if timestamps:
                    pieces[i] = pieces_i
                results[i].segments = pieces_to_segments(pieces_i, self._text, durations[i])
            trouble = [False] * len(audios)
        if self.aligner is not None and timestamps:
            self._add_words(encoder_hidden, results, pieces, [len(a) for a in audios])
        return results, trouble

    def _text_ids(self, tokens) -> list[int]:
        """The text tokens of a transformers segment (its timestamps and special tokens dropped)."""
        return [int(t) for t in tokens if int(t) < self.eos]

    def _add_words(self, encoder_hidden, results: list[Decoded], pieces, samples: list[int]) -> None:
        """Word timestamps for each row's segments (words.py), from one teacher-forced pass."""
        rows = [(self._sot(dec.language), [t for _, _, ids in p for t in ids], n)
                for dec, p, n in zip(results, pieces, samples)]
        for dec, p, n, (sot, text, _), path in zip(results, pieces, samples, rows,
                                                  self.aligner.paths(encoder_hidden, rows)):
            if path is None:
                continue
            timed = words.timings([ids for _, _, ids in p], *path, self.tokenizer.decode, dec.language, self.eos)
            dec.segments = clamped(((s.start, s.end, s.text, s.words) for s in
                                    words.place(p, timed, self.tokenizer.decode)), n / SAMPLE_RATE)

    def _generate(self, encoder_hidden: torch.Tensor, languages: list[str], timestamps: bool, prompts=None,
                  terms=None, cross=None):
        """Greedy or beam decoding at temperature 0 on the encoder's output: (the tokens generated
        per row, the end token included where it was reached; mean token log-probability per row).

        prompts: prompt ids per row (_row_prompts), or None for self.prompt_ids in every row;
        terms: the glossary terms in each row's prompt (the language model does not score them down);
        cross: the rows' cross-attention keys and values (hf_cache.cross_cache), computed here if not given."""
        opts = self.options
        if prompts is None:
            start = self._prompt_kwargs()
            prompt_length = len(self.prompt_ids) + 1 + (2 if self.multilingual else 0) + (0 if timestamps else 1)
        else:
            start = self._start_ids(prompts, languages, timestamps)
            prompt_length = start["decoder_input_ids"].shape[1]
        logprobs = TokenLogprobs(self.eos, prompt_length) if opts.beam_size == 1 else None
        fusion = (LMFusion(self.lm, self.tokenizer, opts.lm_weight, opts.lm_bonus, prompt_length, self.eos,
                           self.lm_ends, terms, opts.beam_size) if self.lm is not None else None)
        # The token log-probabilities are Whisper's own, before the language model's share.
        extra = [p for p in (logprobs, fusion) if p is not None]
        with self._decoding(), lean_generate(self.whisper, opts.beam_size):
            cross = cross_cache(self.whisper, encoder_hidden) if cross is None else cross
            out = self.whisper.generate(
                cache=decoder_cache(self.whisper, cross, opts.beam_size),
                encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
                return_timestamps=timestamps, num_beams=opts.beam_size, do_sample=False,
                temperature=0.0, max_new_tokens=self._max_new_tokens(prompt_length), compression_ratio_threshold=None,
                logprob_threshold=None, no_speech_threshold=None, force_unique_generate_call=True,
                return_dict_in_generate=True, output_scores=opts.beam_size > 1,
                suppress_tokens=None, begin_suppress_tokens=None,
                logits_processor=self._processors(prompt_length, extra),
                **start, **self._language_kwargs(languages))
        rows = [row[prompt_length:].tolist() for row in out.sequences]
        if logprobs is not None:
            avg_logprob = logprobs.finish(out.sequences)
        else:
            avg_logprob = out.sequences_scores.float().cpu()
            if fusion is not None:  # the beam's score holds the language model's share: take it off
                avg_logprob = torch.tensor([score - fusion.total(row, i) / _generated_length(row, self.eos)
                                            for i, (score, row) in enumerate(zip(avg_logprob.tolist(), rows))])
        return rows, avg_logprob

    def _max_new_tokens(self, prompt_length: int) -> int:
        """options.max_new_tokens, less what a long prompt leaves of the decoder's positions."""
        return max(1, min(self.options.max_new_tokens, self.whisper.config.max_target_positions - prompt_length))

    # ---- long audio ----------------------------------------------------------------------------

    @torch.inference_mode()
    def decode_long(self, audios: list[np.ndarray], terms=None) -> list[Decoded]:
        """Audio over 30 s: pieces cut at pauses, decoded in batches (or sequentially; see the module).
        terms: see Backend.decode_long; sequential decoding puts all of a file's terms in the prompt
        of each of its windows, one file at a time."""
        langs = self._file_languages(audios)
        if self.options.long_form == "sequential":
            if terms is not None and len(audios) > 1:
                return [self.decode_long([a], [t])[0] for a, t in zip(audios, terms)]
            decode = functools.partial(hf_fallback.decode_sequential, self)
            if terms is not None:
                prompt = self._prompt(self.options, long_form.piece_terms(terms[0], 0, len(audios[0])))
                decode = functools.partial(hf_fallback.decode_sequential, self, prompt_ids=prompt)
            if self.options.vad:  # the speech only, put back on each file's timeline (vad.py)
                return vad.decode_speech_only(audios, langs, decode)
            return decode(audios, langs)
        segments = long_form.decode_pieces(audios, [code for code, _ in langs], self.decode_batch, self.options,
                                           terms)
        return [Decoded(segs, code, prob) for segs, (code, prob) in zip(segments, langs)]

    def _file_languages(self, audios: list[np.ndarray]):
        """Per file: (code, probability or None), detected on its first 30 s when not given."""
        if self.options.language is None and self.multilingual:
            # Detect on the first 30 s, as openai-whisper does, so the probability can be reported.
            features, _ = self._features([a[:N_SAMPLES] for a in audios])
            hidden = self._encode(features)
            with self._decoding():
                lang_probs, _ = self._first_step(hidden)
            return self._settle_languages(lang_probs, len(audios))
        return self._settle_languages(None, len(audios))



def _generated_length(row: list[int], eos: int) -> int:
    """Tokens a beam generated, its end token included (the rest is padding): what its score
    was divided by."""
    return row.index(eos) + 1 if eos in row else max(1, len(row))
