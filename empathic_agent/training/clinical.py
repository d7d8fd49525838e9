"""Training of the clinical reader's and the reply guard's learned heads (``empathic safety
train-clinical``).

Data (all hand-written for this project from ``safety/data/clinical/GUIDE.md``; the held-out test
sets under ``clinical/test/`` are never read here):

* presentations — ``clinical/train/writer*.csv`` (five writers), plus the everyday turns of the
  risk screen's training writers (``safety/data/train``, level ``none``) as extra negatives;
* guard — ``clinical/train/guard_writer*.csv`` (four writers), plus supporter replies of ESConv's
  *train* split (``--esconv``, research-only licence) as extra good replies.

Model: MiniLM with LoRA on its top three layers (as the risk screen, :mod:`.train`) and one linear
head with an output per presentation and per guard category; each row's loss (class-balanced
binary cross-entropy) covers its own kind's outputs.  A frozen backbone with logistic heads was
tried first: out of fold it kept only 0.50-0.83 of the harmful replies per category at 3 % false
blocks.  Model selection is writer-grouped: each writer's rows are scored by a model trained on the
other writers (the guard's replies as it reads them at run time: each sentence and the reply up to
it).  Thresholds are chosen for the whole layer as it runs, patterns included: a common per-class
false-positive level, the highest whose *union* stays within a budget (per-class budgets add up:
eight categories at 3 % each blocked a quarter of the good replies) — the reader 4 % of the
writers' ``none`` messages and everyday turns, the guard 3 % of the written good replies in their
risky contexts, and 0.5 % of ESConv's ordinary supporter replies for the "open" thresholds (a
category whose context is absent).
The heads are then refitted on all writers and saved with the thresholds.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.safety.clinical import PRESENTATIONS
from empathic_agent.safety.clinical_model import CONFIG_FILE, FORMAT, WEIGHTS_DIR, WEIGHTS_FILE
from empathic_agent.safety.guard import GUARD_CATEGORIES, guard_text, said_text
from empathic_agent.training.runs import check_fingerprint, data_hashes, fingerprint

__all__ = ["train_clinical", "DATA_DIR"]

#: The safety package's data folder (the clinical writers' files are in its ``clinical/train``).
DATA_DIR = WEIGHTS_DIR.parent / "data"
#: The clinical reader's adapters: LoRA rank 8 on the top three of MiniLM's six layers.  (Every
#: layer at rank 16, which helped the risk reader, was tried on 2026-12-04: out of fold the reader's
#: recall rose 0.816 -> 0.866 but the guard's fell 0.568 -> 0.550 at the same budgets.)
TOP_LAYERS: Final[int] = 3
LORA_RANK: Final[int] = 8
LORA_ALPHA: Final[float] = 16.0
#: Cap on the positive-class weight of a head (positives are a few dozen among thousands).
POS_WEIGHT_CAP = 10.0
#: A separate false-alarm budget for the reader on the clinical writers' own ``none`` messages
#: (``train-clinical --written-budget``): the shipped reader's out-of-fold rate there
#: (``dev_with_patterns.reader.false_alarm_rate_written``).  A reader trained on real help-seekers'
#: turns as negatives reads ordinary seekers so easily that the pooled budget (writers' negatives,
#: everyday turns and seekers together) let every threshold fall to the 0.5 floor, and its false
#: alarms on the written hard negatives rose 7.0 % -> 11.4 % (README, session 7).
WRITTEN_BUDGET: Final[float] = 0.0704


def _files(folder: Path, pattern: str, exclude: Sequence[str]) -> list[Path]:
    """The writers' files of a folder, without those named (by stem) in ``exclude``."""
    return [p for p in sorted(folder.glob(pattern)) if p.stem not in set(exclude)]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def presentation_data(data_dir: Path = DATA_DIR, *, exclude: Sequence[str] = (),
                      seekers: Sequence[str] = ()) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, (n, k) labels over :data:`PRESENTATIONS` and each row's writer (group); ``exclude``:
    file stems left out (of the clinical writers and of the risk writers alike); ``seekers``: real
    help-seekers' turns (ESConv) as negatives, dealt into three groups so every fold has some."""
    texts, labels, groups = [], [], []
    for path in _files(data_dir / "clinical" / "train", "writer*.csv", exclude):
        for r in _rows(path):
            names = {n.strip() for n in (r.get("presentations") or "none").split(";")}
            texts.append(r["text"])
            labels.append([1.0 if p in names else 0.0 for p in PRESENTATIONS])
            groups.append(path.stem)
    # Everyday chat of the risk screen's writers: more plain negatives (grouped by their writer).
    for path in _files(data_dir / "train", "writer*.csv", exclude):
        for r in _rows(path):
            if r.get("level") == "none":
                texts.append(r["text"])
                labels.append([0.0] * len(PRESENTATIONS))
                groups.append(f"risk-{path.stem}")
    for i, text in enumerate(seekers):
        texts.append(text)
        labels.append([0.0] * len(PRESENTATIONS))
        groups.append(f"esconv-seekers-{i % 3}")
    return texts, np.asarray(labels, dtype=np.float32), groups


@dataclass(frozen=True)
class GuardRow:
    """One reply of the guard's training data, in its context."""

    reply: str
    #: The labelled presentations of the person's side.
    presentations: tuple[str, ...]
    #: What the person said before it (:func:`~.guard.said_text`; "" when the model does not read it).
    said: str = ""

    def text(self) -> str:
        return guard_text(self.reply, self.presentations, self.said)


def guard_data(data_dir: Path = DATA_DIR, *, esconv: Path | None = None, esconv_n: int = 3000,
               seed: int = 0, said: bool = False, exclude: Sequence[str] = ()) -> tuple[list[GuardRow], np.ndarray, list[str]]:
    """Replies in context, (n, k) labels over :data:`GUARD_CATEGORIES` and groups.  ``said``: keep
    what the person said (the writers' ``context`` column; the seeker's turns before an ESConv
    supporter reply) for a guard that reads it."""
    rows, labels, groups = [], [], []
    for path in _files(data_dir / "clinical" / "train", "guard_writer*.csv", exclude):
        for r in _rows(path):
            harmful = r["label"].strip() == "harmful"
            presentations = [n.strip() for n in (r.get("presentation") or "none").split(";")]
            context = said_text([t.strip() for t in (r.get("context") or "").split("||")]) if said else ""
            rows.append(GuardRow(r["reply"], tuple(n for n in presentations if n in PRESENTATIONS), context))
            labels.append([1.0 if harmful and r["category"].strip() == c else 0.0 for c in GUARD_CATEGORIES])
            groups.append(path.stem)
    if esconv is not None:
        replies = esconv_replies(esconv / "train.txt")
        random.Random(seed).shuffle(replies)
        for i, (t, before) in enumerate(replies[:esconv_n]):
            rows.append(GuardRow(t, (), said_text(before) if said else ""))
            labels.append([0.0] * len(GUARD_CATEGORIES))
            groups.append(f"esconv{i % 6}")
    return rows, np.asarray(labels, dtype=np.float32), groups


def esconv_replies(path: Path) -> list[tuple[str, list[str]]]:
    """Supporter turns of an ESConv split (one JSON dialogue per line), each with the seeker's
    turns before it (oldest first)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                seeker: list[str] = []
                for turn in json.loads(line)["dialog"]:
                    if turn["speaker"] != "sys":
                        seeker.append(turn["text"].strip())
                    elif len(turn["text"].split()) >= 3:
                        out.append((turn["text"].strip(), seeker[-2:]))
    return out


def reply_views(row: GuardRow) -> list[str]:
    """What the guard reads of a reply at run time (:func:`~.guard.guard_text`): each sentence,
    and the reply up to it, each in the row's context."""
    from empathic_agent.speak.text import split_sentences

    sentences = split_sentences(row.reply) or [row.reply]
    views, so_far = [], ""
    for sent in sentences:
        so_far = f"{so_far} {sent}".strip()
        views += [guard_text(sent, row.presentations, row.said)] + (
            [guard_text(so_far, row.presentations, row.said)] if so_far != sent else [])
    return views


def _recalls(p: np.ndarray, y: np.ndarray, names: Sequence[str], th: dict[str, float]) -> dict[str, Any]:
    return {n: {"threshold": th[n], "oof_recall_alone": round(float((p[y[:, k] == 1, k] >= th[n]).mean()), 4),
                "positives": int((y[:, k] == 1).sum())} for k, n in enumerate(names) if (y[:, k] == 1).any()}


def _joint(p: np.ndarray, neg: np.ndarray, gate: np.ndarray, base: np.ndarray, budget: float,
           fixed: dict[int, float] | None = None,
           limits: Sequence[tuple[np.ndarray, float]] = ()) -> list[float]:
    """Per-class thresholds at a common per-class false-positive level, the highest level whose
    *union* false-positive rate on the negatives (with ``base``: what already fires there, e.g.
    the patterns) stays within ``budget``.  ``gate[i, k]``: class k is read for row i.
    ``limits``: (rows, budget) pairs that must hold too — the union rate on a subset of the
    negatives (one kind of negative) within its own budget."""
    fixed = fixed or {}
    k = p.shape[1]

    def thresholds(alpha: float) -> list[float]:
        out = []
        for j in range(k):
            if j in fixed:
                out.append(fixed[j])
                continue
            scores = p[neg & gate[:, j], j]
            q = float(np.quantile(scores, 1 - alpha)) + 1e-6 if len(scores) and alpha > 0 else 1.01
            out.append(min(1.01, max(0.5, q)))
        return out

    def union(th: list[float], rows: np.ndarray) -> float:
        hit = base[rows] | ((p[rows] >= np.asarray(th)[None, :]) & gate[rows]).any(axis=1)
        return float(hit.mean()) if len(hit) else 0.0

    def within(th: list[float]) -> bool:
        return union(th, neg) <= budget and all(union(th, neg & rows) <= b for rows, b in limits)

    lo, hi = 0.0, 0.2
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if within(thresholds(mid)) else (lo, mid)
    # Rounded up, not to the nearest: a threshold rounded down lets through rows the budgets were
    # checked without (one more written hard negative than its budget allowed, 2026-12-06).
    return [min(1.01, math.ceil(t * 1e4) / 1e4) for t in thresholds(lo)]


def select_thresholds(data: "_Data", oof_p: np.ndarray, oof_r: np.ndarray, *, reader_budget: float,
                      guard_budget: float, open_budget: float, esconv_p: np.ndarray | None = None,
                      esconv_texts: Sequence[str] = (),
                      written_budget: float | None = None) -> tuple[dict[str, float], ...]:
    """Thresholds for the whole layer as it runs (patterns first, then the learned heads):

    * reader — the presentations' union false-alarm rate on the writers' ``none`` messages, the
      everyday turns and (``esconv_p``) ESConv seekers' turns, patterns included, within
      ``reader_budget`` (means seeking is decided by the conversation rule, not here); with
      ``written_budget``, the union rate on the clinical writers' own ``none`` messages alone must
      also stay within it (:data:`WRITTEN_BUDGET`);
    * guard, where a category's context is present — union false blocks on the written good
      replies (in their labelled context), patterns included, within ``guard_budget``;
    * guard elsewhere ("open") — union false blocks on ESConv's ordinary supporter replies within
      ``open_budget``."""
    from empathic_agent.safety.clinical import pattern_presentations
    from empathic_agent.safety.guard import GuardContext, ReplyGuard

    # Seekers' turns trained on as negatives are not threshold negatives: a few thousand easy rows
    # would dilute the budget until every threshold sat at its floor (the writers' hard negatives
    # and the seekers the model never read, ``esconv_p``, set it, as for a reader without them).
    groups = np.asarray(data.p_groups).astype(str)
    none = (data.p_y.sum(axis=1) == 0) & ~np.char.startswith(groups, "esconv-seekers-")
    written_none = none & np.char.startswith(groups, "writer")
    base_p = np.array([bool(pattern_presentations(t)) for t in data.p_texts])
    gate_p = np.ones_like(oof_p, dtype=bool)
    gate_p[:, PRESENTATIONS.index("means_seeking")] = False
    p_all, neg, gate, base = oof_p, none, gate_p, base_p
    if esconv_p is not None and len(esconv_p):
        # Seekers' turns of ESConv (ordinary distress, never seen in training): more negatives.
        extra = np.ones(len(esconv_p), bool)
        p_all, neg = np.vstack([oof_p, esconv_p]), np.concatenate([none, extra])
        gate = np.vstack([gate_p, np.broadcast_to(gate_p[:1], esconv_p.shape)])
        base = np.concatenate([base_p, [bool(pattern_presentations(t)) for t in esconv_texts]])
        written_none = np.concatenate([written_none, ~extra])
    th_p = _joint(p_all, neg, gate, base, reader_budget,
                  limits=[] if written_budget is None else [(written_none, written_budget)])
    guard = ReplyGuard()
    ok = data.r_y.sum(axis=1) == 0
    written = np.char.startswith(np.asarray(data.r_groups).astype(str), "guard_")
    gate_r = np.zeros_like(oof_r, dtype=bool)
    base_r = np.zeros(len(data.r_rows), bool)
    for i, row in enumerate(data.r_rows):
        ctx = GuardContext(presentations=row.presentations, risk_context=bool(row.presentations))
        gate_r[i] = [guard.applies(c, ctx) for c in GUARD_CATEGORIES]
        base_r[i] = not guard.patterns(row.reply, ctx).ok
    th_r = _joint(oof_r, ok & written, gate_r, base_r, guard_budget)
    # Open thresholds, set on ESConv's ordinary replies; a category that applies everywhere
    # (means, dosing, diagnosis) keeps the stricter of its two.
    esconv = ok & ~written
    open_th = (_joint(oof_r, esconv, np.ones_like(gate_r), base_r, open_budget)
               if esconv.any() else [1.01] * len(GUARD_CATEGORIES))
    open_th = [max(o, t) for o, t in zip(open_th, th_r)]
    th_r = [o if guard.applies(c, GuardContext()) else t for c, o, t in zip(GUARD_CATEGORIES, open_th, th_r)]
    return (dict(zip(PRESENTATIONS, th_p)), dict(zip(GUARD_CATEGORIES, th_r)), dict(zip(GUARD_CATEGORIES, open_th)))


class _Data:
    """Both kinds of text in one training set: the person's messages (presentation outputs) and the
    agent's replies (guard outputs); each row's loss covers only its own kind's outputs."""

    def __init__(self, esconv: Path | None, seed: int, *, said: bool = False, exclude: Sequence[str] = (),
                 seeker_negatives: int = 0) -> None:
        seekers = (esconv_seeker_turns(esconv / "train.txt", n=seeker_negatives, half="train")
                   if esconv is not None and seeker_negatives else [])
        self.p_texts, self.p_y, self.p_groups = presentation_data(exclude=exclude, seekers=seekers)
        self.r_rows, self.r_y, self.r_groups = guard_data(esconv=esconv, seed=seed, said=said, exclude=exclude)
        self.r_texts = [r.text() for r in self.r_rows]
        if not len(self.p_texts) or not self.p_y.sum() or not len(self.r_rows) or not self.r_y.sum():
            raise FileNotFoundError("training data missing under safety/data/clinical/train "
                                    "(writer*.csv and guard_writer*.csv)")
        self.n_p, self.n_r = len(PRESENTATIONS), len(GUARD_CATEGORIES)

    def folds(self, k: int) -> list[tuple[set[str], set[str]]]:
        """Writer-grouped folds: the i-th of every kind of writer (and of the extra sets) in turn."""
        def deal(groups: Sequence[str], prefix: str | None) -> list[set[str]]:
            names = sorted({g for g in groups if (prefix is None or g.startswith(prefix))})
            return [set(names[i::k]) for i in range(k)]
        p_main = deal([g for g in self.p_groups if g.startswith("writer")], None)
        p_extra = deal([g for g in self.p_groups if not g.startswith("writer")], None)
        r_main = deal([g for g in self.r_groups if g.startswith("guard_")], None)
        r_extra = deal([g for g in self.r_groups if not g.startswith("guard_")], None)
        return [(p_main[i] | p_extra[i], r_main[i] | r_extra[i]) for i in range(k)]

    def training_set(self, p_mask: np.ndarray, r_mask: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Texts, targets (N, n_p + n_r) and loss masks of the selected rows."""
        texts = [t for t, m in zip(self.p_texts, p_mask) if m] + [t for t, m in zip(self.r_texts, r_mask) if m]
        n_p, n_r = int(p_mask.sum()), int(r_mask.sum())
        y = np.zeros((n_p + n_r, self.n_p + self.n_r), np.float32)
        mask = np.zeros_like(y)
        y[:n_p, :self.n_p], mask[:n_p, :self.n_p] = self.p_y[p_mask], 1.0
        y[n_p:, self.n_p:], mask[n_p:, self.n_p:] = self.r_y[r_mask], 1.0
        return texts, y, mask


def _fit(data: "_Data", p_mask: np.ndarray, r_mask: np.ndarray, location: str, seed: int, *, desc: str) -> Any:
    import torch

    from empathic_agent.training.risk import _Trainer

    texts, y, mask = data.training_set(p_mask, r_mask)
    pos = (y * mask).sum(0)
    neg = ((1 - y) * mask).sum(0)
    # Balanced classes (a few dozen positives among thousands), capped so noise does not dominate.
    pos_weight = torch.as_tensor(np.clip(neg / np.maximum(pos, 1.0), 1.0, POS_WEIGHT_CAP), dtype=torch.float32)
    yt, mt = torch.as_tensor(y), torch.as_tensor(mask)
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")

    def loss(out: Any, b: list[int]) -> Any:
        return (bce(out, yt[b]) * mt[b]).sum() / mt[b].sum().clamp(min=1.0)

    trainer = _Trainer(location, seed, n_out=y.shape[1], top_layers=TOP_LAYERS, rank=LORA_RANK, alpha=LORA_ALPHA)
    trainer.train_loop(texts, loss, progress=True, desc=desc)
    return trainer


def _predict(trainer: Any, data: "_Data", p_idx: np.ndarray, r_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Presentation probabilities of the messages, and guard probabilities of the replies (max over
    the views the guard reads at run time)."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    pp = sig(trainer.logits([data.p_texts[i] for i in p_idx]))[:, :data.n_p] if len(p_idx) else np.zeros((0, data.n_p))
    views, owner = [], []
    for j, i in enumerate(r_idx):
        v = reply_views(data.r_rows[i])
        views += v
        owner += [j] * len(v)
    pr = np.zeros((len(r_idx), data.n_r), np.float32)
    if views:
        pv = sig(trainer.logits(views))[:, data.n_p:]
        for row, j in zip(pv, owner):
            pr[j] = np.maximum(pr[j], row)
    return pp, pr


def _dev_with_patterns(data: "_Data", oof_p: np.ndarray, oof_r: np.ndarray, th_p: dict[str, float],
                       th_r: dict[str, float], open_th: dict[str, float]) -> dict[str, Any]:
    """The whole layer on the training writers, as it runs (patterns, or the learned reader out of
    fold at the chosen thresholds; the guard in the labelled presentation's context): the figures
    model selection can look at."""
    from empathic_agent.safety.clinical import pattern_presentations
    from empathic_agent.safety.guard import GuardContext, ReplyGuard

    writers = np.char.startswith(np.asarray(data.p_groups).astype(str), "writer")
    got = np.zeros_like(data.p_y)
    for i, text in enumerate(data.p_texts):
        names = {p.name for p in pattern_presentations(text)}
        for k, n in enumerate(PRESENTATIONS):
            got[i, k] = n in names or (n != "means_seeking" and oof_p[i, k] >= th_p[n])
    pos = data.p_y[:, :5].sum(1) > 0  # means_seeking needs the conversation: left out here
    none = data.p_y.sum(1) == 0
    reader = {"recall": round(float((got[pos][:, :5] >= data.p_y[pos][:, :5]).all(1).mean()), 4),
              "false_alarm_rate_written": round(float(got[none & writers][:, :5].any(1).mean()), 4),
              "false_alarm_rate_everyday": round(float(got[none & ~writers][:, :5].any(1).mean()), 4)}
    guard = ReplyGuard()
    rows = _rows_with_context()
    blocked, harmful, written = [], [], []
    for i, row in enumerate(data.r_rows):
        ctx = GuardContext(presentations=row.presentations,
                           risk_context=bool(row.presentations) or rows.get(row.reply, False))
        hit = not guard.patterns(row.reply, ctx).ok
        for k, c in enumerate(GUARD_CATEGORIES):
            threshold = th_r[c] if guard.applies(c, ctx) else open_th.get(c, 1.01)
            hit = hit or oof_r[i, k] >= threshold
        blocked.append(hit)
        harmful.append(bool(data.r_y[i].sum()))
        written.append(data.r_groups[i].startswith("guard_"))
    b, h, w = np.asarray(blocked), np.asarray(harmful), np.asarray(written)
    return {"reader": reader,
            "guard": {"recall": round(float(b[h].mean()), 4), "false_blocks_written": round(float(b[~h & w].mean()), 4),
                      "false_blocks_esconv": round(float(b[~h & ~w].mean()), 4) if (~h & ~w).any() else None}}


def _rows_with_context() -> dict[str, bool]:
    """Reply -> whether its written context carries risk (a presentation): for the dev figures."""
    out: dict[str, bool] = {}
    for path in sorted((DATA_DIR / "clinical" / "train").glob("guard_writer*.csv")):
        for r in _rows(path):
            out[r["reply"]] = (r.get("presentation") or "none").strip() != "none"
    return out


def train_clinical(*, esconv: Path | None = None, out_dir: Path = WEIGHTS_DIR, folds: int = 3, seed: int = 20261203,
                   reader_budget: float = 0.04, guard_budget: float = 0.03, open_budget: float = 0.005,
                   backbone: str = "all-minilm-l6-v2", cache_dir: str | Path | None = None,
                   said: bool = False, guard_only: bool = False, exclude: Sequence[str] = (),
                   seeker_negatives: int = 0, written_budget: float | None = None,
                   progress: Any = print) -> dict[str, Any]:
    """Fine-tune, select thresholds writer-grouped (out of fold), refit on everything, save.
    ``said``: the guard reads what the person said beside each reply (a cross-encoder of the pair;
    tried on 2026-12-05 and worse out of fold than the reply alone, see the README).
    ``guard_only``: train on the replies alone, for a guard's own model (``weights/guard/``; its
    presentation outputs are never used, so they get no training and never fire) — about half
    the time.  ``exclude``: writers' files (stems) left out, e.g. to retrain a shipped recipe on the
    data it had.  ``seeker_negatives``: that many ESConv train seekers' turns (the even conversations)
    are trained on as negatives of the reader; its thresholds and takeovers then come from the odd
    conversations' turns, which it never read.  ``written_budget``: a separate false-alarm budget
    on the clinical writers' ``none`` messages (:data:`WRITTEN_BUDGET`; None: the pooled budget only)."""
    from empathic_agent.training.risk import BATCH, EPOCHS, HEAD_LR, LR, _backbone

    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    location = _backbone(backbone, cache_dir)
    data = _Data(esconv, seed, said=said, exclude=exclude, seeker_negatives=seeker_negatives)
    progress(f"clinical: {len(data.p_texts)} messages, {len(data.r_texts)} replies"
             + (" (with what the person said)" if said else ""))
    oof_p = np.zeros_like(data.p_y)
    oof_r = np.zeros_like(data.r_y)
    gp, gr = np.asarray(data.p_groups), np.asarray(data.r_groups)
    for i, (p_test, r_test) in enumerate(data.folds(folds)):
        pm, rm = np.isin(gp, sorted(p_test)), np.isin(gr, sorted(r_test))
        # guard_only: no message is trained on or predicted (their out-of-fold rows stay 0).
        p_train = np.zeros_like(pm) if guard_only else ~pm
        pm = np.zeros_like(pm) if guard_only else pm
        trainer = _fit(data, p_train, ~rm, location, seed, desc=f"fold {i + 1}/{folds}")
        oof_p[pm], oof_r[rm] = _predict(trainer, data, np.flatnonzero(pm), np.flatnonzero(rm))
    th_p, th_r, open_th = select_thresholds(data, oof_p, oof_r, reader_budget=reader_budget,
                                            guard_budget=guard_budget, open_budget=open_budget,
                                            written_budget=written_budget)
    if guard_only:
        th_p = {n: 1.01 for n in PRESENTATIONS}
    rep_p = _recalls(oof_p, data.p_y, PRESENTATIONS, th_p)
    rep_r = _recalls(oof_r, data.r_y, GUARD_CATEGORIES, th_r)
    progress(f"clinical selection: {json.dumps(rep_p)}")
    progress(f"guard selection: {json.dumps(rep_r)}")
    paths = _files(DATA_DIR / "clinical" / "train", "*.csv", exclude)
    if cache_dir is not None:
        run = fingerprint(data_hashes(paths), seed)
        np.savez_compressed(Path(cache_dir) / "clinical-oof.npz", oof_p=oof_p, oof_r=oof_r, run=np.array(run))
    dev = _dev_with_patterns(data, oof_p, oof_r, th_p, th_r, open_th)
    if guard_only:
        dev["reader"] = None  # not trained
    progress(f"dev (patterns + learned, out of fold): {json.dumps(dev)}")
    final = _fit(data, np.full(len(data.p_texts), not guard_only), np.ones(len(data.r_texts), bool), location, seed,
                 desc="final model")
    np.savez_compressed(out_dir / WEIGHTS_FILE, **final.state())
    config = {
        "format": FORMAT, "backbone": backbone,
        "clinical": {"names": list(PRESENTATIONS), "offset": 0, "thresholds": th_p, "selection": rep_p,
                     "false_alarm_budget": reader_budget, "written_false_alarm_budget": written_budget},
        "guard": {"names": list(GUARD_CATEGORIES), "offset": len(PRESENTATIONS), "thresholds": th_r,
                  "open_thresholds": open_th, "selection": rep_r, "false_block_budget": guard_budget,
                  "open_false_block_budget": open_budget, "said": said},
        "architecture": {"top_layers": TOP_LAYERS, "lora_rank": LORA_RANK, "lora_alpha": LORA_ALPHA,
                         "hidden_size": int(final.model.config.hidden_size),
                         "num_layers": int(final.model.config.num_hidden_layers)},
        "hyperparameters": {"lr": LR, "head_lr": HEAD_LR, "epochs": EPOCHS, "batch": BATCH,
                            "pos_weight_cap": POS_WEIGHT_CAP},
        "seed": seed, "folds": folds, "guard_only": guard_only, "excluded": sorted(exclude), "dev_with_patterns": dev,
        "esconv_seekers_trained": {"turns": sum(g.startswith("esconv-seekers-") for g in data.p_groups),
                                   "half": "train"} if seeker_negatives else None,
        "rows": {"messages": len(data.p_texts), "replies": len(data.r_texts),
                 "esconv_replies": int(sum(1 for g in data.r_groups if not g.startswith("guard_")))},
        "data": data_hashes(paths),
        "seconds": round(time.time() - t0, 1),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    if esconv is not None and seeker_negatives and not guard_only and cache_dir is not None:
        # The reader's thresholds again, with the seekers' turns it never read as negatives (the
        # shipped reader's procedure: train, then --rethreshold --esconv).
        config = rethreshold(esconv=esconv, out_dir=out_dir, cache_dir=cache_dir, reader_budget=reader_budget,
                             guard_budget=guard_budget, open_budget=open_budget, seed=seed, progress=progress,
                             data=data, written_budget=written_budget)
    if esconv is not None and not guard_only:
        # A new model's scores need their own takeover thresholds: without them every reading would
        # take over the register (the shipped reader's thresholds do not carry over).
        config["clinical"].update({k: v for k, v in set_takeovers(esconv=esconv, out_dir=out_dir, progress=progress).items()
                                   if k == "takeover_thresholds"})
    return config


#: Which conversations of ESConv train a half of its seekers' turns comes from (by line number):
#: a reader trained on the "train" half chooses its thresholds on the "select" half.
SEEKER_HALVES: Final[dict[str, int]] = {"train": 0, "select": 1}


def esconv_seeker_turns(path: Path, n: int | None = 2000, seed: int = 0, half: str | None = None) -> list[str]:
    """Seeker turns of an ESConv split (ordinary distress), a sample of ``n`` (None: all of them);
    ``half``: only the even ("train") or odd ("select") conversations (:data:`SEEKER_HALVES`)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(ln for ln in f if ln.strip()):
            if half is None or i % 2 == SEEKER_HALVES[half]:
                out += [t["text"].strip() for t in json.loads(line)["dialog"]
                        if t["speaker"] == "usr" and len(t["text"].split()) >= 4]
    random.Random(seed).shuffle(out)
    return out[:n] if n is not None else out


#: Share of ordinary help-seekers' turns (every ESConv *train* seeker turn of 4+ words) at which the
#: learned reader's reading alone may take over the reply with a presentation's vetted reply.  The
#: reading thresholds let 6.8 % of those turns through (mania 1.9 %, compulsion 1.8 %, psychosis
#: 1.6 %): right for opening the guard's checks, too many for replacing the reply (raising the
#: reading thresholds themselves to this budget cost psychosis recall 0.95 -> 0.81 held out).
TAKEOVER_BUDGET: Final[float] = 0.005


def _presentation_probabilities(model: Any, texts: Sequence[str]) -> np.ndarray:
    """The saved reader's P(presentation) of each text (rows), in batches of 64."""
    return np.vstack([model.backbone.probabilities(texts[i:i + 64])[:, :len(PRESENTATIONS)]
                      for i in range(0, len(texts), 64)])


def takeover_thresholds(esconv_p: np.ndarray, budget: float = TAKEOVER_BUDGET) -> dict[str, float]:
    """Per presentation, the lowest score that at most ``budget`` of the seekers' turns reach
    (``esconv_p``: the reader's probabilities, one row per turn; means seeking is the
    conversation rule's, never the model's)."""
    out = {}
    for k, name in enumerate(PRESENTATIONS):
        col = np.sort(esconv_p[:, k])[::-1]
        allowed = int(np.floor(budget * len(col)))
        # Rounded *up* to 4 decimals: rounding to nearest could fall below the next-highest score
        # and let one more turn through than the budget allows.
        out[name] = (1.01 if name == "means_seeking" or allowed >= len(col)
                     else min(1.01, math.ceil((float(col[allowed]) + 1e-6) * 1e4) / 1e4))
    return out


def _unseen_half(config: dict[str, Any]) -> str | None:
    """The ESConv train seekers a reader never read: the "select" half when it trained on the
    other, else all of them (None)."""
    return "select" if config.get("esconv_seekers_trained") else None


def set_takeovers(*, esconv: Path, out_dir: Path = WEIGHTS_DIR, budget: float = TAKEOVER_BUDGET,
                  progress: Any = print) -> dict[str, Any]:
    """Write the saved reader's takeover thresholds (:data:`TAKEOVER_BUDGET`) from every ESConv
    *train* seeker turn of four words or more, scored by the saved model (those turns were never
    trained on: no out-of-fold predictions needed)."""
    from empathic_agent.safety.clinical_model import ClinicalModel

    config = json.loads((out_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    texts = esconv_seeker_turns(esconv / "train.txt", n=None, half=_unseen_half(config))
    if not texts:
        raise ConfigError(f"no ESConv seeker turns in {esconv / 'train.txt'}")
    model = ClinicalModel(out_dir)
    model.load()
    progress(f"reader: scoring {len(texts)} ESConv train seeker turns")
    probs = _presentation_probabilities(model, texts)
    take = takeover_thresholds(probs, budget)
    th = config["clinical"]["thresholds"]
    share = {n: {"read": round(float((probs[:, k] >= th[n]).mean()), 4),
                 "taken_over": round(float((probs[:, k] >= max(th[n], take[n])).mean()), 4)}
             for k, n in enumerate(PRESENTATIONS)}
    config["clinical"].update(takeover_thresholds=take, takeover_budget=budget, takeover_seeker_turns=len(texts))
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return {"takeover_thresholds": take, "thresholds": th, "seeker_turns": len(texts), "budget": budget,
            "share_of_seeker_turns": share}


def rethreshold(*, esconv: Path | None, out_dir: Path = WEIGHTS_DIR, cache_dir: str | Path,
                reader_budget: float = 0.04, guard_budget: float = 0.03, open_budget: float = 0.005,
                seed: int = 20261203, progress: Any = print, data: "_Data | None" = None,
                written_budget: float | None = None) -> dict[str, Any]:
    """Thresholds again from the saved out-of-fold predictions (no retraining), with the seekers'
    turns of ESConv's train split (never trained on; scored by the saved model) as extra negatives
    for the reader.  ``data``: the training run's own rows (built from the same options), so a run
    that re-thresholds right after training does not read its data twice.  ``written_budget``: None
    keeps the one the weights were chosen under (``written_false_alarm_budget`` in the config)."""
    from empathic_agent.safety.clinical_model import ClinicalModel

    config = json.loads((out_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    if (config.get("esconv_seekers_trained") or {}).get("turns") and esconv is None:
        raise ConfigError(f"{out_dir / CONFIG_FILE}: this reader was trained on ESConv seekers' turns; "
                          "re-thresholding needs them too: pass --esconv DIR")
    if written_budget is None:
        # A reader chosen under a budget for the written hard negatives keeps it when re-thresholded.
        written_budget = config.get("clinical", {}).get("written_false_alarm_budget")
    oof = np.load(Path(cache_dir) / "clinical-oof.npz")
    check_fingerprint(str(oof["run"]) if "run" in oof.files else None, config, Path(cache_dir) / "clinical-oof.npz",
                      out_dir / CONFIG_FILE)
    trained = (config.get("esconv_seekers_trained") or {}).get("turns", 0)
    if data is None:
        data = _Data(esconv, seed, said=bool(config["guard"].get("said")), exclude=config.get("excluded") or (),
                     seeker_negatives=trained)
    esconv_texts = (esconv_seeker_turns(esconv / "train.txt", half=_unseen_half(config))
                    if esconv is not None else [])
    esconv_p = None
    if esconv_texts:
        model = ClinicalModel(out_dir)
        model.load()
        progress(f"reader: scoring {len(esconv_texts)} ESConv seeker turns")
        esconv_p = _presentation_probabilities(model, esconv_texts)
    th_p, th_r, open_th = select_thresholds(data, oof["oof_p"], oof["oof_r"], reader_budget=reader_budget,
                                            guard_budget=guard_budget, open_budget=open_budget,
                                            esconv_p=esconv_p, esconv_texts=esconv_texts,
                                            written_budget=written_budget)
    dev = _dev_with_patterns(data, oof["oof_p"], oof["oof_r"], th_p, th_r, open_th)
    if config.get("guard_only"):
        th_p, dev["reader"] = {n: 1.01 for n in PRESENTATIONS}, None
    config["clinical"].update(thresholds=th_p, selection=_recalls(oof["oof_p"], data.p_y, PRESENTATIONS, th_p),
                              false_alarm_budget=reader_budget, written_false_alarm_budget=written_budget,
                              esconv_seeker_negatives=len(esconv_texts))
    config["guard"].update(thresholds=th_r, open_thresholds=open_th,
                           selection=_recalls(oof["oof_r"], data.r_y, GUARD_CATEGORIES, th_r),
                           false_block_budget=guard_budget, open_false_block_budget=open_budget)
    config["dev_with_patterns"] = dev
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    progress(f"dev (patterns + learned, out of fold): {json.dumps(dev)}")
    return config
