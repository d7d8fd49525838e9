"""Errors of the memory subsystem, in the project's hierarchy (`empathic_agent.errors`).

Chroma and transformers exceptions are translated into these at the store/embedder boundary, so
the graph's recall/remember steps catch one family and degrade instead of crashing the turn.
Invalid user, session, turn and memory ids raise the project's :class:`~empathic_agent.errors.InputError`.
"""

from __future__ import annotations

from empathic_agent.errors import EmpathicError, ModelError

__all__ = ["MemoryStoreError", "MemoryStoreUnavailableError", "EmbeddingError"]


class MemoryStoreError(EmpathicError):
    """The memory store failed to read or write (the message names the operation)."""


class MemoryStoreUnavailableError(MemoryStoreError):
    """The memory store cannot be reached (Chroma server down, store directory unusable)."""


class EmbeddingError(ModelError):
    """The sentence-embedding model failed to load or to embed a batch."""
