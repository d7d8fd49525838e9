"""The memory service: what the graph's recall and remember steps (and the data-rights API) call.

    memory = MemoryService.from_settings(settings)          # opens the store; the model loads lazily
    result = memory.recall("alice", "I feel low again", state, k=4)    # -> RecallResult
    block = memory.format_memories_for_prompt(result)        # quoted, inert prompt text
    memory.remember_turn("alice", "s1", turn_id, user_text, reply, fused_state)
    memory.export_user("alice"); memory.delete_memory("alice", mid); memory.delete_user("alice")
    memory.close()

Every method is **blocking** (Chroma I/O, a MiniLM forward): from async code call them with
``await asyncio.to_thread(memory.recall, ...)``.  The service is thread-safe; one instance per
process is meant to be shared by all turns and users (it holds no per-user state).

Errors: invalid ids raise :class:`~empathic_agent.errors.InputError`; store failures raise
:class:`~empathic_agent.memory.errors.MemoryStoreError` (``MemoryStoreUnavailableError`` when the
server cannot be reached); embedding failures raise :class:`~empathic_agent.memory.errors.EmbeddingError`.
All are :class:`~empathic_agent.errors.EmpathicError`, so a recall step can degrade on one family.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final, Iterable, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.latent import FusedState, Reading
from empathic_agent.memory.embedder import Embedder, load_embedder
from empathic_agent.memory.extract import extract_facts
from empathic_agent.memory.prompt import format_memories_for_prompt as _format
from empathic_agent.memory.record import (
    KIND_EPISODE,
    KINDS,
    MAX_MEMORY_CHARS,
    MAX_REPLY_CHARS,
    MemoryRecord,
    as_reading,
    clean_memory_text,
    emotional_salience,
    new_memory_id,
    slot_memory_id,
    truncate_text,
    validate_memory_id,
    validate_ref_id,
    validate_user_id,
)
from empathic_agent.memory.store import MemoryStore
from empathic_agent.memory.strategies import (
    DEFAULT_ALPHA,
    STRATEGIES,
    MemoryScores,
    RecallOptions,
    RecallResult,
    ScoredMemory,
    score_candidates,
)

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["MemoryService", "RememberResult", "EXPORT_FORMAT", "DEDUP_COSINE", "FACT_SALIENCE"]

log = logging.getLogger(__name__)

#: An episode whose embedding has at least this cosine with an existing episode of the same person
#: is the same memory said again: the existing one is refreshed instead of a duplicate being added.
#: MiniLM gives ~0.96-0.99 for the same sentence with a filler word more or less ("really", "today"),
#: ~0.83 for one content word changed ("work" -> "school", "rough" -> "bad"), which stay distinct.
#: Case/punctuation-only variants are caught by comparing normalised text (see _dedup_key).
DEDUP_COSINE: Final[float] = 0.95
_NON_WORD: Final = re.compile(r"[\W_]+")
#: Nearest existing memories checked for a duplicate.
DEDUP_CANDIDATES: Final[int] = 5
#: Facts and preferences are salient whatever the mood they were said in (who someone is matters).
FACT_SALIENCE: Final[float] = 0.6
#: A prior whose valence variance is above this carries no usable "before" for the mood shift.
_SHIFT_MAX_PRIOR_VARIANCE: Final[float] = 1.0 / 3.0
#: Identifies export files.
EXPORT_FORMAT: Final[str] = "empathic-agent/memories"
EXPORT_VERSION: Final[int] = 1


@dataclass(frozen=True)
class RememberResult:
    """What a remember call wrote: new records, and existing ones refreshed (de-duplicated/restated)."""

    stored: tuple[MemoryRecord, ...] = ()
    updated: tuple[MemoryRecord, ...] = ()

    @property
    def records(self) -> tuple[MemoryRecord, ...]:
        return self.stored + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {"stored": [r.to_dict() for r in self.stored], "updated": [r.to_dict() for r in self.updated]}


class MemoryService:
    """Mood-congruent long-term memory of every person the agent talks to."""

    def __init__(self, store: MemoryStore, embedder: Embedder, *, options: RecallOptions | None = None,
                 extract: bool = True, dedup_cosine: float = DEDUP_COSINE,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.embedder = embedder
        self.options = options or RecallOptions()
        self.extract = extract
        if not 0.0 < dedup_cosine <= 1.0:
            raise ConfigError(f"dedup_cosine must be in (0, 1], got {dedup_cosine}")
        self.dedup_cosine = dedup_cosine
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: "Settings", *, embedder: Embedder | None = None,
                      store: MemoryStore | None = None, clock: Callable[[], float] = time.time) -> "MemoryService":
        """Open the configured store (embedded or http) with the configured embedder.

        The embedding model loads on the first recall/remember, not here, so data-rights commands
        (list, export, delete) never load it.
        """
        options = RecallOptions(
            k=int(getattr(settings, "recall_k", 4)),
            strategy=str(getattr(settings, "recall_strategy", "combination")),
            alpha=float(getattr(settings, "recall_alpha", DEFAULT_ALPHA)),
        )
        store = store or MemoryStore.from_settings(settings)
        embedder = embedder or load_embedder(settings)
        return cls(store, embedder, options=options,
                   extract=bool(getattr(settings, "memory_extract_facts", True)), clock=clock)

    # -- recall --------------------------------------------------------------------------------------
    def recall(self, user_id: str, query: str, emotional_state: FusedState | Reading | None = None, *,
               k: int | None = None, strategy: str | None = None, alpha: float | None = None,
               options: RecallOptions | None = None) -> RecallResult:
        """The ``k`` memories of ``user_id`` that matter now, by meaning and mood (see strategies).

        ``emotional_state`` is the person's fused state this turn (None = rank by meaning only).
        Explicit ``k``/``strategy``/``alpha`` override ``options``, which override the service's.
        """
        validate_user_id(user_id)
        text = clean_memory_text(query)
        opts = self._options(options, k=k, strategy=strategy, alpha=alpha)
        if not text:
            return RecallResult(user_id=user_id, strategy=opts.strategy, mode="semantic",
                                state=_reading_or_none(emotional_state))
        t0 = time.perf_counter()
        embedding = self.embedder.embed_one(truncate_text(text, MAX_MEMORY_CHARS)[0])
        embed_ms = (time.perf_counter() - t0) * 1000
        result = self.recall_embedding(user_id, embedding, emotional_state, options=opts)
        return RecallResult(user_id=result.user_id, strategy=result.strategy, mode=result.mode,
                            memories=result.memories, state=result.state, candidates=result.candidates,
                            timings_ms={"embed": embed_ms, **result.timings_ms})

    def recall_embedding(self, user_id: str, embedding: np.ndarray,
                         emotional_state: FusedState | Reading | None = None, *, k: int | None = None,
                         strategy: str | None = None, alpha: float | None = None,
                         options: RecallOptions | None = None) -> RecallResult:
        """:meth:`recall` with a precomputed query embedding (benchmarks, batch evaluation)."""
        validate_user_id(user_id)
        opts = self._options(options, k=k, strategy=strategy, alpha=alpha)
        state = _reading_or_none(emotional_state)
        t0 = time.perf_counter()
        rows = self.store.query(user_id, embedding, opts.effective_pool)
        t1 = time.perf_counter()
        cands = rows.candidates()
        order, comps, mode = score_candidates(cands, state, opts, now=self.clock())
        memories = []
        for i in order:
            try:
                record = cands.record(int(i))
            except ValueError as exc:
                log.error("memory: skipping malformed memory %s: %s", cands.ids[int(i)], exc)
                continue
            scores = MemoryScores(**{name: float(arr[i]) for name, arr in comps.items()})
            memories.append(ScoredMemory(record=record, scores=scores, rank=len(memories) + 1))
        t2 = time.perf_counter()
        return RecallResult(user_id=user_id, strategy=opts.strategy, mode=mode, memories=tuple(memories),
                            state=state, candidates=len(cands),
                            timings_ms={"search": (t1 - t0) * 1000, "score": (t2 - t1) * 1000})

    def _options(self, options: RecallOptions | None, **overrides: Any) -> RecallOptions:
        base = options or self.options
        changes = {k: v for k, v in overrides.items() if v is not None}
        if not changes:
            return base
        from dataclasses import replace

        return replace(base, **changes)

    # -- remember ------------------------------------------------------------------------------------
    def remember_turn(self, user_id: str, session_id: str, turn_id: str, user_text: str, reply: str,
                      emotion: FusedState | Reading | None = None) -> RememberResult:
        """Store one exchange as an episode tagged with the turn's emotion, plus any stated facts.

        The episode's text (what is embedded and recalled) is the person's own words; the agent's
        reply is kept alongside as context.  Facts and preferences come from the person's words only.
        A near-duplicate of an existing episode refreshes it (``updated``) instead of adding another.
        Returns what was written; the write is durable when this returns.
        """
        validate_user_id(user_id)
        validate_ref_id(session_id, "session id")
        validate_ref_id(turn_id, "turn id")
        text, truncated = truncate_text(clean_memory_text(user_text), MAX_MEMORY_CHARS)
        if not text:
            return RememberResult()
        reply_text = truncate_text(clean_memory_text(reply), MAX_REPLY_CHARS)[0]
        reading = as_reading(emotion)
        now = self.clock()
        episode = MemoryRecord(
            id=new_memory_id(KIND_EPISODE), user_id=user_id, kind=KIND_EPISODE, text=text, emotion=reading,
            salience=emotional_salience(reading), session_id=session_id, turn_id=turn_id,
            created_at=now, updated_at=now, reply=reply_text, truncated=truncated,
            valence_shift=_valence_shift(emotion),
        )
        facts = [
            MemoryRecord(id=slot_memory_id(x.kind, x.slot), user_id=user_id, kind=x.kind, text=x.text,
                         emotion=reading, salience=max(FACT_SALIENCE, episode.salience), session_id=session_id,
                         turn_id=turn_id, created_at=now, updated_at=now, slot=x.slot)
            for x in (extract_facts(text) if self.extract else [])
        ]
        vectors = self.embedder.embed([episode.text] + [f.text for f in facts])
        episode = episode.with_changes(embedding=vectors[0])
        facts = [f.with_changes(embedding=v) for f, v in zip(facts, vectors[1:])]

        stored: list[MemoryRecord] = []
        updated: list[MemoryRecord] = []
        duplicate = self._find_duplicate(episode)
        if duplicate is not None:
            updated.append(_merge(duplicate, episode, now))
        else:
            stored.append(episode)
        existing = {r.id: r for r in self.store.get(user_id, [f.id for f in facts])} if facts else {}
        for fact in facts:
            old = existing.get(fact.id)
            if old is None:
                stored.append(fact)
            else:
                same = old.text.casefold() == fact.text.casefold()
                updated.append(fact.with_changes(created_at=old.created_at if same else now,
                                                 mentions=old.mentions + 1 if same else 1))
        self.store.upsert(stored + updated)
        return RememberResult(tuple(stored), tuple(updated))

    def correct_reply(self, user_id: str, turn_id: str, reply: str) -> int:
        """Replace the reply kept with the episode of ``turn_id`` by ``reply``: talk mode calls it
        when the person interrupted the agent, so the memory keeps only what they heard.  Returns
        how many episodes were corrected (0 when the turn was not remembered)."""
        validate_user_id(user_id)
        validate_ref_id(turn_id, "turn id")
        text = truncate_text(clean_memory_text(reply), MAX_REPLY_CHARS)[0]
        fixed = [dataclasses.replace(r, reply=text, updated_at=self.clock())
                 for r in self.store.iter_all(user_id, include_embeddings=True)
                 if r.kind == KIND_EPISODE and r.turn_id == turn_id and r.reply != text]
        self.store.upsert(fixed)
        return len(fixed)

    def remember(self, user_id: str, text: str, *, kind: str = KIND_EPISODE,
                 emotion: FusedState | Reading | None = None, session_id: str = "manual",
                 turn_id: str = "manual", salience: float | None = None,
                 embedding: Sequence[float] | np.ndarray | None = None,
                 created_at: float | None = None, valence_shift: float = 0.0) -> MemoryRecord:
        """Store one memory directly (an app's own notes, imports, evaluations), no de-duplication.

        ``embedding`` skips the embedder (it must come from the same model); ``created_at`` back-dates.
        """
        validate_user_id(user_id)
        validate_ref_id(session_id, "session id")
        validate_ref_id(turn_id, "turn id")
        if kind not in KINDS:
            from empathic_agent.errors import InputError

            raise InputError(f"invalid memory kind {kind!r}; expected one of {', '.join(KINDS)}")
        clean, truncated = truncate_text(clean_memory_text(text), MAX_MEMORY_CHARS)
        if not clean:
            from empathic_agent.errors import EmptyInputError

            raise EmptyInputError("a memory needs some text")
        reading = as_reading(emotion)
        now = self.clock()
        vec = self.embedder.embed_one(clean) if embedding is None else np.asarray(embedding, dtype=np.float32)
        ts = now if created_at is None else float(created_at)
        record = MemoryRecord(
            id=new_memory_id(kind), user_id=user_id, kind=kind, text=clean, emotion=reading,
            salience=emotional_salience(reading) if salience is None else salience,
            session_id=session_id, turn_id=turn_id, created_at=ts, updated_at=ts, truncated=truncated,
            valence_shift=valence_shift, embedding=vec)
        self.store.upsert([record])
        return record

    def remember_many(self, records: Iterable[MemoryRecord]) -> int:
        """Store prepared records (with embeddings) of one user in one batched write; returns count."""
        batch = list(records)
        self.store.upsert(batch)
        return len(batch)

    def _find_duplicate(self, episode: MemoryRecord) -> MemoryRecord | None:
        assert episode.embedding is not None
        rows = self.store.query(episode.user_id, np.asarray(episode.embedding), DEDUP_CANDIDATES)
        key = _dedup_key(episode.text)
        for mid, doc, meta, dist in zip(rows.ids, rows.documents, rows.metadatas, rows.distances):
            if meta.get("kind") != KIND_EPISODE:
                continue
            if 1.0 - dist >= self.dedup_cosine or _dedup_key(doc or "") == key:
                found = self.store.get(episode.user_id, [mid], include_embeddings=True)
                return found[0] if found else None
        return None

    # -- data rights ---------------------------------------------------------------------------------
    def list_memories(self, user_id: str, *, kind: str | None = None) -> list[MemoryRecord]:
        """All memories of the user (optionally one kind), oldest first."""
        records = [r for r in self.store.iter_all(user_id) if kind is None or r.kind == kind]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        found = self.store.get(user_id, [memory_id])
        return found[0] if found else None

    def count(self, user_id: str) -> int:
        return self.store.count(user_id)

    def delete_memory(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory of the user; False if the user has no memory with that id."""
        validate_memory_id(memory_id)
        return self.store.delete(user_id, [memory_id]) > 0

    def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user; returns how many were deleted."""
        return self.store.delete_user(user_id)

    def export_user(self, user_id: str, *, include_embeddings: bool = False) -> dict[str, Any]:
        """Everything remembered about the user, as plain JSON (data portability)."""
        validate_user_id(user_id)
        records = sorted(self.store.iter_all(user_id, include_embeddings=include_embeddings),
                         key=lambda r: (r.created_at, r.id))
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "user_id": user_id,
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "count": len(records),
            "memories": [r.to_dict(include_embedding=include_embeddings) for r in records],
        }

    # -- prompt --------------------------------------------------------------------------------------
    @staticmethod
    def format_memories_for_prompt(memories: Any, *, now: float | None = None) -> str:
        """See :func:`empathic_agent.memory.prompt.format_memories_for_prompt`."""
        return _format(memories, now=now)

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()
        self.embedder.close()

    def __enter__(self) -> "MemoryService":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def strategies(self) -> tuple[str, ...]:
        return STRATEGIES


# ------------------------------------------------------------------------------------------------
def _reading_or_none(state: FusedState | Reading | None) -> Reading | None:
    if state is None:
        return None
    return as_reading(state)


def _dedup_key(text: str) -> str:
    """Text with case, punctuation and spacing removed: "i had a rough day at work!!" == "I had a rough
    day at work." (MiniLM is case- and punctuation-sensitive enough to put such pairs at ~0.94)."""
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def _valence_shift(emotion: FusedState | Reading | None) -> float:
    """Valence change within the turn: fused minus prior (0 without an informative prior)."""
    if not isinstance(emotion, FusedState) or emotion.prior is None:
        return 0.0
    if emotion.prior.variance[0] > _SHIFT_MAX_PRIOR_VARIANCE:
        return 0.0
    shift = emotion.reading.valence - emotion.prior.valence
    return shift if math.isfinite(shift) else 0.0


def _merge(old: MemoryRecord, new: MemoryRecord, now: float) -> MemoryRecord:
    """A duplicate said again: keep the original memory, count the mention, keep the stronger emotion."""
    stronger = new if new.salience > old.salience else old
    return old.with_changes(
        updated_at=now, mentions=old.mentions + 1, emotion=stronger.emotion, salience=stronger.salience,
        valence_shift=max(old.valence_shift, new.valence_shift), reply=new.reply or old.reply,
        embedding=old.embedding if old.embedding is not None else new.embedding)
