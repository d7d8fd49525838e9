"""Races, hostile requests and leaks against the real HTTP app: the real FastAPI app and gate, key
store, LangGraph graph, SQLite checkpointer and Chroma store; fakes (subclassing the real
interfaces) only for the LLM and the encoders, so a turn costs milliseconds and hundreds of them
can race.  Each test here failed before the defect it names was fixed (issue "hold under faults")."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from empathic_agent.agent import Agent
from empathic_agent.api.keys import KeyStore
from empathic_agent.api.server import ApiLimits, create_api
from empathic_agent.errors import LLMConnectionError
from empathic_agent.generate.llm import ChatMessage
from empathic_agent.generate.openai_llm import OpenAICompatibleLLM
from empathic_agent.graph import build_services
from empathic_agent.memory import MemoryService, MemoryStore
from empathic_agent.testing import FakeEmbedder, FakeEncoder, FakeLLM
from empathic_agent.ui.process import free_port

LIMIT = 100_000


class EchoLLM(FakeLLM):
    """Replies "You said: <the turn's words>" in small chunks that yield to the event loop, so that
    concurrent turns interleave (a lost or crossed exchange shows in the history)."""

    async def _stream_impl(self, messages: list[ChatMessage], options):
        last = [m for m in messages if m.role == "user"][-1].content.split("\n\n")[0]
        for word in f"You said: {last}".split(" "):
            await asyncio.sleep(0)
            yield word + " "


@dataclass
class Live:
    client: httpx.AsyncClient
    key: dict[str, str]
    keys: KeyStore
    agent: Agent
    app: Any


async def open_live(settings, tmp_path: Path, *, llm=None, limits: ApiLimits | None = None):
    memory = MemoryService(MemoryStore.open_embedded(settings.memory_dir / "chroma"), FakeEmbedder())
    services = build_services(settings, llm=llm or EchoLLM(), text_encoder=FakeEncoder(default="sadness"),
                              memory=memory, speech=None, face=None, tts=None)
    agent = await Agent.open(settings, services=services)  # the real SQLite checkpointer
    keys = KeyStore(settings.api_keys_path)
    app = create_api(settings, agent=agent, keys=keys,
                     limits=limits or ApiLimits(max_body_bytes=LIMIT, rate_per_minute=1e6, burst=10**6))
    return app, agent, keys


@pytest.fixture
async def live(settings, tmp_path):
    app, agent, keys = await open_live(settings, tmp_path)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     timeout=120) as client:
            yield Live(client, {"X-API-Key": keys.create_key("app-a")}, keys, agent, app)
    await agent.aclose()
    keys.close()


def pairs(messages: list[dict]) -> list[tuple[str, str]]:
    """(user, assistant) exchanges; fails unless the roles strictly alternate."""
    assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2), messages
    return [(messages[i]["content"], messages[i + 1]["content"]) for i in range(0, len(messages), 2)]


# -- concurrency ---------------------------------------------------------------------------------

async def test_twenty_concurrent_turns_on_one_conversation_keep_all_forty_messages(live):
    async def turn(i: int) -> httpx.Response:
        return await live.client.post("/v1/turns", headers=live.key,
                                      json={"user_id": "ann", "session_id": "s1", "text": f"message number {i}"})

    responses = await asyncio.gather(*(turn(i) for i in range(20)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    history = (await live.client.get("/v1/users/ann/sessions/s1", headers=live.key)).json()["messages"]
    assert len(history) == 40
    exchanges = pairs(history)
    # Each reply follows its own message (turns ran one after another, in arrival order).
    assert all(reply.strip() == f"You said: {said}" for said, reply in exchanges), exchanges
    assert sorted(said for said, _ in exchanges) == sorted(f"message number {i}" for i in range(20))


async def test_fifty_users_with_five_concurrent_turns_each_lose_nothing_and_never_cross(live):
    async def turn(u: int, t: int) -> tuple[int, dict]:
        r = await live.client.post("/v1/turns", headers=live.key,
                                   json={"user_id": f"user{u}", "session_id": "s", "text": f"user {u} says {t}"})
        assert r.status_code == 200, r.text
        return u, r.json()

    results = await asyncio.gather(*(turn(u, t) for u in range(50) for t in range(5)))
    for u, body in results:
        assert body["user_id"] == f"user{u}" and body["reply"].startswith(f"You said: user {u} says ")
        assert all(f"user {u} " in m["text"] for m in body["memories"]), body["memories"]
    for u in range(50):
        history = (await live.client.get(f"/v1/users/user{u}/sessions/s", headers=live.key)).json()["messages"]
        exchanges = pairs(history)
        assert sorted(s for s, _ in exchanges) == [f"user {u} says {t}" for t in range(5)]
        assert all(r.strip() == f"You said: {s}" for s, r in exchanges)
        memories = (await live.client.get(f"/v1/users/user{u}/export", headers=live.key)).json()["memories"]
        assert memories["count"] >= 1 and all(f"user {u} " in m["text"] for m in memories["memories"])


# -- authentication before the body, and a body limit that holds while streaming --------------

class Upload:
    """An ASGI ``receive`` that streams ``total`` bytes in chunks without a Content-Length (as a
    chunked upload does) and counts what the app pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.left, self.chunk, self.pulled, self.calls = total, chunk, 0, 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        n = min(self.chunk, self.left)
        self.left -= n
        self.pulled += n
        return {"type": "http.request", "body": b"x" * n, "more_body": self.left > 0}


async def call_raw(app, path: str, headers: dict[str, str], upload: Upload) -> tuple[int, dict]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         {"content-type": "application/json", "transfer-encoding": "chunked", **headers}.items()],
             "client": ("127.0.0.1", 1), "server": ("api", 80)}
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, upload, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


async def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(live):
    upload = Upload(150 * 1024 * 1024)
    status, body = await call_raw(live.app, "/v1/turns", {}, upload)
    assert status == 401 and body["error"]["type"] == "unauthorized"
    assert upload.pulled == 0
    status, _ = await call_raw(live.app, "/v1/turns", {"x-api-key": "ea_app-a_" + "x" * 43}, Upload(1024))
    assert status == 401


async def test_a_chunked_body_over_the_limit_is_refused_after_reading_at_most_the_limit(live):
    upload = Upload(150 * 1024 * 1024)
    status, body = await call_raw(live.app, "/v1/turns", live.key, upload)
    assert status == 413 and body["error"]["type"] == "too_large"
    assert upload.pulled <= LIMIT + upload.chunk  # not 150 MB
    # Under the limit, a chunked body is a normal request.
    payload = json.dumps({"user_id": "ann", "session_id": "s", "text": "hello there"}).encode()

    class Small(Upload):
        async def __call__(self):
            self.calls += 1
            half = len(payload) // 2
            if self.calls == 1:
                return {"type": "http.request", "body": payload[:half], "more_body": True}
            if self.calls == 2:
                return {"type": "http.request", "body": payload[half:], "more_body": False}
            await asyncio.sleep(3600)  # a real client keeps the connection open

    status, body = await call_raw(live.app, "/v1/turns", live.key, Small(0))
    assert status == 200 and body["reply"].startswith("You said: hello there")


# -- revocation ---------------------------------------------------------------------------------

async def test_a_key_revoked_by_another_process_is_refused_at_the_next_request(live, settings):
    assert (await live.client.get("/v1/users/ann/sessions", headers=live.key)).status_code == 200
    other = KeyStore(settings.api_keys_path)  # its own SQLite connection, as `empathic api-key revoke` has
    assert other.revoke("app-a") == 1
    other.close()
    r = await live.client.get("/v1/users/ann/sessions", headers=live.key)
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"


# -- documented error bodies, logs without ids ----------------------------------------------------

async def test_every_refusal_has_the_documented_error_body(settings, tmp_path, live):
    c = live.client
    cases = {
        401: await c.get("/v1/users/ann/sessions"),
        404: await c.get("/v1/no/such/route", headers=live.key),
        405: await c.put("/v1/turns", headers=live.key),
        413: await c.post("/v1/turns", headers=live.key, content=b"x" * (LIMIT + 1)),
        422: await c.post("/v1/turns", headers=live.key, json={"user_id": "a" * 96, "session_id": "s", "text": "hi"}),
    }
    app, agent, keys = await open_live(replace(settings, memory_dir=tmp_path / "other"), tmp_path,
                                       limits=ApiLimits(max_body_bytes=LIMIT, rate_per_minute=1, burst=1))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c2:
            h = {"X-API-Key": keys.create_key("tiny")}
            await c2.get("/v1/users/u/sessions", headers=h)
            cases[429] = await c2.get("/v1/users/u/sessions", headers=h)
    await agent.aclose()
    for status, r in cases.items():
        assert r.status_code == status, (status, r.text)
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert "1-95" in cases[422].json()["error"]["message"]  # the rule as it is enforced
    assert int(cases[429].headers["retry-after"]) >= 1


async def test_the_access_log_names_route_templates_never_raw_paths(live, caplog):
    with caplog.at_level(logging.INFO, logger="empathic_agent.api.access"):
        await live.client.get("/v1/users/secret-person-42/sessions", headers=live.key)
        await live.client.get("/v1/users/secret-person-42/nothing-here", headers=live.key)
        await live.client.get("/v1/users/secret-person-42/sessions")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "empathic_agent.api.access"]
    assert len(lines) == 3 and not any("secret-person-42" in json.dumps(x) for x in lines), lines
    assert lines[0]["route"] == "/v1/users/{user_id}/sessions" and lines[1]["route"] == "-"
    assert [x["status"] for x in lines] == [200, 404, 401]


async def test_exporting_an_erased_person_creates_no_new_record_of_them(live):
    c, h = live.client, live.key
    assert (await c.post("/v1/turns", headers=h, json={"user_id": "ann", "session_id": "s", "text": "hi"})).status_code == 200
    assert (await c.delete("/v1/users/ann", headers=h)).status_code == 200
    exported = (await c.get("/v1/users/ann/export", headers=h)).json()
    assert exported["conversations"] == {} and exported["memories"]["count"] == 0
    assert (await c.get("/v1/users/ann/sessions", headers=h)).json()["sessions"] == []
    assert (await c.get("/v1/users/ann/sessions/s", headers=h)).json()["messages"] == []
    assert live.keys.audit_entries("app-a", "ann") == []  # nothing but the pseudonymous erasure row


async def test_user_data_is_private_to_the_server_account(live, settings):
    await live.client.post("/v1/turns", headers=live.key, json={"user_id": "ann", "session_id": "s", "text": "hi"})
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    root = Path(settings.memory_dir)
    assert mode(root) == 0o700 and mode(root / "chroma") == 0o700
    for db in (settings.checkpoint_path, settings.api_keys_path):
        for p in [db, *db.parent.glob(db.name + "-*")]:
            assert mode(p) == 0o600, (p, oct(mode(p)))


# -- what client apps are told ------------------------------------------------------------------------

async def test_degraded_steps_do_not_show_internal_addresses(settings, tmp_path):
    down = FakeLLM(error=LLMConnectionError("LLM server at http://10.1.2.3:8000/v1 is unreachable "
                                            "(All connection attempts failed); is it running?"))
    app, agent, keys = await open_live(settings, tmp_path, llm=down)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            r = await c.post("/v1/turns", headers={"X-API-Key": keys.create_key("a")},
                             json={"user_id": "ann", "session_id": "s", "text": "I had a rough day"})
    await agent.aclose()
    body = r.json()
    assert r.status_code == 200 and body["reply"] and body["degraded"], body
    assert "10.1.2.3" not in r.text and "http://" not in r.text


async def test_docs_page_is_off_by_default_and_the_schema_stays(settings, tmp_path, live):
    assert (await live.client.get("/docs")).status_code == 404
    assert (await live.client.get("/openapi.json")).json()["info"]["title"] == "Empathic Agent API"
    app = create_api(replace(settings, api_docs=True), agent=live.agent, keys=live.keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        assert (await c.get("/docs")).status_code == 200


async def test_readiness_names_a_dead_llm_backend(settings, tmp_path):
    dead = OpenAICompatibleLLM(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout_s=5, max_retries=0)
    app, agent, keys = await open_live(settings, tmp_path, llm=dead)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            r = await c.get("/readyz")
    await agent.aclose()
    assert r.status_code == 503 and r.json() == {"ready": False, "failing": {"llm": "LLMConnectionError"}}
    assert "127.0.0.1" not in r.text
