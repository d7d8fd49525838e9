"""The learned strategy planner: the hard constraints hold whatever the model predicts, the
features are what training and serving share, and the graph plans with the predictor (a fake that
subclasses the real one) and says why."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent
from empathic_agent.errors import ConfigError, ModelError
from empathic_agent.graph import build_services
from empathic_agent.plan import STRATEGIES, PlanInput, load_persona, plan_register
from empathic_agent.plan.learned import EMBED_DIM, FEATURE_VERSION, WEIGHTS_PATH, Dialogue, StrategyPredictor, features
from empathic_agent.testing import FakeLLM

PERSONA = load_persona("sam")


def random_distributions(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        p = rng.dirichlet(np.full(len(STRATEGIES), 0.3))
        yield dict(zip(STRATEGIES, map(float, p)))


def peaked(strategy: str) -> dict[str, float]:
    return {s: (0.93 if s == strategy else 0.01) for s in STRATEGIES}


EXPLORED = ("Question", "Reflection of feelings")


@pytest.mark.parametrize("seed", range(3))
def test_an_explicit_request_for_advice_gets_a_suggestion_whatever_the_model_says(seed):
    for dist in random_distributions(50, seed):
        x = PlanInput(text="I don't know what to do, what should I do?", learned=dist, turn_index=3,
                      previous_strategies=EXPLORED)
        reg = plan_register(x, PERSONA)
        assert reg.strategy == "Providing Suggestions" and "advice_request" in reg.constraints


def test_mixed_signals_never_get_advice_facts_or_self_disclosure_and_are_tentative():
    for dist in random_distributions(200):
        reg = plan_register(PlanInput(text="I'm fine.", mixed_signals=True, learned=dist, turn_index=4,
                                      previous_strategies=EXPLORED), PERSONA)
        assert reg.strategy not in ("Providing Suggestions", "Information", "Self-disclosure")
        assert "mixed_signals" in reg.constraints and "tentative" in reg.tone
        assert any("mention it gently" in n for n in reg.notes)


def test_no_suggestion_before_exploring():
    for dist in [peaked("Providing Suggestions"), *random_distributions(200, 1)]:
        reg = plan_register(PlanInput(text="My boss yelled at me today.", learned=dist, turn_index=1), PERSONA)
        assert reg.strategy != "Providing Suggestions" and "explore_first" in reg.constraints
    # Once something was explored, the model's suggestion stands.
    reg = plan_register(PlanInput(text="It keeps happening.", learned=peaked("Providing Suggestions"), turn_index=4,
                                  previous_strategies=EXPLORED), PERSONA)
    assert reg.strategy == "Providing Suggestions" and reg.constraints == ()


def test_risk_and_clinical_registers_win_over_the_model():
    for dist in random_distributions(100, 2):
        risk = plan_register(PlanInput(text="I don't see the point any more.", learned=dist, risk_level="low",
                                       previous_strategies=EXPLORED), PERSONA)
        assert risk.strategy in ("Reflection of feelings", "Restatement or Paraphrasing")
        assert risk.constraints == ("risk",)
        clinical = plan_register(PlanInput(text="They are watching me through the TV.", learned=dist,
                                           clinical="psychosis"), PERSONA)
        assert clinical.clinical == "psychosis" and clinical.constraints == ("clinical",)
        rules = plan_register(dataclasses.replace(PlanInput(text="They are watching me through the TV.",
                                                            clinical="psychosis")), PERSONA)
        assert clinical.strategy == rules.strategy


def test_otherwise_the_model_picks_and_the_rationale_shows_its_top_three():
    reg = plan_register(PlanInput(text="We argued again last night.", learned=peaked("Self-disclosure"),
                                  turn_index=5, previous_strategies=EXPLORED), PERSONA)
    assert reg.strategy == "Self-disclosure" and reg.constraints == ()
    assert reg.learned_top[0][0] == "Self-disclosure" and len(reg.learned_top) == 3
    assert any(r.startswith("learned") and "Self-disclosure 0.93" in r for r in reg.rationale)
    again = type(reg).from_dict(reg.to_dict())
    assert again.learned_top[0][0] == "Self-disclosure" and again.constraints == reg.constraints


def test_features_read_the_dialogue():
    vec = np.ones(EMBED_DIM, np.float32) / np.sqrt(EMBED_DIM)
    d = Dialogue(text="What should I do?", agent_text="That sounds hard.", previous_strategies=("Question",),
                 turn_index=2, state=(-0.5, 0.3, -0.1), confidence=0.6, top_category="sadness",
                 valence_history=(-0.2,))
    x = features(d, vec, vec)
    assert x.shape == features(Dialogue(text="hi"), vec, None).shape and np.all(np.isfinite(x))
    assert not np.array_equal(x, features(dataclasses.replace(d, previous_strategies=("Information",)), vec, vec))
    assert np.array_equal(features(d, vec, None)[EMBED_DIM:2 * EMBED_DIM], np.zeros(EMBED_DIM))


def _weights(dim: int, favour: str) -> tuple[dict[str, np.ndarray], dict]:
    w2 = np.zeros((4, len(STRATEGIES)), np.float32)
    b2 = np.zeros(len(STRATEGIES), np.float32)
    b2[STRATEGIES.index(favour)] = 5.0
    return ({"mean": np.zeros(dim, np.float32), "scale": np.ones(dim, np.float32),
             "w1": np.zeros((dim, 4), np.float32), "b1": np.zeros(4, np.float32), "w2": w2, "b2": b2},
            {"feature_version": FEATURE_VERSION, "strategies": list(STRATEGIES), "temperature": 1.0})


class FixedPredictor(StrategyPredictor):
    """The real predictor's arithmetic with weights that always favour one strategy, and no
    embedder (fixed vectors): for graph tests without the MiniLM model."""

    def __init__(self, favour: str) -> None:
        dim = features(Dialogue(text=""), np.zeros(EMBED_DIM), None).size
        super().__init__(*_weights(dim, favour))
        self.seen: list[Dialogue] = []

    def distribution(self, d: Dialogue) -> dict[str, float]:
        self.seen.append(d)
        vec = np.zeros(EMBED_DIM, np.float32)
        return self.from_vectors([d], vec[None], [vec if d.agent_text else None])[0]


def test_weights_of_another_feature_version_are_refused(tmp_path):
    weights, meta = _weights(10, "Question")
    with pytest.raises(ModelError, match="re-train"):
        StrategyPredictor(weights, {**meta, "feature_version": FEATURE_VERSION + 1})
    with pytest.raises(ConfigError, match="plan train"):
        StrategyPredictor.from_file(tmp_path / "missing.npz")


def test_the_packaged_weights_load():
    model = StrategyPredictor.from_file(WEIGHTS_PATH)
    dim = features(Dialogue(text=""), np.zeros(EMBED_DIM), None).size
    assert model.w1.shape[1] == dim and model.meta["trained_on"].startswith("ESConv train")
    p = model.probabilities(np.zeros((2, dim), np.float32))
    assert p.shape == (2, len(STRATEGIES)) and np.allclose(p.sum(axis=1), 1.0)


async def test_the_graph_plans_with_the_predictor_inside_the_constraints(settings):
    predictor = FixedPredictor("Self-disclosure")
    services = build_services(dataclasses.replace(settings, planner="learned"), llm=FakeLLM(["I hear you."]),
                              text_encoder=None, memory=None, speech=None, face=None, tts=None, planner=predictor)
    async with await Agent.open(settings, services=services, checkpointer=InMemorySaver()) as agent:
        first = await agent.respond("u", "s", text="My sister stopped talking to me.")
        # Nothing explored yet, but self-disclosure is allowed: the model's pick stands.
        assert first.register["strategy"] == "Self-disclosure", first.register
        assert "explore_first" in first.register["constraints"]
        assert any(r.startswith("learned") for r in first.register["rationale"])
        second = await agent.respond("u", "s", text="What should I do about it?")
        assert second.register["strategy"] == "Providing Suggestions"
        assert second.register["constraints"] == ["advice_request"] or "advice_request" in second.register["constraints"]
        # The predictor read the dialogue: the person's words and the agent's previous reply.
        assert predictor.seen[-1].text == "What should I do about it?" and predictor.seen[-1].agent_text == "I hear you."
        assert predictor.seen[-1].previous_strategies == ("Self-disclosure",) and predictor.seen[-1].turn_index == 2


def test_the_plan_panel_shows_the_model_and_the_constraints():
    from empathic_agent.agent import TurnResult
    from empathic_agent.ui.controller import perception_markdown

    reg = plan_register(PlanInput(text="My boss yelled at me.", learned=peaked("Providing Suggestions")), PERSONA)
    panel = perception_markdown(TurnResult("u", "s", "t", "My boss yelled at me.", "That sounds hard.",
                                           register=reg.to_dict()))
    assert "**Strategy model**" in panel and "Providing Suggestions 0.93" in panel
    assert "constraints held: explore_first" in panel and f"**Plan:** {reg.strategy}" in panel
