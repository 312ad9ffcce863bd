"""Serve: an OpenAI-compatible transcription server, many LoRA adapters on one base model.

    whisper-lora serve --model bundled:tiny.en --adapter calls=./out-calls --adapter radio=./out-radio

One process holds the base model once; peft keeps every adapter beside it and the server picks
one per request by the request's `model` field (models.py). Requests that arrive together are
decoded together (batcher.py), grouped by adapter and options, with the same packing and guards
as `whisper-lora transcribe`. app.py speaks OpenAI's audio API; page.html is a small web page.

The server keeps no state between requests, so replicas behind any HTTP load balancer scale it
out: each replica loads the base model and its adapters once.
"""

from __future__ import annotations

from .options import ServeOptions


def serve(options: ServeOptions) -> None:
    """Load the models, then answer HTTP requests until interrupted."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
        import uvicorn
    except ModuleNotFoundError as exc:
        from ..errors import WhisperLoraError

        raise WhisperLoraError(f"the server needs {exc.name}: pip install 'whisper-lora[serve]'") from None

    from .app import create_app
    from .models import ModelSet

    models = ModelSet.load(options)
    app = create_app(models, options)
    uvicorn.run(app, host=options.host, port=options.port, log_level="info")


__all__ = ["ServeOptions", "serve"]
