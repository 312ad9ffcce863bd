"""Where the transformers backend's decoding time goes on a CPU, and what the inference levers buy.

    python benchmarks/decode_levers.py [--model bundled:tiny.en] [--threads 2] [--compile]

Prints, for the real model with random encoder states (the cost does not depend on the values):
  - the encoder: seconds per 30-s window at batch 8, eager (and torch.compile'd with --compile,
    with its compile time);
  - a decoder step inside generate at batch 1 and 16, with the default dynamic KV cache and with
    a static one (cache_implementation="static"), and a hand-written greedy loop over the decoder
    with a dynamic cache (no logits processors: the floor generate could reach);
  - proj_out alone (hidden size x vocabulary, read in full every step), fp32 and int8-dynamic.
"""

from __future__ import annotations

import argparse
import time
import warnings


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def encoder_seconds(model, batch: int, compile_it: bool) -> dict:
    import torch

    feats = torch.randn(batch, model.config.num_mel_bins, 3000)
    encoder = model.model.encoder
    out = {"eager": timed(lambda: encoder(feats), 2) / batch}
    if compile_it:
        compiled = torch.compile(encoder)
        start = time.perf_counter()
        compiled(feats)
        out["compile_s"] = time.perf_counter() - start
        out["compiled"] = timed(lambda: compiled(feats), 2) / batch
    return out


def step_ms(model, batch: int, cache: str | None) -> float:
    """ms per decoder step inside generate: (time for 60 steps - time for 10) / 50."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    hidden = torch.randn(batch, 1500, model.config.d_model)

    def run(steps):
        kwargs = {"cache_implementation": cache} if cache else {}
        model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), max_new_tokens=steps,
                       min_new_tokens=steps, num_beams=1, do_sample=False, return_timestamps=False,
                       force_unique_generate_call=True, **kwargs)
    run(5)
    return (timed(lambda: run(60), 1) - timed(lambda: run(10), 1)) / 50 * 1000


def raw_loop_ms(model, batch: int) -> float:
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    hidden = torch.randn(batch, 1500, model.config.d_model)
    decoder = model.model.decoder

    def run():
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        ids = torch.full((batch, 3), model.generation_config.decoder_start_token_id)
        out = decoder(input_ids=ids, encoder_hidden_states=hidden, past_key_values=cache, use_cache=True)
        start = time.perf_counter()
        for _ in range(50):
            tok = model.proj_out(out.last_hidden_state[:, -1]).argmax(-1, keepdim=True)
            out = decoder(input_ids=tok, encoder_hidden_states=hidden, past_key_values=out.past_key_values,
                          use_cache=True)
        return (time.perf_counter() - start) / 50 * 1000
    run()
    return run()


def proj_out_ms(model, batch: int) -> dict:
    import torch

    x = torch.randn(batch, model.config.d_model)
    out = {"fp32": timed(lambda: model.proj_out(x), 20) * 1000}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(model.proj_out), {torch.nn.Linear},
                                                       dtype=torch.qint8)
            out["int8-dynamic"] = timed(lambda: q(x), 20) * 1000
    except (AttributeError, RuntimeError) as exc:  # removed from newer torch
        out["int8-dynamic"] = f"unavailable ({exc})"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled:tiny.en")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd encoder (slow to compile)")
    args = p.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from whisper_lora.models import load_model

    hf_logging.set_verbosity_error()  # generate's notes on max_length / min_length, once per call
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.model)
    model.eval()
    print(f"model {args.model}, torch {torch.__version__}, {args.threads} threads, fp32")
    with torch.inference_mode():
        enc = encoder_seconds(model, 8, args.compile)
        print("encoder, s per 30-s window at batch 8: " + ", ".join(
            f"{k} {v:.3f}" for k, v in enc.items()))
        for batch in (1, 16):
            dynamic, static = step_ms(model, batch, None), step_ms(model, batch, "static")
            raw = raw_loop_ms(model, batch)
            print(f"decoder step, batch {batch:2d}: generate {dynamic:.1f} ms, generate with a static cache "
                  f"{static:.1f} ms, hand-written greedy loop {raw:.1f} ms")
            proj = proj_out_ms(model, batch)
            print(f"proj_out, batch {batch:2d}: " + ", ".join(
                f"{k} {v:.1f} ms" if isinstance(v, float) else f"{k} {v}" for k, v in proj.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
