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

import contextlib
import threading
import time
from collections.abc import Iterator

from .options import ServeOptions


def serve(options: ServeOptions) -> None:
    """Load the models, then answer HTTP requests until interrupted."""
    uvicorn = _server_modules()
    uvicorn.run(_app(options), host=options.host, port=options.port, log_level="info")


@contextlib.contextmanager
def serving(options: ServeOptions, start_seconds: float = 60.0) -> Iterator[str]:
    """The server on a thread of this process for the block, for a notebook, a benchmark or a test
    that talks to it as any client would: yields its base URL (port 0: a free one), stops after."""
    uvicorn = _server_modules()
    server = uvicorn.Server(uvicorn.Config(_app(options), host=options.host, port=options.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {options.host}:{options.port} did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{options.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _server_modules():
    """uvicorn, once FastAPI and its form parser are known to be there (the serve extra)."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
        import uvicorn
    except ModuleNotFoundError as exc:
        from ..errors import WhisperLoraError

        raise WhisperLoraError(f"the server needs {exc.name}: pip install 'whisper-lora[serve]'") from None
    return uvicorn


def _app(options: ServeOptions):
    from .app import create_app
    from .models import ModelSet

    return create_app(ModelSet.load(options), options)


__all__ = ["ServeOptions", "serve", "serving"]
