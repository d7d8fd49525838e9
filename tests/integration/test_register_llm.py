"""The register changes the reply of the real embedded model (SmolLM2-135M, greedy decoding).

Fixed examples: the same message answered under different planned strategies.  The small model
ignores strategy instructions in the system message but follows the one-line hint the prompt
appends to the person's latest turn (Register.reply_hint)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import HumanMessage

from empathic_agent.generate.llm import GenerationOptions, load_llm
from empathic_agent.generate.prompt import build_prompt
from empathic_agent.plan import Register, load_persona
from empathic_agent.settings import Settings

MESSAGES = ["My best friend moved to another country.", "I got the job I wanted!"]


@pytest.fixture(scope="module")
def replies():
    settings = Settings.from_env({}, temperature=0.0, max_new_tokens=40)
    llm = load_llm(settings)
    persona = load_persona("sam")
    system = f"{settings.system_prompt} You are {persona.name}, {persona.description}. Style: {persona.style}."

    async def run():
        out = {}
        for m in MESSAGES:
            for strategy in ("Question", "Affirmation and Reassurance"):
                reg = Register(strategy=strategy, target=(0.3, -0.3, 0.0), tone=("calm", "warm"), pace="slow",
                               length="short")
                prompt = build_prompt(system, [HumanMessage(m)], max_messages=8, register=reg.prompt_lines(),
                                      reply_hint=reg.reply_hint())
                out[m, strategy] = "".join([c async for c in llm.stream(prompt, GenerationOptions.from_settings(settings))])
        await llm.aclose()
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("message", MESSAGES)
def test_strategy_question_produces_a_question(replies, message):
    assert "?" in replies[message, "Question"], replies[message, "Question"]


@pytest.mark.parametrize("message", MESSAGES)
def test_the_register_changes_the_reply(replies, message):
    assert replies[message, "Question"] != replies[message, "Affirmation and Reassurance"]
