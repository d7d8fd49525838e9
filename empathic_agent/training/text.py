"""Training of the text emotion encoder (``empathic encoders train text``).

Recipe (LP-FT: a linear-probe stage, then fine-tuning; Kumar et al. 2022), multi-task on
EmoBank (VAD) and GoEmotions-Ekman (categories), train split to train, dev to select and
calibrate, test only to report:

1. **Tokenise and cache.**  Every sentence is tokenised once (``max_length`` tokens).  The bottom
   ``6 - top_layers`` MiniLM layers stay frozen, so their output is computed once and cached
   (fp16, on disk in the work dir, reused on resume); the same pass gives the frozen model's
   pooled vectors.
2. **Frozen probe.**  The heads are trained on the frozen model's vectors: this is the
   "frozen backbone" baseline the model card reports, and the heads' starting point.  The heads
   read two mean-pooled vectors, the last layer's and the last frozen layer's (concatenated):
   the middle layer carries more of arousal and dominance (ridge on EmoBank dev, frozen model:
   last layer r = .63/.48/.29 for V/A/D, middle layer .62/.51/.32, both .66/.52/.32).
3. **Fine-tune.**  LoRA adapters + biases/LayerNorms of the top layers and the heads, AdamW with
   linear warm-up/decay, batches of one task each (GoEmotions once, EmoBank ``emobank_repeats``
   times per epoch), grouped by length.  VAD loss: MSE for the mean (in units of the labels'
   variance, so both tasks pull on the shared layers with similar force) plus the Gaussian NLL for
   the log-variance (with the mean detached, so the variance never trades off accuracy);
   categories: cross-entropy against soft targets (a multi-label row's gold set shares the mass
   equally).  Checkpoints every ``checkpoint_every`` steps and at each epoch's end; a rerun
   resumes.  The epoch with the best dev score (mean VAD Pearson r + macro-F1) is kept.
4. **Calibrate on dev.**  Category logit adjustment towards balanced classes (Menon et al.
   2021; strength tau chosen for dev macro-F1), then temperature scaling (dev log-loss); VAD
   variance scale per dimension (dev mean squared z-score = 1); whether to fuse the VAD head with
   the category-implied VAD (kept only if dev Pearson improves); out-of-domain statistics (mean
   and shrunk covariance of the training sentences' mean-pooled states at the last frozen layer,
   and the dev sentences' distance quantiles).
5. **Save** only the trained numbers (``weights/text``), then **evaluate on test** with the saved
   encoder through the generic evaluation and write ``training.json``.

Deterministic for a given seed, data and thread count.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Final

import numpy as np

from empathic_agent.encode.text import (
    CONFIG_FILE,
    CONFIG_FORMAT,
    DEFAULT_WEIGHTS_DIR,
    WEIGHTS_FILE,
    calibrate_outputs,
)
from empathic_agent.latent import CATEGORIES, DIMENSIONS
from empathic_agent.training.datasets import DatasetError, emobank_split, goemotions_ekman_split
from empathic_agent.training.evaluate import EvalSet, evaluate_predictions

__all__ = ["TrainConfig", "train", "TRAINING_FILE"]

#: Training record written next to the weights: config, per-epoch dev scores, test metrics.
TRAINING_FILE: Final[str] = "training.json"
BACKBONE: Final[str] = "all-minilm-l6-v2"
TASK_VAD: Final[str] = "emobank"
TASK_CAT: Final[str] = "goemotions"

#: Bumped when the model or training code changes, so stale checkpoints are not resumed.
RECIPE_VERSION: Final[int] = 4
#: Sentences per forward pass when caching (inference only, so larger than training batches).
CACHE_BATCH: Final[int] = 128
#: Frozen-probe schedule: small MLP heads on fixed vectors; cheap, so many epochs.
PROBE_EPOCHS: Final[int] = 12
PROBE_BATCH: Final[int] = 256
PROBE_LR: Final[float] = 1e-3
#: Length bucketing: shuffle, then sort within windows of this many batches (less padding,
#: still random).
BUCKET_BATCHES: Final[int] = 50
#: Logit-adjustment strengths tried on dev (0 = raw Reddit priors, 1 = fully balanced).
TAU_GRID: Final[tuple[float, ...]] = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))
#: Temperatures tried on dev (log-spaced).
TEMPERATURE_GRID: Final[np.ndarray] = np.exp(np.linspace(math.log(0.4), math.log(4.0), 161))
#: Training vectors used for the out-of-domain statistics, and the covariance shrinkage towards
#: a scaled identity (keeps the 384x384 inverse well-conditioned).
OOD_SAMPLES: Final[int] = 20_000
OOD_SHRINKAGE: Final[float] = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (written into training.json)."""

    data_dir: Path
    out_dir: Path = DEFAULT_WEIGHTS_DIR
    #: Checkpoints and the hidden-state cache (default: <cache_dir>/train/text-encoder).
    work_dir: Path | None = None
    cache_dir: Path | None = None
    backbone: str = BACKBONE
    seed: int = 13
    #: One epoch: in two-epoch runs the second epoch raised macro-F1 (~+.02) but lowered dev
    #: arousal (.476 -> .441/.443), and it doubles the time.
    epochs: int = 1
    batch_size: int = 32
    max_length: int = 96
    top_layers: int = 3  # = text_model.TOP_LAYERS (not imported here: it would import torch)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lr_adapters: float = 5e-4
    lr_heads: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    emobank_repeats: int = 2
    vad_loss_weight: float = 1.0
    #: Cap on training sentences per data set (dev/test get a quarter) — for smoke runs only.
    limit: int | None = None
    threads: int | None = None
    checkpoint_every: int = 200
    resume: bool = True
    evaluate_test: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class Split:
    """One data split: texts, targets, token ids, and (after caching) model vectors."""

    task: str
    name: str
    texts: list[str]
    #: emobank: (N, 3) VAD in [-1, 1]; goemotions: (N, 7) soft targets.
    targets: np.ndarray
    gold: list[tuple[str, ...]] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: Frozen model's pooled vectors (N, H), float32.
    frozen: Any = None
    #: Mean-pooled states of the last frozen layer (N, H), float32: the heads' second input and
    #: the out-of-domain statistics' space.
    mid: Any = None
    #: Cached bottom-layer states, concatenated (T, H) fp16, with row offsets (N + 1,).
    hidden: Any = None
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _soft_targets(gold: list[tuple[str, ...]]) -> np.ndarray:
    t = np.zeros((len(gold), len(CATEGORIES)), dtype=np.float32)
    index = {c: i for i, c in enumerate(CATEGORIES)}
    for r, labels in enumerate(gold):
        for c in labels:
            t[r, index[c]] = 1.0 / len(labels)
    return t


def _subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def load_splits(cfg: TrainConfig) -> dict[str, Split]:
    """``{"emobank/train": Split, ..., "goemotions/test": Split}``."""
    out: dict[str, Split] = {}
    for split in ("train", "dev", "test"):
        cap = None if cfg.limit is None else (cfg.limit if split == "train" else max(100, cfg.limit // 4))
        texts, vad = emobank_split(cfg.data_dir, split)
        keep = _subsample(len(texts), cap, cfg.seed)
        out[f"{TASK_VAD}/{split}"] = Split(TASK_VAD, split, [texts[i] for i in keep], vad[keep].astype(np.float32))
        texts, gold = goemotions_ekman_split(cfg.data_dir, split)
        keep = _subsample(len(texts), cap, cfg.seed)
        g = [gold[i] for i in keep]
        out[f"{TASK_CAT}/{split}"] = Split(TASK_CAT, split, [texts[i] for i in keep], _soft_targets(g), gold=g)
    return out


# ---------------------------------------------------------------------------------------------
# Utilities


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bar(total: int, desc: str, unit: str = "it", initial: int = 0) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, dynamic_ncols=True)


def _pad_batch(split: Split, idx: np.ndarray) -> tuple[Any, Any]:
    """Cached hidden states of rows ``idx`` padded to the longest: (B, L, H) float32, mask (B, L)."""
    import torch

    assert split.hidden is not None and split.offsets is not None
    lens = split.lengths[idx]
    width = int(lens.max())
    h = torch.zeros(len(idx), width, split.hidden.shape[1])
    mask = torch.zeros(len(idx), width, dtype=torch.long)
    for j, i in enumerate(idx):
        a, b = split.offsets[i], split.offsets[i + 1]
        h[j, : b - a] = split.hidden[a:b].float()
        mask[j, : b - a] = 1
    return h, mask


def _length_batches(lengths: np.ndarray, idx: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(idx)
    window = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for s in range(0, len(perm), window):
        chunk = perm[s:s + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return batches


def _epoch_plan(cfg: TrainConfig, splits: dict[str, Split], epoch: int) -> list[tuple[str, np.ndarray]]:
    """The batches of one epoch, deterministic in (seed, epoch): [(task, row indices), ...]."""
    rng = np.random.default_rng([cfg.seed, epoch])
    plan: list[tuple[str, np.ndarray]] = []
    ge = splits[f"{TASK_CAT}/train"]
    plan += [(TASK_CAT, b) for b in _length_batches(ge.lengths, np.arange(len(ge)), cfg.batch_size, rng)]
    eb = splits[f"{TASK_VAD}/train"]
    for _ in range(cfg.emobank_repeats):
        plan += [(TASK_VAD, b) for b in _length_batches(eb.lengths, np.arange(len(eb)), cfg.batch_size, rng)]
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def _cache_key(cfg: TrainConfig, backbone_dir: str, cut: int) -> str:
    files = [Path(backbone_dir) / "model.safetensors", Path(cfg.data_dir) / "emobank" / "emobank.csv",
             *(Path(cfg.data_dir) / "goemotions" / "ekman" / f"{s}.tsv" for s in ("train", "dev", "test"))]
    facts = {"backbone": backbone_dir, "cut": cut, "max_length": cfg.max_length, "limit": cfg.limit,
             "seed": cfg.seed if cfg.limit else None,
             "files": [[str(f), f.stat().st_size if f.exists() else None] for f in files]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Stage 1: tokenise and cache


def build_cache(cfg: TrainConfig, splits: dict[str, Split], tokenizer: Any, bert: Any, cut: int,
                work_dir: Path, backbone_dir: str) -> None:
    """Fill ``ids``/``lengths``/``frozen``/``hidden`` of every split (from disk if cached)."""
    import torch


    for split in splits.values():
        enc = tokenizer(split.texts, truncation=True, max_length=cfg.max_length)
        split.ids = enc["input_ids"]
        split.lengths = np.array([len(x) for x in split.ids], dtype=np.int64)

    path = work_dir / f"cache-{_cache_key(cfg, backbone_dir, cut)}.pt"
    if path.is_file():
        _log(f"using cached hidden states {path}")
        saved = torch.load(path, weights_only=True)
        for key, split in splits.items():
            split.frozen = saved[f"{key}/frozen"]
            if f"{key}/hidden" in saved:
                split.hidden = saved[f"{key}/hidden"]
                split.offsets = saved[f"{key}/offsets"].numpy()
    else:
        _compute_cache(cfg, splits, bert, cut, path)
    _mid_vectors(splits, bert, cut, path.with_name(path.stem.replace("cache-", "mid-") + ".pt"))


def _id_batch(split: Split, idx: np.ndarray) -> tuple[Any, Any]:
    import torch

    width = int(split.lengths[idx].max())
    ids = torch.zeros(len(idx), width, dtype=torch.long)
    mask = torch.zeros(len(idx), width, dtype=torch.long)
    for j, i in enumerate(idx):
        ids[j, : split.lengths[i]] = torch.tensor(split.ids[i])
        mask[j, : split.lengths[i]] = 1
    return ids, mask


def _mid_vectors(splits: dict[str, Split], bert: Any, cut: int, path: Path) -> None:
    """Fill ``split.mid`` (kept from a fresh cache pass; else from the cached states where kept,
    or, for test, by running the frozen bottom layers again); stored beside the cache."""
    import torch

    from empathic_agent.encode import text_model as tm

    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if all(f"{k}/mid" in saved for k in splits):
            for key, split in splits.items():
                split.mid = saved[f"{key}/mid"]
            return
    to_save = {}
    with torch.inference_mode():
        for key, split in splits.items():
            if split.mid is not None:  # computed with the cache in this run
                mid = split.mid
            elif split.hidden is not None:
                mid = torch.stack([split.hidden[split.offsets[i]:split.offsets[i + 1]].float().mean(0)
                                   for i in range(len(split))])
            else:
                mid = torch.zeros(len(split), split.frozen.shape[1])
                order = np.argsort(split.lengths, kind="stable")
                for s in range(0, len(order), CACHE_BATCH):
                    idx = order[s:s + CACHE_BATCH]
                    ids, mask = _id_batch(split, idx)
                    mid[torch.as_tensor(idx)] = tm.mean_pool(tm.bottom_forward(bert, ids, mask, cut), mask)
            split.mid = mid
            to_save[f"{key}/mid"] = mid
    tmp = path.with_suffix(".tmp")
    torch.save(to_save, tmp)
    tmp.replace(path)


def _compute_cache(cfg: TrainConfig, splits: dict[str, Split], bert: Any, cut: int, path: Path) -> None:
    """One pass of the frozen model over every split: bottom-layer states and final pooled vectors."""
    import torch

    from empathic_agent.encode import text_model as tm

    total = sum(len(s) for s in splits.values())
    bar = _bar(total, "caching frozen layers", "sent")
    to_save: dict[str, Any] = {}
    with torch.inference_mode():
        for key, split in splits.items():
            keep_hidden = split.name != "test"  # test is evaluated through the saved encoder
            order = np.argsort(split.lengths, kind="stable")
            frozen = torch.zeros(len(split), bert.config.hidden_size)
            mid = torch.zeros(len(split), bert.config.hidden_size)
            rows: list[Any] = [None] * len(split)
            for s in range(0, len(order), CACHE_BATCH):
                idx = order[s:s + CACHE_BATCH]
                ids, mask = _id_batch(split, idx)
                h = tm.bottom_forward(bert, ids, mask, cut)
                frozen[torch.as_tensor(idx)] = tm.top_forward(bert, h, mask, cut)
                mid[torch.as_tensor(idx)] = tm.mean_pool(h, mask)
                if keep_hidden:
                    for j, i in enumerate(idx):
                        rows[i] = h[j, : split.lengths[i]].to(torch.float16).clone()
                bar.update(len(idx))
            split.frozen = frozen
            # Splits with cached states get their mid vectors from the (fp16) cache in
            # _mid_vectors, exactly as a resumed run does, so fresh and resumed runs agree.
            split.mid = None if keep_hidden else mid
            to_save[f"{key}/frozen"] = frozen
            if keep_hidden:
                split.hidden = torch.cat(rows)
                split.offsets = np.concatenate([[0], np.cumsum(split.lengths)])
                to_save[f"{key}/hidden"] = split.hidden
                to_save[f"{key}/offsets"] = torch.as_tensor(split.offsets)
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(to_save, tmp)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# Losses, outputs, dev scores


def _loss(task: str, outputs: tuple[Any, Any, Any], targets: Any, vad_weight: float, vad_label_var: Any) -> Any:
    """One batch's loss.  ``vad_label_var`` (3,) is the training labels' variance per dimension.

    The VAD error is measured in units of the labels' spread (EmoBank's SDs are only 0.10-0.17 on
    the [-1, 1] scale): a raw MSE of ~0.015 would give the shared layers ~50x weaker gradients than
    the category cross-entropy (~1), so fine-tuning would serve the categories only.
    """
    import torch

    mean, logvar, logits = outputs
    if task == TASK_VAD:
        mse = (((mean - targets) ** 2) / vad_label_var).mean()
        # Gaussian NLL of the residual under the predicted variance; the mean is detached so the
        # variance head learns the error size without pulling the mean.
        nll = 0.5 * (logvar + (targets - mean.detach()) ** 2 / logvar.exp()).mean()
        return vad_weight * (mse + nll)
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def _outputs(fn: Callable[[np.ndarray], tuple[Any, Any, Any, Any]], n: int, batch: int) -> dict[str, np.ndarray]:
    """Run ``fn(rows) -> (pooled, mean, logvar, logits)`` over all rows in order, in inference mode."""
    import torch

    parts: dict[str, list[np.ndarray]] = {"pooled": [], "mean": [], "logvar": [], "logits": []}
    with torch.inference_mode():
        for s in range(0, n, batch):
            pooled, mean, logvar, logits = fn(np.arange(s, min(n, s + batch)))
            for k, v in zip(parts, (pooled, mean, logvar, logits)):
                parts[k].append(v.double().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _eval_set(split: Split) -> EvalSet:
    if split.task == TASK_VAD:
        return EvalSet(name=f"{split.task}/{split.name}", inputs=split.texts, emotions=[()] * len(split),
                       vad=split.targets.astype(np.float64), has_emotion=False, has_vad=True)
    return EvalSet(name=f"{split.task}/{split.name}", inputs=split.texts, emotions=split.gold,
                   vad=np.full((len(split), 3), np.nan), has_emotion=True, has_vad=False)


def _raw_metrics(vad_split: Split, vad_out: dict[str, np.ndarray], cat_split: Split,
                 cat_out: dict[str, np.ndarray]) -> dict[str, Any]:
    """Dev metrics of uncalibrated outputs, and the selection score (mean VAD r + macro-F1)."""
    v = evaluate_predictions(_eval_set(vad_split), vad_mean=vad_out["mean"], vad_var=np.exp(vad_out["logvar"]))
    c = evaluate_predictions(_eval_set(cat_split), categories=_softmax(cat_out["logits"]))
    rs = [v[f"pearson_{d}"] or 0.0 for d in DIMENSIONS]
    out = {f"pearson_{d}": round(r, 4) for d, r in zip(DIMENSIONS, rs)}
    out["macro_f1"] = round(c["macro_f1"] or 0.0, 4)
    out["accuracy"] = round(c["accuracy"] or 0.0, 4)
    out["score"] = round(float(np.mean(rs)) + out["macro_f1"], 4)
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Stage 2: frozen probe


def _probe_rows(heads: Any, split: Split, rows: np.ndarray) -> tuple[Any, Any, Any, Any]:
    import torch

    r = torch.as_tensor(rows)
    x = torch.cat([split.frozen[r], split.mid[r]], dim=-1)
    return (x, *heads(x))


def train_probe(cfg: TrainConfig, splits: dict[str, Split], hidden_size: int, head_width: int) -> tuple[Any, dict[str, Any]]:
    """Heads on the frozen pooled vectors; returns the best-on-dev heads and their dev history."""
    import torch

    from empathic_agent.encode import text_model as tm

    torch.manual_seed(cfg.seed)
    heads = tm.EmotionHeads(2 * hidden_size, head_width)
    opt = torch.optim.AdamW(heads.parameters(), lr=PROBE_LR, weight_decay=cfg.weight_decay)
    eb, ge = splits[f"{TASK_VAD}/train"], splits[f"{TASK_CAT}/train"]
    ebd, ged = splits[f"{TASK_VAD}/dev"], splits[f"{TASK_CAT}/dev"]
    best: tuple[float, Any, int] = (-math.inf, None, -1)
    history = []
    label_var = torch.as_tensor(eb.targets.var(axis=0))
    bar = _bar(PROBE_EPOCHS, "frozen probe", "epoch")
    for epoch in range(PROBE_EPOCHS):
        rng = np.random.default_rng([cfg.seed, 1000 + epoch])
        plan = [(TASK_CAT, b) for b in np.array_split(rng.permutation(len(ge)), max(1, len(ge) // PROBE_BATCH))]
        for _ in range(cfg.emobank_repeats):
            plan += [(TASK_VAD, b) for b in np.array_split(rng.permutation(len(eb)), max(1, len(eb) // PROBE_BATCH))]
        heads.train()
        for k in rng.permutation(len(plan)):
            task, idx = plan[k]
            split = eb if task == TASK_VAD else ge
            _, *out = _probe_rows(heads, split, idx)
            y = torch.as_tensor(split.targets[idx])
            loss = _loss(task, tuple(out), y, cfg.vad_loss_weight, label_var)
            opt.zero_grad()
            loss.backward()
            opt.step()
        heads.eval()
        vo = _outputs(lambda r: _probe_rows(heads, ebd, r), len(ebd), 1024)
        co = _outputs(lambda r: _probe_rows(heads, ged, r), len(ged), 1024)
        m = _raw_metrics(ebd, vo, ged, co)
        history.append({"epoch": epoch + 1, **m})
        if m["score"] > best[0]:
            best = (m["score"], copy.deepcopy(heads.state_dict()), epoch + 1)
        bar.set_postfix(score=m["score"], best=round(best[0], 4))
        bar.update(1)
    bar.close()
    heads.load_state_dict(best[1])
    heads.eval()
    return heads, {"best_epoch": best[2], "history": history}


# ---------------------------------------------------------------------------------------------
# Stage 4: calibration on dev


def fit_calibration(vad_out: dict[str, np.ndarray], vad_gold: np.ndarray, cat_out: dict[str, np.ndarray],
                    cat_split: Split, prior: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the calibration block of config.json on dev outputs; returns (calibration, report)."""
    gold_sets = cat_split.gold
    eval_cat = _eval_set(cat_split)
    # 1. Logit adjustment strength for macro-F1 (argmax is temperature-invariant).
    f1_by_tau = {}
    for tau in TAU_GRID:
        probs = _softmax(cat_out["logits"] - tau * np.log(prior))
        f1_by_tau[tau] = evaluate_predictions(eval_cat, categories=probs)["macro_f1"]
    tau = max(TAU_GRID, key=lambda t: (round(f1_by_tau[t], 4), -t))
    # 2. Temperature for the log-loss of the gold set's probability mass.
    index = {c: i for i, c in enumerate(CATEGORIES)}
    member = np.zeros((len(gold_sets), len(CATEGORIES)))
    for r, g in enumerate(gold_sets):
        for c in g:
            member[r, index[c]] = 1.0
    adjusted = cat_out["logits"] - tau * np.log(prior)
    losses = [float(-np.mean(np.log(np.clip((_softmax(adjusted / t) * member).sum(1), 1e-7, 1.0))))
              for t in TEMPERATURE_GRID]
    temperature = float(TEMPERATURE_GRID[int(np.argmin(losses))])
    base = {"category_prior": [float(x) for x in prior], "logit_adjustment": float(tau),
            "temperature": temperature, "variance_scale": [1.0, 1.0, 1.0]}
    # 3. Fuse VAD with the category-implied VAD?  Keep it only if dev Pearson improves.
    eval_vad = EvalSet(name="emobank/dev", inputs=[""] * len(vad_gold), emotions=[()] * len(vad_gold),
                       vad=vad_gold, has_emotion=False, has_vad=True)
    fuse_report = {}
    for fuse in (False, True):
        m, v, _ = calibrate_outputs(vad_out["mean"], vad_out["logvar"], vad_out["logits"],
                                    {**base, "fuse_category_vad": fuse})
        res = evaluate_predictions(eval_vad, vad_mean=m, vad_var=v)
        fuse_report["fused" if fuse else "vad_head_only"] = {d: round(res[f"pearson_{d}"], 4) for d in DIMENSIONS}
    mean_r = {k: float(np.mean(list(v.values()))) for k, v in fuse_report.items()}
    fuse = mean_r["fused"] > mean_r["vad_head_only"]
    # 4. Variance scale per dimension: dev mean squared z-score = 1 (the MLE of a variance scale).
    m, v, _ = calibrate_outputs(vad_out["mean"], vad_out["logvar"], vad_out["logits"],
                                {**base, "fuse_category_vad": fuse})
    scale = np.mean((m - vad_gold) ** 2 / v, axis=0)
    calibration = {**base, "fuse_category_vad": bool(fuse), "variance_scale": [float(x) for x in scale]}
    report = {"macro_f1_by_tau": {str(k): round(v, 4) for k, v in f1_by_tau.items()},
              "dev_log_loss_at_temperature": round(min(losses), 4),
              "dev_log_loss_at_T1": round(float(losses[int(np.argmin(np.abs(TEMPERATURE_GRID - 1.0)))]), 4),
              "vad_dev_pearson": fuse_report}
    return calibration, report


def ood_statistics(train_vectors: np.ndarray, dev_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Mean, precision (shrunk covariance inverse) and dev Mahalanobis quantiles."""
    mu = train_vectors.mean(axis=0)
    centred = train_vectors - mu
    cov = centred.T @ centred / max(1, len(train_vectors) - 1)
    h = cov.shape[0]
    cov = (1 - OOD_SHRINKAGE) * cov + OOD_SHRINKAGE * (np.trace(cov) / h) * np.eye(h)
    precision = np.linalg.inv(cov)
    d = dev_vectors - mu
    dist = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0))
    q = {f"dev_q{p}": float(np.percentile(dist, p)) for p in (50, 95, 99)}
    return mu, precision, q


# ---------------------------------------------------------------------------------------------
# The run


def _resolve_backbone(cfg: TrainConfig) -> str:
    from empathic_agent.models import resolve_model

    cache_dir = cfg.cache_dir
    if cache_dir is None:
        from empathic_agent.settings import Settings

        cache_dir = Settings.from_env().cache_dir
    return resolve_model("embeddings", cfg.backbone, Path(cache_dir)).location


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the whole recipe; returns the training record (also written to training.json)."""
    t_start = time.perf_counter()
    if "torch" not in sys.modules:
        # On a shared CPU, OpenMP threads that spin-wait at barriers lose their time slice to other
        # processes; sleeping instead made the small head-training steps ~8x faster on a loaded
        # 2-core machine.  Only effective before torch (and its OpenMP runtime) is first imported.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    from empathic_agent.encode import text_model as tm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_all(cfg.seed)
    work_dir = cfg.work_dir or (_default_cache_dir(cfg) / "train" / "text-encoder")
    work_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    splits = load_splits(cfg)
    _log("data: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    backbone_dir = _resolve_backbone(cfg)
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    bert = AutoModel.from_pretrained(backbone_dir, dtype=torch.float32).eval()
    n_layers = bert.config.num_hidden_layers
    if not 1 <= cfg.top_layers <= n_layers:
        raise ValueError(f"top_layers must be in 1..{n_layers}")
    cut = n_layers - cfg.top_layers
    hidden_size = bert.config.hidden_size

    t0 = time.perf_counter()
    build_cache(cfg, splits, tokenizer, bert, cut, work_dir, backbone_dir)
    timings["cache_s"] = round(time.perf_counter() - t0, 1)

    # -- stage 2: frozen probe (baseline + warm start) -----------------------------------------
    t0 = time.perf_counter()
    probe, probe_info = train_probe(cfg, splits, hidden_size, tm.HEAD_WIDTH)
    timings["probe_s"] = round(time.perf_counter() - t0, 1)
    prior = splits[f"{TASK_CAT}/train"].targets.mean(axis=0).astype(np.float64)
    frozen_report = _frozen_baseline(splits, probe, prior)
    _log(f"frozen backbone + heads, test: {json.dumps(frozen_report['test_summary'])}")

    # -- stage 3: fine-tune --------------------------------------------------------------------
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    loras = tm.add_lora(bert, cfg.top_layers, cfg.lora_rank, cfg.lora_alpha)
    for p in bert.parameters():
        p.requires_grad_(False)
    lora_params = [p for lo in loras.values() for p in (lo.lora_A, lo.lora_B)]
    extra_params = list(tm.trainable_backbone_params(bert, cfg.top_layers).values())
    for p in lora_params + extra_params:
        p.requires_grad_(True)
    heads = copy.deepcopy(probe)
    opt = torch.optim.AdamW([
        {"params": lora_params, "lr": cfg.lr_adapters, "weight_decay": cfg.weight_decay},
        {"params": extra_params, "lr": cfg.lr_adapters, "weight_decay": 0.0},
        {"params": list(heads.parameters()), "lr": cfg.lr_heads, "weight_decay": cfg.weight_decay},
    ])
    label_var = torch.as_tensor(splits[f"{TASK_VAD}/train"].targets.var(axis=0))
    plans = [_epoch_plan(cfg, splits, e) for e in range(cfg.epochs)]
    total_steps = sum(len(p) for p in plans)
    warmup = max(1, int(cfg.warmup_fraction * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    trainable = {**{f"lora.{n}.A": lo.lora_A for n, lo in loras.items()},
                 **{f"lora.{n}.B": lo.lora_B for n, lo in loras.items()},
                 **{f"backbone.{n}": p for n, p in tm.trainable_backbone_params(bert, cfg.top_layers).items()}}

    ckpt_path = work_dir / f"checkpoint-{_run_key(cfg)}.pt"
    # "elapsed": fine-tuning seconds of earlier (interrupted) invocations, so the record states the
    # whole fine-tuning time of a resumed run.
    state = {"epoch": 0, "step": 0, "history": [], "best": None, "elapsed": 0.0}
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=True)
        with torch.no_grad():
            for k, p in trainable.items():
                p.copy_(ck["trainable"][k])
        heads.load_state_dict(ck["heads"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        state = {"epoch": ck["epoch"], "step": ck["step"], "history": json.loads(ck["history"]),
                 "best": ck.get("best"), "elapsed": float(ck.get("elapsed", 0.0))}
        _log(f"resumed from {ckpt_path}: epoch {state['epoch'] + 1}, step {state['step']}")

    def save_checkpoint() -> None:
        ck = {"trainable": {k: p.detach().clone() for k, p in trainable.items()},
              "heads": heads.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "torch_rng": torch.get_rng_state(), "epoch": state["epoch"], "step": state["step"],
              "history": json.dumps(state["history"]), "best": state["best"],
              "elapsed": state["elapsed"] + time.perf_counter() - t0}
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(ckpt_path)

    def forward_rows(split: Split, rows: np.ndarray) -> tuple[Any, Any, Any, Any]:
        h, mask = _pad_batch(split, rows)
        # Heads read the tuned top layer and the last frozen layer (mean-pooled), see text_model.
        feats = torch.cat([tm.top_forward(bert, h, mask, cut), tm.mean_pool(h, mask)], dim=-1)
        return (feats, *heads(feats))

    ebd, ged = splits[f"{TASK_VAD}/dev"], splits[f"{TASK_CAT}/dev"]

    def dev_outputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        bert.eval()
        heads.eval()
        vo = _outputs(lambda r: forward_rows(ebd, r), len(ebd), 128)
        co = _outputs(lambda r: forward_rows(ged, r), len(ged), 128)
        return vo, co

    best_path = work_dir / f"best-{_run_key(cfg)}.pt"
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        plan = plans[epoch]
        bar = _bar(len(plan), f"fine-tune epoch {epoch + 1}/{cfg.epochs}", "batch", initial=state["step"])
        bert.train()
        heads.train()
        running = {TASK_VAD: [], TASK_CAT: []}
        for step in range(state["step"], len(plan)):
            task, rows = plan[step]
            split = splits[f"{task}/train"]
            _, *out = forward_rows(split, rows)
            loss = _loss(task, tuple(out), torch.as_tensor(split.targets[rows]), cfg.vad_loss_weight, label_var)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*lora_params, *extra_params, *heads.parameters()], 1.0)
            opt.step()
            sched.step()
            running[task].append(float(loss.detach()))
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix({k: round(float(np.mean(v[-50:])), 3) for k, v in running.items() if v})
            state["step"] = step + 1
            if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                save_checkpoint()
        bar.close()
        vo, co = dev_outputs()
        m = _raw_metrics(ebd, vo, ged, co)
        state["history"].append({"epoch": epoch + 1, **m})
        _log(f"epoch {epoch + 1} dev: {json.dumps(m)}")
        if state["best"] is None or m["score"] > state["best"]["score"]:
            state["best"] = {"epoch": epoch + 1, "score": m["score"]}
            torch.save({"trainable": {k: p.detach().clone() for k, p in trainable.items()},
                        "heads": heads.state_dict()}, best_path)
        state["epoch"], state["step"] = epoch + 1, 0
        save_checkpoint()
    timings["finetune_s"] = round(state["elapsed"] + time.perf_counter() - t0, 1)

    # -- stage 4: best epoch, calibration, OOD statistics ----------------------------------------
    t0 = time.perf_counter()
    best = torch.load(best_path, weights_only=True)
    with torch.no_grad():
        for k, p in trainable.items():
            p.copy_(best["trainable"][k])
    heads.load_state_dict(best["heads"])
    vo, co = dev_outputs()
    calibration, calib_report = fit_calibration(vo, ebd.targets.astype(np.float64), co, ged, prior)
    _log(f"calibration: {json.dumps(calibration)}")
    # Out-of-domain statistics on the last *frozen* layer (mean-pooled), i.e. the cached states:
    # fine-tuning made the top layers map anything unfamiliar (code, other languages) onto
    # "neutral", where it looks typical; the frozen layers still tell such text apart.
    rng = np.random.default_rng([cfg.seed, 7])
    train_vecs = []
    n_train = len(splits[f"{TASK_CAT}/train"]) + len(splits[f"{TASK_VAD}/train"])
    for key in (f"{TASK_CAT}/train", f"{TASK_VAD}/train"):
        split = splits[key]
        share = min(len(split), round(OOD_SAMPLES * len(split) / n_train))
        rows = np.sort(rng.choice(len(split), share, replace=False))
        train_vecs.append(split.mid[torch.as_tensor(rows)].double().numpy())
    dev_vecs = [s.mid.double().numpy() for s in (ebd, ged)]
    ood_mean, ood_precision, ood_q = ood_statistics(np.concatenate(train_vecs), np.concatenate(dev_vecs))
    timings["calibration_s"] = round(time.perf_counter() - t0, 1)

    # -- stage 5: save only what was trained ----------------------------------------------------
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {}
    for k, p in trainable.items():
        # LoRA factors in fp16 (merged into fp32 weights at load); biases/norms and heads in fp32.
        tensors[k] = p.detach().to(torch.float16 if k.startswith("lora.") else torch.float32).contiguous()
    tensors.update({k: v.float().contiguous() for k, v in tm.head_state(heads).items()})
    tensors["ood.mean"] = torch.as_tensor(ood_mean, dtype=torch.float32)
    tensors["ood.precision"] = torch.as_tensor(ood_precision, dtype=torch.float32)
    save_file(tensors, str(cfg.out_dir / WEIGHTS_FILE), metadata={"format": str(CONFIG_FORMAT)})
    (cfg.out_dir / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600; the file is meant to be shared
    config = {
        "format": CONFIG_FORMAT,
        "backbone": cfg.backbone,
        "architecture": {"hidden_size": hidden_size, "num_layers": n_layers, "top_layers": cfg.top_layers,
                         "lora_rank": cfg.lora_rank, "lora_alpha": cfg.lora_alpha,
                         "lora_targets": list(tm.LORA_TARGETS), "head_width": tm.HEAD_WIDTH,
                         "pooling": "mean", "head_input": ["last_layer", f"layer_{cut}"],
                         "head_input_size": 2 * hidden_size, "train_max_length": cfg.max_length},
        "categories": list(CATEGORIES),
        "dimensions": list(DIMENSIONS),
        "calibration": calibration,
        "ood": {"metric": "mahalanobis", "layer": cut, "pooling": "mean", "shrinkage": OOD_SHRINKAGE,
                "train_samples": int(sum(len(v) for v in train_vecs)), **ood_q},
    }
    (cfg.out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")

    record: dict[str, Any] = {
        "command": "empathic encoders train text " + _cli_args(cfg),
        "recipe": RECIPE_VERSION,
        "config": cfg.to_dict(),
        "data": {k: len(v) for k, v in splits.items()},
        "frozen_probe": {"best_epoch": probe_info["best_epoch"], "dev_history": probe_info["history"]},
        "frozen_backbone_test": frozen_report["test"],
        "finetune": {"dev_history": state["history"], "best_epoch": state["best"]["epoch"]},
        "calibration": calib_report,
        "ood": ood_q,
        "trainable_parameters": {
            "lora": int(sum(p.numel() for p in lora_params)),
            "biases_and_norms": int(sum(p.numel() for p in extra_params)),
            "heads": int(sum(p.numel() for p in heads.parameters())),
        },
        "weights_bytes": (cfg.out_dir / WEIGHTS_FILE).stat().st_size,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "platform": platform.platform()},
    }
    timings["train_total_s"] = round(time.perf_counter() - t_start, 1)

    # -- test: through the saved encoder and the generic evaluation ----------------------------
    if cfg.evaluate_test:
        from empathic_agent.encode.text import TextEncoder
        from empathic_agent.training.evaluate import dataset_eval_set, evaluate, lexicon_baselines

        t0 = time.perf_counter()
        encoder = TextEncoder(cfg.out_dir, backbone=backbone_dir)
        tests = {}
        for name in ("emobank", "goemotions"):
            es = dataset_eval_set(name, cfg.data_dir)
            res = evaluate(encoder, es, progress=True)
            res["baselines"] = lexicon_baselines(es)
            tests[name] = res
        record["test"] = tests
        timings["test_eval_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s"] = round(time.perf_counter() - t_start, 1)
    record["timings"] = timings
    (cfg.out_dir / TRAINING_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _frozen_baseline(splits: dict[str, Split], probe: Any, prior: np.ndarray) -> dict[str, Any]:
    """The frozen-backbone heads, calibrated on dev like the final model, scored on test."""
    def outs(split: Split) -> dict[str, np.ndarray]:
        return _outputs(lambda r: _probe_rows(probe, split, r), len(split), 1024)

    vd, cd = outs(splits[f"{TASK_VAD}/dev"]), outs(splits[f"{TASK_CAT}/dev"])
    calibration, _ = fit_calibration(vd, splits[f"{TASK_VAD}/dev"].targets.astype(np.float64), cd,
                                     splits[f"{TASK_CAT}/dev"], prior)
    vt, ct = outs(splits[f"{TASK_VAD}/test"]), outs(splits[f"{TASK_CAT}/test"])
    m, v, _ = calibrate_outputs(vt["mean"], vt["logvar"], vt["logits"], calibration)
    _, _, p = calibrate_outputs(ct["mean"], ct["logvar"], ct["logits"], calibration)
    rv = evaluate_predictions(_eval_set(splits[f"{TASK_VAD}/test"]), vad_mean=m, vad_var=v)
    rc = evaluate_predictions(_eval_set(splits[f"{TASK_CAT}/test"]), categories=p)
    summary = {**{f"pearson_{d}": round(rv[f"pearson_{d}"], 4) for d in DIMENSIONS},
               "macro_f1": round(rc["macro_f1"], 4), "accuracy": round(rc["accuracy"], 4)}
    return {"test": {"summary": summary, "emobank": rv, "goemotions": rc, "calibration": calibration},
            "test_summary": summary}


def _default_cache_dir(cfg: TrainConfig) -> Path:
    if cfg.cache_dir is not None:
        return Path(cfg.cache_dir)
    from empathic_agent.settings import Settings

    return Settings.from_env().cache_dir


def _run_key(cfg: TrainConfig) -> str:
    """Checkpoints belong to one exact configuration (paths excluded), so a changed run starts over."""
    d = {**cfg.to_dict(), "recipe": RECIPE_VERSION}
    for k in ("out_dir", "work_dir", "cache_dir", "resume", "evaluate_test", "threads", "checkpoint_every"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _cli_args(cfg: TrainConfig) -> str:
    default = TrainConfig(data_dir=cfg.data_dir)
    parts = ["--data-dir", str(cfg.data_dir)]
    for name, flag in _FLAGS.items():
        value = getattr(cfg, name)
        if value != getattr(default, name):
            parts += [flag, str(value)]
    return " ".join(parts)


#: TrainConfig field -> command-line flag (shared with ``empathic encoders train text``).
_FLAGS: Final[dict[str, str]] = {
    "epochs": "--epochs", "batch_size": "--batch-size", "max_length": "--max-length",
    "top_layers": "--top-layers", "lora_rank": "--lora-rank", "lr_adapters": "--lr-adapters",
    "lr_heads": "--lr-heads", "emobank_repeats": "--emobank-repeats", "seed": "--seed",
    "limit": "--limit", "threads": "--threads",
}


def add_train_arguments(p: argparse.ArgumentParser, *, include_seed: bool = True) -> None:
    """The training flags (used by ``empathic encoders train text``).

    ``include_seed=False`` when the parser already has a ``--seed`` (the CLI's common settings
    flags): `config_from_args` then reads that one.
    """
    d = TrainConfig(data_dir=Path("."))
    p.add_argument("--data-dir", help="shared data directory with emobank/ and goemotions/ "
                                      "(default: the data_dir setting, ../shared/data in a checkout)")
    p.add_argument("--out", help=f"where to write the weights (default: {DEFAULT_WEIGHTS_DIR})")
    p.add_argument("--work-dir", help="checkpoints and hidden-state cache (default: <cache_dir>/train/text-encoder)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"fine-tuning epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--max-length", type=int, default=d.max_length, help=f"training tokens per sentence (default {d.max_length})")
    p.add_argument("--top-layers", type=int, default=d.top_layers, help=f"layers with LoRA adapters (default {d.top_layers})")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank, help=f"default {d.lora_rank}")
    p.add_argument("--lr-adapters", type=float, default=d.lr_adapters, help=f"default {d.lr_adapters}")
    p.add_argument("--lr-heads", type=float, default=d.lr_heads, help=f"default {d.lr_heads}")
    p.add_argument("--emobank-repeats", type=int, default=d.emobank_repeats,
                   help=f"EmoBank passes per epoch (default {d.emobank_repeats})")
    if include_seed:
        p.add_argument("--seed", type=int, default=None, help=f"training seed (default {d.seed})")
    p.add_argument("--limit", type=int, default=None, help="cap training sentences per data set (smoke runs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--no-test", action="store_true", help="skip the final test-split evaluation")


def config_from_args(args: argparse.Namespace, *, data_dir: Path, cache_dir: Path | None) -> TrainConfig:
    if args.data_dir:
        data_dir = Path(args.data_dir)
    if not (data_dir / "emobank").is_dir() or not (data_dir / "goemotions").is_dir():
        raise DatasetError(f"{data_dir} does not hold emobank/ and goemotions/; pass --data-dir")
    seed = getattr(args, "seed", None)
    if seed is None:
        seed = getattr(args, "setting_seed", None)
    return TrainConfig(
        data_dir=data_dir, out_dir=Path(args.out) if args.out else DEFAULT_WEIGHTS_DIR,
        work_dir=Path(args.work_dir) if args.work_dir else None, cache_dir=cache_dir,
        seed=TrainConfig.seed if seed is None else seed, epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
        top_layers=args.top_layers, lora_rank=args.lora_rank, lora_alpha=2.0 * args.lora_rank,
        lr_adapters=args.lr_adapters, lr_heads=args.lr_heads, emobank_repeats=args.emobank_repeats,
        limit=args.limit, threads=args.threads, resume=not args.no_resume, evaluate_test=not args.no_test)


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a training record (what the CLI prints)."""
    out: dict[str, Any] = {"frozen_backbone": record["frozen_backbone_test"]["summary"],
                           "timings": record["timings"], "weights_bytes": record["weights_bytes"]}
    test = record.get("test")
    if test:
        eb, ge = test["emobank"], test["goemotions"]
        out["fine_tuned"] = {**{f"pearson_{d}": eb.get(f"pearson_{d}") for d in DIMENSIONS},
                             "macro_f1": ge["macro_f1"], "accuracy": ge["accuracy"]}
    return out
