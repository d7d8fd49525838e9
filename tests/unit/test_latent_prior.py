"""The shared prior of the latent space: every encoder mixes its doubt with the same prior."""

from __future__ import annotations

import numpy as np

from empathic_agent.latent import CATEGORIES, PRIOR_VARIANCE, mix_with_prior


def test_no_doubt_keeps_the_reading_and_full_doubt_gives_the_prior():
    mean, var = np.array([0.6, -0.2, 0.1]), np.array([0.02, 0.05, 0.04])
    probs = np.eye(len(CATEGORIES))[1]
    m, v, p = mix_with_prior(mean, var, probs, 0.0)
    assert np.allclose(m, mean) and np.allclose(v, var) and np.allclose(p, probs)
    m, v, p = mix_with_prior(mean, var, probs, 1.0)
    assert np.allclose(m, 0.0) and np.allclose(v, PRIOR_VARIANCE) and np.allclose(p, 1 / len(CATEGORIES))


def test_a_batch_equals_its_rows_and_doubt_only_widens():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-1, 1, (5, 3))
    var = rng.uniform(0.01, 0.1, (5, 3))
    probs = rng.dirichlet(np.ones(len(CATEGORIES)), 5)
    doubt = np.array([0.0, 0.2, 0.5, 0.9, 1.5])  # out of range is clipped
    m, v, p = mix_with_prior(mean, var, probs, doubt)
    for i in range(5):
        mi, vi, pi = mix_with_prior(mean[i], var[i], probs[i], doubt[i])
        assert np.allclose(m[i], mi) and np.allclose(v[i], vi) and np.allclose(p[i], pi)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert (v >= np.minimum(var, PRIOR_VARIANCE) - 1e-12).all()
