"""The talk-mode WebSocket protocol, served the same way by the HTTP API (``/v1/converse``, with
API keys) and by the web UI (``/talk``, with a one-time ticket from the page).  Only the opening
— who is talking — differs; everything after the ``start`` message is this module.

After ``{"type": "ready"}`` the client streams **binary** messages (mono PCM16 little-endian at
the ``sample_rate`` it announced) and may send ``{"type": "end"}``; the server sends JSON events
(``speech_started``, ``speech_ended``, ``transcript`` — ``final`` false for the words so far,
heard in a pause —, ``text``, ``audio`` — a JSON header
``{"type": "audio", "index", "text", "sample_rate", "duration_s"}`` followed by one binary message
with that sentence as mono PCM16 —, ``interrupted``, ``turn_skipped``, ``turn_failed``,
``result``), then closes when the stream has ended and the last turn is answered.  A client that
goes away mid-reply cancels the turn; the conversation stays as it was.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Callable

from empathic_agent.errors import EmpathicError

__all__ = ["MAX_MESSAGE_BYTES", "serve_events", "refuse"]

log = logging.getLogger(__name__)

#: Largest binary message accepted (about 33 s of 16 kHz PCM16): a client sends chunks, not files.
MAX_MESSAGE_BYTES = 1024 * 1024


async def refuse(ws: Any, code: int, type_: str, message: str) -> None:
    """Say why in one JSON message, then close with ``code`` (4400 bad start, 4401 no or bad
    key, 4429 rate-limited, 4503 not ready)."""
    await ws.send_text(json.dumps({"type": "error", "error": {"type": type_, "message": message}}))
    await ws.close(code=code)


async def frames_of(ws: Any) -> AsyncIterator[bytes]:
    """The client's audio messages until ``{"type": "end"}`` or a disconnect."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            if len(data) > MAX_MESSAGE_BYTES:
                raise EmpathicError(f"an audio message is at most {MAX_MESSAGE_BYTES} bytes; "
                                    "send the microphone in chunks")
            yield data
            continue
        try:
            control = json.loads(message.get("text") or "{}")
        except json.JSONDecodeError:
            control = {}
        if isinstance(control, dict) and control.get("type") == "end":
            return


async def serve_events(ws: Any, agent: Any, user_id: str, session_id: str, *, sample_rate: int, speak: bool,
                       result_json: Callable[[Any], dict[str, Any]], talk_models: tuple[Any, Any] | None = None,
                       on_result: Callable[[Any], Any] | None = None) -> None:
    """Run ``agent.converse`` over the socket's audio and send its events (see the module
    docstring).  ``result_json`` turns a ``TurnResult`` into the ``result`` event's fields;
    ``on_result`` (optional) sees each result too (the web UI refreshes its panels from it)."""
    from fastapi import WebSocketDisconnect

    from empathic_agent.agent import AudioChunk, TextChunk, TurnResult

    vad, turn_end = talk_models or (None, None)
    events = agent.converse(user_id, session_id, frames_of(ws), sample_rate=sample_rate, speak=speak, vad=vad,
                            turn_end=turn_end)
    try:
        try:
            await ws.send_text(json.dumps({"type": "ready"}))
            async for event in events:
                if isinstance(event, TextChunk):
                    await ws.send_text(json.dumps({"type": "text", "text": event.text}))
                elif isinstance(event, AudioChunk):
                    audio = event.audio
                    await ws.send_text(json.dumps({"type": "audio", "index": event.index, "text": audio.text,
                                                   "sample_rate": audio.sample_rate,
                                                   "duration_s": round(audio.duration_s, 3)}))
                    await ws.send_bytes(audio.to_int16().astype("<i2").tobytes())
                elif isinstance(event, TurnResult):
                    if on_result is not None:
                        on_result(event)
                    await ws.send_text(json.dumps({"type": "result", **result_json(event)}, default=str))
                else:
                    await ws.send_text(json.dumps(event.to_dict(), default=str))
        except EmpathicError as exc:  # a start the agent refuses (no voice, a rate it cannot read)
            await refuse(ws, 4400, type(exc).__name__, str(exc))
            return
        await ws.close()
    except (WebSocketDisconnect, RuntimeError):
        # The client went away (mid-reply too): closing the events cancels the turn in flight.
        log.info("talk-mode client disconnected")
    finally:
        await events.aclose()
