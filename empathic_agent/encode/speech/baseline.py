"""Per-speaker baselines: running statistics of a speaker's own (unlabelled) features, shrunk towards
the population, against which the speaker-adapted head reads a new utterance.  (Their per-user
SQLite store is :class:`empathic_agent.memory.voice_baselines.VoiceBaselineStore`.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final, Sequence

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

# --- speaker adaptation -------------------------------------------------------------------------
#: Pseudo-count of the population statistics in the shrunk speaker baseline: with n clips the
#: baseline mean is (n * speaker_mean + K * population_mean) / (n + K) (a conjugate-prior
#: estimate), so a handful of clips moves it only part of the way.
BASELINE_PRIOR_CLIPS: Final[float] = 4.0
#: Running statistics forget old clips once this many are in (an exponentially weighted
#: baseline follows a voice that changes — a new microphone, a cold — instead of freezing).
BASELINE_MAX_WEIGHT: Final[float] = 200.0
#: Default number of baseline clips before the adapted head is used (config.json may override
#: it with the value training measured).
DEFAULT_MIN_BASELINE_CLIPS: Final[int] = 8


# ---------------------------------------------------------------------------------------------
# Per-speaker baselines


@dataclass(frozen=True, eq=False)
class VoiceBaseline:
    """Running statistics of one speaker's (imputed) feature vectors, unlabelled.

    An exponentially weighted mean and variance: exact running statistics for the first
    ``BASELINE_MAX_WEIGHT`` clips, then a window that slowly forgets old clips.

    Attributes:
        clips: utterances seen.
        weight: effective number of clips (min(clips, BASELINE_MAX_WEIGHT)).
        mean, variance: (D,) float64.
        feature_version: :func:`feature_version` of the vectors.
    """

    clips: int
    weight: float
    mean: NDArray[np.float64]
    variance: NDArray[np.float64]
    feature_version: str = ""
    updated_at: float = 0.0

    @classmethod
    def empty(cls, dim: int, version: str = "") -> "VoiceBaseline":
        return cls(0, 0.0, np.zeros(dim), np.zeros(dim), version)

    @classmethod
    def from_vectors(cls, vectors: NDArray[np.float64], version: str = "") -> "VoiceBaseline":
        """The baseline of a set of (imputed) feature vectors (N, D) at once."""
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, D) array, got shape {v.shape}")
        n = v.shape[0]
        return cls(n, float(min(n, BASELINE_MAX_WEIGHT)), v.mean(axis=0), v.var(axis=0), version, time.time())

    def updated(self, x: NDArray[np.float64]) -> "VoiceBaseline":
        """The baseline after one more (imputed) feature vector."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.mean.shape:
            raise ValueError(f"feature vector has shape {x.shape}, baseline {self.mean.shape}")
        weight = min(self.weight + 1.0, BASELINE_MAX_WEIGHT)
        alpha = 1.0 / weight
        delta = x - self.mean
        mean = self.mean + alpha * delta
        # Exponentially weighted variance; equals the plain running (population) variance
        # while weight == clips.
        var = (1.0 - alpha) * (self.variance + alpha * delta * delta)
        return VoiceBaseline(self.clips + 1, weight, mean, var, self.feature_version, time.time())

    def normaliser(self, population_mean: NDArray[np.float64], within_variance: NDArray[np.float64],
                   prior_clips: float = BASELINE_PRIOR_CLIPS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(centre, scale) to z-score this speaker's features, shrunk towards the population.

        centre = (w * mean + K * population_mean) / (w + K); the variance likewise shrinks
        towards the average within-speaker variance of the training speakers (K =
        BASELINE_PRIOR_CLIPS, w = the baseline's weight).
        """
        w, k = self.weight, float(prior_clips)
        centre = (w * self.mean + k * population_mean) / (w + k)
        var = (w * self.variance + k * within_variance) / (w + k)
        return centre, np.sqrt(np.maximum(var, 1e-12))

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Plain JSON (for a user's data export)."""
        out: dict[str, Any] = {"clips": self.clips, "weight": self.weight,
                               "feature_version": self.feature_version, "updated_at": self.updated_at}
        if names is not None and len(names) == self.mean.size:
            out["feature_names"] = list(names)
        out["mean"] = self.mean.tolist()
        out["variance"] = self.variance.tolist()
        return out


def leave_one_out_normalise(vectors: NDArray[np.float64], speakers: Sequence[Any],
                            population_mean: NDArray[np.float64], within_variance: NDArray[np.float64],
                            *, baseline_size: int | None = None,
                            seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Normalise every row against a baseline of the *other* rows of the same speaker.

    ``vectors`` (N, D) must be imputed (no NaN).  With ``baseline_size``, each row's baseline is
    a random subset of that many other clips (fixed ``seed``), as early in a conversation.
    A speaker with a single row gets the population statistics (an empty baseline).
    Returns the normalised rows (N, D) and each row's baseline size (N,).
    """
    x = np.asarray(vectors, dtype=np.float64)
    spk = np.asarray([str(s) for s in speakers])
    if len(spk) != len(x):
        raise ValueError(f"{len(spk)} speakers for {len(x)} rows")
    out = np.empty_like(x)
    sizes = np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    dim = x.shape[1]
    for s in np.unique(spk):
        rows = np.flatnonzero(spk == s)
        block = x[rows]
        total, total2 = block.sum(axis=0), (block * block).sum(axis=0)
        for j, r in enumerate(rows):
            others = len(rows) - 1
            if others < 1:
                base = VoiceBaseline.empty(dim)
            elif baseline_size is None or baseline_size >= others:
                m = (total - block[j]) / others
                v = np.maximum((total2 - block[j] ** 2) / others - m * m, 0.0)
                base = VoiceBaseline(others, float(min(others, BASELINE_MAX_WEIGHT)), m, v)
            else:
                pick = rng.choice(np.delete(np.arange(len(rows)), j), size=baseline_size, replace=False)
                base = VoiceBaseline.from_vectors(block[pick])
            centre, scale = base.normaliser(population_mean, within_variance)
            out[r] = (block[j] - centre) / scale
            sizes[r] = base.clips
    return out, sizes
