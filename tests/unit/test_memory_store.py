"""The memory store on a real embedded Chroma (tmp dir): isolation, erasure, export, persistence.

Isolation is the store's job: these tests attack it through every public entry point with crafted
user ids, crafted memory ids, crafted text, and a deliberately corrupted collection.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from empathic_agent.errors import InputError
from empathic_agent.latent import Reading
from empathic_agent.memory import MemoryService, MemoryStore, MemoryStoreError, collection_name_for
from empathic_agent.memory.errors import MemoryStoreUnavailableError
from empathic_agent.memory.store import COLLECTION_PREFIX
from empathic_agent.testing import FakeEmbedder

SAD = Reading.from_categories({"sadness": 1.0}, "text")
JOY = Reading.from_categories({"joy": 1.0}, "text")

CRAFTED_USER_IDS = [
    "a' OR 1=1", "a' OR '1'='1", "$or", "$ne", '{"$ne": ""}', "*", "%", "alice;", "alice OR 1=1",
    "../alice", "./alice", "alice/../bob", "", " alice", "alice ", "alice\x00", "ali\nce", "-alice",
    "_alice", "a" * 129, "ålice", "alice\u200b",
]


@pytest.fixture
def memory(tmp_path):
    service = MemoryService(MemoryStore.open_embedded(tmp_path / "chroma"), FakeEmbedder(),
                            clock=lambda: 1_800_000_000.0)
    yield service
    service.close()


def seed_alice(memory: MemoryService) -> list[str]:
    ids = []
    for i, text in enumerate(["My dog Rex died last week and I miss him",
                              "Work has been crushing me with deadlines",
                              "My sister visited and we laughed all night. I love hiking"]):
        res = memory.remember_turn("alice", "s1", f"t{i}", text, "I hear you.", SAD if i < 2 else JOY)
        ids.extend(r.id for r in res.stored)
    return ids


# ------------------------------------------------------------------------------- isolation
def test_user_b_never_receives_user_a_memories(memory):
    seed_alice(memory)
    memory.remember_turn("bob", "s1", "t1", "I bought a new bike", "Nice!", JOY)
    for strategy in memory.strategies:
        res = memory.recall("bob", "My dog Rex died last week and I miss him", SAD, k=10, strategy=strategy)
        assert all(m.record.user_id == "bob" for m in res), strategy
        assert "Rex" not in " ".join(m.record.text for m in res)
    assert all(r.user_id == "bob" for r in memory.list_memories("bob"))
    assert memory.export_user("bob")["count"] == 1
    # ... while alice does get hers.
    assert any("Rex" in m.record.text for m in memory.recall("alice", "dog Rex died", SAD))


@pytest.mark.parametrize("crafted", CRAFTED_USER_IDS)
def test_crafted_user_ids_are_rejected_everywhere(memory, crafted):
    ids = seed_alice(memory)
    calls = [
        lambda: memory.recall(crafted, "dog", SAD),
        lambda: memory.recall_embedding(crafted, np.ones(128, dtype=np.float32) / np.sqrt(128), SAD),
        lambda: memory.remember_turn(crafted, "s1", "t1", "hello there", "hi", SAD),
        lambda: memory.remember(crafted, "hello there"),
        lambda: memory.list_memories(crafted),
        lambda: memory.export_user(crafted),
        lambda: memory.count(crafted),
        lambda: memory.delete_user(crafted),
        lambda: memory.delete_memory(crafted, "ep-" + "0" * 32),
        lambda: collection_name_for(crafted),
    ]
    for call in calls:
        with pytest.raises(InputError):
            call()
    assert memory.count("alice") == len(ids) == 4  # nothing of alice's was touched


@pytest.mark.parametrize("other", ["Alice", "alice.", "alice_", "alice-1", "alice@example.com"])
def test_similar_but_distinct_user_ids_are_isolated(memory, other):
    ids = seed_alice(memory)
    assert memory.recall(other, "My dog Rex died last week", SAD).memories == ()
    assert memory.list_memories(other) == []
    assert memory.delete_user(other) == 0
    assert memory.count("alice") == len(ids)


def test_a_user_named_like_another_users_collection_sees_nothing(memory):
    seed_alice(memory)
    impostor = collection_name_for("alice")  # a valid id: "eam-<hash>"
    assert impostor.startswith(COLLECTION_PREFIX)
    assert collection_name_for(impostor) != impostor
    assert memory.recall(impostor, "dog Rex", SAD).memories == ()
    assert memory.list_memories(impostor) == []


@pytest.mark.parametrize("field", ["session", "turn"])
@pytest.mark.parametrize("crafted", ["a' OR 1=1", "$or", "", "x" * 200, "s1\nuser_id: bob"])
def test_crafted_session_and_turn_ids_are_rejected(memory, field, crafted):
    kwargs = {"session_id": "s1", "turn_id": "t1"}
    kwargs[f"{field}_id"] = crafted
    with pytest.raises(InputError):
        memory.remember_turn("alice", kwargs["session_id"], kwargs["turn_id"], "hello", "hi", SAD)
    assert memory.count("alice") == 0


def test_crafted_text_is_stored_as_data_and_changes_no_ownership(memory):
    nasty = ['{"user_id": "bob"}', '{"$or": [{"user_id": "bob"}, {"user_id": "alice"}]}',
             "user_id=bob' OR 1=1 --", "$ne $in $nin $and"]
    for i, text in enumerate(nasty):
        memory.remember_turn("alice", "s1", f"t{i}", text, text, SAD)
    assert memory.count("alice") == len(nasty)
    assert memory.count("bob") == 0
    for text in nasty:
        assert memory.recall("bob", text, SAD, k=10).memories == ()
    stored = {r.text for r in memory.list_memories("alice")}
    assert stored == set(nasty)


def test_memory_ids_only_reach_the_owners_memories(memory):
    alice_ids = seed_alice(memory)
    memory.remember_turn("bob", "s1", "t1", "I bought a new bike", "Nice!", JOY)
    for mid in alice_ids:
        assert memory.delete_memory("bob", mid) is False
        assert memory.get_memory("bob", mid) is None
    assert memory.count("alice") == len(alice_ids)
    for bad in ["'; DROP TABLE embeddings; --", "$or", "ep-XYZ", "ep-" + "0" * 31, alice_ids[0] + " ", ""]:
        with pytest.raises(InputError):
            memory.delete_memory("alice", bad)
    assert memory.count("alice") == len(alice_ids)


def test_rows_carrying_another_user_id_are_never_returned(memory):
    """Defence in depth: a corrupted row in alice's collection is dropped, never shown to anyone."""
    seed_alice(memory)
    col = memory.store._client.get_collection(collection_name_for("alice"))
    planted = memory.embedder.embed_one("My dog Rex died last week and I miss him")
    meta = dict(memory.list_memories("alice")[0].to_metadata(), user_id="mallory")
    col.add(ids=["ep-" + "f" * 32], embeddings=[planted], documents=["planted"], metadatas=[meta])
    for who in ("alice", "mallory"):
        res = memory.recall(who, "My dog Rex died last week and I miss him", SAD, k=10)
        assert "planted" not in [m.record.text for m in res]
        assert "planted" not in [r.text for r in memory.list_memories(who)]


def test_a_collection_owned_by_another_user_is_refused(tmp_path):
    store = MemoryStore.open_embedded(tmp_path / "chroma")
    store._client.create_collection(collection_name_for("alice"), embedding_function=None,
                                    metadata={"user_id": "mallory"})
    with pytest.raises(MemoryStoreError, match="another user"):
        store.count("alice")


# ------------------------------------------------------------------------------- erasure and export
def test_delete_one_memory(memory):
    ids = seed_alice(memory)
    assert memory.delete_memory("alice", ids[0]) is True
    assert memory.get_memory("alice", ids[0]) is None
    assert memory.delete_memory("alice", ids[0]) is False
    assert memory.count("alice") == len(ids) - 1


def test_delete_user_erases_everything_and_only_that_user(memory):
    ids = seed_alice(memory)
    memory.remember_turn("bob", "s1", "t1", "I bought a new bike", "Nice!", JOY)
    assert memory.delete_user("alice") == len(ids)
    assert memory.count("alice") == 0
    assert memory.list_memories("alice") == []
    assert memory.recall("alice", "My dog Rex died last week", SAD).memories == ()
    assert memory.export_user("alice")["memories"] == []
    assert memory.count("bob") == 1
    assert memory.delete_user("alice") == 0  # idempotent
    # The person can start again afterwards.
    memory.remember_turn("alice", "s2", "t9", "A fresh start", "Welcome back", JOY)
    assert memory.count("alice") == 1


def test_delete_user_leaves_no_trace_in_the_store_files(tmp_path):
    path = tmp_path / "chroma"
    memory = MemoryService(MemoryStore.open_embedded(path), FakeEmbedder())
    for i in range(3):
        memory.remember_turn("alice", "s1", f"t{i}", f"SECRETMARKER{i} my bank pin is 4711", "ok", SAD)
    memory.remember_turn("bob", "s1", "t1", "bob's ordinary day", "ok", SAD)
    before = {p.name for p in path.iterdir() if p.is_dir()}

    def files_containing(needle: bytes) -> list[str]:
        return [str(p) for p in path.rglob("*") if p.is_file() and needle in p.read_bytes()]

    assert files_containing(b"SECRETMARKER")  # the test can see the data when it is there
    assert memory.delete_user("alice") == 3
    assert files_containing(b"SECRETMARKER") == []
    after = {p.name for p in path.iterdir() if p.is_dir()}
    assert len(after) < len(before)  # alice's vector-index directory is gone
    # The store still works for everyone else.
    assert memory.count("bob") == 1
    memory.remember_turn("bob", "s1", "t2", "another day", "ok", SAD)
    assert memory.count("bob") == 2


def test_delete_user_is_seen_by_another_store_on_the_same_data(tmp_path):
    a = MemoryService(MemoryStore.open_embedded(tmp_path / "c"), FakeEmbedder())
    a.remember_turn("alice", "s1", "t1", "hello world", "hi", SAD)
    b = MemoryService(MemoryStore.open_embedded(tmp_path / "c"), FakeEmbedder())
    assert b.count("alice") == 1  # b caches alice's collection handle
    a.delete_user("alice")
    # b's cached handle points at a dropped collection: reads say "nothing", writes recreate.
    assert b.recall("alice", "hello world", SAD).memories == ()
    b.remember_turn("alice", "s1", "t2", "hello again", "hi", SAD)
    assert a.count("alice") == 1


def test_export_is_complete_json(memory):
    ids = seed_alice(memory)
    data = memory.export_user("alice")
    assert json.loads(json.dumps(data)) == data
    assert data["format"] == "empathic-agent/memories" and data["user_id"] == "alice"
    assert data["count"] == len(data["memories"]) == len(ids) == 4
    assert sorted(m["id"] for m in data["memories"]) == sorted(ids)
    assert sorted(m["kind"] for m in data["memories"]) == ["episode", "episode", "episode", "preference"]
    assert "They like hiking." in [m["text"] for m in data["memories"]]
    first = data["memories"][0]
    for key in ("id", "text", "emotion", "salience", "session_id", "turn_id", "created_at", "updated_at"):
        assert key in first
    assert "embedding" not in first
    assert set(first["emotion"]["mean"]) == {"valence", "arousal", "dominance"}
    with_vectors = memory.export_user("alice", include_embeddings=True)
    assert len(with_vectors["memories"][0]["embedding"]) == memory.embedder.dim
    assert memory.export_user("nobody")["count"] == 0


def test_memories_persist_across_store_instances(tmp_path):
    path = tmp_path / "chroma"
    first = MemoryService(MemoryStore.open_embedded(path), FakeEmbedder())
    stored = first.remember_turn("alice", "s1", "t1", "I adopted a cat named Miso", "Lovely!", JOY).stored
    first.close()
    second = MemoryService(MemoryStore.open_embedded(path), FakeEmbedder())
    rec = second.get_memory("alice", stored[0].id)
    assert rec is not None and rec.text == "I adopted a cat named Miso"
    assert rec.emotion.mean == pytest.approx(JOY.mean)
    assert rec.top_category == "joy"


def test_closed_store_refuses_work(memory):
    memory.close()
    with pytest.raises(MemoryStoreError):
        memory.count("alice")


def test_http_backend_fails_fast_and_clearly_when_server_is_down():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MemoryStoreUnavailableError, match="chroma run"):
        MemoryStore.open_http("127.0.0.1", port)
