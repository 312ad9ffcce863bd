"""TranscribeOptions: every choice a transcription run makes, checked before any model is loaded.

Checks that need the model (English-only or multilingual) run in `check_for_model`, right after
loading and before the first file is decoded, so a bad flag never costs a half-finished run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ..devices import cpu_auto_precision, cpu_has_native_bf16
from ..errors import OptionsError
from ..data.lm import DEFAULT_LM_BONUS, DEFAULT_LM_WEIGHT
from ..languages import language_code

log = logging.getLogger(__name__)

TASKS = ("transcribe", "translate")
BACKENDS = ("auto", "hf", "ct2")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
LONG_FORMS = ("batched", "sequential")

# openai-whisper's defaults for the guards against its known failures (whisper/transcribe.py):
# a window whose text compresses better than 2.4 (gzip) is a repetition loop, one whose mean token
# log-probability is below -1 is unreliable: both are decoded again at the next temperature.
# A window whose <|nospeech|> probability is above 0.6 and whose text is also unreliable is silence.
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FALLBACK_SEED = 0  # sampling at the fallback's temperatures starts from this seed: the same text every run
MAX_NEW_TOKENS = 440  # the decoder's 448 positions less the longest start prompt


def normalize_language(language: str | None) -> str | None:
    """'zh', 'Chinese', 'mandarin', '<|zh|>' -> 'zh'; None stays None (detect)."""
    if language is not None and not language.strip():  # detection is asked for by leaving --language out
        raise OptionsError("--language '': empty; leave --language out to detect the language")
    return language_code(language, flag="--language")


@dataclass(frozen=True)
class TranscribeOptions:
    # Language spoken in the audio, as a code ("en", "zh"); names such as "chinese" are accepted.
    # None: detected per file on a multilingual model (and reported); "en" on an English-only model.
    language: str | None = None
    # "transcribe" writes what is said; "translate" writes it in English (multilingual models only).
    task: str = "transcribe"
    # Segment start/end times for short files too. Files over 30 s are always decoded with
    # timestamps (the long-form algorithm needs them); srt/vtt/tsv outputs turn this on.
    return_timestamps: bool = False
    # Files decoded together in one batch: short files, packed windows of short files, or pieces of
    # long files. Larger batches raise throughput until memory runs out (16: fastest measured on
    # a 2-core CPU, benchmarks/RESULTS.md).
    batch_size: int = 16
    # 1: greedy decoding (fastest); >1: beam search with that many beams.
    beam_size: int = 1
    # Where the model runs: auto picks cuda, then mps, then cpu.
    device: str = "auto"
    # Arithmetic: auto is fp32 on every CPU (bf16 autocast did not decode faster even on CPUs with
    # AVX512-BF16, and it bends timestamps: devices.py), bf16 on CUDA GPUs that have it, fp16 on
    # other GPUs, fp32 elsewhere. auto on a CPU decodes with the output projection in int8
    # (int8_head.py: faster, as accurate) and, where the CPU has bf16 instructions, the encoder
    # under bf16 autocast (hf.py); fp32 keeps everything in fp32. bf16 on a CPU is autocast,
    # many times slower where the CPU lacks bf16 instructions. fp16 on a CPU falls back to auto.
    precision: str = "auto"
    # Pack several short files into one 30-second window (see packing.py) when the language is
    # known (given, or an English-only model): the encoder runs once per window instead of once
    # per file. Files whose share of a window is in doubt are packed again, further apart, and
    # only those still in doubt decode alone. Measured on 100 short clips (benchmarks/RESULTS.md):
    # several times faster on a CPU, and no less accurate.
    pack: bool = True
    # Merge a LoRA adapter into the base weights before decoding: the same output, and decoding
    # as fast as the base model's (unmerged, every adapted layer runs a second, low-rank product:
    # measured 1.3x slower on bundled:base; benchmarks/RESULTS.md). False keeps the peft model.
    merge: bool = True
    # hf: transformers; ct2: CTranslate2 through faster-whisper (needs a CTranslate2 folder);
    # auto: ct2 when the model is a CTranslate2 folder, else hf.
    backend: str = "auto"
    # Most tokens decoded for one short file or window: openai-whisper's sample_len (half the
    # decoder's 448 positions). A repetition loop stops here instead of running to 448, and the
    # temperature fallback then gets its turn. 30 s of speech is rarely over 150 tokens.
    max_new_tokens: int = 224
    # Temperatures tried in turn on a window that fails the checks below (0 = greedy / beam).
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    # Gzip compression ratio above which a window counts as a repetition loop. None: no check.
    compression_ratio_threshold: float | None = 2.4
    # Mean token log-probability below which a window is decoded again hotter. None: no check.
    logprob_threshold: float | None = -1.0
    # <|nospeech|> probability above which an unreliable window is treated as silence. None: no check.
    no_speech_threshold: float | None = 0.6
    # Audio whose loudest 100 ms stays below this level (dB full scale) is silence: empty text,
    # not decoded. Speech is rarely below -45 dBFS; None turns the check off.
    silence_threshold_db: float | None = -50.0
    # How files over 30 s are decoded. "batched": cut at pauses into pieces of at most 30 s, decoded
    # together in batches of batch_size (one language per file): faster, but no piece sees the text
    # before it. "sequential": 30-second windows one after another, each prompted with the previous
    # text (openai-whisper's algorithm; transformers' long-form generate, faster-whisper's transcribe).
    long_form: str = "batched"
    # Feed the previous window's text as a prompt in long files (long_form "sequential"): consistent
    # spelling and style across windows; it is dropped after a hot (temperature >= 0.5) fallback so
    # loops do not spread.
    condition_on_previous_text: bool = True
    # Where converted and downloaded models are cached (None: ~/.cache/whisper-lora and the HF cache).
    cache_dir: str | None = None
    # CTranslate2 compute type for --backend ct2 ("int8", "int8_float32", "float32", ...); None:
    # follows `precision` (fp32 -> float32). int8 is faster on CPUs and slightly less exact.
    compute_type: str | None = None
    # Start and end time and probability of every word, from the cross-attention of the model's
    # alignment heads aligned to the audio by dynamic time warping (openai-whisper's algorithm;
    # decoding/words.py). Turns segment timestamps on.
    word_timestamps: bool = False
    # Text put before the first window as if it had been said just before (openai-whisper's
    # initial_prompt): spelling, names and style for what follows. In short files and in the
    # pieces of batched long files, every window gets it; in sequential long-form, the first.
    initial_prompt: str | None = None
    # Comma-separated terms put before every window (faster-whisper's hotwords): domain words the
    # model should expect, in every window of every file.
    hotwords: str | None = None
    # Voice activity detection (Silero VAD, bundled with faster-whisper; no download): long files
    # are decoded only where there is speech, so silence, music and noise cost nothing and invent
    # nothing, and short files without speech give no text.
    vad: bool = False
    # A text file of domain terms, one per line (thousands allowed): each file is decoded, the
    # terms its text comes close to (at most glossary.MAX_TERMS) are put in the prompt of a second
    # pass, and that pass's words are kept where they write a term (biasing.py).
    glossary: str | None = None
    # A word n-gram language model (an ARPA or KenLM file; `whisper-lora lm build` makes one from
    # text) fused into the search (decoding/lm_fusion.py): each word Whisper completes gets
    # lm_weight * ln P_lm(word | words before) + lm_bonus. With beam search, as Whisper-LM uses it;
    # the transformers backend only (CTranslate2's search takes no outside scores).
    lm: str | None = None
    lm_weight: float = DEFAULT_LM_WEIGHT
    lm_bonus: float = DEFAULT_LM_BONUS

    def __post_init__(self):
        object.__setattr__(self, "language", normalize_language(self.language))
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        if self.task not in TASKS:
            raise OptionsError(f"--task {self.task!r}: use transcribe or translate")
        if self.backend not in BACKENDS:
            raise OptionsError(f"--backend {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise OptionsError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise OptionsError(f"--device {self.device!r}: use one of {', '.join(DEVICES)} (or cuda:N)")
        if self.long_form not in LONG_FORMS:
            raise OptionsError(f"--long_form {self.long_form!r}: use batched (pieces cut at pauses, decoded "
                               "together) or sequential (30-second windows one after another)")
        if self.batch_size < 1:
            raise OptionsError(f"--batch_size {self.batch_size}: must be at least 1")
        if self.beam_size < 1:
            raise OptionsError(f"--beam_size {self.beam_size}: must be at least 1 (1 is greedy decoding)")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise OptionsError(f"max_new_tokens {self.max_new_tokens}: use 1 to {MAX_NEW_TOKENS}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise OptionsError(f"temperatures {self.temperatures}: need at least one, none negative")
        for flag in ("initial_prompt", "hotwords"):
            value = getattr(self, flag)
            if value is not None and not value.strip():
                raise OptionsError(f"--{flag} '': empty; leave --{flag} out for no prompt")
        if self.lm_weight < 0:
            raise OptionsError(f"--lm_weight {self.lm_weight}: must be 0 or more (0: the model alone)")
        if self.lm is not None and self.backend == "ct2":
            raise OptionsError("--lm with --backend ct2: CTranslate2's beam search takes no outside scores; "
                               "use --backend transformers (or leave --backend out)")
        if self.word_timestamps and not self.return_timestamps:
            object.__setattr__(self, "return_timestamps", True)  # words are placed inside segments

    def check_for_model(self, multilingual: bool, model_name: str = "the model") -> "TranscribeOptions":
        """Reject what this model cannot do; return options with the language settled."""
        if not multilingual:
            if self.task == "translate":
                raise OptionsError(f"--task translate: {model_name} is English-only and cannot translate; "
                                   "use a multilingual model (e.g. bundled:base, openai/whisper-small)")
            if self.language not in (None, "en"):
                raise OptionsError(f"--language {self.language}: {model_name} is English-only; drop --language "
                                   "or use a multilingual model (e.g. bundled:base, openai/whisper-small)")
            return replace(self, language="en")
        return self

    def resolved_precision(self, device: str) -> str:
        """fp32, bf16 or fp16 for this device (see `precision`)."""
        import torch

        if device == "cpu":
            if self.precision == "fp16":
                log.warning("--fp16 on CPU: half precision is slow and inexact there; using %s instead",
                            cpu_auto_precision())
                return cpu_auto_precision()
            if self.precision == "bf16" and not cpu_has_native_bf16():
                log.warning("--precision bf16 on a CPU without bf16 instructions (AVX512-BF16/AMX): bfloat16 "
                            "is emulated there and many times slower than fp32; leave it out for the default")
            return cpu_auto_precision() if self.precision == "auto" else self.precision
        if self.precision != "auto":
            return self.precision
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
