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
import urllib.request
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


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (as the postgres user when we are root)."""
    data = Path(tempfile.mkdtemp(prefix="empathic-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_user + [_pg_bin("initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    port = free_port()
    log = open(data / "server.log", "w") if os.geteuid() != 0 else subprocess.DEVNULL
    proc = subprocess.Popen(as_user + [_pg_bin("postgres"), "-D", str(data / "db"), "-h", "127.0.0.1", "-p", str(port),
                                       "-k", str(data)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "empathic"],
                       check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/empathic"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "chroma"), "run", "--path", str(tmp_path_factory.mktemp("chroma")),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
