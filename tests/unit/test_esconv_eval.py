"""The ESConv plausibility check's bookkeeping, on a tiny ESConv-format data set written here."""

from __future__ import annotations

import json

import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.plan.esconv import evaluate_esconv, load_esconv
from empathic_agent.testing import ContextRecordingEncoder, FakeEncoder

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


def test_seeker_messages_are_read_in_their_conversation_as_the_graph_reads_them(data_dir):
    from empathic_agent.plan.esconv import supporter_turns

    enc = ContextRecordingEncoder(default="sadness")
    rows = supporter_turns(load_esconv(data_dir, "test"), encoder=enc)
    assert len(rows) == 4
    texts = [t for t, _ in enc.seen]
    assert texts == [t["text"] for t in CONV["dialog"] if t["speaker"] == "usr"]  # each once, in order
    first, second = enc.seen[0][1], enc.seen[1][1]
    assert first.turns == ("Hello, how are you?",) and first.state is None
    # Both sides, oldest first, without the message itself; the state is the prior of what was read.
    assert second.turns == ("Hello, how are you?", "I lost my job and I feel awful", "What happened?")
    assert second.state is not None and second.state.modality == "prior"
    assert rows[1]["dialogue"].state is not None  # the fused readings reach the planner's inputs
    # An encoder without a context head reads each distinct message alone, as before.
    plain = FakeEncoder(default="sadness")
    assert len(supporter_turns(load_esconv(data_dir, "test"), encoder=plain)) == 4
    assert sorted(x for batch in plain.calls for x in batch) == sorted(texts)
