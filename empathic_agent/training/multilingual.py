"""Training of the multilingual risk reader's head (``empathic safety train-multilingual``).

Data: the risk screen's training writers (``safety/data/train/*.csv``, all hand-written from
``safety/data/GUIDE.md``): their English messages teach the head what risk looks like in the shared
multilingual space, their non-English messages (writers 1-8 and the multilingual writers 29-31)
how it looks in other languages.  The development and held-out sets are never read here.

Model: the frozen multilingual-e5-small embedding (:class:`~empathic_agent.memory.embedder.E5Embedder`)
standardised, and one class-balanced MLP per output (P(level >= low), P(level >= moderate),
P(level >= imminent), and on risk rows only P(subject = other)): one
hidden layer of :data:`HIDDEN` ReLU units, L2 :data:`ALPHA`, adam, :data:`EPOCHS` epochs, seed 0.
It replaced a logistic regression (C = 1) on 2026-12-06 by a rule written first: out of fold at
the same 5 % budget the MLP recalled 0.785 of P(>= moderate) against 0.550 (C from 0.1 to 10 gave
0.550-0.555).  Non-English rows weigh :data:`NON_ENGLISH_WEIGHT` times more: they are a few
hundred among thousands, and they are the rows the head is for.

Thresholds: leave-one-writer-out over the writers with non-English rows (the English-only writers
always train); each output's threshold is the lowest at which the out-of-fold false alarms stay
within a budget: :data:`FALSE_ALARM_BUDGET` (2 %) for ``low`` and ``moderate``, on non-English
``none`` rows; :data:`EMERGENCY_BUDGET` (1 %) for ``imminent``, on every non-English row labelled
below imminent (a false emergency is one said to a person at lower risk as much as to one at
none); for ``other`` (someone else at risk; trained on risk rows only) :data:`FALSE_ALARM_BUDGET`
of the non-English rows of the person's own risk (the helper route said to a person at risk
themselves).  ``keep_existing`` keeps the outputs a head in ``out_dir`` already has (layers and
thresholds) and trains only the missing ones: the third and fourth outputs were added that way to
the shipped head, whose first two a retrain on another CPU does not reproduce bit for bit.  The
standardisation is folded into the first layer of the saved weights, so the reader reads the raw
embedding.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder

__all__ = ["train_multilingual", "predict", "FALSE_ALARM_BUDGET", "EMERGENCY_BUDGET", "NON_ENGLISH_WEIGHT"]

#: Out-of-fold false alarms allowed on the non-English hard negatives, per output.  2 %: chosen on
#: development data by a rule written first (5 %, 4 % and 3 % let too many development hard
#: negatives through with the MLP head; README).
FALSE_ALARM_BUDGET: Final[float] = 0.02
#: The same for P(>= imminent), on every row below imminent.  1 %: at 2 % the development set had
#: four messages below imminent read as emergencies, one more than the rule written first allowed
#: (README, "Other languages").
EMERGENCY_BUDGET: Final[float] = 0.01
#: Sample weight of a non-English row relative to an English one.
NON_ENGLISH_WEIGHT: Final[float] = 3.0
#: The MLP head (fixed by the rule that chose it; not tuned).
HIDDEN: Final[int] = 256
ALPHA: Final[float] = 1e-3
EPOCHS: Final[int] = 200
SEED: Final[int] = 0
LEVELS: Final[tuple[str, ...]] = ("none", "low", "moderate", "high", "imminent")


def _non_english(texts: Sequence[str]) -> np.ndarray:
    """Rows the reader would read: the language is not covered, or the guess is not English."""
    from empathic_agent.safety.language import detect_language, unread

    return np.array([unread(detect_language(t)) for t in texts], bool)


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """A class-balanced MLP on standardised inputs; returns its layers with the standardisation
    folded into the first (``w1`` (d, h), ``b1`` (h,), ``w2`` (h,), ``b2`` ())."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    balance = np.where(y, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    with warnings.catch_warnings():
        # A fixed epoch budget, chosen out of fold: the last epochs still move the loss a little.
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=ALPHA, max_iter=EPOCHS,
                            random_state=SEED).fit((x - mu) / sd, y, sample_weight=w * balance)
    w1 = mlp.coefs_[0] / sd[:, None]
    b1 = mlp.intercepts_[0] - (mu / sd) @ mlp.coefs_[0]
    return {"w1": w1.astype(np.float32), "b1": b1.astype(np.float32),
            "w2": mlp.coefs_[1][:, 0].astype(np.float32), "b2": np.float32(mlp.intercepts_[1][0])}


def predict(head: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """P(output) of embeddings ``x`` (n, d) under one fitted head."""
    h = np.maximum(x @ head["w1"] + head["b1"], 0.0)
    return 1.0 / (1.0 + np.exp(-np.clip(h @ head["w2"] + head["b2"], -60.0, 60.0)))


def _threshold(p: np.ndarray, budget: float) -> float:
    """The lowest threshold on a 0.001 grid at which at most ``budget`` of the scores ``p`` reach it."""
    if not len(p):
        raise ConfigError("no non-English hard negatives to choose the threshold on")
    allowed = int(math.floor(budget * len(p)))
    ranked = np.sort(p)[::-1]
    if allowed >= len(ranked):
        return 0.001
    # Strictly above the (allowed+1)-th highest score: at most ``allowed`` negatives reach it.
    return round(min(1.0, math.floor(float(ranked[allowed]) * 1000) / 1000 + 0.001), 3)


def _embed_cached(embedder: "Embedder", texts: Sequence[str], cache_dir: str | Path | None,
                  progress: bool) -> np.ndarray:
    """Embeddings of ``texts``, reusing those of earlier runs (``cache_dir/multilingual-embeddings.npz``,
    keyed by the text's hash and the embedder's name): embedding is nearly all of a run's time."""
    import hashlib

    keys = [hashlib.sha1(f"{embedder.name}\n{t}".encode()).hexdigest() for t in texts]
    path = Path(cache_dir) / "multilingual-embeddings.npz" if cache_dir else None
    known: dict[str, np.ndarray] = {}
    if path is not None and path.exists():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["vectors"]))
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if progress:
        print(f"multilingual: embedding {len(missing)} messages ({len(texts) - len(missing)} cached)", file=sys.stderr)
    if missing:
        vecs = embedder.embed([t for _, t in missing])
        known.update({k: v for (k, _), v in zip(missing, vecs)})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
            tmp.replace(path)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def _existing(out: Path, embedder: "Embedder") -> tuple[dict[str, tuple[dict[str, np.ndarray], float]], dict[str, Any]]:
    """The outputs of the head already in ``out`` — each output's layers and threshold — and its
    config.  Nothing there: nothing kept."""
    from empathic_agent.safety.multilingual import CONFIG_FILE, MultilingualRiskReader

    if not MultilingualRiskReader.available(out):
        return {}, {}
    config = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("embedder") not in (None, embedder.name):
        raise ConfigError(f"{out}: the head there reads {config['embedder']!r} embeddings, not {embedder.name!r}")
    return MultilingualRiskReader(embedder, out).heads(), config


def train_multilingual(files: Sequence[str | Path] | None = None, *, embedder: "Embedder",
                       out_dir: str | Path, cache_dir: str | Path | None = None,
                       progress: bool = True, keep_existing: bool = False) -> dict[str, Any]:
    """Train the head, choose its thresholds out of fold, write ``multilingual.npz`` and
    ``multilingual.json`` to ``out_dir``; returns the config (with the selection figures).
    ``cache_dir``: keep the embeddings for the next run.  ``keep_existing``: keep the outputs the
    head already in ``out_dir`` has, train only the others."""
    from empathic_agent.safety.evaluate import read_risk_csv
    from empathic_agent.safety.multilingual import CONFIG_FILE, FORMAT, OUTPUTS, WEIGHTS_FILE
    from empathic_agent.training.risk import TRAIN_DIR
    from empathic_agent.training.runs import data_hashes

    t0 = time.perf_counter()
    paths = [Path(f) for f in files] if files else sorted(TRAIN_DIR.glob("*.csv"))
    if not paths:
        raise ConfigError(f"no training CSVs in {TRAIN_DIR}")
    rows = [r | {"writer": p.stem} for p in paths for r in read_risk_csv(p)]
    texts = [r["text"] for r in rows]
    x = _embed_cached(embedder, texts, cache_dir, progress)
    level = np.array([LEVELS.index(r["level"]) for r in rows])
    foreign = _non_english(texts)
    writers = np.array([r["writer"] for r in rows])
    weight = np.where(foreign, NON_ENGLISH_WEIGHT, 1.0)
    risk = level >= 1
    ys = {"low": risk, "moderate": level >= 2, "imminent": level >= 4,
          "other": np.array([r.get("subject") == "other" for r in rows])}
    # The rows each output learns from: every row, except whose risk it is — asked of risk only.
    rows_of = {k: risk if k == "other" else np.ones(len(rows), bool) for k in OUTPUTS}
    for k, y in ys.items():
        if y[rows_of[k]].all() or not y[rows_of[k]].any():
            raise ConfigError(f"the training CSVs need messages on both sides of {k!r} "
                              f"(found {int(y[rows_of[k]].sum())} of {int(rows_of[k].sum())})")
    out = Path(out_dir)
    kept, kept_from = _existing(out, embedder) if keep_existing else ({}, {})
    trained = [k for k in OUTPUTS if k not in kept]
    fold_writers = sorted(set(writers[foreign]))
    if len(fold_writers) < 2:
        raise ConfigError("out-of-fold thresholds need at least two writers with non-English messages")
    oof = {k: np.full(len(rows), np.nan) for k in trained}
    for i, w in enumerate(fold_writers):
        test = writers == w
        if progress:
            print(f"multilingual: fold {i + 1}/{len(fold_writers)} (writer {w} held out)", file=sys.stderr)
        for k in trained:
            fit = ~test & rows_of[k]
            oof[k][test] = predict(_fit(x[fit], ys[k][fit], weight[fit]), x[test])
    scored = foreign & np.isin(writers, fold_writers)
    negatives = scored & (level == 0)
    # What counts as a false alarm of each output: the hard negatives for the protocol's outputs;
    # for the emergency, every row below it; for someone else's risk, the person's own.
    below = {k: {"imminent": scored & ~ys["imminent"], "other": scored & risk & ~ys["other"]}.get(k, negatives)
             for k in trained}
    budget = {k: EMERGENCY_BUDGET if k == "imminent" else FALSE_ALARM_BUDGET for k in trained}
    thresholds = {k: kept[k][1] if k in kept else _threshold(oof[k][below[k]], budget[k]) for k in OUTPUTS}
    selection: dict[str, Any] = {"non_english_rows": int(scored.sum()), "non_english_hard_negatives": int(negatives.sum())}
    for k in kept:
        selection[k] = {"kept": True, **(kept_from.get("selection", {}).get(k) or {})}
    for k in trained:
        pos = scored & ys[k] & rows_of[k]
        selection[k] = {
            "threshold": thresholds[k],
            "out_of_fold_recall": round(float((oof[k][pos] >= thresholds[k]).mean()), 4) if pos.any() else None,
            "out_of_fold_false_alarms": round(float((oof[k][below[k]] >= thresholds[k]).mean()), 4),
            "negatives": int(below[k].sum()), "positives": int(pos.sum()), "budget": budget[k]}
    heads = [kept[k][0] if k in kept else _fit(x[rows_of[k]], ys[k][rows_of[k]], weight[rows_of[k]]) for k in OUTPUTS]
    if len({h["w1"].shape for h in heads}) > 1:
        raise ConfigError(f"{out}: the kept outputs' head is not an MLP of {HIDDEN} units; retrain every output "
                          "(without keep_existing)")
    out.mkdir(parents=True, exist_ok=True)
    # One array per layer with the outputs stacked first: (4, d, h), (4, h), (4, h), (4,).
    layers: dict[str, Any] = {name: np.stack([h[name] for h in heads]) for name in ("w1", "b1", "w2", "b2")}
    np.savez(out / WEIGHTS_FILE, **layers)
    config = {"format": FORMAT, "outputs": list(OUTPUTS), "embedder": embedder.name, "thresholds": thresholds,
              "head": {"kind": "mlp", "hidden": HIDDEN, "alpha": ALPHA, "epochs": EPOCHS, "seed": SEED},
              "false_alarm_budget": FALSE_ALARM_BUDGET, "emergency_budget": EMERGENCY_BUDGET,
              "non_english_weight": NON_ENGLISH_WEIGHT,
              "data": data_hashes(paths), "rows": len(rows), "non_english_rows": int(foreign.sum()),
              "selection": selection, "seconds": round(time.perf_counter() - t0, 1)}
    if kept:
        config["kept"] = {"outputs": sorted(kept), "data": kept_from.get("data"), "rows": kept_from.get("rows")}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config
