"""`whisper-lora serve`: an OpenAI-compatible transcription server, many adapters on one base.

    whisper-lora serve --model bundled:tiny.en --adapter calls=./out-calls --adapter radio=./out-radio
    curl localhost:8000/v1/audio/transcriptions -F model=calls -F file=@call.wav
"""

from __future__ import annotations

from ..decoding.options import DEVICES
from ..serve.options import BASE_NAME


def add_parser(subparsers):
    p = subparsers.add_parser(
        "serve", help="serve OpenAI's audio API with a base model and LoRA adapters",
        description="An OpenAI-compatible server: POST /v1/audio/transcriptions and /v1/audio/translations, "
                    "GET /v1/models, /health, live streams over WebSockets (/v1/stream: raw PCM; /v1/realtime: "
                    "OpenAI's Realtime transcription events), and a web page at / with a microphone button. A request's `model` picks an adapter "
                    "(or the base). Needs the serve extra: pip install 'whisper-lora[serve]'.")
    p.add_argument("--model", "--model_path", dest="model", required=True, metavar="SPEC",
                   help="the base model: bundled:tiny.en, bundled:base, a hub id, an HF or CTranslate2 folder, "
                        "an openai .pt file")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                   help="a LoRA adapter (a training output folder) served as model NAME; may be repeated. "
                        "All must be trained on --model")
    p.add_argument("--glossary", action="append", default=[], metavar="[NAME=]FILE",
                   help="domain terms, one per line: decoded as `transcribe --glossary` does for the requests to "
                        "model NAME (a bare FILE: every model) that send no `glossary` field of their own; "
                        "may be repeated")
    p.add_argument("--base_name", default=BASE_NAME,
                   help="the base model's name in requests (default: %(default)s, what OpenAI clients send; "
                        "the --model spec names it too)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--api_key", help="require 'Authorization: Bearer KEY' on every /v1 request")
    p.add_argument("--max_upload_mb", type=float, default=25.0, help="largest upload (default: %(default)s MB)")
    p.add_argument("--max_audio_seconds", type=float, default=4 * 3600.0,
                   help="longest audio accepted (default: %(default)s s)")
    p.add_argument("--max_batch", type=int, default=16, help="requests decoded together at most (default: %(default)s)")
    p.add_argument("--batch_wait_ms", type=float, default=20.0,
                   help="how long a request waits for others to share its batch (default: %(default)s ms)")
    p.add_argument("--max_streams", type=int, default=8,
                   help="live WebSocket streams (/v1/stream, /v1/realtime) at once; one more is closed with a "
                        "reason (default: %(default)s; 0: none)")
    p.add_argument("--max_stream_minutes", type=float, default=240.0,
                   help="a live stream is ended after this much audio, its text sent (default: %(default)s)")
    p.add_argument("--stream_idle_seconds", type=float, default=30.0,
                   help="a live stream that sends nothing this long is closed (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks cuda, then mps, then cpu")
    p.add_argument("--cache_dir", help="where hub downloads and converted models are cached")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..serve import ServeOptions, serve
    from ..serve.options import parse_adapter, parse_glossary

    adapters = dict(parse_adapter(a) for a in args.adapter)
    if len(adapters) != len(args.adapter):
        from ..errors import OptionsError

        raise OptionsError("--adapter: two adapters have the same NAME; give each its own (NAME=PATH)")
    serve(ServeOptions(model=args.model, adapters=adapters, base_name=args.base_name, host=args.host,
                       port=args.port, api_key=args.api_key, max_upload_mb=args.max_upload_mb,
                       max_audio_seconds=args.max_audio_seconds, max_batch=args.max_batch,
                       batch_wait_ms=args.batch_wait_ms, max_streams=args.max_streams,
                       max_stream_minutes=args.max_stream_minutes, stream_idle_seconds=args.stream_idle_seconds,
                       device=args.device, cache_dir=args.cache_dir,
                       glossaries=dict(parse_glossary(g) for g in args.glossary)))
    return 0
