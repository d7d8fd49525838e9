"""``empathic bench api``: text turns under concurrent load on the embedded defaults, through the
Python API and through the HTTP server (a real ``empathic serve`` process), as JSON.

``--users`` people talk at once, each ``--turns`` turns (after one warm-up turn each).  Reported per
path: turn latency p50/p95/max, throughput (turns/s) and, for HTTP, the overhead over the Python API
(p50 difference).  The embedded model runs on the CPU: turns of concurrent users share its cores,
so latency grows with users — that is what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from empathic_agent.machine import machine_info
from empathic_agent.settings import Settings

__all__ = ["bench_api", "add_parser", "run"]

MESSAGES = ("I had a stressful day at work.", "My manager keeps changing the deadlines.",
            "I think I need a break.", "Thanks, that helps.")


def _stats(latencies: list[float], wall: float) -> dict[str, Any]:
    xs = sorted(latencies)
    return {"turns": len(xs), "p50_s": round(statistics.median(xs), 3),
            "p95_s": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 3), "max_s": round(xs[-1], 3),
            "throughput_turns_per_s": round(len(xs) / wall, 3), "wall_s": round(wall, 2)}


async def _load(call, users: int, turns: int) -> dict[str, Any]:
    for u in range(users):  # one warm-up turn per person, not measured
        await call(f"bench{u}", MESSAGES[0])
    latencies: list[float] = []

    async def person(u: int) -> None:
        for t in range(turns):
            t0 = time.perf_counter()
            await call(f"bench{u}", MESSAGES[(t + 1) % len(MESSAGES)])
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(person(u) for u in range(users)))
    return _stats(latencies, time.perf_counter() - t0)


async def bench_api(settings: Settings, *, users: int = 4, turns: int = 3) -> dict[str, Any]:
    import httpx

    from empathic_agent.agent import Agent
    from empathic_agent.api.keys import KeyStore
    from empathic_agent.ui.process import free_port

    out: dict[str, Any] = {"users": users, "turns_per_user": turns, "max_new_tokens": settings.max_new_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        s = dataclasses.replace(settings, memory_dir=Path(tmp) / "python")
        async with await Agent.open(s) as agent:
            await agent.warm_up()

            async def py_call(user: str, text: str) -> None:
                await agent.respond(user, "s", text=text)

            out["python_api"] = await _load(py_call, users, turns)

        keys = KeyStore(Path(tmp) / "api.sqlite")
        key = keys.create_key("bench")
        keys.close()
        port = free_port()
        env = {**os.environ, "EMPATHIC_MEMORY_DIR": str(Path(tmp) / "http"), "EMPATHIC_API_KEYS_DB": str(Path(tmp) / "api.sqlite"),
               "EMPATHIC_MAX_NEW_TOKENS": str(settings.max_new_tokens), "EMPATHIC_API_RATE_PER_MINUTE": "100000",
               "EMPATHIC_API_RATE_BURST": "100000"}
        proc = subprocess.Popen([sys.executable, "-m", "empathic_agent.cli.main", "serve", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=600, headers={"X-API-Key": key}) as client:
                for _ in range(1200):
                    if proc.poll() is not None:
                        raise RuntimeError("empathic serve exited")
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.25)

                async def http_call(user: str, text: str) -> None:
                    r = await client.post("/v1/turns", json={"user_id": user, "session_id": "s", "text": text})
                    r.raise_for_status()

                out["http_api"] = await _load(http_call, users, turns)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out["http_overhead_p50_s"] = round(out["http_api"]["p50_s"] - out["python_api"]["p50_s"], 3)
    out["machine"] = machine_info()
    return out


def add_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> None:
    q = bench_subparsers.add_parser("api", parents=[common],
                                    help="text turns under concurrent load: Python API vs HTTP server (JSON)")
    q.add_argument("--users", type=int, default=4)
    q.add_argument("--turns", type=int, default=3, help="measured turns per user (after one warm-up turn)")
    from empathic_agent.cli._common import handled_by

    handled_by(q, "empathic_agent.api.bench:run")


def run(settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(bench_api(settings, users=args.users, turns=args.turns)), indent=1))
    return 0
