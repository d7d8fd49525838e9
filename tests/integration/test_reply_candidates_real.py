"""Best of several replies on the real embedded model and the real MiniLM embedder: three seeded
samples, the kept one the most relevant; and a stream the guard stops reading is closed at once,
so the next generation (the guard's regeneration) does not wait on it."""

from __future__ import annotations

import contextlib
import threading

import pytest

from empathic_agent.generate.candidates import choose_reply, sample_replies
from empathic_agent.generate.llm import ChatMessage, GenerationOptions, load_llm
from empathic_agent.memory.embedder import load_embedder
from empathic_agent.settings import Settings

pytestmark = pytest.mark.integration

PROMPT = [ChatMessage("system", "You are a warm, attentive listener. Reply in one to three short sentences."),
          ChatMessage("user", "My cat Pepper died on Sunday. She was fourteen and I miss her terribly.")]


async def test_three_samples_and_the_most_relevant_is_kept():
    settings = Settings.from_env({})
    llm, embedder = load_llm(settings), load_embedder(settings)
    try:
        replies = await sample_replies(llm, PROMPT, GenerationOptions(max_new_tokens=40, temperature=0.7, seed=0), 3)
        assert len(replies) == 3 and all(r.strip() for r in replies)
        assert len(set(replies)) > 1, replies  # each sample has its own seed
        # An off-topic candidate beside them: the real embedder must rank it last and never keep it.
        off_topic = "The quarterly tax forms are due on the fifteenth of next month."
        picked = await choose_reply(embedder, PROMPT[-1].content, [*replies, off_topic])
        assert picked.relevance[picked.chosen] == max(picked.relevance)
        assert picked.chosen != 3 and picked.relevance[3] == min(picked.relevance), picked.relevance
        assert all(-1.0 <= r <= 1.0 for r in picked.relevance)
    finally:
        await llm.aclose()
        embedder.close()


async def test_a_stream_closed_early_frees_the_model_for_the_next_reply():
    llm = load_llm(Settings.from_env({}))
    try:
        long = GenerationOptions(max_new_tokens=96, temperature=0.7, seed=1)
        async with contextlib.aclosing(llm.stream(PROMPT, long)) as stream:
            async for _ in stream:
                break  # what the guard does on a blocked sentence
        # Closed: the generation thread was cancelled and joined, not left running 96 tokens on.
        assert not [t for t in threading.enumerate() if t.name == "llm-generate"]
        reply = await llm.complete(PROMPT, GenerationOptions(max_new_tokens=16, temperature=0.0))
        assert reply.strip()  # the model answered the next request
        assert not [t for t in threading.enumerate() if t.name == "llm-generate"]  # and that one finished too
    finally:
        await llm.aclose()
