"""Calibration metrics shared by every evaluation (encoders, judge, safety): one definition of the
expected calibration error and its reliability table.

ECE here is the classic binned estimate (Guo et al. 2017): confidences in ``bins`` equal-width bins
(``[k/bins, (k+1)/bins)``, 1.0 in the last one), and the gap between each bin's mean confidence and
its observed rate, weighted by the bin's share.  For a classifier the confidence is the top
probability and the outcome "the top label was right"; for a binary probability (the risk
reader's P(level >= k)) they are the probability and the label.

The binned estimate is biased upwards on small sets: even a perfectly calibrated model scores an
ECE well above zero on 50 items, because each bin's observed rate is a small sample.
:func:`ece_if_calibrated` measures that floor — the ECE the same confidences would get if the
outcomes were drawn from them — so a figure can be read against it (an ECE of 0.14 on 56 items,
where a calibrated model scores 0.10 on average, is not the same finding as on 5,000).

numpy only: runtime modules may use it.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ECE_BINS", "binned_ece", "reliability", "top_label", "ece_if_calibrated"]

#: Equal-width bins of every ECE the project reports.
ECE_BINS: Final[int] = 10
#: Draws of :func:`ece_if_calibrated` (its mean moves by < 0.002 between seeds at this count).
FLOOR_DRAWS: Final[int] = 1000


def _bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    return np.clip((confidence * bins).astype(int), 0, bins - 1)


def binned_ece(confidence: ArrayLike, outcome: ArrayLike, bins: int = ECE_BINS) -> float:
    """Expected calibration error of ``confidence`` (probabilities) against ``outcome`` (0/1)."""
    conf = np.asarray(confidence, np.float64)
    hit = np.asarray(outcome, np.float64)
    if conf.shape != hit.shape:
        raise ValueError(f"{conf.shape} confidences for {hit.shape} outcomes")
    if not conf.size:
        return 0.0
    which = _bins(conf, bins)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += float(sel.mean()) * abs(float(hit[sel].mean()) - float(conf[sel].mean()))
    return total


def reliability(confidence: ArrayLike, outcome: ArrayLike, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """The reliability table behind :func:`binned_ece`: per non-empty bin its range, count, mean
    confidence and observed rate."""
    conf = np.asarray(confidence, np.float64)
    hit = np.asarray(outcome, np.float64)
    which = _bins(conf, bins)
    rows = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            rows.append({"bin": [round(b / bins, 2), round((b + 1) / bins, 2)], "n": int(sel.sum()),
                         "confidence": round(float(conf[sel].mean()), 4), "accuracy": round(float(hit[sel].mean()), 4)})
    return rows


def top_label(probs: ArrayLike, gold: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) of a classifier's top label: its probability, and whether it is ``gold``
    (class indices)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (items, classes), got shape {p.shape}")
    return p.max(axis=1), (p.argmax(axis=1) == np.asarray(gold)).astype(np.float64)


def ece_if_calibrated(confidence: ArrayLike, bins: int = ECE_BINS, *, draws: int = FLOOR_DRAWS,
                      seed: int = 0) -> dict[str, float]:
    """The ECE these confidences would score if they were perfectly calibrated: outcomes drawn as
    Bernoulli(confidence), ``draws`` times; the mean and the 95th percentile."""
    conf = np.asarray(confidence, np.float64)
    if not conf.size:
        return {"mean": 0.0, "p95": 0.0}
    rng = np.random.default_rng(seed)
    scores = np.array([binned_ece(conf, rng.random(conf.shape) < conf, bins) for _ in range(draws)])
    return {"mean": round(float(scores.mean()), 4), "p95": round(float(np.quantile(scores, 0.95)), 4)}
