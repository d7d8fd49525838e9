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
    #: The cleaned text of this turn.
    user_text: str
    # -- history (perceive appends the person's message; generate appends the reply) ------------
    messages: Annotated[list[AnyMessage], add_messages]
    # -- generate -------------------------------------------------------------------------------
    reply: str
    #: Backend, model and timings of the generation.
    generation: dict[str, Any]
    # -- per-turn bookkeeping (reset by perceive) -----------------------------------------------
    timings: Annotated[dict[str, float], merge_dicts]
    degraded: Annotated[list[StepError], operator.add]


@dataclass(frozen=True)
class TurnContext:
    """Per-run context: who is talking, in which session. Services live elsewhere (graph builder)."""

    user_id: str
    session_id: str
