"""Incongruence ("mixed signals") between modalities.

When the face smiles while the words are sad, or the words say "fine" while the voice
is tense, the register planner and the prompt should know.  Two modalities conflict
when **either** test below fires; only direct observations of the person count
(readings whose modality is "prior" or "fused" are ignored), and two readings of the
*same* modality are never compared (that is noise within one encoder, not
incongruence between channels).

1. VAD test (uncertainty-aware).  If both readings measured the same true state x,
   their mean difference d = m_a - m_b would be distributed N(0, S_a + S_b).  Its
   squared Mahalanobis distance  D^2 = d^T (S_a + S_b)^-1 d  is then chi-square with
   3 degrees of freedom.  We flag when D^2 >= 11.34, the chi^2_3 99th percentile: a
   disagreement that large arises by chance in only 1 % of congruent pairs, so a flag
   is evidence, not noise, even with three modality pairs per turn.  An uncertain
   reading inflates S and so can never trigger a flag on its own.  (We deliberately
   do not use the full Bhattacharyya distance: its log-determinant term grows when
   two readings merely differ in *confidence*, which is not a disagreement.)

2. Category test.  Category-only encoders (e.g. a FER face classifier) carry most of
   their information in the distribution, not the VAD variance.  We flag when both
   readings are confident in a category (top probability >= 0.6), their top
   categories differ, those categories are not VAD neighbours (prototype distance
   >= 0.5, i.e. two prototype SDs; this exempts only anger vs disgust, a common
   classifier confusion rather than an incongruent signal), and the distributions
   overlap little: Bhattacharyya coefficient BC = sum sqrt(p q) <= 0.6 (Hellinger
   distance sqrt(1 - BC) >= 0.63).  Two distributions putting 80 % on different
   categories (rest spread evenly) have BC ~0.49 (flagged); 60 %/60 % gives ~0.73
   (not flagged), unless both put the rest on one shared category (e.g. joy .6 /
   neutral .4 vs sadness .6 / neutral .4: BC = 0.4, flagged - the channels lean
   opposite ways).

3. Valence test.  The conflict that matters most for a reply is one channel saying
   "good" while another says "bad": a smile over hopeless words, cheerful words over a
   sad face.  Each reading's *valence lean* is read from its categories: positive when
   joy holds at least VALENCE_LEAN_MIN (0.6, the same clear majority as test 2) of the
   mass, negative when sadness, anger, fear and disgust together do (neutral and
   surprise lean neither way).  Opposite leans conflict.  Test 2 needs *one* category
   to dominate each reading, and test 1 needs tight VAD variances; a calibrated face
   classifier that splits a sad face between sadness, fear and anger (each below 0.6,
   together 0.7-0.85) passes neither, so before this test "I'm having a great day!"
   over such a face fused to joy without a flag.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Final, Iterable, Mapping, NamedTuple

import numpy as np

from .constants import CATEGORIES, NON_EVIDENCE_MODALITIES
from .prototypes import PROTOTYPE_MEAN_ARRAY, PROTOTYPE_SD
from .reading import Reading

#: chi^2 (3 dof) 99th percentile: squared Mahalanobis distance that flags a VAD conflict.
MAHALANOBIS_THRESHOLD_SQUARED: Final[float] = 11.345
#: The same threshold as a (non-squared) Mahalanobis distance, ~3.37.
MAHALANOBIS_THRESHOLD: Final[float] = math.sqrt(MAHALANOBIS_THRESHOLD_SQUARED)

#: A reading must put at least this much mass on its top category for the category test
#: (a clear majority, so a near coin-flip between two categories never conflicts).
CATEGORY_CONFLICT_MIN_TOP_PROB: Final[float] = 0.6
#: Category distributions overlapping at most this much (Bhattacharyya coeff.) conflict.
CATEGORY_CONFLICT_MAX_OVERLAP: Final[float] = 0.6
#: ... expressed as the Hellinger distance reported in `Conflict.category_distance`.
CATEGORY_CONFLICT_HELLINGER: Final[float] = math.sqrt(1.0 - CATEGORY_CONFLICT_MAX_OVERLAP)
#: Top categories whose prototypes are closer than this (2 prototype SDs) are neighbours.
CATEGORY_CONFLICT_MIN_PROTOTYPE_DISTANCE: Final[float] = 2.0 * PROTOTYPE_SD

#: Mass (joy; or sadness + anger + fear + disgust) that makes a reading lean positive or negative.
VALENCE_LEAN_MIN: Final[float] = 0.6
_POSITIVE: Final[tuple[int, ...]] = (CATEGORIES.index("joy"),)
_NEGATIVE: Final[tuple[int, ...]] = tuple(CATEGORIES.index(c) for c in ("sadness", "anger", "fear", "disgust"))

REASON_VAD: Final[str] = "vad"
REASON_CATEGORIES: Final[str] = "categories"
REASON_BOTH: Final[str] = "vad+categories"
REASON_VALENCE: Final[str] = "valence"


class Conflict(NamedTuple):
    """One pair of disagreeing modalities (modality_a < modality_b alphabetically).

    ``distance`` is the Mahalanobis distance of the VAD means (threshold
    MAHALANOBIS_THRESHOLD); ``category_distance`` the Hellinger distance of the category
    distributions; ``reason`` says which tests fired, joined by "+" ("vad", "categories",
    "valence"; e.g. "vad+categories" or "categories+valence").
    """

    modality_a: str
    modality_b: str
    distance: float
    category_distance: float
    reason: str


@dataclass(frozen=True)
class MixedSignals:
    """Result of the incongruence check.

    Attributes:
        flag: True iff at least one modality pair conflicts.
        pairs: the conflicting pairs, most distant first.
    """

    flag: bool
    pairs: tuple[Conflict, ...] = ()

    def __post_init__(self) -> None:
        pairs = tuple(Conflict(*p) for p in self.pairs)
        if bool(self.flag) != bool(pairs):
            raise ValueError("MixedSignals.flag must be True exactly when pairs is non-empty")
        object.__setattr__(self, "flag", bool(self.flag))
        object.__setattr__(self, "pairs", pairs)

    def __bool__(self) -> bool:
        return self.flag

    @classmethod
    def none(cls) -> MixedSignals:
        """No mixed signals."""
        return cls(flag=False, pairs=())

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every modality involved in a conflict, sorted."""
        return tuple(sorted({m for p in self.pairs for m in (p.modality_a, p.modality_b)}))

    def to_dict(self) -> dict[str, Any]:
        return {"flag": self.flag, "pairs": [p._asdict() for p in self.pairs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixedSignals:
        pairs = tuple(
            Conflict(**p) if isinstance(p, Mapping) else Conflict(*p)
            for p in data.get("pairs", ())
        )
        return cls(flag=bool(data.get("flag", bool(pairs))), pairs=pairs)


def mahalanobis_distance(a: Reading, b: Reading) -> float:
    """Mahalanobis distance of the mean difference under the summed variances."""
    diff = a.mean_array - b.mean_array
    return float(math.sqrt(np.sum(diff**2 / (a.variance_array + b.variance_array))))


def hellinger_distance(a: Reading, b: Reading) -> float:
    """Hellinger distance sqrt(1 - sum sqrt(p q)) of two category distributions, in [0, 1]."""
    overlap = float(np.sum(np.sqrt(a.category_array * b.category_array)))
    return math.sqrt(max(0.0, 1.0 - overlap))


def _category_conflict(a: Reading, b: Reading, hellinger: float) -> bool:
    if a.top_category == b.top_category:
        return False
    if min(a.top_probability, b.top_probability) < CATEGORY_CONFLICT_MIN_TOP_PROB:
        return False
    ia, ib = CATEGORIES.index(a.top_category), CATEGORIES.index(b.top_category)
    gap = float(np.linalg.norm(PROTOTYPE_MEAN_ARRAY[ia] - PROTOTYPE_MEAN_ARRAY[ib]))
    if gap < CATEGORY_CONFLICT_MIN_PROTOTYPE_DISTANCE:
        return False
    return hellinger >= CATEGORY_CONFLICT_HELLINGER


def valence_lean(r: Reading) -> int:
    """+1 when the reading's categories lean positive, -1 negative, 0 neither (test 3)."""
    p = r.category_array
    if float(p[list(_POSITIVE)].sum()) >= VALENCE_LEAN_MIN:
        return 1
    if float(p[list(_NEGATIVE)].sum()) >= VALENCE_LEAN_MIN:
        return -1
    return 0


def compare(a: Reading, b: Reading) -> Conflict | None:
    """The conflict between two readings, or None if they are congruent."""
    distance = mahalanobis_distance(a, b)
    hellinger = hellinger_distance(a, b)
    vad = distance >= MAHALANOBIS_THRESHOLD
    cats = _category_conflict(a, b, hellinger)
    valence = valence_lean(a) * valence_lean(b) == -1
    if not (vad or cats or valence):
        return None
    reason = "+".join(name for name, fired in ((REASON_VAD, vad), (REASON_CATEGORIES, cats),
                                               (REASON_VALENCE, valence)) if fired)
    first, second = sorted((a.modality, b.modality))
    return Conflict(first, second, distance, hellinger, reason)


def detect_mixed_signals(readings: Iterable[Reading]) -> MixedSignals:
    """Check every pair of readings from different observed modalities.

    Prior and fused readings are skipped.  When a modality has several readings, the
    most severe conflict per modality pair is kept.  Result is order-independent.
    """
    evidence = [r for r in readings if r.modality not in NON_EVIDENCE_MODALITIES]
    worst: dict[tuple[str, str], Conflict] = {}
    for a, b in itertools.combinations(evidence, 2):
        if a.modality == b.modality:
            continue
        conflict = compare(a, b)
        if conflict is None:
            continue
        key = (conflict.modality_a, conflict.modality_b)
        if key not in worst or _severity(conflict) > _severity(worst[key]):
            worst[key] = conflict
    pairs = tuple(
        sorted(worst.values(), key=lambda c: (*(-x for x in _severity(c)), c.modality_a, c.modality_b))
    )
    return MixedSignals(flag=bool(pairs), pairs=pairs)


def _severity(c: Conflict) -> tuple[float, float]:
    """Order conflicts by how far past the thresholds they are (VAD first, then categories)."""
    return (c.distance / MAHALANOBIS_THRESHOLD, c.category_distance)
