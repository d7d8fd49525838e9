"""``empathic safety eval``: the crisis detector on labelled messages (CSV ``text,crisis`` with 0/1,
optionally ``kind``), as JSON: recall, precision, false positives and negatives, per-kind recall.

Shipped sets (``safety/data``): ``crisis_eval.csv`` (138 messages: explicit, implicit, self-harm,
abuse, someone else at risk; idioms, negations, topic mentions, recovery stories, sadness without
danger) and ``crisis_holdout.csv`` (61 messages written later, after the detector was first frozen;
see the model card in ``safety/data/README.md`` for how both were used).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empathic_agent.errors import InputError

if TYPE_CHECKING:
    from empathic_agent.safety.detect import CrisisDetector

__all__ = ["evaluate_csv", "read_labelled", "SHIPPED_SETS", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_SETS = {"eval": DATA_DIR / "crisis_eval.csv", "holdout": DATA_DIR / "crisis_holdout.csv"}


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"text", "crisis"} <= set(reader.fieldnames):
            raise InputError(f"{p}: needs the columns text,crisis (got {reader.fieldnames})")
        rows = []
        for i, r in enumerate(reader, start=2):
            label = (r.get("crisis") or "").strip()
            if label not in ("0", "1"):
                raise InputError(f"{p}:{i}: crisis must be 0 or 1, got {label!r}")
            if not (r.get("text") or "").strip():
                raise InputError(f"{p}:{i}: empty text")
            rows.append({"text": r["text"], "crisis": label == "1", "kind": (r.get("kind") or "").strip() or None})
    if not rows:
        raise InputError(f"{p}: no rows")
    return rows


def evaluate_csv(detector: "CrisisDetector", path: str | Path, *, progress: bool = False) -> dict[str, Any]:
    rows = read_labelled(path)
    tp = fp = fn = tn = 0
    false_pos, false_neg, by_kind = [], [], {}
    t0 = time.perf_counter()
    iterator = rows
    if progress:
        try:
            from tqdm import tqdm

            iterator = tqdm(rows, desc="safety eval", unit="msg", file=sys.stderr)
        except ImportError:  # pragma: no cover
            pass
    for r in iterator:
        a = detector.assess(r["text"])
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
            false_neg.append({"text": r["text"], "kind": r["kind"]})
        else:
            tn += 1
    seconds = time.perf_counter() - t0
    return {
        "file": str(path), "n": len(rows), "positives": tp + fn, "negatives": tn + fp,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "false_positive_rate": round(fp / (fp + tn), 4) if fp + tn else None,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "false_positives": false_pos, "false_negatives": false_neg,
        "by_kind": {k: {"n": v["n"], ("recall" if v["crisis"] else "flag_rate"): round(v["flagged"] / v["n"], 4)}
                    for k, v in sorted(by_kind.items())},
        "layers": "patterns+semantic" if detector.embedder is not None else "patterns",
        "ms_per_message": round(1000 * seconds / len(rows), 2),
    }


def main_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1, ensure_ascii=False)
