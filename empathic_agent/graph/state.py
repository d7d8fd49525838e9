"""The turn graph's typed state and per-run context.

State has one field per step's output; a node returns only the keys it owns. ``messages`` is the
conversation history (persisted by the checkpointer across turns). Per-turn fields (``timings``,
``degraded``) are reset by the first node of each turn with ``Overwrite``, so they never grow
across a long conversation.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

__all__ = ["TurnState", "TurnContext", "StepError", "merge_dicts"]


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later nodes add their keys to the turn's dict."""
    return {**(left or {}), **(right or {})}


class StepError(TypedDict):
    """A step that failed and degraded instead of failing the turn."""

    step: str
    error: str
    message: str


class TurnState(TypedDict, total=False):
    # -- input of a turn (written by the caller) --------------------------------------------------
    #: The person's raw text for this turn.
    input_text: str
    #: Id of this turn (the caller's; used as the message id so a retried turn is not duplicated).
    turn_id: str
    # -- perceive -------------------------------------------------------------------------------
    #: The cleaned text of this turn (typed, or transcribed from the person's voice).
    user_text: str
    #: What was heard when the turn came as audio: transcript, language, clip facts, timings.
    heard: dict[str, Any]
    #: How the voice sounded (``Reading.to_dict()``, modality "speech"), for the encode step.
    speech_reading: dict[str, Any]
    #: What the camera showed when the turn came with image(s): frames, faces seen, each frame's
    #: box/status/timings (no pixels).
    seen: dict[str, Any]
    #: How the face looked (``Reading.to_dict()``, modality "face"; {} when no face was found).
    face_reading: dict[str, Any]
    # -- history (perceive appends the person's message; generate appends the reply) ------------
    messages: Annotated[list[AnyMessage], add_messages]
    # -- encode ---------------------------------------------------------------------------------
    #: This turn's per-modality readings (``Reading.to_dict()`` by modality).
    readings: dict[str, dict[str, Any]]
    #: The person's fused emotional state (``FusedState.to_dict()``). Persisted: the previous
    #: turn's value is the temporal prior of the next.
    emotion: dict[str, Any]
    #: Wall-clock time (epoch seconds) of ``emotion``, to widen the prior by elapsed time.
    emotion_at: float
    #: One compact entry per turn (turn id, time, fused and per-modality VAD/top category): the
    #: conversation's emotional trajectory, for the register planner and the UI's plots.
    emotion_trajectory: Annotated[list[dict[str, Any]], operator.add]
    #: Short description of the fused state, as given to the prompt.
    perception: str
    # -- safety ---------------------------------------------------------------------------------
    #: The safety stage's assessment of this turn (``SafetyAssessment.to_dict()``): crisis flag,
    #: category, score, signals; on a crisis the protocol's message and resources.
    safety: dict[str, Any]
    #: The conversation's accumulated risk (``ConversationRisk.to_dict()``): persisted, so a
    #: message is read in its conversation across turns and restarts.
    risk: dict[str, Any]
    #: The reply guard's work this turn: layers, events (category, layer, action; no content),
    #: sentences checked and the time it added.
    guard: dict[str, Any]
    # -- recall ---------------------------------------------------------------------------------
    #: Memories recalled for this turn: id, kind, text, top category, rank and per-component scores.
    memories: list[dict[str, Any]]
    #: The memories as the quoted, clearly-marked block the prompt receives ("" when none).
    memory_prompt: str
    # -- plan -----------------------------------------------------------------------------------
    #: How to answer this turn (``Register.to_dict()``): strategy, target expression, tone, pace, length.
    register: dict[str, Any]
    #: The agent's own mood (VAD), persisted across turns (decays to the persona's baseline).
    agent_mood: list[float]
    #: Strategies used in this conversation, oldest first (the planner avoids repeating itself).
    strategies: Annotated[list[str], operator.add]
    # -- generate -------------------------------------------------------------------------------
    reply: str
    #: Backend, model and timings of the generation.
    generation: dict[str, Any]
    # -- speak (runs beside generate, reading its text as it streams) ---------------------------
    #: How the reply was spoken: voice, prosody, per-sentence chunks (text, seconds), latency.
    #: The audio itself goes out through the stream (``{"type": "audio"}`` events), never into
    #: checkpoints.
    speech: dict[str, Any]
    # -- remember -------------------------------------------------------------------------------
    #: Ids of the memories this turn stored or refreshed.
    remembered: list[str]
    # -- per-turn bookkeeping (reset by perceive) -----------------------------------------------
    timings: Annotated[dict[str, float], merge_dicts]
    degraded: Annotated[list[StepError], operator.add]


@dataclass(frozen=True)
class TurnContext:
    """Per-run context: who is talking, in which session, and this turn's raw media. Media ride in
    the context, not the state, so audio bytes are never written into conversation checkpoints.
    Services live elsewhere (graph builder)."""

    user_id: str
    session_id: str
    #: The person's speech for this turn: bytes, a file path, or (sample_rate, samples).
    audio: Any = None
    #: Its words, when they were transcribed already or are under way (talk mode starts Whisper
    #: during the pause): a ``Transcript`` or a ``concurrent.futures.Future`` of one.
    transcript: Any = None
    #: The person's face for this turn: one image (bytes, path, data URL, numpy frame) or a list
    #: of a few webcam frames.
    images: Any = None
    #: Speak the reply this turn (None: ``settings.speak_replies``).
    speak: bool | None = None
    #: The reply's text as it is generated, for the speak step (an ``asyncio.Queue`` of str, closed
    #: with None); made by the caller of the graph when the reply is spoken.
    text_channel: Any = None
