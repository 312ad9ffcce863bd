"""Domain terms on real Dutch speech: a glossary at decoding, glossary-aware training, side by side.

    python benchmarks/glossary.py [--work DIR] [--variants plain,glossary,aware,aware+glossary,beam,beam+glossary,beam+lm,beam+lm+glossary]

Data as benchmarks/real_speech.py (the Dutch voice acting of Fish Fillets NG: 287 held-out clips,
about 68 min to train on); its `defaults` adapter (train defaults, 3 epochs) is trained here when
WORK/runs/defaults has none, and the glossary-aware one (`train --glossary_training`, otherwise the
same) in WORK/runs/aware.

The glossary protocol: every word of the held-out transcripts that no training transcript
contains, spelled as the transcript spells it, plus 4 distractors for each from Debian's Dutch
word list (`wdutch`, fetched like the corpora) that no held-out transcript contains, shuffled
(seed 0). No training run sees it.

Variants, each in its own process:
  plain            the defaults adapter, no glossary
  glossary         the defaults adapter, --glossary at decoding
  aware            the glossary-aware adapter, no glossary
  aware+glossary   the glossary-aware adapter, --glossary at decoding
  beam             the defaults adapter, --beam_size 5
  beam+glossary    the same, with --glossary (both passes beam 5)
  beam+lm          the defaults adapter, --beam_size 5 --lm: a 3-gram model of the training
                   transcripts (`whisper-lora lm build`), at the default weight and bonus (chosen on
                   the validation clips with `evaluate --lm_weight`)
  beam+lm+glossary the same, with --glossary (both passes with the language model)
Printed per variant: WER; B-WER, the error rate on spoken glossary words (substitutions and
deletions of reference words that are glossary terms, over their count); U-WER, the error rate
on the other words (their substitutions and deletions plus all insertions, over their count);
prompt terms per file (mean, of the files given any); decoding time; and beside a glossary
variant, the same figures for other rules of what to keep from the second pass (second pass
always; splice, the library's) and the paired bootstrap 95% interval of its WER minus plain's.
Per-clip rows go to WORK/glossary/VARIANT.jsonl.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, bootstrap, emit, parse_result  # noqa: E402

BASE = "bundled:base"
LANGUAGE = "nl"
DISTRACTORS = 4
VARIANTS = ("plain", "glossary", "aware", "aware+glossary", "beam", "beam+glossary", "beam+lm", "beam+lm+glossary")


def data(work: Path) -> dict:
    from real_speech import data as real_speech_data

    return real_speech_data(work)


def rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_glossary(paths: dict, out: Path) -> Path:
    """The protocol above (whisper_lora.corpora.fillets.write_glossary, which the demo uses too)."""
    from whisper_lora.corpora.fillets import write_glossary

    out.parent.mkdir(parents=True, exist_ok=True)
    return write_glossary(paths["train"], paths["test"], out, DISTRACTORS)


def adapter(paths: dict, work: Path, name: str, flags: list[str]) -> Path:
    """WORK/runs/NAME, trained with the train defaults (and `flags`) unless it is there."""
    from whisper_lora.cli import main

    out = work / "runs" / name
    if not (out / "adapter_model.safetensors").is_file():
        argv = ["train", "--model_name_or_path", BASE, "--train_file", str(paths["train"]),
                "--validation_file", str(paths["validation"]), "--language", LANGUAGE, "--output_dir", str(out),
                "--num_train_epochs", "3", "--overwrite_output_dir", *flags]
        if main(argv) != 0:
            raise SystemExit(f"training {name} failed")
    return out


def child(variant: str, work: Path) -> None:
    from whisper_lora.audio import load_audio
    from whisper_lora.decoding.biasing import choose
    from whisper_lora.data.glossary import Glossary
    from whisper_lora.transcribe import TranscribeOptions, Transcriber

    paths = data(work)
    model = adapter(paths, work, "aware" if variant.startswith("aware") else "defaults",
                    ["--glossary_training"] if variant.startswith("aware") else [])
    glossary = Glossary.read(build_glossary(paths, work / "glossary" / "glossary.txt"))
    test = rows(paths["test"])
    audios = [load_audio(r["audio_path"]) for r in test]
    beam = 5 if variant.startswith("beam") else 1
    lm = None
    if "lm" in variant.split("+"):
        from whisper_lora.data.lm import build_file

        lm = str(build_file(paths["train"], work / "glossary" / "train.arpa"))
    transcriber = Transcriber.from_spec(str(model), TranscribeOptions(language=LANGUAGE, beam_size=beam, lm=lm))
    backend = transcriber.backend
    start = time.perf_counter()
    first = backend.decode_short(audios)
    first_seconds = time.perf_counter() - start
    record = {"variant": variant, "glossary_terms": len(glossary.terms), "first_seconds": first_seconds}
    out = [{"reference": r["text"], "first": _text(d)} for r, d in zip(test, first)]
    if variant.endswith("glossary"):
        # the library's two passes (biasing.decode_with_glossary), step by step to keep each pass
        start = time.perf_counter()
        terms = [glossary.select(_text(d), language=LANGUAGE) for d in first]
        todo = [i for i, t in enumerate(terms) if t]
        select_seconds = time.perf_counter() - start
        second = dict(zip(todo, backend.decode_short([audios[i] for i in todo], terms=[terms[i] for i in todo],
                                                                 pack=False)))
        record.update(select_seconds=select_seconds, second_seconds=time.perf_counter() - start - select_seconds,
                      files_with_terms=len(todo), mean_terms=sum(len(terms[i]) for i in todo) / max(len(todo), 1))
        for i, row in enumerate(out):
            row["terms"] = terms[i]
            row["second"] = _text(second[i]) if i in second else row["first"]
            row["splice"] = _text(choose(first[i], second[i], glossary)) if i in second else row["first"]
    folder = work / "glossary"
    with (folder / f"{variant}.jsonl").open("w", encoding="utf-8") as f:
        for row in out:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    emit(record)


def _text(decoded) -> str:
    return " ".join(s.text for s in decoded.segments).strip()


def clip_counts(reference: str, hypothesis: str, biased: set[str]) -> tuple[int, int, int, int, int]:
    """(errors, words, glossary-word errors, glossary words, other errors incl. insertions)."""
    import jiwer

    from whisper_lora.scoring.metrics import normalize

    ref, hyp = normalize(reference, LANGUAGE).split(), normalize(hypothesis, LANGUAGE).split()
    kinds = [w in biased for w in ref]
    if not ref:
        return len(hyp), 0, 0, 0, len(hyp)
    b_err = u_err = 0
    if not hyp:
        b_err = sum(kinds)
        u_err = len(ref) - b_err
    else:
        for chunk in jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]:
            if chunk.type == "insert":
                u_err += chunk.hyp_end_idx - chunk.hyp_start_idx
            elif chunk.type in ("substitute", "delete"):
                for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    b_err += kinds[i]
                    u_err += not kinds[i]
    return b_err + u_err, len(ref), b_err, sum(kinds), u_err


def figures(counts: list[tuple]) -> dict:
    e, n, be, bn, ue = (sum(c[k] for c in counts) for k in range(5))
    return {"wer": e / n, "b_wer": be / max(bn, 1), "u_wer": ue / max(n - bn, 1), "glossary_words": bn}


def report(work: Path, results: dict) -> None:
    from whisper_lora.data.glossary import Glossary
    from whisper_lora.scoring.metrics import normalize

    glossary = Glossary.read(work / "glossary" / "glossary.txt")
    biased = {w for t in glossary.terms for w in normalize(t, LANGUAGE).split()}
    print(f"glossary: {len(glossary.terms)} terms ({len(glossary.terms) // (DISTRACTORS + 1)} held-out words "
          f"no training line holds, {DISTRACTORS} distractors each)")
    print("| variant | rule | WER | B-WER | U-WER | files given terms | terms per file | decoding s | WER - plain (95% CI) |")
    print("|---|---|---|---|---|---|---|---|---|")
    plain = beam = None
    against_beam = []
    for variant in (v for v in VARIANTS if v in results):
        clips = [json.loads(line) for line in (work / "glossary" / f"{variant}.jsonl").read_text(encoding="utf-8").splitlines()]
        r = results[variant]
        rules = [("first pass", "first")] if "second" not in clips[0] else [("second always", "second"), ("splice", "splice")]
        for rule, key in rules:
            counts = [clip_counts(c["reference"], c[key], biased) for c in clips]
            f = figures(counts)
            if variant == "plain":
                plain = counts
            seconds = r["first_seconds"] + r.get("select_seconds", 0) + r.get("second_seconds", 0)
            ci = "-" if plain is None or variant == "plain" else "{:+.1f} to {:+.1f}".format(
                *(100 * x for x in bootstrap(plain, counts)))
            given = f"{r['files_with_terms']}/{len(clips)}" if "files_with_terms" in r else "-"
            per = f"{r['mean_terms']:.1f}" if "mean_terms" in r else "-"
            print(f"| {variant} | {rule} | {f['wer'] * 100:.1f}% | {f['b_wer'] * 100:.1f}% | {f['u_wer'] * 100:.1f}% "
                  f"| {given} | {per} | {seconds:.0f} ({r['first_seconds']:.0f} first pass) | {ci} |")
            if variant == "beam":
                beam = counts
            elif variant.startswith("beam+") and beam is not None:
                against_beam.append("{} {}: {:+.1f} to {:+.1f}".format(variant, rule,
                                                                      *(100 * x for x in bootstrap(beam, counts))))
    if against_beam:
        print("WER - beam (95% CI): " + "; ".join(against_beam))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=ROOT / "demo_output" / "real-speech",
                   help="data, adapters and results (shared with real_speech.py)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--report", action="store_true", help="only print the table of results already there")
    args = p.parse_args()
    if args.child:
        child(args.child, args.work)
        return 0
    results_file = args.work / "glossary" / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if not args.report:
        for variant in args.variants.split(","):
            done = subprocess.run([sys.executable, __file__, "--child", variant, "--work", str(args.work)],
                                  stdout=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(f"{variant} failed", file=sys.stderr)
                return 1
            results[variant] = parse_result(done.stdout)
            results_file.parent.mkdir(parents=True, exist_ok=True)
            results_file.write_text(json.dumps(results, indent=1))
    report(args.work, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
