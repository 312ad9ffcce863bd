"""Where a model's errors fall: on words its training transcripts contain, or on words they never do.

    python benchmarks/unheard_words.py --train TRAIN.jsonl --language nl UTTERANCES.csv [UTTERANCES.csv ...]

UTTERANCES.csv: what `whisper-lora evaluate --output_dir` writes per model. Each reference word
(normalised as evaluate scores it) is "heard" when it occurs in some training transcript, else
"unheard". Printed per file: the share of unheard reference words; substitutions and deletions
of heard and of unheard words, each as a share of all reference words (so heard + unheard +
insertions = the WER); and the error rate within each kind. A fine-tuned model whose errors are
mostly unheard words has learnt what it could from the lines; one that still misses heard words
has more to learn from the audio.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def training_words(manifest: Path, language: str) -> set[str]:
    from whisper_lora.scoring.metrics import normalize

    words = set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            words.update(normalize(json.loads(line)["text"], language).split())
    return words


def error_kinds(utterances: Path, heard: set[str]) -> Counter:
    """Counts of reference words and of errors, by kind, over every row of an evaluate CSV."""
    import jiwer

    counts = Counter()
    with utterances.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            reference = row["normalized_reference"].split()
            hypothesis = row["normalized_hypothesis"].split()
            kinds = ["heard" if w in heard else "unheard" for w in reference]
            counts.update(kinds)
            if not reference:
                counts["insertions"] += len(hypothesis)
                continue
            if not hypothesis:
                counts.update(f"{k} errors" for k in kinds)
                continue
            for chunk in jiwer.process_words(" ".join(reference), " ".join(hypothesis)).alignments[0]:
                if chunk.type == "insert":
                    counts["insertions"] += chunk.hyp_end_idx - chunk.hyp_start_idx
                elif chunk.type in ("substitute", "delete"):
                    counts.update(f"{kinds[i]} errors" for i in range(chunk.ref_start_idx, chunk.ref_end_idx))
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, required=True, help="the training manifest (.jsonl)")
    p.add_argument("--language", required=True, help="the scoring language (as evaluate's --language)")
    p.add_argument("utterances", type=Path, nargs="+", help="utterances-MODEL.csv files written by evaluate")
    args = p.parse_args()
    heard = training_words(args.train, args.language)
    print(f"{'file':<48} {'unheard words':>13} {'WER':>6} {'= heard':>8} {'+ unheard':>9} {'+ ins':>6} "
          f"{'heard err':>9} {'unheard err':>11}")
    for path in args.utterances:
        c = error_kinds(path, heard)
        n = c["heard"] + c["unheard"]
        share = lambda k: 100 * c[k] / n  # noqa: E731 (a share of all reference words)
        within = lambda k: 100 * c[f"{k} errors"] / max(c[k], 1)  # noqa: E731
        wer = share("heard errors") + share("unheard errors") + share("insertions")
        print(f"{path.parent.name + '/' + path.name:<48} {share('unheard'):12.1f}% {wer:5.1f}% "
              f"{share('heard errors'):7.1f}% {share('unheard errors'):8.1f}% {share('insertions'):5.1f}% "
              f"{within('heard'):8.1f}% {within('unheard'):10.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
