"""``empathic bench``: the benchmark group (every module adds its own ``bench WHAT``), and
``bench llm`` — load time, time to first token and tokens/s per backend — and ``bench encoders``,
as JSON.

Wall-clock targets live here, not in unit tests: the figures depend on the machine and its load.
The prompt is a short, realistic one (system prompt + one person's message).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

from empathic_agent.cli._common import emit, handled_by, machine_info
from empathic_agent.settings import Settings

if TYPE_CHECKING:
    from empathic_agent.generate.llm import LLM

__all__ = ["add_parser", "run_bench", "bench_llm"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """``empathic bench WHAT``: ``llm`` and ``encoders`` here, the others from their own modules."""
    p = subparsers.add_parser("bench", help="benchmarks (JSON output)")
    bsub = p.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    q = bsub.add_parser("llm", parents=[common], help="LLM load time, time to first token, tokens/s")
    q.add_argument("--backends", default="transformers",
                   help="comma-separated: transformers, openai (default: transformers)")
    q.add_argument("--serve-local", action="store_true",
                   help="for openai: start a local OpenAI-compatible server (transformers serve) to measure")
    q.add_argument("--runs", type=int, default=5, help="measured runs after one warm-up (default 5)")
    q.add_argument("--out", help="also write the JSON to this file")
    handled_by(q, "empathic_agent.cli.bench:run_bench")
    q = bsub.add_parser("encoders", parents=[common], help="text encoder latency per utterance (JSON)")
    q.add_argument("--runs", type=int, default=10, help="rounds of 10 encodes after warm-up (default 10)")
    handled_by(q, "empathic_agent.cli.bench:run_bench")
    from empathic_agent.api import bench as bench_api
    from empathic_agent.cli import bench_turn, face, speak, speech
    from empathic_agent.ui import bench as bench_ui

    speech.add_bench_parser(bsub, common)
    face.add_bench_parser(bsub, common)
    speak.add_bench_parser(bsub, common)
    bench_turn.add_parser(bsub, common)
    bench_ui.add_parser(bsub, common)
    bench_api.add_parser(bsub, common)
    from empathic_agent.converse import bench as bench_voice

    bench_voice.add_parser(bsub, common)

PROMPT = "I had a really rough day at work and I can't stop thinking about it."
#: Tokens per measured reply: long enough for a stable tokens/s figure, short enough for CI.
BENCH_TOKENS = 48


async def bench_llm(llm: LLM, settings: Settings, *, runs: int) -> dict[str, Any]:
    from empathic_agent.generate.llm import ChatMessage, GenerationOptions

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
        emit({"bench": "encoders", "machine": machine_info(),
              "results": [bench_text_encoder(settings, runs=args.runs)]})
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
    emit({"bench": "llm", "machine": machine_info(), "results": results}, args.out)
    return 0


async def _one(settings: Settings, runs: int) -> dict[str, Any]:
    from empathic_agent.generate.llm import load_llm

    llm = load_llm(settings)
    try:
        return await bench_llm(llm, settings, runs=runs)
    finally:
        await llm.aclose()

