"""Training and evaluation of the pair readers (:mod:`empathic_agent.evals.pair_model`).

    empathic judge train --data ../shared/data/epitome         # the EPITOME empathy judge
    empathic judge train-strategy --data ../shared/data        # the ESConv strategy classifier

**EPITOME** (Sharma et al., EMNLP 2020; research-only, non-commercial): (seeker post, response)
pairs rated 0/1/2 on emotional reactions (ER), interpretations (IP) and explorations (EX), with the
rationale spans of each rating.  There is no official split: the pairs are split **by seeker post**
with a hash of ``sp_id`` (:func:`split_of`: 70 % train, 15 % dev, 15 % test), fixed before any
training.  Multi-task: three 3-way heads on the pair features, plus (training only) a per-token
rationale tagger for each mechanism on the reply's tokens, as in the paper.  The epoch is chosen
and each head's temperature fitted on **dev**; test is read once, at the end, and reported.

**ESConv strategies** (Liu et al. 2021; academic research only): every supporter turn of ESConv
train with the seeker's words just before it as context -> one of the eight strategies; the epoch
is chosen and the temperature fitted on valid; test is reported.

Neither data set is ever written into the project: only the small trained adapters and heads.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.evals.pair_model import (
    CONTEXT_TOKENS,
    FORMAT,
    POOLINGS,
    REPLY_TOKENS,
    WEIGHTS_DIR,
    PairClassifier,
    encode_pairs,
    pad,
    pair_features,
)
from empathic_agent.metrics import binned_ece, top_label

__all__ = ["MECHANISMS", "EPITOME_COLUMNS", "split_of", "load_epitome", "load_strategy_turns",
           "classification_report", "fit_temperature", "train_epitome", "combine_epitome", "train_strategy",
           "evaluate_epitome", "evaluate_strategy"]

#: EPITOME's mechanisms: (head name, CSV level column, CSV rationale column).
MECHANISMS: Final[tuple[tuple[str, str, str], ...]] = (
    ("emotional_reactions", "er_level", "er_rationales"),
    ("interpretations", "ip_level", "ip_rationales"),
    ("explorations", "ex_level", "ex_rationales"),
)
EPITOME_COLUMNS: Final[tuple[str, ...]] = ("seeker_post", "response_post", "er_level", "ip_level", "ex_level")
LEVEL_CLASSES: Final[list[str]] = ["0", "1", "2"]
#: Shares of seeker posts in dev and test (by hash of sp_id; the rest is train).
DEV_PERCENT: Final[int] = 15
TEST_PERCENT: Final[int] = 15
#: Weight of the rationale-tagging loss beside the level losses (the paper's multi-task setup).
RATIONALE_WEIGHT: Final[float] = 0.5
#: Class weights are (frequency)^-CLASS_WEIGHT_POWER: the strong/weak levels are rare (ER 2: 5 %,
#: IP 1: 4 %, EX 1: 3 %) and would otherwise never be predicted; the square root keeps accuracy.
CLASS_WEIGHT_POWER: Final[float] = 0.5


def split_of(key: str, dev: int = DEV_PERCENT, test: int = TEST_PERCENT) -> str:
    """"train", "dev" or "test" for a grouping key (a seeker post id): a stable hash, so the split
    never depends on row order or on which rows a copy holds."""
    h = int(hashlib.sha1(str(key).encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if h < test else "dev" if h < test + dev else "train"


# -- data -----------------------------------------------------------------------------------------

def load_epitome(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of an EPITOME-style CSV (``seeker_post,response_post,er_level,ip_level,ex_level``;
    ``sp_id`` and ``*_rationales`` optional).  ``split`` keeps the rows of one hash split (needs
    ``sp_id``); None keeps every row."""
    p = Path(path)
    if p.is_dir():
        p = p / "epitome_reddit.csv"
    if not p.is_file():
        raise ConfigError(f"EPITOME CSV not found at {p}")
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in EPITOME_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{p} lacks column(s) {', '.join(missing)} (needs {','.join(EPITOME_COLUMNS)})")
        has_rationales = all(rc in (reader.fieldnames or []) for _, _, rc in MECHANISMS)
        if split is not None and "sp_id" not in (reader.fieldnames or []):
            raise ConfigError(f"--split needs an sp_id column in {p}; evaluate the whole file without --split")
        rows = []
        for i, r in enumerate(reader, start=2):
            try:
                levels = {name: int(float(r[col])) for name, col, _ in MECHANISMS}
            except (TypeError, ValueError):
                raise ConfigError(f"{p}:{i}: levels must be 0, 1 or 2") from None
            if any(v not in (0, 1, 2) for v in levels.values()):
                raise ConfigError(f"{p}:{i}: levels must be 0, 1 or 2, got {levels}")
            if split is not None and split_of(r["sp_id"]) != split:
                continue
            # Rationales are known only where the file has the columns (hand-written pairs do not).
            rationales = ({name: [s.strip() for s in (r.get(rc) or "").split("|") if s.strip()]
                           for name, _, rc in MECHANISMS} if has_rationales else None)
            rows.append({"key": r.get("sp_id") or f"{p.stem}:{i}", "context": r["seeker_post"] or "",
                         "reply": r["response_post"] or "", "levels": levels, "rationales": rationales})
    if not rows:
        raise ConfigError(f"no rows in {p}" + (f" for split {split!r}" if split else ""))
    return rows


def load_strategy_turns(data_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """Every ESConv supporter turn that has a strategy and follows a seeker message: the seeker's
    words since the previous supporter turn (context), the turn (reply) and its strategy."""
    from empathic_agent.plan.esconv import load_esconv

    rows = []
    for ci, conv in enumerate(load_esconv(data_dir, split)):
        seeker: list[str] = []
        for turn in conv["dialog"]:
            text = str(turn.get("text", "")).strip()
            if turn["speaker"] == "usr":
                seeker.append(text)
                continue
            if turn.get("strategy") and seeker:
                rows.append({"key": f"{split}-{ci}", "context": " ".join(seeker), "reply": text,
                             "strategy": turn["strategy"]})
            seeker = []
    return rows


def _rationale_labels(item: dict[str, Any], reply: str, spans_by_head: Sequence[Sequence[str]]) -> np.ndarray:
    """Per token, per mechanism: 1 if the token lies in one of the mechanism's rationale spans."""
    out = np.zeros((len(item["ids"]), len(spans_by_head)), np.float32)
    low = reply.lower()
    for m, spans in enumerate(spans_by_head):
        for s in spans:
            at = reply.find(s)
            if at < 0:
                at = low.find(s.lower())
            if at < 0:
                continue
            end = at + len(s)
            for t, span in enumerate(item["spans"]):
                if span is not None and span[1] > span[0] and span[0] < end and span[1] > at:
                    out[t, m] = 1.0
    return out


# -- metrics --------------------------------------------------------------------------------------

def classification_report(probs: np.ndarray, gold: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """n, accuracy, macro-F1, per-class F1 (precision, recall, support), confusion (rows gold,
    columns predicted) and the top-label expected calibration error (:func:`empathic_agent.metrics.binned_ece`)."""
    y = np.asarray(gold, int)
    pred = probs.argmax(axis=1)
    k = len(classes)
    conf = np.zeros((k, k), int)
    for g, p in zip(y, pred):
        conf[g, p] += 1
    per_class, f1s = {}, []
    for i, c in enumerate(classes):
        tp = conf[i, i]
        prec = tp / conf[:, i].sum() if conf[:, i].sum() else 0.0
        rec = tp / conf[i].sum() if conf[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = {"f1": round(float(f1), 4), "precision": round(float(prec), 4), "recall": round(float(rec), 4),
                        "support": int(conf[i].sum())}
        if conf[i].sum():
            f1s.append(f1)
    return {"n": int(len(y)), "accuracy": round(float(np.mean(pred == y)), 4) if len(y) else 0.0,
            "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0, "per_class": per_class,
            "confusion": {"rows": "gold", "columns": "predicted", "classes": list(classes), "matrix": conf.tolist()},
            "ece": round(binned_ece(*top_label(probs, y)), 4)}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, gold: Sequence[int]) -> float:
    """The temperature minimising the negative log-likelihood of ``gold`` (grid 0.3..5)."""
    y = np.asarray(gold, int)
    best, best_t = np.inf, 1.0
    for t in np.exp(np.linspace(np.log(0.3), np.log(5.0), 121)):
        p = _softmax(logits / t)
        nll = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


# -- the trainer ----------------------------------------------------------------------------------

class PairTrainer:
    """LoRA on the top ``top_layers`` MiniLM layers (their biases and LayerNorms too), linear heads
    on :func:`pair_features`, optional per-token rationale taggers; frozen layers run once."""

    def __init__(self, backbone: str, heads: Sequence[tuple[str, Sequence[str]]], *, top_layers: int, rank: int,
                 alpha: float, seed: int, taggers: int = 0, pooling: str = "mean",
                 reply_tokens: int = REPLY_TOKENS) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from empathic_agent.encode import text_model as tm

        torch.manual_seed(seed)
        self.seed, self.top_layers, self.rank, self.alpha = seed, top_layers, rank, alpha
        self.pooling, self.reply_tokens = pooling, reply_tokens
        self.heads = [(n, list(c)) for n, c in heads]
        self.tokenizer = AutoTokenizer.from_pretrained(backbone)
        self.model = AutoModel.from_pretrained(backbone, dtype=torch.float32)
        self.loras, self.adapter_params = tm.lora_for_training(self.model, top_layers, rank, alpha)
        hidden = self.model.config.hidden_size
        self.head = torch.nn.Linear(POOLINGS[pooling] * hidden, sum(len(c) for _, c in self.heads))
        self.tagger = torch.nn.Linear(hidden, taggers) if taggers else None
        self.n_bottom = self.model.config.num_hidden_layers - top_layers

    def encode(self, rows: Sequence[dict[str, Any]], *, offsets: bool = False) -> list[dict[str, Any]]:
        return encode_pairs(self.tokenizer, [r["context"] for r in rows], [r["reply"] for r in rows], offsets=offsets,
                            reply_tokens=self.reply_tokens)

    def bottom(self, items: Sequence[dict[str, Any]]) -> list[Any]:
        """Embeddings and frozen layers per pair, computed once (real tokens only)."""
        import torch

        from empathic_agent.encode.text_model import embed, run_layers

        out: list[Any] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: len(items[i]["ids"]))
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                ids, types, mask = pad([items[j] for j in idx], self.tokenizer.pad_token_id)
                h = run_layers(self.model, self.model.encoder.layer[:self.n_bottom], embed(self.model, ids, types),
                               mask)
                for k, j in enumerate(idx):
                    out[j] = h[k, :len(items[j]["ids"])].clone()
        return out

    def top(self, hidden: Sequence[Any], items: Sequence[dict[str, Any]]) -> tuple[Any, Any, Any]:
        """(features (B, 2H), last hidden (B, L, H), mask (B, L)) of cached bottoms."""
        import torch

        from empathic_agent.encode.text_model import run_layers

        n = max(h.shape[0] for h in hidden)
        x = torch.zeros(len(hidden), n, hidden[0].shape[1])
        _, types, mask = pad(items)
        for k, h in enumerate(hidden):
            x[k, :h.shape[0]] = h
        x = run_layers(self.model, self.model.encoder.layer[self.n_bottom:], x, mask)
        return pair_features(x, types, mask, self.pooling), x, mask

    def logits(self, items: Sequence[dict[str, Any]], hidden: Sequence[Any] | None = None) -> np.ndarray:
        import torch

        hidden = hidden if hidden is not None else self.bottom(items)
        order = sorted(range(len(items)), key=lambda i: len(items[i]["ids"]))
        out = np.zeros((len(items), self.head.out_features), np.float32)
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                feats, _, _ = self.top([hidden[j] for j in idx], [items[j] for j in idx])
                out[idx] = self.head(feats).numpy()
        return out

    def fit(self, items: Sequence[dict[str, Any]], loss: Callable[..., Any], *, epochs: int, batch: int, lr: float,
            head_lr: float, on_epoch: Callable[[int], float] | None = None, progress: bool = True,
            desc: str = "training") -> dict[str, Any]:
        """AdamW with a one-cycle schedule on ``loss(features, last_hidden, mask, batch_indices)``.
        After each epoch ``on_epoch(epoch)`` scores the model (higher is better); the best epoch's
        state is kept.  Returns {"best_epoch", "scores"}."""
        import torch

        hidden = self.bottom(items)
        lengths = [len(it["ids"]) for it in items]
        params = [{"params": self.adapter_params, "lr": lr},
                  {"params": list(self.head.parameters()) + (list(self.tagger.parameters()) if self.tagger else []),
                   "lr": head_lr}]
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        per_epoch = (len(items) + batch - 1) // batch + 16
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, head_lr], total_steps=epochs * per_epoch,
                                                    pct_start=0.1)
        gen = torch.Generator().manual_seed(self.seed)
        drop = torch.nn.Dropout(0.1)
        bar: Any = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=epochs * len(items), desc=desc, unit="pair", file=sys.stderr)
        best, best_epoch, scores, best_state = -np.inf, 0, [], None
        step = 0
        for epoch in range(1, epochs + 1):
            self.model.train()
            perm = torch.randperm(len(items), generator=gen).tolist()
            batches = []
            for i in range(0, len(perm), batch * 16):
                chunk = sorted(perm[i:i + batch * 16], key=lambda j: lengths[j])
                batches += [chunk[k:k + batch] for k in range(0, len(chunk), batch)]
            for o in torch.randperm(len(batches), generator=gen).tolist():
                b = batches[o]
                feats, last, mask = self.top([hidden[j] for j in b], [items[j] for j in b])
                value = loss(self.head(drop(feats)), last, mask, b)
                opt.zero_grad()
                value.backward()
                opt.step()
                if step < epochs * per_epoch - 1:
                    sched.step()
                step += 1
                if bar is not None:
                    bar.update(len(b))
                    bar.set_postfix(loss=f"{float(value):.3f}")
            score = on_epoch(epoch) if on_epoch else float(epoch)
            scores.append(round(float(score), 4))
            if score > best:
                best, best_epoch, best_state = score, epoch, self.snapshot()
        if bar is not None:
            bar.close()
        if best_state is not None:
            self.restore(best_state)
        self.model.eval()
        return {"best_epoch": best_epoch, "scores": scores}

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({"lora": {k: (v.lora_A.detach().clone(), v.lora_B.detach().clone())
                                       for k, v in self.loras.items()},
                              "extra": {k: v.detach().clone() for k, v in self._extra().items()},
                              "head": self.head.state_dict()})

    def restore(self, snap: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for k, (a, b) in snap["lora"].items():
                self.loras[k].lora_A.copy_(a)
                self.loras[k].lora_B.copy_(b)
            for k, v in self._extra().items():
                v.copy_(snap["extra"][k])
        self.head.load_state_dict(snap["head"])

    def _extra(self) -> dict[str, Any]:
        from empathic_agent.encode import text_model as tm

        return tm.trainable_backbone_params(self.model, self.top_layers)

    def save(self, folder: Path, name: str, config: dict[str, Any]) -> None:
        from empathic_agent.encode import text_model as tm

        state = {k: v.numpy() for k, v in tm.adapter_state(self.model, self.loras, self.top_layers).items()}
        state["head.weight"] = self.head.weight.detach().numpy().copy()
        state["head.bias"] = self.head.bias.detach().numpy().copy()
        folder.mkdir(parents=True, exist_ok=True)
        # float16 storage halves the file; the merged weights are float32 again at load time.
        np.savez_compressed(folder / f"{name}.npz", **{k: v.astype(np.float16) if k.startswith("lora.") else v
                                                       for k, v in state.items()})
        (folder / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def architecture(self) -> dict[str, Any]:
        return {"top_layers": self.top_layers, "lora_rank": self.rank, "lora_alpha": self.alpha,
                "hidden_size": self.model.config.hidden_size, "num_layers": self.model.config.num_hidden_layers,
                "context_tokens": CONTEXT_TOKENS, "reply_tokens": self.reply_tokens, "pooling": self.pooling}


def _class_weights(labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=k).astype(float) + 1.0
    w = (counts / counts.sum()) ** -CLASS_WEIGHT_POWER
    return (w / (w * counts / counts.sum()).sum()).astype(np.float32)


def _split_logits(logits: np.ndarray, heads: Sequence[tuple[str, Sequence[str]]]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, classes in heads:
        out[name] = logits[:, start:start + len(classes)]
        start += len(classes)
    return out


def _backbone_dir(spec: str, cache_dir: str | Path | None) -> str:
    from empathic_agent.models import resolve_model

    if cache_dir is None:
        from empathic_agent.settings import Settings

        cache_dir = Settings.from_env().cache_dir
    return resolve_model("embeddings", spec, cache_dir).location


def _train_heads(name: str, train: list[dict[str, Any]], dev: list[dict[str, Any]], test: list[dict[str, Any]],
                 heads: list[tuple[str, list[str]]], gold: Callable[[dict[str, Any], str], int], *,
                 backbone: str, cache_dir: str | Path | None, out: Path, top_layers: int, rank: int, alpha: float,
                 epochs: int, batch: int, lr: float, head_lr: float, seed: int, rationales: bool,
                 extra_config: dict[str, Any], progress: bool, pooling: str = "mean",
                 reply_tokens: int = REPLY_TOKENS) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    trainer = PairTrainer(_backbone_dir(backbone, cache_dir), heads, top_layers=top_layers, rank=rank, alpha=alpha,
                          seed=seed, taggers=len(heads) if rationales else 0, pooling=pooling,
                          reply_tokens=reply_tokens)
    items = trainer.encode(train, offsets=rationales)
    dev_items, test_items = trainer.encode(dev), trainer.encode(test) if test else []
    dev_hidden = trainer.bottom(dev_items)
    y = {h: torch.as_tensor([gold(r, h) for r in train]) for h, _ in heads}
    weights = {h: torch.as_tensor(_class_weights(y[h].numpy(), len(c))) for h, c in heads}
    tags = ([torch.as_tensor(_rationale_labels(it, r["reply"], [r["rationales"][h] for h, _ in heads]))
             if r.get("rationales") is not None else None for it, r in zip(items, train)] if rationales else [])
    ce = {h: torch.nn.CrossEntropyLoss(weight=weights[h]) for h, _ in heads}
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    slices, start = {}, 0
    for h, c in heads:
        slices[h] = slice(start, start + len(c))
        start += len(c)

    def loss(logits: Any, last: Any, mask: Any, b: list[int]) -> Any:
        total = sum(ce[h](logits[:, slices[h]], y[h][b]) for h, _ in heads)
        if rationales and trainer.tagger is not None:
            target = torch.zeros(last.shape[0], last.shape[1], len(heads))
            for k, j in enumerate(b):
                if tags[j] is not None:
                    target[k, :tags[j].shape[0]] = tags[j]
            # The reply's tokens of the pairs whose rationales are known.
            reply_mask = (torch.as_tensor([[t * (tags[j] is not None) for t in items[j]["types"]]
                                           + [0] * (last.shape[1] - len(items[j]["types"])) for j in b])
                          * mask).unsqueeze(-1).float()
            tag_loss = (bce(trainer.tagger(last), target) * reply_mask).sum() / reply_mask.sum().clamp(min=1) / len(heads)
            total = total + RATIONALE_WEIGHT * tag_loss
        return total

    dev_gold = {h: [gold(r, h) for r in dev] for h, _ in heads}

    def on_epoch(epoch: int) -> float:
        parts = _split_logits(trainer.logits(dev_items, dev_hidden), heads)
        f1 = [classification_report(_softmax(parts[h]), dev_gold[h], c)["macro_f1"] for h, c in heads]
        if progress:
            print(f"  epoch {epoch}: dev macro-F1 " + " ".join(f"{h[:3]} {v:.3f}" for (h, _), v in zip(heads, f1)),
                  file=sys.stderr)
        return float(np.mean(f1))

    fitted = trainer.fit(items, loss, epochs=epochs, batch=batch, lr=lr, head_lr=head_lr, on_epoch=on_epoch,
                         progress=progress, desc=f"{name}: {len(items)} pairs x {epochs} epochs")
    dev_parts = _split_logits(trainer.logits(dev_items, dev_hidden), heads)
    temps = {h: fit_temperature(dev_parts[h], dev_gold[h]) for h, _ in heads}
    # No test rows: a model whose test figures are read elsewhere, after every choice (the planner's).
    test_parts = _split_logits(trainer.logits(test_items), heads) if test else {}
    report: dict[str, Any] = {"dev": {}, "test": {}} if test else {"dev": {}}
    for h, c in heads:
        report["dev"][h] = classification_report(_softmax(dev_parts[h] / temps[h]), dev_gold[h], c)
        if test:
            report["test"][h] = classification_report(_softmax(test_parts[h] / temps[h]), [gold(r, h) for r in test], c)
        report["dev"][h]["ece_uncalibrated"] = round(binned_ece(*top_label(_softmax(dev_parts[h]), np.asarray(dev_gold[h]))), 4)
    config = {"format": FORMAT, "name": name, "backbone": backbone,
              "architecture": trainer.architecture(),
              "heads": [{"name": h, "classes": c, "temperature": round(temps[h], 4)} for h, c in heads],
              "training": {"epochs": epochs, "best_epoch": fitted["best_epoch"], "dev_macro_f1_by_epoch": fitted["scores"],
                           "batch": batch, "lr": lr, "head_lr": head_lr, "seed": seed, "rationale_task": rationales,
                           "class_weight_power": CLASS_WEIGHT_POWER, "pairs": {"train": len(train), "dev": len(dev),
                                                                               "test": len(test)},
                           "seconds": round(time.perf_counter() - t0, 1)},
              "figures": {s: {h: {k: v[k] for k in ("n", "accuracy", "macro_f1", "ece")} for h, v in part.items()}
                          for s, part in report.items()},
              **extra_config}
    trainer.save(out, name, config)
    return {"config": config, "report": report}


def train_epitome(data: str | Path, *, out: str | Path | None = None, name: str | None = None,
                  backbone: str = "all-minilm-l6-v2", cache_dir: str | Path | None = None, epochs: int = 8,
                  seed: int = 0, rationales: bool = True, pooling: str = "mean", reply_tokens: int = REPLY_TOKENS,
                  extra_train: Sequence[str | Path] = (), extra_dev: Sequence[str | Path] = (),
                  top_layers: int = 6, with_test: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train one member of the EPITOME judge (see the module docstring): ``NAME.npz/json`` in
    ``out`` (default name ``epitome-s{seed}``, or ``epitome-max-s{seed}`` with max pooling; another
    backbone than MiniLM adds its name).  LoRA on the backbone's top ``top_layers`` layers (all six of
    MiniLM's by default; the layers below are run once and cached).  ``with_test=False`` leaves the
    test split unread (choose members on dev first, then read test once).
    :func:`combine_epitome` then makes the judge of one or more members."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}")
    if top_layers < 1:
        raise ConfigError(f"top_layers must be at least 1, got {top_layers}")
    rows = load_epitome(data)
    parts = {s: [r for r in rows if split_of(r["key"]) == s] for s in ("train", "dev", "test")}
    # Hand-written pairs (no seeker-post ids): whole files go to train or to dev.
    for path in extra_train:
        parts["train"] += load_epitome(path)
    for path in extra_dev:
        parts["dev"] += load_epitome(path)
    heads = [(n, LEVEL_CLASSES) for n, _, _ in MECHANISMS]
    name = name or ("epitome" + ("" if backbone == "all-minilm-l6-v2" else f"-{Path(backbone).name}")
                    + (f"-s{seed}" if pooling == "mean" else f"-max-s{seed}") + ("-chat" if extra_train else ""))
    return _train_heads(name, parts["train"], parts["dev"], parts["test"] if with_test else [], heads,
                        lambda r, h: r["levels"][h], backbone=backbone, cache_dir=cache_dir,
                        out=Path(out) if out else WEIGHTS_DIR, top_layers=top_layers, rank=16, alpha=32.0, epochs=epochs,
                        batch=16, lr=1e-3, head_lr=2e-3, seed=seed, rationales=rationales,
                        extra_config={**_EPITOME_CONFIG, "extra_train": [Path(p).name for p in extra_train],
                                      "extra_dev": [Path(p).name for p in extra_dev]},
                        progress=progress, pooling=pooling, reply_tokens=reply_tokens)


_EPITOME_CONFIG: Final[dict[str, str]] = {
    "data": "EPITOME Reddit (Sharma et al. 2020), research-only, non-commercial",
    "split": f"sha1(sp_id) % 100: < {TEST_PERCENT} test, < {TEST_PERCENT + DEV_PERCENT} dev, else train"}


def combine_epitome(data: str | Path, members: Sequence[str], *, folder: str | Path | None = None,
                    name: str = "epitome", extra_dev: Sequence[str | Path] = (), with_test: bool = True,
                    settings: Any = None) -> dict[str, Any]:
    """The judge ``NAME.json`` from trained members (their logits averaged): temperatures fitted on
    dev, figures on dev and (unless ``with_test`` is False) test.  Returns {"config", "report",
    "members_dev"} (each member's own dev macro-F1, to choose members by dev only)."""
    folder = Path(folder) if folder else WEIGHTS_DIR
    if not members:
        raise ConfigError("combine needs at least one member")
    rows = load_epitome(data)
    parts = {s: [r for r in rows if split_of(r["key"]) == s] for s in ("dev", "test")}
    if not with_test:
        parts["test"] = []
    # Hand-written dev pairs join the selection and the temperatures, and are reported apart.
    parts["dev_extra"] = [r for path in extra_dev for r in load_epitome(path)]
    parts["dev_all"] = parts["dev"] + parts["dev_extra"]
    splits = [s for s in ("dev", "dev_extra", "dev_all", "test") if parts[s]]
    heads = [(n, LEVEL_CLASSES) for n, _, _ in MECHANISMS]
    logits: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    configs = []
    for m in members:
        reader = PairClassifier(m, folder, settings=settings)
        if not reader.available():
            raise ConfigError(f"member {m} not found in {folder}")
        configs.append(reader.read_config())
        for s in splits:
            if s == "dev_all":
                continue
            logits[s].append(reader.logits([r["context"] for r in parts[s]], [r["reply"] for r in parts[s]]))
    logits["dev_all"] = ([np.concatenate([a, b]) for a, b in zip(logits["dev"], logits["dev_extra"])]
                         if parts["dev_extra"] else list(logits["dev"]))
    gold = {s: {h: [r["levels"][h] for r in parts[s]] for h, _ in heads} for s in splits}
    sel = "dev_all"
    members_dev = {m: round(float(np.mean([classification_report(_softmax(p[h]), gold[sel][h], c)["macro_f1"]
                                           for h, c in heads])), 4)
                   for m, p in ((m, _split_logits(lg, heads)) for m, lg in zip(members, logits[sel]))}
    mean = {s: _split_logits(np.mean(logits[s], axis=0), heads) for s in splits}
    temps = {h: fit_temperature(mean[sel][h], gold[sel][h]) for h, _ in heads}
    report: dict[str, Any] = {s: {} for s in splits}
    for s in splits:
        for h, c in heads:
            report[s][h] = classification_report(_softmax(mean[s][h] / temps[h]), gold[s][h], c)
    first = configs[0]
    config = {"format": FORMAT, "name": name, "backbone": first["backbone"], "members": list(members),
              "architecture": first["architecture"],
              "heads": [{"name": h, "classes": c, "temperature": round(temps[h], 4)} for h, c in heads],
              "members_dev_macro_f1": members_dev,
              "selection": "mean macro-F1 of ER/IP/EX on dev (EPITOME dev + the hand-written dev pairs); "
                           "temperatures fitted there too",
              "extra_dev": [Path(p).name for p in extra_dev],
              "training": {m: cfg.get("training") for m, cfg in zip(members, configs)},
              "figures": {s: {h: {k: v[k] for k in ("n", "accuracy", "macro_f1", "ece")} for h, v in part.items()}
                          for s, part in report.items()},
              **_EPITOME_CONFIG}
    (folder / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return {"config": config, "report": report, "members_dev": members_dev}


def train_strategy(data_dir: str | Path, *, out: str | Path | None = None, backbone: str = "all-minilm-l6-v2",
                   cache_dir: str | Path | None = None, epochs: int = 3, seed: int = 0, limit: int | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Train the ESConv strategy classifier (train / valid / test: ESConv's own split)."""
    from empathic_agent.plan.register import STRATEGIES

    parts = {s: load_strategy_turns(data_dir, s)[: limit or None] for s in ("train", "valid", "test")}
    classes = list(STRATEGIES)
    unknown = {r["strategy"] for p in parts.values() for r in p} - set(classes)
    if unknown:
        raise ConfigError(f"ESConv strategies not in the planner's list: {sorted(unknown)}")
    return _train_heads("strategy", parts["train"], parts["valid"], parts["test"], [("strategy", classes)],
                        lambda r, h: classes.index(r["strategy"]), backbone=backbone, cache_dir=cache_dir,
                        out=Path(out) if out else WEIGHTS_DIR, top_layers=3, rank=8, alpha=16.0, epochs=epochs,
                        batch=32, lr=5e-4, head_lr=2e-3, seed=seed, rationales=False,
                        extra_config={"data": "ESConv (Liu et al. 2021), academic research use only",
                                      "split": "ESConv's own train/valid/test (910/195/195 conversations)",
                                      "context": "the seeker's words since the previous supporter turn"},
                        progress=progress)


# -- evaluation -----------------------------------------------------------------------------------

def evaluate_epitome(csv_path: str | Path, *, split: str | None = None, folder: str | Path | None = None,
                     settings: Any = None) -> dict[str, Any]:
    """The judge on an EPITOME-style CSV: per mechanism n, accuracy, macro-F1, per-class F1,
    confusion and ECE."""
    rows = load_epitome(csv_path, split=split)
    model = PairClassifier("epitome", folder, settings=settings)
    t0 = time.perf_counter()
    probs = model.predict([r["context"] for r in rows], [r["reply"] for r in rows])
    out: dict[str, Any] = {"data": str(csv_path), "split": split or "all", "pairs": len(rows),
                           "model": str(model.weights_path), "seconds": round(time.perf_counter() - t0, 2)}
    for name, _, _ in MECHANISMS:
        out[name] = classification_report(probs[name], [r["levels"][name] for r in rows], LEVEL_CLASSES)
    out["licence_note"] = "EPITOME-trained judge: research-only, non-commercial"
    return out


def evaluate_strategy(data_dir: str | Path, *, split: str = "test", folder: str | Path | None = None,
                      limit: int | None = None, settings: Any = None) -> dict[str, Any]:
    """The strategy classifier on an ESConv split: accuracy, macro-F1, per-class F1, family accuracy."""
    from empathic_agent.plan.register import STRATEGIES, family_of

    rows = load_strategy_turns(data_dir, split)[: limit or None]
    model = PairClassifier("strategy", folder, settings=settings)
    t0 = time.perf_counter()
    probs = model.predict([r["context"] for r in rows], [r["reply"] for r in rows])["strategy"]
    gold = [STRATEGIES.index(r["strategy"]) for r in rows]
    report = classification_report(probs, gold, STRATEGIES)
    pred = probs.argmax(axis=1)
    report["family_accuracy"] = round(float(np.mean([family_of(STRATEGIES[p]) == family_of(r["strategy"])
                                                     for p, r in zip(pred, rows)])), 4)
    return {"data": f"ESConv/{split}", "turns": len(rows), "seconds": round(time.perf_counter() - t0, 2), **report,
            "licence_note": "ESConv-trained classifier: academic research use only"}
