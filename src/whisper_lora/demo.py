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

# Per language: the bundled model and the training recipe that fits 15 minutes on 2 CPU cores.
MODELS = {"en": "bundled:tiny.en", "zh": "bundled:base"}


@dataclass(frozen=True)
class DemoOptions:
    language: str = "en"  # en: bundled:tiny.en on espeak-ng English; zh: bundled:base on espeak-ng Mandarin
    quick: bool = False  # a short run (CI): few clips and steps; shows the pipeline, not the gain
    output_dir: str = "demo_output"  # data, adapter, report, SRT all go here
    seed: int = 0  # data set and training seed
    epochs: float | None = None  # None: the recipe's default for the language

    def __post_init__(self):
        if self.language not in MODELS:
            raise OptionsError(f"--language {self.language}: the demo exists for {', '.join(MODELS)}")


@dataclass
class DemoResult:
    output_dir: Path
    before: dict  # test-set scores of the bundled model: {"metric", "value", ...}
    after: dict  # test-set scores of the fine-tuned model
    other_before: dict  # the same sentences in a second voice
    other_after: dict
    files: dict = field(default_factory=dict)  # name -> path of what a person opens
    seconds: float = 0.0


def _sizes(opts: DemoOptions) -> dict:
    if opts.quick:
        return dict(n_train=24, n_val=4, n_test=8, long_seconds=40.0, epochs=1.0)
    if opts.language == "zh":
        return dict(n_train=None, n_val=None, n_test=None, long_seconds=90.0, epochs=3.0)
    return dict(n_train=None, n_val=None, n_test=None, long_seconds=180.0, epochs=3.0)


def _score(result) -> dict:
    scores = next(iter(result.by_language.values()))
    metric = scores.primary_metric
    return {"metric": metric, "value": scores.primary, "wer": scores.wer, "cer": scores.cer}


def _evaluate(models, manifest: Path, language: str, output_dir: Path | None):
    from .evaluate import EvaluateOptions, evaluate

    return evaluate(EvaluateOptions(models=tuple(models), data=str(manifest), language=language,
                                    output_dir=str(output_dir) if output_dir else None))


def run_demo(opts: DemoOptions) -> DemoResult:
    from .synthetic.datasets import build_dataset
    from .evaluate import Evaluation, write_outputs
    from .train import train
    from .training.options import TrainOptions
    from .transcribe import transcribe
    from .decoding.options import TranscribeOptions

    start = time.monotonic()
    out = Path(opts.output_dir).absolute()
    base = MODELS[opts.language]
    sizes = _sizes(opts)
    print(f"[1/6] Building a speech data set with espeak-ng in {out / 'data'}")
    data = build_dataset(out / "data", language=opts.language, n_train=sizes["n_train"], n_val=sizes["n_val"],
                         n_test=sizes["n_test"], seed=opts.seed, long_seconds=sizes["long_seconds"],
                         progress=True)
    print(f"      {data.counts}")

    print(f"[2/6] Measuring {base} before fine-tuning")
    before = _evaluate([base], data.test, opts.language, None).results[0]
    other_before = _evaluate([base], data.test_other_voice, opts.language, None).results[0]

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
    other_after = _evaluate([str(model_dir)], data.test_other_voice, opts.language, None).results[0]

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
                        seconds=time.monotonic() - start)
    print(format_table(result, base, data.options))
    return result


def format_table(result: DemoResult, base: str, data_options) -> str:
    metric = result.before["metric"].upper()

    def row(name, b, a):
        change = (a["value"] - b["value"]) / b["value"] * 100 if b["value"] else 0.0
        return f"| {name:<34} | {b['value'] * 100:7.1f}% | {a['value'] * 100:7.1f}% | {change:+7.1f}% |"

    lines = [
        "",
        f"| {metric + ' on held-out sentences':<34} | {'before':>8} | {'after':>8} | {'change':>8} |",
        f"|{'-' * 36}|{'-' * 10}|{'-' * 10}|{'-' * 10}|",
        row(f"trained voice ({data_options.voice.name})", result.before, result.after),
        row(f"other voice ({data_options.other_voice.name})", result.other_before, result.other_after),
        "",
        f"base model: {base}; fine-tuned adapter: {result.files['adapter']}",
        f"report: {result.files['report']}",
        f"long-file subtitles: {result.files['srt']}",
        f"finished in {result.seconds / 60:.1f} minutes",
    ]
    return "\n".join(lines)
