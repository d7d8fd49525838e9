"""The plan and speak steps inside the turn graph (fake LLM, fake encoder, fake voice — all
subclasses of the real base classes)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent, AudioChunk, TextChunk, TurnResult
from empathic_agent.graph import build_services
from empathic_agent.plan import load_persona
from empathic_agent.testing import FakeEncoder, FakeLLM, FakeTTS


async def _agent(settings, llm, *, tts=None, encoder=None, persona=None):
    services = build_services(settings, llm=llm, text_encoder=encoder, memory=None, speech=None, face=None,
                              tts=tts, persona=persona)
    return await Agent.open(settings, services=services, checkpointer=InMemorySaver())


async def test_each_turn_is_planned_and_the_plan_reaches_the_prompt(settings):
    llm = FakeLLM(["What happened?", "That sounds so painful.", "Maybe a short walk could help?"])
    enc = FakeEncoder({"I lost my job": "sadness", "I feel useless": "sadness", "I don't know": "sadness"})
    agent = await _agent(settings, llm, encoder=enc)
    first = await agent.respond("u", "s", text="I lost my job")
    assert first.register["strategy"] == "Question" and first.register["family"] == "exploration"
    assert any("explore before advising" in r for r in first.register["rationale"])
    system = "\n".join(m.content for m in llm.prompts[-1] if m.role == "system")
    assert "You are Sam" in system and "tone" in system and "Never: no diagnosis" in system
    assert llm.prompts[-1][-1].content.endswith("ask one open question about what they feel or what happened.")
    second = await agent.respond("u", "s", text="I feel useless")
    assert second.register["strategy"] == "Reflection of feelings"  # no strategy twice in a row
    third = await agent.respond("u", "s", text="I don't know")
    assert third.register["family"] in ("comforting", "action")  # explored: the helping cycle goes on
    # Distress is met with calm: the agent's expression is low-arousal and warm.
    t = third.register["target"]
    assert t["arousal"] < 0 and t["valence"] > 0
    # The agent's mood moved towards the person's (contagion) but stays near its baseline.
    baseline = load_persona("sam").baseline_mood
    assert first.agent_mood and third.agent_mood[0] < baseline[0]


async def test_persona_changes_the_system_prompt(settings):
    llm = FakeLLM(["Hey!"])
    agent = await _agent(settings, llm, persona=load_persona("alex"))
    await agent.respond("u", "s", text="hello")
    assert "You are Alex" in llm.prompts[-1][0].content


async def test_spoken_reply_streams_audio_before_the_text_is_finished(settings):
    llm = FakeLLM(["I hear you. That must be hard. I'm here with you, take your time."], chunk_size=3, delay_s=0.02)
    tts = FakeTTS()
    agent = await _agent(settings, llm, tts=tts)
    events = [e async for e in agent.stream("u", "s", text="rough day", speak=True)]
    kinds = [type(e).__name__ for e in events]
    first_audio = kinds.index("AudioChunk")
    last_text = max(i for i, k in enumerate(kinds) if k == "TextChunk")
    assert first_audio < last_text, kinds  # the first sentence is audible while the rest is generated
    result = events[-1]
    assert isinstance(result, TurnResult) and result.ok, result.degraded
    audio_events = [e for e in events if isinstance(e, AudioChunk)]
    assert [a.text for a in audio_events] == [c.text for c in result.audio_chunks]
    assert len(result.audio_chunks) == 3 and result.speech["voice"] == "fake"
    whole = result.audio
    assert whole.duration_s > sum(c.duration_s for c in result.audio_chunks)  # + breaths between sentences
    # The planned register drove the prosody.
    assert result.speech["prosody"] is not None and len(tts.calls) == 3


async def test_a_guarded_sentence_is_spoken_without_waiting_for_the_next_one(settings):
    # The guard releases whole sentences; the voice must start on the first one, not when the
    # second one (and its guard check) is done.
    llm = FakeLLM(["I hear you. That must be really hard for you today, and I am here."], chunk_size=3, delay_s=0.03)
    agent = await _agent(settings, llm, tts=FakeTTS())
    events = [e async for e in agent.stream("u", "s", text="rough day", speak=True)]
    result = events[-1]
    assert isinstance(result, TurnResult) and result.guard["layers"] != "off" and result.guard["sentences"] == 2
    kinds = [type(e).__name__ for e in events]
    texts = [i for i, k in enumerate(kinds) if k == "TextChunk"]
    assert len(texts) == 2 and texts[0] < kinds.index("AudioChunk") < texts[1], kinds


def test_a_long_first_sentence_is_spoken_from_its_first_clause():
    from empathic_agent.speak.text import first_clause

    long = "It is very hard when everything happens at once, and nobody seems to notice how tired you are."
    head, tail = first_clause(long)
    assert head == "It is very hard when everything happens at once," and tail.startswith("and nobody")
    assert first_clause("That sounds hard, really.") == ("That sounds hard, really.", "")
    assert first_clause("A" * 90) == ("A" * 90, "")


async def test_text_only_turns_do_not_speak(settings):
    tts = FakeTTS()
    agent = await _agent(settings, FakeLLM(["ok."]), tts=tts)
    res = await agent.respond("u", "s", text="hi")
    assert res.audio_chunks == () and res.audio is None and tts.calls == []
    assert res.speech == {}


async def test_a_failing_voice_degrades_to_text(settings):
    agent = await _agent(settings, FakeLLM(["First. Second one."]), tts=FakeTTS(error=RuntimeError("boom")))
    res = await agent.respond("u", "s", text="hi", speak=True)
    assert res.reply == "First. Second one."
    assert res.audio_chunks == ()
    assert res.degraded and {e["step"] for e in res.degraded} == {"speak"}


async def test_voice_requested_but_not_configured(settings):
    agent = await _agent(settings, FakeLLM(["Hello there."]))
    res = await agent.respond("u", "s", text="hi", speak=True)
    assert res.reply == "Hello there." and [e["error"] for e in res.degraded] == ["TTSUnavailable"]


async def test_the_spoken_reply_survives_a_failed_generation(settings):
    from empathic_agent.errors import LLMConnectionError
    from empathic_agent.graph.nodes import FALLBACK_REPLY

    agent = await _agent(settings, FakeLLM(error=LLMConnectionError("down")), tts=FakeTTS())
    res = await agent.respond("u", "s", text="hi", speak=True)
    assert res.reply == FALLBACK_REPLY
    assert res.audio_chunks  # the fallback is spoken too, so a listener is never left in silence
    assert {e["step"] for e in res.degraded} == {"generate"}


async def test_streamed_events_in_order(settings):
    agent = await _agent(settings, FakeLLM(["One. Two."], chunk_size=2), tts=FakeTTS())
    events = [e async for e in agent.stream("u", "s", text="hi", speak=True)]
    assert isinstance(events[-1], TurnResult)
    assert all(isinstance(e, (TextChunk, AudioChunk)) for e in events[:-1])
    assert [e.index for e in events if isinstance(e, AudioChunk)] == [0, 1]


@pytest.mark.parametrize("persona", ["sam", "alex"])
def test_packaged_personas_load(persona):
    p = load_persona(persona)
    assert p.name and all(-1 <= v <= 1 for v in p.baseline_mood)
