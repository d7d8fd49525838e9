"""The embedded LLM's prefix cache on the real model: a conversation's next prompt prefills only
its new tokens, and the reply is exactly what a cold model gives (greedy decoding)."""

from __future__ import annotations

import pytest

from empathic_agent.generate.llm import ChatMessage, GenerationOptions, load_llm
from empathic_agent.settings import Settings

pytestmark = pytest.mark.integration

GREEDY = GenerationOptions(max_new_tokens=32, temperature=0.0)


async def test_next_turn_reuses_the_cached_prefix_and_replies_the_same():
    settings = Settings.from_env({})
    warm, cold = load_llm(settings), load_llm(settings)
    system = ChatMessage("system", "You are a warm, attentive listener. Reply in one to three short sentences.")
    first = [system, ChatMessage("user", "I had a really rough day at work and I can't stop thinking about it.")]
    reply = await warm.complete(first, GREEDY)
    assert warm.last_prefix["reused"] == 0
    second = first + [ChatMessage("assistant", reply), ChatMessage("system", "Speak in a calm, warm tone."),
                      ChatMessage("user", "My manager criticised me in front of everyone.")]
    again = await warm.complete(second, GREEDY)
    # The whole first prompt and the reply come from the cache; only the new messages are read.
    assert warm.last_prefix["reused"] > len(reply) // 8 + 20
    assert warm.last_prefix["prefilled"] < warm.last_prefix["reused"]
    assert again == await cold.complete(second, GREEDY)
    assert cold.last_prefix["reused"] == 0
    # An unrelated prompt shares too little to reuse.
    await warm.complete([ChatMessage("user", "What is the capital of France?")], GREEDY)
    assert warm.last_prefix["reused"] == 0
    await warm.aclose()
    await cold.aclose()
