"""Fusion of readings across modalities and across turns.

Within a turn (`fuse`)
----------------------
* **VAD: product of Gaussians.**  Treating each modality (and the temporal prior) as
  an independent noisy measurement of the same state, the posterior is Gaussian with
  precision  Lambda = sum_i 1/v_i  and mean  m = sum_i (m_i / v_i) / Lambda  (per
  dimension; all variances are diagonal).  A confident modality therefore counts more,
  the fused variance is never larger than the smallest input variance, the result is
  order-independent, and an uninformative reading (precision 1e-6) changes nothing.
* **Categories: log-linear pooling.**  p(c) proportional to prod_i p_i(c)^w_i.  The
  weights follow each reading's confidence (which is derived from its VAD variance):
  w_i = confidence_i / max_j confidence_j.  So the most confident source enters with
  full weight (like a product of experts, matching the Gaussian product: two
  confident sources that agree sharpen the result), less confident sources are
  tempered in proportion, a single reading passes through unchanged, and a uniform
  (uninformative) distribution is a constant factor that drops out for any weight.
  Probabilities are floored at CATEGORY_FLOOR before the log, so one source's hard
  zero cannot veto a category every other source supports.
* **Categories under mixed signals: linear pooling of the disagreeing channels.**
  Log-linear pooling is a product: when two channels disagree, the surer one vetoes the
  other's categories (cheerful words at 0.65 joy over a sad face fused to joy in 58 of
  60 FER-2013 "sad" faces).  Which channel is right is exactly what is unknown then, so
  the readings in conflict are averaged, weighted by their confidence (a linear opinion
  pool keeps the mass of both instead of multiplying one away), and that average enters
  the log-linear pool once, with the largest of their weights; channels not in conflict
  and the prior pool as before.  The VAD product is unchanged (its variances already weigh the channels).
* **Contributions.**  Each source's share of the fused precision, averaged over the
  three dimensions, summed per modality (the prior is reported as "prior").  Shares
  sum to 1.
* **Incongruence** is checked on the observed readings (the prior never counts); see
  `incongruence`.

Across turns (`temporal_prior`)
-------------------------------
The previous fused state becomes this turn's prior, as in the predict step of a
Kalman filter with a random-walk state model: same mean, variance plus process noise
for the elapsed turns and seconds.  Its category distribution is blended towards
uniform with a matching forgetting rate.  So the person's state carries over, but a
confident new reading dominates a prior that is a few turns or minutes old.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final, Iterable, Mapping, Sequence

import numpy as np

from .constants import (
    MODALITY_FUSED,
    MODALITY_PRIOR,
    N_CATEGORIES,
    NON_EVIDENCE_MODALITIES,
)
from .incongruence import MixedSignals, compare, detect_mixed_signals
from .reading import Reading

#: Probability floor applied before taking logs in log-linear pooling (see above).
CATEGORY_FLOOR: Final[float] = 1e-6

#: VAD variance added per elapsed turn: SD grows by ~0.14 per turn, i.e. a one-turn
#: swing of about half a category spread (0.25) is unsurprising.  After ~5 turns
#: without evidence the prior is as vague as a whole category region (confidence < 0.4).
PROCESS_NOISE_PER_TURN: Final[float] = 0.02

#: VAD variance added per elapsed second: one minute of silence counts like one turn
#: (0.02 / 60 s).  After 15 minutes the variance has grown by 0.3, about that of a
#: uniform spread over [-1, 1] (1/3): the old state is almost forgotten.
PROCESS_NOISE_PER_SECOND: Final[float] = PROCESS_NOISE_PER_TURN / 60.0

#: Category memory time constants, matched to the VAD rates (1 turn ~ 60 s): the prior's
#: category distribution keeps exp(-turns/4 - seconds/240) of its shape and the rest
#: becomes uniform.  One turn keeps 78 %; ten minutes keep 8 %.
CATEGORY_MEMORY_TURNS: Final[float] = 4.0
CATEGORY_MEMORY_SECONDS: Final[float] = 240.0


@dataclass(frozen=True)
class FusedState:
    """The person's fused emotional state for one turn.

    Attributes:
        reading: the fused Reading (modality "fused").
        contributions: (modality, share) pairs, largest first; shares sum to 1 (empty
            when nothing was fused).  The prior appears as "prior".
        mixed_signals: the incongruence result over the observed readings.
        inputs: the observed readings that were fused (kept for descriptions/audits).
        prior: the prior used, if any.
    """

    reading: Reading
    contributions: tuple[tuple[str, float], ...] = ()
    mixed_signals: MixedSignals = MixedSignals.none()
    inputs: tuple[Reading, ...] = ()
    prior: Reading | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "contributions", tuple((str(m), float(s)) for m, s in self.contributions)
        )
        object.__setattr__(self, "inputs", tuple(self.inputs))

    # Convenience views of the fused reading.
    @property
    def mean(self) -> tuple[float, float, float]:
        return self.reading.mean

    @property
    def variance(self) -> tuple[float, float, float]:
        return self.reading.variance

    @property
    def confidence(self) -> float:
        return self.reading.confidence

    @property
    def top_category(self) -> str:
        return self.reading.top_category

    def contribution(self, modality: str) -> float:
        """Share of the fused precision that came from ``modality`` (0 if absent)."""
        return dict(self.contributions).get(modality, 0.0)

    def describe(self) -> str:
        """Short prompt text for this state (see `describe.describe`)."""
        from .describe import describe  # local import: describe imports this module

        return describe(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for LangGraph checkpoints)."""
        return {
            "reading": self.reading.to_dict(),
            "contributions": [[m, s] for m, s in self.contributions],
            "mixed_signals": self.mixed_signals.to_dict(),
            "inputs": [r.to_dict() for r in self.inputs],
            "prior": None if self.prior is None else self.prior.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusedState:
        """Inverse of `to_dict`."""
        try:
            reading = Reading.from_dict(data["reading"])
        except KeyError:
            raise ValueError("fused state dict is missing key 'reading'") from None
        prior = data.get("prior")
        return cls(
            reading=reading,
            contributions=tuple((m, s) for m, s in data.get("contributions", ())),
            mixed_signals=MixedSignals.from_dict(data.get("mixed_signals") or {}),
            inputs=tuple(Reading.from_dict(r) for r in data.get("inputs", ())),
            prior=None if prior is None else Reading.from_dict(prior),
        )


def pooling_weights(readings: Sequence[Reading]) -> np.ndarray:
    """Log-linear pooling weights: confidence_i / max_j confidence_j (see module doc)."""
    conf = np.array([r.confidence for r in readings], dtype=np.float64)
    return conf / conf.max()


def log_linear_pool(distributions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Normalised prod_i p_i^w_i for an (n, 7) array of distributions and n weights."""
    logs = np.log(np.maximum(distributions, CATEGORY_FLOOR))
    pooled = weights @ logs
    pooled -= pooled.max()  # stability: the largest term becomes exp(0) = 1
    p = np.exp(pooled)
    return p / p.sum()


def _pool_categories(sources: Sequence[Reading], conflicting: set[str]) -> np.ndarray:
    """Log-linear pooling, with the readings in conflict first averaged into one source (see
    the module docstring)."""
    dists = np.array([r.categories for r in sources], dtype=np.float64)
    weights = pooling_weights(sources)
    candidates = [r.modality in conflicting and r.modality not in NON_EVIDENCE_MODALITIES for r in sources]
    # A reading is in conflict when it disagrees with a reading of another modality (an
    # uninformative reading of a conflicting modality never does, so it still drops out).
    involved = np.array([c and any(candidates[j] and o.modality != r.modality and compare(r, o) is not None
                                   for j, o in enumerate(sources))
                         for r, c in zip(sources, candidates)])
    if involved.sum() < 2:
        return log_linear_pool(dists, weights)
    average = weights[involved] @ dists[involved] / weights[involved].sum()
    rest = ~involved
    return log_linear_pool(np.vstack([dists[rest], average[None, :]]),
                           np.concatenate([weights[rest], [weights[involved].max()]]))


def fuse(readings: Iterable[Reading], prior: Reading | None = None) -> FusedState:
    """Fuse one turn's readings (and an optional temporal prior) into a `FusedState`.

    With no readings and no prior the result is the uninformative reading.  The
    fused reading's modality is "fused".  See the module docstring for the maths.
    """
    inputs = tuple(readings)
    for r in inputs:
        if not isinstance(r, Reading):
            raise TypeError(f"fuse() expects Reading objects, got {type(r).__name__}")
    if prior is not None and not isinstance(prior, Reading):
        raise TypeError(f"prior must be a Reading, got {type(prior).__name__}")

    sources = list(inputs) + ([prior] if prior is not None else [])
    labels = [r.modality for r in inputs] + ([MODALITY_PRIOR] if prior is not None else [])
    if not sources:
        return FusedState(reading=Reading.uninformative(MODALITY_FUSED))

    means = np.array([r.mean for r in sources], dtype=np.float64)  # (n, 3)
    variances = np.array([r.variance for r in sources], dtype=np.float64)
    precisions = 1.0 / variances
    total_precision = precisions.sum(axis=0)
    fused_mean = (precisions * means).sum(axis=0) / total_precision
    # 1/sum(1/v_i) <= min v_i holds exactly in real arithmetic, but 1/(1/v) can round
    # one ulp above v; the minimum only removes that rounding, keeping the guarantee.
    fused_variance = np.minimum(1.0 / total_precision, variances.min(axis=0))

    mixed = detect_mixed_signals(inputs)
    fused_categories = _pool_categories(sources, set(mixed.modalities))

    shares = (precisions / total_precision).mean(axis=1)
    per_modality: dict[str, float] = defaultdict(float)
    for label, share in zip(labels, shares):
        per_modality[label] += float(share)
    contributions = tuple(sorted(per_modality.items(), key=lambda kv: (-kv[1], kv[0])))

    return FusedState(
        reading=Reading(mean=fused_mean, variance=fused_variance,
                        categories=fused_categories, modality=MODALITY_FUSED),
        contributions=contributions,
        mixed_signals=mixed,
        inputs=inputs,
        prior=prior,
    )


def temporal_prior(
    previous: FusedState | Reading,
    *,
    turns: float = 1.0,
    seconds: float = 0.0,
) -> Reading:
    """This turn's prior from the previous state, widened by elapsed turns and seconds.

    variance += PROCESS_NOISE_PER_TURN * turns + PROCESS_NOISE_PER_SECOND * seconds;
    categories keep a fraction exp(-turns/CATEGORY_MEMORY_TURNS -
    seconds/CATEGORY_MEMORY_SECONDS) of their shape, the rest goes to uniform.
    Pass whichever elapsed measures you know (both add).  Modality is "prior".
    """
    for name, value in (("turns", turns), ("seconds", seconds)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    reading = previous.reading if isinstance(previous, FusedState) else previous
    if not isinstance(reading, Reading):
        raise TypeError(f"previous must be a FusedState or Reading, got {type(previous).__name__}")

    extra = PROCESS_NOISE_PER_TURN * turns + PROCESS_NOISE_PER_SECOND * seconds
    keep = math.exp(-turns / CATEGORY_MEMORY_TURNS - seconds / CATEGORY_MEMORY_SECONDS)
    categories = keep * reading.category_array + (1.0 - keep) / N_CATEGORIES
    return Reading(mean=reading.mean, variance=reading.variance_array + extra,
                   categories=categories, modality=MODALITY_PRIOR)
