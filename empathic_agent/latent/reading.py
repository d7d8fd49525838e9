"""The `Reading`: one modality's estimate of a person's emotional state.

A reading is a diagonal Gaussian over VAD (valence, arousal, dominance in [-1, 1])
plus a probability distribution over the seven categories, tagged with the modality
that produced it ("text", "speech", "face", "fused", "prior", ...).

Readings are frozen (hashable, safe to share between graph nodes) and store plain
Python floats in tuples, so `to_dict()` gives plain-JSON data for LangGraph
checkpoints and `to_flat_dict()` gives the flat scalar metadata Chroma accepts.

Input handling (so encoders can be sloppy but never silently wrong):

* NaN / infinite means, NaN variances, wrong lengths, negative variances, negative
  or all-zero category weights, unknown category names -> ``ValueError``;
* means are clipped into [-1, 1] (regression heads overshoot; the space is bounded);
* variances are floored at ``MIN_VARIANCE`` and capped at ``UNINFORMATIVE_VARIANCE``
  (``+inf`` is accepted and means "no information");
* categories are renormalised to sum to 1 (a mapping may omit categories: they get 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .constants import (
    CATEGORIES,
    CATEGORY_SUM_TOLERANCE,
    DIMENSIONS,
    MIN_VARIANCE,
    MODALITY_PRIOR,
    N_CATEGORIES,
    N_DIMENSIONS,
    REFERENCE_VARIANCE,
    UNINFORMATIVE_VARIANCE,
    VAD_MAX,
    VAD_MIN,
)
from .prototypes import categories_to_vad, vad_to_categories

#: What callers may pass for a VAD vector or a category distribution.
VectorLike = Union[Sequence[float], NDArray[np.float64], Mapping[str, float]]

# Key prefixes of the flat (Chroma-metadata) form.
_FLAT_VARIANCE_PREFIX = "var_"
_FLAT_CATEGORY_PREFIX = "p_"


def _vector(
    value: Any, names: tuple[str, ...], what: str, *, missing_ok: bool
) -> NDArray[np.float64]:
    """Turn a sequence/array or a name->value mapping into a float vector, validated."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what}: unknown names {sorted(unknown)}; expected {names}")
        if not missing_ok and set(value) != set(names):
            raise ValueError(f"{what}: missing {sorted(set(names) - set(value))}")
        value = [value.get(n, 0.0) for n in names]
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers, got {value!r}") from exc
    if arr.shape != (len(names),):
        raise ValueError(f"{what} must have {len(names)} entries {names}, got shape {arr.shape}")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{what} contains NaN: {arr.tolist()}")
    return arr


@dataclass(frozen=True)
class Reading:
    """A Gaussian over VAD plus a category distribution, from one modality.

    Attributes:
        mean: (valence, arousal, dominance), each in [-1, 1].
        variance: per-dimension variance, in [MIN_VARIANCE, UNINFORMATIVE_VARIANCE].
        categories: probabilities in CATEGORIES order, summing to 1.
        modality: where the reading came from ("text", "speech", "face", "fused",
            "prior", or any other encoder name).

    The constructor accepts sequences, numpy arrays, or name->value mappings for
    ``mean``, ``variance`` and ``categories`` and normalises them as described in
    the module docstring.
    """

    mean: tuple[float, float, float]
    variance: tuple[float, float, float]
    categories: tuple[float, ...]
    modality: str

    def __post_init__(self) -> None:
        if not isinstance(self.modality, str) or not self.modality.strip():
            raise ValueError(f"modality must be a non-empty string, got {self.modality!r}")

        mean = _vector(self.mean, DIMENSIONS, "mean", missing_ok=False)
        if not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be finite, got {mean.tolist()}")
        mean = np.clip(mean, VAD_MIN, VAD_MAX)

        variance = _vector(self.variance, DIMENSIONS, "variance", missing_ok=False)
        if np.any(variance < 0):
            raise ValueError(f"variance must be non-negative, got {variance.tolist()}")
        # +inf is allowed and means "no information": it is capped like any huge value.
        variance = np.clip(variance, MIN_VARIANCE, UNINFORMATIVE_VARIANCE)

        probs = _vector(self.categories, CATEGORIES, "categories", missing_ok=True)
        if not np.all(np.isfinite(probs)):
            raise ValueError(f"categories must be finite, got {probs.tolist()}")
        if np.any(probs < 0):
            raise ValueError(f"categories must be non-negative, got {probs.tolist()}")
        total = float(probs.sum())
        if total <= 0:
            raise ValueError("categories must not be all zero")
        # Renormalise only when needed so that a JSON round trip is bit-exact.
        if abs(total - 1.0) > CATEGORY_SUM_TOLERANCE:
            probs = probs / total

        # Frozen dataclass: write the normalised plain-float tuples back in place.
        object.__setattr__(self, "mean", tuple(float(x) for x in mean))
        object.__setattr__(self, "variance", tuple(float(x) for x in variance))
        object.__setattr__(self, "categories", tuple(float(x) for x in probs))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def uninformative(cls, modality: str = MODALITY_PRIOR) -> Reading:
        """A reading that carries no information: neutral mean, huge variance, uniform."""
        return cls(
            mean=(0.0, 0.0, 0.0),
            variance=(UNINFORMATIVE_VARIANCE,) * N_DIMENSIONS,
            categories=(1.0 / N_CATEGORIES,) * N_CATEGORIES,
            modality=modality,
        )

    @classmethod
    def from_categories(
        cls,
        categories: VectorLike,
        modality: str,
        *,
        extra_variance: float = 0.0,
    ) -> Reading:
        """A reading whose VAD is the moment-matched prototype mixture of ``categories``.

        For a category-only encoder (e.g. a FER-2013 face classifier).  The VAD variance
        is the mixture's variance (at least the prototype spread) plus ``extra_variance``,
        which an encoder can use to express that its classifier itself is unreliable.
        """
        if not math.isfinite(extra_variance) or extra_variance < 0:
            raise ValueError(f"extra_variance must be finite and >= 0, got {extra_variance}")
        probs = _vector(categories, CATEGORIES, "categories", missing_ok=True)
        mean, variance = categories_to_vad(probs)
        return cls(mean=mean, variance=variance + extra_variance, categories=probs,
                   modality=modality)

    @classmethod
    def from_vad(
        cls,
        mean: VectorLike,
        variance: VectorLike,
        modality: str,
        categories: VectorLike | None = None,
    ) -> Reading:
        """A reading from a VAD Gaussian; categories default to the prototype likelihoods.

        For a dimension-only encoder (e.g. an EmoBank VAD regressor).  The implied
        categories are computed from the *validated* (clipped, floored) Gaussian.
        """
        if categories is not None:
            return cls(mean=mean, variance=variance, categories=categories, modality=modality)
        # Validate first with a placeholder distribution, then derive the categories.
        provisional = cls(mean=mean, variance=variance,
                          categories=(1.0,) * N_CATEGORIES, modality=modality)
        probs = vad_to_categories(provisional.mean, provisional.variance)
        return cls(mean=provisional.mean, variance=provisional.variance, categories=probs,
                   modality=modality)

    # ------------------------------------------------------------------ views

    @property
    def valence(self) -> float:
        return self.mean[0]

    @property
    def arousal(self) -> float:
        return self.mean[1]

    @property
    def dominance(self) -> float:
        return self.mean[2]

    @property
    def mean_array(self) -> NDArray[np.float64]:
        return np.array(self.mean, dtype=np.float64)

    @property
    def variance_array(self) -> NDArray[np.float64]:
        return np.array(self.variance, dtype=np.float64)

    @property
    def precision_array(self) -> NDArray[np.float64]:
        """Per-dimension precision 1/variance (what fusion adds up)."""
        return 1.0 / self.variance_array

    @property
    def category_array(self) -> NDArray[np.float64]:
        return np.array(self.categories, dtype=np.float64)

    @property
    def confidence(self) -> float:
        """0..1: mean over dimensions of 1 / (1 + variance / REFERENCE_VARIANCE).

        0.5 means "as uncertain as a whole category region"; ~1 a very tight reading;
        ~0 an uninformative one.  Used to weight category pooling and for wording.
        """
        return float(np.mean(1.0 / (1.0 + self.variance_array / REFERENCE_VARIANCE)))

    @property
    def top_category(self) -> str:
        """Most probable category (ties go to the earlier one in CATEGORIES)."""
        return CATEGORIES[int(np.argmax(self.category_array))]

    @property
    def top_probability(self) -> float:
        return max(self.categories)

    def probability(self, category: str) -> float:
        """Probability of one named category."""
        try:
            return self.categories[CATEGORIES.index(category)]
        except ValueError:
            raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}") from None

    def category_dict(self) -> dict[str, float]:
        return dict(zip(CATEGORIES, self.categories))

    def implied_categories(self) -> NDArray[np.float64]:
        """Categories implied by this reading's VAD Gaussian alone (prototype likelihoods)."""
        return vad_to_categories(self.mean, self.variance)

    def widened(self, extra_variance: ArrayLike, modality: str | None = None) -> Reading:
        """A copy with ``extra_variance`` (scalar or per-dimension, >= 0) added."""
        extra = np.broadcast_to(np.asarray(extra_variance, dtype=np.float64), (N_DIMENSIONS,))
        if not np.all(np.isfinite(extra)) or np.any(extra < 0):
            raise ValueError(f"extra_variance must be finite and >= 0, got {extra.tolist()}")
        return Reading(mean=self.mean, variance=self.variance_array + extra,
                       categories=self.categories, modality=modality or self.modality)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form.  ``confidence`` and ``top_category`` are informative only."""
        return {
            "modality": self.modality,
            "mean": dict(zip(DIMENSIONS, self.mean)),
            "variance": dict(zip(DIMENSIONS, self.variance)),
            "categories": self.category_dict(),
            "confidence": self.confidence,
            "top_category": self.top_category,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reading:
        """Inverse of `to_dict` (derived keys are ignored; lists are accepted too)."""
        try:
            return cls(mean=data["mean"], variance=data["variance"],
                       categories=data["categories"], modality=data["modality"])
        except KeyError as exc:
            raise ValueError(f"reading dict is missing key {exc.args[0]!r}") from None

    def to_flat_dict(self, prefix: str = "") -> dict[str, float | str]:
        """Flat scalar form (str/float values only), e.g. for Chroma metadata.

        Keys: ``{prefix}valence``..., ``{prefix}var_valence``..., ``{prefix}p_joy``...,
        ``{prefix}modality``, ``{prefix}confidence``, ``{prefix}top_category``.
        """
        flat: dict[str, float | str] = {f"{prefix}modality": self.modality}
        for name, m, v in zip(DIMENSIONS, self.mean, self.variance):
            flat[f"{prefix}{name}"] = m
            flat[f"{prefix}{_FLAT_VARIANCE_PREFIX}{name}"] = v
        for name, p in zip(CATEGORIES, self.categories):
            flat[f"{prefix}{_FLAT_CATEGORY_PREFIX}{name}"] = p
        flat[f"{prefix}confidence"] = self.confidence
        flat[f"{prefix}top_category"] = self.top_category
        return flat

    @classmethod
    def from_flat_dict(cls, data: Mapping[str, Any], prefix: str = "") -> Reading:
        """Inverse of `to_flat_dict` (other keys in ``data`` are ignored)."""
        try:
            return cls(
                mean=[data[f"{prefix}{n}"] for n in DIMENSIONS],
                variance=[data[f"{prefix}{_FLAT_VARIANCE_PREFIX}{n}"] for n in DIMENSIONS],
                categories=[data[f"{prefix}{_FLAT_CATEGORY_PREFIX}{n}"] for n in CATEGORIES],
                modality=data[f"{prefix}modality"],
            )
        except KeyError as exc:
            raise ValueError(f"flat reading is missing key {exc.args[0]!r}") from None
