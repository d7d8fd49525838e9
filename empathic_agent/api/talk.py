"""Talk mode over a WebSocket: ``/v1/converse`` (the protocol of ``Agent.converse``, for apps).

Protocol (all JSON text messages but the audio, which is binary):

1. The client connects (an API key in ``Authorization: Bearer`` / ``X-API-Key``, or — browsers
   cannot set headers on a WebSocket — in the first message) and sends
   ``{"type": "start", "user_id": "...", "session_id": "...", "sample_rate": 16000,
   "speak": true, "api_key": "..."}``.  The server answers ``{"type": "ready"}``, or an
   ``{"type": "error", "error": {"type", "message"}}`` and closes (code 4401 no or bad key,
   4429 rate-limited, 4400 bad start, 4503 not ready).
2. The client streams the microphone as **binary** messages: mono PCM16 little-endian at
   ``sample_rate`` (16 kHz, or a multiple such as 48 kHz), any chunk size up to 1 MiB.
3. The server sends events as they happen: ``speech_started``, ``speech_ended``, ``transcript``
   (``{"text", "final"}``: ``final`` false for the words so far, heard in a pause; the final
   one follows the end of the turn), ``text`` (reply chunks), ``audio`` (a JSON header ``{"type": "audio", "index", "text",
   "sample_rate", "duration_s"}`` followed by one binary message: that sentence as mono PCM16),
   ``interrupted`` (stop playback now), ``turn_skipped``, ``turn_failed``, ``result`` (the turn's
   result, as ``POST /v1/turns`` returns it, without audio).
4. ``{"type": "end"}`` (or closing the socket) ends the stream: an utterance in progress is
   answered, then the server closes.  A client that goes away mid-reply cancels the turn; the
   conversation stays as it was.

Steps 2-4 are :mod:`empathic_agent.converse.websocket`, shared with the web UI's talk mode.

Users are scoped to the key's app exactly as in the REST routes, and each connection is audited.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from empathic_agent.api.keys import MAX_USER_ID, scoped_user
from empathic_agent.converse.session import check_sample_rate
from empathic_agent.converse.websocket import refuse, serve_events
from empathic_agent.errors import EmpathicError

__all__ = ["add_talk_route"]

log = logging.getLogger("empathic_agent.api")


def add_talk_route(app: Any, state: Any, limiter: Any, *, talk_models: tuple[Any, Any] | None = None) -> None:
    """Add ``/v1/converse`` to ``app`` (``state``: the API's agent and key store; ``talk_models``:
    (voice activity, end of turn) replacing the packaged ones, for tests)."""
    from empathic_agent.api.server import result_json

    @app.websocket("/v1/converse")
    async def converse(ws: WebSocket) -> None:
        await ws.accept()
        if not state.ready or state.keys is None:
            await refuse(ws, 4503, "unavailable", "starting up")
            return
        try:
            start = json.loads(await asyncio.wait_for(ws.receive_text(), timeout=30))
        except (asyncio.TimeoutError, json.JSONDecodeError, KeyError, TypeError):
            await refuse(ws, 4400, "bad_request", "the first message must be a JSON start message")
            return
        except WebSocketDisconnect:
            return
        auth = ws.headers.get("authorization", "")
        key = ws.headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)
        key = key or (start.get("api_key") if isinstance(start, dict) else None)
        app_id = state.keys.verify(key)
        if app_id is None:
            await refuse(ws, 4401, "unauthorized", "missing or invalid API key")
            return
        if limiter.take(app_id) > 0:
            await refuse(ws, 4429, "rate_limited", "rate limit exceeded")
            return
        if not isinstance(start, dict) or start.get("type") != "start":
            await refuse(ws, 4400, "bad_request", 'the first message must be {"type": "start", ...}')
            return
        try:
            from empathic_agent.ids import validate_id

            user_id, session_id = str(start.get("user_id", "")), str(start.get("session_id", ""))
            validate_id(user_id, "user id", max_len=MAX_USER_ID)
            validate_id(session_id, "session id", max_len=MAX_USER_ID)
            rate = check_sample_rate(start.get("sample_rate", 16000))
            speak = bool(start.get("speak", True))
        except (EmpathicError, ValueError, TypeError) as exc:
            await refuse(ws, 4400, "bad_request", str(exc))
            return
        if speak and getattr(state.agent.services, "tts", None) is None:
            await refuse(ws, 4400, "bad_request", "this server speaks no replies (EMPATHIC_SPEAK_REPLIES is off): "
                                                  'start with "speak": false for text replies')
            return
        state.keys.audit(app_id, user_id, "converse", f"session={session_id}")
        await serve_events(ws, state.agent, scoped_user(app_id, user_id), session_id, sample_rate=rate, speak=speak,
                           result_json=lambda result: result_json(result, app_id, include_audio=False),
                           talk_models=talk_models)
