"""Training of the learned strategy predictor (:mod:`empathic_agent.plan.learned`).

    empathic plan train --data-dir ../shared/data        # ~10 min on 2 cores (features cached)

**Data**: ESConv (Liu et al. 2021; academic research use only), its standard 910/195/195 split.
Every supporter turn after the seeker's first message is one example: what the agent would know at
that point (:func:`empathic_agent.plan.esconv.supporter_turns`, the same rows ``empathic plan
eval`` scores) -> the strategy the human supporter used.  **Train** fits the weights; **valid**
chooses the epoch, the size of the hidden layer, dropout and weight decay, the temperature, and
the strength of the bias that moves the planned mix of strategies towards the human one (the
planner's choice *with its hard constraints*, as in the graph).  **Test** is not read here:
``empathic plan eval --split test`` reports it.

Only the small trained weights are written (``plan/weights/strategy_predictor.npz``); ESConv never
is.  Features are cached under the cache directory (they take most of the time: every seeker
message read by the text encoder, every text embedded by MiniLM).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final, Sequence

import numpy as np

from empathic_agent.plan.learned import FEATURE_VERSION, WEIGHTS_PATH, StrategyPredictor, features
from empathic_agent.plan.register import FAMILIES, STRATEGIES, family_of, plan_register

__all__ = ["split_features", "train_planner", "train_reader", "attach_reader", "GRID", "READER_NAME",
           "READER_WEIGHTS"]

#: The fine-tuned next-strategy reader's file name (``plan/weights/READER_NAME.{npz,json}``).
READER_NAME: Final[str] = "next_strategy"

#: Model selection grid (on valid): hidden units, dropout (hidden layer), dropout (inputs).
GRID: Final[tuple[tuple[int, float, float], ...]] = ((128, 0.5, 0.2), (256, 0.5, 0.2), (256, 0.5, 0.5))
WEIGHT_DECAY: Final[float] = 1e-2
LEARNING_RATE: Final[float] = 3e-4
MAX_EPOCHS: Final[int] = 40
PATIENCE: Final[int] = 6
#: Members of the final ensemble (the chosen configuration, different seeds; logits averaged).
MEMBERS: Final[int] = 3
#: Largest gap between the planned share of a family and its share in ESConv train that the
#: family offsets aim for (the human mix; an argmax alone over-plans suggestions).
FAMILY_GAP: Final[float] = 0.04
#: Offsets tried per family (exploration stays 0): logit += offset of the strategy's family.
OFFSETS: Final[tuple[float, ...]] = tuple(round(-1.5 + 0.1 * i, 1) for i in range(31))


def _cache_key(path: Path, encoder: Any) -> str:
    st = path.stat()
    # Readings in context differ from readings alone: the context head is part of the key.
    raw = f"{path.name}:{st.st_size}:{int(st.st_mtime)}:{FEATURE_VERSION}:{getattr(encoder, 'name', '')}:" \
          f"{getattr(encoder, 'version', '')}:context={bool(getattr(encoder, 'reads_context', False))}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def split_features(data_dir: Path, split: str, *, encoder: Any, embedder: Any, cache_dir: Path | None,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(features (n, d), labels (n,), rows) of an ESConv split, cached on disk by file and version."""
    from empathic_agent.plan.esconv import SPLIT_FILES, load_esconv, supporter_turns

    convs = load_esconv(data_dir, split)
    rows = supporter_turns(convs, encoder=encoder, progress=progress)
    y = np.array([STRATEGIES.index(r["gold"]) for r in rows], np.int64)
    cache = None
    if cache_dir is not None:
        key = _cache_key(Path(data_dir) / "esconv" / SPLIT_FILES[split], encoder)
        cache = Path(cache_dir) / "planner" / f"{split}-{key}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                if z["x"].shape[0] == len(rows):
                    return z["x"], y, rows
    texts = sorted({r["dialogue"].text for r in rows} | {r["dialogue"].agent_text for r in rows} - {""})
    vecs: dict[str, np.ndarray] = {}
    chunks = [texts[i:i + 512] for i in range(0, len(texts), 512)]
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"embedding {split}", unit="batch", leave=False)
    for chunk in chunks:
        vecs.update(zip(chunk, embedder.embed(chunk)))
    x = np.stack([features(r["dialogue"], vecs[r["dialogue"].text],
                           vecs[r["dialogue"].agent_text] if r["dialogue"].agent_text else None) for r in rows])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, x=x)
    return x, y, rows


def _fit(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, hidden: int, dropout: float,
         in_dropout: float, seed: int) -> tuple[dict[str, np.ndarray], int, float]:
    """One MLP, early-stopped on valid accuracy: (weights, best epoch, valid accuracy)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = torch.nn.Sequential(torch.nn.Dropout(in_dropout), torch.nn.Linear(xtr.shape[1], hidden),
                                torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, len(STRATEGIES)))
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    xv = torch.from_numpy(xva)
    best: tuple[float, int, Any] = (-1.0, 0, None)
    for epoch in range(1, MAX_EPOCHS + 1):
        model.train()
        order = rng.permutation(len(ytr))
        for i in range(0, len(order), 128):
            idx = torch.from_numpy(order[i:i + 128])
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xv).argmax(1).numpy() == yva).mean())
        if acc > best[0]:
            best = (acc, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= PATIENCE:
            break
    state = best[2]
    weights = {"w1": state["1.weight"].numpy().T.copy(), "b1": state["1.bias"].numpy().copy(),
               "w2": state["4.weight"].numpy().T.copy(), "b2": state["4.bias"].numpy().copy()}
    return weights, best[1], best[0]


def _planned(rows: Sequence[dict[str, Any]], probs: np.ndarray) -> list[str]:
    """The planner's strategies with these distributions (hard constraints included)."""
    from empathic_agent.plan import load_persona

    persona = load_persona()
    return [plan_register(dataclasses.replace(r["input"], learned=dict(zip(STRATEGIES, map(float, p)))),
                          persona).strategy for r, p in zip(rows, probs)]


def _family_gap(rows: Sequence[dict[str, Any]], planned: Sequence[str]) -> float:
    gold = Counter(family_of(r["gold"]) for r in rows)
    mine = Counter(family_of(s) for s in planned)
    return max(abs(mine[f] - gold[f]) / len(rows) for f in FAMILIES)


def _family_bias(logits: np.ndarray, ytr: np.ndarray, yva: np.ndarray) -> np.ndarray:
    """Per-strategy logit offsets (one per family, exploration 0): the best valid accuracy among the
    offsets whose planned family mix is within FAMILY_GAP of ESConv train's (else the closest mix)."""
    fam = np.array([FAMILIES.index(family_of(k)) for k in STRATEGIES])
    onehot = np.eye(len(FAMILIES), dtype=np.float32)[fam]
    target = np.bincount(fam[ytr], minlength=len(FAMILIES)) / len(ytr)
    pick: tuple[float, float, Any] = (-1.0, np.inf, np.zeros(len(FAMILIES)))
    for c1 in OFFSETS:
        for c2 in OFFSETS:
            for c3 in OFFSETS:
                c = np.array([0.0, c1, c2, c3], np.float32)
                planned_idx = (logits + onehot @ c).argmax(1)
                gap = float(np.abs(np.bincount(fam[planned_idx], minlength=len(FAMILIES)) / len(yva) - target).max())
                acc = float(np.mean(planned_idx == yva))
                fits = gap <= FAMILY_GAP
                if (fits and (pick[1] > FAMILY_GAP or acc > pick[0])) or (not fits and pick[1] > FAMILY_GAP and gap < pick[1]):
                    pick = (acc, gap, c)
    return (onehot @ pick[2]).astype(np.float32)


def _offsets_of(bias: np.ndarray) -> dict[str, float]:
    """The family offsets a per-strategy bias was made of."""
    return {f: round(float(next(b for k, b in zip(STRATEGIES, bias) if family_of(k) == f)), 2) for f in FAMILIES}


def _agreement(rows: Sequence[dict[str, Any]], planned: Sequence[str]) -> dict[str, float]:
    return {"strategy_agreement": round(float(np.mean([p == r["gold"] for p, r in zip(planned, rows)])), 4),
            "family_agreement": round(float(np.mean([family_of(p) == family_of(r["gold"])
                                                    for p, r in zip(planned, rows)])), 4),
            "family_gap_vs_valid": round(_family_gap(rows, planned), 4)}


def train_planner(data_dir: Path | str, settings: Any, *, out: Path | str = WEIGHTS_PATH, seed: int = 0,
                  progress: bool = False) -> dict[str, Any]:
    """Train, select on valid, write the weights; returns the report (train/valid figures)."""
    from empathic_agent.encode import load_encoder
    from empathic_agent.memory.embedder import MiniLMEmbedder

    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    encoder = load_encoder("text", settings)
    embedder = MiniLMEmbedder.from_settings(settings)
    xtr, ytr, _ = split_features(data_dir, "train", encoder=encoder, embedder=embedder,
                                 cache_dir=settings.cache_dir, progress=progress)
    xva, yva, rows_va = split_features(data_dir, "valid", encoder=encoder, embedder=embedder,
                                       cache_dir=settings.cache_dir, progress=progress)
    features_s = time.perf_counter() - t0
    mean = xtr.mean(axis=0)
    scale = np.maximum(xtr.std(axis=0), 1e-3)
    ztr, zva = ((xtr - mean) / scale).astype(np.float32), ((xva - mean) / scale).astype(np.float32)

    trials = []
    best: tuple[float, Any] = (-1.0, None)
    for hidden, dropout, in_dropout in GRID:
        _, epoch, acc = _fit(ztr, ytr, zva, yva, hidden, dropout, in_dropout, seed)
        trials.append({"hidden": hidden, "dropout": dropout, "input_dropout": in_dropout, "epoch": epoch,
                       "valid_accuracy": round(acc, 4)})
        if acc > best[0]:
            best = (acc, (hidden, dropout, in_dropout))
    hidden, dropout, in_dropout = best[1]
    members = [_fit(ztr, ytr, zva, yva, hidden, dropout, in_dropout, seed + k) for k in range(MEMBERS)]
    weights = {k: np.stack([m[0][k] for m in members]) for k in ("w1", "b1", "w2", "b2")}
    weights.update(mean=mean.astype(np.float32), scale=scale.astype(np.float32))
    meta: dict[str, Any] = {"feature_version": FEATURE_VERSION, "strategies": list(STRATEGIES), "temperature": 1.0}
    model = StrategyPredictor(weights, meta)
    raw = float(np.mean(model.probabilities(xva).argmax(1) == yva))
    # Temperature: valid negative log-likelihood.
    best_t = (np.inf, 1.0)
    for t in np.arange(0.5, 3.01, 0.05):
        model.temperature = float(t)
        nll = -float(np.mean(np.log(model.probabilities(xva)[np.arange(len(yva)), yva] + 1e-12)))
        if nll < best_t[0]:
            best_t = (nll, float(t))
    model.temperature = best_t[1]
    model.bias = _family_bias(model.logits(xva), ytr, yva)
    planned = _planned(rows_va, model.probabilities(xva))
    chosen = {"family_offsets": _offsets_of(model.bias), "model_accuracy_raw": round(raw, 4),
              **_agreement(rows_va, planned)}
    report = {
        "data": "ESConv train (fit) / valid (selection); test not read",
        "train_rows": int(len(ytr)), "valid_rows": int(len(yva)), "features": int(xtr.shape[1]),
        "grid": trials, "chosen": {"hidden": hidden, "dropout": dropout, "input_dropout": in_dropout,
                                   "members": MEMBERS, "epochs": [m[1] for m in members],
                                   "temperature": round(model.temperature, 3)},
        "temperature_valid_nll": round(best_t[0], 4), "valid": chosen,
        "features_seconds": round(features_s, 1), "seconds": round(time.perf_counter() - t0, 1),
        "seed": seed, "licence": "ESConv: academic research use only (weights are a model of it)",
    }
    meta.update(temperature=model.temperature, hidden=hidden, dropout=dropout, input_dropout=in_dropout,
                members=MEMBERS, seed=seed, valid=chosen, trained_on="ESConv train (910 conversations)",
                selected_on="ESConv valid (195 conversations)", text_encoder=getattr(encoder, "name", ""),
                embedder="all-MiniLM-L6-v2 (frozen)", created=time.strftime("%Y-%m-%d"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    np.savez_compressed(out, bias=model.bias.astype(np.float32), meta=np.array(json.dumps(meta)), **arrays)
    report["weights"] = str(out)
    return report


def train_reader(data_dir: Path | str, *, out: Path | str | None = None, backbone: str = "all-minilm-l6-v2",
                 cache_dir: Path | str | None = None, epochs: int = 3, seed: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """Fine-tune the next-strategy reader: all-MiniLM-L6-v2 with LoRA on its top three layers reads
    (the agent's previous reply and the strategies so far, the person's words since) ->
    the strategy the human supporter used next (:func:`~empathic_agent.plan.learned.reader_pair`).
    ESConv train fits it; valid chooses the epoch and the temperature; test is not read here."""
    from empathic_agent.plan.esconv import load_esconv, supporter_turns
    from empathic_agent.plan.learned import reader_pair
    from empathic_agent.training.judge import _train_heads

    def pairs(split: str) -> list[dict[str, Any]]:
        rows = supporter_turns(load_esconv(Path(data_dir), split))
        return [dict(zip(("context", "reply"), reader_pair(r["dialogue"])), strategy=r["gold"]) for r in rows]

    classes = list(STRATEGIES)
    folder = Path(out) if out else WEIGHTS_PATH.parent
    return _train_heads(READER_NAME, pairs("train"), pairs("valid"), [], [("strategy", classes)],
                        lambda r, h: classes.index(r["strategy"]), backbone=backbone, cache_dir=cache_dir,
                        out=folder, top_layers=3, rank=8, alpha=16.0, epochs=epochs, batch=32, lr=5e-4,
                        head_lr=2e-3, seed=seed, rationales=False,
                        extra_config={"data": "ESConv (Liu et al. 2021), academic research use only",
                                      "split": "ESConv's own train (fit) / valid (epoch, temperature); test not read",
                                      "context": "the agent's previous reply and the strategies so far "
                                                 "(plan.learned.reader_pair)"},
                        progress=progress)


#: Weights of the reader's log-probabilities beside the MLP's logits tried on valid (0: the MLP alone).
READER_WEIGHTS: Final[tuple[float, ...]] = tuple(0.25 * i for i in range(9))


def attach_reader(data_dir: Path | str, settings: Any, *, weights: Path | str = WEIGHTS_PATH,
                  progress: bool = False) -> dict[str, Any]:
    """Choose on ESConv valid how much the next-strategy reader (``READER_NAME`` beside ``weights``)
    weighs beside the trained MLP, and the family offsets again, by the planner's agreement with the
    supporters (its hard constraints included); write both into ``weights``.  Test is not read."""
    from empathic_agent.encode import load_encoder
    from empathic_agent.evals.pair_model import PairClassifier
    from empathic_agent.memory.embedder import MiniLMEmbedder

    t0 = time.perf_counter()
    weights = Path(weights)
    encoder = load_encoder("text", settings)
    embedder = MiniLMEmbedder.from_settings(settings)
    _, ytr, _ = split_features(Path(data_dir), "train", encoder=encoder, embedder=embedder,
                               cache_dir=settings.cache_dir, progress=progress)
    xva, yva, rows_va = split_features(Path(data_dir), "valid", encoder=encoder, embedder=embedder,
                                       cache_dir=settings.cache_dir, progress=progress)
    model = StrategyPredictor.from_file(weights)
    model.reader, model.bias = None, np.zeros(len(STRATEGIES), np.float32)
    mlp = model.logits(xva)
    reader = PairClassifier(READER_NAME, weights.parent, settings=settings)
    model.reader = reader
    logp = model.reader_log_probs([r["dialogue"] for r in rows_va])
    assert logp is not None
    trials = []
    best: tuple[float, float, float, Any] = (-1.0, -1.0, 0.0, None)
    for w in READER_WEIGHTS:
        logits = mlp + w * logp
        bias = _family_bias(logits, ytr, yva)
        z = logits + bias
        p = np.exp(z - z.max(axis=1, keepdims=True))
        figures = _agreement(rows_va, _planned(rows_va, p / p.sum(axis=1, keepdims=True)))
        trials.append({"weight": w, "family_offsets": _offsets_of(bias), **figures})
        # Strategy agreement first, then family agreement; ties keep the smaller weight.
        key = (figures["strategy_agreement"], figures["family_agreement"])
        if key > best[:2]:
            best = (*key, w, bias)
    meta = dict(model.meta)
    meta["reader"] = {"name": READER_NAME, "weight": best[2], "chosen_on": "ESConv valid, planner agreement"}
    meta["valid"] = {**next(t for t in trials if t["weight"] == best[2]), "reader_trials": trials}
    with np.load(weights, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in ("meta", "bias")}
    np.savez_compressed(weights, bias=np.asarray(best[3], np.float32), meta=np.array(json.dumps(meta)), **arrays)
    return {"data": "ESConv valid (selection); test not read", "weights": str(weights), "reader": meta["reader"],
            "valid": meta["valid"], "reader_config": reader.read_config().get("training"),
            "seconds": round(time.perf_counter() - t0, 1)}
