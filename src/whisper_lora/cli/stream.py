"""`whisper-lora stream`: live transcription of a file played at real-time pace, or of raw PCM on stdin.

    whisper-lora stream --model bundled:tiny.en talk.wav
    arecord -f S16_LE -r 16000 -c 1 | whisper-lora stream --model bundled:base --adapter ./out -
"""

from __future__ import annotations

import json
import sys

from ..decoding.options import DEVICES
from ..streaming.engine import POLICIES


def add_parser(subparsers):
    p = subparsers.add_parser(
        "stream", help="transcribe live: a file at real-time pace, or raw PCM from stdin",
        description="Prints each turn's words as they become final (a line per turn), as the server's "
                    "/v1/stream does with the same model: words two successive decodes of the growing "
                    "buffer agree on, and all of a turn's words once Silero VAD hears its pause.")
    p.add_argument("--model", "--model_path", dest="model", required=True, metavar="SPEC",
                   help="bundled:tiny.en, bundled:base, a hub id, an HF folder, an openai .pt file, or a "
                        "training output folder")
    p.add_argument("--adapter", metavar="PATH", help="a LoRA adapter (training output folder) trained on --model")
    p.add_argument("source", metavar="FILE|-",
                   help="an audio file, or - for raw 16-bit little-endian mono PCM at 16 kHz on stdin")
    p.add_argument("--no_realtime", dest="realtime", action="store_false",
                   help="feed the file as fast as decoding goes, a chunk per decode, instead of at real-time pace")
    p.add_argument("--language", help="language spoken (en, nl, ...); omitted: detected on multilingual models")
    p.add_argument("--initial_prompt", metavar="TEXT", help="text as if said just before each decode's audio")
    p.add_argument("--glossary", metavar="FILE", help="domain terms, one per line (as transcribe --glossary)")
    p.add_argument("--policy", choices=POLICIES, default="both",
                   help="when words become final: both (default), agreement (two decodes agree), "
                        "turns (at a pause Silero VAD hears)")
    p.add_argument("--chunk", type=float, default=1.0,
                   help="seconds of new audio between decodes (default: %(default)s)")
    p.add_argument("--agree", type=int, default=2,
                   help="successive decodes that must agree on a word before it is final (default: %(default)s, "
                        "LocalAgreement-2)")
    p.add_argument("--jsonl", action="store_true",
                   help="print every event (partial, final, turn) as a JSON line with its wall and stream times")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks cuda, then mps, then cpu")
    p.add_argument("--cache_dir", help="where hub downloads and converted models are cached")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..decoding.options import TranscribeOptions
    from ..streaming import StreamOptions
    from ..streaming.play import model_spec, transcribe_stream

    options = TranscribeOptions(language=args.language, initial_prompt=args.initial_prompt, glossary=args.glossary,
                                device=args.device, cache_dir=args.cache_dir)
    stream_options = StreamOptions(policy=args.policy, chunk=args.chunk, agree=args.agree)
    spec = model_spec(args.model, args.adapter, args.cache_dir)
    transcribe_stream(spec, args.source, options, stream_options, realtime=args.realtime,
                      on_event=_jsonl if args.jsonl else _lines)
    return 0


def _lines(timed) -> None:
    from ..streaming import Final, TurnEnd

    if isinstance(timed.event, Final):
        sys.stdout.write(("" if _lines.fresh else " ") + timed.event.text)
        _lines.fresh = False
    elif isinstance(timed.event, TurnEnd) and not _lines.fresh:
        sys.stdout.write("\n")
        _lines.fresh = True
    sys.stdout.flush()


_lines.fresh = True


def _jsonl(timed) -> None:
    from ..streaming import event_json

    print(json.dumps({**event_json(timed.event), "wall": round(timed.wall, 3), "heard": round(timed.heard, 3)}),
          flush=True)
