"""`whisper-lora export --model_path OUT|DIR --format ct2`: a CTranslate2 model for faster-whisper."""

from ..export import FORMATS, QUANTIZATIONS, ExportOptions, export


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="convert a model (adapter folders are merged first) for faster-whisper",
        description="Convert a training output folder (merged first), a merged model folder or any model "
                    "spec into a CTranslate2 model with CTranslate2's own converter, with tokenizer.json "
                    "and preprocessor_config.json, so faster_whisper.WhisperModel(folder) loads it and "
                    "`whisper-lora transcribe --model FOLDER` runs it on faster-whisper.")
    p.add_argument("--model_path", required=True,
                   help="training output folder, merged model folder, or a spec such as bundled:tiny.en")
    p.add_argument("--format", default="ct2", choices=FORMATS, help="output format (default: %(default)s)")
    p.add_argument("--quantization", default="float16", choices=QUANTIZATIONS,
                   help="weight type (default: %(default)s; int8 is smallest and fastest on CPU)")
    p.add_argument("--output_dir", default=None,
                   help="folder to create (default: MODEL_PATH-ct2-QUANTIZATION beside the model)")
    p.add_argument("--cache_dir", default=None, help="cache of downloaded and converted base models")
    p.add_argument("--overwrite", action="store_true", help="replace --output_dir if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    out = export(ExportOptions(model_path=args.model_path, output_dir=args.output_dir, format=args.format,
                               quantization=args.quantization, cache_dir=args.cache_dir,
                               overwrite=args.overwrite))
    print(f"exported ({args.format}, {args.quantization}): {out}")
    return 0
