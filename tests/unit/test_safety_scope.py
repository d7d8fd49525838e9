"""The scope check of the risk screen (safety/scope.py) with fakes: a pattern hit is discounted
only when the scope head *and* the learned reader both read it as out of scope, never for imminent
danger, a message said to be happening now, abuse, harm to others or a message too short to carry
context; a failing scope check leaves the hit standing.  The training rule (no out-of-fold risk at
moderate or above silenced) is checked on a small labelled set.  (The real head on real messages:
tests/integration/test_safety.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.safety import CrisisDetector
from empathic_agent.safety.learned import LearnedReading, RiskModel
from empathic_agent.safety.scope import MIN_CONTEXT_WORDS, SCOPE_FORMAT, PatternScope, eligible
from empathic_agent.testing.fakes import FakeEmbedder

DIM = 8
IN_SCOPE, OUT_OF_SCOPE = [1.0] + [0.0] * (DIM - 1), [-1.0] + [0.0] * (DIM - 1)

PAST = "I used to cut myself when I was at school. That was fifteen years ago; these days I teach yoga to teenagers."
PAST_OTHER = "My brother tried to kill himself back in 2009; he has three kids now and we are really close."
NOW = "I used to cut myself at school and tonight the urge is back, I am going to hurt myself right now."
IMMINENT = "Honestly the pills are in my hand and the whole thing will be over soon, thank you for everything."
ABUSE = "My husband hits me when he drinks, it has happened since we married many years ago and I cope."
SHORT = "My sister is self-harming."


class _Reader(RiskModel):
    """The learned reader with a fixed P(level >= low) (no model)."""

    def __init__(self, p_low: float) -> None:
        super().__init__()
        self.p_low = p_low
        self.config = {"thresholds": [0.65, 0.78, 0.77, 0.6]}

    def load(self) -> None:
        pass

    def read(self, text: str) -> LearnedReading:
        p = (self.p_low, self.p_low / 2, self.p_low / 4, self.p_low / 8)
        return LearnedReading(at_least=p, subject={"none": 1 - p[0], "self": p[0], "other": 0.0}, dimensions={},
                              evidence={})


def _scope(tmp_path: Path, vectors: dict[str, list[float]], *, scope_cut: float = 0.5, reader_cut: float = 0.1,
           embedder: FakeEmbedder | None = None) -> PatternScope:
    path = tmp_path / "scope.json"
    # P = sigmoid(5 * e[0]): IN_SCOPE -> 0.993, OUT_OF_SCOPE -> 0.007.
    path.write_text(json.dumps({"format": SCOPE_FORMAT, "weights": [5.0] + [0.0] * (DIM - 1), "bias": 0.0,
                                "scope_cut": scope_cut, "reader_cut": reader_cut}), encoding="utf-8")
    return PatternScope(embedder or FakeEmbedder(DIM, vectors=vectors), weights=path)


def _detector(tmp_path: Path, p_low: float, vectors: dict[str, list[float]], **kw) -> CrisisDetector:
    return CrisisDetector(_Reader(p_low), language=False, scope=_scope(tmp_path, vectors, **kw))


@pytest.mark.parametrize("text", [PAST, PAST_OTHER])
def test_a_hit_both_readers_find_out_of_scope_is_discounted(tmp_path, text):
    plain = CrisisDetector(_Reader(0.02), language=False).assess(text)
    assert plain.level != "none"  # the patterns fire on it
    a = _detector(tmp_path, 0.02, {text: OUT_OF_SCOPE}).assess(text)
    assert a.level == "none" and a.route == "continue" and not a.crisis and a.dimensions == ()
    assert not any(s.startswith("pattern:") for s in a.signals)
    assert any(d.startswith("out_of_scope:") for d in a.discounted), a.discounted


def test_either_reader_finding_risk_keeps_the_hit(tmp_path):
    # The scope head reads current risk.
    assert _detector(tmp_path, 0.02, {PAST: IN_SCOPE}).assess(PAST).level != "none"
    # The learned reader is not sure enough there is none (P(>= low) above the reader's cut).
    a = _detector(tmp_path, 0.3, {PAST: OUT_OF_SCOPE}).assess(PAST)
    assert a.level != "none" and not any(d.startswith("out_of_scope:") for d in a.discounted)


@pytest.mark.parametrize("text", [NOW, IMMINENT, ABUSE, SHORT])
def test_imminent_now_abuse_and_short_messages_are_never_discounted(tmp_path, text):
    a = _detector(tmp_path, 0.01, {text: OUT_OF_SCOPE}).assess(text)
    assert a.level != "none", (text, a.signals)
    assert not any(d.startswith("out_of_scope:") for d in a.discounted)


def test_eligibility_rules():
    long = " ".join(["word"] * MIN_CONTEXT_WORDS)
    assert eligible(long, [("suicide", "kill-myself")], now=False)
    assert eligible(long, [("self_harm", "hurt-myself"), ("others_at_risk", "other-kill-self")], now=False)
    assert not eligible(long, [], now=False)
    assert not eligible(long, [("suicide", "means-ready")], now=False)  # imminent
    assert not eligible(long, [("suicide", "kill-myself")], now=True)
    assert not eligible(long, [("suicide", "kill-myself"), ("abuse", "hits-me")], now=False)
    assert not eligible(long, [("harm_others", "hurt-someone-armed")], now=False)
    assert not eligible(" ".join(["word"] * (MIN_CONTEXT_WORDS - 1)), [("suicide", "kill-myself")], now=False)
    # A goodbye is the one imminent sign that may be discounted, alone and not said about now.
    assert eligible(long, [("suicide", "last-message")], now=False)
    assert not eligible(long, [("suicide", "last-message")], now=True)
    assert not eligible(long, [("suicide", "last-message"), ("suicide", "means-ready")], now=False)


def test_an_ordinary_goodbye_can_be_discounted_but_not_one_said_about_tonight(tmp_path):
    leaving = "This is my last message in this group chat, I am leaving the company on Friday. Thank you all so much."
    tonight = "This is my last message to anyone. Thank you for listening these past weeks, it ends tonight for me."
    for text in (leaving, tonight):
        assert CrisisDetector(_Reader(0.02), language=False).assess(text).level == "imminent"
    assert _detector(tmp_path, 0.02, {leaving: OUT_OF_SCOPE}).assess(leaving).level == "none"
    assert _detector(tmp_path, 0.02, {tonight: OUT_OF_SCOPE}).assess(tonight).level == "imminent"


def test_the_scope_check_is_asked_only_when_both_conditions_can_hold(tmp_path):
    emb = FakeEmbedder(DIM, vectors={PAST: OUT_OF_SCOPE})
    det = CrisisDetector(_Reader(0.5), language=False, scope=_scope(tmp_path, {}, embedder=emb))
    det.assess(PAST)  # the reader already finds risk: no embedding needed
    det.assess("I had a lovely walk by the sea with my dog this morning and then a long nap.")  # no pattern
    assert emb.calls == []


def test_a_failing_scope_check_leaves_the_hit_standing(tmp_path, caplog):
    emb = FakeEmbedder(DIM, error=RuntimeError("embedder down"))
    det = CrisisDetector(_Reader(0.02), language=False, scope=_scope(tmp_path, {}, embedder=emb))
    a = det.assess(PAST)
    assert a.level != "none" and "scope check failed" in caplog.text


def test_without_the_learned_reader_there_is_no_scope_check(tmp_path):
    det = CrisisDetector(None, scope=_scope(tmp_path, {PAST: OUT_OF_SCOPE}))
    assert det.scope is None and det.layers == "patterns"
    assert det.assess(PAST).level != "none"


def test_missing_or_foreign_weights_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="train-scope"):
        PatternScope(FakeEmbedder(DIM), weights=tmp_path / "none.json").load()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other", "weights": [0.0] * DIM, "bias": 0}), encoding="utf-8")
    with pytest.raises(ConfigError, match="format"):
        PatternScope(FakeEmbedder(DIM), weights=bad).load()
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": SCOPE_FORMAT, "weights": [0.0] * 3, "bias": 0, "scope_cut": 0.5,
                                 "reader_cut": 0.1}), encoding="utf-8")
    with pytest.raises(ConfigError, match="3 weights"):
        PatternScope(FakeEmbedder(DIM), weights=wrong).load()


# -- training ------------------------------------------------------------------------------------

_RISK = ["I want to kill myself and I have been thinking about it every single night this month.",
         "I keep cutting myself in the bathroom after school and I cannot stop doing it anymore.",
         "Honestly I feel like ending my life, everyone would be better off without me being around."]
_PAST = ["I used to cut myself in school, but that was many years ago and I am a nurse now.",
         "My dad tried to kill himself in 2005; today he walked me down the aisle at my wedding.",
         "Ten years ago I wanted to kill myself; therapy helped and now I run a support group."]


def _write_writers(folder: Path) -> list[Path]:
    paths = []
    for w in range(3):
        p = folder / f"writer{w}.csv"
        lines = ["text,level,subject,dimensions,kind,register"]
        lines += [f'"{t} ({w})",moderate,self,ideation,explicit,plain' for t in _RISK]
        lines += [f'"{t} ({w})",none,none,,past_recovery,plain' for t in _PAST]
        lines += [f'"A normal day at work number {w}, nothing special happened at all.",none,none,,everyday,plain']
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


def test_train_scope_writes_a_head_and_keeps_to_its_rule(tmp_path):
    pytest.importorskip("sklearn")
    from empathic_agent.safety.evaluate import read_risk_csv
    from empathic_agent.training.risk import train_scope

    paths = _write_writers(tmp_path)
    rows = [r | {"writer": p.stem} for p in paths for r in read_risk_csv(p)]
    p_low = [0.9 if r["level"] != "none" else 0.05 for r in rows]
    # "risk" and "past" words map to opposite directions, so the head can learn them apart.
    vectors = {r["text"]: (IN_SCOPE if r["level"] != "none" else OUT_OF_SCOPE) for r in rows}
    np.savez(tmp_path / "oof.npz", views=np.array([[p, 0, 0, 0] for p in p_low], np.float32),
             writers=np.array([r["writer"] for r in rows]), texts=np.array([r["text"] for r in rows]))
    config = train_scope(paths, out_dir=tmp_path / "w", embedder=FakeEmbedder(DIM, vectors=vectors),
                         reader_oof=tmp_path / "oof.npz", progress=False)
    sel = config["selection"]
    assert sel["out_of_fold"]["silenced_moderate_up"] == 0
    assert sel["out_of_fold"]["freed"] == sel["hard_negatives_hit"] > 0  # separable: every past hit freed
    scope = PatternScope(FakeEmbedder(DIM, vectors=vectors), weights=tmp_path / "w" / "scope.json")
    scope.load()
    assert scope.p_current([rows[0]["text"]])[0] > 0.5 > scope.p_current([rows[3]["text"]])[0]


def test_train_scope_needs_the_readers_out_of_fold_predictions(tmp_path):
    pytest.importorskip("sklearn")
    from empathic_agent.training.risk import train_scope

    paths = _write_writers(tmp_path)
    with pytest.raises(ConfigError, match="out-of-fold"):
        train_scope(paths, out_dir=tmp_path / "w", embedder=FakeEmbedder(DIM), reader_oof=tmp_path / "missing.npz",
                    progress=False)
