"""Does LoRA fine-tuning learn a voice? WER before and after, on held-out sentences of that voice
and of another voice, for one set of training flags.

    python benchmarks/train_voice.py --data /tmp/demo_en --out /tmp/run1 [--eval_only] -- [train flags]

--data is a folder from whisper_lora.synthetic.datasets.build_dataset (train/validation/test/test_other_voice
.json); every flag after `--` goes to whisper_lora_finetune.py (model, epochs, LoRA, ...); the
defaults are TrainOptions'. Prints one line per model and test set: WER (normalised) and the
relative change, plus the training time. Test sentences are never in the training split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def transcribe(model, processor, paths, batch_size=8, return_timestamps=False):
    import torch

    from whisper_lora.audio import load_audio

    texts = []
    for i in range(0, len(paths), batch_size):
        clips = [load_audio(p) for p in paths[i:i + batch_size]]
        feats = processor.feature_extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            out = model.generate(input_features=feats, max_new_tokens=128, return_timestamps=return_timestamps)
        texts += [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]
    return texts


def wer_of(spec, manifest, cache={}):
    from whisper_lora.data.manifest import read_manifest
    from whisper_lora.scoring.metrics import error_rates
    from whisper_lora.models import load_model

    if spec not in cache:
        cache.clear()
        cache[spec] = load_model(spec)
    model, processor = cache[spec]
    rows = read_manifest(manifest)
    hyps = transcribe(model, processor, [r.audio_path for r in rows])
    return error_rates([r.text for r in rows], hyps, "en").wer, list(zip([r.text for r in rows], hyps))


def main() -> int:
    argv = sys.argv[1:]
    train_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--base", default="bundled:tiny.en")
    p.add_argument("--eval_only", action="store_true")
    args = p.parse_args(argv)
    data = Path(args.data)

    import logging
    logging.basicConfig(level=logging.WARNING)
    from whisper_lora.cli.train import add_arguments, options_from_args
    from whisper_lora.train import train

    base_cache = data / f"base-wer-{args.base.replace(':', '_').replace('/', '_')}.json"
    if base_cache.is_file():
        base = json.loads(base_cache.read_text())
    else:
        base = {name: wer_of(args.base, data / f"{name}.json")[0] for name in ("test", "test_other_voice")}
        base_cache.write_text(json.dumps(base))
    seconds = 0.0
    if not args.eval_only:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        flags = parser.parse_args(["--model_name_or_path", args.base, "--train_file", str(data / "train.json"),
                                   "--validation_file", str(data / "validation.json"), "--output_dir", args.out,
                                   *train_flags])
        start = time.time()
        train(options_from_args(flags))
        seconds = time.time() - start
    tuned = {}
    for name in ("test", "test_other_voice"):
        tuned[name], pairs = wer_of(args.out, data / f"{name}.json")
        for ref, hyp in pairs[:3]:
            print(f"    {name}: {ref!r} -> {hyp!r}")
    line = (f"flags: {' '.join(train_flags) or '(defaults)'}\n  train {seconds / 60:.1f} min; "
            f"WER test {100 * base['test']:.1f}% -> {100 * tuned['test']:.1f}% "
            f"({100 * (tuned['test'] / base['test'] - 1):+.0f}%); other voice {100 * base['test_other_voice']:.1f}% -> "
            f"{100 * tuned['test_other_voice']:.1f}% ({100 * (tuned['test_other_voice'] / base['test_other_voice'] - 1):+.0f}%)")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
