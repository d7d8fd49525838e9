"""The evaluation report (HTML + JSON) and the comparison of two runs, on synthetic report dicts
(no models, no runner): self-containment, escaping, missing fields, deltas and load errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.evals.compare import compare_reports, direction, load_report, write_compare_html
from empathic_agent.evals.report import RULES_LABEL, write_html, write_json

XSS = "<script>alert(1)</script>"


def _turn(index: int, reply: str, valence: float, *, passed: bool = True) -> dict:
    return {
        "index": index, "kind": "scripted", "user_text": f"I feel low & tired ({index})", "reply": reply,
        "inputs": {"audio": None, "images": []},
        "perceived": {"fused": {"category": "sadness", "valence": valence, "arousal": -0.2, "dominance": -0.1,
                                "confidence": 0.7},
                      "modalities": {"text": {"category": "sadness", "valence": valence, "arousal": -0.2,
                                              "dominance": -0.1, "confidence": 0.7}},
                      "mixed_signals": False},
        "register": {"strategy": "validate", "family": "comfort", "target": {"valence": 0.1, "arousal": -0.1,
                                                                            "dominance": 0.0},
                     "tone": ["warm", "calm"], "pace": "slow", "length": "short"},
        "crisis": False,
        "empathy": {"kind": "llm", "emotional_reactions": {"score": 1.6, "distribution": [0.1, 0.2, 0.7]},
                    "interpretations": {"score": 1.0, "distribution": [0.2, 0.6, 0.2]},
                    "explorations": {"score": 0.4, "distribution": [0.7, 0.2, 0.1]}},
        "checks": [
            {"kind": "perception", "name": "fused_category", "expected": "sadness", "actual": "sadness",
             "passed": True},
            {"kind": "content", "name": "asks_question", "expected": True, "actual": passed, "passed": passed},
        ],
        "timings": {"perceive": 0.2, "generate": 1.1}, "turn_s": 1.4, "degraded": [],
    }


def _summary(*, pass_rate: float, accuracy: float, p50: float, kind: str) -> dict:
    return {
        "scenarios": 2, "ok": 1, "errors": 1, "turns": 2, "pass_rate": pass_rate,
        "checks": {"by_kind": {"content": {"passed": 1, "total": 2, "rate": 0.5}},
                   "by_name": {"asks_question": {"passed": 1, "total": 2, "rate": 0.5},
                               "fused_category": {"passed": 2, "total": 2, "rate": 1.0}}},
        "perception": {"fused": {"n": 2, "accuracy": accuracy}, "text": {"n": 2, "accuracy": 1.0},
                       "speech": {"n": 0, "accuracy": None}, "face": {"n": 0, "accuracy": None},
                       "mixed_signals": {"n": 2, "accuracy": 1.0}, "vad_in_range": {"n": 2, "accuracy": 0.5}},
        "register": {"family": {"n": 2, "accuracy": 1.0}, "tone": {"n": 0, "accuracy": None}},
        "safety": {"crisis_expected": 0, "crisis_routed": 0, "recall": None, "false_alarms": 0,
                   "forbidden_content": 0},
        "empathy": {"kind": kind, "judge": "qwen" if kind == "llm" else "rules", "overall": 0.5,
                    "emotional_reactions": {"mean": 1.6, "distribution": [0.1, 0.2, 0.7]},
                    "interpretations": {"mean": 1.0, "distribution": [0.2, 0.6, 0.2]},
                    "explorations": {"mean": 0.4, "distribution": [0.7, 0.2, 0.1]}},
        "trajectory": {"dialogues": 1, "improved_share": 1.0, "mean_valence_change": 0.3},
        "latency": {"turn_s": {"mean": 1.4, "p50": p50, "p95": 2.0},
                    "steps": {"generate": {"mean": 1.1, "p50": 1.0, "p95": 1.5}}},
    }


@pytest.fixture
def report() -> dict:
    """An LLM-judged run: one ok scenario (with a hostile reply) and one that errored before any turn."""
    return {
        "schema": "empathic-eval-report/1",
        "run": {"id": "run-a", "started": "2025-01-01T10:00:00", "finished": "2025-01-01T10:01:00",
                "wall_s": 60.0, "sources": ["shipped"],
                "settings": {"llm_backend": "openai", "llm_model": "smollm2-135m-instruct",
                             "openai_model": "qwen2.5-7b", "persona": "sam", "temperature": 0.0, "seed": 7},
                "seed": 7, "temperature": 0.0,
                "judge": {"kind": "llm", "model": "qwen2.5-7b", "url": None, "probabilities": True},
                "simulator": None, "parallel": 1, "package_version": "0.1.0", "resumed": 0},
        "summary": _summary(pass_rate=0.75, accuracy=0.5, p50=1.2, kind="llm"),
        "scenarios": [
            {"id": "grief-1", "title": "Losing a pet", "tags": ["grief"], "source": "shipped",
             "user": {"name": "Ana", "description": "sad"}, "config": {}, "status": "ok", "error": None,
             "wall_s": 3.0, "seed": 7,
             "turns": [_turn(0, "That sounds hard. What was she like?", -0.6),
                       _turn(1, XSS, -0.3, passed=False)],
             "trajectory": {"valence": [-0.6, -0.3], "arousal": [-0.2, -0.2], "change": 0.3, "slope": 0.3,
                            "improved": True},
             "goals": [{"name": "valence_improves", "expected": True, "actual": True, "passed": True}],
             "metrics": {"checks_passed": 3, "checks_total": 4, "pass_rate": 0.75,
                         "empathy": {"emotional_reactions": 1.6}, "empathy_overall": 0.5}},
            {"id": "broken-2", "title": None, "tags": [], "source": "shipped", "user": None, "config": None,
             "status": "error", "error": "LLMConnectionError: refused", "wall_s": None, "seed": None,
             "turns": [], "trajectory": None, "goals": [],
             "metrics": {"checks_passed": 0, "checks_total": 0, "pass_rate": None, "empathy": {},
                         "empathy_overall": None}},
        ],
    }


@pytest.fixture
def rules_report(report: dict) -> dict:
    """The same run scored by the rule-based scorer, with a different persona, latency and scenarios."""
    b = copy.deepcopy(report)
    b["run"]["id"] = "run-b"
    b["run"]["settings"]["persona"] = "alex"
    b["run"]["judge"] = {"kind": "rules", "model": None, "url": None, "probabilities": False}
    b["summary"] = _summary(pass_rate=0.5, accuracy=0.75, p50=0.9, kind="rules")
    b["summary"]["checks"]["by_name"]["asks_question"] = {"passed": 2, "total": 2, "rate": 1.0}
    for turn in b["scenarios"][0]["turns"]:
        turn["empathy"]["kind"] = "rules"
        turn["perceived"]["fused"] = None  # a turn whose fusion failed
    b["scenarios"][0]["metrics"]["pass_rate"] = 1.0
    b["scenarios"][1]["id"] = "new-3"
    return b


def _assert_self_contained(text: str) -> None:
    for bad in ('src="http', "href=\"http", "@import", "url(http", "<script src", "<link"):
        assert bad not in text.lower(), bad
    assert "http://" not in text and "https://" not in text


# ---------------------------------------------------------------------------------------------
# report


def test_html_report_is_written_and_self_contained(report: dict, tmp_path: Path) -> None:
    path = write_html(report, tmp_path / "out" / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "grief-1" in text and "broken-2" in text
    assert "<svg" in text
    _assert_self_contained(text)
    assert "LLMConnectionError: refused" in text  # the errored scenario's error is shown
    assert RULES_LABEL not in text
    assert "qwen2.5-7b" in text


def test_html_report_escapes_llm_and_user_text(report: dict, tmp_path: Path) -> None:
    text = write_html(report, tmp_path / "report.html").read_text(encoding="utf-8")
    assert XSS not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "low &amp; tired" in text
    assert "<script" not in text


def test_html_report_marks_failed_checks(report: dict, tmp_path: Path) -> None:
    text = write_html(report, tmp_path / "report.html").read_text(encoding="utf-8")
    failed = re.search(r'<li class="bad">.*?asks_question.*?</li>', text)
    assert failed and "expected true" in failed.group(0) and "got false" in failed.group(0)
    assert "✓" in text and "✗" in text


def test_html_report_labels_the_rule_based_scorer(rules_report: dict, tmp_path: Path) -> None:
    text = write_html(rules_report, tmp_path / "report.html").read_text(encoding="utf-8")
    assert RULES_LABEL in text
    _assert_self_contained(text)


def test_html_report_survives_missing_fields(tmp_path: Path) -> None:
    sparse = {"schema": "empathic-eval-report/1", "run": None, "summary": {"perception": {"fused": {"n": 0}}},
              "scenarios": [{"id": "x", "status": "error", "turns": None}, "not a dict"]}
    text = write_html(sparse, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "x" in text and "–" in text
    assert write_html({}, tmp_path / "empty.html").is_file()


def test_write_json_round_trips_atomically(report: dict, tmp_path: Path) -> None:
    path = write_json(report, tmp_path / "report.json")
    assert json.loads(path.read_text(encoding="utf-8")) == report
    assert "\n \"run\"" in path.read_text(encoding="utf-8")  # indent=1
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------
# compare


def _metric(cmp: dict, key: str) -> dict:
    return next(m for m in cmp["metrics"] if m["key"] == key)


def test_compare_deltas_and_directions(report: dict, rules_report: dict) -> None:
    cmp = compare_reports(report, rules_report, labels=("base", "new"))
    acc = _metric(cmp, "perception.fused.accuracy")
    assert acc["a"] == 0.5 and acc["b"] == 0.75 and acc["delta"] == pytest.approx(0.25) and acc["better"] is True
    p50 = _metric(cmp, "latency.turn_s.p50")
    assert p50["delta"] == pytest.approx(-0.3) and p50["better"] is True  # lower latency is better
    rate = _metric(cmp, "pass_rate")
    assert rate["delta"] == pytest.approx(-0.25) and rate["better"] is False
    speech = _metric(cmp, "perception.speech.accuracy")
    assert speech["delta"] is None and speech["better"] is None  # null on both sides: n/a
    assert _metric(cmp, "empathy.overall")["delta"] == 0
    assert direction("perception.fused.n") == "neutral" and direction("safety.false_alarms") == "lower"
    json.dumps(cmp)  # the comparison is JSON-serialisable


def test_compare_lists_differing_settings_and_scenarios(report: dict, rules_report: dict) -> None:
    cmp = compare_reports(report, rules_report)
    diff = {d["key"]: (d["a"], d["b"]) for d in cmp["settings_diff"]}
    assert diff["persona"] == ("sam", "alex")
    assert diff["run.judge.kind"] == ("llm", "rules")
    assert "llm_backend" not in diff
    assert cmp["scenarios"]["only_a"] == ["broken-2"] and cmp["scenarios"]["only_b"] == ["new-3"]
    [both] = cmp["scenarios"]["both"]
    assert both["id"] == "grief-1" and both["delta"]["pass_rate"] == pytest.approx(0.25)
    checks = {c["name"]: c for c in cmp["checks"]}
    assert checks["asks_question"]["delta"] == pytest.approx(0.5)


def test_compare_html_is_self_contained_and_coloured(report: dict, rules_report: dict, tmp_path: Path) -> None:
    rules_report["scenarios"][0]["title"] = XSS
    cmp = compare_reports(report, rules_report)
    text = write_compare_html(cmp, tmp_path / "compare.html").read_text(encoding="utf-8")
    _assert_self_contained(text)
    assert XSS not in text
    assert "persona" in text and "alex" in text
    assert 'class="better"' in text and 'class="worse"' in text and "n/a" in text
    assert "new-3" in text and "broken-2" in text


def test_load_report_accepts_file_or_run_directory(report: dict, tmp_path: Path) -> None:
    write_json(report, tmp_path / "report.json")
    assert load_report(tmp_path)["run"]["id"] == "run-a"
    assert load_report(tmp_path / "report.json")["run"]["id"] == "run-a"


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no evaluation report"):
        load_report(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a readable JSON"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/2"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="schema"):
        load_report(tmp_path / "other.json")
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigError, match="schema"):
        load_report(tmp_path / "list.json")
