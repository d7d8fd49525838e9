"""Scale-out: two ``empathic serve`` processes behind a (pretend) load balancer share a real
PostgreSQL (Debian's server on 127.0.0.1, conversation checkpoints) and a real Chroma server
(memories): a conversation started on one continues on the other, and an erasure on one is seen by
both."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from empathic_agent.api.keys import KeyStore
from empathic_agent.ui.process import free_port

VENV_BIN = Path(sys.executable).parent


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail("PostgreSQL server not installed (Debian package postgresql; scripts/test.sh installs it)")
    return found[-1]


def _wait_http(url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (as the postgres user when we are root) that
    can be restarted on the same data and port."""

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="empathic-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(self.as_user + [_pg_bin("initdb"), "-D", str(self.data / "db"), "--auth=trust", "-U", "postgres"],
                       check=True, capture_output=True)
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/empathic"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.as_user + [_pg_bin("postgres"), "-D", str(self.data / "db"), "-h", "127.0.0.1",
                                                     "-p", str(self.port), "-k", str(self.data)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(150):
            if subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError("postgres did not start")

    def stop(self) -> None:
        """A fast shutdown (clients disconnected, as in a restart by the operator)."""
        if self.proc is not None:
            subprocess.run(self.as_user + [_pg_bin("pg_ctl"), "-D", str(self.data / "db"), "stop", "-m", "fast",
                                           "-w", "-t", "60"], capture_output=True)
            self.proc.wait(timeout=60)
            self.proc = None


@pytest.fixture(scope="module")
def pg():
    server = Postgres()
    server.start()
    try:
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "empathic"],
                       check=True, capture_output=True)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(pg):
    return pg.url


class Chroma:
    """``chroma run`` on a fixed directory and port, stoppable and restartable."""

    def __init__(self, path: Path) -> None:
        self.path, self.port, self.proc = path, free_port(), None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(VENV_BIN / "chroma"), "run", "--path", str(self.path),
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_http(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", 60, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    server = Chroma(tmp_path_factory.mktemp("chroma"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chroma(chroma_server):
    return chroma_server.port


@contextlib.contextmanager
def _server(env: dict[str, str], log: Path):
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "empathic"), "serve", "--port", str(port), "--no-warm-up"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_http(f"http://127.0.0.1:{port}/readyz", 180, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _call(base: str, key: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def test_two_servers_share_conversations_and_memories(postgres, chroma, tmp_path):
    keys = KeyStore(tmp_path / "api.sqlite")
    key = keys.create_key("clinic")
    keys.close()
    env = {**os.environ, "EMPATHIC_CHECKPOINT_BACKEND": "postgres", "EMPATHIC_POSTGRES_URL": postgres,
           "EMPATHIC_MEMORY_BACKEND": "http", "EMPATHIC_CHROMA_HOST": "127.0.0.1", "EMPATHIC_CHROMA_PORT": str(chroma),
           "EMPATHIC_API_KEYS_DB": str(tmp_path / "api.sqlite"), "EMPATHIC_MEMORY_DIR": str(tmp_path / "memory"),
           "EMPATHIC_ENCODERS": "text", "EMPATHIC_MAX_NEW_TOKENS": "24", "EMPATHIC_TEMPERATURE": "0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with _server(env, tmp_path / "a.log") as a, _server(env, tmp_path / "b.log") as b:
        first = _call(a, key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s1",
                                                     "text": "My sister Lena is getting married in May."})
        second = _call(b, key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s1",
                                                      "text": "I am nervous about my speech at my sister's wedding."})
        assert first["reply"] and second["reply"]
        assert first["degraded"] == [] and second["degraded"] == [], (first["degraded"], second["degraded"])
        history = _call(a, key, "GET", "/v1/users/ann/sessions/s1")["messages"]
        assert [m["content"] for m in history if m["role"] == "user"] == [
            "My sister Lena is getting married in May.", "I am nervous about my speech at my sister's wedding."]
        # In a new conversation, the second server recalls what the first one stored (one Chroma
        # server); within s1 the exchange is still in the prompt's history, so it is not recalled.
        third = _call(b, key, "POST", "/v1/turns", {"user_id": "ann", "session_id": "s2",
                                                     "text": "How do I write a speech for my sister's wedding?"})
        assert any("Lena" in m["text"] for m in third["memories"]), third["memories"]
        exported = _call(b, key, "GET", "/v1/users/ann/export")
        assert exported["conversations"]["s1"] and len(exported["memories"]["memories"]) >= 2
        gone = _call(b, key, "DELETE", "/v1/users/ann")
        assert gone["conversations"] == 2
        assert _call(a, key, "GET", "/v1/users/ann/sessions")["sessions"] == []
        assert _call(a, key, "GET", "/v1/users/ann/export")["memories"]["memories"] == []


def _status(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_servers_serialise_one_conversation_and_ride_out_store_restarts(pg, chroma_server, tmp_path):
    """Two servers: 20 concurrent turns of one conversation across both keep all 40 messages
    (advisory lock); the Chroma server down then up, and PostgreSQL restarted, are survived
    without restarting the agent servers."""
    keys = KeyStore(tmp_path / "api.sqlite")
    key = keys.create_key("clinic")
    keys.close()
    env = {**os.environ, "EMPATHIC_CHECKPOINT_BACKEND": "postgres", "EMPATHIC_POSTGRES_URL": pg.url,
           "EMPATHIC_MEMORY_BACKEND": "http", "EMPATHIC_CHROMA_HOST": "127.0.0.1",
           "EMPATHIC_CHROMA_PORT": str(chroma_server.port),
           "EMPATHIC_API_KEYS_DB": str(tmp_path / "api.sqlite"), "EMPATHIC_MEMORY_DIR": str(tmp_path / "memory"),
           "EMPATHIC_ENCODERS": "text", "EMPATHIC_MAX_NEW_TOKENS": "8", "EMPATHIC_TEMPERATURE": "0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with _server(env, tmp_path / "a.log") as a, _server(env, tmp_path / "b.log") as b:
        def turn(base: str, text: str, session: str = "race") -> dict:
            return _call(base, key, "POST", "/v1/turns", {"user_id": "zoe", "session_id": session, "text": text})

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: turn((a, b)[i % 2], f"message number {i}"), range(20)))
        assert all(r["reply"] for r in results)
        history = _call(a, key, "GET", "/v1/users/zoe/sessions/race")["messages"]
        assert len(history) == 40 and [m["role"] for m in history] == ["user", "assistant"] * 20
        assert sorted(m["content"] for m in history[::2]) == sorted(f"message number {i}" for i in range(20))

        chroma_server.stop()
        down = turn(a, "My brother Tom moved to Canada.", "s2")
        assert down["reply"] and {d["step"] for d in down["degraded"]} & {"recall", "remember"}, down["degraded"]
        status, ready = _status(a, "/readyz")
        assert status == 503 and "memory" in ready["failing"], ready
        chroma_server.start()
        assert _status(a, "/readyz")[0] == 200 and _status(b, "/readyz")[0] == 200
        up = turn(b, "I miss my brother Tom a lot.", "s2")
        assert up["degraded"] == [], up["degraded"]

        pg.stop()
        pg.start()
        after = [turn(a, "Still here after the database restart.", "s2"), turn(b, "And on the other server.", "s2")]
        assert all(r["reply"] and r["degraded"] == [] for r in after), [r["degraded"] for r in after]
        said = [m["content"] for m in _call(b, key, "GET", "/v1/users/zoe/sessions/s2")["messages"][::2]]
        assert said == ["My brother Tom moved to Canada.", "I miss my brother Tom a lot.",
                        "Still here after the database restart.", "And on the other server."]
