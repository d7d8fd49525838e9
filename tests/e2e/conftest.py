"""The web UI as a person uses it: the real ``app.py`` process on the embedded defaults (real
models, Chroma, LangGraph), driven by Playwright in Debian's headless Chromium (never a downloaded
browser).  Screenshots go to ``artifacts/e2e/`` (look at them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM = os.environ.get("EMPATHIC_CHROMIUM", "/usr/bin/chromium")
#: Chromium as root in a sandbox with no internet: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
READY_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path):
    """``python app.py`` on a free loopback port with its own memory folder; yields the base URL
    and facts about the start (seconds until ready)."""
    home = tmp_path_factory.mktemp("ui-home")
    port = _free_port()
    env = {**os.environ, "EMPATHIC_MEMORY_DIR": str(home / "memory"), "EMPATHIC_MAX_NEW_TOKENS": "40",
           "EMPATHIC_TEMPERATURE": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    log = open(artifacts / "app.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=home, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    ready = None
    try:
        while time.perf_counter() - t0 < READY_TIMEOUT_S:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}; see {artifacts / 'app.log'}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    state = json.loads(r.read())
                if state.get("ready"):
                    ready = time.perf_counter() - t0
                    break
            except OSError:
                pass
            time.sleep(0.5)
        if ready is None:
            raise RuntimeError(f"app.py not ready after {READY_TIMEOUT_S} s; see {artifacts / 'app.log'}")
        yield {"url": url, "ready_s": ready, "home": home, "process": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (scripts/test.sh does) or set EMPATHIC_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageWatch:
    """Every request the page makes that leaves this machine, and every failed response."""

    def __init__(self, page) -> None:
        self.external: list[str] = []
        self.failed: list[str] = []
        page.on("request", self._request)
        page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 500 else None)

    def _request(self, request) -> None:
        url = request.url
        if not url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")):
            self.external.append(url)


@pytest.fixture
def page(browser, app_server, artifacts, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.watch = PageWatch(pg)
    pg.set_default_timeout(120_000)
    yield pg
    pg.screenshot(path=str(artifacts / f"{request.node.name}.png"), full_page=True)
    context.close()
