"""The real offline judge and strategy classifier (the packaged fine-tuned MiniLM weights), their
CLI, a tiny real training run, and ``empathic eval replies`` on the real embedded agent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.cli.main import main
from empathic_agent.evals.empathy import DIMENSIONS, EpitomeJudge
from empathic_agent.evals.strategy import StrategyClassifier

pytestmark = pytest.mark.integration

HANDMADE = Path(__file__).resolve().parents[1] / "data" / "epitome_handmade.csv"
BOSS = "My boss yelled at me in front of everyone today and I just froze."
STRONG = ("That sounds humiliating — being yelled at in front of everyone. "
          "What went through your mind when you froze?")
DISMISSIVE = "Ok. Anyway, try to relax."


@pytest.fixture(scope="module")
def judge():
    return EpitomeJudge()


async def test_a_strong_reply_beats_a_dismissive_one(judge):
    strong = await judge.score([("user", BOSS)], STRONG)
    weak = await judge.score([("user", BOSS)], DISMISSIVE)
    assert strong.kind == "epitome" and strong.probabilities
    for dim in ("interpretations", "explorations"):
        assert strong.dims[dim].score > weak.dims[dim].score + 0.5, dim
    for dim in DIMENSIONS:
        assert sum(strong.dims[dim].distribution) == pytest.approx(1.0, abs=1e-5)
    assert strong.overall > weak.overall


async def test_the_strong_reply_also_wins_on_emotional_reactions(judge):
    """The issue's pair on every mechanism, emotional reactions included ("That sounds humiliating"
    is a weak reaction in EPITOME's own annotations, as "That's really hard!" is; an xfail until
    the second member, trained with writers D and E, joined the judge)."""
    strong = await judge.score([("user", BOSS)], STRONG)
    weak = await judge.score([("user", BOSS)], DISMISSIVE)
    assert strong.dims["emotional_reactions"].score > weak.dims["emotional_reactions"].score


async def test_an_explicit_emotional_reaction_beats_a_dismissive_one(judge):
    warm = await judge.score([("user", BOSS)], "I'm so sorry, that sounds humiliating. What went through your "
                                                "mind when you froze?")
    weak = await judge.score([("user", BOSS)], DISMISSIVE)
    for dim in DIMENSIONS:
        assert warm.dims[dim].score > weak.dims[dim].score, dim


def test_hand_written_pairs_order_as_their_labels(judge):
    """On pairs written by hand from the rubric (tests/data/EPITOME_HANDMADE.md; never trained on),
    replies labelled 2 score higher on average than those labelled 0, per mechanism."""
    with open(HANDMADE, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    dims = judge.score_many([r["seeker_post"] for r in rows], [r["response_post"] for r in rows])
    for dim, col in zip(DIMENSIONS, ("er_level", "ip_level", "ex_level")):
        by_level = {lv: [d[dim].score for d, r in zip(dims, rows) if r[col] == lv] for lv in ("0", "2")}
        assert np.mean(by_level["2"]) > np.mean(by_level["0"]) + 0.3, (dim, {k: np.mean(v) for k, v in by_level.items()})


def test_judge_cli_eval_and_score(capsys):
    assert main(["judge", "eval", "--csv", str(HANDMADE)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 90
    for dim in DIMENSIONS:
        rep = out[dim]
        assert rep["n"] == 90 and set(rep) >= {"accuracy", "macro_f1", "per_class", "confusion", "ece"}
        assert sum(map(sum, rep["confusion"]["matrix"])) == 90
    assert main(["judge", "score", "--context", BOSS, "--reply", STRONG]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["explorations"]["score"] > 0.8 and scored["strategy"]["strategy"] == "Question"
    assert main(["judge", "score", "--context", BOSS, "--reply", " "]) == 2


def test_strategy_classifier_reads_clear_strategies():
    clf = StrategyClassifier()
    reads = clf.classify_many([BOSS] * 3, ["What happened after the meeting?",
                                           "You could talk to HR about it, or write down what happened.",
                                           "I've been there too, my old manager did the same to me."])
    assert [r["strategy"] for r in reads] == ["Question", "Providing Suggestions", "Self-disclosure"]
    assert all(abs(sum(r["distribution"].values()) - 1) < 1e-3 for r in reads)


def test_a_tiny_training_run_writes_weights_the_runtime_reads(tmp_path):
    """Two epochs on 60 synthetic pairs: the trainer's saved adapters and heads load in the
    runtime reader, which gives calibrated distributions and the figures of its config."""
    from empathic_agent.evals.pair_model import PairClassifier
    from empathic_agent.training.judge import combine_epitome, evaluate_epitome, train_epitome

    rows = []
    warm = ["I'm so sorry, that must hurt.", "That sounds really painful.", "My heart goes out to you."]
    cold = ["Go for a run.", "Drink water.", "Sleep more."]
    for i in range(60):
        strong = i % 2 == 0
        reply = (warm[i % 3] + (" What was the hardest part?" if i % 4 == 0 else "")) if strong else cold[i % 3]
        rows.append({"sp_id": f"p{i}", "seeker_post": f"I feel awful about thing {i}.", "response_post": reply,
                     "er_level": 2 if strong else 0, "er_rationales": warm[i % 3] if strong else "",
                     "ip_level": 0, "ip_rationales": "", "ex_level": 2 if i % 4 == 0 else 0, "ex_rationales": ""})
    path = tmp_path / "tiny.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # Hand-written pairs without rationales join train (no tagging loss for them).
    chat = tmp_path / "chat.csv"
    with open(chat, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["seeker_post", "response_post", "er_level", "ip_level", "ex_level"])
        for i in range(10):
            w.writerow([f"My day {i} was bad.", "ok. anyway, relax." if i % 2 else "Oh no, I'm so sorry.",
                        0 if i % 2 else 2, 0, 0])
    result = train_epitome(path, out=tmp_path / "w", epochs=2, extra_train=[chat], progress=False)
    pairs = result["config"]["training"]["pairs"]
    assert pairs["train"] + pairs["dev"] + pairs["test"] == 70 and result["config"]["extra_train"] == ["chat.csv"]
    assert result["config"]["name"] == "epitome-s0-chat"
    judge = combine_epitome(path, ["epitome-s0-chat"], folder=tmp_path / "w")
    assert judge["config"]["members"] == ["epitome-s0-chat"]
    model = PairClassifier("epitome", tmp_path / "w")
    probs = model.predict(["I feel awful."], ["I'm so sorry, that must hurt."])
    assert set(probs) == set(DIMENSIONS) and all(p.shape == (1, 3) for p in probs.values())
    assert all(abs(float(p.sum()) - 1) < 1e-5 for p in probs.values())
    report = evaluate_epitome(path, split="test", folder=tmp_path / "w")
    assert report["pairs"] == result["config"]["training"]["pairs"]["test"]
    assert report["emotional_reactions"]["accuracy"] == pytest.approx(
        result["report"]["test"]["emotional_reactions"]["accuracy"], abs=0.05)


def test_eval_replies_on_the_real_agent(tmp_path, capsys):
    src = tmp_path / "ctx.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["context", "reference", "strategy"])
        w.writerow(["seeker: hi\nsupporter: Hello, what's on your mind today?\nseeker: " + BOSS,
                    "That sounds really embarrassing. How did you feel afterwards?", "Question"])
        w.writerow(["I finally got the job I wanted!", "Congratulations! You must be so proud.",
                    "Affirmation and Reassurance"])
    out = tmp_path / "run"
    args = ["eval", "replies", "--source", str(src), "--out", str(out), "--temperature", "0", "--max-new-tokens", "32",
            "--no-progress"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["items"] == 2 and printed["judge"] == "epitome"
    report = json.loads((out / "report.json").read_text())
    r, g = report["summary"]["reply"], report["summary"]["gold"]
    # The embedded model gives token log-probabilities: the reference's perplexity is measured.
    assert r["reference_perplexity"] is not None and r["reference_perplexity"] > 1.0
    assert r["adherence"]["n"] == 2 and all(it["reply"]["planned_strategy"] for it in report["items"])
    assert g["relevance_message"] is not None and r["latency"]["total_s"]["p50"] > 0
    assert all(it["reply"]["text"] for it in report["items"])
    html = (out / "report.html").read_text()
    assert "lowest-rated replies" in html and "My boss yelled" in html
    # Resumed: nothing to generate, the same replies.
    assert main(args) == 0
    again = json.loads((out / "report.json").read_text())
    assert [i["reply"]["text"] for i in again["items"]] == [i["reply"]["text"] for i in report["items"]]
