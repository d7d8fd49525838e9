"""The ESConv plausibility check's bookkeeping, on a tiny ESConv-format data set written here."""

from __future__ import annotations

import json

import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.plan.esconv import evaluate_esconv, load_esconv
from empathic_agent.testing import FakeEncoder

CONV = {"emotion_type": "sadness", "problem_type": "job", "situation": "lost job", "dialog": [
    {"text": "Hello, how are you?", "speaker": "sys", "strategy": "Question"},   # before the seeker: skipped
    {"text": "I lost my job and I feel awful", "speaker": "usr"},
    {"text": "What happened?", "speaker": "sys", "strategy": "Question"},
    {"text": "They let me go without warning", "speaker": "usr"},
    {"text": "That sounds so hard.", "speaker": "sys", "strategy": "Reflection of feelings"},
    {"text": "I don't know what to do", "speaker": "usr"},
    {"text": "Maybe update your CV?", "speaker": "sys", "strategy": "Providing Suggestions"},
    {"text": "thank you", "speaker": "usr"},
    {"text": "Take care!", "speaker": "sys", "strategy": "Others"},
]}


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "esconv"
    d.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (d / name).write_text(json.dumps(CONV) + "\n")
    return tmp_path


def test_counts_and_agreement(data_dir):
    enc = FakeEncoder(default="sadness")
    r = evaluate_esconv(data_dir, split="test", encoder=enc)
    assert r["conversations"] == 1 and r["supporter_turns"] == 4
    # The supporter's greeting was a Question, so the planner's turn 1 alternates to Reflection
    # (a miss); then Reflection, Providing Suggestions ("don't know what to do"), Others (thanks).
    assert r["strategy_agreement"] == 0.75 and r["family_agreement"] == 0.75
    assert r["baselines"]["majority_family"]["agreement"] <= 0.5
    assert sum(sum(row.values()) for row in r["family_confusion"]["matrix"].values()) == 4


def test_missing_data_and_bad_split(tmp_path):
    with pytest.raises(ConfigError, match="ESConv not found"):
        load_esconv(tmp_path, "test")
    with pytest.raises(ConfigError, match="split"):
        load_esconv(tmp_path, "dev")
