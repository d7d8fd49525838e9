"""Mood-congruent long-term memory (the turn's ``recall`` and ``remember`` steps,
docs/architecture.md).

The agent remembers each person across sessions in Chroma and recalls what matters *now*, by
meaning and by mood (mood-dependent memory; improving on the *Emotional RAG* paper's combination
and sequential strategies, plus a mood-repair option for therapeutic personas).

Modules, in the order of the data:

* ``record``     - :class:`MemoryRecord` (text, embedding, emotion at encoding time, ids, kind,
                   salience, timestamps) and its Chroma metadata form;
* ``embedder``   - :class:`Embedder` base class, :class:`MiniLMEmbedder` (all-MiniLM-L6-v2, offline);
* ``store``      - :class:`MemoryStore`: one Chroma collection per person, isolation enforced here;
                   embedded (``PersistentClient``) or client/server (``HttpClient``);
* ``strategies`` - scoring: semantic, combination, sequential, mood_repair (+ recency and salience);
* ``extract``    - simple fact/preference extraction from the person's words;
* ``prompt``     - :func:`format_memories_for_prompt`: memories quoted as inert data;
* ``service``    - :class:`MemoryService`, the API the graph and the CLI use;
* ``evaluate``   - retrieval benchmark on EmoBank / GoEmotions (``empathic memory eval``);
* ``bench``      - latency/throughput benchmark (``empathic memory bench``).

Importing this package is cheap: chromadb and torch are imported only when a store is opened or a
model is loaded.  All service methods are blocking; call them with ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

from empathic_agent.memory.embedder import (
    Embedder,
    EmbeddingStats,
    MiniLMEmbedder,
    available_embedders,
    load_embedder,
    register_embedder,
)
from empathic_agent.memory.errors import EmbeddingError, MemoryStoreError, MemoryStoreUnavailableError
from empathic_agent.memory.extract import Extraction, extract_facts
from empathic_agent.memory.prompt import MEMORY_HEADER, format_memories_for_prompt
from empathic_agent.memory.record import (
    KIND_EPISODE,
    KIND_FACT,
    KIND_PREFERENCE,
    KINDS,
    MAX_MEMORY_CHARS,
    MemoryRecord,
    emotional_salience,
)
from empathic_agent.memory.service import MemoryService, RememberResult
from empathic_agent.memory.store import MEMORY_BACKENDS, MemoryStore, collection_name_for
from empathic_agent.memory.strategies import (
    STRATEGIES,
    STRATEGY_COMBINATION,
    STRATEGY_MOOD_REPAIR,
    STRATEGY_RATIONALE,
    STRATEGY_SEMANTIC,
    STRATEGY_SEQUENTIAL,
    MemoryScores,
    RecallOptions,
    RecallResult,
    ScoredMemory,
    emotional_similarity,
    is_low_mood,
)

__all__ = [
    # service
    "MemoryService",
    "RememberResult",
    # records
    "MemoryRecord",
    "KIND_EPISODE",
    "KIND_FACT",
    "KIND_PREFERENCE",
    "KINDS",
    "MAX_MEMORY_CHARS",
    "emotional_salience",
    # recall
    "RecallOptions",
    "RecallResult",
    "ScoredMemory",
    "MemoryScores",
    "STRATEGIES",
    "STRATEGY_SEMANTIC",
    "STRATEGY_COMBINATION",
    "STRATEGY_SEQUENTIAL",
    "STRATEGY_MOOD_REPAIR",
    "STRATEGY_RATIONALE",
    "emotional_similarity",
    "is_low_mood",
    # store
    "MemoryStore",
    "MEMORY_BACKENDS",
    "collection_name_for",
    # embeddings
    "Embedder",
    "EmbeddingStats",
    "MiniLMEmbedder",
    "load_embedder",
    "register_embedder",
    "available_embedders",
    # write path helpers
    "Extraction",
    "extract_facts",
    "format_memories_for_prompt",
    "MEMORY_HEADER",
    # errors
    "MemoryStoreError",
    "MemoryStoreUnavailableError",
    "EmbeddingError",
]
