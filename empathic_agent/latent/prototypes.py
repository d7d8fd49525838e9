"""Category prototypes in VAD space and the conversions between categories and VAD.

Source of the prototype means
-----------------------------
Russell, J. A. & Mehrabian, A. (1977). "Evidence for a three-factor theory of
emotions". *Journal of Research in Personality*, 11(3), 273-294.
doi:10.1016/0092-6566(77)90037-X.

That paper had subjects rate 151 emotion terms on the pleasure, arousal and
dominance scales and reports each term's mean on a -1..+1 scale, which is already
our [-1, 1] VAD scale, so the values are used **unscaled**.  For each of our
categories we take the term that names it:

==========  ==========  =======  =======  =========
category    term        V (P)    A        D
==========  ==========  =======  =======  =========
joy         joyful      +0.76    +0.48    +0.35
sadness     sad         -0.63    -0.27    -0.33
anger       angry       -0.51    +0.59    +0.25
fear        afraid      -0.64    +0.60    -0.43
surprise    surprised   +0.40    +0.67    -0.13
disgust     disgusted   -0.60    +0.35    +0.11
neutral     (none)       0.00     0.00     0.00
==========  ==========  =======  =======  =========

The angry and afraid values are the ones the ALMA model (Gebhard, P. (2005). "ALMA -
A Layered Model of Affect". AAMAS '05, 29-36) uses for its OCC emotions *anger* and
*fear*; the same six values are widely reproduced for Ekman's basic emotions (e.g.
Buechel & Hahn 2016, "Emotion analysis as a regression problem", ECAI).  Neutral is
not a rated term: it is the origin of the bipolar scales by construction.

Spread (our modelling choice, not from the table)
-------------------------------------------------
Each prototype is a diagonal Gaussian.  We give every category the same standard
deviation PROTOTYPE_SD = 0.25 per dimension.  Equal spreads keep the VAD -> category
mapping a function of distance only (no category "wins" just by being wider), and
0.25 is about half the distance between well separated prototypes (joy-sadness
~1.7, neutral-joy ~0.97) while still letting close pairs (anger-disgust, 0.29 apart)
overlap, as they do in human ratings.

Conversions
-----------
* categories -> VAD: the category distribution p defines a mixture of the prototype
  Gaussians; we return its moment-matched Gaussian (mean = sum p_k mu_k,
  variance = sum p_k (sigma_k^2 + mu_k^2) - mean^2, per dimension).
* VAD -> categories: the *expected likelihood* of each prototype under the reading's
  Gaussian, integral N(x; m, S) N(x; mu_k, Sigma_k) dx = N(m; mu_k, S + Sigma_k),
  normalised over categories (uniform category prior unless one is given).  A wide
  reading therefore gives a flat distribution, a tight one a peaked distribution.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .constants import CATEGORIES, N_CATEGORIES, N_DIMENSIONS

#: Prototype standard deviation (same for every category and dimension; see above).
PROTOTYPE_SD: Final[float] = 0.25

#: Prototype means (valence, arousal, dominance), Russell & Mehrabian (1977).
_PROTOTYPE_TABLE: Final[dict[str, tuple[float, float, float]]] = {
    "neutral": (0.00, 0.00, 0.00),
    "joy": (0.76, 0.48, 0.35),  # "joyful"
    "sadness": (-0.63, -0.27, -0.33),  # "sad"
    "anger": (-0.51, 0.59, 0.25),  # "angry"
    "fear": (-0.64, 0.60, -0.43),  # "afraid"
    "surprise": (0.40, 0.67, -0.13),  # "surprised"
    "disgust": (-0.60, 0.35, 0.11),  # "disgusted"
}

#: Read-only view of the prototype means, keyed by category.
PROTOTYPE_MEANS: Final[Mapping[str, tuple[float, float, float]]] = MappingProxyType(
    _PROTOTYPE_TABLE
)

#: Prototype means as a (7, 3) array in CATEGORIES order (read-only).
PROTOTYPE_MEAN_ARRAY: Final[NDArray[np.float64]] = np.array(
    [_PROTOTYPE_TABLE[c] for c in CATEGORIES], dtype=np.float64
)
PROTOTYPE_MEAN_ARRAY.setflags(write=False)

#: Prototype variances as a (7, 3) array in CATEGORIES order (read-only).
PROTOTYPE_VARIANCE_ARRAY: Final[NDArray[np.float64]] = np.full(
    (N_CATEGORIES, N_DIMENSIONS), PROTOTYPE_SD**2, dtype=np.float64
)
PROTOTYPE_VARIANCE_ARRAY.setflags(write=False)


def _as_probabilities(categories: ArrayLike, name: str = "categories") -> NDArray[np.float64]:
    """Validate a length-7 non-negative vector and return it normalised to sum 1."""
    p = np.asarray(categories, dtype=np.float64)
    if p.shape != (N_CATEGORIES,):
        raise ValueError(f"{name} must have {N_CATEGORIES} entries, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite, got {p.tolist()}")
    if np.any(p < 0):
        raise ValueError(f"{name} must be non-negative, got {p.tolist()}")
    total = float(p.sum())
    if total <= 0:
        raise ValueError(f"{name} must not be all zero")
    return p / total


def categories_to_vad(
    categories: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Moment-matched Gaussian (mean, variance) of the prototype mixture weighted by p.

    ``categories`` is a length-7 vector in CATEGORIES order (normalised here).  The
    variance is at least PROTOTYPE_SD**2 per dimension, growing with the spread of
    the categories the distribution hesitates between.
    """
    p = _as_probabilities(categories)
    mean = p @ PROTOTYPE_MEAN_ARRAY
    second_moment = p @ (PROTOTYPE_VARIANCE_ARRAY + PROTOTYPE_MEAN_ARRAY**2)
    # Law of total variance; clamp tiny negative rounding error at the floor.
    variance = np.maximum(second_moment - mean**2, PROTOTYPE_VARIANCE_ARRAY.min(axis=0))
    return mean, variance


def vad_to_categories(
    mean: ArrayLike,
    variance: ArrayLike,
    category_prior: Sequence[float] | None = None,
) -> NDArray[np.float64]:
    """Category distribution implied by a diagonal VAD Gaussian (length 7, sums to 1).

    Each category's score is the expected likelihood N(mean; mu_k, variance + sigma_k^2)
    (the overlap of the reading's Gaussian with the prototype's), times the optional
    ``category_prior`` (uniform if omitted), normalised.  Computed in log space so
    tight readings far from every prototype do not underflow to 0/0.
    """
    m = np.asarray(mean, dtype=np.float64).reshape(N_DIMENSIONS)
    s = np.asarray(variance, dtype=np.float64).reshape(N_DIMENSIONS)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))) or np.any(s < 0):
        raise ValueError("mean and variance must be finite, variance non-negative")
    total_var = PROTOTYPE_VARIANCE_ARRAY + s  # (7, 3)
    log_lik = -0.5 * np.sum(
        (m - PROTOTYPE_MEAN_ARRAY) ** 2 / total_var + np.log(2.0 * np.pi * total_var), axis=1
    )
    if category_prior is not None:
        prior = _as_probabilities(category_prior, "category_prior")
        with np.errstate(divide="ignore"):
            log_lik = log_lik + np.log(prior)
    log_lik -= log_lik.max()
    weights = np.exp(log_lik)
    return weights / weights.sum()
