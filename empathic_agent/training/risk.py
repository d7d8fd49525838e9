"""``empathic safety train``: train the risk screen's learned layer (:mod:`.learned`).

Data: the labelled CSVs in ``safety/data/train/`` (format and labels: ``safety/data/GUIDE.md``),
one file per contributor who wrote it.  Model selection is **leave-one-writer-out**: for each
writer, heads trained on the other writers predict that writer's messages, so every threshold is
chosen on words written by someone the model never read — the situation of a real user.  The
held-out test set (``safety/data/test/``) is never read here.

Steps:

1. every training message plus two register variants (lower case without punctuation, and a
   typo/texting variant);
2. out-of-fold predictions by leave-one-writer-out (whole messages and sentence views), each fold
   a MiniLM fine-tuned (LoRA on the top layers) on the other writers;
3. thresholds on P(level >= k) from those predictions: the lowest threshold whose false alarms
   on the writers' hard negatives stay within budget (:data:`FALSE_ALARM_BUDGET`);
4. the final model on every writer; adapters + head + config + out-of-fold figures are written to
   ``safety/weights/`` (numpy ``.npz``, about 1 MB).
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Final, Sequence

import numpy as np

from empathic_agent.metrics import binned_ece
from empathic_agent.safety.learned import MAX_TOKENS, WEIGHTS_DIR, split_sentences
from empathic_agent.safety.taxonomy import DIMENSIONS, LEVELS, SUBJECTS
from empathic_agent.training.runs import check_fingerprint, data_hashes, fingerprint

__all__ = ["train", "refine", "train_scope", "train_second_look", "combine", "rethreshold", "augment", "TRAIN_DIR", "FALSE_ALARM_BUDGET",
           "DISTRESS_BUDGET"]

log = logging.getLogger(__name__)

#: The contributors' training files live with the safety package (its data README and guide).
TRAIN_DIR: Final = WEIGHTS_DIR.parent / "data" / "train"
#: LoRA on every layer of MiniLM, rank 16.  (Three of six layers at rank 8, as the text emotion
#: encoder, was the first choice; on the same 14 writers, writer-grouped out of fold, every layer at
#: rank 16 found more risk at every false-alarm level: any risk at 5 % false alarms on hard negatives
#: 0.738 -> 0.807, at 10 % 0.851 -> 0.896; high risk to the protocol at 3 % 0.761 -> 0.831; AUC
#: 0.948 -> 0.958.  Reading costs the same: the adapters are merged into the weights at load time.)
TOP_LAYERS: Final[int] = 6
LORA_RANK: Final[int] = 16
LORA_ALPHA: Final[float] = 32.0
#: Learning rates of the adapters and the head, weight decay, dropout on the pooled vector,
#: epochs and batch size: a few thousand short messages (more epochs only memorise the writers).
LR: Final[float] = 5e-4
HEAD_LR: Final[float] = 2e-3
WEIGHT_DECAY: Final[float] = 0.01
DROPOUT: Final[float] = 0.1
EPOCHS: Final[int] = 3
LABEL_SMOOTHING: Final[float] = 0.1
BATCH: Final[int] = 32
#: Folds of the writer-grouped cross-validation (writers are dealt into them in turn).
MAX_FOLDS: Final[int] = 4
#: Share of the writers' hard negatives (level none) allowed to reach each level, out of fold:
#: thresholds are set as low as this allows.  A check-in (low) on a hard negative costs a gentle
#: question; the protocol (moderate and up) interrupts the conversation, so its budget is tighter.
#: (A first budget of 4 % for low kept only 0.88 of the risk out of fold; at 8 %, 0.92.  With the
#: distress writers in the pool — ordinary sadness, stress and anger said as strongly as risk —
#: 8 % moved the low threshold from 0.70 to 0.77 and the reader stopped reading implicit method
#: talk ("the 8:15 express doesn't even slow down at my station") as risk: 10 % kept 0.70.  The
#: third reader, under the same 10 %, sets 0.65 and reads that message 0.44: a known miss, not
#: re-tuned — see tests/integration/test_safety.py.)
FALSE_ALARM_BUDGET: Final[tuple[float, float, float, float]] = (0.10, 0.03, 0.015, 0.005)
#: Share of ordinary help-seekers' messages (ESConv *train* seeker turns: sadness, stress, grief,
#: breakups said to a supporter — never trained on) allowed to reach each level.  A budget on the
#: writers' hard negatives alone let a reader trained on quiet risk (writers 18-20) set its low
#: threshold at 0.33, and on held-out sets it alarmed on twice as much ordinary distress (crisis_test
#: 10.3 % against 5.2 %; ESConv in conversation 12.8 % crisis route).  These are the shipped third
#: reader's own rates on the same turns at its thresholds (0.134 / 0.038 / 0.010 / 0.0005, rounded;
#: imminent to one in 500): a new reader may find more risk, not alarm more on ordinary distress.
DISTRESS_BUDGET: Final[tuple[float, float, float, float]] = (0.13, 0.037, 0.01, 0.002)
#: Ordinary help-seekers' messages read for that budget (a seeded sample of ESConv train).
DISTRESS_SAMPLE: Final[int] = 2000
#: Threshold bounds: never so low that noise fires.
THRESHOLD_RANGE: Final[tuple[float, float]] = (0.1, 0.98)
#: Weight of the subject and dimension losses beside the level loss.
SUBJECT_WEIGHT: Final[float] = 0.5
DIMENSION_WEIGHT: Final[float] = 0.5


# -- data -----------------------------------------------------------------------------------------

_TEXTING = [(r"\byou\b", "u"), (r"\bbecause\b", "bc"), (r"\bgoing to\b", "gonna"), (r"\bwant to\b", "wanna"),
            (r"\bi am\b", "im"), (r"\bi'm\b", "im"), (r"\bdon't\b", "dont"), (r"\bcan't\b", "cant"),
            (r"\bto be honest\b", "tbh"), (r"\bright now\b", "rn"), (r"\bokay\b", "ok"), (r"\bpeople\b", "ppl")]


def augment(text: str, rng: random.Random) -> list[str]:
    """Two register variants of a message: lower case without punctuation, and texting with a
    typo or two (people in distress rarely proofread)."""
    lower = " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())
    t = text.lower() if rng.random() < 0.5 else text
    for pat, rep in _TEXTING:
        if rng.random() < 0.7:
            t = re.sub(pat, rep, t, flags=re.I)
    words = t.split()
    for _ in range(rng.choice((1, 2))):
        idx = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if not idx:
            break
        i = rng.choice(idx)
        w = words[i]
        j = rng.randrange(len(w) - 1)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:] if rng.random() < 0.5 else w[:j] + w[j + 1:]
    return [v for v in dict.fromkeys([lower, " ".join(words)]) if v and v != text]


def _targets(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lv = np.array([LEVELS.index(r["level"]) for r in rows])
    ordinal = (lv[:, None] >= np.arange(1, len(LEVELS))[None, :]).astype(np.float32)
    subject = np.array([SUBJECTS.index(r["subject"]) for r in rows])
    dims = np.array([[d in r["dimensions"] for d in DIMENSIONS] for r in rows], np.float32)
    return ordinal, subject, dims


def _backbone(embedder_spec: str, cache_dir: str | Path | None) -> str:
    from empathic_agent.models import resolve_model

    if cache_dir is None:
        from empathic_agent.settings import Settings

        cache_dir = Settings.from_env().cache_dir
    return resolve_model("embeddings", embedder_spec, cache_dir).location


class _Trainer:
    """LoRA on the top ``top_layers`` layers of MiniLM plus a linear head; the bottom layers (and
    the embeddings) stay frozen (run once, without gradients)."""

    def __init__(self, backbone: str, seed: int, n_out: int | None = None, *, top_layers: int = TOP_LAYERS,
                 rank: int = LORA_RANK, alpha: float = LORA_ALPHA) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from empathic_agent.encode import text_model as tm

        torch.manual_seed(seed)
        self.seed = seed
        self.tokenizer = AutoTokenizer.from_pretrained(backbone)
        self.model = AutoModel.from_pretrained(backbone, dtype=torch.float32)
        self.top_layers = top_layers
        self.loras, self.adapter_params = tm.lora_for_training(self.model, top_layers, rank, alpha)
        n_out = n_out or (len(LEVELS) - 1) + len(SUBJECTS) + len(DIMENSIONS)
        self.head = torch.nn.Linear(self.model.config.hidden_size, n_out)
        self.n_bottom = self.model.config.num_hidden_layers - top_layers

    def _bottom(self, texts: Sequence[str]) -> list[Any]:
        """The frozen bottom layers' output per text (its real tokens only), computed once: each
        training step then runs only the top layers."""
        import torch

        from empathic_agent.encode import text_model as tm

        out: list[Any] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                batch = self.tokenizer([texts[j] for j in idx], truncation=True, max_length=MAX_TOKENS, padding=True,
                                       return_tensors="pt")
                hidden = tm.bottom_forward(self.model, batch["input_ids"], batch["attention_mask"], self.n_bottom)
                for k, j in enumerate(idx):
                    n = int(batch["attention_mask"][k].sum())
                    out[j] = hidden[k, :n].clone()
        return out

    def _top(self, hidden: Sequence[Any]) -> Any:
        """Top layers + mean pooling on a batch of cached bottom outputs (padded here)."""
        import torch

        from empathic_agent.encode import text_model as tm

        n = max(h.shape[0] for h in hidden)
        x = torch.zeros(len(hidden), n, hidden[0].shape[1])
        mask = torch.zeros(len(hidden), n, dtype=torch.long)
        for k, h in enumerate(hidden):
            x[k, :h.shape[0]] = h
            mask[k, :h.shape[0]] = 1
        return tm.top_forward(self.model, x, mask, self.n_bottom)

    def _batches(self, lengths: Sequence[int], gen: Any) -> list[list[int]]:
        """Shuffled batches of similar lengths (little padding), in shuffled order."""
        import torch

        perm = torch.randperm(len(lengths), generator=gen).tolist()
        batches = []
        for i in range(0, len(perm), BATCH * 16):
            chunk = sorted(perm[i:i + BATCH * 16], key=lambda j: lengths[j])
            batches += [chunk[k:k + BATCH] for k in range(0, len(chunk), BATCH)]
        order = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[o] for o in order]

    def fit(self, texts: Sequence[str], rows: Sequence[dict[str, Any]], *, progress: bool, desc: str,
            epochs: int = EPOCHS, lr_scale: float = 1.0) -> None:
        import torch
        from torch import nn

        ordinal, subject, dims = (torch.as_tensor(t) for t in _targets(rows))
        # Label smoothing: writers disagree at the level boundaries, and a saturated model pushes
        # every threshold to the edge.
        ordinal = ordinal * (1 - LABEL_SMOOTHING) + LABEL_SMOOTHING / 2
        n_ord, n_sub = ordinal.shape[1], len(SUBJECTS)
        bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()

        def loss(out: Any, b: list[int]) -> Any:
            return (bce(out[:, :n_ord], ordinal[b]) + SUBJECT_WEIGHT * ce(out[:, n_ord:n_ord + n_sub], subject[b])
                    + DIMENSION_WEIGHT * bce(out[:, n_ord + n_sub:], dims[b]))

        self.train_loop(texts, loss, progress=progress, desc=desc, epochs=epochs, lr_scale=lr_scale)

    def train_loop(self, texts: Sequence[str], loss: Any, *, progress: bool, desc: str, epochs: int = EPOCHS,
                   lr_scale: float = 1.0) -> None:
        """``epochs`` of AdamW (one-cycle, peak learning rates :data:`LR` / :data:`HEAD_LR` times
        ``lr_scale``) on ``loss(head_output, batch_indices)``: the adapters and the head learn; the
        bottom layers run once, without gradients."""
        import torch
        from torch import nn

        hidden = self._bottom(texts)
        lengths = [h.shape[0] for h in hidden]
        lr, head_lr = LR * lr_scale, HEAD_LR * lr_scale
        opt = torch.optim.AdamW([{"params": self.adapter_params, "lr": lr},
                                 {"params": self.head.parameters(), "lr": head_lr}], weight_decay=WEIGHT_DECAY)
        steps = epochs * ((len(texts) + BATCH - 1) // BATCH + 16)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, head_lr], total_steps=steps, pct_start=0.1)
        drop = nn.Dropout(DROPOUT)
        gen = torch.Generator().manual_seed(self.seed)
        self.model.train()
        self.head.train()
        bar: Any = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=desc, unit="step", file=sys.stderr)
        done = 0
        for _ in range(epochs):
            for b in self._batches(lengths, gen):
                value = loss(self.head(drop(self._top([hidden[j] for j in b]))), b)
                opt.zero_grad()
                value.backward()
                opt.step()
                if done < steps - 1:
                    sched.step()
                done += 1
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        self.model.eval()
        self.head.eval()

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """The head's raw outputs per text (N, outputs)."""
        import torch

        hidden = self._bottom(texts)
        order = sorted(range(len(texts)), key=lambda i: hidden[i].shape[0])
        out = np.zeros((len(texts), self.head.out_features), np.float32)
        with torch.inference_mode():
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                out[idx] = self.head(self._top([hidden[j] for j in idx])).numpy()
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """P(>= k) per text (N, 4)."""
        import torch

        from empathic_agent.safety.learned import head_outputs

        p_ord, _, _ = head_outputs(torch.from_numpy(self.logits(texts)))
        return p_ord

    def _stored(self) -> dict[str, Any]:
        """The trained tensors under their stored names (``risk_model.npz``): LoRA A/B and the top
        layers' biases/norms (:func:`text_model.adapter_state`'s names) and the head."""
        from empathic_agent.encode import text_model as tm

        out: dict[str, Any] = {"head.weight": self.head.weight, "head.bias": self.head.bias}
        for name, lora in self.loras.items():
            out[f"lora.{name}.A"], out[f"lora.{name}.B"] = lora.lora_A, lora.lora_B
        for name, p in tm.trainable_backbone_params(self.model, self.top_layers).items():
            out[f"backbone.{name}"] = p
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Start from a stored reader (:meth:`state`'s keys): its adapters, trained biases/norms and
        head.  Every trainable tensor must be in ``state`` with its shape."""
        import torch

        targets = self._stored()
        missing = sorted(set(targets) - set(state))
        if missing:
            raise ValueError(f"the stored reader lacks {len(missing)} trained tensors (e.g. {missing[0]}): "
                             "a reader of another architecture")
        with torch.no_grad():
            for key, param in targets.items():
                value = torch.as_tensor(np.asarray(state[key], np.float32))
                if tuple(value.shape) != tuple(param.shape):
                    raise ValueError(f"{key}: stored {tuple(value.shape)}, this reader {tuple(param.shape)}")
                param.copy_(value)

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self._stored().items()}


def _training_set(rows: Sequence[dict[str, Any]], seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for r in rows:
        for t in [r["text"], *augment(r["text"], rng)]:
            texts.append(t)
            labels.append(r)
    return texts, labels


def _views(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[int]]:
    """Whole messages and their sentence views, with the row index of each view."""
    texts, owner = [], []
    for i, r in enumerate(rows):
        for t in [r["text"], *split_sentences(r["text"])]:
            texts.append(t)
            owner.append(i)
    return texts, owner


def _max_by_owner(p: np.ndarray, owner: Sequence[int], n: int) -> np.ndarray:
    out = np.zeros((n, p.shape[1]), np.float32)
    for row, i in zip(p, owner):
        out[i] = np.maximum(out[i], row)
    return out


def choose_thresholds(p_ord: np.ndarray, levels: np.ndarray, distress: np.ndarray | None = None) -> list[float]:
    """Per k: the lowest threshold whose false alarms on level-none rows stay within budget and,
    with ``distress`` (P(>= k) of ordinary help-seekers' messages), within :data:`DISTRESS_BUDGET`
    on those too."""
    lo, hi = THRESHOLD_RANGE
    neg = p_ord[levels == 0]
    grid = np.round(np.arange(lo, hi + 1e-9, 0.01), 2)
    out = []
    for k in range(p_ord.shape[1]):
        # Without hard negatives (a refined reader has no out-of-fold predictions) only the distress
        # budget bounds the threshold.
        ok = [t for t in grid if (neg[:, k] >= t).mean() <= FALSE_ALARM_BUDGET[k]] if len(neg) else list(grid)
        if distress is not None and len(distress):
            ok = [t for t in ok if (distress[:, k] >= t).mean() <= DISTRESS_BUDGET[k]]
        out.append(float(ok[0]) if ok else hi)
    # Thresholds of higher levels are never below those of lower ones.
    for k in range(1, len(out)):
        out[k] = max(out[k], out[k - 1] * 0.5)
    return out


def distress_scores(predict: Any, texts: Sequence[str], *, views: bool) -> np.ndarray:
    """P(>= k) of each text as the screen reads it (the maximum over the whole message and, with
    ``views``, its sentence windows); ``predict``: texts -> (N, 4)."""
    view_texts, owner = _views([{"text": t} for t in texts]) if views else (list(texts), list(range(len(texts))))
    p = np.vstack([predict(view_texts[i:i + 256]) for i in range(0, len(view_texts), 256)])
    return _max_by_owner(p, owner, len(texts))


def _distress_texts(esconv: str | Path | None) -> list[str]:
    if esconv is None:
        return []
    from empathic_agent.training.clinical import esconv_seeker_turns

    path = Path(esconv)
    return esconv_seeker_turns(path / "train.txt" if path.is_dir() else path, n=DISTRESS_SAMPLE)


def _distress_figures(p: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    from empathic_agent.safety.learned import chain_level

    pred = np.array([chain_level(row, thresholds) for row in p])
    return {"n": int(len(p)), "budget": list(DISTRESS_BUDGET),
            **{f"rate_{name}": round(float((pred >= k).mean()), 4) for k, name in enumerate(LEVELS[1:], start=1)}}


def _everyday_rate(p_ord: np.ndarray, thresholds: Sequence[float]) -> float | None:
    """Share of plain everyday messages given any risk level."""
    from empathic_agent.safety.learned import chain_level

    if not len(p_ord):
        return None
    return round(float(np.mean([chain_level(row, thresholds) >= 1 for row in p_ord])), 4)


def _figures(p_ord: np.ndarray, levels: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    from empathic_agent.safety.learned import chain_level

    pred = np.array([chain_level(row, thresholds) for row in p_ord])
    risk = levels >= 1
    out: dict[str, Any] = {
        "n": int(len(levels)),
        "recall_any_risk": round(float((pred[risk] >= 1).mean()), 4) if risk.any() else None,
        "false_alarm_rate": round(float((pred[~risk] >= 1).mean()), 4) if (~risk).any() else None,
        "false_protocol_rate": round(float((pred[~risk] >= 2).mean()), 4) if (~risk).any() else None,
        "level_exact": round(float((pred == levels).mean()), 4),
    }
    for k, name in enumerate(LEVELS[1:], start=1):
        m = levels == k
        if m.any():
            out[f"recall_{name}_routed"] = round(float((pred[m] >= min(k, 2)).mean()), 4)
            out[f"recall_{name}_level"] = round(float((pred[m] >= k).mean()), 4)
    # Expected calibration error of P(>= low) against "any risk" (10 equal-width bins).
    out["ece_any_risk"] = round(binned_ece(p_ord[:, 0], risk.astype(float)), 4)
    return out


def train(files: Sequence[str | Path] | None = None, *, out_dir: str | Path = WEIGHTS_DIR,
          backbone: str = "all-minilm-l6-v2", cache_dir: str | Path | None = None, seed: int = 20261203,
          folds: int = MAX_FOLDS, progress: bool = True, esconv: str | Path | None = None) -> dict[str, Any]:
    """Writer-grouped cross-validation in ``folds`` folds (0: none), then the final model on every
    writer; returns the figures written to ``out_dir/config.json``.  ``esconv`` (the ESConv folder
    or its ``train.txt``): the thresholds also keep within :data:`DISTRESS_BUDGET` on its seekers."""
    import torch

    from empathic_agent.safety.evaluate import read_risk_csv
    from empathic_agent.safety.learned import CONFIG_FORMAT

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    paths = [Path(f) for f in files] if files else sorted(TRAIN_DIR.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"no training CSVs in {TRAIN_DIR}")
    rows: list[dict[str, Any]] = []
    for p in paths:
        for r in read_risk_csv(p):
            rows.append(r | {"writer": p.stem})
    writers = sorted({r["writer"] for r in rows})
    location = _backbone(backbone, cache_dir)
    texts, labels = _training_set(rows, seed)
    levels = np.array([LEVELS.index(r["level"]) for r in rows])
    # Thresholds and figures are set on the hard negatives: plain everyday chat (kind "everyday")
    # is trained on but would dilute the false-alarm budget.
    hard = np.array([r["kind"] != "everyday" for r in rows])
    results: dict[str, Any] = {"writers": {w: sum(r["writer"] == w for r in rows) for w in writers}}
    sentence_views, thresholds = True, [0.5, 0.5, 0.5, 0.5]
    oof: dict[str, np.ndarray] | None = None
    if folds > 1 and len(writers) > 1:
        # Out of fold: each writer's messages read by a model trained on other writers only
        # (writers grouped into at most MAX_FOLDS folds to bound the training time).
        fold_of = {w: i % min(folds, len(writers)) for i, w in enumerate(writers)}
        results["folds"] = {str(f): [w for w in writers if fold_of[w] == f] for f in sorted(set(fold_of.values()))}
        oof_whole = np.zeros((len(rows), len(LEVELS) - 1), np.float32)
        oof_views = np.zeros_like(oof_whole)
        for f in sorted(set(fold_of.values())):
            idx = [i for i, r in enumerate(labels) if fold_of[r["writer"]] != f]
            trainer = _Trainer(location, seed)
            trainer.fit([texts[i] for i in idx], [labels[i] for i in idx], progress=progress, desc=f"fold {f}")
            held = [i for i, r in enumerate(rows) if fold_of[r["writer"]] == f]
            view_texts, owner = _views([rows[i] for i in held])
            p = trainer.predict(view_texts)
            by_row = _max_by_owner(p, owner, len(held))
            first = [k for k in range(len(owner)) if k == 0 or owner[k] != owner[k - 1]]
            oof_views[held] = by_row
            oof_whole[held] = p[first]
        if cache_dir is not None:  # the out-of-fold predictions, for analysis (never committed)
            np.savez(Path(cache_dir) / "safety-oof.npz", whole=oof_whole, views=oof_views, levels=levels, hard=hard,
                     writers=np.array([r["writer"] for r in rows]), texts=np.array([r["text"] for r in rows]),
                     run=np.array(fingerprint(data_hashes(paths), seed)))
        oof = {"whole": oof_whole, "views": oof_views, "levels": levels, "hard": hard,
               "writers": np.array([r["writer"] for r in rows])}
    final = _Trainer(location, seed)
    final.fit(texts, labels, progress=progress, desc="final model")
    if oof is not None:
        # The distress budget is read by the final model: ESConv was never trained on, so its
        # seekers' messages are out of sample for it as for every fold.
        distress_texts = _distress_texts(esconv)
        distress = ({"whole": distress_scores(final.predict, distress_texts, views=False),
                     "views": distress_scores(final.predict, distress_texts, views=True)} if distress_texts else None)
        thresholds, sentence_views, selection = _select(oof, distress)
        results.update(selection)
    config = {"format": CONFIG_FORMAT, "backbone": backbone, "dimensions": list(DIMENSIONS), "subjects": list(SUBJECTS),
              "thresholds": [round(t, 3) for t in thresholds], "sentence_views": bool(sentence_views),
              "architecture": {"top_layers": TOP_LAYERS, "lora_rank": LORA_RANK, "lora_alpha": LORA_ALPHA,
                               "hidden_size": int(final.model.config.hidden_size),
                               "num_layers": int(final.model.config.num_hidden_layers)},
              "seed": seed,
              "hyperparameters": {"lr": LR, "head_lr": HEAD_LR, "weight_decay": WEIGHT_DECAY, "dropout": DROPOUT,
                                  "epochs": EPOCHS, "batch": BATCH, "label_smoothing": LABEL_SMOOTHING, "max_tokens": MAX_TOKENS,
                                  "false_alarm_budget": list(FALSE_ALARM_BUDGET),
                                  "distress_budget": list(DISTRESS_BUDGET) if esconv is not None else None},
              "training_rows": len(rows), "training_texts_with_variants": len(texts),
              "data": data_hashes(paths),
              "selection": results, "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "risk_model.npz", **{k: v.astype(np.float32) for k, v in final.state().items()})
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config


#: Refining a trained reader on a new writer: texts replayed from the writers it was trained on per new
#: text (so the new kind is learned without forgetting the old ones), epochs and learning-rate scale.
REFINE_REPLAY: Final[float] = 3.0
REFINE_EPOCHS: Final[int] = 1
REFINE_LR_SCALE: Final[float] = 0.5


def refine(add: Sequence[str | Path], *, base_dir: str | Path = WEIGHTS_DIR, out_dir: str | Path,
           replay: float = REFINE_REPLAY, epochs: int = REFINE_EPOCHS, lr_scale: float = REFINE_LR_SCALE,
           seed: int = 20261205, esconv: str | Path | None = None, cache_dir: str | Path | None = None,
           progress: bool = True) -> dict[str, Any]:
    """A trained reader taught new writers' messages (``add``) by a short warm-started fine-tune,
    with a seeded replay of the writers it was trained on.  Retraining from scratch moves every
    threshold with the seed (two readers trained alike disagree on a few per cent of held-out
    messages); a refinement starts from the reader's own weights and keeps its thresholds, so what
    changes is mostly what the new writers teach.  With ``esconv`` (the ESConv folder or its
    ``train.txt``) the thresholds are chosen again instead, so that the refined reader flags ordinary
    help-seekers' turns at most at :data:`DISTRESS_BUDGET` (a fine-tune shifts the whole scale: kept
    thresholds then read less risk everywhere).  ``out_dir`` gets the reader (``risk_model.npz``,
    ``config.json`` with a ``refined`` record); copy the rest of a weights folder beside it to use
    it (``EMPATHIC_SAFETY_MODEL``), and retrain the second look on it (``train-second-look --out``):
    the shipped one names the reader it was trained on and is switched off with any other."""
    from empathic_agent.safety.evaluate import read_risk_csv

    t0 = time.perf_counter()
    base = Path(base_dir)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    if config.get("members"):
        raise ValueError(f"{base} is a combined reader; refine a single reader")
    add_paths = [Path(f) for f in add]
    trained_on = [TRAIN_DIR / name for name in config.get("data", {})]
    if not add_paths:
        raise ValueError("nothing to refine on: give at least one CSV")
    if overlap := sorted({p.name for p in add_paths} & {p.name for p in trained_on}):
        raise ValueError(f"the reader was already trained on {', '.join(overlap)}")
    if missing := [p for p in [*add_paths, *trained_on] if not p.is_file()]:
        raise FileNotFoundError(f"training data not found: {missing[0]}")
    if stale := sorted(set(data_hashes(trained_on).items()) - set(config.get("data", {}).items())):
        raise ValueError(f"{stale[0][0]} changed since the reader was trained: its replay would teach other labels")
    new_rows = [r | {"writer": p.stem} for p in add_paths for r in read_risk_csv(p)]
    old_rows = [r | {"writer": p.stem} for p in trained_on for r in read_risk_csv(p)]
    rng = random.Random(seed)
    replayed = rng.sample(old_rows, min(len(old_rows), int(round(replay * len(new_rows)))))
    texts, labels = _training_set(new_rows + replayed, seed)
    with np.load(base / "risk_model.npz") as z:
        state = {k: z[k] for k in z.files}
    arch = config["architecture"]
    trainer = _Trainer(_backbone(config["backbone"], cache_dir), seed, top_layers=arch["top_layers"],
                       rank=arch["lora_rank"], alpha=arch["lora_alpha"])
    trainer.load_state(state)
    trainer.fit(texts, labels, progress=progress, desc="refine", epochs=epochs, lr_scale=lr_scale)
    thresholds, distress_figures = list(config["thresholds"]), None
    if distress_texts := _distress_texts(esconv):
        distress = distress_scores(trainer.predict, distress_texts, views=bool(config.get("sentence_views", True)))
        thresholds = choose_thresholds(np.zeros((0, len(LEVELS) - 1)), np.zeros(0, int), distress)
        distress_figures = _distress_figures(distress, thresholds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "risk_model.npz", **{k: v.astype(np.float32) for k, v in trainer.state().items()})
    refined = {"thresholds_from": "distress budget" if distress_figures else "kept", "distress": distress_figures,
               "from": {"data": config.get("data"), "seed": config.get("seed"), "thresholds": config.get("thresholds")},
               "added": data_hashes(add_paths), "added_rows": len(new_rows), "replayed_rows": len(replayed),
               "texts_with_variants": len(texts), "epochs": epochs, "lr_scale": lr_scale, "seed": seed,
               "seconds": round(time.perf_counter() - t0, 1),
               "earlier": config.get("refined")}
    config = config | {"data": config.get("data", {}) | data_hashes(add_paths), "refined": refined,
                       "thresholds": [round(t, 3) for t in thresholds]}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config


def _select(oof: dict[str, np.ndarray], distress: dict[str, np.ndarray] | None) -> tuple[list[float], bool, dict[str, Any]]:
    """Thresholds from out-of-fold predictions (``whole``, ``views``, ``levels``, ``hard``,
    ``writers``), for whole messages and with sentence views; the views are kept when, within the
    same false-alarm budget, they find at least as much risk.  Returns (thresholds, views, the
    selection figures)."""
    hard, levels = oof["hard"], oof["levels"]
    th, fig = {}, {}
    for kind in ("whole", "views"):
        d = distress[kind] if distress is not None else None
        th[kind] = choose_thresholds(oof[kind][hard], levels[hard], d)
        fig[kind] = _figures(oof[kind][hard], levels[hard], th[kind]) | {
            "everyday_false_alarm_rate": _everyday_rate(oof[kind][~hard], th[kind])}
        if d is not None:
            fig[kind]["distress"] = _distress_figures(d, th[kind])
    within = fig["views"]["false_alarm_rate"] <= FALSE_ALARM_BUDGET[0] + 0.01
    views = within and (fig["views"]["recall_any_risk"], fig["views"].get("recall_high_routed", 0)) >= \
        (fig["whole"]["recall_any_risk"], fig["whole"].get("recall_high_routed", 0))
    kind = "views" if views else "whole"
    per_writer = {}
    for w in sorted(set(oof["writers"][hard].tolist())):
        m = (oof["writers"] == w) & hard
        per_writer[str(w)] = _figures(oof[kind][m], levels[m], th[kind])
    return th[kind], bool(views), {
        "out_of_fold": {"whole_message": fig["whole"] | {"thresholds": th["whole"]},
                        "with_sentence_views": fig["views"] | {"thresholds": th["views"]}},
        "per_writer": per_writer}


def rethreshold(oof_path: str | Path, config_path: str | Path, *, esconv: str | Path | None = None,
                cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Choose the thresholds again from saved out-of-fold predictions (``safety-oof.npz`` of a
    training run) with the current budgets; with ``esconv``, the model next to ``config_path``
    reads its seekers' messages for :data:`DISTRESS_BUDGET`.  Updates ``config.json``."""
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    with np.load(oof_path) as z:
        check_fingerprint(str(z["run"]) if "run" in z.files else None, config, Path(oof_path), Path(config_path))
        oof = {k: z[k] for k in ("whole", "views", "levels", "writers")}
        oof["hard"] = z["hard"] if "hard" in z.files else np.ones(len(oof["levels"]), bool)
    distress = None
    texts = _distress_texts(esconv)
    if texts:
        from empathic_agent.safety.learned import RiskModel

        model = RiskModel(Path(config_path).parent, cache_dir=cache_dir)
        model.load()
        distress = {"whole": distress_scores(lambda t: model.predict(t)[0], texts, views=False),
                    "views": distress_scores(lambda t: model.predict(t)[0], texts, views=True)}
    thresholds, views, selection = _select(oof, distress)
    config["selection"].update(selection)
    config["thresholds"] = [round(t, 3) for t in thresholds]
    config["sentence_views"] = views
    config["hyperparameters"]["false_alarm_budget"] = list(FALSE_ALARM_BUDGET)
    config["hyperparameters"]["distress_budget"] = list(DISTRESS_BUDGET) if distress is not None else None
    Path(config_path).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config


def combine(members: Sequence[tuple[str | Path, str | Path]], *, out_dir: str | Path,
            files: Sequence[str | Path] | None = None, esconv: str | Path | None = None,
            cache_dir: str | Path | None = None) -> dict[str, Any]:
    """A reader that averages trained readers: ``members`` are (weights folder, its out-of-fold
    ``safety-oof.npz``).  Every training row gets each member's out-of-fold prediction or, for a
    writer the member never trained on, its final model's; the average of those is the combined
    reader's out-of-fold prediction, and the thresholds (and the distress budget with ``esconv``) are
    chosen on it as for one reader.  Writes the members' weights, ``config.json`` and (with
    ``cache_dir``) the combined ``safety-oof.npz`` for ``train-scope``."""
    import shutil

    from empathic_agent.safety.evaluate import read_risk_csv
    from empathic_agent.safety.learned import RiskModel

    paths = [Path(f) for f in files] if files else sorted(TRAIN_DIR.glob("*.csv"))
    rows = [r | {"writer": p.stem} for p in paths for r in read_risk_csv(p)]
    texts = [r["text"] for r in rows]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    distress_texts = _distress_texts(esconv)
    whole, views, distress_w, distress_v, names, configs = [], [], [], [], [], []
    for i, (folder, oof_path) in enumerate(members):
        model = RiskModel(folder, cache_dir=cache_dir)
        config = model.read_config()
        if config.get("members"):
            raise ValueError(f"{folder} is already a combined reader; combine single readers")
        trained_on = {Path(f).stem for f in config.get("data", {})}
        with np.load(oof_path) as z:
            at = {t: k for k, t in enumerate(z["texts"].tolist())}
            w_oof, v_oof = z["whole"], z["views"]
        w, v = np.zeros((len(rows), len(LEVELS) - 1), np.float32), np.zeros((len(rows), len(LEVELS) - 1), np.float32)
        fresh = []
        for k, r in enumerate(rows):
            if r["text"] in at:
                w[k], v[k] = w_oof[at[r["text"]]], v_oof[at[r["text"]]]
            elif r["writer"] in trained_on:
                raise ValueError(f"{oof_path} has no out-of-fold prediction for a message of {r['writer']}, "
                                 f"which {folder} was trained on")
            else:
                fresh.append(k)
        model.load()
        predict = lambda t, m=model: m.predict(t)[0]  # noqa: E731
        if fresh:  # writers this member never read: its final model's prediction is out of sample
            w[fresh] = distress_scores(predict, [texts[k] for k in fresh], views=False)
            v[fresh] = distress_scores(predict, [texts[k] for k in fresh], views=True)
        whole.append(w)
        views.append(v)
        if distress_texts:
            distress_w.append(distress_scores(predict, distress_texts, views=False))
            distress_v.append(distress_scores(predict, distress_texts, views=True))
        name = f"risk_model_{i}.npz"
        shutil.copyfile(Path(folder) / RiskModel.member_files(config)[0], out / name)
        names.append(name)
        configs.append({"folder": str(folder), "seed": config.get("seed"), "data": config.get("data"),
                        "own_thresholds": config.get("thresholds"), "rows_read_by_final_model": len(fresh)})
    levels = np.array([LEVELS.index(r["level"]) for r in rows])
    oof = {"whole": np.mean(whole, axis=0), "views": np.mean(views, axis=0), "levels": levels,
           "hard": np.array([r["kind"] != "everyday" for r in rows]), "writers": np.array([r["writer"] for r in rows])}
    distress = ({"whole": np.mean(distress_w, axis=0), "views": np.mean(distress_v, axis=0)} if distress_texts else None)
    thresholds, sentence_views, selection = _select(oof, distress)
    base = json.loads((Path(members[0][0]) / "config.json").read_text(encoding="utf-8"))
    config = {k: base[k] for k in ("format", "backbone", "dimensions", "subjects", "architecture")} | {
        "members": names, "thresholds": [round(t, 3) for t in thresholds], "sentence_views": sentence_views,
        "combined_from": configs,
        "hyperparameters": {"false_alarm_budget": list(FALSE_ALARM_BUDGET),
                            "distress_budget": list(DISTRESS_BUDGET) if distress is not None else None},
        "data": data_hashes(paths),
        "selection": {"writers": {w: int((oof["writers"] == w).sum()) for w in sorted(set(oof["writers"].tolist()))}}
        | selection}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    if cache_dir is not None:
        np.savez(Path(cache_dir) / "safety-oof.npz", **oof, texts=np.array(texts),
                 run=np.array(fingerprint(config["data"], config.get("seed"))))
    return config


# -- the scope head (safety/scope.py) --------------------------------------------------------------

#: Inverse L2 strength of the scope head's logistic regression (384 weights on ~1,300 messages).
#: Out of fold (leave one writer out) with the reader's cut at 0.1: C=1 freed 136 of 268 hard
#: negatives the patterns fire on, C=3 144, both silencing one low-risk message; C=0.3 freed 107.
SCOPE_C: Final[float] = 3.0
#: The candidate cuts searched (scope head P, reader P(level >= low)).
SCOPE_CUTS: Final[tuple[float, ...]] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
READER_CUTS: Final[tuple[float, ...]] = (0.05, 0.1, 0.2, 0.3, 0.5)
#: The rule: no risk message at moderate or above silenced out of fold, and at most this share of
#: the (low-level) risk messages the patterns find; among the pairs allowed, the most hard
#: negatives freed (ties: the smaller cuts).
SCOPE_SILENCE_BUDGET: Final[float] = 0.003


def train_scope(files: Sequence[str | Path] | None = None, *, out_dir: str | Path = WEIGHTS_DIR,
                embedder: Any = None, cache_dir: str | Path | None = None,
                reader_oof: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the scope head (:mod:`empathic_agent.safety.scope`) and choose its two cuts on
    leave-one-writer-out predictions; writes ``out_dir/scope.json`` and returns it.

    ``reader_oof``: the learned reader's out-of-fold predictions of the same writers
    (``safety-oof.npz`` of ``empathic safety train``; default: in ``cache_dir``)."""
    from sklearn.linear_model import LogisticRegression

    from empathic_agent.errors import ConfigError
    from empathic_agent.safety.detect import immediate, pattern_readings, pattern_signals
    from empathic_agent.safety.evaluate import read_risk_csv
    from empathic_agent.safety.scope import (
        GOODBYE_PATTERNS,
        MIN_CONTEXT_WORDS,
        NEVER_DISCOUNTED,
        NEVER_DISCOUNTED_CATEGORIES,
        SCOPE_FILE,
        SCOPE_FORMAT,
        eligible,
    )

    t0 = time.perf_counter()
    paths = [Path(f) for f in files] if files else sorted(TRAIN_DIR.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"no training CSVs in {TRAIN_DIR}")
    rows = [r | {"writer": p.stem} for p in paths for r in read_risk_csv(p)]
    oof_path = Path(reader_oof) if reader_oof else (Path(cache_dir) / "safety-oof.npz" if cache_dir else None)
    if oof_path is None or not oof_path.is_file():
        raise ConfigError(f"the reader's out-of-fold predictions are needed ({oof_path}): run "
                          "'empathic safety train' (with folds) first")
    with np.load(oof_path) as z:
        reader = {(str(w), str(t)): float(v[0]) for w, t, v in zip(z["writers"], z["texts"], z["views"])}
    missing = [r["text"][:60] for r in rows if (r["writer"], r["text"]) not in reader]
    if missing:
        raise ConfigError(f"{oof_path} does not cover {len(missing)} training messages (e.g. {missing[0]!r}): "
                          "re-run 'empathic safety train' on the same files")
    pattern_level = [pattern_readings(r["text"])[1] for r in rows]
    hit = [i for i, lv in enumerate(pattern_level) if lv != "none"]
    if not hit:
        raise ConfigError("the patterns fire on none of the training messages: nothing to train the scope head on")
    sub = [rows[i] for i in hit]
    levels = np.array([LEVELS.index(r["level"]) for r in sub])
    y = (levels > 0).astype(int)
    neg = (levels == 0) & np.array([r["kind"] != "everyday" for r in sub])
    # What the run-time rule may discount at all (never imminent danger, abuse, a short message...).
    may = np.array([eligible(rows[i]["text"], pattern_signals(rows[i]["text"])[0], now=immediate(rows[i]["text"]))
                    for i in hit])
    p_reader = np.array([reader[(r["writer"], r["text"])] for r in sub])
    if embedder is None:
        from empathic_agent.memory.embedder import MiniLMEmbedder
        from empathic_agent.settings import Settings

        embedder = MiniLMEmbedder.from_settings(Settings.from_env())
    if progress:
        print(f"scope head: embedding the {len(sub)} messages the patterns fire on", file=sys.stderr)
    emb = embedder.embed([r["text"] for r in sub]).astype(np.float64)
    writers = np.array([r["writer"] for r in sub])
    oof = np.zeros(len(sub))
    for w in sorted(set(writers.tolist())):
        tr = writers != w
        if len(set(y[tr].tolist())) < 2:
            raise ConfigError(f"without {w} the pattern hits are all one class: the scope head cannot be trained")
        clf = LogisticRegression(C=SCOPE_C, max_iter=5000, class_weight="balanced").fit(emb[tr], y[tr])
        oof[~tr] = clf.predict_proba(emb[~tr])[:, 1]
    found = int((y == 1).sum())
    grid = []
    for sc in SCOPE_CUTS:
        for rc in READER_CUTS:
            off = may & (oof < sc) & (p_reader < rc)
            grid.append({"scope_cut": sc, "reader_cut": rc, "freed": int((off & neg).sum()),
                         "silenced": int((off & (y == 1)).sum()),
                         "silenced_moderate_up": int((off & (levels >= LEVELS.index("moderate"))).sum())})
    allowed = [g for g in grid if g["silenced_moderate_up"] == 0 and g["silenced"] <= SCOPE_SILENCE_BUDGET * found]
    best = max(allowed, key=lambda g: (g["freed"], -g["scope_cut"], -g["reader_cut"])) if allowed else \
        {"scope_cut": 0.0, "reader_cut": 0.0, "freed": 0, "silenced": 0, "silenced_moderate_up": 0}
    off = may & (oof < best["scope_cut"]) & (p_reader < best["reader_cut"])
    kinds: dict[str, dict[str, int]] = {}
    for k, is_neg, is_off in zip([r["kind"] for r in sub], neg, off):
        if is_neg:
            kinds.setdefault(k, {"hits": 0, "freed": 0})
            kinds[k]["hits"] += 1
            kinds[k]["freed"] += int(is_off)
    n_hard = sum(r["level"] == "none" and r["kind"] != "everyday" for r in rows)
    final = LogisticRegression(C=SCOPE_C, max_iter=5000, class_weight="balanced").fit(emb, y)
    if cache_dir is not None:  # for analysis (never committed)
        np.savez(Path(cache_dir) / "safety-scope-oof.npz", scope=oof, reader=p_reader, levels=levels, neg=neg,
                 eligible=may, writers=writers, texts=np.array([r["text"] for r in sub]))
    config = {
        "format": SCOPE_FORMAT, "embedder": getattr(embedder, "name", type(embedder).__name__),
        "dim": int(emb.shape[1]), "weights": [round(float(v), 6) for v in final.coef_[0]],
        "bias": round(float(final.intercept_[0]), 6),
        "scope_cut": best["scope_cut"], "reader_cut": best["reader_cut"], "c": SCOPE_C,
        "never_discounted": {"levels": sorted(NEVER_DISCOUNTED), "except_patterns": sorted(GOODBYE_PATTERNS),
                             "categories": sorted(NEVER_DISCOUNTED_CATEGORIES),
                             "min_context_words": MIN_CONTEXT_WORDS},
        "selection": {
            "rule": f"no out-of-fold risk message at moderate or above silenced, at most "
                    f"{SCOPE_SILENCE_BUDGET:.1%} of the risk messages the patterns find; most hard negatives freed",
            "pattern_hits": len(sub), "risk_messages_found_by_patterns": found,
            "hard_negatives": n_hard, "hard_negatives_hit": int(neg.sum()),
            "pattern_false_alarm_rate": round(float(neg.sum()) / max(1, n_hard), 4),
            "out_of_fold": best | {"pattern_false_alarm_rate_after": round(float(neg.sum() - best["freed"]) / max(1, n_hard), 4)},
            "freed_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["hits"])),
            "silenced": [{"text": r["text"], "level": r["level"], "writer": r["writer"]}
                         for r, o, t in zip(sub, off, y) if o and t],
            "grid": grid},
        "reader_oof": str(oof_path.name),
        "data": data_hashes(paths),
        "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SCOPE_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config


# -- the second look --------------------------------------------------------------------------------

#: Out of fold, the share of the writers' hard negatives (level none, not everyday chat) and of the
#: ordinary help-seekers' budget turns (the same ESConv *train* sample as :data:`DISTRESS_BUDGET`)
#: the second look may raise to ``high``: the lowest threshold within both.  (Written down before
#: the head existed; on writers 18-26 it came out at 0.99: 61 % of their high/imminent messages read
#: alone, and the screen routed 812 -> 839 of 960 with 70 -> 73 of 928 hard negatives flagged.)
SECOND_LOOK_HARD_NEGATIVE_BUDGET: Final[float] = 0.02
SECOND_LOOK_DISTRESS_BUDGET: Final[float] = 0.005
#: ESConv train seeker turns (after the budget sample) used as the head's ordinary negatives.
SECOND_LOOK_ESCONV_NEGATIVES: Final[int] = 4000
#: Inverse regularisation strengths tried (the best out-of-fold recall within the budgets wins).
SECOND_LOOK_CS: Final[tuple[float, ...]] = (0.01, 0.03, 0.1, 0.3)


def _second_look_threshold(p_writers: np.ndarray, hard_neg: np.ndarray, p_distress: np.ndarray) -> float | None:
    for t in np.round(np.arange(0.5, 0.9951, 0.005), 3):
        if (p_writers[hard_neg] >= t).mean() <= SECOND_LOOK_HARD_NEGATIVE_BUDGET and \
                (p_distress >= t).mean() <= SECOND_LOOK_DISTRESS_BUDGET:
            return float(t)
    return None


def train_second_look(files: Sequence[str | Path] | None = None, *, esconv: str | Path,
                      out_dir: str | Path = WEIGHTS_DIR, backbone: str | None = None,
                      cache_dir: str | Path | None = None, esconv_negatives: bool = True,
                      progress: bool = True) -> dict[str, Any]:
    """Train the reader's second look (:mod:`empathic_agent.safety.learned`) and choose its threshold
    leave-one-writer-out; writes ``out_dir/second_look.json`` and returns it.

    ``files``: default, the training CSVs the reader in ``out_dir`` was *not* trained on (its
    ``config.json`` names its data): the head reads the reader's vectors, which are not honest on
    words the reader has learned.  ``esconv``: the ESConv folder (or train split): ordinary
    help-seekers' turns, as negatives and for the distress budget; ``esconv_negatives=False`` reads
    them for the budget only (a threshold choice, not training): the weights are then the project's
    own (Apache-2.0) rather than research-only under ESConv's terms."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from empathic_agent.errors import ConfigError
    from empathic_agent.safety.evaluate import read_risk_csv
    from empathic_agent.safety.learned import SECOND_LOOK_FILE, SECOND_LOOK_FORMAT, RiskModel, weights_digest

    t0 = time.perf_counter()
    out = Path(out_dir)
    reader = RiskModel(out, backbone=backbone, cache_dir=cache_dir, second_look=False)
    reader.load()
    seen = set(reader.config.get("data", {}))
    paths = [Path(f) for f in files] if files else [p for p in sorted(TRAIN_DIR.glob("*.csv")) if p.name not in seen]
    if not paths:
        raise ConfigError(f"every training CSV in {TRAIN_DIR} was read by the reader: the second look needs "
                          "writers it has not read (add some, or pass --csv)")
    overlap = sorted(p.name for p in paths if p.name in seen)
    if overlap:
        raise ConfigError(f"the reader was trained on {', '.join(overlap)}: its vectors of those words are not honest")
    rows = [r | {"writer": p.stem} for p in paths for r in read_risk_csv(p)]
    distress = _distress_texts(esconv)
    if not distress:
        raise ConfigError("the second look needs ordinary help-seekers' turns: pass the ESConv folder (--esconv)")
    from empathic_agent.training.clinical import esconv_seeker_turns

    es_path = Path(esconv) / "train.txt" if Path(esconv).is_dir() else Path(esconv)
    extra = esconv_seeker_turns(es_path, n=DISTRESS_SAMPLE + SECOND_LOOK_ESCONV_NEGATIVES)[DISTRESS_SAMPLE:] \
        if esconv_negatives else []

    def vectors(texts: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
        views, owner = _views([{"text": t} for t in texts])
        if progress:
            print(f"second look: the reader's vectors of {len(texts)} {what} ({len(views)} views)", file=sys.stderr)
        return reader.pooled(views), np.asarray(owner)

    x_w, own_w = vectors([r["text"] for r in rows], "training messages")
    x_d, own_d = vectors(distress, "budget turns")
    x_e = vectors(extra, "ordinary turns")[0] if extra else np.zeros((0, x_w.shape[1]), np.float32)
    y_msg = np.array([LEVELS.index(r["level"]) >= LEVELS.index("high") for r in rows])
    hard_neg = np.array([r["level"] == "none" and r["kind"] != "everyday" for r in rows])
    writers = np.array([r["writer"] for r in rows])
    y_view, w_view = y_msg[own_w], writers[own_w]

    def fit(c: float, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        xt = np.vstack([x, x_e])
        yt = np.concatenate([y, np.zeros(len(x_e), bool)])
        scaler = StandardScaler().fit(xt)
        return scaler, LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(scaler.transform(xt), yt)

    def per_message(p_view: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        return _max_by_owner(p_view[:, None], owner, n)[:, 0]

    trials = []
    for c in SECOND_LOOK_CS:
        oof = np.zeros(len(x_w))
        p_d = np.zeros(len(x_d))
        for w in sorted(set(writers.tolist())):
            held = w_view == w
            scaler, clf = fit(c, x_w[~held], y_view[~held])
            oof[held] = clf.predict_proba(scaler.transform(x_w[held]))[:, 1]
            p_d += clf.predict_proba(scaler.transform(x_d))[:, 1] / len(set(writers.tolist()))
        p_msg = per_message(oof, own_w, len(rows))
        p_dis = per_message(p_d, own_d, len(distress))
        t = _second_look_threshold(p_msg, hard_neg, p_dis)
        trials.append({"c": c, "threshold": t,
                       "recall_high": None if t is None else round(float((p_msg[y_msg] >= t).mean()), 4),
                       "hard_negatives_flagged": None if t is None else round(float((p_msg[hard_neg] >= t).mean()), 4),
                       "distress_flagged": None if t is None else round(float((p_dis >= t).mean()), 4)})
        if progress:
            print(f"second look: C={c}: {trials[-1]}", file=sys.stderr)
    usable = [tr for tr in trials if tr["threshold"] is not None]
    if not usable:
        raise ConfigError("no threshold keeps the second look within its budgets: not written")
    best = max(usable, key=lambda tr: (tr["recall_high"], -tr["c"]))
    scaler, clf = fit(best["c"], x_w, y_view)
    # Standardisation folded into the weights: the run time computes one dot product.
    coef = clf.coef_[0] / scaler.scale_
    bias = float(clf.intercept_[0] - np.sum(clf.coef_[0] * scaler.mean_ / scaler.scale_))
    reader_file = out / reader.member_files(reader.config)[0]
    config = {
        "format": SECOND_LOOK_FORMAT, "reader": weights_digest(reader_file), "reader_file": reader_file.name,
        "target": "high", "threshold": best["threshold"], "dim": int(x_w.shape[1]),
        "licence": "research-only, non-commercial (ESConv train seeker turns were training negatives)"
                   if extra else "Apache-2.0 (the project's writers; ESConv read for the threshold only)",
        "weights": [round(float(v), 7) for v in coef], "bias": round(bias, 7),
        "selection": {
            "rule": f"leave-one-writer-out; the lowest threshold with <= {SECOND_LOOK_HARD_NEGATIVE_BUDGET:.1%} of the "
                    f"hard negatives and <= {SECOND_LOOK_DISTRESS_BUDGET:.1%} of {len(distress)} ESConv train seeker "
                    "turns (the distress budget sample) at or above it; the C with the best recall of level >= high",
            "chosen": best, "trials": trials,
            "messages": len(rows), "high_or_imminent": int(y_msg.sum()), "hard_negatives": int(hard_neg.sum()),
            "esconv_negatives": len(extra)},
        "data": data_hashes(paths),
        "seconds": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / SECOND_LOOK_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config
