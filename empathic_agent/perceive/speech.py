"""Perception of one spoken turn: the audio is decoded once, transcribed (speech-to-text) and read for
how it was said (the speech emotion encoder), in parallel; the utterance updates the speaker's baseline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.speech.encoder import SpeechAnalysis, SpeechEncoder
from empathic_agent.encode.speech.whisper_layers import WHISPER_MODEL
from empathic_agent.errors import EmpathicError
from empathic_agent.latent import Reading
from empathic_agent.perceive.audio import AudioClip, AudioError, AudioLimits, decode_audio

if TYPE_CHECKING:
    from empathic_agent.perceive.stt import STT, Transcript
    from empathic_agent.settings import Settings

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Perception of one spoken turn: words + how they were said


@dataclass(frozen=True)
class SpeechPerceptionResult:
    """What was heard in one utterance.

    Attributes:
        transcript: the words (None when the audio could not be read or STT failed).
        speech_reading: how they were said (None when the audio could not be read or the
            encoder failed; an uninformative reading for silence / too-short audio).
        clip_info: :meth:`AudioClip.info` of the decoded audio (None if it could not be read).
        timings: seconds: ``decode_s``, ``stt_s``, ``emotion_s``, ``total_s`` and the parts
            (``stt.*``, ``emotion.*``).
        errors: one message per failed stage ("audio: ...", "stt: ...", "speech_emotion: ...");
            a failed stage never raises from :meth:`SpeechPerception.perceive`.
        analysis: the speech encoder's :class:`SpeechAnalysis` (head, baseline, doubt).
    """

    transcript: "Transcript | None"
    speech_reading: Reading | None
    clip_info: dict[str, Any] | None
    timings: dict[str, float]
    errors: tuple[str, ...] = ()
    analysis: SpeechAnalysis | None = None

    @property
    def text(self) -> str:
        """The transcript's text ("" when nothing was understood)."""
        return self.transcript.text if self.transcript is not None else ""

    @property
    def heard_speech(self) -> bool:
        """True when there were words."""
        return bool(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transcript": self.transcript.to_dict() if self.transcript is not None else None,
            "speech_reading": self.speech_reading.to_dict() if self.speech_reading is not None else None,
            "clip": self.clip_info,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "errors": list(self.errors),
            "analysis": self.analysis.to_dict() if self.analysis is not None else None,
        }


class SpeechPerception:
    """Audio of one turn -> transcript + speech reading (blocking; see :meth:`aperceive`).

    Built from long-lived services (an :class:`~empathic_agent.perceive.stt.STT` backend and a
    :class:`SpeechEncoder`), so tests can pass fakes; :meth:`from_settings` builds the defaults.
    The audio is decoded once; the Whisper log-mel spectrogram is shared between transcription
    and the emotion features; the utterance updates the user's voice baseline.
    """

    def __init__(self, stt: "STT", encoder: SpeechEncoder, *, limits: AudioLimits | None = None,
                 parallel: bool = True) -> None:
        self.stt = stt
        self.encoder = encoder
        self.limits = limits or AudioLimits()
        #: Read the emotion in a worker thread while transcribing (see :meth:`perceive`).
        self.parallel = parallel
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings", *, persist_baselines: bool = True) -> "SpeechPerception":
        from empathic_agent.perceive.stt import load_stt

        return cls(load_stt(settings), SpeechEncoder.from_settings(settings, persist_baselines=persist_baselines))

    def load(self) -> None:
        """Load both models now (otherwise the first turn does)."""
        self.stt.load()
        self.encoder.load()

    def _shared_mel(self, clip: AudioClip) -> NDArray[np.float32] | None:
        """The transcriber's log-mel spectrogram of the clip, if it is Whisper-base's."""
        runtime = getattr(self.stt, "runtime", None)
        if runtime is None or getattr(self.stt, "model_name", None) != WHISPER_MODEL:
            return None
        return runtime.log_mel(clip.samples)

    def transcribe_soon(self, audio: Any, *, language: str | None = None
                        ) -> "concurrent.futures.Future[Transcript]":
        """Start transcribing ``audio`` in a worker thread, exactly as :meth:`perceive` would;
        hand the future to :meth:`perceive` as ``transcript`` (talk mode starts Whisper while it
        is still deciding whether a pause ends the turn)."""
        from empathic_agent.perceive.stt import TranscribeOptions

        def work() -> "Transcript":
            return self.stt.transcribe(decode_audio(audio, limits=self.limits), TranscribeOptions(language=language))
        return self._pool().submit(work)

    def perceive(self, audio: Any, user_id: str | None = None, *, language: str | None = None,
                 update_baseline: bool = True,
                 transcript: "Transcript | concurrent.futures.Future[Transcript] | None" = None
                 ) -> SpeechPerceptionResult:
        """Transcribe and read one utterance.  Never raises for bad audio or a failed stage:
        the result's ``errors`` say what went wrong (wrong-type arguments still raise).

        ``transcript``: the utterance's words already transcribed, or under way
        (:meth:`transcribe_soon`, of the same utterance, possibly without its trailing
        silence); Whisper then does not run again.
        """
        from empathic_agent.perceive.stt import TranscribeOptions

        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        errors: list[str] = []
        try:
            clip = decode_audio(audio, limits=self.limits)
        except AudioError as exc:
            timings["decode_s"] = timings["total_s"] = time.perf_counter() - t0
            return SpeechPerceptionResult(None, None, None, timings, (f"audio: {exc}",))
        timings["decode_s"] = time.perf_counter() - t0

        mel = None
        if clip.usable:
            try:
                self.stt.load()
                mel = self._shared_mel(clip)
            except EmpathicError as exc:  # reported by the transcription below
                log.debug("speech perception: no shared spectrogram: %s", exc)

        def transcribe() -> tuple["Transcript | None", dict[str, float], list[str]]:
            t = time.perf_counter()
            try:
                if isinstance(transcript, concurrent.futures.Future):
                    try:
                        tr = transcript.result()
                    except Exception as exc:  # noqa: BLE001 — the early run failed: transcribe now
                        log.warning("speech perception: the early transcription failed (%s); transcribing again", exc)
                    else:
                        return tr, {**{f"stt.{k}": v for k, v in tr.timings.items()},
                                    "stt_wait_s": time.perf_counter() - t, "stt_early": 1.0}, []
                elif transcript is not None:
                    return transcript, {"stt_wait_s": 0.0, "stt_early": 1.0}, []
                tr = self.stt.transcribe(clip, TranscribeOptions(language=language))
                return tr, {**{f"stt.{k}": v for k, v in tr.timings.items()},
                            "stt_s": time.perf_counter() - t}, []
            except EmpathicError as exc:
                log.warning("speech perception: transcription failed: %s", exc)
                return None, {"stt_s": time.perf_counter() - t}, [f"stt: {exc}"]

        def read() -> tuple[SpeechAnalysis | None, dict[str, float], list[str]]:
            t = time.perf_counter()
            try:
                an = self.encoder.analyze(clip, user_id, update_baseline=update_baseline, mel=mel)
                return an, {**{f"emotion.{k}": v for k, v in an.timings.items()},
                            "emotion_s": time.perf_counter() - t}, \
                    ([f"speech_emotion: {an.error}"] if an.error else [])
            except EmpathicError as exc:
                log.warning("speech perception: speech emotion failed: %s", exc)
                return None, {"emotion_s": time.perf_counter() - t}, [f"speech_emotion: {exc}"]

        if self.parallel and clip.usable:
            # The emotion features run in a worker thread while Whisper decodes: CTranslate2
            # releases the GIL, so the two overlap instead of adding up.
            future = self._pool().submit(read)
            words, t_stt, e_stt = transcribe()
            analysis, t_emo, e_emo = future.result()
        else:
            words, t_stt, e_stt = transcribe()
            analysis, t_emo, e_emo = read()
        timings.update(t_stt)
        timings.update(t_emo)
        errors += e_stt + e_emo
        timings["total_s"] = time.perf_counter() - t0
        return SpeechPerceptionResult(words, analysis.reading if analysis is not None else None,
                                      clip.info(), timings, tuple(errors), analysis)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="speech")
            return self._executor

    def close(self) -> None:
        """Stop the worker thread (safe to call twice)."""
        with self._pool_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def aperceive(self, audio: Any, user_id: str | None = None, *, language: str | None = None,
                        update_baseline: bool = True) -> SpeechPerceptionResult:
        """:meth:`perceive` in a worker thread (keeps the event loop free)."""
        return await asyncio.to_thread(self.perceive, audio, user_id, language=language,
                                       update_baseline=update_baseline)

    def export_user(self, user_id: str) -> dict[str, Any] | None:
        """The user's voice baseline as plain JSON (for a data export), or None."""
        return self.encoder.export_baseline(user_id)

    def forget_user(self, user_id: str) -> bool:
        """Erase the user's voice baseline (True if there was one)."""
        return self.encoder.delete_baseline(user_id)
