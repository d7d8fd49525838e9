"""Best of several sampled replies (``Settings.reply_candidates``): sampling, the choice, the graph."""

from __future__ import annotations

import dataclasses

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent
from empathic_agent.errors import ConfigError
from empathic_agent.generate.candidates import choose_reply, sample_replies
from empathic_agent.generate.llm import ChatMessage, GenerationOptions
from empathic_agent.graph import build_services
from empathic_agent.settings import Settings
from empathic_agent.testing import FakeEmbedder, FakeLLM

HELLO = [ChatMessage("user", "hello")]


class SeedRecordingLLM(FakeLLM):
    """Records the options of every generation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.options: list[GenerationOptions] = []

    def _stream_impl(self, messages, options):
        self.options.append(options)
        return super()._stream_impl(messages, options)


async def test_candidate_k_samples_with_seed_plus_k_so_the_first_is_the_plain_reply():
    llm = SeedRecordingLLM(["a", "b", "c"])
    replies = await sample_replies(llm, HELLO, GenerationOptions(seed=7), 3)
    assert replies == ["a", "b", "c"]
    assert [o.seed for o in llm.options] == [7, 8, 9]
    llm = SeedRecordingLLM(["a"])
    await sample_replies(llm, HELLO, GenerationOptions(seed=None), 2)
    assert [o.seed for o in llm.options] == [None, None]  # unseeded stays unseeded


async def test_the_reply_closest_to_the_message_is_kept_and_blank_ones_never():
    emb = FakeEmbedder()
    picked = await choose_reply(emb, "my dog Biscuit died", ["Let's talk about cars.", "",
                                                           "Losing Biscuit, your dog, must hurt."])
    assert picked.chosen == 2 and picked.reply == "Losing Biscuit, your dog, must hurt."
    assert len(picked.relevance) == 3 and picked.relevance[1] == float("-inf")
    # A tie keeps the earliest (the plain reply when seeded).
    same = await choose_reply(emb, "my dog Biscuit died", ["cars", "cars"])
    assert same.chosen == 0
    with pytest.raises(ValueError):
        await choose_reply(emb, "x", [])


def test_the_setting_is_checked():
    with pytest.raises(ConfigError, match="reply_candidates"):
        Settings.from_env({}, reply_candidates=0)
    assert Settings.from_env({"EMPATHIC_REPLY_CANDIDATES": "3"}).reply_candidates == 3
    assert Settings.from_env({}).reply_candidates == 1  # the default streams a single reply


async def test_the_graph_replies_with_the_candidate_closest_to_the_person(settings):
    from empathic_agent.memory import MemoryService

    settings = dataclasses.replace(settings, reply_candidates=3)
    llm = FakeLLM(["The weather is lovely today.", "Missing Biscuit, your dog, sounds so hard.",
                   "Cars can be fun."])
    memory = MemoryService.from_settings(settings, embedder=FakeEmbedder())
    try:
        agent = await Agent.open(settings, services=build_services(settings, llm=llm, text_encoder=None,
                                                                   memory=memory, speech=None, face=None),
                                 checkpointer=InMemorySaver())
        res = await agent.respond("ann", "s1", text="I miss my dog Biscuit so much")
        assert res.ok and res.reply == "Missing Biscuit, your dog, sounds so hard."
        assert len(llm.prompts) == 3 and llm.prompts[0] == llm.prompts[2]  # the same prompt, sampled 3 times
        assert res.generation["candidates"]["n"] == 3 and res.generation["candidates"]["chosen"] == 1
        # The default streams one reply, as before.
        plain = FakeLLM(["The weather is lovely today."])
        one = dataclasses.replace(settings, reply_candidates=1)
        agent = await Agent.open(one, services=build_services(one, llm=plain, text_encoder=None, memory=memory,
                                                              speech=None, face=None), checkpointer=InMemorySaver())
        res = await agent.respond("ann", "s2", text="I miss my dog Biscuit so much")
        assert len(plain.prompts) == 1 and "candidates" not in res.generation
    finally:
        memory.close()


async def test_without_memory_the_choice_loads_an_embedder_of_its_own(settings, monkeypatch):
    import empathic_agent.memory.embedder as embedder_module

    made: list[FakeEmbedder] = []
    monkeypatch.setattr(embedder_module, "load_embedder", lambda s, name="minilm": made.append(FakeEmbedder()) or made[-1])
    settings = dataclasses.replace(settings, reply_candidates=2)
    llm = FakeLLM(["Cars can be fun.", "Missing Biscuit, your dog, sounds so hard."])
    agent = await Agent.open(settings, services=build_services(settings, llm=llm, text_encoder=None, memory=None,
                                                               speech=None, face=None), checkpointer=InMemorySaver())
    first = await agent.respond("ann", "s1", text="I miss my dog Biscuit so much")
    second = await agent.respond("ann", "s1", text="Biscuit was my dog for ten years")
    assert first.reply == second.reply == "Missing Biscuit, your dog, sounds so hard."
    assert len(made) == 1  # loaded once, on first use
