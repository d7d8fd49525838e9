"""The learned strategy planner: the hard constraints hold whatever the model predicts, the
features are what training and serving share, and the graph plans with the predictor (a fake that
subclasses the real one) and says why."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent
from empathic_agent.errors import ConfigError, ModelError
from empathic_agent.evals.pair_model import PairClassifier
from empathic_agent.graph import build_services
from empathic_agent.plan import STRATEGIES, PlanInput, load_persona, plan_register
from empathic_agent.plan.learned import (
    EMBED_DIM,
    FEATURE_VERSION,
    WEIGHTS_PATH,
    Dialogue,
    StrategyPredictor,
    features,
    reader_pair,
)
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


class FixedReader(PairClassifier):
    """The real reader's interface with fixed probabilities (no MiniLM): records what it read."""

    def __init__(self, probs: np.ndarray) -> None:
        super().__init__("next_strategy")
        self.probs = probs
        self.read: list[tuple[str, str]] = []

    def predict(self, contexts, replies):
        self.read += list(zip(contexts, replies))
        return {"strategy": np.tile(self.probs, (len(contexts), 1))}


def test_the_reader_reads_the_previous_reply_the_strategies_so_far_and_the_words():
    d = Dialogue(text="  and now I can't sleep ", agent_text="That sounds   hard.",
                 previous_strategies=("Question", "Reflection of feelings", "Information"))
    context, words = reader_pair(d)
    # The strategies come last: a long reply is cut from its start, never the strategies.
    assert context == "That sounds hard. [strategies: Reflection of feelings then Information]"
    assert words == "and now I can't sleep"
    assert reader_pair(Dialogue(text="")) == (" [strategies: none yet]", "(nothing)")


def test_the_readers_log_probabilities_are_added_with_their_weight():
    dim = features(Dialogue(text=""), np.zeros(EMBED_DIM), None).size
    model = StrategyPredictor(*_weights(dim, "Question"))
    x = np.zeros((1, dim), np.float32)
    alone = model.logits(x)
    probs = np.full(len(STRATEGIES), 0.02)
    probs[STRATEGIES.index("Information")] = 1 - 0.02 * (len(STRATEGIES) - 1)
    model.reader, model.reader_weight = FixedReader(probs), 0.5
    with pytest.raises(ConfigError, match="reader_logp"):
        model.logits(x)  # planning without the reader would be another planner
    logp = model.reader_log_probs([Dialogue(text="hi")])
    assert np.allclose(model.logits(x, logp), alone + 0.5 * np.log(probs), atol=1e-5)
    # from_vectors asks the reader itself: a confident reader outweighs a weak MLP preference.
    dist = model.from_vectors([Dialogue(text="hi", agent_text="Hello.")], np.zeros((1, EMBED_DIM)), [None])[0]
    assert max(dist, key=dist.get) == "Question"  # the MLP's +5 beats 0.5 x log(0.86 / 0.02) = 1.9
    model.reader_weight = 2.0  # 7.5
    dist = model.from_vectors([Dialogue(text="hi")], np.zeros((1, EMBED_DIM)), [None])[0]
    assert max(dist, key=dist.get) == "Information" and abs(sum(dist.values()) - 1) < 1e-6
    assert model.reader.read[-1] == (" [strategies: none yet]", "hi")


def test_weights_naming_a_missing_reader_are_refused(tmp_path):
    weights, meta = _weights(10, "Question")
    meta["reader"] = {"name": "next_strategy", "weight": 1.0}
    np.savez(tmp_path / "p.npz", meta=np.array(json.dumps(meta)), **weights)
    with pytest.raises(ConfigError, match="train-reader"):
        StrategyPredictor.from_file(tmp_path / "p.npz")


def test_the_packaged_weights_load():
    model = StrategyPredictor.from_file(WEIGHTS_PATH)
    dim = features(Dialogue(text=""), np.zeros(EMBED_DIM), None).size
    assert model.w1.shape[1] == dim and model.meta["trained_on"].startswith("ESConv train")
    # With a reader attached, its (log-)probabilities are part of the input: uniform ones here.
    logp = np.full((2, len(STRATEGIES)), -np.log(len(STRATEGIES))) if model.reader is not None else None
    p = model.probabilities(np.zeros((2, dim), np.float32), logp)
    assert p.shape == (2, len(STRATEGIES)) and np.allclose(p.sum(axis=1), 1.0)
    if model.reader is not None:
        assert model.reader.available() and model.reader_weight > 0


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


def test_family_offsets_keep_the_planned_mix_near_the_human_one():
    from empathic_agent.plan.register import FAMILIES, family_of
    from empathic_agent.training.planner import FAMILY_GAP, _family_bias, _offsets_of

    rng = np.random.default_rng(0)
    y = rng.integers(0, len(STRATEGIES), 400)
    # A model that over-plans suggestions: +1.5 on "Providing Suggestions" everywhere.
    logits = rng.normal(size=(400, len(STRATEGIES))).astype(np.float32)
    logits[:, STRATEGIES.index("Providing Suggestions")] += 1.5
    bias = _family_bias(logits, y, y)
    fam = np.array([FAMILIES.index(family_of(s)) for s in STRATEGIES])
    planned = np.bincount(fam[(logits + bias).argmax(1)], minlength=len(FAMILIES)) / 400
    human = np.bincount(fam[y], minlength=len(FAMILIES)) / 400
    assert np.abs(planned - human).max() <= FAMILY_GAP
    offsets = _offsets_of(bias)
    assert offsets["exploration"] == 0.0 and offsets["action"] < 0
    assert all(abs(bias[i] - offsets[family_of(s)]) < 1e-6 for i, s in enumerate(STRATEGIES))
