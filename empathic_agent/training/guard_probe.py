"""Train the reply guard's probe (``safety/guard_probe.py``): a logistic head on a frozen small
LLM's hidden states, from the guard's training writers and ESConv supporters' replies.

Recipe (session 24, rule 65 in the README's guard section; every choice on training data only):
features are the mean of the reply tokens' hidden states at layers 6/12/18/24 after the person's
last two messages; groups are the writers (one each) and five folds of the ESConv replies;
C from a grid by leave-one-group-out log-loss at layer 18, then the layer by leave-one-writer-out
ROC AUC at that C; the threshold is the lowest whose out-of-group false blocks stay within 3 % of
the writers' good replies and 0.5 % of the ESConv replies.  ~30 min on 2 cores (the features).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.safety.guard import said_text

__all__ = ["train_guard_probe", "guard_rows", "esconv_rows"]

LAYERS: Final[tuple[int, ...]] = (6, 12, 18, 24)
C_GRID: Final[tuple[float, ...]] = (0.001, 0.003, 0.01, 0.03, 0.1)
WRITER_BUDGET: Final[float] = 0.03
ESCONV_BUDGET: Final[float] = 0.005


def guard_rows(limit: int | None = None) -> list[dict[str, Any]]:
    """The guard writers' pairs (``guard_writer*.csv``, read by the clinical trainer's
    :func:`~empathic_agent.training.clinical.guard_data` with what the person said): said, reply,
    harmful (any category), group = the writer; ``limit``: the first N pairs of each writer."""
    from empathic_agent.training.clinical import guard_data

    rows, labels, groups = guard_data(said=True)
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for r, y, g in zip(rows, labels, groups):
        seen[g] = seen.get(g, 0) + 1
        if limit is None or seen[g] <= limit:
            out.append({"group": g, "said": r.said, "reply": r.reply, "y": int(y.max() > 0)})
    return out


def esconv_rows(esconv: Path, n: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` ESConv *train* supporter replies (seeded draw) as good replies, with the seeker's last
    two messages; groups = five folds by *conversation* (not by draw, as the clinical trainer's
    :func:`~empathic_agent.training.clinical.esconv_replies` does: a conversation's replies never
    sit on both sides of a fold, so its false-block budget is out of conversation)."""
    path = Path(esconv) / "train.txt"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (the ESConv folder of the shared data)")
    cand = []
    for ci, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        seen: list[str] = []
        for t in json.loads(line)["dialog"]:
            if t["speaker"] == "usr":
                seen.append(t["text"])
            elif seen:
                cand.append({"group": f"esconv{ci % 5}", "said": said_text(seen), "reply": t["text"], "y": 0})
    random.Random(seed).shuffle(cand)
    return cand[:n]


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x, y)


def _out_of_group(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float) -> np.ndarray:
    out = np.zeros(len(y))
    for g in np.unique(groups):
        m = groups == g
        out[m] = _fit(x[~m], y[~m], c).predict_proba(x[m])[:, 1]
    return out


def choose(features: np.ndarray, y: np.ndarray, groups: np.ndarray, *, hidden: int,
           layers: Sequence[int] = LAYERS, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """The recipe's choices (C, layer, threshold) on ``features`` (the ``layers`` concatenated)."""
    from sklearn.metrics import log_loss, roc_auc_score

    writer = np.array([not g.startswith("esconv") for g in groups])
    at = {layer: features[:, k * hidden:(k + 1) * hidden] for k, layer in enumerate(layers)}
    base = 18 if 18 in at else layers[-1]
    best_c, best_ll, oof = C_GRID[0], float("inf"), np.zeros(len(y))
    for c in C_GRID:
        o = _out_of_group(at[base], y, groups, c)
        ll = float(log_loss(y, o))
        log(f"C={c}: log-loss {ll:.4f}, writers' AUC {roc_auc_score(y[writer], o[writer]):.4f}")
        if ll < best_ll:
            best_c, best_ll, oof = c, ll, o
    aucs = {base: (float(roc_auc_score(y[writer], oof[writer])), oof)}
    for layer in layers:
        if layer not in aucs and layer in (12, 18, 24):
            o = _out_of_group(at[layer], y, groups, best_c)
            aucs[layer] = (float(roc_auc_score(y[writer], o[writer])), o)
            log(f"layer {layer}: writers' AUC {aucs[layer][0]:.4f}")
    layer = max(aucs, key=lambda k: aucs[k][0])
    o = aucs[layer][1]
    ok_w, esc = writer & (y == 0), ~writer
    threshold = 1.0
    for t in np.round(np.arange(0.05, 1.0001, 0.005), 3):
        if (o[ok_w] >= t).mean() <= WRITER_BUDGET and (not esc.any() or (o[esc] >= t).mean() <= ESCONV_BUDGET):
            threshold = float(t)
            break
    return {"C": best_c, "layer": layer, "threshold": threshold, "auc_writers": aucs[layer][0],
            "oof_recall_writers": float((o[writer & (y == 1)] >= threshold).mean()),
            "oof_false_blocks_writers": float((o[ok_w] >= threshold).mean()),
            "oof_false_blocks_esconv": float((o[esc] >= threshold).mean()) if esc.any() else None,
            "x": at[layer]}


def train_guard_probe(*, esconv: Path, model_spec: str, cache_dir: Path, out: Path, esconv_n: int = 1000,
                      limit: int | None = None, progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Extract the features, choose, fit on everything, write ``out`` (npz); returns the report."""
    from empathic_agent.safety.guard_probe import GuardProbe

    rows = guard_rows(limit=limit) + esconv_rows(esconv, n=esconv_n)
    reader = GuardProbe(model_spec, cache_dir, path=None)
    reader.load()
    t0 = time.perf_counter()
    feats = []
    for k, r in enumerate(rows):
        feats.append(reader.features(r["said"], r["reply"], layers=LAYERS))
        if k % 200 == 0:
            progress(f"features {k}/{len(rows)} ({time.perf_counter() - t0:.0f} s)")
    x = np.stack(feats)
    y = np.array([r["y"] for r in rows])
    groups = np.array([r["group"] for r in rows])
    picked = choose(x, y, groups, hidden=x.shape[1] // len(LAYERS), log=progress)
    model = _fit(picked.pop("x"), y, picked["C"])
    scaler, head = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, layer=np.int64(picked["layer"]), threshold=np.float64(picked["threshold"]),
             mean=scaler.mean_.astype(np.float64), scale=scaler.scale_.astype(np.float64),
             coef=head.coef_[0].astype(np.float64), intercept=np.float64(head.intercept_[0]),
             model=np.str_(model_spec), C=np.float64(picked["C"]))
    return {"weights": str(out), "rows": len(rows), "harmful": int(y.sum()), "features_s": round(time.perf_counter() - t0, 1),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in picked.items()}}
