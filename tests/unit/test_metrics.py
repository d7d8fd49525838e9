"""The shared calibration metrics: ECE, its reliability table and the small-set floor."""

from __future__ import annotations

import numpy as np
import pytest

from empathic_agent.metrics import binned_ece, ece_if_calibrated, reliability, top_label


def test_ece_is_the_weighted_gap_per_bin():
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.25, 0.25])
    hit = np.array([1, 1, 1, 0, 0, 0])
    # Bin 0.9-1.0: 4 items, confidence 0.95, rate 0.75; bin 0.2-0.3: 2 items, 0.25 vs 0.
    assert binned_ece(conf, hit) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.25)
    table = reliability(conf, hit)
    assert [r["n"] for r in table] == [2, 4] and table[1]["accuracy"] == 0.75
    assert binned_ece(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0  # the end points fall in bins
    assert binned_ece([], []) == 0.0
    with pytest.raises(ValueError):
        binned_ece([0.5], [1, 0])


def test_top_label_confidence_and_outcome():
    conf, hit = top_label(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]), np.array([0, 1]))
    assert conf.tolist() == [0.7, 0.6] and hit.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError):
        top_label(np.array([0.5, 0.5]), np.array([0]))


def test_the_floor_shrinks_with_the_set_and_a_calibrated_model_sits_near_it():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0.3, 0.9, 50), rng.uniform(0.3, 0.9, 5000)
    f_small, f_large = ece_if_calibrated(small, draws=300), ece_if_calibrated(large, draws=300)
    assert f_small["mean"] > 3 * f_large["mean"] and f_small["p95"] >= f_small["mean"]
    # A model that is calibrated by construction scores within the floor's spread.
    hit = rng.random(large.shape) < large
    assert binned_ece(large, hit) <= f_large["p95"] + 0.01
    # An overconfident one does not.
    assert binned_ece(np.minimum(large + 0.2, 1.0), hit) > f_large["p95"]
