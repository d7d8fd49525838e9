"""The user simulator: an LLM plays the person from a persona card, turn by turn.

Roles are mirrored for the simulator's model: the agent's replies are its "user" messages and its
own earlier lines are "assistant" messages, under a system prompt holding the card.  It runs on the
agent's own LLM by default, or on any OpenAI-compatible server (``simulator_base_url``) — a
stronger simulator makes the dialogue more realistic; the same one makes runs comparable.

Whatever the simulator writes goes through the agent's real perception, so the person's emotional
trajectory over a simulated dialogue is read by the same encoders as a real person's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, Sequence

from empathic_agent.errors import LLMError

if TYPE_CHECKING:
    from empathic_agent.generate.llm import LLM
    from empathic_agent.settings import Settings

__all__ = ["UserSimulator"]

SYSTEM: Final[str] = (
    "You are role-playing a person talking to a supportive listener in a chat. Stay in character: "
    "write only what this person would type next, in the first person, one to three short sentences, "
    "no stage directions, no quotes, never mention that you are an AI or role-playing.\n\nThe person:\n{card}")
#: Max tokens per simulated message (short chat messages).
MAX_TOKENS: Final[int] = 60


class UserSimulator:
    """Writes the person's next message from the card and the conversation so far."""

    def __init__(self, llm: "LLM", *, temperature: float = 0.7, seed: int | None = 0) -> None:
        self.llm = llm
        self.temperature = temperature
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: "Settings", agent_llm: "LLM") -> "UserSimulator":
        if not settings.simulator_base_url:
            return cls(agent_llm, seed=settings.seed if settings.seed is not None else 0)
        from empathic_agent.generate.llm import load_remote_llm

        llm = load_remote_llm(settings, settings.simulator_base_url, settings.simulator_model,
                              settings.simulator_api_key)
        return cls(llm, seed=settings.seed if settings.seed is not None else 0)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.llm.name, "model": self.llm.model_name, "temperature": self.temperature,
                "seed": self.seed}

    async def next_message(self, card: str, conversation: Sequence[tuple[str, str]], *, turn: int) -> str:
        """The person's next line.  ``conversation`` is (role, text) with role "user" (the person)
        or "assistant" (the agent).  Raises :class:`LLMError` when the model gives nothing usable."""
        from empathic_agent.generate.llm import ChatMessage, GenerationOptions

        messages = [ChatMessage("system", SYSTEM.format(card=card.strip()))]
        # Mirrored roles; the simulator speaks first when the conversation is empty.
        messages += [ChatMessage("assistant" if role == "user" else "user", text) for role, text in conversation]
        if not conversation:
            messages.append(ChatMessage("user", "Hi, I'm here to listen. What's on your mind?"))
        seed = None if self.seed is None else self.seed + turn
        options = GenerationOptions(max_new_tokens=MAX_TOKENS, temperature=self.temperature, seed=seed,
                                    repetition_penalty=1.2)
        text = _clean(await self.llm.complete(messages, options))
        if not text:
            raise LLMError("the user simulator produced an empty message")
        return text


def _clean(text: str) -> str:
    """One chat message: no role prefix, quotes or trailing half sentence."""
    text = (text.strip().split("\n") or [""])[0]
    text = re.sub(r"^\s*(person|user|me|i)\s*:\s*", "", text, flags=re.I).strip().strip('"').strip()
    text = re.sub(r"\s*[(*][^)*]{1,40}[)*]\s*", " ", text).strip()  # stage directions: (sighs), *laughs*
    if len(text) > 40 and not text.endswith((".", "!", "?")):
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if cut > 20:
            text = text[:cut + 1]
    return text
