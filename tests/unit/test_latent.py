"""Tests of the emotional latent space (empathic_agent.latent).

Property tests (hypothesis) check the maths of fusion and the conversions; example
tests pin concrete behaviour: incongruence, the temporal prior, descriptions,
serialisation and input validation.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empathic_agent.latent import (
    CATEGORIES,
    DIMENSIONS,
    MAHALANOBIS_THRESHOLD,
    MAX_DESCRIPTION_CHARS,
    MIN_VARIANCE,
    PROCESS_NOISE_PER_SECOND,
    PROCESS_NOISE_PER_TURN,
    PROTOTYPE_MEANS,
    PROTOTYPE_SD,
    REFERENCE_VARIANCE,
    UNINFORMATIVE_VARIANCE,
    FusedState,
    MixedSignals,
    Reading,
    categories_to_vad,
    describe,
    detect_mixed_signals,
    fuse,
    temporal_prior,
    vad_to_categories,
)
from empathic_agent.latent.incongruence import valence_lean

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

# ---------------------------------------------------------------- strategies

coordinate = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
# Log-uniform variances from the floor up to 4 (wider than any meaningful reading).
variance_value = st.floats(min_value=-4.0, max_value=math.log10(4.0)).map(lambda e: 10.0**e)
category_vector = st.lists(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=7, max_size=7
).filter(lambda p: sum(p) > 1e-3)
modality = st.sampled_from(["text", "speech", "face"])


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    return Reading(
        mean=tuple(draw(coordinate) for _ in range(3)),
        variance=tuple(draw(variance_value) for _ in range(3)),
        categories=draw(category_vector),
        modality=draw(modality),
    )


reading_lists = st.lists(readings(), min_size=1, max_size=4)


def assert_same_state(a: FusedState, b: FusedState, *, tol: float) -> None:
    np.testing.assert_allclose(a.reading.mean, b.reading.mean, atol=tol, rtol=0)
    np.testing.assert_allclose(a.reading.variance, b.reading.variance, rtol=tol, atol=0)
    np.testing.assert_allclose(a.reading.categories, b.reading.categories, atol=tol, rtol=0)
    assert a.mixed_signals.flag == b.mixed_signals.flag


# ---------------------------------------------------------------- properties of the maths


@PROPERTY_SETTINGS
@given(reading_lists, st.one_of(st.none(), readings()), modality)
def test_fusing_with_uninformative_reading_changes_nothing(rs, prior, extra_modality):
    base = fuse(rs, prior=prior)
    with_nothing = fuse(rs + [Reading.uninformative(extra_modality)], prior=prior)
    assert_same_state(base, with_nothing, tol=1e-4)
    # Pooled categories are unchanged exactly up to rounding: uniform is a constant factor.
    np.testing.assert_allclose(base.reading.categories, with_nothing.reading.categories, atol=1e-12)
    assert with_nothing.mixed_signals == base.mixed_signals


@PROPERTY_SETTINGS
@given(readings())
def test_fusing_a_single_reading_returns_it(r):
    fused = fuse([r]).reading
    np.testing.assert_allclose(fused.mean, r.mean, atol=1e-12)
    np.testing.assert_allclose(fused.variance, r.variance, rtol=1e-12)
    # Only the CATEGORY_FLOOR (1e-6) applied before pooling can move a probability.
    np.testing.assert_allclose(fused.categories, r.categories, atol=1e-5)
    assert fused.modality == "fused"


@PROPERTY_SETTINGS
@given(reading_lists.flatmap(lambda rs: st.tuples(st.just(rs), st.permutations(rs))))
def test_fusion_is_order_independent(pair):
    rs, shuffled = pair
    a, b = fuse(rs), fuse(shuffled)
    assert_same_state(a, b, tol=1e-9)
    assert a.mixed_signals == b.mixed_signals
    assert dict(a.contributions) == pytest.approx(dict(b.contributions), abs=1e-12)


@PROPERTY_SETTINGS
@given(reading_lists, st.one_of(st.none(), readings()))
def test_fused_variance_never_exceeds_smallest_input_variance(rs, prior):
    sources = rs + ([prior] if prior is not None else [])
    smallest = np.min([r.variance for r in sources], axis=0)
    fused = fuse(rs, prior=prior).reading
    assert np.all(np.array(fused.variance) <= smallest)
    # and the fused mean is a convex combination of the input means
    means = np.array([r.mean for r in sources])
    assert np.all(fused.mean_array >= means.min(axis=0) - 1e-12)
    assert np.all(fused.mean_array <= means.max(axis=0) + 1e-12)


@PROPERTY_SETTINGS
@given(reading_lists, st.one_of(st.none(), readings()))
def test_contributions_are_shares_summing_to_one(rs, prior):
    state = fuse(rs, prior=prior)
    shares = dict(state.contributions)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(0.0 <= s <= 1.0 + 1e-12 for s in shares.values())
    assert set(shares) == {r.modality for r in rs} | ({"prior"} if prior is not None else set())


@PROPERTY_SETTINGS
@given(readings(), category_vector, st.floats(0.0, 50.0), st.floats(0.0, 3600.0))
def test_categories_sum_to_one_after_every_conversion(r, p, turns, seconds):
    candidates = [
        r.category_array,
        Reading.from_categories(p, "face").category_array,
        Reading.from_vad(r.mean, r.variance, "text").category_array,
        vad_to_categories(r.mean, r.variance),
        fuse([r, Reading.from_categories(p, "face")]).reading.category_array,
        temporal_prior(r, turns=turns, seconds=seconds).category_array,
    ]
    for probs in candidates:
        assert probs.shape == (7,)
        assert np.all(probs >= 0)
        assert probs.sum() == pytest.approx(1.0, abs=1e-9)


@PROPERTY_SETTINGS
@given(category_vector)
def test_category_mixture_is_a_valid_gaussian(p):
    mean, variance = categories_to_vad(p)
    assert np.all(np.abs(mean) <= 1.0)
    # A mixture is never tighter than its components.
    assert np.all(variance >= PROTOTYPE_SD**2 - 1e-12)


@PROPERTY_SETTINGS
@given(readings())
def test_json_round_trip_is_exact(r):
    assert Reading.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    flat = r.to_flat_dict(prefix="person_")
    assert all(isinstance(v, (str, float)) for v in flat.values())
    assert Reading.from_flat_dict(flat, prefix="person_") == r


@PROPERTY_SETTINGS
@given(reading_lists, st.one_of(st.none(), readings()))
def test_description_is_short(rs, prior):
    state = fuse(rs, prior=prior)
    text = describe(state)
    assert 0 < len(text) <= MAX_DESCRIPTION_CHARS
    assert ("mixed signals" in text) == state.mixed_signals.flag


# ---------------------------------------------------------------- readings


def test_uninformative_reading():
    r = Reading.uninformative()
    assert r.modality == "prior"
    assert r.variance == (UNINFORMATIVE_VARIANCE,) * 3
    assert r.categories == pytest.approx((1 / 7,) * 7)
    assert r.confidence < 1e-6


def test_confidence_scale():
    half = Reading(mean=(0, 0, 0), variance=(REFERENCE_VARIANCE,) * 3,
                   categories=[1] * 7, modality="text")
    assert half.confidence == pytest.approx(0.5)
    tight = Reading(mean=(0, 0, 0), variance=(0.001,) * 3, categories=[1] * 7, modality="text")
    assert tight.confidence > 0.9


def test_clipping_flooring_and_normalising():
    r = Reading(mean=(1.7, -3.0, 0.2), variance=(0.0, 1e-9, math.inf),
                categories={"joy": 3.0, "sadness": 1.0}, modality="text")
    assert r.mean == (1.0, -1.0, 0.2)
    assert r.variance == (MIN_VARIANCE, MIN_VARIANCE, UNINFORMATIVE_VARIANCE)
    assert r.probability("joy") == pytest.approx(0.75)
    assert r.probability("sadness") == pytest.approx(0.25)
    assert r.probability("neutral") == 0.0
    assert r.top_category == "joy"
    assert (r.valence, r.arousal, r.dominance) == r.mean


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mean": (math.nan, 0, 0)}, "NaN"),
        ({"mean": (math.inf, 0, 0)}, "finite"),
        ({"mean": (0, 0)}, "3 entries"),
        ({"mean": {"valence": 0, "arousal": 0}}, "missing"),
        ({"variance": (0.1, -0.1, 0.1)}, "non-negative"),
        ({"variance": (0.1, math.nan, 0.1)}, "NaN"),
        ({"categories": [0.5] * 6}, "7 entries"),
        ({"categories": [-0.1] + [0.2] * 6}, "non-negative"),
        ({"categories": [0.0] * 7}, "all zero"),
        ({"categories": {"happiness": 1.0}}, "unknown"),
        ({"categories": [math.nan] + [0.1] * 6}, "NaN"),
        ({"modality": ""}, "modality"),
        ({"mean": ("a", 0, 0)}, "numbers"),
    ],
)
def test_invalid_input_raises_clear_value_error(kwargs, message):
    args = {"mean": (0, 0, 0), "variance": (0.1, 0.1, 0.1), "categories": [1] * 7,
            "modality": "text"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Reading(**args)


def test_from_dict_reports_missing_key():
    data = Reading.uninformative().to_dict()
    del data["variance"]
    with pytest.raises(ValueError, match="variance"):
        Reading.from_dict(data)


# ---------------------------------------------------------------- prototypes


def test_prototype_table_values():
    # Russell & Mehrabian (1977) term ratings, unscaled.
    assert PROTOTYPE_MEANS["joy"] == (0.76, 0.48, 0.35)
    assert PROTOTYPE_MEANS["sadness"] == (-0.63, -0.27, -0.33)
    assert PROTOTYPE_MEANS["anger"] == (-0.51, 0.59, 0.25)
    assert PROTOTYPE_MEANS["fear"] == (-0.64, 0.60, -0.43)
    assert PROTOTYPE_MEANS["neutral"] == (0.0, 0.0, 0.0)
    assert set(PROTOTYPE_MEANS) == set(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_one_hot_category_maps_to_its_prototype_and_back(category):
    r = Reading.from_categories({category: 1.0}, "face")
    assert r.mean == pytest.approx(PROTOTYPE_MEANS[category])
    assert r.variance == pytest.approx((PROTOTYPE_SD**2,) * 3)
    implied = dict(zip(CATEGORIES, r.implied_categories()))
    assert max(implied, key=implied.get) == category


def test_category_mixture_moments():
    mean, variance = categories_to_vad([0, 0.5, 0.5, 0, 0, 0, 0])
    joy, sad = np.array(PROTOTYPE_MEANS["joy"]), np.array(PROTOTYPE_MEANS["sadness"])
    np.testing.assert_allclose(mean, (joy + sad) / 2)
    # within-component spread + between-component spread
    np.testing.assert_allclose(variance, PROTOTYPE_SD**2 + ((joy - sad) / 2) ** 2)


def test_vad_to_categories_sharpness_follows_variance():
    tight = vad_to_categories((-0.6, -0.3, -0.3), (0.001,) * 3)
    wide = vad_to_categories((-0.6, -0.3, -0.3), (100.0,) * 3)
    assert CATEGORIES[int(np.argmax(tight))] == "sadness"
    assert tight.max() > 0.7
    assert wide.max() - wide.min() < 0.01  # essentially uniform


def test_from_vad_derives_categories():
    r = Reading.from_vad((0.7, 0.5, 0.3), (0.01, 0.01, 0.01), "text")
    assert r.top_category == "joy"
    explicit = Reading.from_vad((0.7, 0.5, 0.3), (0.01,) * 3, "text", categories={"neutral": 1})
    assert explicit.top_category == "neutral"


# ---------------------------------------------------------------- fusion


def test_precision_weighting_numbers():
    a = Reading(mean=(0.6, 0.0, 0.0), variance=(0.01, 0.01, 0.01), categories=[1] * 7,
                modality="text")
    b = Reading(mean=(-0.4, 0.0, 0.0), variance=(0.04, 0.04, 0.04), categories=[1] * 7,
                modality="speech")
    state = fuse([a, b])
    # precisions 100 and 25: mean = (100*0.6 + 25*-0.4)/125 = 0.4, variance = 1/125
    assert state.reading.valence == pytest.approx(0.4)
    assert state.reading.variance == pytest.approx((0.008,) * 3)
    assert state.contribution("text") == pytest.approx(0.8)
    assert state.contribution("speech") == pytest.approx(0.2)
    assert state.contribution("face") == 0.0


def test_log_linear_pooling_weights_follow_confidence():
    joy = {"joy": 0.8, "neutral": 0.2}
    sad = {"sadness": 0.8, "neutral": 0.2}
    confident = Reading.from_vad((0.5, 0.3, 0.2), (0.005,) * 3, "face", categories=joy)
    unsure = Reading.from_vad((-0.5, -0.2, -0.2), (2.0,) * 3, "text", categories=sad)
    fused = fuse([confident, unsure]).reading
    assert fused.probability("joy") > fused.probability("sadness")
    # Two agreeing confident readings sharpen (product of experts).
    twice = fuse([confident, Reading.from_vad(confident.mean, confident.variance, "text",
                                              categories=joy)]).reading
    assert twice.probability("joy") == pytest.approx(0.8**2 / (0.8**2 + 0.2**2))


def test_fuse_with_nothing_is_uninformative():
    state = fuse([])
    assert state.reading.modality == "fused"
    assert state.reading.confidence < 1e-6
    assert not state.mixed_signals
    assert state.contributions == ()


def test_fuse_rejects_non_readings():
    with pytest.raises(TypeError):
        fuse([{"mean": (0, 0, 0)}])  # type: ignore[list-item]


# ---------------------------------------------------------------- temporal prior


def _sad_state() -> FusedState:
    return fuse([Reading(mean=(-0.6, -0.3, -0.3), variance=(0.01, 0.02, 0.03),
                         categories={"sadness": 0.9, "neutral": 0.1}, modality="text")])


def test_temporal_prior_widens_by_turns_and_seconds():
    state = _sad_state()
    one_turn = temporal_prior(state, turns=1)
    assert one_turn.modality == "prior"
    assert one_turn.mean == state.reading.mean
    np.testing.assert_allclose(one_turn.variance,
                               np.array(state.reading.variance) + PROCESS_NOISE_PER_TURN)
    later = temporal_prior(state, turns=1, seconds=120)
    np.testing.assert_allclose(
        later.variance,
        np.array(state.reading.variance) + PROCESS_NOISE_PER_TURN + 120 * PROCESS_NOISE_PER_SECOND,
    )
    assert later.confidence < one_turn.confidence < state.confidence
    # categories flatten towards uniform but keep their shape
    assert 1 / 7 < later.probability("sadness") < one_turn.probability("sadness") < 0.9
    same = temporal_prior(state, turns=0)
    assert same.variance == state.reading.variance


def test_temporal_prior_old_state_is_nearly_forgotten():
    hour_later = temporal_prior(_sad_state(), turns=0, seconds=3600)
    assert hour_later.confidence < 0.1
    assert hour_later.probability("sadness") < 1 / 7 + 0.01


def test_prior_carries_over_but_strong_evidence_dominates():
    prior = temporal_prior(_sad_state(), turns=1)
    weak = Reading(mean=(0.3, 0.2, 0.0), variance=(0.5,) * 3, categories=[1] * 7,
                   modality="text")
    strong = Reading(mean=(0.7, 0.4, 0.3), variance=(0.005,) * 3,
                     categories={"joy": 1}, modality="text")
    carried = fuse([weak], prior=prior).reading
    assert carried.valence < -0.5  # the earlier sad state still dominates a vague reading
    assert carried.top_category == "sadness"
    updated = fuse([strong], prior=prior)
    assert updated.reading.valence > 0.5
    assert updated.contribution("text") > 0.7
    assert updated.contribution("prior") < 0.3
    assert not updated.mixed_signals  # the prior never counts as a conflicting modality


@pytest.mark.parametrize("kwargs", [{"turns": -1}, {"seconds": math.nan}, {"seconds": -5}])
def test_temporal_prior_rejects_bad_elapsed_time(kwargs):
    with pytest.raises(ValueError):
        temporal_prior(_sad_state(), **kwargs)


# ---------------------------------------------------------------- incongruence


def test_congruent_readings_have_no_mixed_signals():
    text = Reading.from_vad((-0.55, -0.25, -0.3), (0.03,) * 3, "text",
                            categories={"sadness": 0.8, "neutral": 0.2})
    face = Reading.from_categories({"sadness": 0.7, "neutral": 0.3}, "face")
    voice = Reading.from_vad((-0.5, -0.35, -0.2), (0.05,) * 3, "speech")
    state = fuse([text, face, voice])
    assert state.mixed_signals.flag is False
    assert state.mixed_signals.pairs == ()
    assert "mixed signals" not in describe(state)


def test_confident_joy_face_vs_sad_text_is_mixed():
    face = Reading.from_vad((0.7, 0.45, 0.3), (0.01,) * 3, "face", categories={"joy": 0.95,
                                                                              "neutral": 0.05})
    text = Reading.from_vad((-0.6, -0.3, -0.3), (0.01,) * 3, "text",
                            categories={"sadness": 0.95, "neutral": 0.05})
    mixed = fuse([text, face]).mixed_signals
    assert mixed.flag
    assert mixed.modalities == ("face", "text")
    (conflict,) = mixed.pairs
    assert (conflict.modality_a, conflict.modality_b) == ("face", "text")
    assert conflict.distance > MAHALANOBIS_THRESHOLD
    assert conflict.reason == "vad+categories+valence"


def test_category_only_conflict_is_detected():
    # Category-only encoders: the VAD mixtures are wide, but the labels clearly disagree.
    face = Reading.from_categories({"joy": 0.9, "neutral": 0.1}, "face", extra_variance=0.5)
    text = Reading.from_categories({"sadness": 0.9, "neutral": 0.1}, "text", extra_variance=0.5)
    mixed = detect_mixed_signals([face, text])
    assert mixed.flag
    assert mixed.pairs[0].distance < MAHALANOBIS_THRESHOLD
    assert mixed.pairs[0].reason == "categories+valence"


def test_neighbouring_categories_and_unsure_readings_are_not_mixed():
    anger = Reading.from_categories({"anger": 0.9, "neutral": 0.1}, "speech", extra_variance=0.5)
    disgust = Reading.from_categories({"disgust": 0.9, "neutral": 0.1}, "face", extra_variance=0.5)
    assert not detect_mixed_signals([anger, disgust])
    unsure_joy = Reading.from_categories({"joy": 0.55, "neutral": 0.45}, "face",
                                         extra_variance=0.5)
    unsure_sad = Reading.from_categories({"sadness": 0.55, "neutral": 0.45}, "text",
                                         extra_variance=0.5)
    assert not detect_mixed_signals([unsure_joy, unsure_sad])  # below the 0.6 top prob
    rest = (1 - 0.55) / 6
    spread_joy = Reading.from_categories([rest, 0.55] + [rest] * 5, "face", extra_variance=0.5)
    spread_sad = Reading.from_categories([rest, rest, 0.55] + [rest] * 4, "text",
                                         extra_variance=0.5)
    # Overlap ~0.77 > 0.6, and joy at 0.55 is no clear positive lean.
    assert not detect_mixed_signals([spread_joy, spread_sad])


def test_opposite_valence_leans_conflict_even_when_no_category_dominates():
    # A calibrated face classifier splits a sad face over the negative categories; the words
    # are cheerful.  No single category reaches 0.6 on the face, the VAD variances are wide.
    face = Reading.from_categories({"neutral": 0.18, "joy": 0.03, "sadness": 0.27, "anger": 0.18, "fear": 0.21,
                                    "surprise": 0.09, "disgust": 0.04}, "face", extra_variance=0.2)
    text = Reading.from_categories({"neutral": 0.05, "joy": 0.65, "sadness": 0.14, "anger": 0.07, "fear": 0.05,
                                    "surprise": 0.04, "disgust": 0.01}, "text", extra_variance=0.05)
    assert valence_lean(face) == -1 and valence_lean(text) == 1
    mixed = detect_mixed_signals([face, text])
    assert mixed.flag and mixed.pairs[0].reason == "valence"
    # Neutral or surprised readings lean neither way: never a valence conflict.
    calm = Reading.from_categories({"neutral": 0.7, "joy": 0.1, "sadness": 0.2}, "face", extra_variance=0.2)
    surprised = Reading.from_categories({"surprise": 0.8, "joy": 0.2}, "speech", extra_variance=0.2)
    assert valence_lean(calm) == 0 and valence_lean(surprised) == 0
    assert not detect_mixed_signals([calm, text]) and not detect_mixed_signals([surprised, face])


def test_far_apart_but_uncertain_readings_are_not_mixed():
    a = Reading(mean=(0.8, 0.5, 0.3), variance=(0.5,) * 3, categories=[1] * 7, modality="face")
    b = Reading(mean=(-0.8, -0.5, -0.3), variance=(0.5,) * 3, categories=[1] * 7,
                modality="text")
    assert not detect_mixed_signals([a, b])
    tight_b = Reading(mean=b.mean, variance=(0.02,) * 3, categories=[1] * 7, modality="text")
    tight_a = Reading(mean=a.mean, variance=(0.02,) * 3, categories=[1] * 7, modality="face")
    assert detect_mixed_signals([tight_a, tight_b]).flag


def test_prior_and_same_modality_readings_never_count():
    happy = Reading.from_vad((0.8, 0.5, 0.3), (0.01,) * 3, "text")
    sad = Reading.from_vad((-0.7, -0.3, -0.3), (0.01,) * 3, "text")
    sad_prior = Reading.from_vad((-0.7, -0.3, -0.3), (0.01,) * 3, "prior")
    assert not detect_mixed_signals([happy, sad])
    assert not fuse([happy], prior=sad_prior).mixed_signals


def test_mixed_signals_validates_flag():
    with pytest.raises(ValueError):
        MixedSignals(flag=True, pairs=())


# ---------------------------------------------------------------- descriptions


def test_description_of_a_sad_state():
    state = fuse([Reading.from_categories({"sadness": 1.0}, "text")])
    assert describe(state) == "seems sad (very low, subdued); fairly confident"
    assert state.describe() == describe(state)


def test_description_of_mixed_signals_names_the_channels():
    words = Reading.from_vad((0.05, 0.0, 0.0), (0.02,) * 3, "text")
    voice = Reading.from_vad((-0.5, 0.6, -0.1), (0.03,) * 3, "speech")
    state = fuse([words, voice])
    text = describe(state)
    assert state.mixed_signals.flag
    assert text.startswith("voice sounds tense, words say fine — mixed signals")
    assert len(text) <= MAX_DESCRIPTION_CHARS


def test_description_without_signal():
    assert describe(fuse([])) == "no clear emotional signal"
    assert describe(Reading.uninformative("text")) == "no clear emotional signal"


# ---------------------------------------------------------------- serialisation


def test_fused_state_json_round_trip():
    face = Reading.from_categories({"joy": 0.95, "neutral": 0.05}, "face")
    text = Reading.from_vad((-0.6, -0.3, -0.3), (0.01,) * 3, "text")
    state = fuse([face, text], prior=temporal_prior(_sad_state(), turns=2, seconds=30))
    data = json.loads(json.dumps(state.to_dict()))
    restored = FusedState.from_dict(data)
    assert restored == state
    assert restored.mixed_signals.flag == state.mixed_signals.flag
    assert describe(restored) == describe(state)


def test_reading_dict_shape_is_plain_json():
    data = Reading.from_categories({"fear": 1.0}, "speech").to_dict()
    assert set(data) == {"modality", "mean", "variance", "categories", "confidence",
                         "top_category"}
    assert list(data["mean"]) == list(DIMENSIONS)
    assert list(data["categories"]) == list(CATEGORIES)
    assert data["top_category"] == "fear"
