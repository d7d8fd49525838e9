"""The web UI as a person uses it: the real ``app.py`` process on the embedded defaults (real
models, Chroma, LangGraph), driven by Playwright in Debian's headless Chromium (never a downloaded
browser).  Screenshots go to ``artifacts/e2e/`` (look at them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from empathic_agent.ui.process import CHROMIUM, CHROMIUM_ARGS, serve_app

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path):
    """``python app.py`` on a free loopback port with its own memory folder; yields the base URL
    and facts about the start (seconds until ready)."""
    with start_app(tmp_path_factory.mktemp("ui-home"), artifacts / "app.log") as app:
        yield app


def start_app(home: Path, log_path: Path, *args: str):
    """The real ``app.py`` (short replies, greedy decoding: the tests read them)."""
    return serve_app(home, log_path, *args, env={"EMPATHIC_MAX_NEW_TOKENS": "40", "EMPATHIC_TEMPERATURE": "0"})


@pytest.fixture(scope="module")
def browser():
    """Module-scoped: Playwright's sync API keeps an event loop on this thread while it is open, so
    it must be closed before any asyncio test of another module runs (this folder also sorts last)."""
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
