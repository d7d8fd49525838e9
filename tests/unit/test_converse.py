"""Talk mode: the turn-taking policy on scripted speech probabilities, and whole spoken
conversations through the real graph with fakes that subclass the real interfaces (an energy
voice-activity detector, the silence-only end of turn, fake STT / LLM / TTS)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent, AudioChunk, TurnResult
from empathic_agent.converse import Interrupted, SpeechEnded, SpeechStarted, TalkOptions, Transcript, TurnSkipped
from empathic_agent.converse.listen import Listener
from empathic_agent.converse.models import FRAME, SAMPLE_RATE, SilenceOnly, VoiceActivity
from empathic_agent.converse.session import _Reply, pcm_to_float
from empathic_agent.errors import ConfigError, InputError, ModelError
from empathic_agent.graph.builder import build_services
from empathic_agent.testing.fakes import FakeLLM, FakeSpeechPerception, FakeSTT, FakeTTS

FRAME_S = FRAME / SAMPLE_RATE


def frames_for(seconds: float) -> int:
    return int(round(seconds / FRAME_S))


def run(listener: Listener, probs: list[float], *, paused: bool = False) -> list[tuple[int, str, str]]:
    """Feed scripted probabilities; (frame index, event, reason) of what happened ("paused", the
    early-transcription cue, only with ``paused``)."""
    out = []
    for i, p in enumerate(probs):
        heard = listener.push(np.full(FRAME, p, np.float32), p)
        if heard.event and (paused or heard.event != "paused"):
            out.append((i, heard.event, heard.reason))
    return out


# -- the policy ------------------------------------------------------------------------------------

def test_a_click_does_not_start_speech_but_a_syllable_does():
    listener = Listener(lambda audio: 1.0)
    assert run(listener, [0.0] * 5 + [0.9] * 2 + [0.0] * 40) == []          # 64 ms: a click
    listener = Listener(lambda audio: 1.0)
    events = run(listener, [0.0] * 5 + [0.9] * 3 + [0.0] * 40)              # 96 ms
    assert events[0] == (7, "speech_started", "")


def test_a_finished_turn_ends_at_the_first_pause():
    listener = Listener(lambda audio: 0.9)
    events = run(listener, [0.9] * 30 + [0.0] * 60)
    (i, event, reason) = events[-1]
    assert (event, reason) == ("turn_ended", "complete")
    assert i == 30 + frames_for(0.256) - 1


def test_each_pause_cues_an_early_transcription_of_the_utterance_so_far():
    listener = Listener(lambda audio: 0.0)  # the end-of-turn model doubts every pause
    cues = []
    for i, p in enumerate([0.9] * 20 + [0.0] * 10 + [0.9] * 10 + [0.0] * 60):
        heard = listener.push(np.full(FRAME, p, np.float32), p)
        if heard.event == "paused":
            cues.append((i, heard.audio.size, heard.silent_s))
        elif heard.event == "turn_ended":
            ended = (i, heard.audio.size, heard.silent_s)
    early = frames_for(0.096)
    # One cue per pause, early_stt_ms into it, with everything heard so far.
    assert [c[0] for c in cues] == [20 + early - 1, 40 + early - 1]
    assert cues[1][1] + (ended[0] - cues[1][0]) * FRAME == ended[1]
    # Only silence came after the second cue: its audio is the turn's minus silence at the end.
    assert ended[1] - cues[1][1] <= round(ended[2] * SAMPLE_RATE)
    assert not ended[1] - cues[0][1] <= round(ended[2] * SAMPLE_RATE)
    off = Listener(lambda audio: 0.0, TalkOptions(early_stt_ms=None))
    assert not run(off, [0.9] * 20 + [0.0] * 60, paused=True)[1:-1]
    with pytest.raises(ValueError, match="early_stt_ms"):
        TalkOptions(early_stt_ms=1200.0)


def test_a_mid_sentence_pause_waits_and_a_long_silence_ends_the_turn_anyway():
    asked = []

    def complete(audio):
        asked.append(audio.size)
        return 0.1  # "I went to the shop and ..."
    listener = Listener(complete)
    # A 600 ms pause inside the sentence: no end of turn; the model was asked once.
    events = run(listener, [0.9] * 30 + [0.0] * frames_for(0.6) + [0.9] * 30 + [0.0] * 60)
    ends = [e for e in events if e[1] == "turn_ended"]
    assert len(ends) == 1 and ends[0][2] == "pause"
    assert ends[0][0] == 30 + frames_for(0.6) + 30 + frames_for(1.2) - 1
    assert len(asked) == 2  # once in each pause
    # The utterance holds both halves (and the pre-roll before the start).
    assert asked[1] > asked[0]


def test_hysteresis_keeps_a_soft_syllable_inside_the_utterance():
    listener = Listener(lambda audio: 1.0)
    # 0.4 is below the threshold but above threshold - 0.15: not silence.
    events = run(listener, [0.9] * 10 + [0.4] * 20 + [0.9] * 5 + [0.0] * 20)
    assert [e[1] for e in events] == ["speech_started", "turn_ended"]
    assert events[1][0] == 35 + frames_for(0.256) - 1


def test_barge_in_needs_sustained_speech_and_a_cough_is_ignored():
    listener = Listener(lambda audio: 1.0)
    listener.replying = True
    assert run(listener, [0.0] * 5 + [0.9] * 6 + [0.0] * 10) == []          # 192 ms: a cough
    events = run(listener, [0.9] * 20)
    assert events == [(frames_for(0.384) - 1, "barge_in", "")]
    assert not listener.replying and listener.speaking
    # The interrupting speech is the start of the next turn, pre-roll included.
    assert listener.utterance().size >= frames_for(0.384) * FRAME


def test_words_with_gaps_add_up_to_an_interruption_and_keep_what_was_said_over_the_reply():
    listener = Listener(lambda audio: 1.0)
    listener.replying = True
    # "Wait," (160 ms) - gap (64 ms) - "stop," (160 ms) - gap - "I need...": no single run is 384 ms.
    words = ([0.9] * 5 + [0.0] * 2) * 3 + [0.9] * 10
    events = run(listener, words)
    assert [e[1] for e in events] == ["barge_in"]
    # Everything said over the reply (and the pre-roll) opens the next turn.
    assert listener.utterance().size >= events[0][0] * FRAME


def test_speech_going_on_when_the_reply_ends_starts_the_turn():
    listener = Listener(lambda audio: 1.0)
    listener.replying = True
    assert run(listener, [0.9] * 6) == []       # 192 ms over the end of the reply
    listener.replying = False                  # the reply's audio has finished
    events = run(listener, [0.9] * 2 + [0.0] * 20)
    assert events[0] == (0, "speech_started", "")
    assert events[-1][1] == "turn_ended" and listener.utterance().size == 0


def test_an_endless_utterance_is_cut_and_the_stream_end_flushes():
    listener = Listener(lambda audio: 0.0, TalkOptions(max_utterance_s=1.0))
    events = run(listener, [0.9] * 80)
    assert ("turn_ended" in [e[1] for e in events]) and events[-2][2] == "too_long"
    listener = Listener(lambda audio: 0.0)
    run(listener, [0.9] * 20)
    heard = listener.flush()
    assert heard.event == "turn_ended" and heard.reason == "stream_ended" and heard.audio.size > 0
    assert listener.flush().event == ""


def test_options_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        TalkOptions(threshold=1.5)
    with pytest.raises(ValueError, match="max_pause_ms"):
        TalkOptions(pause_ms=900, max_pause_ms=500)


def test_pcm_chunks_are_read_and_bad_ones_rejected():
    x = pcm_to_float(np.array([0, 16384, -32768], "<i2").tobytes())
    assert x.dtype == np.float32 and x.tolist() == [0.0, 0.5, -1.0]
    assert pcm_to_float(np.array([0.25], np.float64)).tolist() == [0.25]
    with pytest.raises(InputError, match="even number"):
        pcm_to_float(b"\x00\x01\x02")
    with pytest.raises(InputError, match="mono"):
        pcm_to_float(np.zeros((2, 10)))


def test_what_was_spoken_at_an_interruption():
    reply = _Reply(turn_id="t", audio=np.zeros(1))
    reply.played = [(1.0, 2.0, "First sentence here."), (2.0, 4.0, "one two three four"), (4.0, 5.0, "Last.")]
    assert reply.spoken_at(0.5) == ("", "First sentence here. one two three four Last.")
    assert reply.spoken_at(3.0) == ("First sentence here. one two…", "three four Last.")
    assert reply.spoken_at(9.0) == ("First sentence here. one two three four Last.", "")


def test_events_serialise_with_their_type():
    assert SpeechStarted(1.5).to_dict() == {"type": "speech_started", "at_s": 1.5}
    assert Interrupted(2.0, "a", "b").to_dict()["type"] == "interrupted"
    assert TurnSkipped("no words").to_dict() == {"type": "turn_skipped", "reason": "no words"}


# -- whole conversations through the graph --------------------------------------------------------

class EnergyVAD(VoiceActivity):
    """A fake detector on the real interface: a frame is speech when it is loud."""

    name = "energy"

    def _load_impl(self) -> None:
        pass

    def speech_probability(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame ** 2))) > 0.05 else 0.0


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


async def paced(audio: np.ndarray, chunk_s: float = 0.064, pace_s: float = 0.01):
    """PCM16 chunks, with a little real time between them so the turn's task can run (the
    session keeps its own clock from the samples)."""
    n = int(chunk_s * SAMPLE_RATE)
    for i in range(0, audio.size, n):
        yield (audio[i:i + n] * 32767).astype("<i2").tobytes()
        await asyncio.sleep(pace_s)


async def open_talk_agent(settings, services):
    # The stream runs ~6x faster than real time (``paced``): the safety screen's models load
    # now, not inside the first turn, where a slow load would let the next utterance's audio
    # arrive while the first reply is still "playing".
    if services.safety is not None:
        await asyncio.to_thread(services.safety.load)
    return await Agent.open(settings, services=services, checkpointer=InMemorySaver())


async def talk_agent(settings, replies, heard):
    services = build_services(settings, llm=FakeLLM(replies), text_encoder=None, memory=None,
                              speech=FakeSpeechPerception(FakeSTT(heard)), face=None,
                              tts=FakeTTS(seconds_per_char=0.05))
    return await open_talk_agent(settings, services)


async def collect(agent, audio, **kw):
    events = []
    async for ev in agent.converse("ann", "s1", paced(audio), **kw):
        events.append(ev)
    return events


async def test_two_utterances_with_a_pause_give_two_turns(settings):
    agent = await talk_agent(settings, ["That sounds hard.", "I am glad you told me."],
                             ["I had a hard day.", "My boss shouted at me."])
    async with agent:
        audio = np.concatenate([silence(0.3), tone(1.0), silence(4.0), tone(0.8), silence(4.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=SilenceOnly())
        kinds = [type(e).__name__ for e in events if not type(e).__name__ == "TextChunk"]
        assert kinds.count("SpeechStarted") == 2 and kinds.count("SpeechEnded") == 2
        assert kinds.count("TurnResult") == 2 and "Interrupted" not in kinds
        # Captions come before the reply's audio.
        assert kinds.index("Transcript") < kinds.index("AudioChunk")
        assert [e.text for e in events if isinstance(e, Transcript) and e.final] == \
            ["I had a hard day.", "My boss shouted at me."]
        ended = [e for e in events if isinstance(e, SpeechEnded)]
        assert all(e.reason == "complete" for e in ended) and 0.9 < ended[0].duration_s < 1.6
        history = await agent.history("ann", "s1")
        assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
        assert not any(m.interrupted for m in history)


async def test_speaking_over_the_reply_stops_it_and_keeps_only_what_was_said(settings):
    long_reply = "That sounds really hard. " + "Tell me more about what happened at work today. " * 3
    agent = await talk_agent(settings, [long_reply, "Of course, go on."], ["I had a hard day.", "Wait, listen."])
    async with agent:
        # The reply's audio is about 8 s; the person talks over it 2.5 s after their turn ended.
        audio = np.concatenate([silence(0.3), tone(1.0), silence(2.5), tone(1.0), silence(3.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=SilenceOnly())
        stops = [e for e in events if isinstance(e, Interrupted)]
        assert len(stops) == 1
        assert stops[0].spoken and stops[0].unspoken
        assert long_reply.startswith(stops[0].spoken.rstrip("…").strip()[:20])
        # The fake model finished generating at once: the interruption came during playback,
        # after the turn's result, and the history was corrected afterwards.  It started the next turn.
        assert sum(isinstance(e, TurnResult) for e in events) == 2
        after = events[events.index(stops[0]):]
        assert any(isinstance(e, SpeechEnded) for e in after) and isinstance(events[-1], TurnResult)
        history = await agent.history("ann", "s1")
        assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
        assert history[1].interrupted and history[1].content == stops[0].spoken
        assert len(history[1].content) < len(long_reply)
        assert history[2].content == "Wait, listen." and not history[3].interrupted


async def test_noise_without_words_gives_no_turn_and_the_conversation_goes_on(settings):
    agent = await talk_agent(settings, ["I hear you."], ["", "I am still here."])
    async with agent:
        audio = np.concatenate([tone(0.5), silence(2.0), tone(0.8), silence(3.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=SilenceOnly())
        assert isinstance(next(e for e in events if isinstance(e, (TurnSkipped, TurnResult))), TurnSkipped)
        assert isinstance(events[-1], TurnResult)
        assert [m.content for m in await agent.history("ann", "s1")] == ["I am still here.", "I hear you."]


async def test_silence_only_gives_no_turn(settings):
    agent = await talk_agent(settings, ["I hear you."], ["hello"])
    async with agent:
        events = await collect(agent, silence(2.0), vad=EnergyVAD(), turn_end=SilenceOnly())
        assert events == []
        assert await agent.history("ann", "s1") == []


async def test_talk_mode_needs_a_voice_or_text_replies(settings):
    services = build_services(settings, llm=FakeLLM(), text_encoder=None, memory=None, speech=None, face=None,
                              tts=None)
    async with await open_talk_agent(settings, services) as agent:
        with pytest.raises(ConfigError, match="EMPATHIC_SPEAK_REPLIES"):
            async for _ in agent.converse("ann", "s1", paced(silence(0.1))):
                pass
        with pytest.raises(InputError, match="16 kHz"):
            async for _ in agent.converse("ann", "s1", paced(silence(0.1)), sample_rate=44100, speak=False):
                pass


def test_audio_chunks_are_agent_events():
    # The session passes the turn's own events through unchanged (the UI and API know them).
    assert AudioChunk.__module__ == "empathic_agent.agent"


async def test_resuming_before_the_reply_is_heard_makes_one_turn_of_both_utterances(settings):
    # A slow model: the person goes on speaking before any of the reply was played.
    services = build_services(settings, llm=FakeLLM(["That sounds really hard. Tell me more."], delay_s=0.2),
                              text_encoder=None, memory=None, face=None,
                              speech=FakeSpeechPerception(FakeSTT(["I had a hard day", "I had a hard day at work."])),
                              tts=FakeTTS(seconds_per_char=0.05))
    async with await open_talk_agent(settings, services) as agent:
        audio = np.concatenate([silence(0.3), tone(1.0), silence(0.5), tone(1.0), silence(3.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=SilenceOnly())
        stops = [e for e in events if isinstance(e, Interrupted)]
        assert len(stops) == 1 and stops[0].spoken == ""
        ended = [e for e in events if isinstance(e, SpeechEnded)]
        # The second turn is both utterances (and the pause between them).
        assert len(ended) == 2 and ended[1].duration_s > 2.0
        results = [e for e in events if isinstance(e, TurnResult)]
        assert len(results) == 1 and results[0].user_text == "I had a hard day at work."
        history = await agent.history("ann", "s1")
        assert [(m.role, m.content) for m in history][0] == ("user", "I had a hard day at work.")
        assert [m.role for m in history] == ["user", "assistant"]


class Doubtful(SilenceOnly):
    """An end-of-turn model that doubts every pause: turns end after the longest pause only."""

    def complete_probability(self, audio: np.ndarray) -> float:
        return 0.0


async def test_whisper_starts_in_the_pause_and_only_a_current_early_transcript_is_used(settings):
    stt = FakeSTT(["I had a hard", "I had a hard day at work."])
    services = build_services(settings, llm=FakeLLM(["That sounds hard."]), text_encoder=None, memory=None,
                              face=None, speech=FakeSpeechPerception(stt), tts=FakeTTS(seconds_per_char=0.01))
    async with await open_talk_agent(settings, services) as agent:
        # A 0.5 s pause mid-sentence (the early run there goes stale: the person goes on), then
        # the end: the early run of the final pause is the turn's, and Whisper does not run again.
        audio = np.concatenate([silence(0.3), tone(1.0), silence(0.5), tone(1.0), silence(3.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=Doubtful())
        ended = [e for e in events if isinstance(e, SpeechEnded)]
        assert len(ended) == 1 and ended[0].reason == "pause"
        result = next(e for e in events if isinstance(e, TurnResult))
        assert result.user_text == "I had a hard day at work."
        assert result.heard["timings"].get("stt_early") == 1.0
        # The words so far are captioned in each pause (partial), then the turn's final words.
        assert [(e.text, e.final) for e in events if isinstance(e, Transcript)] == [
            ("I had a hard", False), ("I had a hard day at work.", False), ("I had a hard day at work.", True)]
        assert len(stt.clips) == 2
        # The early run had the whole utterance (both tones), without the silence the end waited
        # through (decoding trims silence to a 0.15 s margin either way).
        assert 2.0 < stt.clips[1].duration_s < ended[0].duration_s - 0.9


# -- the WebSocket ----------------------------------------------------------------------------------

@pytest.fixture
def talk_api(settings, tmp_path):
    from fastapi.testclient import TestClient

    from empathic_agent.api.keys import KeyStore
    from empathic_agent.api.server import ApiLimits, create_api

    services = build_services(settings, llm=FakeLLM(["That sounds hard. I am here."]), text_encoder=None, memory=None,
                              speech=FakeSpeechPerception(FakeSTT(["I had a hard day."])), face=None,
                              tts=FakeTTS(seconds_per_char=0.02))
    agent = Agent(services, checkpointer=InMemorySaver())
    keys = KeyStore(tmp_path / "api.sqlite")
    app = create_api(settings, agent=agent, keys=keys, limits=ApiLimits(rate_per_minute=6000, burst=200),
                     talk_models=(EnergyVAD(), SilenceOnly()))
    key_a, key_b = keys.create_key("app-a"), keys.create_key("app-b")
    with TestClient(app) as client:
        yield client, key_a, key_b, agent


def _pcm(audio: np.ndarray) -> bytes:
    return (audio * 32767).astype("<i2").tobytes()


def test_websocket_turn_with_audio_out_and_app_scoping(talk_api):
    import json as _json

    from empathic_agent.api.keys import scoped_user

    client, key_a, key_b, agent = talk_api
    with client.websocket_connect("/v1/converse", headers={"Authorization": f"Bearer {key_a}"}) as ws:
        ws.send_text(_json.dumps({"type": "start", "user_id": "ann", "session_id": "s1", "sample_rate": 48000}))
        assert _json.loads(ws.receive_text()) == {"type": "ready"}
        audio = np.repeat(np.concatenate([silence(0.3), tone(1.0), silence(1.0)]), 3)  # 48 kHz
        for i in range(0, audio.size, 4800):
            ws.send_bytes(_pcm(audio[i:i + 4800]))
        ws.send_text(_json.dumps({"type": "end"}))
        events, pcm = [], []
        while True:
            message = ws.receive()
            if message["type"] == "websocket.close":
                break
            if message.get("bytes") is not None:
                pcm.append(message["bytes"])
                continue
            events.append(_json.loads(message["text"]))
    kinds = [e["type"] for e in events]
    kinds = [k for k, e in zip(kinds, events) if e.get("final", True)]  # partial captions aside
    assert kinds[:3] == ["speech_started", "speech_ended", "transcript"] and kinds[-1] == "result"
    headers = [e for e in events if e["type"] == "audio"]
    assert headers and len(pcm) == len(headers)
    assert len(pcm[0]) == 2 * round(headers[0]["duration_s"] * headers[0]["sample_rate"])
    result = events[-1]
    assert result["user_id"] == "ann" and result["user_text"] == "I had a hard day."
    assert "audio_wav_base64" not in result
    # The conversation belongs to app-a's ann, not to any other app's.
    assert asyncio.run(agent.sessions(scoped_user("app-a", "ann"))) == ["s1"]
    assert asyncio.run(agent.sessions(scoped_user("app-b", "ann"))) == []


def test_websocket_refuses_bad_keys_and_bad_starts(talk_api):
    import json as _json

    from starlette.websockets import WebSocketDisconnect

    client, key_a, _, _ = talk_api

    def first_error(start, headers=None):
        with client.websocket_connect("/v1/converse", headers=headers or {}) as ws:
            ws.send_text(_json.dumps(start))
            error = _json.loads(ws.receive_text())
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            return error["error"]["type"], closed.value.code

    start = {"type": "start", "user_id": "ann", "session_id": "s1"}
    assert first_error(start) == ("unauthorized", 4401)
    assert first_error({**start, "api_key": "nonsense"}) == ("unauthorized", 4401)
    # A browser sends the key in the start message.
    assert first_error({**start, "api_key": key_a, "sample_rate": 44100}) == ("bad_request", 4400)
    assert first_error({**start, "user_id": "../x"}, {"X-API-Key": key_a}) == ("bad_request", 4400)
    assert first_error({"type": "hello"}, {"X-API-Key": key_a}) == ("bad_request", 4400)


def test_websocket_client_leaving_mid_reply_leaves_the_conversation_usable(talk_api):
    import json as _json

    from empathic_agent.api.keys import scoped_user

    client, key_a, _, agent = talk_api

    def talk(session: str, leave_early: bool) -> list[str]:
        kinds = []
        with client.websocket_connect("/v1/converse", headers={"X-API-Key": key_a}) as ws:
            ws.send_text(_json.dumps({"type": "start", "user_id": "ann", "session_id": session}))
            assert _json.loads(ws.receive_text())["type"] == "ready"
            for i in range(0, 16000 * 2, 1600):
                ws.send_bytes(_pcm(np.concatenate([silence(0.3), tone(1.0), silence(0.7)])[i:i + 1600]))
            ws.send_text(_json.dumps({"type": "end"}))
            while True:
                message = ws.receive()
                if message["type"] == "websocket.close" or message.get("text") is None:
                    if leave_early and kinds and kinds[-1] == "audio":
                        break  # the client goes away while the reply plays
                    if message["type"] == "websocket.close":
                        break
                    continue
                kinds.append(_json.loads(message["text"])["type"])
                if leave_early and kinds[-1] == "audio":
                    break
        return kinds

    assert "audio" in talk("s1", leave_early=True)
    # The next connection to the same conversation works, and the history holds whole exchanges.
    kinds = talk("s1", leave_early=False)
    assert kinds[-1] == "result"
    history = asyncio.run(agent.history(scoped_user("app-a", "ann"), "s1"))
    assert history[-1].role == "assistant" and history[-2].role == "user"


class FirstCallFails(FakeSTT):
    """A transcriber whose first run (the early one, in the pause) fails."""

    def _transcribe_impl(self, clip, options):
        if not self.clips:
            self.clips.append(clip)
            raise ModelError("the model went away for a moment")
        return super()._transcribe_impl(clip, options)


async def test_a_failed_early_transcription_is_done_again_and_the_turn_is_answered(settings):
    stt = FirstCallFails(["(lost)", "I had a hard day at work."])
    services = build_services(settings, llm=FakeLLM(["That sounds hard."]), text_encoder=None, memory=None,
                              face=None, speech=FakeSpeechPerception(stt), tts=FakeTTS(seconds_per_char=0.01))
    async with await open_talk_agent(settings, services) as agent:
        audio = np.concatenate([silence(0.3), tone(1.0), silence(3.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=SilenceOnly())
        results = [e for e in events if isinstance(e, TurnResult)]
        assert len(results) == 1, events
        assert results[0].user_text == "I had a hard day at work." and len(stt.clips) == 2


def test_speech_perception_reuses_an_early_transcript_and_redoes_a_failed_one():
    import concurrent.futures

    from empathic_agent.encode.speech.encoder import SpeechAnalysis, SpeechEncoder
    from empathic_agent.latent import Reading
    from empathic_agent.perceive.speech import SpeechPerception
    from empathic_agent.perceive.stt import Transcript as Words

    class QuietEncoder(SpeechEncoder):
        def analyze(self, x, user_id=None, *, update_baseline=True, mel=None):
            return SpeechAnalysis(Reading.uninformative("speech"), "ok", "none")

    stt = FakeSTT(["transcribed now"])
    perception = SpeechPerception(stt, QuietEncoder(), parallel=False)
    clip = (SAMPLE_RATE, np.concatenate([silence(0.2), tone(1.0), silence(0.3)]))
    done = concurrent.futures.Future()
    done.set_result(Words(text="heard in the pause", language="en", language_probability=1.0))
    early = perception.perceive(clip, "ann", transcript=done)
    assert early.text == "heard in the pause" and early.timings["stt_early"] == 1.0 and not stt.clips
    failed = concurrent.futures.Future()
    failed.set_exception(ModelError("the model went away"))
    again = perception.perceive(clip, "ann", transcript=failed)
    assert again.text == "transcribed now" and "stt_s" in again.timings and len(stt.clips) == 1
    assert perception.transcribe_soon(clip).result().text == "transcribed now"


async def test_an_interrupted_turn_that_was_remembered_keeps_only_what_was_heard(settings, tmp_path):
    from empathic_agent.memory import MemoryService
    from empathic_agent.memory.store import MemoryStore
    from empathic_agent.testing import FakeEmbedder

    long_reply = "That sounds really hard. " + "Tell me more about what happened at work today. " * 3
    memory = MemoryService(MemoryStore.open_embedded(tmp_path / "chroma"), FakeEmbedder(), extract=False)
    services = build_services(settings, llm=FakeLLM([long_reply, "Of course, go on."]), text_encoder=None,
                              memory=memory, face=None,
                              speech=FakeSpeechPerception(FakeSTT(["I had a hard day at work.", "Wait, listen."])),
                              tts=FakeTTS(seconds_per_char=0.05))
    async with await open_talk_agent(settings, services) as agent:
        audio = np.concatenate([silence(0.3), tone(1.0), silence(2.5), tone(1.0), silence(3.0)])
        events = await collect(agent, audio, vad=EnergyVAD(), turn_end=SilenceOnly())
        stop = next(e for e in events if isinstance(e, Interrupted))
        first = [m for m in memory.list_memories("ann") if m.text == "I had a hard day at work."]
        # The turn finished (and was remembered) before the person spoke over its audio.
        assert len(first) == 1 and first[0].reply == stop.spoken and len(first[0].reply) < len(long_reply)


def test_talk_options_come_from_the_settings(settings):
    import dataclasses as dc

    opts = TalkOptions.from_settings(dc.replace(settings, talk_pause_ms=320.0, talk_barge_in_ms=500.0))
    assert (opts.pause_ms, opts.barge_in_ms, opts.max_pause_ms) == (320.0, 500.0, 1200.0)
    with pytest.raises(ConfigError, match="EMPATHIC_TALK_"):
        TalkOptions.from_settings(dc.replace(settings, talk_max_pause_ms=100.0))
