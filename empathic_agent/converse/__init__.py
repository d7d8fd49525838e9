"""Talk mode: a spoken conversation over a live audio stream.

* :mod:`~empathic_agent.converse.models` — the listening models: voice activity (Silero VAD) and
  end of turn (Smart Turn), ONNX files from a registry package, each behind a one-hook base class;
* :mod:`~empathic_agent.converse.listen` — turn taking over 32 ms frames (:class:`TalkOptions`,
  the :class:`Listener` state machine: speech start, end of turn, barge-in);
* :mod:`~empathic_agent.converse.session` — :func:`converse`, behind ``Agent.converse``: frames in,
  events out, each turn through the agent's graph, interruptions recorded as spoken;
* :mod:`~empathic_agent.converse.events` — the typed events (and their JSON for the WebSocket).

Nothing heavy is imported here: onnxruntime loads with the first conversation.
"""

from empathic_agent.converse.events import (
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    Transcript,
    TurnFailed,
    TurnSkipped,
)
from empathic_agent.converse.listen import Heard, Listener, TalkOptions

__all__ = ["TalkOptions", "Listener", "Heard", "SpeechStarted", "SpeechEnded", "Transcript", "Interrupted",
           "TurnSkipped", "TurnFailed"]
