"""Memory latency/throughput benchmark (``empathic memory bench``, JSON out).

What is measured, per store size (default 1k and 10k memories; 100k with ``--full``):

* **insert throughput**: memories/s written through :meth:`MemoryService.remember_many` (one batched
  write per user), and the latency of one single-memory write (:meth:`MemoryService.remember`
  with a precomputed embedding: what the remember step costs besides embedding);
* **recall latency** p50/p95/mean/max per strategy, *excluding* the query embedding: the Chroma
  query of the person's collection, scoring, and building the returned records
  (:meth:`MemoryService.recall_embedding`).  Queries go to random users.
* **query embedding** latency (MiniLM, one sentence, after warm-up), reported separately.

The size sweep uses **synthetic** memories so it runs in minutes: random unit 384-d embeddings (the
ANN index does the same work whatever the vectors mean), random emotional readings, realistic text
lengths, creation times spread over 90 days, spread over many users (``per_user`` memories each,
default 100; ``heavy_user`` adds one user with that many memories, to show per-person scaling).
Queries are perturbed copies of a random memory of the user, so candidates have realistic
similarities, and ``min_semantic`` is 0 so every recall returns k full records (worst case).

Wall-clock figures depend on the machine and its load; they are reported, never asserted in tests.
The target (README, "Tests and benchmarks") is recall p95 <= 15 ms at 100k memories, excluding the embedding.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

import numpy as np

from empathic_agent.latent import Reading
from empathic_agent.machine import load_average, machine_info
from empathic_agent.memory.embedder import Embedder
from empathic_agent.memory.record import KIND_EPISODE, MemoryRecord, emotional_salience, new_memory_id
from empathic_agent.memory.service import MemoryService
from empathic_agent.memory.store import MemoryStore
from empathic_agent.memory.strategies import STRATEGIES, STRATEGY_MOOD_REPAIR, RecallOptions

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["bench_memory", "TARGET_P95_MS", "DEFAULT_SIZES", "FULL_SIZES"]

TARGET_P95_MS: Final[float] = 15.0
DEFAULT_SIZES: Final[tuple[int, ...]] = (1_000, 10_000)
FULL_SIZES: Final[tuple[int, ...]] = (1_000, 10_000, 100_000)
DIM: Final[int] = 384
#: Std of the perturbation that turns a memory's embedding into a query (cosine to it ~0.6-0.7).
_QUERY_NOISE: Final[float] = 0.05
_WORDS: Final[tuple[str, ...]] = tuple(
    "today work friend sister tired happy worried exam dog walk rain coffee call mother job interview "
    "sleep late angry train lost found better again really felt talked about week weekend park".split())


def _percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000.0
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3),
            "mean": round(float(ms.mean()), 3), "max": round(float(ms.max()), 3), "n": int(ms.size)}


def _synthetic_records(user_id: str, n: int, rng: np.random.Generator, now: float) -> list[MemoryRecord]:
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = []
    for i in range(n):
        mean = rng.uniform(-0.8, 0.8, size=3)
        var = rng.uniform(0.02, 0.2, size=3)
        reading = Reading.from_vad(mean, var, "fused")
        words = rng.choice(_WORDS, size=int(rng.integers(8, 40)))
        ts = now - float(rng.uniform(0, 90 * 86400))
        out.append(MemoryRecord(
            id=new_memory_id(KIND_EPISODE), user_id=user_id, kind=KIND_EPISODE, text=" ".join(words),
            emotion=reading, salience=emotional_salience(reading), session_id="bench", turn_id=f"t{i}",
            created_at=ts, updated_at=ts, reply="I hear you. That sounds like a lot to carry.",
            embedding=emb[i]))
    return out


def _dir_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return round(total / 2**20, 1)


def bench_memory(settings: "Settings", *, sizes: Sequence[int] = DEFAULT_SIZES, per_user: int = 100,
                 heavy_user: int = 0, queries: int = 200, k: int = 4, seed: int = 0,
                 embedder: Embedder | None = None, measure_embedding: bool = True,
                 workdir: str | Path | None = None, keep: bool = False,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able report (see module docstring)."""
    say = progress or (lambda _m: None)
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {
        "bench": "memory",
        "machine": machine_info(),
        "config": {"per_user": per_user, "heavy_user": heavy_user, "queries_per_strategy": queries, "k": k,
                   "pool": RecallOptions(k=k).effective_pool, "embeddings": "synthetic random unit 384-d",
                   "backend": "embedded (chromadb PersistentClient)"},
        "target_recall_p95_ms": TARGET_P95_MS,
        "sizes": [],
    }
    try:
        import chromadb

        report["config"]["chromadb"] = chromadb.__version__
    except Exception:  # pragma: no cover
        pass

    for size in sizes:
        say(f"[memory bench] {size} memories")
        tmp = Path(tempfile.mkdtemp(prefix="empathic-memory-bench-", dir=workdir))
        try:
            report["sizes"].append(_bench_size(size, tmp, per_user=per_user, heavy_user=heavy_user,
                                               queries=queries, k=k, rng=rng, say=say))
        finally:
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)

    if measure_embedding:
        say("[memory bench] query embedding")
        from empathic_agent.memory.embedder import load_embedder

        emb = embedder or load_embedder(settings)
        t0 = time.perf_counter()
        emb.load()
        load_s = time.perf_counter() - t0
        sentences = ["I had a really rough day at work and I can't stop thinking about it.",
                     "My sister called and we laughed for an hour.", "I'm worried about the exam next week.",
                     "The dog ran off in the park again."]
        for s in sentences:  # warm-up
            emb.embed_one(s)
        times = []
        for i in range(max(20, queries // 4)):
            t = time.perf_counter()
            emb.embed_one(sentences[i % len(sentences)])
            times.append(time.perf_counter() - t)
        report["query_embedding_ms"] = {"embedder": emb.name, "load_s": round(load_s, 2), **_percentiles(times)}
    report["machine"]["load_average_1m_end"] = round(load_average(), 2)
    largest = report["sizes"][-1] if report["sizes"] else None
    if largest:
        worst = max(v["p95"] for v in largest["recall_ms"].values())
        report["summary"] = {"largest_size": largest["memories"], "worst_strategy_p95_ms": worst,
                             "meets_target": worst <= TARGET_P95_MS}
    return report


def _bench_size(size: int, path: Path, *, per_user: int, heavy_user: int, queries: int, k: int,
                rng: np.random.Generator, say: Callable[[str], None]) -> dict[str, Any]:
    now = time.time()
    store = MemoryStore.open_embedded(path)
    service = MemoryService(store, embedder=_NoEmbedder(), clock=lambda: now)
    n_users = max(1, size // per_user)
    users = [f"bench-user-{u:05d}" for u in range(n_users)]
    heavy = "bench-heavy-user" if heavy_user else None
    # Build records first so the timing covers the store write, not the synthetic data generation.
    say(f"[memory bench]   generating {size} synthetic memories for {n_users} users")
    per_user_records = {u: _synthetic_records(u, per_user if u != users[-1] else size - per_user * (n_users - 1),
                                              rng, now) for u in users}
    if heavy:
        per_user_records[heavy] = _synthetic_records(heavy, heavy_user, rng, now)
    say("[memory bench]   inserting")
    t0 = time.perf_counter()
    total = 0
    for recs in per_user_records.values():
        total += service.remember_many(recs)
    insert_s = time.perf_counter() - t0

    # Single-memory writes (the remember step's store cost).
    single = []
    for i in range(30):
        u = users[int(rng.integers(n_users))]
        rec = _synthetic_records(u, 1, rng, now)[0]
        t = time.perf_counter()
        service.remember(u, rec.text, emotion=rec.emotion, embedding=np.asarray(rec.embedding), session_id="bench",
                         turn_id=f"single{i}")
        single.append(time.perf_counter() - t)

    low = Reading.from_vad((-0.6, -0.2, -0.3), (0.05, 0.05, 0.05), "fused")
    result: dict[str, Any] = {
        "memories": total, "users": n_users + (1 if heavy else 0),
        "insert": {"seconds": round(insert_s, 2), "memories_per_s": round(total / insert_s, 1)},
        "single_insert_ms": _percentiles(single), "recall_ms": {},
    }
    groups = [("recall_ms", users)] + ([("heavy_user_recall_ms", [heavy])] if heavy else [])
    for key, pool in groups:
        result.setdefault(key, {})
        for strategy in STRATEGIES:
            opts = RecallOptions(k=k, strategy=strategy, min_semantic=0.0)
            times: list[float] = []
            returned: list[int] = []
            for i in range(queries + 10):
                u = pool[int(rng.integers(len(pool)))]
                recs = per_user_records[u]
                base = np.asarray(recs[int(rng.integers(len(recs)))].embedding)
                q = base + rng.normal(0, _QUERY_NOISE, size=DIM)
                q = (q / np.linalg.norm(q)).astype(np.float32)
                state = low if strategy == STRATEGY_MOOD_REPAIR else Reading.from_vad(
                    rng.uniform(-0.7, 0.7, 3), (0.05, 0.05, 0.05), "fused")
                t = time.perf_counter()
                res = service.recall_embedding(u, q, state, options=opts)
                elapsed = time.perf_counter() - t
                if i >= 10:  # the first 10 are warm-up
                    times.append(elapsed)
                returned.append(len(res.memories))
            result[key][strategy] = {**_percentiles(times), "mean_returned": round(float(np.mean(returned)), 2)}
    result["store_mb"] = _dir_mb(path)
    service.close()
    return result


class _NoEmbedder(Embedder):
    """The benchmark passes embeddings explicitly; any attempt to embed is a bug."""

    name = "none"

    @property
    def dim(self) -> int:
        return DIM

    def _embed_impl(self, texts: list[str]) -> np.ndarray:  # pragma: no cover
        raise AssertionError("the memory benchmark must not embed text")

