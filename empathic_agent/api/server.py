"""The HTTP API for apps that embed the agent (FastAPI; ``empathic serve``).

Every route but the health checks needs an API key (``Authorization: Bearer <key>`` or
``X-API-Key``); each key belongs to one app, and each app's users live in their own namespace
(``<app>@<user>`` inside the agent), so no app can reach another app's people.  Request bodies are
size-limited, each app is rate-limited (token bucket), CORS is off unless configured, and the
access log carries neither message contents nor user ids (method, route, status, time, app).

Routes (OpenAPI at ``/openapi.json``; a Swagger page at ``/docs`` only with ``api_docs``, as it
loads from a CDN):
``POST /v1/turns`` (JSON; audio/image as base64), ``POST /v1/turns/stream`` (SSE: ``text``,
``audio``, ``result`` events), ``POST /v1/turns/upload`` (multipart with audio/image files),
``GET /v1/users/{user}/sessions``, ``GET /v1/users/{user}/sessions/{session}``,
``GET /v1/users/{user}/export``, ``DELETE /v1/users/{user}``, ``GET /v1/users/{user}/audit``,
``POST /v1/chat/completions`` (OpenAI-compatible facade), ``GET /healthz``, ``GET /readyz``, and the
talk-mode WebSocket ``/v1/converse`` (:mod:`empathic_agent.api.talk`; its key is checked there, as
the gate below sees only HTTP).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from empathic_agent.api.keys import MAX_USER_ID, KeyStore, scoped_user, unscoped_user
from empathic_agent.errors import EmpathicError, InputError
from empathic_agent.ids import validate_id
from empathic_agent.settings import Settings

__all__ = ["create_api", "ApiLimits", "RateLimiter"]

log = logging.getLogger("empathic_agent.api")
access_log = logging.getLogger("empathic_agent.api.access")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,94}$"


@dataclass(frozen=True)
class ApiLimits:
    max_body_bytes: int = 25 * 1024 * 1024
    rate_per_minute: float = 120.0
    burst: int = 30


class RateLimiter:
    """A token bucket per app: ``burst`` requests at once, refilled at ``rate_per_minute``."""

    def __init__(self, rate_per_minute: float, burst: int) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 if allowed, else seconds until a request would be."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0


# -- request / response models ---------------------------------------------------------------------

class TurnRequest(BaseModel):
    user_id: str = Field(pattern=ID_PATTERN, description="your app's id of the person")
    session_id: str = Field(pattern=ID_PATTERN, description="the conversation")
    text: str | None = Field(default=None, max_length=20000, description="what the person typed")
    audio_base64: str | None = Field(default=None, description="their voice: wav/flac/ogg/webm/mp3 bytes, base64")
    image_base64: str | None = Field(default=None, description="a photo/webcam frame (JPEG/PNG/WebP), base64")
    speak: bool = Field(default=False, description="speak the reply (audio in the result)")


class ChatCompletionMessage(BaseModel):
    role: str = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model: str = Field(default="empathic-agent", max_length=200)
    messages: list[ChatCompletionMessage] = Field(min_length=1, max_length=500)
    stream: bool = False
    user: str | None = Field(default=None, pattern=ID_PATTERN)
    temperature: float | None = None
    max_tokens: int | None = None


class ErrorBody(BaseModel):
    error: dict[str, str]


def _b64(data: str | None, what: str) -> bytes | None:
    if data is None:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64") from None


def result_json(result: Any, app_id: str, *, include_audio: bool) -> dict[str, Any]:
    """A turn's result for the API (the app's own user id; audio as base64 WAV when spoken)."""
    fused = result.fused_state
    out = {
        "user_id": unscoped_user(app_id, result.user_id), "session_id": result.session_id, "turn_id": result.turn_id,
        "user_text": result.user_text, "reply": result.reply, "crisis": result.crisis,
        "risk_level": result.risk_level, "route": result.route, "safety": result.safety,
        "presentations": list(result.presentations), "guard": result.guard,
        "emotion": None if fused is None else {
            "vad": dict(zip(("valence", "arousal", "dominance"), (round(x, 4) for x in fused.reading.mean))),
            "top_category": fused.reading.top_category, "confidence": round(fused.reading.confidence, 4),
            "categories": {k: round(v, 4) for k, v in fused.reading.category_dict().items()},
            "mixed_signals": bool(fused.mixed_signals.flag), "description": result.perception},
        "readings": result.readings, "register": result.register, "agent_mood": list(result.agent_mood),
        "memories": [{k: m.get(k) for k in ("id", "kind", "text", "rank", "scores")} for m in result.memories],
        "heard": result.heard, "seen": result.seen, "timings": result.timings, "generation": result.generation,
        "degraded": [public_step_error(e) for e in result.degraded],
    }
    if include_audio and result.audio is not None:
        out["audio_wav_base64"] = base64.b64encode(result.audio.to_wav_bytes()).decode()
    return out


_ADDRESS = re.compile(r"\b(?:https?|postgres(?:ql)?)://\S+|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|(?<![\w.])/(?:[\w.-]+/)+[\w.-]*")


def public_step_error(error: Any) -> dict[str, Any]:
    """A degraded step for client apps: the step and error kind, and the message without server
    addresses or file paths (those are for the operator's log, not for apps)."""
    out = dict(error)
    if isinstance(out.get("message"), str):
        out["message"] = _ADDRESS.sub("<internal>", out["message"])
    return out


def holds_data(export: dict[str, Any]) -> bool:
    """Whether an export of a person found anything held about them."""
    memories = export.get("memories")
    return bool(export.get("conversations") or export.get("voice_baseline")
                or (isinstance(memories, dict) and memories.get("count")))


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"



# -- the gate: authenticate, rate-limit and bound the body before any route reads it --------------

#: Error types of the documented ``{"error": {"type", "message"}}`` body, by status.
_ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "too_large", 422: "invalid_request", 429: "rate_limited",
                500: "internal", 503: "unavailable"}


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None,
                   type_: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_ or _ERROR_TYPES.get(status, "error"), "message": message}},
                        status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


class _Gate:
    """Pure ASGI middleware in front of every route.

    * ``/v1`` routes are authenticated and rate-limited from the headers alone, before a byte of
      the body is read: a request without a valid key costs the server nothing.
    * The body limit holds while the body streams in, whatever ``Content-Length`` claims (chunked
      uploads have none): the body is read into memory up to the limit and the request is refused
      with 413 as soon as it passes it, so a request never costs more than ``max_body_bytes``.
    * Every request gets one access-log line without contents or ids: method, the route
      *template* (``/v1/users/{user_id}/export``; ``-`` for unknown paths), status, time, app.
    * An unexpected error becomes a generic 500 (logged here with its traceback).
    """

    def __init__(self, app: Any, *, state: "_State", limiter: RateLimiter, limits: ApiLimits) -> None:
        self.app, self.state, self.limiter, self.limits = app, state, limiter, limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 0}

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is None:
                body = await self._read_body(receive)
                if body is None:  # the client went away
                    return
                replayed = False

                async def replay() -> dict[str, Any]:
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()  # later calls wait for the disconnect, as ASGI says

                try:
                    await self.app(scope, replay, send_logged)
                except Exception:  # noqa: BLE001 — logged; the client gets a generic 500
                    log.exception("unhandled error on %s %s", scope["method"], _route_of(scope))
                    if status["code"] == 0:
                        await error_response(500, "internal error")(scope, receive, send_logged)
            else:
                await refusal(scope, receive, send_logged)
        except _BodyTooLarge:
            await error_response(413, f"request body over {self.limits.max_body_bytes} bytes")(
                scope, receive, send_logged)
        finally:
            access_log.info(json.dumps({"at": round(time.time(), 3), "method": scope["method"],
                                        "route": _route_of(scope), "status": status["code"],
                                        "ms": round(1000 * (time.perf_counter() - t0), 1),
                                        "app": scope.get("empathic_app")}))

    def _refuse(self, scope: dict[str, Any]) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limits.max_body_bytes):
            return error_response(413, f"request body over {self.limits.max_body_bytes} bytes")
        if not scope["path"].startswith("/v1/") or scope["method"] == "OPTIONS":
            return None
        if not self.state.ready or self.state.keys is None:
            return error_response(503, "starting up", headers={"Retry-After": "5"})
        auth = headers.get("authorization", "")
        key = headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)
        app_id = self.state.keys.verify(key)
        if app_id is None:
            return error_response(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
        scope["empathic_app"] = app_id
        wait = self.limiter.take(app_id)
        if wait > 0:
            return error_response(429, "rate limit exceeded", headers={"Retry-After": str(math.ceil(wait))})
        return None

    async def _read_body(self, receive: Any) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _route_of(scope: dict[str, Any]) -> str:
    """The matched route's template (never the raw path: it holds user ids); ``-`` if none."""
    route = scope.get("route")
    return getattr(route, "path", None) or "-"


@dataclass
class _State:
    agent: Any = None
    keys: KeyStore | None = None
    ready: bool = False
    started: float = field(default_factory=time.time)


def create_api(settings: Settings, *, agent: Any = None, keys: KeyStore | None = None,
               limits: ApiLimits | None = None, warm_up: bool = True, cors_origins: list[str] | None = None,
               talk_models: tuple[Any, Any] | None = None) -> FastAPI:
    """The API app.  ``agent`` (an :class:`~empathic_agent.agent.Agent`) and ``keys`` default to
    the ones built from ``settings`` at startup (tests pass their own, and may replace talk mode's
    listening models with ``talk_models``: (voice activity, end of turn))."""
    limits = limits or ApiLimits(max_body_bytes=int(settings.api_max_body_mb * 1024 * 1024),
                                 rate_per_minute=settings.api_rate_per_minute, burst=settings.api_rate_burst)
    state = _State(agent=agent, keys=keys)
    limiter = RateLimiter(limits.rate_per_minute, limits.burst)
    owns_agent = agent is None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from empathic_agent.agent import Agent

        if state.keys is None:
            state.keys = KeyStore(settings.api_keys_path)
        if state.agent is None:
            state.agent = await Agent.open(settings)
            if warm_up:
                try:
                    await state.agent.warm_up()
                except BaseException:
                    # Close what was opened (the checkpointer's thread would keep a failed
                    # server process alive), then fail the startup.
                    await state.agent.aclose()
                    raise
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            if owns_agent:
                await state.agent.aclose()

    app = FastAPI(title="Empathic Agent API", version="1", lifespan=lifespan,
                  docs_url="/docs" if settings.api_docs else None, redoc_url=None,
                  description="Turns, streaming, data rights and an OpenAI-compatible facade for apps that embed "
                              "the empathic agent. Every /v1 route needs an API key.")
    origins = cors_origins if cors_origins is not None else [o for o in settings.api_cors_origins.split(",") if o]
    app.add_middleware(_Gate, state=state, limiter=limiter, limits=limits)
    if origins:  # added last, so outermost: preflights and error answers carry CORS headers
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Session-Id", "X-User-Id"])

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}}, status_code=422)

    @app.exception_handler(EmpathicError)
    async def empathic_error(_request: Request, exc: EmpathicError) -> JSONResponse:
        return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        def message(e: dict[str, Any]) -> str:
            if e.get("type") == "string_pattern_mismatch":  # only ids have patterns: state the rule
                return (f"use 1-{MAX_USER_ID} letters, digits, '_', '.', '@' or '-', "
                        "starting with a letter or digit")
            return str(e.get("msg"))

        details = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {message(e)}" for e in exc.errors()[:5])
        return JSONResponse({"error": {"type": "invalid_request", "message": details}}, status_code=422)

    # B008 is a false alarm on FastAPI's parameter markers (Security, File): declarative, made once by design.
    async def app_of(request: Request, _bearer: Any = Security(HTTPBearer(auto_error=False)),  # noqa: B008
                     _key: Any = Security(APIKeyHeader(name="X-API-Key", auto_error=False))) -> str:  # noqa: B008
        """The app that :class:`_Gate` authenticated before the body was read (the security
        parameters only document the two ways of sending the key in the OpenAPI schema)."""
        app_id = request.scope.get("empathic_app")
        if app_id is None:  # only reachable if the gate was bypassed: refuse rather than trust
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return app_id

    responses = {401: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody},
                 429: {"model": ErrorBody}}

    async def run_turn(app_id: str, user_id: str, session_id: str, text: str | None, audio: Any, image: Any,
                       speak: bool) -> Any:
        state.keys.audit(app_id, user_id, "turn", f"session={session_id}")
        return await state.agent.respond(scoped_user(app_id, user_id), session_id, text=text, audio=audio,
                                         image=image, speak=speak)

    # OpenAPI links: what a turn's result lets a client do next (also how schemathesis chains
    # calls into stateful sequences: turn -> history -> export -> delete -> ...).
    _user = {"user_id": "$response.body#/user_id"}
    _conversation = {**_user, "session_id": "$response.body#/session_id"}
    turn_links = {"links": {
        "ListSessions": {"operationId": "sessions", "parameters": _user},
        "ReadConversation": {"operationId": "history", "parameters": _conversation},
        "Export": {"operationId": "export", "parameters": _user},
        "Audit": {"operationId": "audit", "parameters": _user},
        "Erase": {"operationId": "delete_user", "parameters": _user},
    }}

    # -- turns ---------------------------------------------------------------------------------
    from empathic_agent.api.talk import add_talk_route

    add_talk_route(app, state, limiter, talk_models=talk_models)

    @app.post("/v1/turns", responses={**responses, 200: turn_links}, tags=["turns"])
    async def turn(body: TurnRequest, app_id: str = Depends(app_of)) -> dict[str, Any]:
        """One turn: the reply, the perceived state, the plan, memories used, safety, timings."""
        audio, image = _b64(body.audio_base64, "audio_base64"), _b64(body.image_base64, "image_base64")
        result = await run_turn(app_id, body.user_id, body.session_id, body.text, audio, image, body.speak)
        return result_json(result, app_id, include_audio=body.speak)

    # File(...) defaults: FastAPI parameter markers (B008 is a false alarm on them, as on app_of's).
    @app.post("/v1/turns/upload", responses=responses, tags=["turns"])
    async def turn_upload(user_id: str = Form(pattern=ID_PATTERN), session_id: str = Form(pattern=ID_PATTERN),
                          text: str | None = Form(default=None, max_length=20000), speak: bool = Form(default=False),
                          audio: UploadFile | None = File(default=None), image: UploadFile | None = File(default=None),  # noqa: B008
                          app_id: str = Depends(app_of)) -> dict[str, Any]:
        """The same turn with multipart files (audio, image)."""
        audio_bytes = await audio.read() if audio is not None else None
        image_bytes = await image.read() if image is not None else None
        result = await run_turn(app_id, user_id, session_id, text, audio_bytes or None, image_bytes or None, speak)
        return result_json(result, app_id, include_audio=speak)

    @app.post("/v1/turns/stream", responses=responses, tags=["turns"],
              response_class=StreamingResponse)
    async def turn_stream(body: TurnRequest, app_id: str = Depends(app_of)) -> StreamingResponse:
        """Server-sent events: ``text`` (reply chunks), ``audio`` (spoken sentences, base64 WAV),
        then ``result`` (as ``POST /v1/turns``), or ``error``."""
        from empathic_agent.agent import AudioChunk, TextChunk, TurnResult

        audio, image = _b64(body.audio_base64, "audio_base64"), _b64(body.image_base64, "image_base64")
        scoped = scoped_user(app_id, body.user_id)
        validate_id(body.session_id, "session id", max_len=MAX_USER_ID)
        state.agent.check_input(body.text, audio)  # a bad message is a 422, not a stream
        state.keys.audit(app_id, body.user_id, "turn", f"session={body.session_id}")

        async def events() -> AsyncIterator[str]:
            try:
                async for ev in state.agent.stream(scoped, body.session_id, text=body.text, audio=audio, image=image,
                                                   speak=body.speak):
                    if isinstance(ev, TextChunk):
                        yield _sse("text", {"text": ev.text})
                    elif isinstance(ev, AudioChunk):
                        yield _sse("audio", {"index": ev.index, "text": ev.text,
                                             "wav_base64": base64.b64encode(ev.audio.to_wav_bytes()).decode()})
                    elif isinstance(ev, TurnResult):
                        yield _sse("result", result_json(ev, app_id, include_audio=False))
            except EmpathicError as exc:
                yield _sse("error", {"type": type(exc).__name__, "message": str(exc)})

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # -- conversations and data rights ---------------------------------------------------------
    def user_param(user_id: str) -> str:
        scoped_user("x", user_id)  # the same id rules as every other route
        return user_id

    @app.get("/v1/users/{user_id}/sessions", responses=responses, tags=["data"], operation_id="sessions")
    async def sessions(user_id: str, app_id: str = Depends(app_of)) -> dict[str, Any]:
        user_param(user_id)
        found = await state.agent.sessions(scoped_user(app_id, user_id))
        if found:
            state.keys.audit(app_id, user_id, "list_sessions")
        return {"user_id": user_id, "sessions": found}

    @app.get("/v1/users/{user_id}/sessions/{session_id}", responses=responses, tags=["data"], operation_id="history")
    async def history(user_id: str, session_id: str, app_id: str = Depends(app_of)) -> dict[str, Any]:
        user_param(user_id)
        validate_id(session_id, "session id", max_len=MAX_USER_ID)
        messages = await state.agent.history(scoped_user(app_id, user_id), session_id)
        if messages:
            state.keys.audit(app_id, user_id, "read_conversation", f"session={session_id}")
        return {"user_id": user_id, "session_id": session_id, "messages": [m.to_dict() for m in messages]}

    @app.get("/v1/users/{user_id}/export", responses=responses, tags=["data"], operation_id="export")
    async def export(user_id: str, app_id: str = Depends(app_of)) -> dict[str, Any]:
        """Everything held about the person: conversations, memories, voice baseline, audit log."""
        user_param(user_id)
        data = await state.agent.export_user(scoped_user(app_id, user_id))
        data["user_id"] = user_id
        if isinstance(data.get("memories"), dict):
            data["memories"]["user_id"] = user_id
        # An access is logged only when there was something to access: exporting a person who
        # was erased (or never existed) must not create a record about them again.
        if holds_data(data):
            state.keys.audit(app_id, user_id, "export")
        data["audit"] = state.keys.audit_entries(app_id, user_id)
        return data

    @app.delete("/v1/users/{user_id}", responses=responses, tags=["data"], operation_id="delete_user")
    async def delete_user(user_id: str, app_id: str = Depends(app_of)) -> dict[str, Any]:
        """Erase the person: memories, conversation checkpoints, voice baseline, audit entries."""
        user_param(user_id)
        counts = await state.agent.delete_user(scoped_user(app_id, user_id))
        counts["user_id"] = user_id
        counts["audit_entries"] = state.keys.forget_user(app_id, user_id)
        return counts

    @app.get("/v1/users/{user_id}/audit", responses=responses, tags=["data"], operation_id="audit")
    async def audit(user_id: str, app_id: str = Depends(app_of)) -> dict[str, Any]:
        user_param(user_id)
        return {"user_id": user_id, "entries": state.keys.audit_entries(app_id, user_id)}

    # -- OpenAI-compatible facade --------------------------------------------------------------
    @app.post("/v1/chat/completions", responses=responses, tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, app_id: str = Depends(app_of),
                               x_user_id: str | None = Header(default=None, pattern=ID_PATTERN),
                               x_session_id: str | None = Header(default=None, pattern=ID_PATTERN)) -> Any:
        """Existing chat clients talk to the agent: the last user message is the turn (the agent
        keeps the conversation itself, per user and ``X-Session-Id``, default ``chat``). The user
        comes from ``X-User-Id`` or the ``user`` field."""
        user_id = x_user_id or body.user
        if not user_id:
            raise InputError("name the person: the X-User-Id header or the 'user' field")
        last = next((m for m in reversed(body.messages) if m.role == "user"), None)
        if last is None:
            raise InputError("no user message in 'messages'")
        content = last.content
        text = content if isinstance(content, str) else " ".join(
            str(p.get("text", "")) for p in (content or []) if isinstance(p, dict) and p.get("type") == "text")
        session_id = x_session_id or "chat"
        scoped = scoped_user(app_id, user_id)
        created, cid = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
        if not body.stream:
            result = await run_turn(app_id, user_id, session_id, text, None, None, False)
            return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": result.reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    "empathic": {"crisis": result.crisis, "risk_level": result.risk_level,
                                 "route": result.route, "safety": result.safety,
                                 "presentations": list(result.presentations), "guard": result.guard,
                                 "emotion": result_json(result, app_id, include_audio=False)["emotion"],
                                 "register": result.register}}
        from empathic_agent.agent import TextChunk, TurnResult

        state.agent.check_input(text)
        state.keys.audit(app_id, user_id, "turn", f"session={session_id}")

        async def chunks() -> AsyncIterator[str]:
            def chunk(delta: dict[str, Any], finish: str | None = None, extra: dict | None = None) -> str:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
                return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

            yield chunk({"role": "assistant"})
            try:
                async for ev in state.agent.stream(scoped, session_id, text=text):
                    if isinstance(ev, TextChunk):
                        yield chunk({"content": ev.text})
                    elif isinstance(ev, TurnResult):
                        yield chunk({}, "stop", {"empathic": {"crisis": ev.crisis, "risk_level": ev.risk_level,
                                                            "route": ev.route, "safety": ev.safety,
                                                            "presentations": list(ev.presentations),
                                                            "guard": ev.guard}})
            except EmpathicError as exc:
                yield f"data: {json.dumps({'error': {'type': type(exc).__name__, 'message': str(exc)}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.get("/v1/models", responses=responses, tags=["openai"])
    async def models(app_id: str = Depends(app_of)) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "empathic-agent", "object": "model", "owned_by": "empathic-agent"}]}

    # -- health ----------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Readiness: the agent is built (and warmed up), and its stores and LLM backend answer
        (:meth:`Agent.health`); a failing part is named (never its address) and logged."""
        if not state.ready:
            return JSONResponse({"ready": False}, status_code=503)
        problems = await state.agent.health()
        if problems:
            return JSONResponse({"ready": False, "failing": problems}, status_code=503)
        return JSONResponse({"ready": True})

    return app
