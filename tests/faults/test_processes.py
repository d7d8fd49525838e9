"""Faults against real ``empathic serve`` processes with the embedded defaults: revocation by the
real CLI, hostile bodies, a memory directory that is briefly not writable, a dead or silent LLM
server, a failed startup, and ``kill -9`` in the middle of turns.  Each test states what is promised
(README, "What holds under faults")."""

from __future__ import annotations

import base64
import io
import json
import random
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from empathic_agent.ui.process import free_port

from .servers import VENV_BIN, cli, serve, server_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-home")


@pytest.fixture(scope="module")
def server(home):
    # Every modality on (models load on first use: text turns never load Whisper or the face model).
    with serve(server_env(home, EMPATHIC_ENCODERS="text,speech,face"), home / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def key(home, server) -> str:
    out = cli(server_env(home), "api-key", "create", "--app", "clinic")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_key_revoked_with_the_cli_is_refused_by_the_running_server_at_once(home, server):
    key = cli(server_env(home), "api-key", "create", "--app", "revoked-app").stdout.strip()
    assert server.call(key, "GET", "/v1/users/ann/sessions")[0] == 200  # verified (and, before, cached)
    out = cli(server_env(home), "api-key", "revoke", "--app", "revoked-app")
    assert out.returncode == 0 and json.loads(out.stdout)["revoked"] == 1
    status, body = server.call(key, "GET", "/v1/users/ann/sessions")  # the very next request
    assert status == 401 and body["error"]["type"] == "unauthorized"


def _chunked_post(url: str, path: str, headers: dict[str, str], total: int, chunk: int = 1 << 20) -> int:
    """POST ``total`` bytes with chunked transfer encoding (no Content-Length); the status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  f"Content-Type: application/json\r\n{head}\r\n".encode())
        block = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
        try:
            for _ in range(total // chunk):
                s.sendall(block)
            s.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed while we were still sending
            pass
        reply = s.recv(4096).decode("latin-1")
    return int(reply.split(" ", 2)[1])


def test_oversized_and_unauthenticated_bodies_cost_the_server_at_most_the_limit(server, key, capsys):
    before = server.rss_peak_mb()
    assert _chunked_post(server.url, "/v1/turns", {"X-API-Key": key}, 150 << 20) == 413
    assert _chunked_post(server.url, "/v1/turns", {}, 150 << 20) == 401
    grown = server.rss_peak_mb() - before
    with capsys.disabled():
        print(f"\n[faults] peak server RSS grew {grown:.1f} MB over two 150 MB chunked bodies "
              "(body limit 25 MB; the test fails at 60 MB)")
    # The body limit is 25 MB: the server may hold about that much once, never the 150 MB sent.
    assert grown < 60, grown
    assert server.call(None, "GET", "/healthz")[0] == 200


def test_a_memory_directory_briefly_not_writable_heals_without_a_restart(home, server, key):
    status, first = server.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s1",
                                                           "text": "My dog Rex died last week."})
    assert status == 200 and first["degraded"] == [], first["degraded"]
    chroma = home / "memory" / "chroma"
    entries = [p for p in chroma.rglob("*")]
    modes = {p: p.stat().st_mode for p in entries}
    try:
        for p in entries:
            p.chmod(p.stat().st_mode & ~0o222)
        status, broken = server.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s1",
                                                                "text": "Work has been crushing me too."})
        assert status == 200 and broken["reply"], broken  # the person still gets an answer
        assert any(d["step"] in ("remember", "recall") for d in broken["degraded"]), broken["degraded"]
        status, ready = server.call(None, "GET", "/readyz")
        assert status == 503 and "memory" in ready["failing"], ready
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    status, ready = server.call(None, "GET", "/readyz")
    assert status == 200, ready  # healed: no restart
    status, after = server.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s1",
                                                           "text": "My sister visited, which helped."})
    assert status == 200 and after["degraded"] == [], after["degraded"]
    status, exported = server.call(key, "GET", "/v1/users/ann/export")
    assert status == 200 and exported["memories"]["count"] >= 2
    assert len(exported["conversations"]["s1"]) == 6  # all three exchanges, the degraded one included
    assert "memory store" in server.log.read_text()  # the failure was logged


def test_user_data_files_are_private(home, server, key):
    server.call(key, "POST", "/v1/turns", {"user_id": "bob", "session_id": "s", "text": "Hello there."})
    loose = [str(p) for p in (home / "memory").rglob("*")
             if (p.stat().st_mode & 0o077) and not p.is_symlink()]
    assert loose == []


class Silent:
    """A TCP server that accepts connections and never answers (a hung LLM server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_silent_llm_server_gives_a_fallback_reply_not_a_hang(tmp_path):
    silent = Silent()
    try:
        env = server_env(tmp_path, EMPATHIC_LLM_BACKEND="openai", EMPATHIC_OPENAI_BASE_URL=f"http://127.0.0.1:{silent.port}/v1",
                         EMPATHIC_OPENAI_MODEL="m", EMPATHIC_LLM_TIMEOUT_S="3", EMPATHIC_LLM_MAX_RETRIES="0")
        key = cli(env, "api-key", "create", "--app", "a").stdout.strip()
        with serve(env, tmp_path / "silent.log") as s:
            t0 = time.time()
            status, body = s.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s",
                                                              "text": "I had an awful day."}, timeout=120)
            assert status == 200 and body["reply"], body
            assert any(d["step"] == "generate" for d in body["degraded"]), body["degraded"]
            assert time.time() - t0 < 100  # a hang guard, not a speed figure
            status, ready = s.call(None, "GET", "/readyz", timeout=60)
            assert status == 503 and ready["failing"]["llm"] in ("LLMTimeoutError", "timeout"), ready
            # No address leaks: neither host:port nor ":port" (the bare digits can occur inside a timing
            # or an id by chance: a CI run once failed on "46457" found somewhere in the body).
            seen = json.dumps(body) + json.dumps(ready)
            assert f"127.0.0.1:{silent.port}" not in seen and f":{silent.port}" not in seen, seen
    finally:
        silent.close()


def test_serve_exits_with_an_error_when_startup_fails(tmp_path):
    env = server_env(tmp_path, EMPATHIC_LLM_BACKEND="openai",
                     EMPATHIC_OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    proc = subprocess.run([str(VENV_BIN / "empathic"), "serve", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=180)  # warm-up on: the backend is needed
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "unreachable" in proc.stderr and "ready on" not in proc.stderr


def test_kill_9_in_the_middle_of_turns_leaves_consistent_stores(tmp_path):
    """Killed at random points of turns, restarted on the same files: the stores open and pass
    SQLite's integrity check, every acknowledged exchange is kept in order, an interrupted turn
    leaves at most the person's message (never a reply without its message), and the
    conversation goes on."""
    rng = random.Random(7)
    env = server_env(tmp_path)
    key = cli(env, "api-key", "create", "--app", "a").stdout.strip()
    acknowledged: list[str] = []
    for round_ in range(3):
        with serve(env, tmp_path / "kill.log") as s:
            if round_ == 0:  # the first turn loads the model; let it finish
                text = "Hello, I want to talk about my week."
                assert s.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s", "text": text})[0] == 200
                acknowledged.append(text)
            text = f"Killed turn number {round_}."

            def doomed(s=s, text=text) -> None:
                try:
                    s.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s", "text": text}, timeout=60)
                except OSError:  # the server died under it: that is the point
                    pass

            threading.Thread(target=doomed, daemon=True).start()
            time.sleep(rng.uniform(0.05, 2.0))
            s.kill9()
    for db in (tmp_path / "memory" / "conversations.sqlite", tmp_path / "api.sqlite",
               tmp_path / "memory" / "chroma" / "chroma.sqlite3"):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
    with serve(env, tmp_path / "kill.log") as s:
        assert s.call(None, "GET", "/readyz")[0] == 200
        status, body = s.call(key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s", "text": "Are you there?"})
        assert status == 200 and body["reply"]
        acknowledged.append("Are you there?")
        messages = s.call(key, "GET", "/v1/users/ann/sessions/s")[1]["messages"]
        said = [m["content"] for m in messages if m["role"] == "user"]
        assert [t for t in said if t in acknowledged] == acknowledged  # every acknowledged turn, in order
        assert all(t in acknowledged or t.startswith("Killed turn number") for t in said)
        for i, m in enumerate(messages):  # a reply always answers a message
            if m["role"] == "assistant":
                assert i > 0 and messages[i - 1]["role"] == "user", messages
        assert messages[-1]["role"] == "assistant" and messages[-2]["content"] == "Are you there?"
        status, exported = s.call(key, "GET", "/v1/users/ann/export")
        assert status == 200 and exported["memories"]["count"] >= 1
        assert [e["action"] for e in exported["audit"]].count("turn") >= 2


# -- malformed media -----------------------------------------------------------------------------

def _wav(seconds: float, sr: int = 16000) -> bytes:
    import numpy as np

    from empathic_agent.speak.tts import wav_bytes

    return wav_bytes(np.sin(np.arange(int(sr * seconds)) * 0.05) * (8000 / 32767), sr)


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (120, 100, 90)).save(out, fmt)
    return out.getvalue()


BAD_AUDIO = {
    "random bytes": bytes(random.Random(1).randrange(256) for _ in range(5000)),
    "truncated wav": _wav(1.0)[:60],
    "text": b"hello, this is not audio",
    "too short": _wav(0.05),
}
BAD_IMAGES = {
    "text named .jpg": b"this is a text file renamed to photo.jpg",
    "truncated jpeg": _image("JPEG", (64, 64))[:200],
    "225 megapixels": _image("PNG", (15000, 15000)),
}
_INTERNALS = ("Errno", "Traceback", "/tmp", "site-packages", "Exception")


def _clear(message: str) -> bool:
    return bool(message) and not any(s in message for s in _INTERNALS)


@pytest.mark.parametrize("name", sorted(BAD_AUDIO))
def test_bad_audio_over_the_api_is_one_clear_422(server, key, name):
    data = BAD_AUDIO[name]
    status, body = server.call(key, "POST", "/v1/turns", {"user_id": "media", "session_id": "s",
                                                          "audio_base64": base64.b64encode(data).decode()})
    assert status == 422 and _clear(body["error"]["message"]), body
    boundary = "xyzboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\nmedia\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\ns\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"turn.wav\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, body = server.call(key, "POST", "/v1/turns/upload", data=form,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 422 and _clear(body["error"]["message"]), body
    # Nothing of a refused turn is kept.
    assert server.call(key, "GET", "/v1/users/media/sessions/s")[1]["messages"] == []


def test_bad_images_over_the_api_leave_the_face_out_and_answer(server, key):
    for name, data in BAD_IMAGES.items():
        status, body = server.call(key, "POST", "/v1/turns", {"user_id": "media2", "session_id": "s", "text": "Hi there.",
                                                              "image_base64": base64.b64encode(data).decode()})
        assert status == 200 and body["reply"], (name, body)
        faces = [d for d in body["degraded"] if d["step"] == "perceive"]
        assert faces and all(_clear(d["message"]) for d in faces), (name, body["degraded"])


async def test_bad_media_through_the_python_api(tmp_path):
    from empathic_agent.agent import Agent
    from empathic_agent.errors import InputError
    from empathic_agent.settings import Settings

    settings = Settings.from_env({}, memory_dir=tmp_path / "memory", max_new_tokens=8, temperature=0.0,
                                 encoders="text,speech,face")
    async with await Agent.open(settings) as agent:
        for name, data in BAD_AUDIO.items():
            with pytest.raises(InputError) as err:
                await agent.respond("ann", "s", audio=data)
            assert _clear(str(err.value)), (name, str(err.value))
        assert await agent.history("ann", "s") == []
        result = await agent.respond("ann", "s", text="Hello.", image=BAD_IMAGES["text named .jpg"])
        assert result.reply and any(d["step"] == "perceive" for d in result.degraded)
