"""Fake backends that subclass the real interfaces, configured with what they should do."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

from empathic_agent.generate.llm import LLM, ChatMessage, GenerationOptions

__all__ = ["FakeLLM"]


class FakeLLM(LLM):
    """An LLM that replies from a script (cycling), or raises a given exception.

    It records every prompt it received in ``prompts`` so tests can check what the model saw.
    """

    name = "fake"

    def __init__(self, replies: Sequence[str] = ("I hear you.",), *, error: Exception | None = None,
                 chunk_size: int = 4, delay_s: float = 0.0) -> None:
        super().__init__()
        self.replies = list(replies)
        self.error = error
        self.chunk_size = chunk_size
        self.delay_s = delay_s
        self.prompts: list[list[ChatMessage]] = []
        self._i = 0

    @property
    def model_name(self) -> str:
        return "fake"

    async def _stream_impl(self, messages: list[ChatMessage],
                           options: GenerationOptions) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        if self.error is not None:
            raise self.error
        reply = self.replies[self._i % len(self.replies)]
        self._i += 1
        for i in range(0, len(reply), self.chunk_size):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield reply[i:i + self.chunk_size]
