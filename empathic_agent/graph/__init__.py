"""The LangGraph turn graph: state, nodes and wiring."""

from empathic_agent.graph.builder import Services, build_graph, build_services
from empathic_agent.graph.state import StepError, TurnContext, TurnState

__all__ = ["Services", "build_graph", "build_services", "StepError", "TurnContext", "TurnState"]
