"""Retrieval benchmark: do the emotional strategies find the emotionally matching memory among
semantically similar ones, without losing relevance?  (``empathic memory eval``, JSON out.)

Construction (per data set; memories from the train split, queries from the test split)
----------------------------------------------------------------------------------------
* Every memory is a human-labelled sentence, stored through the real :class:`MemoryService` and
  Chroma store with a real MiniLM embedding, and tagged with its *gold* emotion as the reading at
  encoding time: EmoBank's V/A/D ratings ((x - 3) / 2 into [-1, 1]), or GoEmotions' Ekman label
  (a category distribution with 0.8 on the label, mapped to VAD by the latent space's prototypes).
* For each query sentence, its **semantic neighbourhood** is its NEIGHBOURHOOD (10) most similar
  memories by exact cosine.  Among these semantically similar memories, the **correct** ones are
  the emotionally matching ones: EmoBank - the single neighbour whose gold VAD is closest to the
  query's; GoEmotions - the neighbours with the query's label (queries whose neighbourhood is all
  one label are skipped: there is nothing to choose).  The other neighbours are distractors.
* The query's emotional state is the query's gold emotion ("oracle"), or a noisy estimate
  ("noisy": Gaussian noise with the SD of the data's own spread per VAD dimension added to the
  mean - roughly an encoder with r ~ 0.7 - and the reading's variance widened to match; for
  GoEmotions the label is replaced by a random other label 35 % of the time).  Memory tags get
  the same noise in the noisy condition: they too were estimated by encoders when stored.

Metrics per strategy (k = 5 results)
------------------------------------
* ``hit@1``, ``hit@k`` and ``mrr`` (MRR@k) of the correct memories;
* ``vad_distance``: mean Euclidean distance between the query's gold VAD and the retrieved memories'
  gold VAD (lower = more mood-congruent; GoEmotions uses the labels' prototype VAD);
* ``in_neighbourhood``: share of retrieved memories inside the query's semantic neighbourhood, and
  ``semantic``: their mean cosine to the query - the "did we lose relevance" check;
* ``low_mood_valence``: for queries whose gold valence is low (<= -0.15), the mean gold valence of
  what was retrieved - the number mood repair should raise.

By construction the oracle condition favours the emotional strategies (the target is defined by
gold emotion); the noisy condition is the realistic one.  The numbers are a sanity check that each
strategy does what it claims, not a user study.
"""

from __future__ import annotations

import csv
import logging
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.latent import CATEGORIES, PROTOTYPE_MEANS, Reading
from empathic_agent.memory.embedder import Embedder, load_embedder
from empathic_agent.memory.record import KIND_EPISODE, MemoryRecord, emotional_salience, new_memory_id
from empathic_agent.memory.service import MemoryService
from empathic_agent.memory.store import MemoryStore
from empathic_agent.memory.strategies import (
    STRATEGIES,
    STRATEGY_COMBINATION,
    STRATEGY_RATIONALE,
    STRATEGY_SEMANTIC,
    RecallOptions,
)

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["evaluate_retrieval", "DATASETS", "EvalItem"]

log = logging.getLogger(__name__)

DATASETS: Final[tuple[str, ...]] = ("emobank", "goemotions")
#: Results per query (the agent recalls 4 by default; 5 keeps MRR@k comparable with the literature).
K: Final[int] = 5
#: Semantic neighbourhood size: the "semantically similar" memories a query chooses among.
NEIGHBOURHOOD: Final[int] = 10
#: Variance of a gold EmoBank tag: the squared standard error of a mean of ~5 ratings with SD ~0.5
#: on the 1-5 scale, i.e. (0.25 / sqrt(5))^2 ~ 0.0125 in [-1, 1] units.
GOLD_TAG_VARIANCE: Final[float] = 0.0125
#: Probability on the gold label of a GoEmotions tag (the rest spread evenly).
GOLD_LABEL_PROB: Final[float] = 0.8
#: Noisy condition: label flip rate for GoEmotions (~ the macro accuracy of a fair text encoder).
NOISY_FLIP_RATE: Final[float] = 0.35
#: Gold valence at or below which a query counts as "low mood" for the mood-repair metric.
LOW_VALENCE: Final[float] = -0.15
#: Combination alphas reported in the sweep.
ALPHAS: Final[tuple[float, ...]] = (0.25, 0.5, 0.75)
_EVAL_USER: Final[str] = "eval-user"

_GOEMOTIONS_LABELS: Final[tuple[str, ...]] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class EvalItem:
    """One labelled sentence: text, gold VAD mean, and (GoEmotions) gold category."""

    text: str
    vad: tuple[float, float, float]
    label: str = ""


# ----------------------------------------------------------------------------------------- loading
def _load_emobank(data_dir: Path, query_split: str) -> tuple[list[EvalItem], list[EvalItem]]:
    path = data_dir / "emobank" / "emobank.csv"
    if not path.is_file():
        raise ConfigError(f"EmoBank not found at {path} (set --data-dir or EMPATHIC_DATA_DIR)")
    train, test = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = (row.get("text") or "").strip()
            if len(text) < 15:  # fragments ("Oh.") carry no topic to be similar about
                continue
            item = EvalItem(text, tuple((float(row[d]) - 3.0) / 2.0 for d in "VAD"))  # type: ignore[arg-type]
            (train if row["split"] == "train" else test if row["split"] == query_split else []).append(item)
    return train, test


def _load_goemotions(data_dir: Path, query_split: str) -> tuple[list[EvalItem], list[EvalItem]]:
    base = data_dir / "goemotions" / "ekman"
    labels_file = base / "labels.txt"
    if not labels_file.is_file():
        raise ConfigError(f"GoEmotions (ekman) not found at {base} (set --data-dir or EMPATHIC_DATA_DIR)")
    labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
    ours = {"anger": "anger", "disgust": "disgust", "fear": "fear", "joy": "joy", "neutral": "neutral",
            "sadness": "sadness", "surprise": "surprise"}

    def read(name: str) -> list[EvalItem]:
        out = []
        with (base / name).open(encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2 or "," in parts[1] or len(parts[0]) < 15:
                    continue  # single-label comments only: a target label must be unambiguous
                label = ours.get(labels[int(parts[1])])
                if label is None:
                    continue
                out.append(EvalItem(parts[0], PROTOTYPE_MEANS[label], label))
        return out

    return read("train.tsv"), read(f"{query_split}.tsv")


# ----------------------------------------------------------------------------------------- readings
def _tag(item: EvalItem, dataset: str, rng: np.random.Generator, noise: float, spread: np.ndarray) -> Reading:
    """The reading for a memory tag or a query state (noise = 0: gold)."""
    if dataset == "goemotions":
        label = item.label
        if noise > 0 and rng.random() < NOISY_FLIP_RATE * noise:
            label = str(rng.choice([c for c in CATEGORIES if c != label]))
        probs = {c: (1 - GOLD_LABEL_PROB) / (len(CATEGORIES) - 1) for c in CATEGORIES}
        probs[label] = GOLD_LABEL_PROB
        return Reading.from_categories(probs, "text")
    mean = np.asarray(item.vad, dtype=np.float64)
    var = np.full(3, GOLD_TAG_VARIANCE)
    if noise > 0:
        sd = noise * spread
        mean = mean + rng.normal(0.0, sd)
        var = var + sd**2
    return Reading.from_vad(mean, var, "text")


# ----------------------------------------------------------------------------------------- metrics
def _metrics(retrieved: list[list[int]], targets: list[set[int]], neighbourhoods: list[set[int]],
             sims: list[np.ndarray], q_vad: np.ndarray, m_vad: np.ndarray, k: int) -> dict[str, float]:
    hit1 = hitk = rr = dist = inn = sem = 0.0
    n_ret = 0
    low_vals: list[float] = []
    for qi, ret in enumerate(retrieved):
        ranks = [r for r, m in enumerate(ret[:k], start=1) if m in targets[qi]]
        hit1 += 1.0 if ranks and ranks[0] == 1 else 0.0
        hitk += 1.0 if ranks else 0.0
        rr += 1.0 / ranks[0] if ranks else 0.0
        for m in ret[:k]:
            dist += float(np.linalg.norm(q_vad[qi] - m_vad[m]))
            inn += 1.0 if m in neighbourhoods[qi] else 0.0
            sem += float(sims[qi][m])
            n_ret += 1
        if q_vad[qi][0] <= LOW_VALENCE and ret[:k]:
            low_vals.append(float(np.mean([m_vad[m][0] for m in ret[:k]])))
    nq = max(1, len(retrieved))
    nr = max(1, n_ret)
    return {
        "hit@1": round(hit1 / nq, 4), f"hit@{k}": round(hitk / nq, 4), "mrr": round(rr / nq, 4),
        "vad_distance": round(dist / nr, 4), "in_neighbourhood": round(inn / nr, 4),
        "semantic": round(sem / nr, 4),
        "low_mood_valence": round(float(np.mean(low_vals)), 4) if low_vals else None,
        "low_mood_queries": len(low_vals), "returned_per_query": round(n_ret / nq, 3),
    }


# ----------------------------------------------------------------------------------------- main
def evaluate_retrieval(settings: "Settings", *, data_dir: str | Path | None = None,
                       datasets: Sequence[str] = DATASETS, n_memories: int = 2000, n_queries: int = 300,
                       noise_levels: Sequence[float] = (0.0, 1.0), alphas: Sequence[float] = ALPHAS,
                       seed: int = 0, embedder: Embedder | None = None, workdir: str | Path | None = None,
                       query_split: str = "test", progress: Any = None) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able report (see module docstring).

    ``query_split`` is "test" for reported figures and "dev" for choosing parameters (alpha).
    """
    if query_split not in ("dev", "test"):
        raise ConfigError(f"query_split must be 'dev' or 'test', got {query_split!r}")
    data_dir = Path(data_dir) if data_dir is not None else Path(settings.data_dir)
    for name in datasets:
        if name not in DATASETS:
            raise ConfigError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    embedder = embedder or load_embedder(settings)
    report: dict[str, Any] = {
        "eval": "memory-retrieval", "k": K, "neighbourhood": NEIGHBOURHOOD, "seed": seed,
        "query_split": query_split, "memory_split": "train",
        "data_dir": str(data_dir), "embedder": embedder.name,
        "strategies": {s: STRATEGY_RATIONALE[s] for s in STRATEGIES}, "datasets": {},
    }
    t_start = time.perf_counter()
    for name in datasets:
        say = progress or (lambda *_: None)
        say(f"[memory eval] {name}: loading")
        train, test = (_load_emobank if name == "emobank" else _load_goemotions)(data_dir, query_split)
        report["datasets"][name] = _evaluate_one(
            name, train, test, n_memories=n_memories, n_queries=n_queries, noise_levels=noise_levels,
            alphas=alphas, seed=seed, embedder=embedder, workdir=workdir, say=say)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    return report


def _evaluate_one(name: str, train: list[EvalItem], test: list[EvalItem], *, n_memories: int, n_queries: int,
                  noise_levels: Sequence[float], alphas: Sequence[float], seed: int, embedder: Embedder,
                  workdir: str | Path | None, say: Any) -> dict[str, Any]:
    rnd = random.Random(seed)
    memories = rnd.sample(train, min(n_memories, len(train)))
    pool = rnd.sample(test, min(len(test), n_queries * 3))  # more than needed: some are skipped
    t0 = time.perf_counter()
    say(f"[memory eval] {name}: embedding {len(memories) + len(pool)} sentences")
    m_emb = embedder.embed([m.text for m in memories])
    q_emb_all = embedder.embed([q.text for q in pool])
    embed_s = time.perf_counter() - t0
    m_vad = np.array([m.vad for m in memories])
    spread = np.std(np.array([x.vad for x in train]), axis=0)

    # Queries, their semantic neighbourhoods and their correct (emotionally matching) memories.
    queries, q_emb, targets, neighbourhoods, sims = [], [], [], [], []
    for qi, q in enumerate(pool):
        sim = m_emb @ q_emb_all[qi]
        nbh = [int(i) for i in np.argsort(-sim)[:NEIGHBOURHOOD]]
        if name == "emobank":
            dists = [float(np.linalg.norm(m_vad[i] - np.asarray(q.vad))) for i in nbh]
            target = {nbh[int(np.argmin(dists))]}
        else:
            target = {i for i in nbh if memories[i].label == q.label}
            if not target or len(target) == len(nbh):
                continue
        queries.append(q)
        q_emb.append(q_emb_all[qi])
        targets.append(target)
        neighbourhoods.append(set(nbh))
        sims.append(sim)
        if len(queries) >= n_queries:
            break
    q_vad = np.array([q.vad for q in queries])

    out: dict[str, Any] = {"memories": len(memories), "queries": len(queries),
                           "embedding_s": round(embed_s, 1), "conditions": {}}
    for noise in noise_levels:
        cond = "oracle" if noise == 0 else f"noisy({noise:g})"
        say(f"[memory eval] {name}: condition {cond}")
        rng = np.random.default_rng(seed + int(noise * 1000) + 1)
        tmp = Path(tempfile.mkdtemp(prefix="empathic-memory-eval-", dir=workdir))
        try:
            service = MemoryService(MemoryStore.open_embedded(tmp), embedder)
            id_of: dict[str, int] = {}
            records = []
            for i, m in enumerate(memories):
                reading = _tag(m, name, rng, noise, spread)
                rid = new_memory_id(KIND_EPISODE)
                id_of[rid] = i
                # Same timestamp for all: recency is neutral in this benchmark.
                records.append(MemoryRecord(id=rid, user_id=_EVAL_USER, kind=KIND_EPISODE, text=m.text,
                                            emotion=reading, salience=emotional_salience(reading),
                                            created_at=1.7e9, updated_at=1.7e9, embedding=m_emb[i]))
            service.remember_many(records)
            states = [_tag(q, name, rng, noise, spread) for q in queries]

            def run(options: RecallOptions, service=service, states=states, id_of=id_of) -> tuple[dict, float]:
                retrieved = []
                t = time.perf_counter()
                for qi in range(len(queries)):
                    res = service.recall_embedding(_EVAL_USER, q_emb[qi], states[qi], options=options)
                    retrieved.append([id_of[m.record.id] for m in res.memories])
                ms = (time.perf_counter() - t) * 1000 / max(1, len(queries))
                return _metrics(retrieved, targets, neighbourhoods, sims, q_vad, m_vad, K), ms

            base = RecallOptions(k=K, min_semantic=0.0)
            results: dict[str, Any] = {}
            for strategy in STRATEGIES:
                metrics, ms = run(replace(base, strategy=strategy))
                results[strategy] = {**metrics, "recall_ms": round(ms, 2)}
            sweep = {}
            for a in alphas:
                metrics, _ = run(replace(base, strategy=STRATEGY_COMBINATION, alpha=a))
                sweep[f"{a:g}"] = metrics
            baseline = results[STRATEGY_SEMANTIC]
            for strategy, metrics in results.items():
                if strategy != STRATEGY_SEMANTIC:
                    metrics["vs_semantic"] = {
                        key: round(metrics[key] - baseline[key], 4)
                        for key in ("hit@1", f"hit@{K}", "mrr", "vad_distance", "in_neighbourhood", "semantic")}
            out["conditions"][cond] = {"strategies": results, "combination_alpha_sweep": sweep}
            service.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out

