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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from empathic_agent.errors import InputError
from empathic_agent.safety.taxonomy import DIMENSIONS, LEVELS, SUBJECTS, level_index

if TYPE_CHECKING:
    from empathic_agent.safety.detect import CrisisDetector
    from empathic_agent.safety.protocol import SafetyStage

__all__ = ["evaluate_csv", "evaluate_risk_csv", "evaluate_conversations", "read_labelled", "read_risk_csv",
           "SHIPPED_SETS", "TEST_SET", "EVERYDAY_TEST_SET", "CONVERSATION_SETS", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent / "data"
TEST_SET = DATA_DIR / "test" / "crisis_test.csv"
#: Held out too: plain everyday chat turns (false alarms on ordinary conversation).
EVERYDAY_TEST_SET = DATA_DIR / "test" / "everyday_test.csv"
SHIPPED_SETS = {"eval": DATA_DIR / "crisis_eval.csv", "holdout": DATA_DIR / "crisis_holdout.csv"}
CONVERSATION_SETS = {"test": Path(__file__).resolve().parents[1] / "evals" / "scenarios" / "risk_emerging.yaml",
                     "dev": DATA_DIR / "conversations_dev.yaml"}
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
    rows = read_risk_csv(path)
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
    out: dict[str, Any] = {"file": str(path), "format": "risk", "n": len(rows), "risk_messages": len(risk),
                           "hard_negatives": len(neg), "layers": detector.layers}
    out["recall_any_risk"] = _rate(sum(lv(preds[i]) >= 1 for i in risk), len(risk))
    routed = [i for i in risk if level_index(rows[i]["level"]) >= 2]
    out["recall_crisis_routed"] = _rate(sum(preds[i].crisis for i in routed), len(routed))
    out["false_alarm_rate"] = _rate(sum(lv(preds[i]) >= 1 for i in neg), len(neg))
    out["false_crisis_rate"] = _rate(sum(preds[i].crisis for i in neg), len(neg))
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
        bins = np.minimum((p * 10).astype(int), 9)
        ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean() for b in range(10) if (bins == b).any())
        out[f"ece_at_least_{name}"] = round(float(ece), 4)
    return out


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
            for name, ok, want in (("crisis", None if e.crisis is None else a.crisis == e.crisis, e.crisis),
                                   ("risk", None if not e.risk else a.level in e.risk, list(e.risk)),
                                   ("route", None if not e.route else a.route in e.route, list(e.route))):
                if ok is None:
                    continue
                checks += 1
                if not ok:
                    passed = False
                    failures.append({"scenario": sc.id, "turn": i + 1, "check": name, "expected": want,
                                     "got": {"crisis": a.crisis, "level": a.level, "route": a.route},
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


def main_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1, ensure_ascii=False)

