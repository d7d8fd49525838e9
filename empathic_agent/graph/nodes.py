"""The turn graph's nodes, one per step, each a verb returning only the keys it owns.

Nodes get long-lived services (models, stores) from the closure built by :func:`make_nodes`, and
per-run context (user, session) from LangGraph's runtime. Generation streams its text through
LangGraph's custom stream (``{"type": "text", "text": ...}`` events) so every front end — CLI, web
UI, HTTP API — renders tokens as they come.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from empathic_agent.errors import EmpathicError, EmptyInputError, LLMError
from empathic_agent.generate.llm import GenerationOptions
from empathic_agent.generate.prompt import build_prompt
from empathic_agent.graph.state import StepError, TurnContext, TurnState
from empathic_agent.perceive.text import clean_text

if TYPE_CHECKING:
    from empathic_agent.graph.builder import Services

__all__ = ["make_nodes", "FALLBACK_REPLY"]

#: What the person reads when the language model fails. It must not pretend to be a reply, must not
#: lose their message (it stays in the history), and must invite them to go on.
FALLBACK_REPLY = (
    "I'm sorry — I couldn't form a reply just now because my language model is not responding. "
    "Your message is saved; please try again in a moment."
)


def make_nodes(services: "Services") -> dict[str, Callable[..., Any]]:
    settings = services.settings

    async def perceive(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Clean and validate the person's input (transcribing their voice, if they spoke) and
        append it to the conversation."""
        t0 = time.perf_counter()
        audio = runtime.context.audio if runtime.context is not None else None
        heard: dict[str, Any] = {}
        speech_reading: dict[str, Any] = {}
        errors: list[StepError] = []
        typed = state.get("input_text") or ""
        if audio is not None and services.speech is not None:
            result = await asyncio.to_thread(services.speech.perceive, audio, runtime.context.user_id)
            heard = {"transcript": result.text, "language": getattr(result.transcript, "language", None),
                     "clip": result.clip_info, "timings": result.timings}
            if result.speech_reading is not None:
                speech_reading = result.speech_reading.to_dict()
            errors += [StepError(step="perceive", error="SpeechError", message=m) for m in result.errors]
            if not typed.strip():
                if not result.heard_speech:
                    raise EmptyInputError("no speech was recognised in the audio"
                                          + (f" ({'; '.join(result.errors)})" if result.errors else ""))
                typed = result.text
        elif audio is not None:
            errors.append(StepError(step="perceive", error="SpeechUnavailable",
                                    message="voice input is not enabled (settings.encoders lacks 'speech')"))
        text = clean_text(typed, max_chars=settings.max_input_chars)
        turn_id = state.get("turn_id")
        return {
            "user_text": text,
            "heard": heard,
            "speech_reading": speech_reading,
            "messages": [HumanMessage(content=text, id=f"{turn_id}-user" if turn_id else None)],
            # Per-turn fields start empty for every turn.
            "timings": Overwrite({"perceive": time.perf_counter() - t0}),
            "degraded": Overwrite(errors),
        }

    async def encode(state: TurnState) -> dict[str, Any]:
        """Read the person's emotion from each modality and fuse it with the previous turn's state."""
        from empathic_agent.latent import FusedState, Reading, fuse, temporal_prior

        t0 = time.perf_counter()
        now = time.time()
        readings = {}
        if state.get("speech_reading"):
            readings["speech"] = Reading.from_dict(state["speech_reading"])
        errors: list[StepError] = []
        if services.text_encoder is not None:
            try:
                # Blocking torch inference: off the event loop, so other users' turns keep streaming.
                readings["text"] = await asyncio.to_thread(services.text_encoder.encode, state["user_text"])
            except EmpathicError as exc:  # an encoder failing degrades the turn, never fails it
                errors.append(StepError(step="encode", error=type(exc).__name__, message=str(exc)))
        prior = None
        if state.get("emotion"):
            previous = FusedState.from_dict(state["emotion"])
            elapsed = max(0.0, now - float(state.get("emotion_at") or now))
            prior = temporal_prior(previous, turns=1.0, seconds=elapsed)
        out: dict[str, Any] = {"readings": {m: r.to_dict() for m, r in readings.items()}, "degraded": errors}
        if readings or prior is not None:
            fused = fuse(list(readings.values()), prior=prior)
            out.update(
                emotion=fused.to_dict(), emotion_at=now, perception=fused.describe(),
                emotion_trajectory=[_trajectory_entry(state.get("turn_id"), now, fused, readings)],
            )
        else:
            out["perception"] = ""
        out["timings"] = {"encode": time.perf_counter() - t0}
        return out

    async def recall(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Recall this person's memories that matter now, by meaning and by mood."""
        from empathic_agent.latent import FusedState

        t0 = time.perf_counter()
        fused = FusedState.from_dict(state["emotion"]) if state.get("emotion") else None
        try:
            # Isolation is the store's job: it only ever searches this user's own collection.
            result = await asyncio.to_thread(services.memory.recall, runtime.context.user_id,
                                             state["user_text"], fused)
        except EmpathicError as exc:
            return {"memories": [], "memory_prompt": "", "timings": {"recall": time.perf_counter() - t0},
                    "degraded": [StepError(step="recall", error=type(exc).__name__, message=str(exc))]}
        memories = [
            {"id": m.record.id, "kind": m.record.kind, "text": m.record.text, "rank": m.rank,
             "top_category": m.record.top_category, "created_at": m.record.created_at,
             "scores": m.scores.to_dict()}
            for m in result.memories
        ]
        return {"memories": memories,
                "memory_prompt": services.memory.format_memories_for_prompt(result.memories),
                "timings": {"recall": time.perf_counter() - t0}}

    async def remember(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Store the exchange as an episode tagged with the person's emotion (and stated facts)."""
        from empathic_agent.latent import FusedState

        t0 = time.perf_counter()
        if state.get("degraded") and any(e["step"] == "generate" for e in state["degraded"]):
            # No real reply: the person's words stay in the conversation, but an exchange that did
            # not happen is not remembered.
            return {"remembered": [], "timings": {"remember": time.perf_counter() - t0}}
        fused = FusedState.from_dict(state["emotion"]) if state.get("emotion") else None
        ctx = runtime.context
        try:
            result = await asyncio.to_thread(
                services.memory.remember_turn, ctx.user_id, ctx.session_id,
                state.get("turn_id") or "turn", state["user_text"], state.get("reply", ""), fused)
        except EmpathicError as exc:
            return {"remembered": [], "timings": {"remember": time.perf_counter() - t0},
                    "degraded": [StepError(step="remember", error=type(exc).__name__, message=str(exc))]}
        return {"remembered": [r.id for r in result.records], "timings": {"remember": time.perf_counter() - t0}}

    async def generate(state: TurnState) -> dict[str, Any]:
        """Ask the LLM for the reply, streaming it; degrade to a fallback reply if it fails."""
        t0 = time.perf_counter()
        write = get_stream_writer()
        prompt = build_prompt(settings.system_prompt, state.get("messages", []),
                              max_messages=settings.history_messages,
                              perception=state.get("perception", ""),
                              memories=state.get("memory_prompt", ""))
        chunks: list[str] = []
        errors: list[StepError] = []
        fallback = False
        first_chunk_s: float | None = None
        try:
            async for chunk in services.llm.stream(prompt, GenerationOptions.from_settings(settings)):
                if first_chunk_s is None:
                    first_chunk_s = time.perf_counter() - t0
                chunks.append(chunk)
                write({"type": "text", "text": chunk})
            reply = "".join(chunks).strip()
            if not reply:
                raise LLMError("the model returned an empty reply")
        except LLMError as exc:
            fallback = True
            errors.append(StepError(step="generate", error=type(exc).__name__, message=str(exc)))
            # Anything already streamed stays visible; the fallback explains why it stopped.
            reply = ("".join(chunks).strip() + "\n\n" if chunks else "") + FALLBACK_REPLY
            write({"type": "text", "text": ("\n\n" if chunks else "") + FALLBACK_REPLY})
        turn_id = state.get("turn_id")
        return {
            "reply": reply,
            "messages": [AIMessage(content=reply, id=f"{turn_id}-agent" if turn_id else None,
                                   additional_kwargs={"fallback": True} if fallback else {})],
            "generation": {
                "backend": services.llm.name, "model": services.llm.model_name,
                # Measured here, not read from llm.last_stats: turns of many users run concurrently.
                "time_to_first_chunk_s": first_chunk_s,
                "chunks": len(chunks),
                "seed": settings.seed,
            },
            "timings": {"generate": time.perf_counter() - t0},
            "degraded": errors,
        }

    nodes = {"perceive": perceive, "generate": generate}
    if services.text_encoder is not None or services.speech is not None:
        nodes["encode"] = encode
    if services.memory is not None:
        nodes["recall"] = recall
        nodes["remember"] = remember
    return nodes


def _trajectory_entry(turn_id: str | None, at: float, fused: Any, readings: dict[str, Any]) -> dict[str, Any]:
    def point(r: Any) -> dict[str, Any]:
        v, a, d = r.mean
        return {"v": round(v, 4), "a": round(a, 4), "d": round(d, 4), "top": r.top_category,
                "confidence": round(r.confidence, 4)}

    return {"turn_id": turn_id, "at": at, "fused": point(fused.reading),
            "modalities": {m: point(r) for m, r in readings.items()},
            "mixed_signals": bool(fused.mixed_signals.flag)}
