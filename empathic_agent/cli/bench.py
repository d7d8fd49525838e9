"""``empathic bench llm``: load time, time to first token and tokens/s per backend, as JSON.

Wall-clock targets live here, not in unit tests: the figures depend on the machine and its load.
The prompt is a short, realistic one (system prompt + one person's message).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from typing import Any

from empathic_agent.generate.llm import LLM, ChatMessage, GenerationOptions, load_llm
from empathic_agent.settings import Settings

__all__ = ["run_bench", "bench_llm"]

PROMPT = "I had a really rough day at work and I can't stop thinking about it."
#: Tokens per measured reply: long enough for a stable tokens/s figure, short enough for CI.
BENCH_TOKENS = 48


async def bench_llm(llm: LLM, settings: Settings, *, runs: int) -> dict[str, Any]:
    messages = [ChatMessage("system", settings.system_prompt), ChatMessage("user", PROMPT)]
    # Greedy with a fixed budget, so every run generates comparable work.
    opts = GenerationOptions(max_new_tokens=BENCH_TOKENS, temperature=0.0, seed=0,
                             extra=dict(settings.openai_extra_body))
    t0 = time.perf_counter()
    await llm.load()
    load_s = time.perf_counter() - t0
    await llm.complete(messages, opts)  # warm-up
    ttft, tps, total = [], [], []
    for _ in range(runs):
        await llm.complete(messages, opts)
        st = llm.last_stats
        assert st is not None and st.time_to_first_chunk_s is not None
        ttft.append(st.time_to_first_chunk_s)
        total.append(st.total_s)
        gen_s = st.total_s - st.time_to_first_chunk_s
        tokens = st.completion_tokens or st.chunks
        if gen_s > 0 and tokens > 1:
            tps.append((tokens - 1) / gen_s)
    return {
        "backend": llm.name, "model": llm.model_name, "runs": runs, "max_new_tokens": BENCH_TOKENS,
        "load_s": round(load_s, 3),
        "ttft_s_median": round(statistics.median(ttft), 3), "ttft_s_max": round(max(ttft), 3),
        "tokens_per_s_median": round(statistics.median(tps), 2) if tps else None,
        "reply_s_median": round(statistics.median(total), 3),
        "target_ttft_s": 0.5 if llm.name == "transformers" else None,
        # This process's peak resident memory: the embedded model's footprint plus Python and torch
        # (~0.35 GB) for the transformers backend; run one model per process to compare models.
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kB


#: Realistic single messages for the text-encoder latency benchmark (batch of 1, as in a turn).
ENCODER_SENTENCES = (
    "I had a really rough day at work and I can't stop thinking about it.",
    "ok",
    "My sister finally called me back and we talked for hours, I'm so relieved!",
    "Why does everything always go wrong when I try my best?",
)


def bench_text_encoder(settings: Settings, *, runs: int) -> dict[str, Any]:
    """Per-utterance latency of the text encoder (batch of 1, after warm-up), in ms."""
    from empathic_agent.encode import load_encoder

    enc = load_encoder("text", settings)
    t0 = time.perf_counter()
    enc.load()
    load_s = time.perf_counter() - t0
    for s in ENCODER_SENTENCES:  # warm-up
        enc.encode(s)
    ms = []
    for i in range(max(1, runs) * 10):
        t = time.perf_counter()
        enc.encode(ENCODER_SENTENCES[i % len(ENCODER_SENTENCES)])
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {"encoder": enc.name, "modality": "text", "load_s": round(load_s, 3), "n": len(ms),
            "ms_p50": round(statistics.median(ms), 2), "ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2),
            "target_ms": 15.0}


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.bench_command == "encoders":
        out = {"bench": "encoders", "machine": {"cpu_count": _cpus(), "platform": platform.platform(),
                                                "load_avg_1m": round(os.getloadavg()[0], 2)},
               "results": [bench_text_encoder(settings, runs=args.runs)]}
        print(json.dumps(out, indent=1))
        return 0
    results: list[dict[str, Any]] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        s = settings.replace(llm_backend=backend)
        if backend in ("openai", "vllm") and args.serve_local:
            from empathic_agent.generate.local_server import LocalOpenAIServer
            from empathic_agent.models import resolve_model

            model_dir = resolve_model("llm", settings.llm_model, settings.cache_dir).location
            t0 = time.perf_counter()
            with LocalOpenAIServer(model_dir) as server:
                startup = time.perf_counter() - t0
                s = s.replace(openai_base_url=server.base_url, openai_model=server.model_id)
                r = asyncio.run(_one(s, args.runs))
                r["server"] = "transformers serve (local)"
                r["server_startup_s"] = round(startup, 2)
        else:
            r = asyncio.run(_one(s, args.runs))
        results.append(r)
    out = {"bench": "llm", "machine": {"cpu_count": _cpus(), "platform": platform.platform()},
           "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


async def _one(settings: Settings, runs: int) -> dict[str, Any]:
    llm = load_llm(settings)
    try:
        return await bench_llm(llm, settings, runs=runs)
    finally:
        await llm.aclose()


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
