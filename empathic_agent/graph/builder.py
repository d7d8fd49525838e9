"""Wiring of the turn graph: the one block that reads like the design's flow.

    perceive -> generate

(later steps — encode, recall, plan, speak, remember, safety — slot in here). Services are built
once by :func:`build_services` and injected, so tests can pass fakes and in-memory checkpointers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph

from empathic_agent.generate.llm import LLM, load_llm
from empathic_agent.graph.nodes import make_nodes
from empathic_agent.graph.state import TurnContext, TurnState
from empathic_agent.settings import Settings

__all__ = ["Services", "build_services", "build_graph"]


@dataclass(frozen=True)
class Services:
    """Long-lived components shared by every turn and user."""

    settings: Settings
    llm: LLM


def build_services(settings: Settings, *, llm: LLM | None = None) -> Services:
    """Services from settings; pass components explicitly to override (tests pass fakes)."""
    return Services(settings=settings, llm=llm if llm is not None else load_llm(settings))


def build_graph(services: Services, *, checkpointer: Any = None) -> Any:
    """Compile the turn graph. ``checkpointer`` persists conversations (None: LangGraph decides)."""
    nodes = make_nodes(services)
    g = StateGraph(TurnState, context_schema=TurnContext)
    g.add_node("perceive", nodes["perceive"])
    g.add_node("generate", nodes["generate"])

    g.add_edge(START, "perceive")
    g.add_edge("perceive", "generate")
    g.add_edge("generate", END)
    return g.compile(checkpointer=checkpointer, name="empathic-agent")
