"""`whisper-lora prepare INPUT... --output_dir DIR`: recordings with subtitles, folders of audio and
transcripts, Common Voice / CSV / TSV tables -> a checked training manifest (prepare.prepare)."""

from __future__ import annotations

from ..audio import CHUNK_LENGTH


def add_parser(subparsers):
    p = subparsers.add_parser(
        "prepare", help="make a training manifest from recordings + SRT/VTT, folders or CSV/TSV tables",
        description="Turn long recordings with SRT/WebVTT subtitles into clips of at most 30 s cut between "
                    "cues, each with its text and segment times (for train --timestamps); take a folder of "
                    "x.wav + x.txt (or x.srt) pairs, Common Voice .tsv or .csv/.tsv tables (path, sentence), "
                    "or a JSON/JSONL manifest of recordings (audio_path, subtitles). Writes DIR/manifest.jsonl, "
                    "DIR/clips/ and DIR/report.txt; every row is checked as training checks it.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a recording (x.srt or x.vtt beside it), a folder, a .csv/.tsv table, or a .json/.jsonl "
                        "manifest of recordings")
    p.add_argument("--output_dir", required=True, help="where manifest.jsonl, clips/ and report.txt go")
    p.add_argument("--subtitles", help="subtitle file (.srt or .vtt) of the one recording given")
    p.add_argument("--max_seconds", type=float, default=float(CHUNK_LENGTH),
                   help="longest clip, in seconds (default: %(default)g, Whisper's window)")
    p.add_argument("--language", help="language written on every row (a table's own locale column wins)")
    p.add_argument("--overwrite", action="store_true", help="replace the manifest of an earlier prepare in DIR")
    p.add_argument("--quick", action="store_true",
                   help="check audio from file headers only instead of decoding every file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.prepare import PrepareOptions, prepare

    result = prepare(PrepareOptions(inputs=tuple(args.inputs), output_dir=args.output_dir, subtitles=args.subtitles,
                                    max_seconds=args.max_seconds, language=args.language, overwrite=args.overwrite,
                                    quick=args.quick))
    for note in result.notes:
        print(note)
    print(result.summary())
    return 0
