"""Empathic Agent — a framework for empathetic conversational agents.

The package root imports nothing heavy (no torch, no transformers, no LangGraph): backends are
imported lazily when first used, so ``import empathic_agent`` stays fast. Start with::

    from empathic_agent import Settings
    from empathic_agent.agent import Agent
"""

from empathic_agent.errors import EmpathicError
from empathic_agent.settings import Settings

__version__ = "0.1.0"

__all__ = ["EmpathicError", "Settings", "__version__"]
