"""The turn graph's nodes, one per step, each a verb returning only the keys it owns.

Nodes get long-lived services (models, stores) from the closure built by :func:`make_nodes`, and
per-run context (user, session) from LangGraph's runtime. Generation streams its text through
LangGraph's custom stream (``{"type": "text", "text": ...}`` events) so every front end — CLI, web
UI, HTTP API — renders tokens as they come.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_stream_writer
from langgraph.types import Overwrite

from empathic_agent.errors import LLMError
from empathic_agent.generate.llm import GenerationOptions
from empathic_agent.generate.prompt import build_prompt
from empathic_agent.graph.state import StepError, TurnState
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

    async def perceive(state: TurnState) -> dict[str, Any]:
        """Clean and validate the person's input; append it to the conversation."""
        t0 = time.perf_counter()
        text = clean_text(state.get("input_text"), max_chars=settings.max_input_chars)
        turn_id = state.get("turn_id")
        return {
            "user_text": text,
            "messages": [HumanMessage(content=text, id=f"{turn_id}-user" if turn_id else None)],
            # Per-turn fields start empty for every turn.
            "timings": Overwrite({"perceive": time.perf_counter() - t0}),
            "degraded": Overwrite([]),
        }

    async def generate(state: TurnState) -> dict[str, Any]:
        """Ask the LLM for the reply, streaming it; degrade to a fallback reply if it fails."""
        t0 = time.perf_counter()
        write = get_stream_writer()
        prompt = build_prompt(settings.system_prompt, state.get("messages", []),
                              max_messages=settings.history_messages)
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

    return {"perceive": perceive, "generate": generate}
