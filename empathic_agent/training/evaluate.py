"""Generic evaluation of any encoder on labelled data -> one plain-JSON metrics object.

Input: an `EvalSet` — built from any CSV (:func:`read_eval_csv`) or from a data set's test split
(:func:`dataset_eval_set`: ``emobank``, ``goemotions``).  The CSV format:

* an input column: ``text`` for text encoders, or ``path`` (a file path relative to the CSV's
  folder, or absolute) for encoders of audio/images;
* labels, either or both:
  - ``emotion``: one of our seven categories (neutral, joy, sadness, anger, fear, surprise,
    disgust; a few common synonyms are accepted, e.g. happy, sad, angry, fearful, surprised,
    disgusted, calm -> neutral), or several separated by ``;``, ``|`` or ``,`` for multi-label rows;
  - ``valence``, ``arousal``, ``dominance``: numbers in [-1, 1].
* optional ``context``: the turns before the message, one per line, oldest first (both sides,
  alternating, the message answering the last line).  A text encoder that reads context
  (:meth:`~empathic_agent.encode.text.TextEncoder.encode_in_context`) then reads each row as a
  turn of its conversation, and the result also holds ``utterance_only``: the same rows read
  alone (conversation calibration, no context) — the gain the context brings.
  Column names are case-insensitive.  An empty label cell means "no label": the row still counts in
  ``n`` but not in that metric.  Malformed files raise :class:`DatasetError` saying what and where.

Output (:func:`evaluate`): ``n``; for categories ``accuracy``, ``macro_f1``, ``weighted_f1``,
``per_class_f1``, ``confusion_matrix`` (``labels``, rows = gold, columns = predicted) and
``calibration`` (expected calibration error of the top category's probability, log-loss, and the
reliability table behind the ECE: per bin of top probability, rows, mean confidence, accuracy;
:func:`write_reliability_png` draws it) — these
keys are ``null`` when the data has no emotion labels; ``pearson_valence`` / ``_arousal`` /
``_dominance`` (plus ``vad`` details: MAE and the mean squared z-score, which is ~1 when the
encoder's variance is calibrated) when VAD columns exist.

Multi-label rows (GoEmotions): the encoder predicts one top category; a row counts as **correct
when the prediction is in the gold set**.  For F1 and the confusion matrix the row's gold label is
the prediction when it is in the set, else the first listed gold label.  ``multi_label`` says how
many rows had several labels, and ``single_label`` repeats the category metrics on the rows with
exactly one gold label (the strict, unambiguous figure).

Macro-F1 averages over the labels that occur in gold or predictions (scikit-learn's default).
Lexicon baselines (VADER valence, NRC EmoLex categories) run on text eval sets when their packages
are installed (:func:`lexicon_baselines`).  Pure numpy: no scikit-learn needed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Final, Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.base import INPUT_PATH, INPUT_TEXT, Encoder
from empathic_agent.latent import CATEGORIES, DIMENSIONS, Reading
from empathic_agent.metrics import ECE_BINS, binned_ece, ece_if_calibrated, reliability
from empathic_agent.training.datasets import (
    DatasetError,
    emobank_split,
    goemotions_ekman_split,
)

__all__ = [
    "DATASETS",
    "EvalSet",
    "read_eval_csv",
    "dataset_eval_set",
    "evaluate",
    "evaluate_readings",
    "evaluate_predictions",
    "classification_metrics",
    "pearson",
    "lexicon_baselines",
]

#: Data-set shortcuts of ``empathic encoders eval text --dataset``.
DATASETS: Final[tuple[str, ...]] = ("emobank", "goemotions", "fer2013", "ed", "esconv")
#: Conversational sets (read with their context): EmpatheticDialogues speaker turns (train/dev =
#: our split of ED's dev file, test = ED's test file) and ESConv seeker turns.
CONVERSATION_DATASETS: Final[tuple[str, ...]] = ("ed", "esconv")

#: Label synonyms accepted in an ``emotion`` column (RAVDESS/FER-style names -> ours).
LABEL_ALIASES: Final[dict[str, str]] = {
    "happy": "joy", "happiness": "joy",
    "sad": "sadness",
    "angry": "anger",
    "fearful": "fear", "afraid": "fear", "scared": "fear",
    "surprised": "surprise",
    "disgusted": "disgust",
    "calm": "neutral",
}
_LABEL_SPLIT = re.compile(r"[;|,]")
#: Probability floor for the log-loss (a hard 0 on the gold label would be infinite).
LOGLOSS_FLOOR: Final[float] = 1e-7


@dataclass(frozen=True)
class EvalSet:
    """Inputs and gold labels of one evaluation.

    ``emotions[i]`` is the row's gold category set (in the order given; empty = no label);
    ``vad`` is (N, 3) with NaN where a value is missing; ``has_*`` say which label kinds exist.
    """

    name: str
    inputs: list[Any]
    emotions: list[tuple[str, ...]]
    vad: NDArray[np.float64]
    input_kind: str = INPUT_TEXT
    has_emotion: bool = True
    has_vad: bool = True
    notes: tuple[str, ...] = field(default=())
    #: Per row, the turns before the message (oldest first), or None for a set without context.
    contexts: list[tuple[str, ...]] | None = None

    def __len__(self) -> int:
        return len(self.inputs)


# ---------------------------------------------------------------------------------------------
# Reading data


def _parse_labels(cell: str, where: str) -> tuple[str, ...]:
    labels: list[str] = []
    for raw in _LABEL_SPLIT.split(cell):
        name = raw.strip().lower()
        if not name:
            continue
        name = LABEL_ALIASES.get(name, name)
        if name not in CATEGORIES:
            raise DatasetError(f"{where}: unknown emotion {raw.strip()!r}; use one of {', '.join(CATEGORIES)}")
        if name not in labels:
            labels.append(name)
    return tuple(labels)


def _parse_unit(cell: str, where: str, column: str) -> float:
    cell = cell.strip()
    if not cell or cell.lower() in ("nan", "na", "n/a", "none", "null"):
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise DatasetError(f"{where}: {column} {cell!r} is not a number") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise DatasetError(f"{where}: {column} {cell!r} is outside [-1, 1] "
                           f"(map a 1..5 scale with (x - 3) / 2)")
    return value


def read_eval_csv(path: Path | str, input_kind: str = INPUT_TEXT) -> EvalSet:
    """Read an evaluation CSV (format in the module docstring).

    ``input_kind`` is the encoder's: ``text`` reads the ``text`` column; ``path`` reads the
    ``path`` column and resolves each path against the CSV's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"evaluation CSV not found: {path}")
    if input_kind not in (INPUT_TEXT, INPUT_PATH):
        raise DatasetError(f"unknown input kind {input_kind!r}; expected {INPUT_TEXT!r} or {INPUT_PATH!r}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path} is empty (expected a header row)")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise DatasetError(f"{path} is not a valid CSV: {exc}") from None

    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    if input_kind not in columns:
        raise DatasetError(f"{path} has no {input_kind!r} column (columns: {', '.join(header)}); "
                           f"a {input_kind} encoder reads its inputs from the {input_kind!r} column")
    vad_cols = [d for d in DIMENSIONS if d in columns]
    has_emotion = "emotion" in columns
    has_context = "context" in columns and input_kind == INPUT_TEXT
    contexts: list[tuple[str, ...]] = []
    if not has_emotion and not vad_cols:
        raise DatasetError(f"{path} has no label column: expected 'emotion' and/or "
                           f"{', '.join(DIMENSIONS)} (columns: {', '.join(header)})")

    inputs: list[Any] = []
    emotions: list[tuple[str, ...]] = []
    vad = np.full((len(rows), len(DIMENSIONS)), np.nan)
    base = path.resolve().parent
    for r, row in enumerate(rows):
        where = f"{path}:{r + 2}"  # 1-based, after the header
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        cell = row[columns[input_kind]]
        if input_kind == INPUT_PATH:
            p = Path(cell.strip()).expanduser() if cell.strip() else None
            inputs.append(None if p is None else (p if p.is_absolute() else base / p))
        else:
            inputs.append(cell)
        emotions.append(_parse_labels(row[columns["emotion"]], where) if has_emotion else ())
        if has_context:
            contexts.append(tuple(line.strip() for line in row[columns["context"]].split("\n") if line.strip()))
        for d, dim in enumerate(DIMENSIONS):
            if dim in columns:
                vad[r, d] = _parse_unit(row[columns[dim]], where, dim)
    notes = []
    if vad_cols and len(vad_cols) < len(DIMENSIONS):
        notes.append(f"only {', '.join(vad_cols)} given")
    return EvalSet(name=str(path), inputs=inputs, emotions=emotions, vad=vad, input_kind=input_kind,
                   has_emotion=has_emotion, has_vad=bool(vad_cols), notes=tuple(notes),
                   contexts=contexts if has_context else None)


def dataset_eval_set(name: str, data_dir: Path | str, split: str = "test") -> EvalSet:
    """The test (or other) split of a known data set as an `EvalSet`.

    ``emobank``: VAD only.  ``goemotions``: the Ekman grouping's category sets (multi-label).
    """
    if name == "emobank":
        texts, vad = emobank_split(data_dir, split)
        return EvalSet(name=f"emobank/{split}", inputs=list(texts), emotions=[()] * len(texts), vad=vad,
                       has_emotion=False, has_vad=True)
    if name == "goemotions":
        texts, gold = goemotions_ekman_split(data_dir, split)
        return EvalSet(name=f"goemotions-ekman/{split}", inputs=list(texts), emotions=gold,
                       vad=np.full((len(texts), len(DIMENSIONS)), np.nan), has_emotion=True, has_vad=False)
    if name == "fer2013":
        return read_fer2013_split(data_dir, split)
    if name in CONVERSATION_DATASETS:
        from empathic_agent.training import text_context as tc

        rows = tc.ed_rows(data_dir, split) if name == "ed" else tc.esconv_rows(data_dir, split)
        gold = tc.gold_sets(np.array([r.target for r in rows], dtype=np.float64))
        weak = ("labels are the conversation's emotion (weak), mapped to our categories as in "
                "training.text_context; gold = categories with >= 0.4 of the mapped label")
        return EvalSet(name=f"{name}/{split}", inputs=[r.text for r in rows], emotions=gold,
                       vad=np.full((len(rows), len(DIMENSIONS)), np.nan), has_emotion=True, has_vad=False,
                       notes=(weak,), contexts=[r.turns for r in rows])
    raise DatasetError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")


def read_fer2013_split(data_dir: Path | str, split: str = "test") -> EvalSet:
    """FER-2013's ``labels.csv`` rows of ``split`` (``train`` or ``test`` = its PublicTest part)
    as an image `EvalSet` (``path`` inputs, FER labels mapped to our categories)."""
    path = Path(data_dir) / "fer2013" / "labels.csv"
    if not path.is_file():
        raise DatasetError(f"FER-2013 labels not found at {path}; pass the shared data directory with --data-dir")
    if split not in ("train", "test"):
        raise DatasetError(f"FER-2013 has the splits train and test, not {split!r}")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("split") == split]
    inputs = [path.parent / r["path"] for r in rows]
    gold = [(_parse_labels(r["emotion"], f"{path}:{r['path']}")[0],) for r in rows]
    return EvalSet(name=f"fer2013/{split}", inputs=inputs, emotions=gold,
                   vad=np.full((len(rows), len(DIMENSIONS)), np.nan), input_kind=INPUT_PATH,
                   has_emotion=True, has_vad=False)


# ---------------------------------------------------------------------------------------------
# Metrics


def pearson(x: Sequence[float] | NDArray[np.float64], y: Sequence[float] | NDArray[np.float64]) -> float | None:
    """Pearson r, or None when undefined (fewer than 2 pairs, or a constant side)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.size < 2:
        return None
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0:
        return None
    return float(a @ b) / denom


def _effective_gold(gold: Sequence[tuple[str, ...]], pred: Sequence[str]) -> list[str]:
    """One gold label per row: the prediction if it is in the gold set, else the first gold label."""
    return [p if p in g else g[0] for g, p in zip(gold, pred)]


def classification_metrics(gold: Sequence[tuple[str, ...]], pred: Sequence[str],
                           labels: Sequence[str] = CATEGORIES) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class F1 and confusion matrix of labelled rows.

    ``gold[i]`` is a non-empty gold label set; ``pred[i]`` one predicted label.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold rows but {len(pred)} predictions")
    index = {name: i for i, name in enumerate(labels)}
    k = len(labels)
    eff = _effective_gold(gold, pred)
    cm = np.zeros((k, k), dtype=np.int64)
    for g, p in zip(eff, pred):
        cm[index[g], index[p]] += 1
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    present = (support + predicted) > 0
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else None,
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else None,
        "per_class_f1": {name: (float(f1[i]) if present[i] else None) for i, name in enumerate(labels)},
        "support": {name: int(support[i]) for i, name in enumerate(labels)},
        "confusion_matrix": {"labels": list(labels), "rows": "gold", "columns": "predicted",
                             "matrix": cm.tolist()},
    }


def _calibration(gold: Sequence[tuple[str, ...]], probs: NDArray[np.float64]) -> dict[str, Any]:
    """ECE of the top probability (correct = top category in the gold set), the ECE the same
    confidences would score if calibrated (the small-set floor, :mod:`empathic_agent.metrics`) and
    log-loss.

    The log-loss scores the probability mass the reading puts on the gold set.
    """
    top = probs.argmax(axis=1)
    conf = probs[np.arange(len(top)), top]
    index = {name: i for i, name in enumerate(CATEGORIES)}
    correct = np.array([CATEGORIES[t] in g for t, g in zip(top, gold)], dtype=np.float64)
    gold_mass = np.array([sum(probs[i, index[c]] for c in g) for i, g in enumerate(gold)])
    logloss = float(-np.mean(np.log(np.clip(gold_mass, LOGLOSS_FLOOR, 1.0))))
    return {"ece": binned_ece(conf, correct, ECE_BINS), "ece_if_calibrated": ece_if_calibrated(conf, ECE_BINS),
            "log_loss": logloss, "mean_top_probability": float(conf.mean()),
            "reliability": reliability(conf, correct, ECE_BINS)}


def evaluate_predictions(eval_set: EvalSet, *, categories: NDArray[np.float64] | None = None,
                         vad_mean: NDArray[np.float64] | None = None,
                         vad_var: NDArray[np.float64] | None = None) -> dict[str, Any]:
    """Metrics from raw predictions: category probabilities (N, 7) in CATEGORIES order, VAD means
    (N, 3) and variances (N, 3).  Any of them may be None (e.g. a valence-only baseline)."""
    n = len(eval_set)
    out: dict[str, Any] = {"dataset": eval_set.name, "n": n}
    cat_keys = ("accuracy", "macro_f1", "weighted_f1", "per_class_f1", "confusion_matrix", "calibration")
    labelled = [i for i, g in enumerate(eval_set.emotions) if g]
    if eval_set.has_emotion and categories is not None and labelled:
        probs = np.asarray(categories, dtype=np.float64)[labelled]
        gold = [eval_set.emotions[i] for i in labelled]
        pred = [CATEGORIES[j] for j in probs.argmax(axis=1)]
        m = classification_metrics(gold, pred)
        out["n_emotion"] = m.pop("n")
        out.update({k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "per_class_f1", "confusion_matrix")})
        out["support"] = m["support"]
        out["calibration"] = _calibration(gold, probs)
        multi = [i for i, g in enumerate(gold) if len(g) > 1]
        if multi:
            single = [i for i, g in enumerate(gold) if len(g) == 1]
            out["multi_label"] = {
                "rows": len(multi),
                "rule": "correct when the predicted category is in the gold set; for F1 the gold label is "
                        "the prediction if in the set, else the first listed",
            }
            s = classification_metrics([gold[i] for i in single], [pred[i] for i in single])
            out["single_label"] = {"n": s["n"], **{k: s[k] for k in ("accuracy", "macro_f1", "weighted_f1",
                                                                      "per_class_f1")}}
    else:
        out["n_emotion"] = 0
        out.update({k: None for k in cat_keys})

    if eval_set.has_vad and vad_mean is not None:
        mean = np.asarray(vad_mean, dtype=np.float64)
        var = None if vad_var is None else np.asarray(vad_var, dtype=np.float64)
        details: dict[str, Any] = {}
        for d, dim in enumerate(DIMENSIONS):
            sel = ~np.isnan(eval_set.vad[:, d]) & ~np.isnan(mean[:, d])
            if not np.any(~np.isnan(eval_set.vad[:, d])):
                continue  # this dimension is not in the data
            gold_d, pred_d = eval_set.vad[sel, d], mean[sel, d]
            out[f"pearson_{dim}"] = pearson(pred_d, gold_d)
            info: dict[str, Any] = {"n": int(sel.sum()),
                                    "mae": float(np.mean(np.abs(pred_d - gold_d))) if sel.any() else None}
            if var is not None and sel.any():
                # ~1 when the stated variance matches the actual squared error (calibrated).
                info["mean_sq_z"] = float(np.mean((pred_d - gold_d) ** 2 / var[sel, d]))
            details[dim] = info
        out["vad"] = details
    if eval_set.notes:
        out["notes"] = list(eval_set.notes)
    return out


def evaluate_readings(eval_set: EvalSet, readings: Sequence[Reading]) -> dict[str, Any]:
    """Metrics of one reading per row of ``eval_set``."""
    if len(readings) != len(eval_set):
        raise ValueError(f"{len(readings)} readings for {len(eval_set)} rows")
    if not readings:
        raise DatasetError(f"{eval_set.name} has no rows")
    cats = np.array([r.categories for r in readings], dtype=np.float64)
    mean = np.array([r.mean for r in readings], dtype=np.float64)
    var = np.array([r.variance for r in readings], dtype=np.float64)
    out = evaluate_predictions(eval_set, categories=cats, vad_mean=mean, vad_var=var)
    out["mean_confidence"] = float(np.mean([r.confidence for r in readings]))
    return out


def evaluate(encoder: Encoder, eval_set: EvalSet, *, batch_size: int = 64,
             progress: bool = False) -> dict[str, Any]:
    """Encode every input of ``eval_set`` with ``encoder`` and compute the metrics."""
    if eval_set.input_kind != encoder.input_kind:
        raise DatasetError(f"{encoder.name} encoder reads {encoder.input_kind!r} inputs, "
                           f"but {eval_set.name} provides {eval_set.input_kind!r}")
    if not len(eval_set):
        raise DatasetError(f"{eval_set.name} has no rows")
    readings: list[Reading] = []
    chunks = range(0, len(eval_set), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"encoding {Path(eval_set.name).name}", unit="batch", leave=False)
    t0 = time.perf_counter()
    in_context = eval_set.contexts is not None and bool(getattr(encoder, "reads_context", False))
    reader: Any = encoder  # a text encoder that reads context (checked above)
    if in_context:
        contexts = conversation_contexts(encoder, eval_set)
        for start in chunks:
            readings.extend(reader.encode_batch_in_context(eval_set.inputs[start:start + batch_size],
                                                            contexts[start:start + batch_size]))
    else:
        for start in chunks:
            readings.extend(encoder.encode_batch(eval_set.inputs[start:start + batch_size]))
    seconds = time.perf_counter() - t0
    out = evaluate_readings(eval_set, readings)
    if in_context:
        alone = [a.reading for a in reader.analyze(eval_set.inputs, contexts, use_context_head=False)]
        base = evaluate_readings(eval_set, alone)
        out["utterance_only"] = {k: base.get(k) for k in ("accuracy", "macro_f1", "weighted_f1", "per_class_f1",
                                                          "calibration", "mean_confidence")}
        with_turns = [i for i, c in enumerate(eval_set.contexts or []) if c]
        out["rows_with_context"] = len(with_turns)
        if with_turns and len(with_turns) < len(eval_set):
            sub = _subset(eval_set, with_turns)
            ctx_m = evaluate_readings(sub, [readings[i] for i in with_turns])
            alone_m = evaluate_readings(sub, [alone[i] for i in with_turns])
            out["only_rows_with_context"] = {
                "n": len(with_turns),
                "context": {k: ctx_m.get(k) for k in ("accuracy", "macro_f1", "weighted_f1")},
                "utterance_only": {k: alone_m.get(k) for k in ("accuracy", "macro_f1", "weighted_f1")}}
    elif eval_set.contexts is not None:
        out.setdefault("notes", []).append("the set has contexts, but this encoder reads messages alone")
    out["encoder"] = encoder.info()
    out["seconds"] = round(seconds, 3)
    out["ms_per_item"] = round(1000 * seconds / len(eval_set), 3)
    return out


def _subset(eval_set: EvalSet, rows: Sequence[int]) -> EvalSet:
    return EvalSet(name=eval_set.name, inputs=[eval_set.inputs[i] for i in rows],
                   emotions=[eval_set.emotions[i] for i in rows], vad=eval_set.vad[list(rows)],
                   input_kind=eval_set.input_kind, has_emotion=eval_set.has_emotion, has_vad=eval_set.has_vad,
                   contexts=None if eval_set.contexts is None else [eval_set.contexts[i] for i in rows])


def conversation_contexts(encoder: Any, eval_set: EvalSet) -> list[Any]:
    """Each row's `TextContext`: its turns, and as dialogue state the text-only fused reading of
    the person's earlier turns (turns alternate and the message answers the last one), as in
    training (`training.text_context.dialogue_states`)."""
    from empathic_agent.encode.text import TextContext
    from empathic_agent.training.text_context import dialogue_states, person_turns

    turns = eval_set.contexts or [()] * len(eval_set)
    person = [person_turns(t) for t in turns]
    earlier = sorted({t for p in person for t in p})
    readings = dict(zip(earlier, encoder.encode_batch(earlier))) if earlier else {}
    states = dialogue_states(readings, person)
    return [TextContext(t, s) for t, s in zip(turns, states)]


def write_reliability_png(results: dict[str, Any], path: Path | str) -> Path:
    """A reliability diagram (accuracy against confidence per bin, one panel per result that has
    a calibration table) as a PNG; needs Pillow (the ``face`` extra)."""
    from PIL import Image, ImageDraw

    panels = [(name, r["calibration"]) for name, r in results.items()
              if isinstance(r, dict) and isinstance(r.get("calibration"), dict) and r["calibration"].get("reliability")]
    if not panels:
        raise DatasetError("no result with a calibration table to draw")
    size, pad = 260, 40
    img = Image.new("RGB", (len(panels) * (size + pad) + pad, size + 2 * pad + 20), "white")
    draw = ImageDraw.Draw(img)
    for k, (name, cal) in enumerate(panels):
        x0, y0 = pad + k * (size + pad), pad
        draw.rectangle([x0, y0, x0 + size, y0 + size], outline="black")
        draw.line([x0, y0 + size, x0 + size, y0], fill=(170, 170, 170))  # perfect calibration
        total = sum(b["n"] for b in cal["reliability"])
        for b in cal["reliability"]:
            lo, hi = b["bin"]
            bx0, bx1 = x0 + lo * size + 2, x0 + hi * size - 2
            draw.rectangle([bx0, y0 + size - b["accuracy"] * size, bx1, y0 + size], fill=(70, 110, 190))
            cy = y0 + size - b["confidence"] * size
            draw.line([bx0, cy, bx1, cy], fill=(200, 40, 40), width=2)
            draw.text((bx0, y0 + size + 4), f"{b['n'] / total:.0%}" if b["n"] / total >= 0.05 else "", fill="black")
        draw.text((x0, y0 - 30), f"{name}", fill="black")
        draw.text((x0, y0 - 16), f"ECE {cal['ece']:.3f}  (bars: accuracy, red: confidence)", fill="black")
    out = Path(path)
    img.save(out)
    return out


# ---------------------------------------------------------------------------------------------
# Lexicon baselines (optional packages)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
#: NRC EmoLex emotions that are ours (anticipation and trust have no counterpart; positive and
#: negative give the valence proxy).
_NRC_OURS: Final[tuple[str, ...]] = ("joy", "sadness", "anger", "fear", "surprise", "disgust")


def _nrc_lexicon() -> dict[str, list[str]] | None:
    """NRC EmoLex word -> affects, read from the file inside the ``nrclex`` package.

    The package's own text path imports TextBlob/NLTK, which try to download corpora at run
    time, so the JSON is read directly and text is tokenised with a regex instead.
    """
    try:
        spec = importlib.util.find_spec("nrclex")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "nrc_en.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _nrc_predict(lexicon: dict[str, list[str]], texts: Iterable[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Category distributions (N, 7) and a valence proxy (N,) from NRC word counts."""
    probs, valence = [], []
    for text in texts:
        counts = dict.fromkeys(CATEGORIES, 0.0)
        pos = neg = 0
        for word in _WORD.findall((text or "").lower()):
            for affect in lexicon.get(word, ()):
                if affect in _NRC_OURS:
                    counts[affect] += 1
                elif affect == "positive":
                    pos += 1
                elif affect == "negative":
                    neg += 1
        if not any(counts.values()):
            counts["neutral"] = 1.0
        total = sum(counts.values())
        probs.append([counts[c] / total for c in CATEGORIES])
        valence.append((pos - neg) / (pos + neg) if pos + neg else 0.0)
    return np.array(probs), np.array(valence)


def _vader_valence(texts: Iterable[str]) -> NDArray[np.float64] | None:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        return None
    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t or "")["compound"] for t in texts])


def _valence_only(eval_set: EvalSet, valence: NDArray[np.float64]) -> NDArray[np.float64]:
    mean = np.full((len(eval_set), len(DIMENSIONS)), np.nan)
    mean[:, 0] = valence
    return mean


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "n_emotion", "accuracy", "macro_f1", "weighted_f1", "per_class_f1", "single_label",
            "pearson_valence")
    out = {k: metrics[k] for k in keys if k in metrics}
    if "single_label" in out:
        out["single_label"] = {k: out["single_label"][k] for k in ("n", "accuracy", "macro_f1")}
    return out


def lexicon_baselines(eval_set: EvalSet) -> dict[str, Any]:
    """VADER (valence) and NRC EmoLex (categories, valence proxy) on a text eval set.

    Each entry holds the applicable metrics, or ``{"skipped": why}``.
    """
    if eval_set.input_kind != INPUT_TEXT:
        return {"skipped": "lexicon baselines need text inputs"}
    texts = [t if isinstance(t, str) else "" for t in eval_set.inputs]
    out: dict[str, Any] = {}
    runners: dict[str, Callable[[], dict[str, Any]]] = {}

    def vader() -> dict[str, Any]:
        if not eval_set.has_vad or np.all(np.isnan(eval_set.vad[:, 0])):
            return {"skipped": "VADER gives valence only and the data has no valence labels"}
        val = _vader_valence(texts)
        if val is None:
            return {"skipped": "vaderSentiment is not installed (pip install vaderSentiment)"}
        res = _brief(evaluate_predictions(eval_set, vad_mean=_valence_only(eval_set, val)))
        res.pop("n_emotion", None)
        return {"what": "compound score as valence", **res}

    def nrc() -> dict[str, Any]:
        lexicon = _nrc_lexicon()
        if lexicon is None:
            return {"skipped": "nrclex is not installed (pip install --no-deps nrclex)"}
        probs, val = _nrc_predict(lexicon, texts)
        res = _brief(evaluate_predictions(eval_set, categories=probs if eval_set.has_emotion else None,
                                          vad_mean=_valence_only(eval_set, val)))
        return {"what": "most frequent NRC emotion (no emotion word -> neutral); "
                        "(positive - negative) / (positive + negative) as valence", **res}

    runners["vader"] = vader
    runners["nrc_emolex"] = nrc
    for name, run in runners.items():
        out[name] = run()
    return out
