"""Integration fixtures: the real embedded model and a real OpenAI-compatible server process."""

from __future__ import annotations

import pytest

from empathic_agent.generate.local_server import LocalOpenAIServer
from empathic_agent.models import resolve_model
from empathic_agent.settings import Settings


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def llm_dir() -> str:
    """The prepared SmolLM2 directory (scripts/setup.sh prepared it; resolve is instant then)."""
    return resolve_model("llm", Settings.from_env({}).llm_model, Settings.from_env({}).cache_dir).location


@pytest.fixture(scope="session")
def openai_server(llm_dir, tmp_path_factory):
    """``transformers serve`` on 127.0.0.1 with the same model: a real OpenAI-compatible server."""
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    with LocalOpenAIServer(llm_dir, log=log) as server:
        yield server
    log.close()
