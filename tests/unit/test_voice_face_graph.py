"""The voice and face paths of the turn graph with fakes (FakeSTT behind a FakeSpeechPerception, a
FakeFacePerception): what was heard becomes the message, the readings of every modality are fused,
bad audio fails the turn with a clear error, and a missing service degrades instead."""

from __future__ import annotations

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent
from empathic_agent.errors import EmpathicError
from empathic_agent.graph import build_services
from empathic_agent.latent import MODALITY_FACE, MODALITY_SPEECH, Reading
from empathic_agent.speak.tts import wav_bytes
from empathic_agent.testing import FakeFacePerception, FakeLLM, FakeSpeechPerception, FakeSTT


def _wav(seconds: float = 1.5, rate: int = 16000) -> bytes:
    """Quiet room, a second of a voiced-like harmonic tone, quiet room (the clip's level check
    needs a noise floor to tell sound from silence)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.0 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) + 0.1 * np.sin(2 * np.pi * 300 * t)
    pad = int((seconds - 1.0) / 2 * rate)
    x = np.concatenate([np.zeros(pad), tone, np.zeros(pad)]) + 1e-4 * rng.standard_normal(2 * pad + t.size)
    return wav_bytes(x, rate)


async def _agent(settings, *, speech=None, face=None, llm=None):
    services = build_services(settings, llm=llm or FakeLLM(["I'm here with you."]), text_encoder=None, memory=None,
                              speech=speech, face=face, tts=None)
    return await Agent.open(settings, services=services, checkpointer=InMemorySaver())


async def test_a_spoken_turn_is_heard_read_and_answered(settings):
    stt = FakeSTT(["I have been feeling really low since the move."])
    sad = Reading.from_categories({"sadness": 0.9, "neutral": 0.1}, MODALITY_SPEECH)
    llm = FakeLLM(["That sounds hard."])
    agent = await _agent(settings, speech=FakeSpeechPerception(stt, sad), llm=llm)
    res = await agent.respond("u1", "s1", audio=_wav())
    assert res.user_text == "I have been feeling really low since the move."
    assert res.heard["transcript"] == res.user_text
    assert res.heard["clip"]["sample_rate"] == 16000
    assert set(res.readings) == {"speech"}
    assert res.emotion is not None and res.readings["speech"]["categories"]["sadness"] > 0.5
    assert len(stt.clips) == 1 and 0.9 < stt.clips[0].duration_s < 1.6  # trimmed to the sound
    assert llm.prompts[-1][-1].content.startswith(res.user_text)  # what was heard reached the model
    assert res.reply == "That sounds hard." and not res.degraded


async def test_typed_text_wins_over_the_audio_but_the_voice_is_still_read(settings):
    agent = await _agent(settings, speech=FakeSpeechPerception(FakeSTT(["something else"])))
    res = await agent.respond("u1", "s1", text="I typed this", audio=_wav())
    assert res.user_text == "I typed this"
    assert "speech" in res.readings


async def test_voice_and_face_are_fused_into_one_state(settings):
    speech = FakeSpeechPerception(FakeSTT(["I'm fine, really."]),
                                  Reading.from_categories({"joy": 0.9, "neutral": 0.1}, MODALITY_SPEECH))
    face = FakeFacePerception(Reading.from_categories({"sadness": 0.9, "neutral": 0.1}, MODALITY_FACE))
    agent = await _agent(settings, speech=speech, face=face)
    res = await agent.respond("u1", "s1", audio=_wav(), image=[b"frame-1", b"frame-2"])
    assert set(res.readings) == {"speech", "face"}
    assert face.frames == [2]
    # Joy in the voice and sadness on the face: the fused valence lies between the two.
    v_speech, v_face = res.readings["speech"]["mean"]["valence"], res.readings["face"]["mean"]["valence"]
    fused_v = res.emotion["reading"]["mean"]["valence"]
    assert min(v_speech, v_face) < fused_v < max(v_speech, v_face)
    assert res.emotion["mixed_signals"]["flag"]  # a happy voice over a sad face is a mixed signal


async def test_undecodable_audio_fails_the_turn_with_a_clear_error(settings):
    agent = await _agent(settings, speech=FakeSpeechPerception())
    with pytest.raises(EmpathicError) as caught:
        await agent.respond("u1", "s1", audio=b"this is not audio at all")
    assert "speech" in str(caught.value).lower() or "audio" in str(caught.value).lower()


async def test_audio_without_a_voice_service_degrades_a_typed_turn(settings):
    agent = await _agent(settings, speech=None)
    res = await agent.respond("u1", "s1", text="hello", audio=_wav())
    assert res.reply and [d["error"] for d in res.degraded] == ["SpeechUnavailable"]
    with pytest.raises(EmpathicError, match="voice input is not enabled"):
        await agent.respond("u1", "s1", audio=_wav())


async def test_an_image_without_a_face_service_degrades_and_no_face_gives_no_reading(settings):
    agent = await _agent(settings, face=None)
    res = await agent.respond("u1", "s1", text="hello", image=b"img")
    assert [d["error"] for d in res.degraded] == ["FaceUnavailable"]
    agent = await _agent(settings, face=FakeFacePerception(reading=None))
    res = await agent.respond("u1", "s2", text="hello", image=b"img")
    assert "face" not in res.readings and not res.degraded


async def test_a_persons_voice_data_is_exported_and_erased_with_the_rest(settings):
    speech = FakeSpeechPerception(FakeSTT(["hello there"]))
    agent = await _agent(settings, speech=speech)
    await agent.respond("ann", "s1", audio=_wav())
    await agent.respond("bob", "s1", audio=_wav())
    exported = await agent.export_user("ann")
    assert exported["voice_baseline"] == {"user": "ann", "clips": 1}
    erased = await agent.delete_user("ann")
    assert erased["voice_baseline"] is True
    assert (await agent.export_user("ann")).get("voice_baseline") is None
    assert (await agent.export_user("bob"))["voice_baseline"]["clips"] == 1  # nobody else's data touched
