"""``empathic bench ui``: the web UI as a person experiences it, measured in a real headless
Chromium against the real app on the embedded defaults (JSON).

Reported: seconds until the app is ready (models loaded), until the page is interactive after
navigation, and — per message — until the reply's first streamed words appear on the page and
until the turn is finished (medians over ``--runs`` messages of one conversation, after one
warm-up message).  Targets (issue 8): interactive ≤ 3 s after ready; first text ≤ 1 s.
"""

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from empathic_agent.machine import machine_info

__all__ = ["bench_ui", "add_parser", "run"]

MESSAGES = ("I had a really rough day at work and I can't stop thinking about it.",
            "My manager criticised me in front of everyone.",
            "I keep replaying it in my head.",
            "Maybe I'm just not good enough for this job.",
            "Thanks for listening, it helps a bit.")


def bench_ui(*, runs: int = 4, speak: bool = True) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from empathic_agent.ui.process import CHROMIUM, CHROMIUM_ARGS, serve_app

    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp), Path(tmp) / "app.log") as app, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(180_000)
        t0 = time.perf_counter()
        page.goto(app["url"] + "/")
        page.locator("#msg textarea").wait_for(state="visible")
        page.locator("#send").wait_for(state="visible")
        interactive = time.perf_counter() - t0
        if not speak:
            page.locator("#speak input").uncheck()
        rows = []
        for i in range(runs + 1):
            page.locator("#msg textarea").fill(MESSAGES[i % len(MESSAGES)])
            start = time.perf_counter()
            page.locator("#send").click()
            page.wait_for_function(
                f"() => {{ const m = [...document.querySelectorAll('#chat .message.bot')];"
                f" return m.length > {i} && !['', '…', 'Loading content'].includes(m[m.length-1].innerText.trim()); }}",
                polling=10)  # not our placeholder, nor Gradio's transient pending bubble
            first = time.perf_counter() - start
            status = page.locator("#turn-status", has_text=f"Turn {i + 1} answered")
            status.wait_for()
            total = time.perf_counter() - start
            # The server's own figure: handler start -> first text chunk (printed in the status line).
            m = re.search(r"first words after ([0-9.]+) s", status.inner_text())
            if i:  # the first message is the warm-up
                rows.append({"first_text_s": first, "turn_s": total,
                             "server_first_text_s": float(m.group(1)) if m else float("nan")})
        browser.close()
    med = lambda k: round(statistics.median(r[k] for r in rows), 3)  # noqa: E731
    return {
        "app_ready_s": round(app["ready_s"], 2), "page_interactive_s": round(interactive, 3),
        "first_text_s": {"median": med("first_text_s"), "max": round(max(r["first_text_s"] for r in rows), 3)},
        "server_first_text_s": {"median": med("server_first_text_s")},
        "turn_s": {"median": med("turn_s")}, "runs": len(rows), "speak": speak,
        "targets": {"page_interactive_s": 3.0, "first_text_s": 1.0},
        "machine": machine_info(),
    }


def add_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> None:
    q = bench_subparsers.add_parser("ui", parents=[common], help="web UI in headless Chromium: page and first-text latency (JSON)")
    q.add_argument("--runs", type=int, default=4, help="measured messages (after one warm-up)")
    q.add_argument("--no-speak", action="store_true", help="turn the spoken reply off")
    from empathic_agent.cli._common import handled_by

    handled_by(q, "empathic_agent.ui.bench:run")


def run(settings: Any, args: argparse.Namespace) -> int:
    print(json.dumps(bench_ui(runs=args.runs, speak=not args.no_speak), indent=1))
    return 0
