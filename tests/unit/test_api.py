"""The HTTP API with the real FastAPI app, key store, graph and checkpointer, and fakes (subclassing
the real interfaces) for the LLM and voice: auth and app isolation, turns (JSON, multipart, SSE),
data rights with an audit log, the OpenAI facade, limits, and many users in parallel."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from fastapi.testclient import TestClient
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent
from empathic_agent.api.keys import KeyStore, scoped_user
from empathic_agent.api.server import ApiLimits, create_api
from empathic_agent.generate.llm import ChatMessage
from empathic_agent.graph import build_services
from empathic_agent.testing import FakeEncoder, FakeLLM, FakeTTS


class EchoLLM(FakeLLM):
    """Replies with the latest user words (so cross-talk between users would show)."""

    async def _stream_impl(self, messages: list[ChatMessage], options):
        self.prompts.append(list(messages))
        last = [m for m in messages if m.role == "user"][-1].content.split("\n\n")[0]
        for word in f"You said: {last}".split(" "):
            await asyncio.sleep(0)
            yield word + " "


@pytest.fixture
def api(settings, tmp_path):
    services = build_services(settings, llm=EchoLLM(), text_encoder=FakeEncoder(default="sadness"), memory=None,
                              speech=None, face=None, tts=FakeTTS(seconds_per_char=0.001))
    agent = Agent(services, checkpointer=InMemorySaver())
    keys = KeyStore(tmp_path / "api.sqlite")
    app = create_api(settings, agent=agent, keys=keys, limits=ApiLimits(max_body_bytes=200_000, rate_per_minute=6000,
                                                                         burst=200))
    key_a, key_b = keys.create_key("app-a"), keys.create_key("app-b")
    with TestClient(app) as client:
        yield client, {"a": {"Authorization": f"Bearer {key_a}"}, "b": {"X-API-Key": key_b}}, keys, agent


def test_health_needs_no_key_and_everything_else_does(api):
    client, _, _, _ = api
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"ready": True}
    r = client.post("/v1/turns", json={"user_id": "u", "session_id": "s", "text": "hi"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = client.post("/v1/turns", json={"user_id": "u", "session_id": "s", "text": "hi"},
                    headers={"Authorization": "Bearer ea_app-a_wrongwrongwrongwrongwrongwrongwrongwrong123"})
    assert r.status_code == 401
    assert client.get("/v1/users/u/export", headers={"X-API-Key": "nonsense"}).status_code == 401


def test_a_turn_returns_reply_perception_plan_safety_and_timings(api):
    client, h, _, _ = api
    r = client.post("/v1/turns", json={"user_id": "ann", "session_id": "s1", "text": "I lost my job"}, headers=h["a"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reply"].startswith("You said: I lost my job") and body["user_id"] == "ann"
    assert body["emotion"]["top_category"] == "sadness" and body["register"]["strategy"]
    assert body["safety"]["crisis"] is False and "generate" in body["timings"] and body["degraded"] == []
    assert "audio_wav_base64" not in body
    spoken = client.post("/v1/turns", json={"user_id": "ann", "session_id": "s1", "text": "thanks", "speak": True},
                         headers=h["a"]).json()
    assert base64.b64decode(spoken["audio_wav_base64"])[:4] == b"RIFF"


def test_apps_are_isolated_even_with_the_same_user_id(api):
    client, h, _, agent = api
    client.post("/v1/turns", json={"user_id": "ann", "session_id": "s1", "text": "secret of app a"}, headers=h["a"])
    assert client.get("/v1/users/ann/sessions", headers=h["a"]).json()["sessions"] == ["s1"]
    assert client.get("/v1/users/ann/sessions", headers=h["b"]).json()["sessions"] == []
    other = client.get("/v1/users/ann/sessions/s1", headers=h["b"]).json()
    assert other["messages"] == []
    assert "secret" not in json.dumps(client.get("/v1/users/ann/export", headers=h["b"]).json())
    # Naming the other app's scoped id does not reach it either.
    assert client.get("/v1/users/app-a@ann/sessions", headers=h["b"]).json()["sessions"] == []
    # Deleting in app b leaves app a's person alone.
    client.delete("/v1/users/ann", headers=h["b"])
    assert client.get("/v1/users/ann/sessions", headers=h["a"]).json()["sessions"] == ["s1"]


def test_data_rights_export_delete_and_audit(api):
    client, h, keys, _ = api
    client.post("/v1/turns", json={"user_id": "bo", "session_id": "s1", "text": "hello there"}, headers=h["a"])
    data = client.get("/v1/users/bo/export", headers=h["a"]).json()
    assert data["user_id"] == "bo" and data["conversations"]["s1"][0]["content"] == "hello there"
    assert [e["action"] for e in data["audit"]] == ["turn", "export"]
    assert all("hello" not in e["detail"] for e in data["audit"])  # no contents in the audit log
    gone = client.delete("/v1/users/bo", headers=h["a"]).json()
    assert gone["conversations"] == 1 and gone["audit_entries"] >= 2
    assert client.get("/v1/users/bo/sessions", headers=h["a"]).json()["sessions"] == []
    assert client.get("/v1/users/bo/audit", headers=h["a"]).json()["entries"] == [
        e for e in keys.audit_entries("app-a", "bo")]


def test_streaming_turn_sends_text_audio_and_result_events(api):
    client, h, _, _ = api
    with client.stream("POST", "/v1/turns/stream", headers=h["a"],
                       json={"user_id": "cy", "session_id": "s", "text": "I feel anxious", "speak": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("event: "):] for line in r.iter_lines() if line.startswith("event: ")]
    # The reply guard releases text sentence by sentence (this echo is one sentence).
    assert events.count("text") >= 1 and "audio" in events and events[-1] == "result"
    assert events.index("audio") < events.index("result")
    r = client.post("/v1/turns/stream", headers=h["a"], json={"user_id": "cy", "session_id": "s", "text": "   "})
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"].lower()


def test_multipart_upload_with_an_image(api, settings):
    from pathlib import Path

    client, h, _, _ = api
    photo = (Path(__file__).parents[1] / "fixtures" / "images" / "cat.jpg").read_bytes()
    r = client.post("/v1/turns/upload", headers=h["a"], data={"user_id": "di", "session_id": "s", "text": "look"},
                    files={"image": ("cat.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    # Face input is off in this app (face=None): the turn still answers and says why.
    body = r.json()
    assert body["reply"].startswith("You said: look")
    assert [d["error"] for d in body["degraded"]] == ["FaceUnavailable"]


def test_a_crisis_over_the_api_is_marked_and_answered_by_the_protocol(api):
    client, h, _, agent = api
    body = client.post("/v1/turns", headers=h["a"],
                       json={"user_id": "el", "session_id": "s", "text": "I want to end my life"}).json()
    assert body["crisis"] is True and body["safety"]["category"] == "suicide" and "988" in body["reply"]
    assert body["generation"]["backend"] == "safety-protocol"
    # The risk level and route of the conversation, with the dimensions and their evidence.
    assert body["risk_level"] == body["safety"]["level"] and body["risk_level"] in ("moderate", "high", "imminent")
    assert body["route"] in ("protocol", "escalate", "emergency")
    assert body["safety"]["dimensions"] and body["safety"]["dimensions"][0]["evidence"]
    # The next turn of that conversation stays careful: a check-in, not ordinary chat.
    nxt = client.post("/v1/turns", headers=h["a"], json={"user_id": "el", "session_id": "s", "text": "ok"}).json()
    assert nxt["risk_level"] == "low" and nxt["route"] == "check_in" and "are you safe" in nxt["reply"]


def test_openai_facade_plain_and_streaming(api):
    client, h, _, _ = api
    r = client.post("/v1/chat/completions", headers={**h["a"], "X-Session-Id": "c1"},
                    json={"model": "empathic-agent", "user": "fi",
                          "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": "hello"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"].startswith("You said: hello")
    assert "empathic" in body
    with client.stream("POST", "/v1/chat/completions", headers={**h["a"], "X-User-Id": "fi"},
                       json={"messages": [{"role": "user", "content": [{"type": "text", "text": "again"}]}],
                             "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(x[6:])["choices"][0]["delta"].get("content", "") for x in lines[:-1])
    assert text.startswith("You said: again")
    # No user named: a clear 422.
    r = client.post("/v1/chat/completions", headers=h["a"], json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 422 and "X-User-Id" in r.json()["error"]["message"]
    assert client.get("/v1/models", headers=h["a"]).json()["data"][0]["id"] == "empathic-agent"


def test_limits_body_size_rate_and_bad_input(settings, tmp_path):
    services = build_services(settings, llm=EchoLLM(), text_encoder=None, memory=None, speech=None, face=None)
    keys = KeyStore(tmp_path / "k.sqlite")
    app = create_api(settings, agent=Agent(services, checkpointer=InMemorySaver()), keys=keys,
                     limits=ApiLimits(max_body_bytes=1000, rate_per_minute=60, burst=3))
    h = {"X-API-Key": keys.create_key("tiny")}
    with TestClient(app) as client:
        r = client.post("/v1/turns", headers=h, json={"user_id": "u", "session_id": "s", "text": "x" * 5000})
        assert r.status_code == 413
        r = client.post("/v1/turns", headers=h, json={"user_id": "bad id!", "session_id": "s", "text": "hi"})
        assert r.status_code == 422
        r = client.post("/v1/turns", headers=h, json={"user_id": "u", "session_id": "s", "audio_base64": "@@@"})
        assert r.status_code == 422 and "base64" in r.json()["error"]["message"]
        codes = [client.get("/v1/users/u/sessions", headers=h).status_code for _ in range(3)]
        assert 429 in codes
        r = client.get("/v1/users/u/sessions", headers=h)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    keys.revoke("tiny")
    assert keys.verify(h["X-API-Key"]) is None


def test_keys_are_hashed_at_rest(tmp_path):
    keys = KeyStore(tmp_path / "k.sqlite")
    key = keys.create_key("app-x")
    raw = (tmp_path / "k.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("k.sqlite-*"))
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw
    assert keys.verify(key) == "app-x" and keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert scoped_user("app-x", "ann") == "app-x@ann"


async def test_many_users_in_parallel_never_cross_talk(api):
    client, h, _, agent = api
    app = client.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as ac:
        async def one(i: int) -> tuple[int, dict]:
            r = await ac.post("/v1/turns", headers=h["a"] if i % 2 else h["b"],
                              json={"user_id": f"user{i}", "session_id": "s", "text": f"my number is {i}"})
            return i, r.json()

        results = await asyncio.gather(*(one(i) for i in range(24)))
    for i, body in results:
        assert body["user_id"] == f"user{i}" and body["reply"].strip() == f"You said: my number is {i}", body
    for i in range(24):
        history = client.get(f"/v1/users/user{i}/sessions/s", headers=h["a"] if i % 2 else h["b"]).json()["messages"]
        assert [m["content"] for m in history][0] == f"my number is {i}" and len(history) == 2
