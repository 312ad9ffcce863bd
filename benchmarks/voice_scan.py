"""How wrong is bundled tiny.en on each espeak-ng voice? Picks the demo's training voice.

    python benchmarks/voice_scan.py en-us,en-gb-x-gbclan,en-gb-scotland:160:50 [N_SENTENCES]

Each voice is NAME[:SPEED[:PITCH]]; N hand-written evaluation sentences (default 20) are spoken
and transcribed greedily; WER after lowercasing and stripping punctuation is printed per voice.
"""

import argparse
import re
import sys
import tempfile

import jiwer
import torch

from whisper_lora.audio import load_audio
from whisper_lora.models import load_model
from whisper_lora.synthetic.sentences import read_sentences
from whisper_lora.synthetic.tts import synthesize_cached


def norm(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("voices", nargs="?", default="en-us,en-gb-x-gbclan",
                   help="comma-separated NAME[:SPEED[:PITCH]] (default: %(default)s)")
    p.add_argument("n", nargs="?", type=int, default=20, help="evaluation sentences spoken (default: %(default)s)")
    args = p.parse_args()
    voices, n = args.voices.split(","), args.n
    sentences = read_sentences("en", "eval")[:n]
    model, processor = load_model("bundled:tiny.en")
    folder = tempfile.mkdtemp(prefix="voice-scan-")
    for spec in voices:
        name, speed, pitch = (spec.split(":") + ["160", "50"])[:3]
        clips = [load_audio(synthesize_cached(s, folder, voice=name, speed=int(speed), pitch=int(pitch)))
                 for s in sentences]
        features = processor(clips, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(features, max_new_tokens=100)
        hyps = processor.batch_decode(ids, skip_special_tokens=True)
        wer = jiwer.wer([norm(s) for s in sentences], [norm(h) for h in hyps])
        print(f"{spec:28s} WER {100 * wer:5.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
