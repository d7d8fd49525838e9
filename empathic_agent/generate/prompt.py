"""Prompt assembly for the generate step.

The default embedded model is tiny (135M parameters): it needs a system prompt (without one it
degenerates into emoji loops) and a short context. So the prompt is the system prompt plus the last
few messages of the conversation; replies that were fallbacks for a failed generation are left out
so the model never imitates an error message.
"""

from __future__ import annotations

from typing import Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from empathic_agent.generate.llm import ChatMessage

__all__ = ["build_prompt", "is_fallback"]


def is_fallback(message: AnyMessage) -> bool:
    return bool(getattr(message, "additional_kwargs", {}).get("fallback"))


def build_prompt(system_prompt: str, history: Sequence[AnyMessage], *,
                 max_messages: int, perception: str = "", memories: str = "",
                 register: str = "", reply_hint: str = "") -> list[ChatMessage]:
    """System prompt (+ how the person seems) + the last ``max_messages`` real messages.

    ``perception`` is the fused emotional state's short description; it goes into the system
    message, phrased as an observation to take into account, so the small model neither repeats
    it verbatim nor treats it as the person's words. ``memories`` is the recalled memories' block
    (quoted and marked as data, never as instructions, by the memory package). ``register`` is the
    planner's instruction for this reply (strategy, tone, length): last in the system message, the
    position a small model follows best.  ``reply_hint`` (the planned strategy as one instruction)
    is appended to the person's latest message in the prompt only — the stored conversation keeps
    their words as they were.
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
    turns = turns[-max(1, max_messages):]
    while turns and turns[0].role != "user":  # start on the person's turn
        turns = turns[1:]
    system = system_prompt
    if perception:
        system += f"\nWhat you perceive in the person right now: {perception}."
    if memories:
        system += "\n" + memories
    if register:
        system += "\n" + register
    if reply_hint and turns and turns[-1].role == "user":
        turns[-1] = ChatMessage("user", f"{turns[-1].content}\n\n{reply_hint}")
    return [ChatMessage("system", system), *turns]
