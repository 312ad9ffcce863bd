"""`whisper-lora merge --model_path OUT --output_dir DIR`: fold a LoRA adapter into its base model."""

from ..export.merge import MergeOptions, merge


def add_parser(subparsers):
    p = subparsers.add_parser(
        "merge", help="merge a trained LoRA adapter into its base model (plain Whisper folder)",
        description="Merge the adapter of a training output folder into its base model with peft's safe "
                    "merge (refused if any weight becomes NaN or infinite), check that the merged model "
                    "gives the same logits, and save model (safetensors), processor and generation config. "
                    "The output folder appears complete or not at all.")
    p.add_argument("--model_path", required=True, help="training output folder (adapter_config.json inside)")
    p.add_argument("--output_dir", required=True, help="folder to create for the merged model")
    p.add_argument("--cache_dir", default=None, help="cache of downloaded and converted base models")
    p.add_argument("--overwrite", action="store_true", help="replace --output_dir if it exists")
    p.add_argument("--no_verify", dest="verify", action="store_false",
                   help="skip the logits check of merged against base + adapter (saves one forward pass)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = merge(MergeOptions(model_path=args.model_path, output_dir=args.output_dir, cache_dir=args.cache_dir,
                             overwrite=args.overwrite, verify=args.verify))
    print(f"merged model: {out}")
    return 0
