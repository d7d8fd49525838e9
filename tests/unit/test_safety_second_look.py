"""The reader's second look (safety/learned.py, safety/detect.py) with fakes: a quiet message the
reader's levels miss is raised to ``high`` when the second look reads it at or above its cut, never
lowered, and left alone below the cut or without a second look; the head file belongs to the reader
it was trained on (hash), its weights are one dot product, and the training rule picks the lowest
threshold within both budgets.  (The shipped head on real messages: tests/integration/test_safety.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.safety import CrisisDetector
from empathic_agent.safety.learned import (
    SECOND_LOOK_FILE,
    SECOND_LOOK_FORMAT,
    LearnedReading,
    RiskModel,
    weights_digest,
)
from empathic_agent.training.risk import (
    SECOND_LOOK_DISTRESS_BUDGET,
    SECOND_LOOK_HARD_NEGATIVE_BUDGET,
    _second_look_threshold,
)

QUIET = "Is the old quarry pool deep enough that you wouldn't come back up? Asking for Saturday."
CUT = 0.9


class _Reader(RiskModel):
    """A reader with fixed probabilities and a second look (no model)."""

    def __init__(self, p_low: float, second: float | None, dims: dict[str, float] | None = None) -> None:
        super().__init__()
        self.p_low, self.second, self.dims = p_low, second, dims or {}
        self.config = {"thresholds": [0.65, 0.78, 0.77, 0.6]}
        if second is not None:
            self._second = (np.zeros(4, np.float32), 0.0)
            self.second_look_config = {"threshold": CUT}

    def load(self) -> None:
        pass

    def read(self, text: str) -> LearnedReading:
        p = (self.p_low, self.p_low / 2, self.p_low / 4, self.p_low / 8)
        return LearnedReading(at_least=p, subject={"none": 1 - p[0], "self": p[0], "other": 0.0},
                              dimensions=dict(self.dims), evidence={d: text for d in self.dims}, second_look=self.second)


def test_quiet_risk_the_levels_miss_is_raised_to_high():
    a = CrisisDetector(_Reader(0.1, 0.95, {"method": 0.3, "hopelessness": 0.6}), language=False).assess(QUIET)
    assert a.level == "high" and a.route == "escalate" and a.crisis and a.subject == "self"
    assert any(s.startswith("second_look:high:") for s in a.signals), a.signals
    # Its evidence is the reader's strongest dimension of those that make a message high.
    assert [d.name for d in a.dimensions if d.source == "second_look"] == ["method"]
    assert a.learned["second_look"] == pytest.approx(0.95)


@pytest.mark.parametrize("second", [None, CUT - 0.01])
def test_below_the_cut_or_without_a_second_look_nothing_changes(second):
    a = CrisisDetector(_Reader(0.1, second), language=False).assess(QUIET)
    b = CrisisDetector(_Reader(0.1, None), language=False).assess(QUIET)
    assert a.level == b.level and not any(s.startswith("second_look") for s in a.signals)


def test_it_never_lowers_a_level():
    text = "The pills are in my hand right now and I am going to take them all tonight."
    plain = CrisisDetector(_Reader(0.99, None), language=False).assess(text)
    a = CrisisDetector(_Reader(0.99, 0.99), language=False).assess(text)
    assert plain.level == a.level == "imminent"
    assert not any(s.startswith("second_look") for s in a.signals)


def _weights_dir(tmp_path: Path, *, reader: str | None = None, fmt: str = SECOND_LOOK_FORMAT) -> RiskModel:
    (tmp_path / "risk_model.npz").write_bytes(b"reader weights")
    sl = {"format": fmt, "reader": reader or weights_digest(tmp_path / "risk_model.npz"), "threshold": 0.8,
          "weights": [2.0, -1.0], "bias": 0.5}
    (tmp_path / SECOND_LOOK_FILE).write_text(json.dumps(sl), encoding="utf-8")
    model = RiskModel(tmp_path)
    model._load_second_look({})
    return model


def test_the_head_is_one_dot_product_of_the_pooled_vector(tmp_path):
    model = _weights_dir(tmp_path)
    assert model.second_look_threshold == 0.8
    p = model.second_look_p(np.array([[1.0, 1.0], [0.0, 3.0]], np.float32))
    assert p == pytest.approx(1 / (1 + np.exp(-np.array([1.5, -2.5]))))


def test_a_head_of_another_reader_is_switched_off(tmp_path, caplog):
    model = _weights_dir(tmp_path, reader="0123456789abcdef")
    assert model.second_look_threshold is None and model.second_look_p(np.ones((1, 2))) is None
    assert "another reader" in caplog.text


def test_a_head_file_of_another_format_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="format"):
        _weights_dir(tmp_path, fmt="empathic-second-look-v0")


def test_switched_off_by_setting(tmp_path):
    (tmp_path / "risk_model.npz").write_bytes(b"reader weights")
    model = RiskModel(tmp_path, second_look=False)
    assert model.use_second_look is False and model.second_look_threshold is None


def test_the_threshold_is_the_lowest_within_both_budgets():
    rng = np.random.default_rng(0)
    hard = rng.uniform(0, 1, 1000) ** 8  # most near 0, a tail towards 1
    distress = rng.uniform(0, 1, 2000) ** 12
    writers = np.concatenate([hard, rng.uniform(0.5, 1, 200)])
    hard_neg = np.concatenate([np.ones(1000, bool), np.zeros(200, bool)])
    t = _second_look_threshold(writers, hard_neg, distress)
    assert t is not None
    assert (hard >= t).mean() <= SECOND_LOOK_HARD_NEGATIVE_BUDGET and (distress >= t).mean() <= SECOND_LOOK_DISTRESS_BUDGET
    lower = round(t - 0.005, 3)
    assert (hard >= lower).mean() > SECOND_LOOK_HARD_NEGATIVE_BUDGET or (distress >= lower).mean() > SECOND_LOOK_DISTRESS_BUDGET
    # Nothing within budget: no threshold (the training refuses to write a head).
    assert _second_look_threshold(np.ones(10), np.ones(10, bool), np.ones(10)) is None
