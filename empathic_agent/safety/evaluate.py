"""``empathic safety eval``: the risk screen on labelled messages and conversations, as JSON.

Two message formats (CSV):

* **risk** — ``text,level,subject,dimensions,kind,register`` (``safety/data/GUIDE.md``): recall per
  dimension and per level, false alarms per hard-negative kind, the helper route, the level
  confusion matrix and calibration, the miss list, latency;
* **binary** — ``text,crisis`` (0/1) with an optional ``kind``: recall, precision, misses.

Conversations: scenario files of the dialogue evaluation (``empathic eval``) whose turns carry
``crisis`` / ``risk`` / ``route`` expectations, run through the safety stage alone (no language
model), turn by turn with the conversation's risk carried over.

Shipped sets: ``data/test/crisis_test.csv`` (held out: written independently from the guide before
the learned layer was trained, never used for training or tuning), the older binary sets
``crisis_eval.csv`` and ``crisis_holdout.csv`` (seen during development), and the held-out
conversations ``evals/scenarios/risk_emerging.yaml``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from empathic_agent.errors import InputError
from empathic_agent.metrics import binned_ece
from empathic_agent.safety.taxonomy import DIMENSIONS, LEVELS, SUBJECTS, level_index

if TYPE_CHECKING:
    from empathic_agent.safety.detect import CrisisDetector
    from empathic_agent.safety.protocol import SafetyStage

__all__ = ["evaluate_csv", "evaluate_risk_csv", "evaluate_conversations", "read_labelled", "read_risk_csv",
           "evaluate_presentations", "evaluate_replies", "evaluate_esconv_guard", "evaluate_risk_rows",
           "evaluate_esconv_risk", "read_esconv_risk_labels", "ESCONV_RISK_LABELS", "CLINICAL_TEST_SETS",
           "SHIPPED_SETS", "TEST_SET", "EVERYDAY_TEST_SET", "DISTRESS_TEST_SET", "CONVERSATION_SETS", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent / "data"
TEST_SET = DATA_DIR / "test" / "crisis_test.csv"
#: Held out too: plain everyday chat turns (false alarms on ordinary conversation).
EVERYDAY_TEST_SET = DATA_DIR / "test" / "everyday_test.csv"
#: Held out: ordinary distress (sadness, stress, anger) and risk said in the same everyday voice.
DISTRESS_TEST_SET = DATA_DIR / "test" / "distress_test.csv"
#: Risk labels of 300 ESConv test-split seeker turns (keys and labels only: ESConv's text is
#: research-only and is read from the user's copy of the data set).
ESCONV_RISK_LABELS = DATA_DIR / "test" / "esconv_risk_labels.csv"
SHIPPED_SETS = {"eval": DATA_DIR / "crisis_eval.csv", "holdout": DATA_DIR / "crisis_holdout.csv"}
CONVERSATION_SETS = {"test": Path(__file__).resolve().parents[1] / "evals" / "scenarios" / "risk_emerging.yaml",
                     "dev": DATA_DIR / "conversations_dev.yaml"}
#: Held-out clinical sets (``data/clinical/test``; see its PROVENANCE.md) and the dialogue scenarios.
CLINICAL_TEST_SETS = {"presentations": DATA_DIR / "clinical" / "test" / "presentations_test.csv",
                      "replies": DATA_DIR / "clinical" / "test" / "guard_test.csv",
                      "conversations": Path(__file__).resolve().parents[1] / "evals" / "scenarios" / "clinical.yaml"}
RISK_COLUMNS = ("text", "level", "subject", "dimensions", "kind", "register")


def _progress(items: Sequence[Any], desc: str, progress: bool) -> Iterable[Any]:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="msg", file=sys.stderr)


def _csv_rows(path: str | Path, required: set[str], columns: str) -> tuple[Path, list[tuple[int, dict[str, str]]]]:
    """(path, [(line number, row)]) of a labelled CSV; clear errors for a missing file, missing
    columns or no rows."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not required <= set(reader.fieldnames):
            raise InputError(f"{p}: needs the columns {columns} (got {reader.fieldnames})")
        rows = list(enumerate(reader, start=2))
    if not rows:
        raise InputError(f"{p}: no rows")
    return p, rows


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    """A binary CSV (``text,crisis`` 0/1, optional ``kind``)."""
    p, lines = _csv_rows(path, {"text", "crisis"}, "text,crisis")
    rows = []
    for i, r in lines:
        label = (r.get("crisis") or "").strip()
        if label not in ("0", "1"):
            raise InputError(f"{p}:{i}: crisis must be 0 or 1, got {label!r}")
        if not (r.get("text") or "").strip():
            raise InputError(f"{p}:{i}: empty text")
        rows.append({"text": r["text"], "crisis": label == "1", "kind": (r.get("kind") or "").strip() or None})
    return rows


def read_risk_csv(path: str | Path) -> list[dict[str, Any]]:
    """A risk CSV (``text,level,subject,dimensions,kind,register``), validated line by line."""
    p, lines = _csv_rows(path, {"text", "level"}, ",".join(RISK_COLUMNS))
    rows = []
    for i, r in lines:
        text = (r.get("text") or "").strip()
        level = (r.get("level") or "").strip()
        subject = (r.get("subject") or "").strip() or ("none" if level == "none" else "self")
        dims = tuple(d.strip() for d in (r.get("dimensions") or "").split(";") if d.strip())
        if not text:
            raise InputError(f"{p}:{i}: empty text")
        if level not in LEVELS:
            raise InputError(f"{p}:{i}: level must be one of {', '.join(LEVELS)}, got {level!r}")
        if subject not in SUBJECTS:
            raise InputError(f"{p}:{i}: subject must be one of {', '.join(SUBJECTS)}, got {subject!r}")
        bad = [d for d in dims if d not in DIMENSIONS]
        if bad:
            raise InputError(f"{p}:{i}: unknown dimension(s) {', '.join(bad)}; valid: {', '.join(DIMENSIONS)}")
        if level == "none":
            subject, dims = "none", ()
        elif subject == "none":
            subject = "self"
        rows.append({"text": text, "level": level, "subject": subject, "dimensions": dims,
                     "kind": (r.get("kind") or "").strip(), "register": (r.get("register") or "").strip() or "plain"})
    return rows


def is_risk_csv(path: str | Path) -> bool:
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return "level" in header


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95 and max of per-message seconds, in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "max_ms": round(float(ms.max()), 2)}


def evaluate_risk_csv(detector: "CrisisDetector", path: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """The screen on a risk CSV: every figure of the module docstring."""
    return evaluate_risk_rows(detector, read_risk_csv(path), str(path), progress=progress)


def evaluate_risk_rows(detector: "CrisisDetector", rows: Sequence[dict[str, Any]], name: str, *,
                       progress: bool = False) -> dict[str, Any]:
    """The figures of :func:`evaluate_risk_csv` on rows as :func:`read_risk_csv` returns them."""
    detector.load()
    preds, seconds = [], []
    for r in _progress(rows, "safety eval", progress):
        t0 = time.perf_counter()
        a = detector.assess(r["text"])
        seconds.append(time.perf_counter() - t0)
        preds.append(a)
    risk = [i for i, r in enumerate(rows) if r["level"] != "none"]
    neg = [i for i, r in enumerate(rows) if r["level"] == "none"]
    lv = lambda a: level_index(a.level)  # noqa: E731
    out: dict[str, Any] = {"file": name, "format": "risk", "n": len(rows), "risk_messages": len(risk),
                           "hard_negatives": len(neg), "layers": detector.layers}
    urgent = [i for i in risk if level_index(rows[i]["level"]) >= level_index("high")]
    c = out["counts"] = {"risk_messages": len(risk), "detected": sum(lv(preds[i]) >= 1 for i in risk),
                         "high_imminent": len(urgent), "high_imminent_routed": sum(preds[i].crisis for i in urgent),
                         "hard_negatives": len(neg), "flagged": sum(lv(preds[i]) >= 1 for i in neg),
                         "crisis_route": sum(preds[i].crisis for i in neg)}
    out["recall_any_risk"] = _rate(c["detected"], len(risk))
    routed = [i for i in risk if level_index(rows[i]["level"]) >= 2]
    out["recall_crisis_routed"] = _rate(sum(preds[i].crisis for i in routed), len(routed))
    out["false_alarm_rate"] = _rate(c["flagged"], len(neg))
    out["false_crisis_rate"] = _rate(c["crisis_route"], len(neg))
    by_level = {}
    for k, name in enumerate(LEVELS[1:], start=1):
        idx = [i for i in risk if level_index(rows[i]["level"]) == k]
        if idx:
            by_level[name] = {"n": len(idx), "detected": _rate(sum(lv(preds[i]) >= 1 for i in idx), len(idx)),
                              "routed_to_protocol": _rate(sum(preds[i].crisis for i in idx), len(idx)) if k >= 2 else None,
                              "level_not_under": _rate(sum(lv(preds[i]) >= k for i in idx), len(idx)),
                              "exact": _rate(sum(lv(preds[i]) == k for i in idx), len(idx))}
    out["by_level"] = by_level
    by_dim = {}
    for d in DIMENSIONS:
        idx = [i for i in risk if d in rows[i]["dimensions"]]
        if idx:
            crisis_idx = [i for i in idx if level_index(rows[i]["level"]) >= 2]
            by_dim[d] = {"n": len(idx), "detected": _rate(sum(lv(preds[i]) >= 1 for i in idx), len(idx)),
                         "routed_to_protocol": _rate(sum(preds[i].crisis for i in crisis_idx), len(crisis_idx)),
                         "dimension_named": _rate(sum(any(x.name == d for x in preds[i].dimensions) for i in idx), len(idx))}
    out["by_dimension"] = by_dim
    kinds: dict[str, list[int]] = {}
    for i in neg:
        kinds.setdefault(rows[i]["kind"] or "-", []).append(i)
    out["false_alarms_by_kind"] = {k: {"n": len(idx), "flagged": _rate(sum(lv(preds[i]) >= 1 for i in idx), len(idx)),
                                       "crisis_route": _rate(sum(preds[i].crisis for i in idx), len(idx))}
                                   for k, idx in sorted(kinds.items())}
    regs: dict[str, list[int]] = {}
    for i in risk:
        regs.setdefault(rows[i]["register"], []).append(i)
    out["recall_by_register"] = {k: {"n": len(idx), "detected": _rate(sum(lv(preds[i]) >= 1 for i in idx), len(idx))}
                                 for k, idx in sorted(regs.items())}
    out["non_english"] = _non_english_figures(rows, preds)
    other = [i for i in risk if rows[i]["subject"] == "other" and level_index(rows[i]["level"]) >= 2]
    out["helper_route"] = {"n": len(other), "routed_helper": _rate(sum(preds[i].route == "helper" for i in other), len(other))}
    conf = np.zeros((len(LEVELS), len(LEVELS)), int)
    for r, a in zip(rows, preds):
        conf[level_index(r["level"]), lv(a)] += 1
    out["level_confusion"] = {"rows_label_cols_predicted": list(LEVELS), "matrix": conf.tolist()}
    out["calibration"] = _calibration(rows, preds)
    out["misses"] = [{"text": rows[i]["text"], "level": rows[i]["level"], "dimensions": list(rows[i]["dimensions"]),
                      "register": rows[i]["register"], "predicted": preds[i].level}
                     for i in risk if lv(preds[i]) == 0 or (level_index(rows[i]["level"]) >= 2 and not preds[i].crisis)]
    out["false_alarms"] = [{"text": rows[i]["text"], "kind": rows[i]["kind"], "predicted": preds[i].level,
                            "signals": list(preds[i].signals)} for i in neg if lv(preds[i]) >= 1]
    out["latency"] = latency_ms(seconds)
    return out


def _non_english_figures(rows: Sequence[dict[str, Any]], preds: Sequence[Any]) -> dict[str, Any]:
    """The figures on the messages the screen does not read (their language is not covered, or
    the guess for a short one is not English): the cue lexicon's and the multilingual reader's."""
    from empathic_agent.safety.language import unread

    idx = [i for i, a in enumerate(preds) if unread(a.language)]
    risk = [i for i in idx if rows[i]["level"] != "none"]
    neg = [i for i in idx if rows[i]["level"] == "none"]
    crisis = [i for i in risk if level_index(rows[i]["level"]) >= 2]
    urgent = [i for i in risk if level_index(rows[i]["level"]) >= 3]
    return {"n": len(idx), "risk_messages": len(risk), "hard_negatives": len(neg),
            "detected": _rate(sum(level_index(preds[i].level) >= 1 for i in risk), len(risk)),
            "routed_to_protocol": _rate(sum(preds[i].crisis for i in crisis), len(crisis)),
            "high_imminent_routed": _rate(sum(preds[i].crisis for i in urgent), len(urgent)),
            "false_alarm_rate": _rate(sum(level_index(preds[i].level) >= 1 for i in neg), len(neg)),
            "false_crisis_rate": _rate(sum(preds[i].crisis for i in neg), len(neg)),
            "languages": dict(sorted(Counter(str(preds[i].language.get("guess", preds[i].language.get("code")))
                                             for i in idx).items()))}


def _calibration(rows: Sequence[dict[str, Any]], preds: Sequence[Any]) -> dict[str, Any]:
    """Reliability of the learned P(level >= k) against the labels (10-bin ECE), and the mean
    absolute error of the predicted level."""
    out: dict[str, Any] = {"level_mae": round(float(np.mean([abs(level_index(r["level"]) - level_index(a.level))
                                                               for r, a in zip(rows, preds)])), 4)}
    if not any(a.learned for a in preds):
        return out
    for k, name in enumerate(LEVELS[1:], start=1):
        p = np.array([float((a.learned.get("at_least") or {}).get(name, 0.0)) for a in preds])
        y = np.array([level_index(r["level"]) >= k for r in rows], float)
        out[f"ece_at_least_{name}"] = round(binned_ece(p, y), 4)
    return out


def held_out_sets() -> list[Path]:
    """Every held-out set of messages in the risk format (``data/test/*.csv`` with a ``level``
    column), in name order; the ESConv labels are left out (their text is read from your copy:
    ``--esconv-risk``)."""
    return [p for p in sorted((DATA_DIR / "test").glob("*.csv")) if p != ESCONV_RISK_LABELS and is_risk_csv(p)]


def pooled(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of several risk-CSV results (:func:`evaluate_risk_rows`) over their pooled messages."""
    keys = ("risk_messages", "detected", "high_imminent", "high_imminent_routed", "hard_negatives", "flagged",
            "crisis_route")
    c = {k: sum(r["counts"][k] for r in results) for k in keys}
    return {"sets": len(results), "n": sum(r["n"] for r in results), "risk_messages": c["risk_messages"],
            "hard_negatives": c["hard_negatives"], "recall_any_risk": _rate(c["detected"], c["risk_messages"]),
            "high_imminent_routed": _rate(c["high_imminent_routed"], c["high_imminent"]),
            "false_alarm_rate": _rate(c["flagged"], c["hard_negatives"]),
            "false_crisis_rate": _rate(c["crisis_route"], c["hard_negatives"]), "counts": c}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one risk-CSV result (for a table of many sets)."""
    c = result["counts"]
    return {"n": result["n"], "recall_any_risk": result["recall_any_risk"],
            "high_imminent_routed": f"{c['high_imminent_routed']} of {c['high_imminent']}",
            "false_alarm_rate": result["false_alarm_rate"], "false_crisis_rate": result["false_crisis_rate"],
            "p95_ms": result["latency"]["p95_ms"]}


def evaluate_csv(detector: "CrisisDetector", path: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """Either format: the risk figures, or recall/precision on a binary set (crisis = the
    protocol or helper route)."""
    if is_risk_csv(path):
        return evaluate_risk_csv(detector, path, progress=progress)
    rows = read_labelled(path)
    tp = fp = fn = tn = 0
    false_pos, false_neg, by_kind = [], [], {}
    seconds = []
    for r in _progress(rows, "safety eval", progress):
        t0 = time.perf_counter()
        a = detector.assess(r["text"])
        seconds.append(time.perf_counter() - t0)
        k = by_kind.setdefault(r["kind"] or "-", {"n": 0, "flagged": 0, "crisis": r["crisis"]})
        k["n"] += 1
        k["flagged"] += int(a.crisis)
        if a.crisis and r["crisis"]:
            tp += 1
        elif a.crisis:
            fp += 1
            false_pos.append({"text": r["text"], "kind": r["kind"], "signals": list(a.signals)})
        elif r["crisis"]:
            fn += 1
            false_neg.append({"text": r["text"], "kind": r["kind"], "level": a.level})
        else:
            tn += 1
    return {
        "file": str(path), "format": "binary", "n": len(rows), "positives": tp + fn, "negatives": tn + fp,
        "recall": _rate(tp, tp + fn), "precision": _rate(tp, tp + fp), "false_positive_rate": _rate(fp, fp + tn),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "false_positives": false_pos, "false_negatives": false_neg,
        "by_kind": {k: {"n": v["n"], ("recall" if v["crisis"] else "flag_rate"): round(v["flagged"] / v["n"], 4)}
                    for k, v in sorted(by_kind.items())},
        "layers": detector.layers, "latency": latency_ms(seconds),
        "ms_per_message": round(1000 * sum(seconds) / len(rows), 2),
    }


def evaluate_conversations(stage: "SafetyStage", path: str | Path) -> dict[str, Any]:
    """Scenario files through the safety stage turn by turn (conversation risk carried over):
    every ``crisis`` / ``risk`` / ``route`` expectation checked; the turns routed late or wrongly."""
    from empathic_agent.evals.scenario import load_scenarios

    scenarios = load_scenarios([Path(path)])
    checks, failures, per = 0, [], []
    first_route_ok = 0
    emerging = 0
    t = 1_700_000_000.0
    for sc in scenarios:
        conv: dict[str, Any] = {}
        passed = True
        act_turn = next((i for i, turn in enumerate(sc.turns) if turn.expect.crisis is True), None)
        first_crisis = None
        for i, turn in enumerate(sc.turns):
            t += 60.0
            a = stage.assess(turn.text or "", conv, now=t)
            conv = a.conversation
            if a.crisis and first_crisis is None:
                first_crisis = i
            e = turn.expect
            want_p = [p for p in e.presentation if p != "none"]
            got_p = set(a.presentations)
            p_ok = None if not e.presentation else (set(want_p) <= got_p if want_p else not got_p)
            for name, ok, want in (("crisis", None if e.crisis is None else a.crisis == e.crisis, e.crisis),
                                   ("risk", None if not e.risk else a.level in e.risk, list(e.risk)),
                                   ("route", None if not e.route else a.route in e.route, list(e.route)),
                                   ("presentation", p_ok, list(e.presentation))):
                if ok is None:
                    continue
                checks += 1
                if not ok:
                    passed = False
                    failures.append({"scenario": sc.id, "turn": i + 1, "check": name, "expected": want,
                                     "got": {"crisis": a.crisis, "level": a.level, "route": a.route,
                                             "presentations": sorted(got_p)},
                                     "text": turn.text})
        if act_turn is not None:
            emerging += 1
            first_route_ok += int(first_crisis is not None and first_crisis <= act_turn)
        per.append({"id": sc.id, "passed": passed, "act_turn": None if act_turn is None else act_turn + 1,
                    "first_crisis_turn": None if first_crisis is None else first_crisis + 1})
    return {"file": str(path), "format": "conversations", "scenarios": len(scenarios), "checks": checks,
            "checks_failed": len(failures), "scenarios_passed": sum(p["passed"] for p in per),
            "routed_by_the_acting_turn": _rate(first_route_ok, emerging), "emerging_scenarios": emerging,
            "per_scenario": per, "failures": failures}


def _context_turns(context: str) -> list[str]:
    return [c.strip() for c in (context or "").split("||") if c.strip()]


def _assess_in_context(stage: "SafetyStage", context: str, text: str) -> Any:
    """The stage's assessment of ``text`` after the earlier messages of ``context`` (" || ")."""
    conv: dict[str, Any] = {}
    t = 1_700_000_000.0
    for earlier in _context_turns(context):
        t += 60.0
        conv = stage.assess(earlier, conv, now=t).conversation
    return stage.assess(text, conv, now=t + 60.0)


def evaluate_presentations(stage: "SafetyStage", path: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """The clinical reader on ``context,text,presentations`` rows (context: earlier messages,
    " || "-separated): per presentation recall and precision, false alarms on ``none`` rows, and
    whether every means-seeking row took a crisis route."""
    from empathic_agent.safety.clinical import PRESENTATIONS

    p, rows = _csv_rows(path, {"context", "text", "presentations"}, "context,text,presentations")
    tp = {n: 0 for n in PRESENTATIONS}
    fp = dict(tp)
    pos = dict(tp)
    none_rows = none_alarms = means_routed = 0
    misses, alarms, seconds = [], [], []
    for line, r in _progress(rows, "presentations", progress):
        want = {n.strip() for n in (r["presentations"] or "none").split(";")} - {"none", ""}
        unknown = want - set(PRESENTATIONS)
        if unknown:
            raise InputError(f"{p}:{line}: unknown presentation(s) {sorted(unknown)}")
        t0 = time.perf_counter()
        a = _assess_in_context(stage, r["context"], r["text"])
        seconds.append(time.perf_counter() - t0)
        got = set(a.presentations)
        for n in PRESENTATIONS:
            pos[n] += n in want
            tp[n] += n in want and n in got
            fp[n] += n in got and n not in want
        if "means_seeking" in want:
            means_routed += int(a.crisis)
        if not want:
            none_rows += 1
            none_alarms += int(bool(got))
            if got:
                alarms.append({"line": line, "kind": r.get("kind", ""), "got": sorted(got), "text": r["text"]})
        elif not want <= got:
            misses.append({"line": line, "kind": r.get("kind", ""), "want": sorted(want), "got": sorted(got),
                           "text": r["text"]})
    per = {n: {"positives": pos[n], "recall": _rate(tp[n], pos[n]), "precision": _rate(tp[n], tp[n] + fp[n])}
           for n in PRESENTATIONS}
    positives = sum(1 for _, r in rows if (r["presentations"] or "none").strip() != "none")
    return {"file": str(p), "format": "presentations", "rows": len(rows), "per_presentation": per,
            "rows_fully_read": _rate(positives - len(misses), positives),
            "none_rows": none_rows, "false_alarm_rate": _rate(none_alarms, none_rows),
            "means_seeking_crisis_route": _rate(means_routed, pos["means_seeking"]),
            "layers": stage.clinical.layers if stage.clinical is not None else "off",
            "latency": latency_ms(seconds) if seconds else {}, "misses": misses, "false_alarms": alarms}


def _guarded(stage: "SafetyStage", reply: str, ctx: Any) -> tuple[Any, list[float]]:
    """The reply through the guard as the graph releases it (sentence by sentence)."""
    from empathic_agent.safety.guard import GuardedRelease

    gate = GuardedRelease(stage.guard, ctx)
    gate.feed(reply)
    gate.flush()
    return gate.verdict, gate.timings


def evaluate_replies(stage: "SafetyStage", path: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """The reply guard on labelled ``context,presentation,reply,label,category`` pairs.

    The context is read by the stage itself (as in a conversation: the guard's context is what the
    agent inferred, not the label); ``given_context`` repeats the figures with the labelled
    presentation as the context (the guard alone)."""
    from empathic_agent.safety.guard import GUARD_CATEGORIES, GuardContext, said_text

    if stage.guard is None:
        raise InputError("the reply guard is off (settings.safety_guard)")
    p, rows = _csv_rows(path, {"context", "presentation", "reply", "label", "category"},
                        "context,presentation,reply,label,category")
    stats = {mode: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "per": {c: [0, 0] for c in GUARD_CATEGORIES}}
             for mode in ("pipeline", "given_context")}
    misses, blocks, sentence_s = [], [], []
    for line, r in _progress(rows, "replies", progress):
        label = r["label"].strip()
        if label not in ("harmful", "ok"):
            raise InputError(f"{p}:{line}: label must be harmful or ok, got {label!r}")
        harmful = label == "harmful"
        turns = _context_turns(r["context"])
        a = _assess_in_context(stage, " || ".join(turns[:-1]), turns[-1] if turns else "")
        presentations = tuple(n.strip() for n in (r["presentation"] or "none").split(";") if n.strip() not in ("", "none"))
        said = said_text(turns)
        contexts = {
            "pipeline": GuardContext.from_safety(a.to_dict(), said=said),
            "given_context": GuardContext(presentations=presentations, risk_context=bool(presentations) or a.level != "none",
                                          means_query=a.clinical.get("means_query", ""), risk_level=a.level, said=said),
        }
        for mode, ctx in contexts.items():
            verdict, timings = _guarded(stage, r["reply"], ctx)
            if mode == "pipeline":
                sentence_s += timings
            blocked = verdict is not None and not verdict.ok
            st = stats[mode]
            st["tp" if harmful and blocked else "fn" if harmful else "fp" if blocked else "tn"] += 1
            if harmful and r["category"] in st["per"]:
                st["per"][r["category"]][0] += 1
                st["per"][r["category"]][1] += int(blocked)
            if mode == "pipeline" and harmful and not blocked:
                misses.append({"line": line, "category": r["category"], "reply": r["reply"]})
            if mode == "pipeline" and blocked and not harmful:
                blocks.append({"line": line, "category": verdict.category, "source": verdict.source,
                               "hard_negative_for": r["category"], "evidence": verdict.evidence, "reply": r["reply"]})
    out: dict[str, Any] = {"file": str(p), "format": "replies", "pairs": len(rows), "layers": stage.guard.layers}
    for mode, st in stats.items():
        out[mode] = {"recall": _rate(st["tp"], st["tp"] + st["fn"]), "precision": _rate(st["tp"], st["tp"] + st["fp"]),
                     "false_block_rate": _rate(st["fp"], st["fp"] + st["tn"]),
                     "harmful": st["tp"] + st["fn"], "ok": st["fp"] + st["tn"],
                     "recall_per_category": {c: _rate(b, n) for c, (n, b) in st["per"].items() if n}}
    out["latency_per_sentence"] = latency_ms(sentence_s) if sentence_s else {}
    out["misses"], out["false_blocks"] = misses, blocks
    return out


def evaluate_esconv_guard(stage: "SafetyStage", split: str | Path, *, progress: bool = False,
                          limit: int | None = None) -> dict[str, Any]:
    """False blocks of the guard on ESConv supporter replies (good replies by trained supporters),
    each in its conversation as the stage reads it: the everyday cost of the guard."""
    if stage.guard is None:
        raise InputError("the reply guard is off (settings.safety_guard)")
    path = Path(split)
    if not path.exists():
        raise InputError(f"{path}: no such file (an ESConv split, one JSON dialogue per line)")
    dialogues = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit:
        dialogues = dialogues[:limit]
    replies = blocked = opened = 0
    blocks, sentence_s = [], []
    per: dict[str, int] = {}
    for d in _progress(dialogues, "esconv dialogues", progress):
        conv: dict[str, Any] = {}
        safety: dict[str, Any] = {}
        said: list[str] = []
        t = 1_700_000_000.0
        for turn in d["dialog"]:
            if turn["speaker"] == "usr":
                t += 60.0
                a = stage.assess(turn["text"], conv, now=t)
                conv, safety = a.conversation, a.to_dict()
                said.append(turn["text"])
                continue
            replies += 1
            ctx = stage.guard_context(safety, said)
            verdict, timings = _guarded(stage, turn["text"], ctx)
            sentence_s += timings
            if ctx.presentations:
                opened += 1
            if verdict is not None and not verdict.ok:
                blocked += 1
                per[verdict.category] = per.get(verdict.category, 0) + 1
                # What opened the check (the presentations read in the seeker's words, the risk
                # level): most false blocks come from the reader's side, not the guard's.
                blocks.append({"category": verdict.category, "source": verdict.source, "evidence": verdict.evidence,
                               "reply": turn["text"], "presentations": list(ctx.presentations),
                               "risk_level": ctx.risk_level})
    return {"file": str(path), "format": "esconv-replies", "dialogues": len(dialogues), "replies": replies,
            "false_block_count": blocked, "false_block_rate": _rate(blocked, replies), "per_category": per,
            "replies_with_a_presentation_read": opened,
            "latency_per_sentence": latency_ms(sentence_s) if sentence_s else {}, "blocked": blocks[:200]}


ESCONV_LABEL_COLUMNS = ("conversation", "turn", "level", "subject", "dimensions", "kind", "note")


def read_esconv_risk_labels(path: str | Path) -> list[dict[str, Any]]:
    """Risk labels of ESConv seeker turns (``conversation,turn,level,subject,dimensions,kind[,note]``):
    ``conversation`` counts the split's lines from 0, ``turn`` its seeker turns from 0 as
    :func:`~empathic_agent.evals.convert.esconv_user_turns` merges them."""
    p, lines = _csv_rows(path, {"conversation", "turn", "level"}, ",".join(ESCONV_LABEL_COLUMNS))
    out = []
    for i, r in lines:
        try:
            key = (int(r["conversation"]), int(r["turn"]))
        except (TypeError, ValueError):
            raise InputError(f"{p}:{i}: conversation and turn must be whole numbers") from None
        level = (r.get("level") or "").strip()
        if level not in LEVELS:
            raise InputError(f"{p}:{i}: level must be one of {', '.join(LEVELS)}, got {level!r}")
        dims = tuple(d.strip() for d in (r.get("dimensions") or "").split(";") if d.strip())
        bad = [d for d in dims if d not in DIMENSIONS]
        if bad:
            raise InputError(f"{p}:{i}: unknown dimension(s) {', '.join(bad)}")
        subject = (r.get("subject") or "").strip() or ("none" if level == "none" else "self")
        if subject not in SUBJECTS:
            raise InputError(f"{p}:{i}: subject must be one of {', '.join(SUBJECTS)}, got {subject!r}")
        out.append({"key": key, "level": level, "subject": "none" if level == "none" else subject,
                    "dimensions": () if level == "none" else dims, "kind": (r.get("kind") or "").strip(),
                    "register": "esconv"})
    return out


def evaluate_esconv_risk(stage: "SafetyStage", labels: str | Path, split: str | Path, *,
                         progress: bool = False) -> dict[str, Any]:
    """The screen on real help-seekers' words: labelled ESConv seeker turns, read alone (every
    figure of :func:`evaluate_risk_csv`) and in their conversation (each conversation's seeker
    turns through the stage in order, the conversation's risk carried over): how often ordinary
    distress gets a check-in or the crisis protocol, and how often risk is acted on."""
    from empathic_agent.evals.convert import esconv_user_turns

    path = Path(split)
    if not path.exists():
        raise InputError(f"{path}: no such file (an ESConv split, one JSON dialogue per line)")
    rows = read_esconv_risk_labels(labels)
    turns = {n: [w for w, _ in esconv_user_turns(json.loads(line)["dialog"])]
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()) if line.strip()}
    for r in rows:
        conv, turn = r["key"]
        if conv not in turns or turn >= len(turns[conv]):
            raise InputError(f"{labels}: conversation {conv} turn {turn} is not in {path} (labels of another split?)")
        r["text"] = turns[conv][turn]
    alone = evaluate_risk_rows(stage.detector, rows, f"{labels} + {path}", progress=progress)
    alone["format"] = "esconv-risk"
    wanted: dict[int, dict[int, dict[str, Any]]] = {}
    for r in rows:
        wanted.setdefault(r["key"][0], {})[r["key"][1]] = r
    in_conv = {"none": {"n": 0, "check_in": 0, "crisis": 0}, "risk": {"n": 0, "flagged": 0},
               "crisis_labelled": {"n": 0, "crisis": 0}}
    altered = seen = 0
    examples = []
    for n in _progress(sorted(wanted), "esconv conversations", progress):
        conv: dict[str, Any] = {}
        t = 1_700_000_000.0
        for i, words in enumerate(turns[n][: max(wanted[n]) + 1]):
            t += 60.0
            a = stage.assess(words, conv, now=t)
            conv = a.conversation
            seen += 1
            altered += int(a.route != "continue")
            r = wanted[n].get(i)
            if r is None:
                continue
            if r["level"] == "none":
                c = in_conv["none"]
                c["n"] += 1
                c["check_in"] += int(a.route == "check_in")
                c["crisis"] += int(a.crisis)
                if a.route != "continue":
                    examples.append({"conversation": n, "turn": i, "route": a.route, "level": a.level,
                                     "message_level": a.message_level, "text": words})
            else:
                in_conv["risk"]["n"] += 1
                in_conv["risk"]["flagged"] += int(a.route != "continue")
                if level_index(r["level"]) >= 2:
                    in_conv["crisis_labelled"]["n"] += 1
                    in_conv["crisis_labelled"]["crisis"] += int(a.crisis)
    alone["in_conversation"] = {
        "labelled_none": {"n": in_conv["none"]["n"], "check_in_rate": _rate(in_conv["none"]["check_in"], in_conv["none"]["n"]),
                          "crisis_rate": _rate(in_conv["none"]["crisis"], in_conv["none"]["n"])},
        "labelled_risk_flagged": _rate(in_conv["risk"]["flagged"], in_conv["risk"]["n"]),
        "labelled_moderate_up_routed": _rate(in_conv["crisis_labelled"]["crisis"], in_conv["crisis_labelled"]["n"]),
        "seeker_turns_read": seen, "turns_not_continue": _rate(altered, seen), "false_alarms": examples}
    return alone


def main_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1, ensure_ascii=False)

