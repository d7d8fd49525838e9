"""LangGraph entry module (referenced from langgraph.json as ``./graphs/agent.py:graph``).

LangGraph's own tooling (``langgraph dev``, LangGraph Server) imports this module and supplies its
own checkpointer, so the graph is compiled without one here. Services are built from the
environment (``EMPATHIC_*`` variables); the LLM loads its weights on the first turn, not at import.
"""

from empathic_agent.graph import build_graph, build_services
from empathic_agent.settings import Settings

graph = build_graph(build_services(Settings.from_env()))
