"""A spoken conversation over a live audio stream: listen, answer when the person has finished,
stop when they talk over the reply.

    async for event in agent.converse("alice", "s1", microphone_frames()):
        ...  # SpeechStarted, SpeechEnded, Transcript, TextChunk, AudioChunk, TurnResult, Interrupted

One loop reads the frames (re-cut to 32 ms at 16 kHz), asks the voice-activity model about each
and feeds the :class:`~empathic_agent.converse.listen.Listener`.  A finished turn runs as a task
through the same graph as every other turn (``Agent.stream`` with the utterance as audio: Whisper,
speech emotion with the per-speaker baseline, perception, safety, plan, the LLM, the reply guard
and sentence-by-sentence speech), while the loop keeps listening.  Its events come out as they
happen.  Whisper starts early, on the utterance so far, a moment into each pause
(``TalkOptions.early_stt_ms``); if the pause ends the turn, the turn uses those words and does not
wait for a transcription that starts only at the decision.

**Playback clock.**  The agent does not play audio; the app does.  The session assumes the app
plays each ``AudioChunk`` as soon as it arrives, back to back, and keeps that schedule on the
*stream's* clock (samples received), so "what had been spoken when the person interrupted" is
measured on the same clock as the interruption itself.

**Barge-in.**  Speech during the reply for ``barge_in_ms`` cancels the turn's task (generation and
synthesis stop), yields :class:`Interrupted` and records in the history only the words played so
far, marked interrupted (:meth:`Agent.record_interrupted`).  If the person resumes before any of the
reply was played — they had only paused — the reply is dropped and the two utterances are answered
as one turn (under the same turn id, so the history keeps one message).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import numpy as np

from empathic_agent.converse.events import (
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    TurnFailed,
    TurnSkipped,
)
from empathic_agent.converse.listen import Listener, TalkOptions
from empathic_agent.converse.models import FRAME, SAMPLE_RATE, SileroVAD, SmartTurn, TurnEnd, VoiceActivity
from empathic_agent.errors import ConfigError, EmpathicError, EmptyInputError, InputError

__all__ = ["converse", "pcm_to_float", "check_sample_rate"]

log = logging.getLogger(__name__)

_END = object()


def pcm_to_float(chunk: Any) -> np.ndarray:
    """A chunk of mono audio as float32 in [-1, 1]: PCM16 little-endian bytes, or a numpy array
    (integers are read as PCM16, floats as they are)."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        raw = bytes(chunk)
        if len(raw) % 2:
            raise InputError(f"PCM16 audio has an even number of bytes; got a chunk of {len(raw)}")
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    x = np.asarray(chunk)
    if x.ndim != 1:
        raise InputError(f"audio chunks are mono (one dimension); got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / 32768.0
    return x.astype(np.float32)


def check_sample_rate(rate: Any) -> int:
    """The stream's sample rate as an int, or an :class:`InputError` saying what talk mode reads
    (one check for the Python API and both WebSockets)."""
    try:
        value = int(rate)
    except (TypeError, ValueError):
        value = 0
    if value < SAMPLE_RATE or value % SAMPLE_RATE:
        raise InputError(f"talk mode reads 16 kHz audio or a multiple of it (32, 48 kHz); got {rate!r} Hz")
    return value


def _to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return x
    # Browsers capture at 48 kHz (or 32 kHz): an integer multiple of 16 kHz, averaged down (a
    # box filter is enough for voice activity and Whisper).
    step = rate // SAMPLE_RATE
    n = x.size - x.size % step
    return x[:n].reshape(-1, step).mean(axis=1)


@dataclass
class _Reply:
    """The turn being answered: its task, words and the schedule of its audio on the stream clock."""

    turn_id: str
    audio: np.ndarray
    #: Its words when Whisper started during the pause (a future), else None.
    transcript: Any = None
    task: asyncio.Task[None] | None = None
    user_text: str = ""
    #: (start_s, end_s, text) of each sentence sent to the app.
    played: list[tuple[float, float, str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    done: bool = False

    def playback_end(self) -> float:
        return self.played[-1][1] if self.played else 0.0

    def spoken_at(self, t: float) -> tuple[str, str]:
        """(spoken, unspoken) of the reply at stream time ``t``: whole sentences already played,
        and of the one playing, the share of its words its elapsed time covers."""
        spoken, unspoken = [], []
        for start, end, text in self.played:
            if end <= t:
                spoken.append(text)
            elif start >= t:
                unspoken.append(text)
            else:
                words = text.split()
                k = int(len(words) * (t - start) / max(end - start, 1e-6))
                spoken.append(" ".join(words[:k]) + ("…" if k else ""))
                unspoken.append(" ".join(words[k:]))
        if not self.played:  # nothing played yet: all the text so far is unspoken
            unspoken = ["".join(self.text)]
        return " ".join(s for s in spoken if s).strip(), " ".join(u for u in unspoken if u).strip()


async def converse(agent: Any, user_id: str, session_id: str, frames: Any, *, sample_rate: int = SAMPLE_RATE,
                   options: TalkOptions | None = None, speak: bool = True, vad: VoiceActivity | None = None,
                   turn_end: TurnEnd | None = None) -> AsyncIterator[Any]:
    """See the module docstring.  ``vad`` / ``turn_end`` replace the packaged Silero VAD and
    Smart Turn models (tests; a user's own)."""
    from empathic_agent.agent import AudioChunk, TextChunk, TurnResult
    from empathic_agent.converse.events import Transcript
    from empathic_agent.ids import validate_id

    validate_id(user_id, "user id")
    validate_id(session_id, "session id")
    check_sample_rate(sample_rate)
    if speak and getattr(getattr(agent, "services", None), "tts", "absent") is None:
        raise ConfigError("talk mode speaks its replies, but this agent has no voice: set "
                          "EMPATHIC_SPEAK_REPLIES=1 (settings.speak_replies), or pass speak=False for text replies")
    settings = getattr(agent, "settings", None)
    options = options or (TalkOptions.from_settings(settings) if settings is not None else TalkOptions())
    vad = (vad or _default_vad()).fresh()
    vad.reset()
    turn_end = turn_end or _default_turn_end()
    await asyncio.to_thread(vad.load)
    await asyncio.to_thread(turn_end.load)
    listener = Listener(turn_end.complete_probability, options)
    out: asyncio.Queue[Any] = asyncio.Queue()
    clock = [0.0]  # seconds of audio received
    # "early": (samples, future) of the transcription started in the current pause.
    state: dict[str, Any] = {"reply": None, "carry": None, "early": None}
    speech = getattr(getattr(agent, "services", None), "speech", None)

    async def answer(reply: _Reply) -> None:
        try:
            async for event in agent.stream(user_id, session_id, audio=(SAMPLE_RATE, reply.audio), speak=speak,
                                            turn_id=reply.turn_id, transcripts=True, transcript=reply.transcript):
                if isinstance(event, Transcript):
                    reply.user_text = event.text
                elif isinstance(event, TextChunk):
                    reply.text.append(event.text)
                elif isinstance(event, AudioChunk):
                    start = max(clock[0], reply.playback_end())
                    reply.played.append((start, start + event.audio.duration_s, event.audio.text))
                elif isinstance(event, TurnResult):
                    reply.user_text = event.user_text
                await out.put(event)
        except asyncio.CancelledError:
            raise
        except EmptyInputError as exc:
            await out.put(TurnSkipped(str(exc)))
        except EmpathicError as exc:
            await out.put(TurnFailed(type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001 — one failed turn must not end the conversation
            log.exception("talk-mode turn failed")
            await out.put(TurnFailed(type(exc).__name__, str(exc)))
        finally:
            reply.done = True

    async def interrupt(reply: _Reply) -> None:
        if reply.task is not None and not reply.task.done():
            reply.task.cancel()
            try:
                await reply.task
            except asyncio.CancelledError:
                pass
        spoken, unspoken = reply.spoken_at(clock[0])
        if not reply.played:
            # Nothing was heard of the reply: the person had only paused.  Answer both utterances
            # together, under the same turn id (one message in the history).
            state["carry"] = reply
        elif reply.user_text:
            await agent.record_interrupted(user_id, session_id, reply.turn_id, reply.user_text, spoken)
        await out.put(Interrupted(round(clock[0], 3), spoken, unspoken))

    def hear(frame: np.ndarray) -> Any:
        return listener.push(frame, vad.speech_probability(frame))

    async def listen() -> None:
        pending = np.zeros(0, np.float32)
        try:
            async for chunk in frames:
                x = _to_16k(pcm_to_float(chunk), sample_rate)
                pending = np.concatenate([pending, x]) if pending.size else x
                while pending.size >= FRAME:
                    frame, pending = pending[:FRAME], pending[FRAME:]
                    clock[0] += FRAME / SAMPLE_RATE
                    reply = state["reply"]
                    # The agent is "speaking" from the end of a turn until its audio has played.
                    listener.replying = reply is not None and (not reply.done or clock[0] < reply.playback_end())
                    # Both listening models are ONNX calls (Smart Turn ~50 ms at a pause): off
                    # the event loop, which serves the other conversations meanwhile.
                    heard = await asyncio.to_thread(hear, frame)
                    if heard.event == "paused":
                        transcribe_early(heard.audio)
                    elif heard.event == "speech_started":
                        state["early"] = None
                        await out.put(SpeechStarted(round(clock[0] - options.start_ms / 1000, 3)))
                    elif heard.event == "barge_in":
                        state["early"] = None
                        await out.put(SpeechStarted(round(clock[0] - options.barge_in_ms / 1000, 3)))
                        await interrupt(reply)
                        state["reply"] = None
                    elif heard.event == "turn_ended":
                        await start_turn(heard)
                await asyncio.sleep(0)
            heard = listener.flush()
            if heard.event == "turn_ended":
                await start_turn(heard)
            reply = state["reply"]
            if reply is not None and reply.task is not None:
                await asyncio.shield(reply.task)
        except asyncio.CancelledError:
            reply = state["reply"]
            if reply is not None and reply.task is not None:
                reply.task.cancel()
            raise
        except EmpathicError as exc:
            await out.put(TurnFailed(type(exc).__name__, str(exc)))
        finally:
            await out.put(_END)

    def transcribe_early(audio: np.ndarray) -> None:
        """Start Whisper on the utterance so far while the pause is being judged (see
        ``TalkOptions.early_stt_ms``).  One at a time: a stale run (the person went on) still
        holds the model, and queueing another behind it would only delay the real one."""
        early = state["early"]
        if speech is None or not hasattr(speech, "transcribe_soon") or state["carry"] is not None:
            return
        if early is not None and not early[1].done():
            return
        # Padded with silence to the length a turn ending at this pause would have: decoding trims
        # silence to a 0.15 s margin, so Whisper then reads the same clip as at the end of the turn
        # (a clip cut ~0.1 s after the voice gave 1-2 more wrong words in 600, in a check on 50
        # synthetic sentences).
        pad = (options.frames(options.pause_ms) - options.frames(options.early_stt_ms or 0.0)) * FRAME
        future = speech.transcribe_soon((SAMPLE_RATE, np.concatenate([audio, np.zeros(max(0, pad), np.float32)])))
        state["early"] = (audio.size, future)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(caption_so_far, f))

    def caption_so_far(future: Any) -> None:
        """A partial caption: the early words, when they are ready before the turn ended (the
        person is still pausing, or went on); a turn that ends with them gets the final one."""
        early = state["early"]
        if early is None or early[1] is not future or future.cancelled() or future.exception() is not None:
            return
        text = future.result().text
        if text:
            out.put_nowait(Transcript(text, final=False))

    async def start_turn(heard: Any) -> None:
        audio = heard.audio
        carry: _Reply | None = state["carry"]
        state["carry"] = None
        early, state["early"] = state["early"], None
        # The early transcript is this turn's when nothing but silence came after it.
        transcript = early[1] if (early is not None and carry is None
                                  and audio.size - early[0] <= round(heard.silent_s * SAMPLE_RATE)) else None
        turn_id = uuid.uuid4().hex
        if carry is not None:
            audio, turn_id = np.concatenate([carry.audio, audio]), carry.turn_id
        await out.put(SpeechEnded(round(clock[0], 3), round(audio.size / SAMPLE_RATE, 3), heard.reason,
                                  heard.complete_probability, round(clock[0] - heard.silent_s, 3)))
        reply = _Reply(turn_id=turn_id, audio=audio, transcript=transcript)
        reply.task = asyncio.create_task(answer(reply))
        state["reply"] = reply

    listening = asyncio.create_task(listen())
    try:
        while True:
            event = await out.get()
            if event is _END:
                break
            yield event
    finally:
        if not listening.done():
            listening.cancel()
            try:
                await listening
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 — closing
                pass


_MODELS: dict[str, Any] = {}


def _default_vad() -> VoiceActivity:
    # One loaded ONNX session shared by every conversation (each gets its own recurrent state).
    if "vad" not in _MODELS:
        _MODELS["vad"] = SileroVAD()
    vad: VoiceActivity = _MODELS["vad"]
    return vad


def _default_turn_end() -> TurnEnd:
    if "turn" not in _MODELS:
        _MODELS["turn"] = SmartTurn()
    turn: TurnEnd = _MODELS["turn"]
    return turn
