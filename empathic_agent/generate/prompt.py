"""Prompt assembly for the generate step.

The default embedded model is tiny (135M parameters): it needs a system prompt (without one it
degenerates into emoji loops) and a short context. So the prompt is the system prompt plus the last
few messages of the conversation; replies that were fallbacks for a failed generation are left out
so the model never imitates an error message.

Layout for prefix caching (see ``transformers_llm``): what is the same from one turn to the next
comes first — the system prompt (persona), then the history — and what changes every turn (how the
person seems, recalled memories, the planned register) comes last, as a second system message just
before the person's newest message.  The history window moves in steps of half its size rather
than one exchange at a time, so consecutive prompts usually share their whole beginning.
"""

from __future__ import annotations

from typing import Any, Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from empathic_agent.generate.llm import ChatMessage

__all__ = ["build_prompt", "is_fallback", "system_prompt", "window_start"]


def system_prompt(base: str, persona: Any = None) -> str:
    """The system prompt: the configured one (``settings.system_prompt``) plus the persona's
    identity, style and boundaries."""
    if persona is None:
        return base
    who = f"You are {persona.name}, {persona.description}." if persona.description else f"You are {persona.name}."
    style = f" Style: {persona.style}." if persona.style else ""
    never = f" Never: {'; '.join(persona.policy.boundaries)}." if persona.policy.boundaries else ""
    return f"{base} {who}{style}{never}"


def is_fallback(message: AnyMessage) -> bool:
    return bool(getattr(message, "additional_kwargs", {}).get("fallback"))


def build_prompt(system_prompt: str, history: Sequence[AnyMessage], *,
                 max_messages: int, perception: str = "", memories: str = "",
                 register: str = "", reply_hint: str = "") -> list[ChatMessage]:
    """System prompt + at most ``max_messages`` recent messages + this turn's context.

    ``perception`` is the fused emotional state's short description, phrased as an observation to
    take into account, so the small model neither repeats it verbatim nor treats it as the
    person's words. ``memories`` is the recalled memories' block (quoted and marked as data, never
    as instructions, by the memory package). ``register`` is the planner's instruction for this
    reply (strategy, tone, length).  The three go into a system message right before the person's
    newest message — the position a small model follows best, and the end of the prompt, where
    changing text costs no cached prefix.  ``reply_hint`` (the planned strategy as one
    instruction) is appended to the person's latest message in the prompt only — the stored
    conversation keeps their words as they were.
    """
    turns: list[ChatMessage] = []
    for m in history:
        if is_fallback(m):
            continue
        if isinstance(m, HumanMessage):
            role = "user"
        elif isinstance(m, AIMessage):
            role = "assistant"
        else:
            continue
        text = m.content if isinstance(m.content, str) else str(m.content)
        # Two person messages in a row (the reply between them failed): merge them so chat
        # templates that expect alternation still get it.
        if turns and role == "user" and turns[-1].role == "user":
            turns[-1] = ChatMessage("user", turns[-1].content + "\n" + text)
        else:
            turns.append(ChatMessage(role, text))
    turns = turns[window_start(len(turns), max_messages):]
    while turns and turns[0].role != "user":  # start on the person's turn
        turns = turns[1:]
    context = "\n".join(part for part in (
        f"What you perceive in the person right now: {perception}." if perception else "", memories, register)
        if part)
    if reply_hint and turns and turns[-1].role == "user":
        turns[-1] = ChatMessage("user", f"{turns[-1].content}\n\n{reply_hint}")
    if not context:
        return [ChatMessage("system", system_prompt), *turns]
    if turns and turns[-1].role == "user":
        return [ChatMessage("system", system_prompt), *turns[:-1], ChatMessage("system", context), turns[-1]]
    return [ChatMessage("system", system_prompt + "\n" + context), *turns]


def window_start(n: int, max_messages: int) -> int:
    """Index of the first of ``n`` messages to keep: at most ``max_messages``, and the start moves
    in steps of half the window (an even number, so it stays on the person's turns) — consecutive
    prompts then share their beginning, and the model's cached prefix stays valid."""
    max_messages = max(1, max_messages)
    start = max(0, n - max_messages)
    step = max(2, (max_messages // 2) // 2 * 2)
    return min(n - 1, -(-start // step) * step) if start else 0
