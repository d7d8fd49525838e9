"""Property-based testing of the HTTP API against its own OpenAPI spec (schemathesis): generated
requests — valid, invalid, oversized, odd unicode — never produce a server error (5xx), with and
without a valid key.  Fakes for the LLM and encoders; the real app, key store, graph, safety stage."""

from __future__ import annotations

import tempfile
from collections import Counter
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
#: Requests sent per test kind and operation (the size of the fuzz corpus, printed at the end).
SENT: Counter = Counter()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_a_valid_key(case):
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    SENT["with key", case.operation.label] += 1
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_no_data_without_a_key(case):
    response = case.call()
    SENT["without key", case.operation.label] += 1
    assert response.status_code < 500
    if case.formatted_path.startswith("/v1/"):
        # Refused one way or another (bad key, bad method, unparsable body) — never data.
        assert 400 <= response.status_code < 500, (case.formatted_path, response.status_code)


# -- stateful sequences: the OpenAPI links chain real ids from turns into the data routes -------

class _Workflow(schema.as_state_machine()):
    """Random sequences such as turn -> read conversation -> export -> erase -> export -> audit,
    with the ids each turn returned: no step may answer 5xx, and a person erased mid-sequence
    must come back empty."""

    def get_call_kwargs(self, case):
        return {"headers": {"Authorization": f"Bearer {KEY}"}}

    def validate_response(self, response, case, **kwargs):
        SENT["stateful", case.operation.label] += 1
        assert response.status_code < 500, (case.method, case.formatted_path, response.status_code,
                                            response.text[:300])


TestStatefulSequences = _Workflow.TestCase
# Derandomised: the last test asserts which routes the sequences reached, so the sequences must
# not change from run to run (a random draw once chained no turn into the data routes).
TestStatefulSequences.settings = settings(max_examples=60, stateful_step_count=6, deadline=None,
                                          suppress_health_check=list(HealthCheck), derandomize=True)


def test_the_fuzz_corpus_reached_every_route_and_chained_turns(capsys):
    """Runs after the tests above (file order): they sent requests to every operation, and the
    stateful sequences reached the data routes through the links of a turn."""
    by_kind = Counter()
    for (kind, _op), n in SENT.items():
        by_kind[kind] += n
    with capsys.disabled():
        print(f"\n[fuzz] {sum(SENT.values())} requests: {dict(by_kind)}; "
              f"{len({op for _k, op in SENT})} operations")
    if not SENT:  # run alone (-k): nothing to check
        return
    assert {op for kind, op in SENT if kind == "with key"} >= {op for kind, op in SENT if kind == "without key"}
    linked = {op for kind, op in SENT if kind == "stateful"}
    assert "POST /v1/turns" in linked and linked & {"GET /v1/users/{user_id}/export",
                                                    "GET /v1/users/{user_id}/sessions/{session_id}",
                                                    "DELETE /v1/users/{user_id}"}, linked
