"""Best of several sampled replies (``Settings.reply_candidates``).

The small embedded responder often answers beside what the person said ("How is your cat? Is she
still alive?" to a cat that died). Sampling a few replies to the same prompt and keeping the one
closest in meaning to the person's newest message (the same MiniLM memory embeds with) picks the
on-topic one when there is one. Each candidate is a whole reply, so the first words come only
after all of them (first text p50 0.26 s -> 2.9 s with three on ESConv test): a setting for
quality, not for a live voice, and opt-in — a blind reader preferred the best of three on ESConv
valid and test, on test not by the margin decided in advance (README, "Best of three replies").
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from empathic_agent.generate.llm import GenerationOptions

if TYPE_CHECKING:
    from empathic_agent.generate.llm import LLM, ChatMessage
    from empathic_agent.memory.embedder import Embedder

__all__ = ["Candidates", "sample_replies", "choose_reply"]


@dataclass(frozen=True)
class Candidates:
    """The sampled replies and which one was kept."""

    replies: tuple[str, ...]
    #: Cosine similarity of each reply to the person's message.
    relevance: tuple[float, ...]
    chosen: int

    @property
    def reply(self) -> str:
        return self.replies[self.chosen]


async def sample_replies(llm: "LLM", messages: Sequence["ChatMessage"], options: GenerationOptions,
                         n: int) -> list[str]:
    """``n`` whole replies to the same prompt. With a seed, candidate k samples with seed + k, so
    the first is the reply the agent gives without candidates (a run stays reproducible)."""
    return [await llm.complete(messages, dataclasses.replace(options, seed=None if options.seed is None
                                                             else options.seed + k))
            for k in range(n)]


async def choose_reply(embedder: "Embedder", message: str, replies: Sequence[str]) -> Candidates:
    """Keep the reply closest to ``message`` (ties and blank replies: the earliest non-blank)."""
    if not replies:
        raise ValueError("no replies to choose from")
    vectors = await asyncio.to_thread(embedder.embed, [message, *[r or " " for r in replies]])
    sims = [float(v @ vectors[0]) if r.strip() else float("-inf") for v, r in zip(vectors[1:], replies)]
    best = max(range(len(sims)), key=lambda k: (sims[k], -k))
    return Candidates(tuple(replies), tuple(round(s, 4) for s in sims), best)
