"""The offline judge's pieces on tiny synthetic data: the split by seeker post, the metrics and the
calibration, the data loaders, reply-level sources and figures, adherence, and ``eval replies``
end to end with fakes (the real judge and classifier: tests/integration/test_judge.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.evals.empathy import EpitomeJudge, RuleJudge, load_judge, seeker_text
from empathic_agent.evals.replies import (
    RepliesOptions,
    _context_turns,
    csv_items,
    distinct,
    esconv_items,
    load_items,
    run_replies,
)
from empathic_agent.evals.strategy import adherence
from empathic_agent.graph.builder import build_services
from empathic_agent.metrics import binned_ece, top_label
from empathic_agent.settings import Settings
from empathic_agent.testing.fakes import FakeEmbedder, FakeEncoder, FakeLLM, FakeStrategyClassifier
from empathic_agent.training.judge import (
    classification_report,
    fit_temperature,
    load_epitome,
    load_strategy_turns,
    split_of,
)


def test_split_by_seeker_post_is_stable_and_proportioned():
    keys = [f"post{i}" for i in range(3000)]
    splits = [split_of(k) for k in keys]
    assert splits == [split_of(k) for k in keys]  # a hash: no dependence on order or run
    share = {s: splits.count(s) / len(keys) for s in ("train", "dev", "test")}
    assert 0.65 < share["train"] < 0.75 and 0.12 < share["dev"] < 0.18 and 0.12 < share["test"] < 0.18


def test_classification_report_counts():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    rep = classification_report(probs, [0, 1, 2, 2], ["0", "1", "2"])
    assert rep["n"] == 4 and rep["accuracy"] == 0.75
    assert rep["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert rep["per_class"]["2"]["recall"] == 0.5 and rep["per_class"]["0"]["precision"] == 0.5
    # macro-F1 over the classes present: (2/3 + 1 + 2/3) / 3
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3, abs=1e-4)


def test_ece_and_temperature():
    one_hot_right = np.eye(3)[[0, 1, 2, 1]]
    assert binned_ece(*top_label(one_hot_right, np.array([0, 1, 2, 1]))) == 0.0
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 600)
    # Logits that point at the right class 60 % of the time, but with huge confidence.
    pred = np.where(rng.random(600) < 0.6, gold, (gold + 1) % 3)
    logits = 12.0 * np.eye(3)[pred]
    t = fit_temperature(logits, gold)
    assert t > 3.0  # overconfident logits are softened
    soft = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    hard = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert binned_ece(*top_label(soft, gold)) < binned_ece(*top_label(hard, gold))


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def test_load_epitome_checks_columns_and_levels(tmp_path):
    fields = ["sp_id", "seeker_post", "response_post", "er_level", "ip_level", "ex_level", "er_rationales",
              "ip_rationales", "ex_rationales"]
    ok = _write_csv(tmp_path / "a.csv", [{"sp_id": "x1", "seeker_post": "I feel alone", "response_post": "So sorry.",
                                          "er_level": 1, "ip_level": 0, "ex_level": 0, "er_rationales": "So sorry|"}],
                    fields)
    rows = load_epitome(ok)
    assert rows[0]["levels"] == {"emotional_reactions": 1, "interpretations": 0, "explorations": 0}
    assert rows[0]["rationales"]["emotional_reactions"] == ["So sorry"]
    assert rows[0]["rationales"]["interpretations"] == []
    assert load_epitome(ok, split=split_of("x1"))
    with pytest.raises(ConfigError, match="no rows"):
        load_epitome(ok, split=next(s for s in ("train", "dev", "test") if s != split_of("x1")))
    bad = _write_csv(tmp_path / "b.csv", [{"sp_id": "x", "seeker_post": "a", "response_post": "b", "er_level": 3,
                                           "ip_level": 0, "ex_level": 0}], fields)
    with pytest.raises(ConfigError, match="0, 1 or 2"):
        load_epitome(bad)
    missing = _write_csv(tmp_path / "c.csv", [{"seeker_post": "a"}], ["seeker_post"])
    with pytest.raises(ConfigError, match="response_post"):
        load_epitome(missing)
    no_id = _write_csv(tmp_path / "d.csv", [{"seeker_post": "a", "response_post": "b", "er_level": 0, "ip_level": 0,
                                             "ex_level": 0}], fields[1:6])
    with pytest.raises(ConfigError, match="sp_id"):
        load_epitome(no_id, split="test")
    # Hand-written pairs without rationale columns: rationales unknown (no tagging loss), not "none".
    assert load_epitome(no_id)[0]["rationales"] is None


def _esconv(tmp_path: Path) -> Path:
    conv = {"emotion_type": "sadness", "problem_type": "job", "situation": "lost job", "dialog": [
        {"speaker": "sys", "text": "Hello, how are you?", "strategy": "Others"},
        {"speaker": "usr", "text": "Not great."},
        {"speaker": "usr", "text": "I lost my job."},
        {"speaker": "sys", "text": "I'm sorry. What happened?", "strategy": "Question"},
        {"speaker": "sys", "text": "Take your time.", "strategy": "Affirmation and Reassurance"},
        {"speaker": "usr", "text": "They cut my team."},
        {"speaker": "sys", "text": "That sounds so unfair.", "strategy": "Reflection of feelings"},
    ]}
    d = tmp_path / "data" / "esconv"
    d.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (d / f"{split}.txt").write_text(json.dumps(conv) + "\n")
    return tmp_path / "data"


def test_esconv_items_give_history_message_and_gold(tmp_path):
    items = esconv_items(_esconv(tmp_path), "test")
    assert [i.reference for i in items] == ["I'm sorry. What happened?", "That sounds so unfair."]
    first, second = items
    assert first.message == "Not great. I lost my job." and first.history == (("assistant", "Hello, how are you?"),)
    assert first.strategy == "Question" and first.previous_strategies == ("Others",)
    # The second supporter turn in a row is history, not an item.
    assert second.history[-2:] == (("assistant", "I'm sorry. What happened?"), ("assistant", "Take your time."))
    assert second.previous_strategies == ("Others", "Question", "Affirmation and Reassurance")
    turns = load_strategy_turns(_esconv(tmp_path / "x"), "train")
    assert [t["strategy"] for t in turns] == ["Question", "Reflection of feelings"]
    assert turns[0]["context"] == "Not great. I lost my job."


def test_context_lines_and_csv_source(tmp_path):
    assert _context_turns("Hi\nHello, how are you?\nI failed my exam") == (
        [("user", "Hi"), ("assistant", "Hello, how are you?")], "I failed my exam")
    assert _context_turns("supporter: Hey\nseeker: I'm tired\nuser: and sad") == (
        [("assistant", "Hey")], "I'm tired and sad")
    path = _write_csv(tmp_path / "r.csv", [{"context": "I failed my exam", "reference": "That hurts.",
                                           "strategy": "Reflection of feelings"}],
                      ["context", "reference", "strategy"])
    (item,) = csv_items(path)
    assert item.message == "I failed my exam" and item.strategy == "Reflection of feelings"
    bad = _write_csv(tmp_path / "s.csv", [{"context": "x", "reference": "y", "strategy": "Hugging"}],
                     ["context", "reference", "strategy"])
    with pytest.raises(ConfigError, match="unknown strategy"):
        csv_items(bad)
    with pytest.raises(ConfigError, match="context,reference"):
        csv_items(_write_csv(tmp_path / "t.csv", [{"text": "x"}], ["text"]))


def test_limit_is_a_seeded_draw_in_data_order(tmp_path):
    rows = [{"context": f"message {i}", "reference": f"reply {i}"} for i in range(40)]
    path = _write_csv(tmp_path / "r.csv", rows, ["context", "reference"])
    a = load_items(str(path), limit=10, seed=1)
    assert [i.id for i in a] == [i.id for i in load_items(str(path), limit=10, seed=1)]
    assert [i.id for i in a] != [i.id for i in load_items(str(path), limit=10, seed=2)]
    assert [i.id for i in a] == sorted(i.id for i in a)
    with pytest.raises(ConfigError):
        load_items(str(path), limit=0)


def test_distinct_and_seeker_text():
    assert distinct(["a b a", "b c"], 1) == pytest.approx(3 / 5)
    assert distinct(["a b a b"], 2) == pytest.approx(2 / 3, abs=1e-4)
    assert distinct([""], 1) is None
    ctx = [("user", "hi"), ("assistant", "hello"), ("user", "I lost"), ("user", "my job")]
    assert seeker_text(ctx) == "I lost my job"
    assert seeker_text([("user", "x"), ("assistant", "y")]) == "x"


def test_adherence_exact_and_family():
    read = {"strategy": "Restatement or Paraphrasing", "probability": 0.8, "family": "exploration"}
    a = adherence("Question", read)
    assert a["exact"] is False and a["family"] is True and a["classified"] == "Restatement or Paraphrasing"
    assert adherence("Question", {"strategy": "Question"})["exact"] is True
    assert adherence(None, read) is None and adherence("Question", None) is None


def test_default_judge_is_epitome_and_rules_stay_available(tmp_path):
    s = Settings.from_env({}, memory_dir=tmp_path)
    assert s.judge == "epitome"
    assert isinstance(load_judge(s), EpitomeJudge)  # the weights ship with the package
    assert isinstance(load_judge(s.replace(judge="rules")), RuleJudge)
    with pytest.raises(ConfigError, match="judge"):
        Settings.from_env({}, memory_dir=tmp_path, judge="gpt")


async def test_eval_replies_with_fakes_scores_both_sides_and_resumes(settings, tmp_path):
    rows = [{"context": "seeker: hey\nsupporter: Hi, how are you?\nseeker: My boss yelled at me today",
             "reference": "That sounds humiliating. What happened after?", "strategy": "Question"},
            {"context": "I got the job I wanted", "reference": "Congratulations, you worked hard for this!",
             "strategy": "Affirmation and Reassurance"},
            {"context": "My cat died on Sunday", "reference": "I'm so sorry about your cat.",
             "strategy": "Reflection of feelings"}]
    src = _write_csv(tmp_path / "r.csv", rows, ["context", "reference", "strategy"])
    out = tmp_path / "run"
    llm = FakeLLM(["I'm sorry. What happened?", "You should relax.", "Tell me more?"])
    services = build_services(settings, llm=llm, text_encoder=FakeEncoder(default="sadness"), memory=None, speech=None,
                              face=None, tts=None)
    kw = dict(judge=RuleJudge(), embedder=FakeEmbedder(), classifier=FakeStrategyClassifier())
    report = await run_replies(settings, str(src), RepliesOptions(out=out, progress=False), services=services, **kw)
    assert (out / "report.json").is_file() and (out / "report.html").is_file()
    r, g = report["summary"]["reply"], report["summary"]["gold"]
    assert r["n"] == g["n"] == 3 and report["judge"]["kind"] == "rules"
    for key in ("bleu_1", "bleu_2", "bleu_4", "rouge_l", "distinct_1", "distinct_2", "relevance_message",
                "relevance_reference", "off_topic_rate", "adherence", "gold_strategy_agreement", "latency"):
        assert key in r, key
    assert r["reference_perplexity"] is None  # the fake LLM gives no log-probabilities
    assert r["adherence"]["n"] == 3 and g["gold_strategy_agreement"] is not None
    # The agent saw the seeded history (the first prompt is the warm-up turn's).
    assert any(m.content == "Hi, how are you?" and m.role == "assistant" for m in llm.prompts[1])
    assert len(report["worst"]["judge"]) == 3 and set(report["by_strategy"]) == {r_["strategy"] for r_ in rows}
    html = (out / "report.html").read_text()
    assert "Human (gold)" in html and "My boss yelled" in html
    # Resume: every item is done, nothing is generated again.
    again = build_services(settings, llm=FakeLLM(["unused"]), text_encoder=FakeEncoder(default="sadness"),
                           memory=None, speech=None, face=None, tts=None)
    await run_replies(settings, str(src), RepliesOptions(out=out, progress=False), services=again, **kw)
    assert again.llm.prompts == []
    # A different run in the same folder is refused, unless started fresh.
    with pytest.raises(ConfigError, match="different run"):
        await run_replies(settings, str(src), RepliesOptions(out=out, progress=False, bare=True), services=again, **kw)


async def test_bare_mode_sends_history_without_plan(settings, tmp_path):
    src = _write_csv(tmp_path / "r.csv", [{"context": "I failed my exam", "reference": "That hurts."}],
                     ["context", "reference"])
    llm = FakeLLM(["Oh no."])
    services = build_services(settings, llm=llm, text_encoder=FakeEncoder(default="sadness"), memory=None, speech=None,
                              face=None, tts=None)
    report = await run_replies(settings, str(src), RepliesOptions(out=tmp_path / "bare", bare=True, progress=False),
                               services=services, judge=RuleJudge(), embedder=FakeEmbedder(),
                               classifier=FakeStrategyClassifier())
    (prompt,) = llm.prompts
    assert [m.role for m in prompt] == ["system", "user"] and prompt[-1].content == "I failed my exam"
    assert report["items"][0]["reply"]["planned_strategy"] is None and report["summary"]["reply"]["adherence"]["n"] == 0
    # `eval compare` reads reply-level runs too: the same item, agent vs. bare.
    from empathic_agent.evals.compare import compare_reports, direction, load_report

    full = build_services(settings, llm=FakeLLM(["I'm sorry, that sounds hard. What happened?"]),
                          text_encoder=FakeEncoder(default="sadness"), memory=None, speech=None, face=None, tts=None)
    await run_replies(settings, str(src), RepliesOptions(out=tmp_path / "full", progress=False), services=full,
                      judge=RuleJudge(), embedder=FakeEmbedder(), classifier=FakeStrategyClassifier())
    cmp = compare_reports(load_report(tmp_path / "bare"), load_report(tmp_path / "full"), labels=("bare", "agent"))
    rows = {m["key"]: m for m in cmp["metrics"]}
    assert rows["reply.empathy.overall"]["better"] is True
    assert {"key": "run.bare", "a": True, "b": False} in cmp["settings_diff"]
    assert direction("reply.off_topic_rate") == "lower" and direction("reply.length_words.p50") == "neutral"
    with pytest.raises(ConfigError, match="cannot compare"):
        compare_reports(load_report(tmp_path / "bare"), {"schema": "empathic-eval-report/1"})
