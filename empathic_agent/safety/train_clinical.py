"""Training of the clinical reader's and the reply guard's learned heads (``empathic safety
train-clinical``).

Data (all hand-written for this project from ``safety/data/clinical/GUIDE.md``; the held-out test
sets under ``clinical/test/`` are never read here):

* presentations — ``clinical/train/writer*.csv`` (three writers), plus the everyday turns of the
  risk screen's training writers (``safety/data/train``, level ``none``) as extra negatives;
* guard — ``clinical/train/guard_writer*.csv`` (two writers), plus supporter replies of ESConv's
  *train* split (``--esconv``, research-only licence) as extra good replies.

Model: the frozen MiniLM sentence embedding (384-d) and one class-balanced, L2-regularised logistic
head per class.  Model selection is writer-grouped: each writer's rows are scored by heads trained
on the other writers; a class's threshold is the lowest one whose out-of-fold false-positive rate
on the negatives stays under a target: for the reader 2 % of the other messages; for the guard
3 % of the written good replies in the same risky contexts (used where the category's context is
present) and 0.2 % of ESConv's ordinary supporter replies (the "open" threshold, used everywhere
else).
The heads are then refitted on all writers and saved with the thresholds.
"""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from empathic_agent.safety.clinical import PRESENTATIONS
from empathic_agent.safety.clinical_model import CONFIG_FILE, FORMAT, WEIGHTS_DIR
from empathic_agent.safety.guard import GUARD_CATEGORIES

__all__ = ["train_clinical", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent / "data"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def presentation_data(data_dir: Path = DATA_DIR) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, (n, k) labels over :data:`PRESENTATIONS` and each row's writer (group)."""
    texts, labels, groups = [], [], []
    for path in sorted((data_dir / "clinical" / "train").glob("writer*.csv")):
        for r in _rows(path):
            names = {n.strip() for n in (r.get("presentations") or "none").split(";")}
            texts.append(r["text"])
            labels.append([1.0 if p in names else 0.0 for p in PRESENTATIONS])
            groups.append(path.stem)
    # Everyday chat of the risk screen's writers: more plain negatives (grouped by their writer).
    for path in sorted((data_dir / "train").glob("writer*.csv")):
        for r in _rows(path):
            if r.get("level") == "none":
                texts.append(r["text"])
                labels.append([0.0] * len(PRESENTATIONS))
                groups.append(f"risk-{path.stem}")
    return texts, np.asarray(labels, dtype=np.float32), groups


def guard_data(data_dir: Path = DATA_DIR, *, esconv: Path | None = None, esconv_n: int = 3000,
               seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Replies, (n, k) labels over :data:`GUARD_CATEGORIES` and groups."""
    texts, labels, groups = [], [], []
    for path in sorted((data_dir / "clinical" / "train").glob("guard_writer*.csv")):
        for r in _rows(path):
            harmful = r["label"].strip() == "harmful"
            texts.append(r["reply"])
            labels.append([1.0 if harmful and r["category"].strip() == c else 0.0 for c in GUARD_CATEGORIES])
            groups.append(path.stem)
    if esconv is not None:
        replies = esconv_replies(esconv / "train.txt")
        random.Random(seed).shuffle(replies)
        for i, t in enumerate(replies[:esconv_n]):
            texts.append(t)
            labels.append([0.0] * len(GUARD_CATEGORIES))
            groups.append(f"esconv{i % 2}")
    return texts, np.asarray(labels, dtype=np.float32), groups


def esconv_replies(path: Path) -> list[str]:
    """Supporter turns of an ESConv split (one JSON dialogue per line)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                for turn in json.loads(line)["dialog"]:
                    if turn["speaker"] == "sys" and len(turn["text"].split()) >= 3:
                        out.append(turn["text"].strip())
    return out


def _fit(x: np.ndarray, y: np.ndarray, *, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One balanced logistic regression per column of ``y``: (k, d) weights, (k,) biases."""
    from sklearn.linear_model import LogisticRegression

    w = np.zeros((y.shape[1], x.shape[1]), dtype=np.float32)
    b = np.full(y.shape[1], -10.0, dtype=np.float32)
    for k in range(y.shape[1]):
        if y[:, k].sum() < 2:
            continue
        m = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        m.fit(x, y[:, k])
        w[k], b[k] = m.coef_[0], m.intercept_[0]
    return w, b


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _oof(x: np.ndarray, y: np.ndarray, groups: Sequence[str], folds: Sequence[Sequence[str]], c: float) -> np.ndarray:
    """Out-of-fold probabilities: each fold's rows scored by heads fitted on the others."""
    p = np.zeros_like(y)
    g = np.asarray(groups)
    for fold in folds:
        test = np.isin(g, list(fold))
        w, b = _fit(x[~test], y[~test], c=c)
        p[test] = _sigmoid(x[test] @ w.T + b)
    return p


def _thresholds(p: np.ndarray, y: np.ndarray, names: Sequence[str], max_fpr: float,
                negatives: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Per class: the lowest threshold keeping the out-of-fold FPR on negatives <= ``max_fpr``
    (``negatives``: a mask of rows that count as negatives; default: every row without the class)."""
    th, report = {}, {}
    for k, name in enumerate(names):
        pos = y[:, k] == 1
        neg = (~pos) if negatives is None else (negatives & ~pos)
        if pos.sum() == 0 or neg.sum() == 0:
            th[name] = 1.01
            continue
        scores = np.sort(p[neg, k])[::-1]
        allowed = int(np.floor(max_fpr * len(scores)))
        t = float(scores[allowed]) + 1e-6 if allowed < len(scores) else 0.5
        t = max(t, 0.5)
        th[name] = round(t, 4)
        report[name] = {"threshold": th[name], "oof_recall": round(float((p[pos, k] >= t).mean()), 4),
                        "oof_fpr": round(float((p[neg, k] >= t).mean()), 4), "positives": int(pos.sum())}
    return th, report


def train_clinical(*, esconv: Path | None = None, out_dir: Path = WEIGHTS_DIR, max_fpr_reader: float = 0.02,
                   max_fpr_guard: float = 0.03, max_fpr_open: float = 0.002, c: float = 1.0, progress: Any = print) -> dict[str, Any]:
    """Train both heads, select thresholds writer-grouped, save, return the report."""
    from empathic_agent.memory.embedder import MiniLMEmbedder
    from empathic_agent.settings import Settings

    t0 = time.time()
    emb = MiniLMEmbedder.from_settings(Settings())
    emb.load()
    report: dict[str, Any] = {"format": FORMAT, "backbone": "all-MiniLM-L6-v2 (frozen)", "c": c}

    texts, y, groups = presentation_data()
    if not texts or y[:, :].sum() == 0:
        raise FileNotFoundError("no presentation training data under safety/data/clinical/train (writer*.csv)")
    progress(f"clinical: embedding {len(texts)} messages")
    x = emb.embed(texts)
    writers = sorted({g for g in groups if not g.startswith("risk-")})
    risk_writers = sorted({g for g in groups if g.startswith("risk-")})
    folds = [[w] + risk_writers[i::len(writers)] for i, w in enumerate(writers)]
    p = _oof(x, y, groups, folds, c)
    th, rep = _thresholds(p, y, PRESENTATIONS, max_fpr_reader)
    w, b = _fit(x, y, c=c)
    np.savez_compressed(out_dir / "clinical_heads.npz", w=w, b=b)
    report["clinical"] = {"names": list(PRESENTATIONS), "thresholds": th, "selection": rep,
                          "rows": len(texts), "writers": writers, "max_fpr": max_fpr_reader}
    progress(f"clinical: {json.dumps(rep)}")

    texts, y, groups = guard_data(esconv=esconv)
    progress(f"guard: embedding {len(texts)} replies")
    x = emb.embed(texts)
    writers = sorted({g for g in groups if g.startswith("guard_")})
    extra = sorted({g for g in groups if not g.startswith("guard_")})
    folds = [[w] + extra[i::len(writers)] for i, w in enumerate(writers)]
    p = _oof(x, y, groups, folds, c)
    g = np.asarray(groups)
    written_ok = (y.sum(axis=1) == 0) & np.char.startswith(g.astype(str), "guard_")
    esconv_ok = (y.sum(axis=1) == 0) & ~np.char.startswith(g.astype(str), "guard_")
    # Where the category applies (its context is present): negatives are the written good replies
    # in the same risky contexts.  Everywhere else ("open"): ESConv's ordinary supporter replies, at
    # a much stricter rate (the everyday cost of the guard).
    th, rep = _thresholds(p, y, GUARD_CATEGORIES, max_fpr_guard, negatives=written_ok)
    open_th, open_rep = (_thresholds(p, y, GUARD_CATEGORIES, max_fpr_open, negatives=esconv_ok)
                         if esconv_ok.any() else ({}, {}))
    open_th = {k: max(v, th.get(k, 0.5)) for k, v in open_th.items()}
    w, b = _fit(x, y, c=c)
    np.savez_compressed(out_dir / "guard_heads.npz", w=w, b=b)
    report["guard"] = {"names": list(GUARD_CATEGORIES), "thresholds": th, "open_thresholds": open_th,
                       "selection": rep, "open_selection": open_rep, "rows": len(texts),
                       "writers": writers, "esconv_replies": int(esconv_ok.sum()),
                       "max_fpr": max_fpr_guard, "max_fpr_open": max_fpr_open}
    progress(f"guard: {json.dumps(rep)}")
    report["seconds"] = round(time.time() - t0, 1)
    (out_dir / CONFIG_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
