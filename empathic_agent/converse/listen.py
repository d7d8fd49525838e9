"""Turn taking over a stream of 32 ms frames: when the person starts speaking, when they have
finished their turn, and when they talk over the agent (barge-in).

:class:`Listener` is a pure state machine: it is fed one frame and its speech probability at a
time and returns what happened (:class:`Heard`), so its policy is tested on scripted
probabilities without any model.  The policy, with the knobs of :class:`TalkOptions`:

* speech **starts** after ``start_ms`` of frames at or above ``threshold`` (a click does not);
* a **pause** is ``pause_ms`` below ``threshold - 0.15`` (hysteresis, so a soft syllable does not
  end speech).  At a pause the end-of-turn model reads the utterance so far: P(complete) >=
  ``complete_threshold`` ends the turn there; otherwise the listener waits, and ends it anyway
  after ``max_pause_ms`` of silence (a finished sentence the model doubts still gets its answer);
* ``early_stt_ms`` into a pause the listener says so ("paused", with the utterance so far): the
  session starts Whisper then, while the pause is still being judged, and uses that transcript if
  the turn ends in this pause;
* while the agent is replying, ``barge_in_ms`` of speech is an **interruption** (voiced frames add
  up and quiet ones take one away each, so words with gaps count and a cough or a short "mm-hm"
  fades out); what was said over the reply starts the next turn, and speech still going on when
  the reply ends is not lost either;
* an utterance longer than ``max_utterance_s`` is cut there and answered (the UI says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Final

import numpy as np

from empathic_agent.converse.models import FRAME, SAMPLE_RATE

__all__ = ["TalkOptions", "Heard", "Listener", "FRAME_MS"]

FRAME_MS: Final[float] = 1000.0 * FRAME / SAMPLE_RATE
#: Speech over the reply kept before an interruption is confirmed (its words start the next turn).
_OVERLAP_MS: Final[float] = 1500.0


@dataclass(frozen=True)
class TalkOptions:
    """Turn-taking knobs (milliseconds unless named otherwise); defaults measured on synthetic
    speech with pauses (``empathic bench voice``)."""

    threshold: float = 0.5
    start_ms: float = 96.0
    pause_ms: float = 256.0
    max_pause_ms: float = 1200.0
    complete_threshold: float = 0.5
    barge_in_ms: float = 384.0
    #: Audio kept before speech starts, so the first syllable is not clipped.
    preroll_ms: float = 192.0
    max_utterance_s: float = 120.0
    #: Silence after which transcription starts on the utterance so far, before the end of the
    #: turn is decided (the turn then gets its words ~pause_ms sooner); None: only at the end.
    #: Shorter wastes Whisper runs on the gaps between phrases.
    early_stt_ms: float | None = 96.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.max_pause_ms < self.pause_ms:
            raise ValueError(f"max_pause_ms ({self.max_pause_ms}) must be >= pause_ms ({self.pause_ms})")
        for name in ("start_ms", "pause_ms", "barge_in_ms", "preroll_ms", "max_utterance_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.early_stt_ms is not None and not 0 <= self.early_stt_ms < self.max_pause_ms:
            raise ValueError(f"early_stt_ms must be in [0, max_pause_ms), or None; got {self.early_stt_ms}")

    @classmethod
    def from_settings(cls, settings: Any) -> "TalkOptions":
        """The options set in ``Settings`` (``talk_*``), the rest at their defaults; a
        :class:`ConfigError` names what is wrong."""
        from empathic_agent.errors import ConfigError

        try:
            return cls(pause_ms=settings.talk_pause_ms, max_pause_ms=settings.talk_max_pause_ms,
                       barge_in_ms=settings.talk_barge_in_ms)
        except ValueError as exc:
            raise ConfigError(f"talk mode settings (EMPATHIC_TALK_*): {exc}") from exc

    def frames(self, ms: float) -> int:
        return max(1, int(round(ms / FRAME_MS)))


@dataclass(frozen=True)
class Heard:
    """What one frame changed: ``event`` is "speech_started", "turn_ended" (with the utterance's
    16 kHz ``audio`` and why: "complete", "pause" or "too_long"), "paused" (``early_stt_ms`` into
    a pause, with the utterance so far), "barge_in" or "" (nothing)."""

    event: str = ""
    audio: np.ndarray | None = None
    reason: str = ""
    complete_probability: float | None = None
    #: Seconds of silence at the end of the utterance that were waited through before the end.
    silent_s: float = 0.0


class Listener:
    """The turn-taking state machine (see the module docstring).  ``complete`` is the end-of-turn
    model's hook (:meth:`~empathic_agent.converse.models.TurnEnd.complete_probability`)."""

    def __init__(self, complete: Callable[[np.ndarray], float], options: TalkOptions | None = None) -> None:
        self.options = options or TalkOptions()
        self.complete = complete
        self.replying = False
        self._preroll: list[np.ndarray] = []
        self._utterance: list[np.ndarray] = []
        self._speaking = False
        self._voiced = 0      # consecutive frames at/above the threshold
        self._silent = 0      # consecutive frames below the lower threshold, inside an utterance
        self._asked = False   # the end-of-turn model was asked during this pause
        self._barge = 0       # voiced frames while the agent replies
        self._frames_total = 0

    @property
    def speaking(self) -> bool:
        return self._speaking

    def utterance(self) -> np.ndarray:
        return np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)

    def push(self, frame: np.ndarray, p: float) -> Heard:
        o = self.options
        voiced = p >= o.threshold
        quiet = p < o.threshold - 0.15
        if self.replying:
            # Talking over the agent: only sustained speech counts.  Voiced frames add up and quiet
            # ones take away one at a time, so "Wait, stop" (words with gaps) adds up while a
            # cough fades out; nothing is a turn until the interruption is confirmed (then the
            # utterance starts with these frames).
            self._barge = self._barge + 1 if voiced else (max(0, self._barge - 1) if quiet else self._barge)
            self._keep_preroll(frame)
            if self._barge >= o.frames(o.barge_in_ms):
                self.replying = False
                self._start(overlap=True)
                return Heard("barge_in")
            return Heard()
        if self._barge:
            # The reply ended while the person was already speaking: that speech is the start of
            # their turn, not lost.
            self._voiced, self._barge = max(self._voiced, self._barge), 0
        if not self._speaking:
            self._keep_preroll(frame)
            self._voiced = self._voiced + 1 if voiced else 0
            if self._voiced >= o.frames(o.start_ms):
                self._start()
                return Heard("speech_started")
            return Heard()
        self._utterance.append(frame)
        self._frames_total += 1
        if self._frames_total * FRAME / SAMPLE_RATE >= o.max_utterance_s:
            return self._end("too_long")
        if not quiet:
            self._silent, self._asked = 0, False
            return Heard()
        self._silent += 1
        if self._silent >= o.frames(o.max_pause_ms):
            return self._end("pause")
        if self._silent >= o.frames(o.pause_ms) and not self._asked:
            self._asked = True
            prob = float(self.complete(self.utterance()))
            if prob >= o.complete_threshold:
                return self._end("complete", prob)
        if o.early_stt_ms is not None and self._silent == o.frames(o.early_stt_ms):
            return Heard("paused", audio=self.utterance(), silent_s=self._silent * FRAME / SAMPLE_RATE)
        return Heard()

    def _keep_preroll(self, frame: np.ndarray) -> None:
        self._preroll.append(frame)
        # Enough for the words said over the reply before the interruption was confirmed.
        keep = self.options.frames(self.options.preroll_ms) + self.options.frames(_OVERLAP_MS)
        del self._preroll[:-keep]

    def _start(self, *, overlap: bool = False) -> None:
        o = self.options
        self._speaking = True
        # The frames that triggered the start (and a little before) belong to the utterance; after
        # talking over the reply, all that was said over it.
        back = o.frames(o.preroll_ms) + (o.frames(_OVERLAP_MS) if overlap else max(self._voiced, self._barge))
        self._utterance = self._preroll[-back:]
        self._frames_total = len(self._utterance)
        self._preroll, self._voiced, self._barge, self._silent, self._asked = [], 0, 0, 0, False

    def _end(self, reason: str, prob: float | None = None) -> Heard:
        audio = self.utterance()
        silent_s = self._silent * FRAME / SAMPLE_RATE
        self._speaking = False
        self._utterance, self._silent, self._asked, self._frames_total = [], 0, False, 0
        return Heard("turn_ended", audio=audio, reason=reason, complete_probability=prob, silent_s=silent_s)

    def flush(self) -> Heard:
        """The stream ended: an utterance in progress is the turn."""
        if self._speaking and self._utterance:
            return self._end("stream_ended")
        return Heard()
