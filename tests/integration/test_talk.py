"""Talk mode with the real models: Piper speech with pauses streamed in real-time-sized chunks,
the packaged Silero VAD and Smart Turn, Whisper, the embedded LLM and the Piper voice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from empathic_agent.agent import Agent, AudioChunk, TurnResult
from empathic_agent.converse import SpeechEnded, Transcript
from empathic_agent.converse.models import FRAME, SileroVAD, SmartTurn
from empathic_agent.perceive.audio import _resample
from empathic_agent.settings import Settings
from tests.integration.test_speech import _norm, cache_dir, say, voice  # noqa: F401  (fixtures)


@pytest.fixture
def speak16(say):  # noqa: F811 (fixture)
    def _speak(text: str) -> np.ndarray:
        rate, x = say(text)
        return _resample(np.asarray(x, np.float32), rate)
    return _speak


def gap(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


async def chunks(audio: np.ndarray, chunk_s: float = 0.1, real_time: float = 1.0):
    """PCM16 chunks in real time (``real_time`` < 1: faster; the session's clock is the samples)."""
    n = int(chunk_s * 16000)
    for i in range(0, audio.size, n):
        yield (audio[i:i + n] * 32767).astype("<i2").tobytes()
        await asyncio.sleep(chunk_s * real_time)


def test_the_packaged_listening_models_hear_speech_and_the_end_of_a_sentence(speak16):
    sentence = speak16("My boss yelled at me in front of everyone today.")
    trailing = speak16("So what I wanted to say is that")
    vad = SileroVAD()
    x = np.concatenate([gap(0.5), sentence, gap(0.5)])
    probs = [vad.speech_probability(x[i:i + FRAME]) for i in range(0, x.size - FRAME + 1, FRAME)]
    speech = np.asarray(probs) >= 0.5
    assert not speech[:10].any() and not speech[-10:].any()  # silence around it
    assert speech.mean() > 0.5 * sentence.size / x.size
    turn = SmartTurn()
    assert turn.complete_probability(np.concatenate([sentence, gap(0.2)])) > 0.7
    assert turn.complete_probability(np.concatenate([trailing, gap(0.2)])) < 0.3


async def test_a_spoken_conversation_with_pauses(tmp_path, speak16):
    settings = Settings.from_env({}, memory_dir=tmp_path / "mem", max_new_tokens=24, temperature=0.0,
                                 speak_replies=True)
    first, second = "I lost my job today and I feel terrible.", "I don't know what to tell my family."
    audio = np.concatenate([gap(0.5), speak16(first), gap(8.0), speak16(second), gap(8.0), gap(3.0)])
    async with await Agent.open(settings) as agent:
        await agent.warm_up(speak=True)
        events = [ev async for ev in agent.converse("tess", "s1", chunks(audio))]
        ended = [e for e in events if isinstance(e, SpeechEnded)]
        heard = [e.text for e in events if isinstance(e, Transcript) and e.final]
        results = [e for e in events if isinstance(e, TurnResult)]
        assert len(ended) == 2 and len(results) == 2, [type(e).__name__ for e in events]
        assert [_norm(h) for h in heard] == [_norm(first), _norm(second)]
        assert all(r.reply.strip() for r in results)
        assert any(isinstance(e, AudioChunk) for e in events)
        assert all(set(r.readings) >= {"speech"} for r in results)
        history = await agent.history("tess", "s1")
        assert [m.role for m in history] == ["user", "assistant"] * 2
        # Noise-free silence alone is no turn.
        quiet = [ev async for ev in agent.converse("tess", "s2", chunks(gap(2.0), real_time=0.1))]
        assert quiet == []


async def test_talking_over_the_reply_stops_it(tmp_path, speak16):
    settings = Settings.from_env({}, memory_dir=tmp_path / "mem", max_new_tokens=96, temperature=0.0,
                                 speak_replies=True)
    first = "I had a really rough week at work and I can't stop thinking about it."
    heard_reply = asyncio.Event()

    async def person():
        # Speaks, waits in silence until the agent's voice is heard, and talks over it at once (as a
        # person does, whatever this machine's speed).  The reply can be one short sentence ("How
        # have you been feeling?", 1.4 s of audio); letting it play 0.3 s first, it once ended in CI
        # before the barge-in counted (384 ms of speech).
        async for c in chunks(np.concatenate([gap(0.5), speak16(first)])):
            yield c
        for _ in range(300):
            if heard_reply.is_set():
                break
            yield (gap(0.1) * 32767).astype("<i2").tobytes()
            await asyncio.sleep(0.1)
        async for c in chunks(np.concatenate([gap(0.05), speak16("Wait, stop, I need to say something."),
                                              gap(12.0)])):
            yield c

    async with await Agent.open(settings) as agent:
        await agent.warm_up(speak=True)
        events = []
        async for ev in agent.converse("ula", "s1", person()):
            events.append(ev)
            if isinstance(ev, AudioChunk):
                heard_reply.set()
        names = [type(e).__name__ for e in events]
        # The whole event list on failure (an assertion message is truncated): this real-time test
        # failed once in CI (2026-12-06) with an interruption that had neither spoken nor unspoken text.
        print("events:", [(n, getattr(e, "text", None) or getattr(e, "spoken", None), getattr(e, "unspoken", None))
                          for n, e in zip(names, events)])
        # One interruption of the reply; a pause inside the interrupting words may end a turn
        # early, and resuming before anything is played only merges the two utterances.
        assert names.count("Interrupted") >= 1, names
        # The interruption of the reply that was heard; an earlier one can be a merge (a pause inside
        # the person's words ended a turn, and resuming before anything played merged them: nothing
        # spoken, no text yet), which is not what this test is about (seen once in CI).
        stop = next((e for e in events if type(e).__name__ == "Interrupted" and (e.spoken or e.unspoken)), None)
        assert stop is not None, [(type(e).__name__, getattr(e, "spoken", None)) for e in events]
        assert stop.unspoken  # cut short
        history = await agent.history("ula", "s1")
        assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
        # Only what had been played is kept, marked as interrupted.
        assert history[1].interrupted and history[1].content == stop.spoken
        assert "stop" in _norm(history[2].content) and not history[3].interrupted
        assert isinstance(events[-1], TurnResult)
