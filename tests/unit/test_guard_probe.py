"""The reply guard's opt-in second look (``safety/guard_probe.py``) with a fake probe: where it runs,
that a reply it looks at is held until whole, and that its failure leaves the other layers standing.
The real model is tested in tests/integration/test_guard_probe_real.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.safety import SafetyStage
from empathic_agent.safety.guard import GuardContext, GuardedRelease, ReplyGuard
from empathic_agent.safety.guard_probe import PROBE_PATH, GuardProbe
from empathic_agent.settings import Settings


class FakeProbe(GuardProbe):
    """Scores a reply 1.0 when it contains ``harmful``, else 0.0; records what it read."""

    def __init__(self, harmful: str = "the roof", fail: bool = False) -> None:
        super().__init__("fake", Path("/nonexistent"))
        self.harmful, self.fail = harmful, fail
        self.read: list[tuple[str, str]] = []

    def load(self) -> None:  # no model
        pass

    def p_harmful(self, said: str, reply: str) -> float:
        self.read.append((said, reply))
        if self.fail:
            raise RuntimeError("model gone")
        return 1.0 if self.harmful in reply else 0.0


RISKY = GuardContext(risk_context=True, risk_level="low", said="everything is pointless")
CALM = GuardContext(said="I got the job!")


def _stream(gate: GuardedRelease, pieces: list[str]) -> list[str]:
    out = [gate.feed(p) for p in pieces]
    out.append(gate.flush())
    return out


def test_the_packaged_head_names_its_model_layer_and_threshold():
    probe = GuardProbe("qwen2.5-coder-0.5b-instruct", Path("/nonexistent"))  # the head only; no model loads
    assert probe.trained_on == "qwen2.5-coder-0.5b-instruct"
    assert 0 < probe.layer <= 24 and 0.5 < probe.threshold < 1.0
    z = np.zeros_like(probe._mean)
    assert 0.0 <= probe.score(z) <= 1.0


def test_missing_or_incomplete_weights_are_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="train-guard-probe"):
        GuardProbe("x", tmp_path, path=tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, layer=np.int64(3))
    with pytest.raises(ConfigError, match="lack"):
        GuardProbe("x", tmp_path, path=bad)
    assert PROBE_PATH.is_file()


def test_in_a_risky_context_the_reply_is_held_until_whole_then_looked_at_once():
    probe = FakeProbe()
    gate = GuardedRelease(ReplyGuard(None, probe), RISKY)
    out = _stream(gate, ["That sounds so heavy. ", "Is anyone with you tonight? ", "I'm here."])
    assert out[:-1] == ["", "", ""]  # nothing released before the second look
    assert out[-1] == "That sounds so heavy. Is anyone with you tonight? I'm here."
    assert gate.released == out[-1] and not gate.blocked
    assert probe.read == [("everything is pointless", out[-1])]  # the whole reply, with the person's words


def test_a_harmful_whole_reply_is_blocked_and_nothing_of_it_is_released():
    probe = FakeProbe()
    gate = GuardedRelease(ReplyGuard(None, probe), RISKY)
    out = _stream(gate, ["I hear you. ", "You could try the roof of the car park, it's open late."])
    assert out == ["", "", ""] and gate.released == ""
    assert gate.blocked and gate.verdict.source.startswith("probe:") and gate.verdict.category == "means_info"


def test_the_blocked_category_follows_the_presentation_read():
    probe = FakeProbe("watching")
    ctx = GuardContext(presentations=("psychosis",), risk_context=True, said="they are watching me")
    gate = GuardedRelease(ReplyGuard(None, probe), ctx)
    _stream(gate, ["Yes, they are watching you through the TV."])
    assert gate.verdict.category == "delusion_collusion"


def test_outside_a_risky_context_the_probe_does_not_run_and_text_streams():
    probe = FakeProbe()
    gate = GuardedRelease(ReplyGuard(None, probe), CALM)
    out = _stream(gate, ["Congratulations! ", "Let's meet on the roof terrace."])
    assert out[0].strip() == "Congratulations!"  # released sentence by sentence, as without the probe
    assert "".join(out) == "Congratulations! Let's meet on the roof terrace."
    assert probe.read == [] and not gate.blocked


def test_a_probe_that_fails_leaves_the_patterns_and_the_reply():
    gate = GuardedRelease(ReplyGuard(None, FakeProbe(fail=True)), RISKY)
    out = _stream(gate, ["That sounds so hard. ", "I'm listening."])
    assert out[-1] == "That sounds so hard. I'm listening." and not gate.blocked


def test_a_sentence_the_patterns_block_is_never_released_while_held():
    probe = FakeProbe("nothing matches")
    gate = GuardedRelease(ReplyGuard(None, probe), GuardContext(means_query="heights", risk_context=True, said="tallest bridge?"))
    out = _stream(gate, ["I'm sorry. ", "The tallest bridge nearby is 60 metres high and easy to reach."])
    assert gate.blocked and "".join(out) == "" and gate.verdict.source.startswith("pattern:")
    assert probe.read == []  # blocked before the second look


def test_the_setting_turns_the_layer_on():
    settings = Settings.from_env({"EMPATHIC_SAFETY_GUARD_PROBE": "qwen2.5-coder-0.5b-instruct",
                                  "EMPATHIC_SAFETY_SEMANTIC": "0"})
    stage = SafetyStage.from_settings(settings)
    assert stage.guard is not None and isinstance(stage.guard.probe, GuardProbe)
    assert stage.guard.layers.endswith("+probe")
    assert SafetyStage.from_settings(Settings.from_env({"EMPATHIC_SAFETY_SEMANTIC": "0"})).guard.probe is None


def test_the_training_recipe_chooses_within_its_budgets_on_separable_features():
    pytest.importorskip("sklearn")
    from empathic_agent.training.guard_probe import choose

    rng = np.random.default_rng(0)
    groups = np.array([f"W{k % 4}" for k in range(240)] + [f"esconv{k % 5}" for k in range(100)])
    y = np.array([k % 2 for k in range(240)] + [0] * 100)
    x = rng.normal(size=(340, 4 * 8))
    x[:, 2 * 8:3 * 8] += y[:, None] * 3.0  # the third layer block (layer 18) carries the signal
    picked = choose(x, y, groups, hidden=8)
    assert picked["layer"] == 18 and picked["auc_writers"] > 0.95
    assert picked["oof_false_blocks_writers"] <= 0.03 and picked["oof_false_blocks_esconv"] <= 0.005
    assert 0.05 <= picked["threshold"] <= 1.0 and picked["oof_recall_writers"] > 0.5


def test_a_cut_off_last_sentence_is_dropped_from_a_held_reply_as_from_a_streamed_one():
    for ctx in (RISKY, CALM):
        gate = GuardedRelease(ReplyGuard(None, FakeProbe()), ctx)
        gate.feed("That sounds so heavy. Is anyone with you")
        released = gate.released + gate.flush(drop_unfinished=True)
        assert released.strip() == "That sounds so heavy." and gate.dropped.strip() == "Is anyone with you", ctx


async def test_in_the_graph_a_held_reply_is_looked_at_once_and_a_probe_hit_regenerates(settings):
    from langgraph.checkpoint.memory import InMemorySaver

    from empathic_agent.agent import Agent
    from empathic_agent.graph import build_services
    from empathic_agent.testing.fakes import FakeLLM

    llm = FakeLLM(["I'm so sorry. The roof of the station car park is the highest around.",
                   "I'm so sorry about your mum. What has this month been like?"])
    services = build_services(settings, llm=llm, text_encoder=None, memory=None, speech=None, face=None, tts=None)
    assert services.safety is not None and services.safety.guard is not None
    probe = FakeProbe("roof")
    services.safety.guard.probe = probe
    agent = await Agent.open(settings, services=services, checkpointer=InMemorySaver())
    r = await agent.respond("ann", "s1", text="My mum died last month and I feel so alone, nothing matters now.")
    assert len(probe.read) == 2 and probe.read[0][0].startswith("My mum died")  # the person's words beside it
    assert [e["action"] for e in r.guard_events] == ["regenerate"] and r.guard_events[0]["source"].startswith("probe:")
    assert r.reply.startswith("I'm so sorry about your mum.") and "roof" not in r.reply
    assert r.guard["second_looks"] == 2 and r.guard["layers"].endswith("+probe")
    assert r.guard["sentences"] == 4  # two sentences of each attempt; the looks are counted apart


def test_a_probe_refuses_a_layer_deeper_than_it_runs_and_empty_text():
    from empathic_agent.safety.llm_probe import LLMProbe

    probe = LLMProbe("fake", Path("/nonexistent"), depth=18)  # the checks come before any model loads
    with pytest.raises(ValueError, match="deeper than layer 18"):
        probe.mean_states([1, 2], [3], (19,))
    with pytest.raises(ValueError, match="non-empty"):
        probe.mean_states([1, 2], [], (18,))
    head = GuardProbe("qwen2.5-coder-0.5b-instruct", Path("/nonexistent"))
    assert head.depth == head.layer  # the packaged head's model runs up to its layer only
    assert GuardProbe("x", Path("/nonexistent"), path=None).depth is None  # features for training: every layer


def test_the_guard_benchmark_times_the_probes_whole_reply_look_when_it_is_on(capsys):
    import json
    from types import SimpleNamespace

    from empathic_agent.cli.safety import _BENCH_REPLIES, _bench_guard

    probe = FakeProbe("nothing matches")
    assert _bench_guard(SimpleNamespace(guard=ReplyGuard(None, probe)), 1) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["probe_whole_reply"]["replies"] == len(_BENCH_REPLIES)
    assert {r for _, r in probe.read} >= set(_BENCH_REPLIES)  # whole replies, not sentences
    assert _bench_guard(SimpleNamespace(guard=ReplyGuard(None, None)), 1) == 0
    assert "probe_whole_reply" not in json.loads(capsys.readouterr().out)
