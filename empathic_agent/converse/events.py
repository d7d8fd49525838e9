"""What a spoken conversation reports, in order (typed, frozen; ``to_dict`` is the WebSocket's JSON).

A turn: :class:`SpeechStarted` -> (partial :class:`Transcript` in its pauses) -> :class:`SpeechEnded`
-> :class:`Transcript` -> the agent's
``TextChunk`` / ``AudioChunk`` events -> its ``TurnResult``.  Speech during the reply that lasts
long enough gives :class:`Interrupted` (playback must stop; the history keeps only what was
spoken) and starts the next turn.  :class:`TurnSkipped` and :class:`TurnFailed` end a turn that
produced no reply (noise with no words; an error, with the conversation intact).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["SpeechStarted", "SpeechEnded", "Transcript", "Interrupted", "TurnSkipped", "TurnFailed"]


@dataclass(frozen=True)
class _Event:
    def to_dict(self) -> dict[str, object]:
        kind = type(self).__name__
        return {"type": "".join("_" + c.lower() if c.isupper() else c for c in kind).lstrip("_"), **asdict(self)}


@dataclass(frozen=True)
class SpeechStarted(_Event):
    """The person started speaking, ``at_s`` seconds into the stream."""

    at_s: float


@dataclass(frozen=True)
class SpeechEnded(_Event):
    """The person's turn ended: ``reason`` "complete" (the end-of-turn model heard a finished
    turn at a pause), "pause" (a long pause), "too_long" or "stream_ended"."""

    at_s: float
    duration_s: float
    reason: str
    complete_probability: float | None = None
    #: When the voice stopped (stream seconds): ``at_s`` minus the silence waited through.
    voice_end_s: float | None = None


@dataclass(frozen=True)
class Transcript(_Event):
    """What was heard (``final``: Whisper on the whole utterance; a partial one, ``final``
    False, has the words so far, transcribed in a pause the turn did not end at)."""

    text: str
    final: bool = True


@dataclass(frozen=True)
class Interrupted(_Event):
    """The person spoke over the reply: stop playback now.  ``spoken`` is what had been played
    (kept in the history, marked interrupted); ``unspoken`` what was not."""

    at_s: float
    spoken: str
    unspoken: str


@dataclass(frozen=True)
class TurnSkipped(_Event):
    """A turn that gave no reply because there was nothing to answer (no words recognised)."""

    reason: str


@dataclass(frozen=True)
class TurnFailed(_Event):
    """A turn that failed; the conversation is intact and the next turn can follow."""

    error: str
    message: str
