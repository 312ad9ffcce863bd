"""`whisper-lora export --model_path OUT|DIR --format ct2|ggml`: a model for faster-whisper or whisper.cpp."""

from ..export import FORMAT_QUANTIZATIONS, FORMATS, ExportOptions, export


def add_parser(subparsers):
    ct2, ggml = (", ".join(FORMAT_QUANTIZATIONS[f]) for f in ("ct2", "ggml"))
    p = subparsers.add_parser(
        "export", help="convert a model (adapter folders are merged first) for faster-whisper or whisper.cpp",
        description="Convert a training output folder (merged first), a merged model folder or any model "
                    "spec. --format ct2: a CTranslate2 model made by CTranslate2's own converter, with "
                    "tokenizer.json and preprocessor_config.json, so faster_whisper.WhisperModel(folder) loads "
                    "it and `whisper-lora transcribe --model FOLDER` runs it on faster-whisper. --format ggml: "
                    "one ggml-model-QUANTIZATION.bin file (tokenizer and mel filters inside) that whisper.cpp "
                    "loads (`whisper-cli -m FILE`, pywhispercpp.model.Model(FILE)).")
    p.add_argument("--model_path", required=True,
                   help="training output folder, merged model folder, or a spec such as bundled:tiny.en")
    p.add_argument("--format", default="ct2", choices=FORMATS,
                   help="ct2 (faster-whisper) or ggml (whisper.cpp) (default: %(default)s)")
    p.add_argument("--quantization", default=None,
                   help=f"weight type. --format ct2: {ct2} (default float16; int8 is smallest and fastest "
                        f"on CPU). --format ggml: {ggml} (default f16; q8_0/q5_0 are whisper.cpp's 8- and "
                        "5-bit block types)")
    p.add_argument("--output_dir", default=None,
                   help="ct2: folder to create (default: MODEL_PATH-ct2-QUANTIZATION beside the model); "
                        "ggml: folder that gets ggml-model-QUANTIZATION.bin (default: MODEL_PATH-ggml)")
    p.add_argument("--cache_dir", default=None, help="cache of downloaded and converted base models")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    options = ExportOptions(model_path=args.model_path, output_dir=args.output_dir, format=args.format,
                            quantization=args.quantization, cache_dir=args.cache_dir, overwrite=args.overwrite)
    out = export(options)
    print(f"exported ({options.format}, {options.quantization}): {out}")
    return 0
