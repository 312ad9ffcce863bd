"""One training step of bundled:base with the default adapters, fp32 against bf16 autocast on this CPU.

    python benchmarks/precision_step.py [--windows 2]

Forward + backward on random 30-s windows (what a packed batch of 8 short clips fills) with
100-token labels, three times each, alternating fp32 and bf16 twice. Prints seconds per step:
the figure behind training's bf16 default on CPUs with bf16 instructions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=2)
    args = p.parse_args()
    import torch

    from whisper_lora import load_model
    from whisper_lora.devices import cpu_has_native_bf16
    from whisper_lora.training.lora import add_lora
    from whisper_lora.training.options import TrainOptions

    scratch = Path(tempfile.mkdtemp())
    (scratch / "t.json").write_text("[]")
    model, _ = load_model("bundled:base")
    model.config.use_cache = False
    options = TrainOptions(model_name_or_path="bundled:base", train_file=str(scratch / "t.json"),
                           output_dir=str(scratch / "o"))
    model = add_lora(model, options)
    model.train()
    features = torch.randn(args.windows, 80, 3000)
    labels = torch.randint(0, 50000, (args.windows, 100))
    print(f"bf16 instructions: {cpu_has_native_bf16()}; {args.windows} windows per step")
    for mode in ("fp32", "bf16", "fp32", "bf16"):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = model(input_features=features, labels=labels).loss
            loss.backward()
            model.zero_grad()
            times.append(time.perf_counter() - start)
        print(mode, " ".join(f"{t:.2f}" for t in times), "s/step", flush=True)


if __name__ == "__main__":
    main()
