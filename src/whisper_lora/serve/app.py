"""The HTTP routes: OpenAI's audio API, the model list, a health check and a web page.

Every bad request gets a 4xx in OpenAI's error shape naming the field, and the server goes on
serving the others; only a fault of ours is a 500. No path from a request is ever opened: the
upload is decoded from its bytes in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from importlib import resources

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..audio import SAMPLE_RATE, load_audio_bytes
from ..errors import AudioError, OptionsError
from ..data.glossary import Glossary, GlossaryError
from ..languages import language_code
from .batcher import Batcher
from .formats import RESPONSE_FORMATS, TIMED_FORMATS, error_body, render
from .models import Job, ModelSet
from .options import ServeOptions
from .realtime import realtime
from .streams import POLICY, Closed, Slots, native

log = logging.getLogger(__name__)

FORM_SLACK = 64 * 1024  # multipart overhead allowed beyond the upload limit in Content-Length


class RequestError(Exception):
    """A request we refuse: status, message and the field to blame."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def create_app(models: ModelSet, options: ServeOptions) -> FastAPI:
    batcher = Batcher(models.transcribe, options.max_batch, options.batch_wait_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="whisper-lora", docs_url=None, redoc_url=None, lifespan=lifespan)
    created = int(time.time())

    _guard(app, options)
    @app.get("/health")
    async def health():
        return {"status": "ok", "models": models.names}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "whisper-lora"} for name in models.names]}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    async def audio_request(request: Request, task: str) -> Response:
        job, audio, name, response_format = await _parse(request, task, models, options)
        try:
            result = await asyncio.wrap_future(batcher.submit(job, audio, name))
        except Exception:  # noqa: BLE001 - logged by the batcher; the server keeps serving
            return JSONResponse(error_body("the server failed to transcribe this file", kind="server_error"),
                                status_code=500)
        body, media = render(result, response_format, task, job.temperature)
        if isinstance(body, dict):
            return JSONResponse(body)
        return PlainTextResponse(body, media_type=media)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await audio_request(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await audio_request(request, "translate")

    slots = Slots(options.max_streams)

    def job_for(query) -> Job:
        return _stream_job(query, models, options)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        await native(ws, models, options, batcher, slots, job_for)

    @app.websocket("/v1/realtime")
    async def realtime_transcription(ws: WebSocket):
        await realtime(ws, models, options, batcher, slots, job_for)

    return app


def _guard(app: FastAPI, options: ServeOptions) -> None:
    """Errors in OpenAI's shape, and the API key on every /v1 route."""
    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError):
        return JSONResponse(error_body(exc.message, exc.param, exc.code), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException):
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if options.api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {options.api_key}".encode()):
                return JSONResponse(error_body("Incorrect API key provided: send it as 'Authorization: Bearer KEY'",
                                               code="invalid_api_key"), status_code=401)
        return await call_next(request)


async def _parse(request: Request, task: str, models: ModelSet, options: ServeOptions):
    """(job, audio, file name, response format) of a request, or a RequestError naming the field."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > options.max_upload_bytes + FORM_SLACK:
        raise _too_large(options)
    try:
        form = await request.form(max_files=1, max_fields=32)
    except Exception as exc:  # noqa: BLE001 - starlette raises several kinds for a bad body
        raise RequestError(400, f"the body is not a multipart form with a file ({exc})") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise RequestError(400, "the form has no 'file' field with an audio file", "file")
    data = await upload.read(options.max_upload_bytes + 1)
    if len(data) > options.max_upload_bytes:
        raise _too_large(options)
    name = _field(form, "model")
    if name is None:
        raise RequestError(400, f"the form has no 'model' field; this server has: {', '.join(models.names)}", "model")
    served = models.resolve(name)
    if served is None:
        raise RequestError(404, f"The model '{name}' does not exist; this server has: {', '.join(models.names)}",
                           "model", "model_not_found")
    response_format = _field(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise RequestError(400, f"response_format {response_format!r}: use one of {', '.join(RESPONSE_FORMATS)}",
                           "response_format")
    words = _word_granularity(form, response_format)
    job = Job(model=served, task=task, language=_language(form, task, models), temperature=_temperature(form),
              timestamps=response_format in TIMED_FORMATS or words, words=words, prompt=_field(form, "prompt"),
              glossary=_glossary(form, served, models))
    if _field(form, "stream") in ("true", "True", "1"):
        raise RequestError(400, "stream: streaming is not supported; leave it out", "stream")
    filename = upload.filename or "upload"
    try:
        audio = await asyncio.to_thread(load_audio_bytes, data, filename)
    except AudioError as exc:
        raise RequestError(400, f"file: {exc}", "file", "invalid_audio") from None
    if len(audio) > options.max_audio_seconds * SAMPLE_RATE:
        raise RequestError(413, f"file: {len(audio) / SAMPLE_RATE:.0f} s of audio is over this server's "
                           f"limit of {options.max_audio_seconds:.0f} s", "file", "audio_too_long")
    return job, audio, filename, response_format


def _stream_job(query, models: ModelSet, options: ServeOptions) -> Job:
    """How a live stream is decoded, from its query (or session) fields; a bad one: Closed naming it."""
    name = _field(query, "model") or options.base_name
    served = models.resolve(name)
    if served is None:
        raise Closed(POLICY, f"model {name!r}: this server has {', '.join(models.names)}")
    try:
        return Job(model=served, language=_language(query, "transcribe", models), timestamps=True,
                   prompt=_field(query, "prompt"), glossary=_glossary(query, served, models), live=True)
    except RequestError as exc:
        raise Closed(POLICY, exc.message) from None


def _field(form, key: str) -> str | None:
    value = form.get(key)
    if value is None or isinstance(value, UploadFile):
        return None
    return str(value).strip() or None


def _language(form, task: str, models: ModelSet) -> str | None:
    given = _field(form, "language")
    try:
        code = language_code(given)
    except OptionsError as exc:
        raise RequestError(400, f"language: {exc}", "language") from None
    if not models.multilingual:
        if task == "translate":
            raise RequestError(400, "this server's base model is English-only and cannot translate", "model")
        if code not in (None, "en"):
            raise RequestError(400, f"language {given!r}: this server's base model is English-only", "language")
    return code


def _glossary(form, served: str, models: ModelSet):
    """The request's glossary field (terms one per line, or separated by commas), else its model's default."""
    given = _field(form, "glossary")
    if given is None:
        return models.default_glossary(served)
    terms = given.splitlines() if "\n" in given else given.split(",")
    try:
        return models.checked(Glossary.from_terms(terms, "glossary"))
    except GlossaryError as exc:
        raise RequestError(400, str(exc), "glossary") from None


def _temperature(form) -> float:
    given = _field(form, "temperature")
    try:
        value = float(given) if given is not None else 0.0
    except ValueError:
        raise RequestError(400, f"temperature {given!r}: a number from 0 to 1", "temperature") from None
    if not 0.0 <= value <= 1.0:
        raise RequestError(400, f"temperature {value}: use 0 to 1", "temperature")
    return value


def _word_granularity(form, response_format: str) -> bool:
    """Whether timestamp_granularities[] asks for words (segments come with verbose_json anyway)."""
    given = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    for value in given:
        if value not in ("segment", "word"):
            raise RequestError(400, f"timestamp_granularities[] {value!r}: use segment or word",
                               "timestamp_granularities[]")
    if given and response_format != "verbose_json":
        raise RequestError(400, "timestamp_granularities[] needs response_format verbose_json",
                           "timestamp_granularities[]")
    return "word" in given


def _too_large(options: ServeOptions) -> RequestError:
    return RequestError(413, f"file: the upload is over this server's limit of {options.max_upload_mb:g} MB",
                        "file", "file_too_large")
