"""Property-based testing of the HTTP API against its own OpenAPI spec (schemathesis): generated
requests — valid, invalid, oversized, odd unicode — never produce a server error (5xx), with and
without a valid key.  Fakes for the LLM and encoders; the real app, key store, graph, safety stage."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent
from empathic_agent.api.keys import KeyStore
from empathic_agent.api.server import ApiLimits, create_api
from empathic_agent.graph import build_services
from empathic_agent.settings import Settings
from empathic_agent.testing import FakeEncoder, FakeLLM

_home = Path(tempfile.mkdtemp(prefix="empathic-schema-"))
_settings = Settings.from_env({}, memory_dir=_home / "memory", safety_semantic=False)
_services = build_services(_settings, llm=FakeLLM(["I hear you."]), text_encoder=FakeEncoder(), memory=None,
                           speech=None, face=None, tts=None)
_keys = KeyStore(_home / "api.sqlite")
KEY = _keys.create_key("schema")
app = create_api(_settings, agent=Agent(_services, checkpointer=InMemorySaver()), keys=_keys,
                 limits=ApiLimits(max_body_bytes=2_000_000, rate_per_minute=1e6, burst=10**6))
_client = TestClient(app)
_client.__enter__()  # runs the app's startup (ready) for the whole module

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_a_valid_key(case):
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_no_data_without_a_key(case):
    response = case.call()
    assert response.status_code < 500
    if case.formatted_path.startswith("/v1/"):
        # Refused one way or another (bad key, bad method, unparsable body) — never data.
        assert 400 <= response.status_code < 500, (case.formatted_path, response.status_code)
