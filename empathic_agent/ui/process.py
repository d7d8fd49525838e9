"""Run the web UI as a separate process (for end-to-end tests and the UI benchmark): the real
``app.py`` on a free loopback port, with its own memory folder, until ``/healthz`` says ready."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

__all__ = ["serve_app", "run_app", "free_port", "APP_PY", "CHROMIUM", "CHROMIUM_ARGS"]

APP_PY = Path(__file__).resolve().parents[2] / "app.py"
#: Debian's Chromium (never a browser downloaded by Playwright).
CHROMIUM = os.environ.get("EMPATHIC_CHROMIUM", "/usr/bin/chromium")
#: Chromium as root in a sandbox with no internet: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_app(home: Path, log_path: Path, *args: str, env: dict[str, str] | None = None
            ) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python app.py --port <free> [args]`` run in ``home`` (memory under ``home/memory``), its
    output in ``log_path``; yields ``(process, url)`` at once (the models are still loading) and
    stops it afterwards."""
    if not APP_PY.exists():
        raise FileNotFoundError(f"{APP_PY} not found: run from a checkout of the project")
    port = free_port()
    full_env = {**os.environ, "EMPATHIC_MEMORY_DIR": str(Path(home) / "memory"), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
                **(env or {})}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(APP_PY), "--port", str(port), *args], cwd=home, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc, f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def serve_app(home: Path, log_path: Path, *args: str, env: dict[str, str] | None = None,
              ready_timeout_s: float = 600.0) -> Iterator[dict[str, Any]]:
    """:func:`run_app`, yielding ``{"url", "ready_s", "process"}`` once ``/healthz`` says the
    models are loaded."""
    t0 = time.perf_counter()
    with run_app(home, log_path, *args, env=env) as (proc, url):
        ready = None
        while time.perf_counter() - t0 < ready_timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("ready"):
                        ready = time.perf_counter() - t0
                        break
            except OSError:
                pass
            time.sleep(0.25)
        if ready is None:
            raise RuntimeError(f"app.py not ready after {ready_timeout_s} s; see {log_path}")
        yield {"url": url, "ready_s": ready, "process": proc}
