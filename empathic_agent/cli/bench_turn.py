"""``empathic bench turn``: whole turns through the agent on the embedded defaults, end to end (JSON).

Each measured turn is a typed message (optionally with the packaged sample face frame) answered by
the full graph — perceive, encode, recall (memory in a temporary folder), plan, generate and, with
``--speak``, the voice in parallel.  Reported per turn (medians over ``--runs`` after a warm-up):
time to the first text chunk, time to the first audio chunk (the voice's first sentence), whole
turn, and each step's seconds.  Targets (README, "Tests and benchmarks"): first text ≤ 0.5 s after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import emit, handled_by, machine_info
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run", "bench_turn"]

MESSAGES = ("I had a really rough day at work and I can't stop thinking about it.",
            "My manager criticised me in front of everyone.",
            "I keep replaying it in my head.",
            "Maybe I'm just not good enough for this job.")


async def bench_turn(settings: Settings, *, runs: int = 4, speak: bool = True, face: bool = False) -> dict[str, Any]:
    from empathic_agent.agent import Agent, AudioChunk, TextChunk, TurnResult

    with tempfile.TemporaryDirectory() as tmp:
        s = dataclasses.replace(settings, memory_dir=Path(tmp), speak_replies=speak)
        t0 = time.perf_counter()
        agent = await Agent.open(s)
        image = None
        if face:
            from empathic_agent.perceive.face import sample_frame

            image = sample_frame(160)
        rows = []
        try:
            for i in range(runs + 1):  # the first turn warms every model up
                start = time.perf_counter()
                first_text = first_audio = None
                result = None
                async for ev in agent.stream("bench", "s1", text=MESSAGES[i % len(MESSAGES)], image=image, speak=speak):
                    now = time.perf_counter() - start
                    if isinstance(ev, TextChunk) and first_text is None:
                        first_text = now
                    elif isinstance(ev, AudioChunk) and first_audio is None:
                        first_audio = now
                    elif isinstance(ev, TurnResult):
                        result = ev
                total = time.perf_counter() - start
                if i == 0:
                    warmup = {"total_s": round(total, 3), "open_s": round(start - t0, 3)}
                    continue
                assert result is not None
                rows.append({"first_text_s": first_text, "first_audio_s": first_audio, "total_s": total,
                             "steps": dict(result.timings), "degraded": list(result.degraded),
                             "strategy": result.register.get("strategy"),
                             "audio_s": result.audio.duration_s if result.audio is not None else 0.0})
        finally:
            await agent.aclose()

    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return round(statistics.median(vals), 4) if vals else None

    steps = sorted({k for r in rows for k in r["steps"]})
    return {
        "bench": "turn", "backend": settings.llm_backend, "model": settings.llm_model, "voice": settings.tts_voice if speak else None,
        "face_frame": face, "runs": len(rows), "warmup": warmup,
        "first_text_s_median": med("first_text_s"), "first_audio_s_median": med("first_audio_s"),
        "turn_total_s_median": med("total_s"),
        "steps_s_median": {k: round(statistics.median(r["steps"].get(k, 0.0) for r in rows), 4) for k in steps},
        "spoken_audio_s_median": med("audio_s"),
        "strategies": [r["strategy"] for r in rows],
        "degraded": [d for r in rows for d in r["degraded"]],
        "target_first_text_s": 0.5,
        "machine": machine_info(),
    }


def add_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    q = bench_subparsers.add_parser("turn", parents=[common], help="whole turns end to end on the configured backends (JSON)")
    q.add_argument("--runs", type=int, default=4, help="measured turns after one warm-up (default 4)")
    q.add_argument("--no-speak", action="store_true", help="text only (no voice)")
    q.add_argument("--face", action="store_true", help="send the packaged sample face frame with every turn")
    q.add_argument("--out", help="also write the JSON to this file")
    return handled_by(q, "empathic_agent.cli.bench_turn:run")


def run(settings: Settings, args: argparse.Namespace) -> int:
    out = asyncio.run(bench_turn(settings, runs=args.runs, speak=not args.no_speak, face=args.face))
    emit(out, args.out)
    return 0
