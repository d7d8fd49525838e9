"""``empathic memory list|delete|delete-user|export`` against a real embedded store in a tmp dir.

The data-rights commands must work without loading the embedding model: the store is filled here
with the FakeEmbedder, and the CLI (which builds the real MiniLM embedder lazily) never embeds.
"""

from __future__ import annotations

import json
import stat

import pytest

from empathic_agent.cli.main import main
from empathic_agent.latent import Reading
from empathic_agent.memory import MemoryService
from empathic_agent.settings import Settings
from empathic_agent.testing import FakeEmbedder

SAD = Reading.from_categories({"sadness": 1.0}, "text")


@pytest.fixture
def memdir(tmp_path, monkeypatch):
    for var in ("EMPATHIC_MEMORY_BACKEND", "EMPATHIC_CHROMA_PATH"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "mem"
    service = MemoryService.from_settings(Settings.from_env({}, memory_dir=d), embedder=FakeEmbedder())
    service.remember_turn("alice", "s1", "t1", "My name is Alice and my cat is ill", "I'm sorry", SAD)
    service.remember_turn("bob", "s1", "t1", "Bob's bike got stolen", "Oh no", SAD)
    service.close()
    return str(d)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_export(memdir, capsys, tmp_path):
    code, out, _ = run(capsys, "memory", "list", "--user", "alice", "--memory-dir", memdir)
    assert code == 0 and "My name is Alice" in out and "Their name is Alice." in out and "Bob" not in out
    code, out, _ = run(capsys, "memory", "list", "--user", "alice", "--kind", "fact", "--json", "--memory-dir", memdir)
    assert code == 0 and [m["text"] for m in json.loads(out)] == ["Their name is Alice."]
    code, out, _ = run(capsys, "memory", "export", "--user", "alice", "--memory-dir", memdir)
    data = json.loads(out)
    assert code == 0 and data["user_id"] == "alice" and data["memories"]["count"] == 2
    assert all(m["user_id"] == "alice" for m in data["memories"]["memories"])
    target = tmp_path / "out" / "alice.json"
    code, _, err = run(capsys, "memory", "export", "--user", "alice", "--out", str(target), "--memory-dir", memdir)
    assert code == 0 and json.loads(target.read_text())["memories"]["count"] == 2
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # personal data: owner only


def test_delete_one_and_delete_user(memdir, capsys):
    _, out, _ = run(capsys, "memory", "list", "--user", "alice", "--json", "--memory-dir", memdir)
    ids = [m["id"] for m in json.loads(out)]
    # bob cannot delete alice's memory, even knowing its id
    code, _, err = run(capsys, "memory", "delete", "--user", "bob", "--id", ids[0], "--memory-dir", memdir)
    assert code == 1 and "no memory" in err
    code, out, _ = run(capsys, "memory", "delete", "--user", "alice", "--id", ids[0], "--memory-dir", memdir)
    assert code == 0 and ids[0] in out
    code, out, _ = run(capsys, "memory", "delete-user", "--user", "alice", "--memory-dir", memdir)
    assert code == 0 and "1 memories" in out
    _, out, _ = run(capsys, "memory", "list", "--user", "alice", "--json", "--memory-dir", memdir)
    assert json.loads(out) == []
    _, out, _ = run(capsys, "memory", "list", "--user", "bob", "--json", "--memory-dir", memdir)
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize("argv", [
    ["memory", "list", "--user", "a' OR 1=1"],
    ["memory", "export", "--user", "$or"],
    ["memory", "delete-user", "--user", "../alice"],
    ["memory", "delete", "--user", "alice", "--id", "'; DROP TABLE x; --"],
])
def test_bad_ids_are_rejected_with_a_clear_error(memdir, capsys, argv):
    code, _, err = run(capsys, *argv, "--memory-dir", memdir)
    assert code == 2 and err.startswith("error: invalid")
    _, out, _ = run(capsys, "memory", "list", "--user", "alice", "--json", "--memory-dir", memdir)
    assert len(json.loads(out)) == 2  # nothing was deleted


async def _converse(memdir: str, user: str, session: str, text: str) -> None:
    from empathic_agent.agent import Agent
    from empathic_agent.graph import build_services
    from empathic_agent.testing import FakeLLM

    s = Settings.from_env({}, memory_dir=memdir)
    async with await Agent.open(s, services=build_services(s, llm=FakeLLM(["ok"]), text_encoder=None,
                                                           memory=None, speech=None, face=None)) as agent:
        await agent.respond(user, session, text=text)


def test_export_and_delete_user_include_conversation_checkpoints(memdir, capsys, tmp_path):
    import asyncio

    asyncio.run(_converse(memdir, "alice", "monday", "talking about my cat"))
    asyncio.run(_converse(memdir, "bob", "monday", "bob's conversation"))
    code, out, _ = run(capsys, "memory", "export", "--user", "alice", "--memory-dir", memdir)
    assert code == 0
    data = json.loads(out)
    assert data["conversations"]["monday"] == [{"role": "user", "content": "talking about my cat"},
                                               {"role": "assistant", "content": "ok"}]
    assert "bob's conversation" not in out
    code, out, _ = run(capsys, "memory", "delete-user", "--user", "alice", "--memory-dir", memdir)
    assert code == 0
    code, out, _ = run(capsys, "memory", "export", "--user", "alice", "--memory-dir", memdir)
    assert json.loads(out)["conversations"] == {}
    for f in (tmp_path / "mem").glob("conversations.sqlite*"):  # the database and its WAL
        assert b"talking about my cat" not in f.read_bytes(), f  # vacuumed, not only unlinked
    code, out, _ = run(capsys, "memory", "export", "--user", "bob", "--memory-dir", memdir)
    assert json.loads(out)["conversations"]["monday"][0]["content"] == "bob's conversation"
