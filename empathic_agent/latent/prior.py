"""The uninformed prior of the latent space, and how an encoder's doubt mixes a reading with it.

Every encoder states how much it doubts a reading (a short message, a noisy clip, a blurred face:
``doubt`` u in [0, 1]).  The reading it returns is the moment-matched mixture of its model's
Gaussian (weight 1 - u) and the population prior (weight u): a neutral mean, the variance of a
uniform spread over [-1, 1] on each dimension (:data:`PRIOR_VARIANCE`) and uniform categories —

    mean  (1 - u) m
    var   (1 - u) v + u PRIOR_VARIANCE + u (1 - u) m^2
    cats  (1 - u) p + u / 7

so a doubtful reading widens and moves towards neutral instead of claiming false certainty, and
fusion (precision-weighted) lets the surer modalities speak.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from empathic_agent.latent.constants import N_CATEGORIES

__all__ = ["PRIOR_VARIANCE", "mix_with_prior"]

#: Variance of a uniform distribution over [-1, 1]: the prior's spread on each VAD dimension.
PRIOR_VARIANCE: Final[float] = 1.0 / 3.0


def mix_with_prior(mean: ArrayLike, var: ArrayLike, probs: ArrayLike,
                   doubt: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The reading ``(mean, var, probs)`` mixed with the prior by ``doubt`` (clipped to [0, 1]).

    One reading (vectors, a scalar doubt) or a batch (rows, one doubt per row)."""
    m = np.asarray(mean, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    u = np.clip(np.asarray(doubt, dtype=np.float64), 0.0, 1.0)
    if u.ndim:
        u = u[..., None]  # one doubt per row
    return ((1.0 - u) * m,
            (1.0 - u) * v + u * PRIOR_VARIANCE + u * (1.0 - u) * m**2,
            (1.0 - u) * p + u / N_CATEGORIES)
