"""The main job, offline on a fresh machine: speech data -> WER before -> LoRA -> WER after -> report.

`whisper-lora demo` (and `make demo`) builds an espeak-ng data set in a voice the bundled model
gets measurably wrong, measures the bundled model on held-out sentences, fine-tunes a LoRA adapter,
measures again (also on a second voice, to show nothing else got worse), transcribes a long file
to SRT with timestamps, and writes the evaluation report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OptionsError

log = logging.getLogger("whisper_lora.demo")

# Per language: the bundled model. en and zh speak espeak-ng data sets; nl is real speech,
# recordings of people (the Dutch voice acting of Fish Fillets NG, fetched from Debian once).
MODELS = {"en": "bundled:tiny.en", "zh": "bundled:base", "nl": "bundled:base"}


@dataclass(frozen=True)
class DemoOptions:
    language: str = "en"  # en: tiny.en on espeak-ng English; zh: base on espeak-ng Mandarin; nl: base on real Dutch
    quick: bool = False  # a short run (CI): few clips and steps; shows the pipeline, not the gain
    output_dir: str = "demo_output"  # data, adapter, report, SRT all go here
    seed: int = 0  # data set and training seed
    epochs: float | None = None  # None: the recipe's default for the language
    # Domain terms for a row decoded with --glossary; None: for nl, one built for the held-out
    # levels (corpora.fillets.write_glossary), none for the others.
    glossary: str | None = None

    def __post_init__(self):
        if self.language not in MODELS:
            raise OptionsError(f"--language {self.language}: the demo exists for {', '.join(MODELS)}")


@dataclass
class DemoData:
    """What the demo trains and measures on."""

    train: Path
    validation: Path
    test: Path
    other: Path  # a second test set: the same sentences in another voice, or (nl) English read by a person
    other_language: str
    long_audio: Path  # transcribed to SRT at the end
    counts: dict
    test_name: str  # the rows of the before/after table
    other_name: str


@dataclass
class DemoResult:
    output_dir: Path
    before: dict  # test-set scores of the bundled model: {"metric", "value", ...}
    after: dict  # test-set scores of the fine-tuned model
    other_before: dict  # the second test set
    other_after: dict
    glossary: dict | None = None  # the fine-tuned model's test-set scores with the glossary
    files: dict = field(default_factory=dict)  # name -> path of what a person opens
    seconds: float = 0.0
    names: tuple[str, str] = ("test", "other")  # the table's row names


def _sizes(opts: DemoOptions) -> dict:
    if opts.quick:
        return dict(n_train=24, n_val=4, n_test=8, long_seconds=40.0, epochs=1.0)
    if opts.language == "nl":
        # 15 minutes on 2 CPU cores: 0.6 epoch of all 68 min of training speech (85 steps), and 100
        # of the 287 held-out clips (spread over every held-out level) measured before and after.
        return dict(n_train=None, n_val=30, n_test=100, long_seconds=60.0, epochs=NL_DEMO_EPOCHS)
    if opts.language == "zh":
        return dict(n_train=None, n_val=None, n_test=None, long_seconds=90.0, epochs=3.0)
    return dict(n_train=None, n_val=None, n_test=None, long_seconds=180.0, epochs=3.0)


NL_DEMO_EPOCHS = 0.6


def _score(result) -> dict:
    scores = next(iter(result.by_language.values()))
    metric = scores.primary_metric
    return {"metric": metric, "value": scores.primary, "wer": scores.wer, "cer": scores.cer}


def _evaluate(models, manifest: Path, language: str, output_dir: Path | None, glossary: str | None = None):
    from .evaluate import EvaluateOptions, evaluate

    return evaluate(EvaluateOptions(models=tuple(models), data=str(manifest), language=language,
                                    output_dir=str(output_dir) if output_dir else None, glossary=glossary))


def _glossary(opts: DemoOptions, data: DemoData, folder: Path) -> str | None:
    if opts.glossary or opts.language != "nl":
        return opts.glossary
    from .corpora.fillets import write_glossary

    return str(write_glossary(data.train, data.test, folder / "glossary.txt"))


def demo_data(opts: DemoOptions, folder: Path, sizes: dict) -> DemoData:
    if opts.language == "nl":
        return _real_dutch(folder, sizes)
    from .synthetic.datasets import build_dataset

    data = build_dataset(folder, language=opts.language, n_train=sizes["n_train"], n_val=sizes["n_val"],
                         n_test=sizes["n_test"], seed=opts.seed, long_seconds=sizes["long_seconds"], progress=True)
    return DemoData(data.train, data.validation, data.test, data.test_other_voice, opts.language, data.long_audio,
                    data.counts, f"trained voice ({data.options.voice.name})",
                    f"other voice ({data.options.other_voice.name})")


def _real_dutch(folder: Path, sizes: dict) -> DemoData:
    from .corpora import fillets, librivox

    split = fillets.write_split(folder, max_train=sizes["n_train"], max_validation=sizes["n_val"],
                                max_test=sizes["n_test"])
    english = librivox.write_manifest(folder / "librivox.jsonl")
    long_audio = fillets.write_long_file(split.test, folder / "long.wav", sizes["long_seconds"])
    return DemoData(split.train, split.validation, split.test, english, "en", long_audio, split.counts,
                    "Dutch, held-out game levels", "English, LibriVox (forgetting)")


def run_demo(opts: DemoOptions) -> DemoResult:
    from .evaluate import Evaluation, write_outputs
    from .train import train
    from .training.options import TrainOptions
    from .transcribe import transcribe
    from .decoding.options import TranscribeOptions

    start = time.monotonic()
    out = Path(opts.output_dir).absolute()
    base = MODELS[opts.language]
    sizes = _sizes(opts)
    print(f"[1/6] {'Fetching real Dutch speech' if opts.language == 'nl' else 'Building a speech data set with espeak-ng'}"
          f" in {out / 'data'}")
    data = demo_data(opts, out / "data", sizes)
    print(f"      {data.counts}")

    glossary = _glossary(opts, data, out / "data")
    if opts.glossary:
        from .data.glossary import Glossary

        Glossary.read(opts.glossary)  # its errors before any training
    print(f"[2/6] Measuring {base} before fine-tuning")
    before = _evaluate([base], data.test, opts.language, None).results[0]
    other_before = _evaluate([base], data.other, data.other_language, None).results[0]

    print("[3/6] Fine-tuning a LoRA adapter")
    model_dir = out / "model"
    train(TrainOptions(model_name_or_path=base, train_file=str(data.train), validation_file=str(data.validation),
                       output_dir=str(model_dir), language=opts.language,
                       num_train_epochs=opts.epochs or sizes["epochs"], seed=opts.seed,
                       # The train command's defaults. Adapters in the encoder too learn a voice
                       # far better than --freeze_encoder (English 0.8% against 10.2% WER, Mandarin
                       # 8.9% against 43.5% CER), and packing clips into shared windows makes that
                       # fit 15 minutes on 2 CPU cores (5.7 and 13.9 minutes: benchmarks/RESULTS.md).
                       overwrite_output_dir=True))

    print("[4/6] Measuring the fine-tuned model")
    after = _evaluate([str(model_dir)], data.test, opts.language, None).results[0]
    other_after = _evaluate([str(model_dir)], data.other, data.other_language, None).results[0]
    with_glossary = None
    if glossary:
        print(f"      and with the glossary {glossary}")
        with_glossary = _score(_evaluate([str(model_dir)], data.test, opts.language, None, glossary).results[0])

    print("[5/6] Transcribing a long file with timestamps to SRT")
    srt = out / "long.srt"
    transcribe(str(model_dir), [str(data.long_audio)],
               TranscribeOptions(language=opts.language, return_timestamps=True), output_file=str(srt), echo=False)

    print("[6/6] Writing the report")
    report_dir = out / "report"
    write_outputs(Evaluation(str(Path(data.test).resolve()), [before, after]), report_dir)
    result = DemoResult(out, _score(before), _score(after), _score(other_before), _score(other_after),
                        files={"report": report_dir / "report.html", "markdown": report_dir / "report.md",
                               "srt": srt, "adapter": model_dir},
                        seconds=time.monotonic() - start, names=(data.test_name, data.other_name),
                        glossary=with_glossary)
    print(format_table(result, base))
    return result


def format_table(result: DemoResult, base: str) -> str:
    metric = result.before["metric"].upper()

    def row(name, b, a):
        change = (a["value"] - b["value"]) / b["value"] * 100 if b["value"] else 0.0
        return f"| {name:<34} | {b['value'] * 100:7.1f}% | {a['value'] * 100:7.1f}% | {change:+7.1f}% |"

    lines = [
        "",
        f"| {metric + ' on held-out sentences':<34} | {'before':>8} | {'after':>8} | {'change':>8} |",
        f"|{'-' * 36}|{'-' * 10}|{'-' * 10}|{'-' * 10}|",
        row(result.names[0], result.before, result.after),
        row(result.names[1], result.other_before, result.other_after),
        *([row(result.names[0] + ", glossary", result.before, result.glossary)] if result.glossary else []),
        "",
        f"base model: {base}; fine-tuned adapter: {result.files['adapter']}",
        f"report: {result.files['report']}",
        f"long-file subtitles: {result.files['srt']}",
        f"finished in {result.seconds / 60:.1f} minutes",
    ]
    return "\n".join(lines)
