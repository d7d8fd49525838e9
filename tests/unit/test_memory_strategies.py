"""Retrieval strategies rank as intended (empathic_agent.memory.strategies).

Candidate pools are built from real MemoryRecord metadata (the same path a Chroma query takes), with
chosen semantic similarities, so each test pins one property of one strategy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empathic_agent.errors import ConfigError
from empathic_agent.latent import Reading, fuse
from empathic_agent.memory.record import MemoryRecord
from empathic_agent.memory.strategies import (
    MODE_CONGRUENT,
    MODE_REPAIR,
    MODE_SEMANTIC,
    REPAIR_TARGET,
    STRATEGIES,
    STRATEGY_RATIONALE,
    Candidates,
    RecallOptions,
    emotional_similarity,
    is_low_mood,
    score_candidates,
)

NOW = 1_800_000_000.0
DAY = 86400.0

SAD = Reading.from_vad((-0.63, -0.27, -0.33), (0.02, 0.02, 0.02), "text")
JOY = Reading.from_vad((0.76, 0.48, 0.35), (0.02, 0.02, 0.02), "text")
CALM_GOOD = Reading.from_vad((0.6, 0.0, 0.2), (0.02, 0.02, 0.02), "text")
ANGRY = Reading.from_vad((-0.51, 0.59, 0.25), (0.02, 0.02, 0.02), "text")
NEUTRAL = Reading.from_vad((0.0, 0.0, 0.0), (0.02, 0.02, 0.02), "text")


def rec(mid: str, emotion: Reading, *, age_days: float = 0.0, salience: float = 0.5,
        shift: float = 0.0, kind: str = "episode") -> MemoryRecord:
    ts = NOW - age_days * DAY
    return MemoryRecord(id=mid, user_id="alice", kind=kind, text=f"memory {mid}", emotion=emotion,
                        salience=salience, created_at=ts, updated_at=ts, valence_shift=shift)


def pool(*items: tuple[MemoryRecord, float]) -> Candidates:
    """Candidates from (record, semantic similarity) pairs."""
    return Candidates.from_rows([r.id for r, _ in items], [r.text for r, _ in items],
                                [r.to_metadata() for r, _ in items], [1.0 - s for _, s in items])


def ranked(cands: Candidates, state, **opts) -> list[str]:
    order, _, _ = score_candidates(cands, state, RecallOptions(**opts), now=NOW)
    return [cands.ids[i] for i in order]


# ------------------------------------------------------------------------------- emotional similarity
def test_emotional_similarity_is_one_for_identical_and_falls_with_distance():
    means = np.array([SAD.mean, ANGRY.mean, JOY.mean])
    variances = np.array([SAD.variance, ANGRY.variance, JOY.variance])
    sim = emotional_similarity(SAD.mean, SAD.variance, means, variances)
    assert sim[0] == pytest.approx(1.0)
    assert sim[0] > sim[1] > sim[2]  # sad ~ angry (both negative) > joy
    assert sim[2] < 1e-3


def test_emotional_similarity_caps_uninformative_variance():
    unknown = Reading.uninformative("unknown")
    sim = emotional_similarity(SAD.mean, SAD.variance, np.array([unknown.mean]), np.array([unknown.variance]))
    # A memory without an emotional tag is "vaguely near neutral": neither a match nor zero.
    assert 0.05 < sim[0] < 0.6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=6, max_size=6), st.lists(st.floats(1e-4, 2.0), min_size=6, max_size=6))
def test_emotional_similarity_is_symmetric_and_bounded(m, v):
    a = emotional_similarity(m[:3], v[:3], np.array([m[3:]]), np.array([v[3:]]))[0]
    b = emotional_similarity(m[3:], v[3:], np.array([m[:3]]), np.array([v[:3]]))[0]
    assert 0.0 <= a <= 1.0 + 1e-12  # (may underflow to 0 for far, tight readings)
    assert a == pytest.approx(b, rel=1e-9)


# ------------------------------------------------------------------------------- semantic baseline
def test_semantic_strategy_ignores_emotion():
    cands = pool((rec("a", JOY), 0.8), (rec("b", SAD), 0.6), (rec("c", SAD), 0.4))
    assert ranked(cands, SAD, strategy="semantic", k=3) == ["a", "b", "c"]
    _, comps, mode = score_candidates(cands, SAD, RecallOptions(strategy="semantic", k=3), now=NOW)
    assert mode == MODE_SEMANTIC
    assert np.all(comps["emotional"] == 0)
    assert np.allclose(comps["total"], comps["semantic"])


# ------------------------------------------------------------------------------- combination
def test_combination_prefers_mood_congruent_memory_at_similar_meaning():
    cands = pool((rec("joyful", JOY), 0.62), (rec("sad", SAD), 0.58), (rec("other", NEUTRAL), 0.1))
    assert ranked(cands, SAD, strategy="combination", k=2) == ["sad", "joyful"]
    assert ranked(cands, JOY, strategy="combination", k=2) == ["joyful", "sad"]
    # The baseline would have put the joyful one first for the sad person.
    assert ranked(cands, SAD, strategy="semantic", k=2) == ["joyful", "sad"]


def test_combination_total_is_the_documented_formula():
    cands = pool((rec("a", SAD, age_days=30, salience=0.4), 0.5))
    opts = RecallOptions(strategy="combination", alpha=0.3, recency_weight=0.1, salience_weight=0.2)
    _, c, mode = score_candidates(cands, SAD, opts, now=NOW)
    assert mode == MODE_CONGRUENT
    assert c["recency"][0] == pytest.approx(0.5)  # exactly one half-life old
    expected = 0.7 * 0.5 + 0.3 * c["emotional"][0] + 0.1 * 0.5 + 0.2 * 0.4
    assert c["total"][0] == pytest.approx(expected)


def test_alpha_zero_and_no_state_fall_back_to_semantic_order():
    cands = pool((rec("joyful", JOY), 0.62), (rec("sad", SAD), 0.58))
    assert ranked(cands, SAD, strategy="combination", alpha=0.0, recency_weight=0, salience_weight=0,
                  k=2) == ["joyful", "sad"]
    order, c, mode = score_candidates(cands, None, RecallOptions(strategy="combination", k=2), now=NOW)
    assert mode == MODE_SEMANTIC and [cands.ids[i] for i in order] == ["joyful", "sad"]
    # An uninformative state is no state.
    _, _, mode = score_candidates(cands, Reading.uninformative(), RecallOptions(k=2), now=NOW)
    assert mode == MODE_SEMANTIC


def test_fused_state_is_accepted_as_emotional_state():
    cands = pool((rec("joyful", JOY), 0.62), (rec("sad", SAD), 0.58))
    state = fuse([SAD])
    order, _, _ = score_candidates(cands, state, RecallOptions(k=2), now=NOW)
    assert cands.ids[order[0]] == "sad"


# ------------------------------------------------------------------------------- sequential
def test_sequential_reranks_only_the_semantic_shortlist():
    # k=1 -> shortlist of the 2 most similar.  The perfectly congruent memory "far" is outside it.
    gloomy = Reading.from_vad((-0.45, -0.2, -0.2), (0.02, 0.02, 0.02), "text")
    cands = pool((rec("s1", JOY), 0.9), (rec("s2", gloomy), 0.85), (rec("s3", ANGRY), 0.8),
                 (rec("far", SAD), 0.5))
    out = ranked(cands, SAD, strategy="sequential", k=1)
    assert out == ["s2"]  # the most sad-like memory of the shortlist, not the most similar one
    # With k=2 the shortlist (4) holds all four, and the congruent "far" comes first.
    assert ranked(cands, SAD, strategy="sequential", k=2) == ["far", "s2"]
    # combination, by contrast, reaches it even at k=1 when mood weighs enough.
    assert ranked(cands, SAD, strategy="combination", alpha=0.8, k=1) == ["far"]


def test_sequential_without_state_keeps_semantic_order():
    cands = pool((rec("a", JOY), 0.9), (rec("b", SAD), 0.8), (rec("c", SAD), 0.7))
    assert ranked(cands, None, strategy="sequential", k=3, recency_weight=0, salience_weight=0) == ["a", "b", "c"]


# ------------------------------------------------------------------------------- mood repair
def test_mood_repair_prefers_positive_memories_when_person_is_low():
    cands = pool((rec("sad", SAD), 0.6), (rec("calm", CALM_GOOD), 0.55), (rec("angry", ANGRY), 0.6))
    order, c, mode = score_candidates(cands, SAD, RecallOptions(strategy="mood_repair", k=3), now=NOW)
    assert mode == MODE_REPAIR
    assert cands.ids[order[0]] == "calm"
    # Mood-congruent recall would have done the opposite.
    assert ranked(cands, SAD, strategy="combination", k=1) == ["sad"]


def test_mood_repair_values_moments_when_the_mood_lifted():
    cands = pool((rec("stuck", SAD, shift=0.0), 0.6), (rec("lifted", SAD, shift=0.5), 0.6))
    assert ranked(cands, SAD, strategy="mood_repair", k=2)[0] == "lifted"


def test_mood_repair_is_congruent_when_person_is_not_low():
    cands = pool((rec("sad", SAD), 0.6), (rec("joy", JOY), 0.6))
    order, _, mode = score_candidates(cands, JOY, RecallOptions(strategy="mood_repair", k=2), now=NOW)
    assert mode == MODE_CONGRUENT and cands.ids[order[0]] == "joy"
    assert is_low_mood(SAD) and not is_low_mood(JOY) and not is_low_mood(None)
    assert not is_low_mood(Reading.uninformative())
    assert REPAIR_TARGET.valence > 0


def test_facts_are_not_gated_by_the_mood_they_were_stated_in():
    fact = rec("fact", JOY, kind="fact")
    cands = pool((fact, 0.6), (rec("ep-joy", JOY), 0.6))
    _, c, _ = score_candidates(cands, SAD, RecallOptions(k=2), now=NOW)
    assert c["emotional"][0] == pytest.approx(0.5)  # the fact: mid-scale whatever the mood
    assert c["emotional"][1] < 0.01  # the joyful episode: incongruent with sadness
    assert ranked(cands, SAD, k=2)[0] == "fact"
    _, c, _ = score_candidates(cands, SAD, RecallOptions(k=2, strategy="semantic"), now=NOW)
    assert c["emotional"][0] == 0.0


# ------------------------------------------------------------------------------- recency, salience, filters
def test_recency_and_salience_break_ties():
    cands = pool((rec("old", SAD, age_days=90), 0.6), (rec("new", SAD, age_days=1), 0.6))
    assert ranked(cands, SAD, k=2) == ["new", "old"]
    cands = pool((rec("faint", SAD, salience=0.1), 0.6), (rec("vivid", SAD, salience=0.9), 0.6))
    assert ranked(cands, SAD, k=2) == ["vivid", "faint"]


def test_irrelevant_memories_are_never_returned_by_any_strategy():
    cands = pool((rec("relevant", JOY), 0.5), (rec("unrelated", SAD), 0.02))
    for strategy in STRATEGIES:
        assert ranked(cands, SAD, strategy=strategy, k=2) == ["relevant"], strategy


def test_kind_filter_and_k_limit():
    cands = pool(*[(rec(f"e{i}", SAD), 0.5 + i / 100) for i in range(6)], (rec("f", SAD, kind="fact"), 0.9))
    assert ranked(cands, SAD, k=3, kinds=("fact",)) == ["f"]
    assert len(ranked(cands, SAD, k=3)) == 3


def test_scores_are_bounded_and_deterministic():
    rng = np.random.default_rng(1)
    items = [(rec(f"m{i:02d}", Reading.from_vad(rng.uniform(-1, 1, 3), rng.uniform(0.01, 0.5, 3), "text"),
                  age_days=float(rng.uniform(0, 400)), salience=float(rng.uniform())), float(rng.uniform(0, 1)))
             for i in range(40)]
    cands = pool(*items)
    for strategy in STRATEGIES:
        order1, c, _ = score_candidates(cands, SAD, RecallOptions(strategy=strategy, k=10), now=NOW)
        order2, _, _ = score_candidates(cands, SAD, RecallOptions(strategy=strategy, k=10), now=NOW)
        assert list(order1) == list(order2)
        for name in ("semantic", "emotional", "recency", "salience"):
            assert np.all((c[name] >= 0) & (c[name] <= 1 + 1e-12)), name
        totals = c["total"][order1]
        assert all(a >= b - 1e-12 for a, b in zip(totals, totals[1:])), strategy


def test_recall_options_validate():
    with pytest.raises(ConfigError, match="strategy"):
        RecallOptions(strategy="magic")
    with pytest.raises(ConfigError):
        RecallOptions(alpha=1.5)
    with pytest.raises(ConfigError):
        RecallOptions(k=0)
    with pytest.raises(ConfigError):
        RecallOptions(min_semantic=math.nan)
    assert RecallOptions(k=4).effective_pool >= 12 and RecallOptions(k=10).effective_pool == 30
    assert set(STRATEGY_RATIONALE) == set(STRATEGIES)
