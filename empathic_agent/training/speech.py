"""Train (and evaluate) the speech emotion heads on RAVDESS, speaker-independently.

    empathic encoders train speech [--data-dir ../shared/data] [--out DIR] [--test-actors 17,18,19,20]

Data: ``<data_dir>/ravdess/labels.csv`` (actors 01-20 of RAVDESS speech, CC BY-NC-SA 4.0; a copy
truncated at 2.389 s — see the model card).  Labels map calm -> neutral, happy -> joy,
sad -> sadness, angry -> anger, fearful -> fear, surprised -> surprise, disgust -> disgust.

Protocol (no actor is ever in both the training and the evaluation data of a measurement):

1. **Features** of every clip, through the runtime's own decode -> trim -> prosody + Whisper
   pipeline, for every candidate Whisper layer (1-4), extracted once and cached in
   ``<cache_dir>/speech-features/`` (keyed by the feature format and the file list): re-training
   takes a few minutes, not the extraction's.
2. **Test actors** (default 17-20: two male, two female) are held out from everything below.
3. **Model selection** on the other 16 actors by cross-validation over :data:`CV_FOLDS` folds of
   whole actors (4 actors each, two male and two female).  Candidates: the Whisper layer sets of
   :data:`LAYER_SETS` x the regularisation strengths of :data:`C_GRID` for the speaker-adapted
   head (features z-scored against a leave-one-out baseline of the speaker's *other* clips), scored
   by mean macro-F1 over the folds; then C for the cold-start head on the chosen layers.
   The chosen configuration's out-of-fold predictions fit each head's probability temperature and
   measure how many baseline clips the adapted head needs to beat the cold head
   (``min_baseline_clips``).
4. The chosen heads are refit on all training actors and evaluated **once** on the test actors:
   cold start, with a baseline of all the speaker's other clips, and with a small random baseline
   of :data:`SMALL_BASELINE` other clips (as early in a conversation).
5. ``weights.npz`` + ``config.json`` (configuration, CV and test figures, timings) go to the output
   directory (default: the package's ``weights/speech/``).

Multinomial logistic regression (scikit-learn, training only; inference is numpy).  Fixed seeds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.latent import CATEGORIES

__all__ = ["RAVDESS_MAP", "RavdessItem", "load_ravdess", "extract_ravdess_features", "write_eval_csv",
           "train"]

#: RAVDESS emotion -> our category (calm is a low-arousal neutral).
RAVDESS_MAP: Final[dict[str, str]] = {
    "neutral": "neutral", "calm": "neutral", "happy": "joy", "sad": "sadness", "angry": "anger",
    "fearful": "fear", "surprised": "surprise", "disgust": "disgust",
}
#: Held-out actors (odd = male, even = female in RAVDESS).
DEFAULT_TEST_ACTORS: Final[tuple[int, ...]] = (17, 18, 19, 20)
#: Whisper-base encoder layers extracted for training (the candidates draw from these).
EXTRACT_LAYERS: Final[tuple[int, ...]] = (1, 2, 3, 4)
#: Candidate layer sets.  Exploration here (pros + one layer, speaker-normalised, 4-fold actor CV):
#: L1 .77, L2 .80, L3 .80, L4 .77, L6 (the output) .72 — the middle layers carry the most.
LAYER_SETS: Final[tuple[tuple[int, ...], ...]] = ((2, 4), (2, 3), (1, 3), (2, 3, 4))
#: Inverse L2 strengths of the logistic regression (features are standardised; ~2000 of them
#: for ~700 training clips, so strong regularisation).
C_GRID: Final[tuple[float, ...]] = (0.003, 0.01, 0.03)
#: Folds of whole actors for cross-validation on the training actors.
CV_FOLDS: Final[int] = 4
#: Size of the "small" speaker baseline evaluated besides the full leave-one-out one.
SMALL_BASELINE: Final[int] = 10
#: Baseline sizes at which the adapted head is compared with the cold head (out of fold).
BASELINE_CURVE: Final[tuple[int, ...]] = (2, 4, 6, 8, 12, 16, 24)
#: Fewest baseline clips before the adapted head is used, whatever the curve says: RAVDESS
#: baselines hold every emotion in equal measure, a person's first utterances may not, and a
#: single outburst should not become someone's "normal" voice.
MIN_BASELINE_FLOOR: Final[int] = 4
#: Temperatures tried when calibrating each head on its out-of-fold predictions.
TEMPERATURES: Final[NDArray[np.float64]] = np.round(np.arange(0.5, 3.01, 0.05), 2)
SEED: Final[int] = 1234
MAX_ITER: Final[int] = 3000


@dataclass(frozen=True)
class RavdessItem:
    path: Path
    emotion: str  # our category
    raw_emotion: str
    actor: int
    intensity: str


def load_ravdess(data_dir: Path | str) -> list[RavdessItem]:
    """The RAVDESS rows of ``labels.csv`` whose file exists, with our categories."""
    root = Path(data_dir) / "ravdess"
    labels = root / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"RAVDESS labels not found at {labels}; pass --data-dir (the shared data folder)")
    items = []
    with open(labels, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            p = root / row["path"]
            if p.is_file():
                items.append(RavdessItem(p, RAVDESS_MAP[row["emotion"]], row["emotion"], int(row["actor"]),
                                         row["intensity"]))
    if not items:
        raise FileNotFoundError(f"no RAVDESS audio files found under {root}")
    return items


def write_eval_csv(items: Sequence[RavdessItem], path: Path | str) -> Path:
    """Write ``path,emotion,speaker`` rows (paths relative to the CSV) for the generic eval."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "emotion", "speaker"])
        for it in items:
            try:
                rel = it.path.resolve().relative_to(base)
            except ValueError:
                rel = Path(_relpath(it.path.resolve(), base))
            w.writerow([rel.as_posix(), it.emotion, f"actor{it.actor:02d}"])
    return path


def _relpath(target: Path, base: Path) -> str:
    import os

    return os.path.relpath(target, base)


# ---------------------------------------------------------------------------------------------
# Features


def _cache_key(items: Sequence[RavdessItem], layers: Sequence[int]) -> str:
    from empathic_agent.encode.speech import feature_version

    h = hashlib.sha256(feature_version(layers).encode())
    for it in items:
        h.update(f"{it.path.parent.name}/{it.path.name}:{it.path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def extract_ravdess_features(items: Sequence[RavdessItem], cache_dir: Path, *,
                             layers: Sequence[int] = EXTRACT_LAYERS,
                             progress: bool = True) -> dict[str, NDArray[Any]]:
    """Features of every item through the runtime pipeline (cached in ``cache_dir``).

    Returns ``X`` (N, 30 + 1024 * len(layers)), ``quality`` (N, Q), ``y`` (N,), ``actor`` (N,),
    ``status`` (N,), ``layers``, ``version``.
    """
    from empathic_agent.encode.speech import SpeechFeatureExtractor, WhisperLayers, feature_version
    from empathic_agent.perceive.audio import decode_audio

    version = feature_version(layers)
    cache = Path(cache_dir) / "speech-features" / f"ravdess-{_cache_key(items, layers)}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        if str(data.get("version", "")) == version and len(data["X"]) == len(items):
            return data
    extractor = SpeechFeatureExtractor(WhisperLayers.from_registry(cache_dir, layers))
    quality_keys = ("speech_s", "voiced_s", "f0_range_st", "int_std_db", "modulation", "snr_db", "duration_s")
    X, quality_rows, status = [], [], []
    iterator: Any = items
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(items, desc="features", unit="clip", file=sys.stderr, mininterval=2.0)
    for it in iterator:
        clip = decode_audio(it.path)
        status.append(clip.status.value)
        f = extractor.extract(clip)
        X.append(f.vector)
        quality_rows.append([f.quality[k] for k in quality_keys])
    data = {
        "X": np.array(X, dtype=np.float64), "quality": np.array(quality_rows, dtype=np.float64),
        "quality_keys": np.array(quality_keys), "status": np.array(status),
        "y": np.array([CATEGORIES.index(it.emotion) for it in items]),
        "actor": np.array([it.actor for it in items]), "raw_emotion": np.array([it.raw_emotion for it in items]),
        "path": np.array([f"{it.path.parent.name}/{it.path.name}" for it in items]),
        "layers": np.array(list(layers)), "version": np.array(version),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez_compressed(tmp, **data)
    tmp.replace(cache)
    return data


def _columns(layers: Sequence[int], extracted: Sequence[int] = EXTRACT_LAYERS) -> NDArray[np.int64]:
    """Column indices of the prosody block and the chosen layers' blocks in an extracted X."""
    from empathic_agent.encode.speech import PROSODY_NAMES, WHISPER_DIM

    p = len(PROSODY_NAMES)
    cols = [np.arange(p)]
    for k in layers:
        start = p + extracted.index(k) * 2 * WHISPER_DIM
        cols.append(np.arange(start, start + 2 * WHISPER_DIM))
    return np.concatenate(cols)


# ---------------------------------------------------------------------------------------------
# Model fitting and metrics


def _fit(X: NDArray[np.float64], y: NDArray[np.int64], C: float) -> dict[str, NDArray[np.float64]]:
    """Standardise + multinomial logistic regression -> {mu, sd, W (7, D), b (7,)}."""
    from sklearn.linear_model import LogisticRegression

    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    model = LogisticRegression(C=C, max_iter=MAX_ITER, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter at tiny C
        model.fit((X - mu) / sd, y)
    W = np.zeros((len(CATEGORIES), X.shape[1]))
    b = np.zeros(len(CATEGORIES))
    W[model.classes_] = model.coef_
    b[model.classes_] = model.intercept_
    missing = np.setdiff1d(np.arange(len(CATEGORIES)), model.classes_)
    b[missing] = -30.0  # a class absent from training is never predicted
    return {"mu": mu, "sd": sd, "W": W, "b": b}


def _logits(m: dict[str, NDArray[np.float64]], X: NDArray[np.float64]) -> NDArray[np.float64]:
    return ((X - m["mu"]) / m["sd"]) @ m["W"].T + m["b"]


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _metrics(y: NDArray[np.int64], pred: NDArray[np.int64]) -> dict[str, Any]:
    k = len(CATEGORIES)
    cm = np.zeros((k, k), dtype=np.int64)
    for g, p in zip(y, pred):
        cm[g, p] += 1
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1).astype(float), cm.sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    present = (support + predicted) > 0
    return {"n": int(len(y)), "accuracy": float(tp.sum() / max(1, len(y))),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "per_class_f1": {c: round(float(f1[i]), 4) for i, c in enumerate(CATEGORIES)},
            "confusion_matrix": {"labels": list(CATEGORIES), "rows": "gold", "columns": "predicted",
                                 "matrix": cm.tolist()}}


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {"n": m["n"], "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def _brief_cv(r: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": round(r["accuracy"], 4), "macro_f1": round(r["macro_f1"], 4),
            "fold_accuracy": r["fold_accuracy"], "fold_macro_f1": r["fold_macro_f1"]}


def _fit_temperature(logits: NDArray[np.float64], y: NDArray[np.int64]) -> tuple[float, float]:
    """Temperature minimising the negative log-likelihood (grid search), and that NLL."""
    best = (1.0, float("inf"))
    for t in TEMPERATURES:
        p = _softmax(logits / t)
        nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))
        if nll < best[1]:
            best = (float(t), nll)
    return best


class _Data:
    """Imputed features, labels and speakers, plus population statistics of the training actors."""

    def __init__(self, raw: dict[str, NDArray[Any]], train_actors: Sequence[int]) -> None:
        self.X_raw = raw["X"]
        self.y = raw["y"].astype(np.int64)
        self.actor = raw["actor"].astype(np.int64)
        self.quality = raw["quality"]
        self.train_mask = np.isin(self.actor, list(train_actors))
        # Population statistics from the training actors only (no peeking at test actors).
        self.pop_mean = np.nanmean(self.X_raw[self.train_mask], axis=0)
        self.X = np.where(np.isfinite(self.X_raw), self.X_raw, self.pop_mean)
        per_actor = [self.X[self.actor == a].var(axis=0) for a in np.unique(self.actor[self.train_mask])]
        self.within_var = np.mean(per_actor, axis=0)
        self._memo: dict[tuple[int, int, int, int], NDArray[np.float64]] = {}

    def normalised_all(self, cols: NDArray[np.int64]) -> NDArray[np.float64]:
        """Every clip normalised against all of its speaker's other clips (memoised)."""
        key = (int(cols[0]), int(cols[-1]), len(cols), hash(cols.tobytes()))
        if key not in self._memo:
            self._memo[key] = self.normalised(cols, np.ones(len(self.y), dtype=bool))[0]
        return self._memo[key]

    def normalised(self, cols: NDArray[np.int64], rows: NDArray[np.bool_], *,
                   baseline_size: int | None = None, seed: int = SEED) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        from empathic_agent.encode.speech import leave_one_out_normalise

        return leave_one_out_normalise(self.X[rows][:, cols], self.actor[rows], self.pop_mean[cols],
                                       self.within_var[cols], baseline_size=baseline_size, seed=seed)


def _folds(train_actors: Sequence[int]) -> list[list[int]]:
    """CV_FOLDS folds of whole actors, alternating male/female (odd/even) across folds."""
    males = sorted(a for a in train_actors if a % 2 == 1)
    females = sorted(a for a in train_actors if a % 2 == 0)
    folds: list[list[int]] = [[] for _ in range(CV_FOLDS)]
    for i, a in enumerate(males):
        folds[i % CV_FOLDS].append(a)
    for i, a in enumerate(females):
        folds[i % CV_FOLDS].append(a)
    return [sorted(f) for f in folds if f]


def _cv(data: _Data, folds: list[list[int]], cols: NDArray[np.int64], C: float, head: str, *,
        keep: bool = False) -> dict[str, Any]:
    """Cross-validate one configuration of one head over actor folds."""
    accs, f1s = [], []
    oof_logits = np.zeros((len(data.y), len(CATEGORIES)))
    models = []
    for fold in folds:
        te = np.isin(data.actor, fold)
        tr = data.train_mask & ~te
        if head == "adapted":
            # Each clip z-scored against its own speaker's other clips (speakers never cross folds).
            Z = data.normalised_all(cols)
            Xtr, Xte = Z[tr], Z[te]
        else:
            Xtr, Xte = data.X[tr][:, cols], data.X[te][:, cols]
        m = _fit(Xtr, data.y[tr], C)
        logits = _logits(m, Xte)
        oof_logits[te] = logits
        pred = logits.argmax(1)
        accs.append(float(np.mean(pred == data.y[te])))
        f1s.append(_metrics(data.y[te], pred)["macro_f1"])
        if keep:
            models.append((fold, m))
    out = {"accuracy": float(np.mean(accs)), "macro_f1": float(np.mean(f1s)),
           "fold_accuracy": [round(a, 4) for a in accs], "fold_macro_f1": [round(f, 4) for f in f1s]}
    if keep:
        out["oof_logits"] = oof_logits
        out["models"] = models
    return out


def _baseline_curve(data: _Data, cols: NDArray[np.int64], adapted_cv: dict[str, Any],
                    cold_oof_pred: NDArray[np.int64]) -> tuple[dict[str, Any], int]:
    """Out-of-fold accuracy of the adapted head with small random baselines vs the cold head."""
    curve = {}
    train = data.train_mask
    cold_f1 = _metrics(data.y[train], cold_oof_pred[train])["macro_f1"]
    chosen = None
    for n in BASELINE_CURVE:
        preds = np.zeros(len(data.y), dtype=np.int64)
        for fold, m in adapted_cv["models"]:
            te = np.isin(data.actor, fold)
            Z, _ = data.normalised(cols, te, baseline_size=n)
            preds[te] = _logits(m, Z).argmax(1)
        met = _metrics(data.y[train], preds[train])
        curve[str(n)] = _brief(met)
        if chosen is None and met["macro_f1"] >= cold_f1:
            chosen = n
    chosen = max(MIN_BASELINE_FLOOR, chosen if chosen is not None else max(BASELINE_CURVE))
    return {"cold_oof": _brief(_metrics(data.y[train], cold_oof_pred[train])), "adapted_oof_by_baseline": curve}, \
        chosen


# ---------------------------------------------------------------------------------------------
# Training


def train(data_dir: Path, cache_dir: Path, out_dir: Path, *, test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
          progress: bool = True, log: Any = None) -> dict[str, Any]:
    """The whole protocol (module docstring); writes the weights and returns the config."""
    from empathic_agent.encode.speech import (
        BASELINE_PRIOR_CLIPS,
        CONFIG_FILE,
        CONFIG_FORMAT,
        PROSODY_NAMES,
        WEIGHTS_FILE,
        WHISPER_MODEL,
        feature_version,
    )

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    np.random.seed(SEED)
    items = load_ravdess(data_dir)
    all_actors = sorted({it.actor for it in items})
    test_actors = [a for a in test_actors if a in all_actors]
    train_actors = [a for a in all_actors if a not in test_actors]
    if not test_actors or len(train_actors) < CV_FOLDS:
        raise ValueError(f"need test actors and >= {CV_FOLDS} training actors; have {all_actors}")
    say(f"RAVDESS: {len(items)} clips, training actors {train_actors}, test actors {test_actors}")

    t = time.perf_counter()
    raw = extract_ravdess_features(items, cache_dir, progress=progress)
    extract_s = time.perf_counter() - t
    say(f"features: {raw['X'].shape} in {extract_s:.0f}s (cached in {cache_dir / 'speech-features'})")
    data = _Data(raw, train_actors)
    folds = _folds(train_actors)

    # -- model selection: adapted head over layer sets x C, then the cold head's C --------------
    t = time.perf_counter()
    selection: list[dict[str, Any]] = []
    steps = [(ls, C) for ls in LAYER_SETS for C in C_GRID]
    iterator: Any = steps
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(steps, desc="model selection (adapted)", unit="config", file=sys.stderr)
    runs: dict[tuple[str, tuple[int, ...], float], dict[str, Any]] = {}
    for layers, C in iterator:
        r = runs[("adapted", layers, C)] = _cv(data, folds, _columns(layers), C, "adapted", keep=True)
        selection.append({"head": "adapted", "layers": list(layers), "C": C,
                          **{k: r[k] for k in ("accuracy", "macro_f1", "fold_accuracy", "fold_macro_f1")}})
    # Best mean macro-F1 (to 3 decimals: finer differences are noise); ties go to the cheaper
    # configuration at run time (fewer encoder layers to run in total), then to larger C.
    best = max(selection, key=lambda r: (round(r["macro_f1"], 3), -sum(r["layers"]), r["C"]))
    layers = tuple(best["layers"])
    cols = _columns(layers)
    say(f"adapted head: layers {layers}, C={best['C']}: CV acc {best['accuracy']:.3f} F1 {best['macro_f1']:.3f}")
    cold_selection = []
    for C in C_GRID:
        r = runs[("cold", layers, C)] = _cv(data, folds, cols, C, "cold", keep=True)
        cold_selection.append({"head": "cold", "layers": list(layers), "C": C,
                               **{k: r[k] for k in ("accuracy", "macro_f1", "fold_accuracy", "fold_macro_f1")}})
    best_cold = max(cold_selection, key=lambda r: (round(r["macro_f1"], 3), r["C"]))
    say(f"cold head: C={best_cold['C']}: CV acc {best_cold['accuracy']:.3f} F1 {best_cold['macro_f1']:.3f}")

    # -- calibration and the baseline-size curve from out-of-fold predictions --------------------
    adapted_cv = runs[("adapted", layers, best["C"])]
    cold_cv = runs[("cold", layers, best_cold["C"])]
    tr = data.train_mask
    t_adapted, nll_adapted = _fit_temperature(adapted_cv["oof_logits"][tr], data.y[tr])
    t_cold, nll_cold = _fit_temperature(cold_cv["oof_logits"][tr], data.y[tr])
    curve, min_clips = _baseline_curve(data, cols, adapted_cv, cold_cv["oof_logits"].argmax(1))
    select_s = time.perf_counter() - t
    say(f"temperatures: adapted {t_adapted}, cold {t_cold}; adapted head from {min_clips} baseline clips")

    # -- final fit on all training actors, one evaluation on the test actors ---------------------
    t = time.perf_counter()
    Xtr_cold = data.X[tr][:, cols]
    cold = _fit(Xtr_cold, data.y[tr], best_cold["C"])
    Ztr, _ = data.normalised(cols, tr)
    adapted = _fit(Ztr, data.y[tr], best["C"])
    te = np.isin(data.actor, test_actors)
    y_te = data.y[te]
    pred_cold = _logits(cold, data.X[te][:, cols]).argmax(1)
    Zte, _ = data.normalised(cols, te)
    pred_full = _logits(adapted, Zte).argmax(1)
    Zsmall, _ = data.normalised(cols, te, baseline_size=SMALL_BASELINE)
    pred_small = _logits(adapted, Zsmall).argmax(1)
    per_actor = {}
    for a in test_actors:
        s = data.actor[te] == a
        per_actor[f"actor{a:02d}"] = {"n": int(s.sum()),
                                      "cold_accuracy": round(float(np.mean(pred_cold[s] == y_te[s])), 4),
                                      "baseline_accuracy": round(float(np.mean(pred_full[s] == y_te[s])), 4)}
    test = {
        "actors": list(test_actors),
        "cold_start": _metrics(y_te, pred_cold),
        "with_baseline": _metrics(y_te, pred_full),
        f"with_small_baseline_{SMALL_BASELINE}": _brief(_metrics(y_te, pred_small)),
        "per_actor": per_actor,
    }
    final_s = time.perf_counter() - t
    say(f"TEST actors {test_actors}: cold acc {test['cold_start']['accuracy']:.3f} F1 "
        f"{test['cold_start']['macro_f1']:.3f} | with baseline acc {test['with_baseline']['accuracy']:.3f} "
        f"F1 {test['with_baseline']['macro_f1']:.3f} | {SMALL_BASELINE}-clip baseline "
        f"acc {test[f'with_small_baseline_{SMALL_BASELINE}']['accuracy']:.3f}")

    # -- a second, steadier estimate: 5-fold CV over all actors with the chosen configuration ------
    # (the configuration was chosen on the training actors only; the test actors' figure above is
    # the clean one, this one averages over 20 speakers instead of 4).
    t = time.perf_counter()
    all_folds = [list(all_actors[i::5]) for i in range(5)]
    everyone = _Data(raw, all_actors)
    cv_all = {"folds": all_folds,
              "cold": _brief_cv(_cv(everyone, all_folds, cols, best_cold["C"], "cold")),
              "adapted": _brief_cv(_cv(everyone, all_folds, cols, best["C"], "adapted"))}
    say(f"5-fold CV over all {len(all_actors)} actors: cold acc {cv_all['cold']['accuracy']:.3f} | "
        f"with baseline acc {cv_all['adapted']['accuracy']:.3f} F1 {cv_all['adapted']['macro_f1']:.3f}")
    cv_all_s = time.perf_counter() - t

    # -- write ------------------------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {"population_mean": data.pop_mean[cols], "within_variance": data.within_var[cols]}
    for name, m in (("cold", cold), ("adapted", adapted)):
        for k, v in m.items():
            arrays[f"{name}_{k}"] = v
    np.savez_compressed(out_dir / WEIGHTS_FILE, **{k: v.astype(np.float32) for k, v in arrays.items()})
    n_status = {s: int(np.sum(raw["status"] == s)) for s in np.unique(raw["status"])}
    config = {
        "format": CONFIG_FORMAT,
        "feature_version": feature_version(layers),
        "whisper_model": WHISPER_MODEL,
        "whisper_layers": list(layers),
        "prosody_names": list(PROSODY_NAMES),
        "feature_dim": int(len(cols)),
        "categories": list(CATEGORIES),
        "heads": {"cold": {"C": best_cold["C"], "temperature": t_cold, "oof_nll": round(nll_cold, 4)},
                  "adapted": {"C": best["C"], "temperature": t_adapted, "oof_nll": round(nll_adapted, 4)}},
        "min_baseline_clips": int(min_clips),
        "baseline_prior_clips": BASELINE_PRIOR_CLIPS,
        "licence": "CC BY-NC-SA 4.0 (trained on RAVDESS): non-commercial use only",
        "metrics": {"test": test,
                    "cv": {"folds": folds, "adapted": {k: best[k] for k in ("accuracy", "macro_f1", "fold_accuracy",
                                                                               "fold_macro_f1")},
                           "cold": {k: best_cold[k] for k in ("accuracy", "macro_f1", "fold_accuracy",
                                                              "fold_macro_f1")},
                           **curve},
                    "cv_all_actors_chosen_config": cv_all,
                    "selection": selection + cold_selection},
        "training": {
            "data": "RAVDESS speech (actors 01-20 copy, truncated at 2.389 s), labels calm->neutral",
            "clips": len(items), "clip_status": n_status, "train_actors": train_actors,
            "test_actors": list(test_actors), "label_map": RAVDESS_MAP, "seed": SEED,
            "command": "empathic encoders train speech --data-dir ../shared/data",
            "wall_time_s": {"features": round(extract_s, 1), "selection": round(select_s, 1),
                            "final": round(final_s, 1), "cv_all_actors": round(cv_all_s, 1),
                            "total": round(time.perf_counter() - t_start, 1)},
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
        },
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    say(f"wrote {out_dir / WEIGHTS_FILE} ({(out_dir / WEIGHTS_FILE).stat().st_size / 1e3:.0f} kB) and "
        f"{out_dir / CONFIG_FILE} in {time.perf_counter() - t_start:.0f}s")
    return config


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The training options; a standalone parser (no ``parser`` given) also takes --cache-dir,
    which the ``empathic`` command line gets from its common settings flags instead."""
    p = parser or argparse.ArgumentParser(prog="train_speech", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="shared data folder holding ravdess/ (default: settings.data_dir)")
    if parser is None:
        p.add_argument("--cache-dir", help="model and feature cache (default: settings.cache_dir)")
    p.add_argument("--out", help="output directory (default: the package's weights/speech/)")
    p.add_argument("--test-actors", default=",".join(str(a) for a in DEFAULT_TEST_ACTORS),
                   help="comma-separated held-out actors (default 17,18,19,20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace, settings: Any = None) -> int:
    from empathic_agent.encode.speech import DEFAULT_WEIGHTS_DIR
    from empathic_agent.settings import Settings

    settings = settings or Settings.from_env()
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    cache_dir = Path(args.cache_dir) if getattr(args, "cache_dir", None) else settings.cache_dir
    out = Path(args.out) if args.out else DEFAULT_WEIGHTS_DIR
    actors = [int(a) for a in str(args.test_actors).split(",") if a.strip()]
    config = train(data_dir, cache_dir, out, test_actors=actors, progress=not args.no_progress)
    print(json.dumps({"out": str(out), "whisper_layers": config["whisper_layers"],
                      "test": {k: (_brief(v) if isinstance(v, dict) and "accuracy" in v and "n" in v else v)
                               for k, v in config["metrics"]["test"].items()},
                      "cv": {k: config["metrics"]["cv"][k] for k in ("adapted", "cold")},
                      "cv_all_actors": config["metrics"]["cv_all_actors_chosen_config"],
                      "min_baseline_clips": config["min_baseline_clips"],
                      "wall_time_s": config["training"]["wall_time_s"]}, indent=1))
    return 0
