"""``empathic eval`` end to end on the real embedded defaults: shipped scenarios through the real
graph (text encoder, face model, safety stage, Chroma memory, SmolLM2), the empathy judge through a
real OpenAI-compatible server process, JSON + HTML reports, and the comparison of two runs."""

from __future__ import annotations

import json
import re

import pytest

from empathic_agent.cli.main import main

pytestmark = pytest.mark.integration

FLAGS = ["--temperature", "0", "--max-new-tokens", "40", "--no-progress"]


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory, openai_server):
    """The crisis and mixed-signals sets, judged by the served model."""
    out = tmp_path_factory.mktemp("eval") / "sam"
    code = main(["eval", "run", "shipped:crisis", "shipped:mixed_signals", "--out", str(out), *FLAGS,
                 "--judge-url", openai_server.base_url, "--judge-model", openai_server.model_id])
    return code, out


def test_report_of_a_judged_run(judged_run):
    code, out = judged_run
    report = json.loads((out / "report.json").read_text())
    assert code == 0, report["summary"]
    s = report["summary"]
    assert s["errors"] == 0 and s["turns"] >= 4
    assert report["run"]["judge"]["kind"] == "llm" and report["run"]["seed"] == 0
    # Every turn was judged: a distribution over 0/1/2 per EPITOME mechanism.
    for sc in report["scenarios"]:
        for t in sc["turns"]:
            assert t["empathy"] is not None, t["degraded"]
            for dim in ("emotional_reactions", "interpretations", "explorations"):
                assert sum(t["empathy"][dim]["distribution"]) == pytest.approx(1.0, abs=1e-3)  # rounded to 4 places
            assert t["timings"].get("perceive") is not None and t["turn_s"] > 0
    # Safety: every expected crisis took the protocol's route, with resources in the reply.
    assert s["safety"]["crisis_expected"] >= 2 and s["safety"]["recall"] == 1.0
    assert s["checks"]["by_name"]["must:crisis_resources"]["rate"] == 1.0
    # The smiling face with sad words was read by the real face model and flagged as mixed.
    masked = [t for sc in report["scenarios"] for t in sc["turns"] if t["inputs"]["images"]]
    assert masked and all("face" in t["perceived"]["modalities"] for t in masked)
    assert any(c["name"] == "mixed_signals" and c["passed"] for t in masked for c in t["checks"])
    html = (out / "report.html").read_text()
    assert "<svg" in html and not re.search(r"(src|href)=\"https?:", html)
    assert all(sc["id"] in html for sc in report["scenarios"])


def test_compare_two_runs(judged_run, tmp_path, capsys):
    _, a = judged_run
    b = tmp_path / "alex"
    assert main(["eval", "run", "shipped:crisis", "--out", str(b), "--persona", "alex", *FLAGS]) == 0
    capsys.readouterr()
    # Without a judge server the offline EPITOME judge scores every turn (calibrated distributions),
    # and each planned reply's strategy adherence is read by the strategy classifier.
    rb = json.loads((b / "report.json").read_text())
    assert rb["run"]["judge"]["kind"] == "epitome"
    turns = [t for sc in rb["scenarios"] for t in sc["turns"]]
    assert all(t["empathy"]["probabilities"] for t in turns)
    from empathic_agent.plan.register import STRATEGIES

    # Generated replies under an ESConv strategy are read; the crisis protocol's vetted replies are not.
    generated = [t for t in turns if t["register"].get("strategy") in STRATEGIES
                 and t["generation"]["backend"] == "transformers"]
    assert generated and all(t["adherence"]["planned"] == t["register"]["strategy"] for t in generated)
    assert all(t["adherence"] is None for t in turns if t["generation"]["backend"] == "safety-protocol")
    assert rb["summary"]["adherence"]["n"] == len(generated)
    assert "EPITOME judge" in (b / "report.html").read_text()
    assert main(["eval", "compare", str(a), str(b), "--out", str(tmp_path / "cmp"), "--labels", "sam,alex"]) == 0
    paths = json.loads(capsys.readouterr().out)
    cmp = json.loads(open(paths["json"]).read())
    assert cmp["labels"] == ["sam", "alex"]
    assert any("persona" in str(d) for d in cmp["settings_diff"]), cmp["settings_diff"]
    assert cmp["scenarios"]["only_a"], "the mixed-signals scenarios ran only in the first run"
    assert open(paths["html"]).read().count("<table") >= 2
