"""Retrieval strategies: how candidate memories are scored against the query and the person's mood.

Every strategy scores the same candidate pool (the person's most semantically similar memories,
fetched by the store's ANN query) with the same four components, each in [0, 1]:

* **semantic**  = max(0, cosine(query, memory)).  MiniLM embeddings are L2-normalised; cosines of
  unrelated sentences sit near 0 and negative values carry no more meaning than 0, so clipping gives
  a normalised similarity on the same [0, 1] scale as the emotional term.  (The *Emotional RAG*
  paper instead adds an unnormalised Euclidean distance to an emotion cosine, so the mix depends on
  the embedding's scale; here both terms are similarities in [0, 1] and alpha means what it says.)
* **emotional** = Bhattacharyya coefficient between the person's VAD Gaussian now and the memory's
  VAD Gaussian at encoding time: BC = exp(-D_B), with
  D_B = 1/8 sum_d (m1-m2)^2 / s  +  1/2 sum_d ln(s / sqrt(v1 v2)),  s = (v1 + v2) / 2.
  BC is 1 for identical readings, decays with the distance of the means *relative to their
  uncertainty*, and is the overlap of the two distributions (so it is also in [0, 1]).  Variances are
  capped at MAX_SIMILARITY_VARIANCE (1/3, a uniform spread over [-1, 1]) first, so a memory stored
  without an emotional state counts as "somewhere near neutral, vaguely" instead of matching nothing.
  With no (or an uninformative) current state the emotional term is 0 for every memory and the
  strategies fall back to semantic order.
* **recency**   = 0.5 ** (days since the memory was last updated / half-life).
* **salience**  = the memory's stored emotional intensity (see ``record.emotional_salience``).

Facts and preferences ("Their name is Sam.") are knowledge, not episodes: in the emotional
strategies their emotional term is fixed at MOOD_INDEPENDENT_EMOTION (0.5), so the mood they were
stated in neither buries nor promotes them.

``total`` is the strategy's ranking score; ties break on semantic similarity, then on id.
Candidates with semantic < ``min_semantic`` are dropped by every strategy, so no strategy returns
a memory only because of the mood.

Pure numpy: scoring a pool of 20-100 candidates takes well under a millisecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Mapping, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.latent import DIMENSIONS, MIN_VARIANCE, FusedState, Reading
from empathic_agent.memory.record import EMOTION_PREFIX, KIND_FACT, KIND_PREFERENCE, MemoryRecord

__all__ = [
    "STRATEGY_SEMANTIC",
    "STRATEGY_COMBINATION",
    "STRATEGY_SEQUENTIAL",
    "STRATEGY_MOOD_REPAIR",
    "STRATEGIES",
    "STRATEGY_RATIONALE",
    "MODE_SEMANTIC",
    "MODE_CONGRUENT",
    "MODE_REPAIR",
    "RecallOptions",
    "MemoryScores",
    "ScoredMemory",
    "RecallResult",
    "Candidates",
    "emotional_similarity",
    "is_low_mood",
    "score_candidates",
    "REPAIR_TARGET",
]

STRATEGY_SEMANTIC: Final[str] = "semantic"
STRATEGY_COMBINATION: Final[str] = "combination"
STRATEGY_SEQUENTIAL: Final[str] = "sequential"
STRATEGY_MOOD_REPAIR: Final[str] = "mood_repair"
STRATEGIES: Final[tuple[str, ...]] = (
    STRATEGY_SEMANTIC, STRATEGY_COMBINATION, STRATEGY_SEQUENTIAL, STRATEGY_MOOD_REPAIR)

#: One sentence of rationale per strategy (shown by ``empathic memory eval`` and the docs).
STRATEGY_RATIONALE: Final[Mapping[str, str]] = {
    STRATEGY_SEMANTIC: (
        "Baseline: nearest meaning only, as plain RAG does; the reference every emotional strategy "
        "is measured against."),
    STRATEGY_COMBINATION: (
        "Mood-dependent memory (Bower 1981; Emotional RAG's combination strategy): people recall best "
        "what they lived in a similar mood, so the score blends normalised semantic and emotional "
        "similarity, (1 - alpha) * semantic + alpha * emotional."),
    STRATEGY_SEQUENTIAL: (
        "Relevance first, then mood (Emotional RAG's sequential strategy): the most semantically "
        "similar memories are shortlisted and re-ranked by emotional similarity, so the mood can "
        "reorder relevant memories but never bring in a less relevant one."),
    STRATEGY_MOOD_REPAIR: (
        "Therapeutic option (mood-incongruent recall as emotion regulation): when the person is low, "
        "prefer relevant memories of calm, positive moments and of moments their mood lifted; "
        "otherwise behave like combination."),
}

#: What the emotional term compared the memory with in one recall.
MODE_SEMANTIC: Final[str] = "semantic"     # semantic strategy, or no usable emotional state
MODE_CONGRUENT: Final[str] = "congruent"   # similarity to the person's current state
MODE_REPAIR: Final[str] = "repair"         # similarity to the repair target (mood_repair, person low)

# ----------------------------------------------------------------------------------- constants
#: Cap on variances before computing the Bhattacharyya coefficient: 1/3 is the variance of a uniform
#: spread over [-1, 1], i.e. "no idea where in the space"; wider readings say nothing more.
MAX_SIMILARITY_VARIANCE: Final[float] = 1.0 / 3.0
#: A current state less confident than this is treated as "no emotional state" (emotional term 0).
#: latent.describe uses the same cut-off (NO_SIGNAL_CONFIDENCE) to say "no clear emotional signal".
MIN_STATE_CONFIDENCE: Final[float] = 0.1

#: Default weight of the emotional term in combination and mood_repair.  Chosen on the *dev* splits
#: with `empathic memory eval --split dev` under realistic (noisy) emotion estimates: MRR peaks at
#: alpha 0.2-0.25 on EmoBank and GoEmotions, while larger alphas trade relevance (share of results
#: from the semantic neighbourhood) for congruence and, with noisy states, lose hits.  Semantic and
#: emotional similarity have different spreads over a candidate pool (cosines differ by ~0.1-0.2,
#: Bhattacharyya coefficients by up to 1), which is why a small alpha already reorders strongly.
DEFAULT_ALPHA: Final[float] = 0.2
#: Recency half-life: a memory last touched 30 days ago gets half the recency of one from today.
DEFAULT_RECENCY_HALF_LIFE_DAYS: Final[float] = 30.0
#: Weights of the recency and salience terms in the emotional strategies.  Small on purpose: they
#: break near-ties (recent and emotionally intense moments are remembered better) without
#: overriding meaning or mood.  The semantic baseline uses neither.
DEFAULT_RECENCY_WEIGHT: Final[float] = 0.05
DEFAULT_SALIENCE_WEIGHT: Final[float] = 0.05
#: Candidates below this semantic similarity are never returned.  MiniLM cosines of unrelated
#: sentences are ~0-0.1; topically related ones start around 0.2.
DEFAULT_MIN_SEMANTIC: Final[float] = 0.1
#: Candidate pool fetched from the store: max(POOL_MIN, POOL_FACTOR * k) (12 for the default k=4).
#: Hydrating the rows' metadata is ~90 % of a recall's cost (profiled: the Chroma query vs < 1 ms
#: for scoring), and it grows with the pool, so the pool stays small.  With alpha 0.2 a memory
#: ranked below ~12th by meaning almost never wins on mood alone (see the eval's alpha sweep).
POOL_MIN: Final[int] = 12
POOL_FACTOR: Final[int] = 3
#: Sequential strategy shortlist: the SEQUENTIAL_FACTOR * k most semantically similar candidates
#: (8 for k=4): tighter than the pool, so mood reorders only clearly relevant memories.
SEQUENTIAL_FACTOR: Final[int] = 2

#: Valence at or below which the person counts as "low" for mood repair (the "low" band of
#: latent.describe starts at -0.15).
LOW_MOOD_VALENCE: Final[float] = -0.15
#: Mood-repair target: calm contentment - clearly positive valence, neutral arousal, some sense of
#: control - with the spread of one category region (PROTOTYPE_SD = 0.25).  A modelling choice:
#: soothing rather than exciting memories for someone who is down.
REPAIR_TARGET: Final[Reading] = Reading(mean=(0.6, 0.0, 0.2), variance=(0.0625, 0.0625, 0.0625),
                                        categories={"joy": 0.6, "neutral": 0.4}, modality="repair-target")
#: A within-turn valence rise of this much (fused minus prior) counts as a full "recovery" moment.
RECOVERY_FULL_SHIFT: Final[float] = 0.4

#: Emotional term of facts and preferences in the emotional strategies: mid-scale, so their rank
#: follows their relevance whatever the mood they were stated in.
MOOD_INDEPENDENT_EMOTION: Final[float] = 0.5
_KNOWLEDGE_KINDS: Final[frozenset[str]] = frozenset({KIND_FACT, KIND_PREFERENCE})

_SECONDS_PER_DAY: Final[float] = 86400.0


# ----------------------------------------------------------------------------------- options/results
@dataclass(frozen=True)
class RecallOptions:
    """How to recall.  ``k`` results with ``strategy``; the other fields tune the scoring."""

    k: int = 4
    strategy: str = STRATEGY_COMBINATION
    alpha: float = DEFAULT_ALPHA
    recency_weight: float = DEFAULT_RECENCY_WEIGHT
    salience_weight: float = DEFAULT_SALIENCE_WEIGHT
    recency_half_life_days: float = DEFAULT_RECENCY_HALF_LIFE_DAYS
    min_semantic: float = DEFAULT_MIN_SEMANTIC
    #: Candidates fetched from the store; 0 = max(POOL_MIN, POOL_FACTOR * k).
    pool_size: int = 0
    #: Restrict results to these kinds (empty = all kinds).  Applied after the query, in Python.
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown recall strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not isinstance(self.k, int) or self.k < 1 or self.k > 100:
            raise ConfigError(f"recall k must be an integer in 1..100, got {self.k!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"recall alpha must be in [0, 1], got {self.alpha}")
        for name in ("recency_weight", "salience_weight", "min_semantic"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if not self.recency_half_life_days > 0:
            raise ConfigError(f"recency_half_life_days must be > 0, got {self.recency_half_life_days}")
        if self.pool_size < 0 or self.pool_size > 1000:
            raise ConfigError(f"pool_size must be in 0..1000, got {self.pool_size}")
        object.__setattr__(self, "kinds", tuple(self.kinds))

    @property
    def effective_pool(self) -> int:
        return max(self.pool_size or max(POOL_MIN, POOL_FACTOR * self.k), self.k)


@dataclass(frozen=True)
class MemoryScores:
    """Per-component scores of one recalled memory (all in [0, 1] except total).

    ``emotional`` is the emotional term the strategy used: similarity to the person's current state
    (mode "congruent") or to the mood-repair target (mode "repair"); 0 in mode "semantic".
    """

    semantic: float
    emotional: float
    recency: float
    salience: float
    total: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(getattr(self, k)), 6)
                for k in ("semantic", "emotional", "recency", "salience", "total")}


@dataclass(frozen=True)
class ScoredMemory:
    """A recalled memory with its rank (1 = best) and scores."""

    record: MemoryRecord
    scores: MemoryScores
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "scores": self.scores.to_dict(), "memory": self.record.to_dict()}


@dataclass(frozen=True)
class RecallResult:
    """The outcome of one recall: ranked memories plus what was done and how long it took."""

    user_id: str
    strategy: str
    mode: str
    memories: tuple[ScoredMemory, ...] = ()
    #: The person's state the recall used (None = none given).
    state: Reading | None = None
    #: Candidates scored (the pool after the min_semantic filter).
    candidates: int = 0
    #: Milliseconds: "embed" (query embedding), "search" (store query), "score" (ranking).
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def records(self) -> list[MemoryRecord]:
        return [m.record for m in self.memories]

    def __len__(self) -> int:
        return len(self.memories)

    def __iter__(self):
        return iter(self.memories)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id, "strategy": self.strategy, "mode": self.mode,
            "state": None if self.state is None else self.state.to_dict(),
            "candidates": self.candidates,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "memories": [m.to_dict() for m in self.memories],
        }


# ----------------------------------------------------------------------------------- candidates
@dataclass
class Candidates:
    """A candidate pool as arrays (n candidates), straight from one store query.

    Records are only built for the memories that are returned (building a Reading validates it,
    which costs more than scoring).
    """

    ids: list[str]
    documents: list[str]
    metadatas: list[Mapping[str, Any]]
    semantic: np.ndarray        # (n,)
    means: np.ndarray           # (n, 3)
    variances: np.ndarray       # (n, 3)
    salience: np.ndarray        # (n,)
    updated_at: np.ndarray      # (n,)
    valence_shift: np.ndarray   # (n,)
    kinds: list[str]

    @classmethod
    def from_rows(cls, ids: Sequence[str], documents: Sequence[str | None],
                  metadatas: Sequence[Mapping[str, Any] | None], distances: Sequence[float]) -> "Candidates":
        """From Chroma query rows (cosine space: distance = 1 - cosine)."""
        metas = [m or {} for m in metadatas]
        n = len(ids)

        def col(key: str, default: float) -> np.ndarray:
            return np.fromiter((float(m.get(key, default)) for m in metas), dtype=np.float64, count=n)

        means = np.stack([col(f"{EMOTION_PREFIX}{d}", 0.0) for d in DIMENSIONS], axis=1) if n else np.zeros((0, 3))
        variances = (np.stack([col(f"{EMOTION_PREFIX}var_{d}", MAX_SIMILARITY_VARIANCE) for d in DIMENSIONS],
                              axis=1) if n else np.zeros((0, 3)))
        return cls(
            ids=list(ids), documents=[d or "" for d in documents], metadatas=metas,
            semantic=np.clip(1.0 - np.asarray(distances, dtype=np.float64), 0.0, 1.0),
            means=means, variances=variances,
            salience=np.clip(col("salience", 0.0), 0.0, 1.0),
            updated_at=col("updated_at", 0.0),
            valence_shift=col("valence_shift", 0.0),
            kinds=[str(m.get("kind", "")) for m in metas],
        )

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, mask: np.ndarray) -> "Candidates":
        idx = np.flatnonzero(mask)
        return Candidates(
            ids=[self.ids[i] for i in idx], documents=[self.documents[i] for i in idx],
            metadatas=[self.metadatas[i] for i in idx], semantic=self.semantic[idx],
            means=self.means[idx], variances=self.variances[idx], salience=self.salience[idx],
            updated_at=self.updated_at[idx], valence_shift=self.valence_shift[idx],
            kinds=[self.kinds[i] for i in idx])

    def record(self, i: int) -> MemoryRecord:
        return MemoryRecord.from_chroma(self.ids[i], self.documents[i], self.metadatas[i])


# ----------------------------------------------------------------------------------- maths
def emotional_similarity(mean: Sequence[float] | np.ndarray, variance: Sequence[float] | np.ndarray,
                         means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Bhattacharyya coefficient between one VAD Gaussian and n others (diagonal covariances).

    Shapes: mean, variance (3,); means, variances (n, 3) -> (n,) in (0, 1].
    """
    m1 = np.asarray(mean, dtype=np.float64).reshape(1, 3)
    v1 = np.clip(np.asarray(variance, dtype=np.float64).reshape(1, 3), MIN_VARIANCE, MAX_SIMILARITY_VARIANCE)
    m2 = np.asarray(means, dtype=np.float64).reshape(-1, 3)
    v2 = np.clip(np.asarray(variances, dtype=np.float64).reshape(-1, 3), MIN_VARIANCE, MAX_SIMILARITY_VARIANCE)
    s = 0.5 * (v1 + v2)
    distance = (0.125 * np.sum((m1 - m2) ** 2 / s, axis=1)
                + 0.5 * np.sum(np.log(s) - 0.5 * (np.log(v1) + np.log(v2)), axis=1))
    return np.exp(-distance)


def _as_state(state: FusedState | Reading | None) -> Reading | None:
    if state is None:
        return None
    if isinstance(state, FusedState):
        return state.reading
    if isinstance(state, Reading):
        return state
    raise TypeError(f"emotional_state must be a FusedState, a Reading or None, got {type(state).__name__}")


def is_low_mood(state: FusedState | Reading | None) -> bool:
    """Whether mood repair should kick in: valence <= LOW_MOOD_VALENCE, and the reading informative."""
    reading = _as_state(state)
    if reading is None or reading.confidence < MIN_STATE_CONFIDENCE:
        return False
    return reading.valence <= LOW_MOOD_VALENCE and reading.variance[0] < MAX_SIMILARITY_VARIANCE


def _recency(updated_at: np.ndarray, now: float, half_life_days: float) -> np.ndarray:
    age_days = np.maximum(0.0, now - updated_at) / _SECONDS_PER_DAY
    return np.power(0.5, age_days / half_life_days)


def score_candidates(cands: Candidates, state: FusedState | Reading | None, options: RecallOptions,
                     *, now: float) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Rank a candidate pool.

    Returns ``(order, components, mode)``: ``order`` indexes the ranked candidates (best first, at
    most ``options.k``, only candidates the strategy admits); ``components`` maps "semantic",
    "emotional", "recency", "salience", "total" to (n,) arrays over *all* candidates.
    """
    reading = _as_state(state)
    n = len(cands)
    sem = cands.semantic
    rec = _recency(cands.updated_at, now, options.recency_half_life_days)
    sal = cands.salience
    usable_state = reading is not None and reading.confidence >= MIN_STATE_CONFIDENCE
    strategy = options.strategy

    mode = MODE_SEMANTIC
    emo = np.zeros(n)
    if strategy != STRATEGY_SEMANTIC and usable_state:
        assert reading is not None
        if strategy == STRATEGY_MOOD_REPAIR and is_low_mood(reading):
            mode = MODE_REPAIR
            positive = emotional_similarity(REPAIR_TARGET.mean, REPAIR_TARGET.variance, cands.means, cands.variances)
            recovery = np.clip(cands.valence_shift / RECOVERY_FULL_SHIFT, 0.0, 1.0)
            emo = 1.0 - (1.0 - positive) * (1.0 - recovery)  # a positive moment OR a lifting one
        else:
            mode = MODE_CONGRUENT
            emo = emotional_similarity(reading.mean, reading.variance, cands.means, cands.variances)

    if mode != MODE_SEMANTIC:
        # Facts and preferences are knowledge about the person, not episodes: the mood they were
        # said in should not gate them (mood-dependent memory is about episodic recall).
        knowledge = np.array([k in _KNOWLEDGE_KINDS for k in cands.kinds], dtype=bool)
        emo = np.where(knowledge, MOOD_INDEPENDENT_EMOTION, emo)

    admitted = sem >= options.min_semantic
    if options.kinds:
        admitted &= np.array([k in options.kinds for k in cands.kinds], dtype=bool)

    # Rank of each id in sorted order: the final, deterministic tie-break.
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[sorted(range(n), key=cands.ids.__getitem__)] = np.arange(n)
    extras = options.recency_weight * rec + options.salience_weight * sal
    if strategy == STRATEGY_SEMANTIC:
        total = sem.copy()
    elif strategy == STRATEGY_SEQUENTIAL:
        # Shortlist the most semantically similar admitted candidates, then rank them by mood.
        shortlist = SEQUENTIAL_FACTOR * options.k
        sem_order = np.lexsort((id_rank, -sem))
        keep = [i for i in sem_order if admitted[i]][:shortlist]
        in_shortlist = np.zeros(n, dtype=bool)
        in_shortlist[keep] = True
        admitted &= in_shortlist
        # Without a usable state there is no mood to re-rank by: the shortlist keeps semantic order.
        total = (emo if mode != MODE_SEMANTIC else sem) + extras
    else:  # combination, mood_repair
        total = (1.0 - options.alpha) * sem + options.alpha * emo + extras

    idx = np.flatnonzero(admitted)
    # Sort by total desc, then semantic desc, then id asc (deterministic).
    order = idx[np.lexsort((id_rank[idx], -sem[idx], -total[idx]))] if idx.size else idx
    components = {"semantic": sem, "emotional": emo, "recency": rec, "salience": sal, "total": total}
    return order[: options.k], components, mode
