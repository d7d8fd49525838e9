"""The register planner's rules, the persona/mood model, and the prompt the register produces."""

from __future__ import annotations

import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.plan import (
    STRATEGIES,
    STRATEGY_FAMILY,
    PlanInput,
    Register,
    load_persona,
    ocean_to_pad,
    plan_register,
    update_mood,
)

SAM = load_persona("sam")
SAD = (-0.6, -0.3, -0.3)
PANIC = (-0.6, 0.6, -0.4)
HAPPY = (0.7, 0.4, 0.3)


def plan(**kw) -> Register:
    kw.setdefault("confidence", 0.8)
    return plan_register(PlanInput(**kw), SAM)


def test_every_strategy_has_a_family_and_an_instruction():
    from empathic_agent.plan.register import STRATEGY_INSTRUCTIONS

    assert set(STRATEGY_FAMILY) == set(STRATEGIES) == set(STRATEGY_INSTRUCTIONS)


def test_explore_before_advising():
    first = plan(state=SAD, turn_index=1, text="I lost my job")
    assert first.strategy == "Question"
    second = plan(state=SAD, turn_index=2, text="It was sudden", previous_strategies=("Question",))
    assert second.strategy == "Reflection of feelings"  # explore, but not the same move twice
    assert second.family != "action" and first.family != "action"


def test_after_exploring_the_helping_cycle_comforts_then_suggests_then_reassures():
    r = plan(state=SAD, top_category="sadness", turn_index=3, previous_strategies=("Question", "Reflection of feelings"))
    assert r.strategy == "Providing Suggestions"
    r = plan(state=SAD, top_category="sadness", turn_index=4, previous_strategies=("Question", "Providing Suggestions"))
    assert r.strategy == "Affirmation and Reassurance"
    r = plan(state=SAD, top_category="sadness", turn_index=4, previous_strategies=("Reflection of feelings", "Question"))
    assert r.strategy == "Reflection of feelings"
    r = plan(state=SAD, turn_index=5, previous_strategies=("Providing Suggestions", "Affirmation and Reassurance"))
    assert r.strategy == "Question"  # never two suggestions in a row


def test_co_regulation_meets_agitation_with_calm():
    r = plan(state=PANIC, top_category="fear", turn_index=4, previous_strategies=("Question", "Question"))
    assert r.strategy in ("Reflection of feelings", "Affirmation and Reassurance")
    v, a, d = r.target
    assert a < -0.2 < 0 < v  # calm and warm, not mirroring the panic
    assert d > 0  # a steady anchor for fear
    assert "calm" in r.tone and r.pace == "slow" and r.length == "short"
    calmer = plan(state=(-0.6, 0.9, -0.4), top_category="fear", turn_index=4).target[1]
    assert calmer < a  # the more agitated the person, the calmer the agent


def test_grief_is_never_met_with_cheer():
    r = plan(state=(-1.0, -0.5, -0.5), top_category="sadness", turn_index=2)
    assert r.target[0] <= 0.35 + 0.2 * max(SAM.baseline_mood[0], 0)


def test_positive_states_are_shared_by_the_mirroring_share():
    r = plan(state=HAPPY, top_category="joy", turn_index=1)
    assert r.strategy == "Question" and r.target[0] > 0.3
    mirror = load_persona("alex")
    r2 = plan_register(PlanInput(state=HAPPY, confidence=0.8, top_category="joy"), mirror)
    assert r2.target[1] > r.target[1]  # a more mirroring persona matches their energy more


def test_mixed_signals_are_acknowledged_gently():
    r = plan(state=SAD, mixed_signals=True, turn_index=3)
    assert r.strategy == "Reflection of feelings" and "tentative" in r.tone
    assert any("differ" in n for n in r.notes)


def test_explicit_requests():
    assert plan(state=SAD, text="What should I do now?").strategy == "Providing Suggestions"
    assert plan(state=SAD, text="Is it normal to feel this way?").strategy == "Affirmation and Reassurance"
    assert plan(state=(0.0, 0.0, 0.0), text="How long does grief usually last?").strategy == "Information"
    assert plan(state=SAD, text="Why does this always happen to me?", turn_index=1).strategy == "Question"


def test_social_messages():
    assert plan(state=HAPPY, text="Thank you so much, this helped").strategy == "Others"
    assert plan(state=None, text="hi there!").strategy == "Question"
    # A greeting followed by the problem is not small talk.
    assert plan(state=SAD, text="Hello, my dog died yesterday").strategy != "Others"


def test_worsening_trajectory_gets_reassurance():
    r = plan(state=(-0.5, 0.0, 0.0), valence_history=(-0.1, -0.2, -0.3), turn_index=5,
             previous_strategies=("Question", "Reflection of feelings"))
    assert r.strategy == "Affirmation and Reassurance"


def test_unclear_state_explores_and_uses_the_mood():
    r = plan(state=(0.0, 0.0, 0.0), confidence=0.05, turn_index=4, previous_strategies=("Question",))
    assert r.family == "exploration" and r.strategy != "Question"
    assert r.target == pytest.approx(update_mood(None, SAM), abs=1e-9) or any("mood" in w for w in r.rationale)


def test_mood_repair_memory():
    mem = ({"text": "hiking with my sister last spring", "top_category": "joy"},)
    r = plan(state=SAD, turn_index=4, previous_strategies=("Providing Suggestions",), memories=mem)
    assert r.strategy == "Affirmation and Reassurance" and any("good memory" in n for n in r.notes)
    no_joy = plan(state=SAD, turn_index=4, previous_strategies=("Providing Suggestions",),
                  memories=({"text": "the funeral", "top_category": "sadness"},))
    assert not no_joy.notes


def test_register_round_trips_and_prompts():
    r = plan(state=SAD, turn_index=1, text="I lost my job")
    assert Register.from_dict(r.to_dict()) == r
    assert r.reply_hint() == "In 1-2 short sentences, ask one open question about what they feel or what happened."
    assert r.prompt_lines().startswith("Speak in a ") and "calm" in r.prompt_lines()


def test_ocean_to_pad_follows_mehrabian():
    agreeable_stable = ocean_to_pad({"agreeableness": 1.0, "neuroticism": -1.0})
    assert agreeable_stable[0] == pytest.approx(0.59 + 0.19)
    assert agreeable_stable[1] == pytest.approx(0.30 - 0.57)
    extravert = ocean_to_pad({"extraversion": 1.0})
    assert extravert[2] == pytest.approx(0.60) and extravert[0] == pytest.approx(0.21)


def test_mood_decays_to_baseline_and_is_nudged_by_contagion():
    base = SAM.baseline_mood
    m = update_mood(None, SAM)
    assert m == pytest.approx(base)
    sad = update_mood(m, SAM, perceived=(-0.9, -0.5, -0.5), confidence=0.9)
    assert sad[0] < base[0]
    assert abs(sad[0] - base[0]) <= 0.25  # a nudge, not a copy
    later = sad
    for _ in range(9):
        later = update_mood(later, SAM)
    assert abs(later[0] - base[0]) < abs(sad[0] - base[0]) / 4  # half-life 3 turns: 9 turns = 1/8
    unsure = update_mood(m, SAM, perceived=(-0.9, -0.5, -0.5), confidence=0.1)
    assert abs(unsure[0] - base[0]) < abs(sad[0] - base[0])


def test_persona_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown persona 'nobody'"):
        load_persona("nobody")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "X"\n[ocean]\nagreeableness = 3\n')
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        load_persona(bad)
    bad.write_text('name = "X"\n[ocean]\nkindness = 0.1\n')
    with pytest.raises(ConfigError, match="unknown ocean traits"):
        load_persona(bad)
    bad.write_text("not toml ===")
    with pytest.raises(ConfigError, match="cannot read persona"):
        load_persona(bad)
    good = tmp_path / "mine.toml"
    good.write_text('name = "Robin"\ndescription = "a quiet friend"\n[policy]\nmirroring = 0.9\n')
    p = load_persona(good)
    assert p.name == "Robin" and p.policy.mirroring == 0.9 and p.source == str(good)
