"""Conversation checkpoints as a person's data: list, export and erase them (synchronous).

The agent's own methods (:meth:`Agent.export_user`, :meth:`Agent.delete_user`) work on its open
checkpointer; these functions serve the command line, which must not load any model to honour a
data request.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from empathic_agent.ids import split_thread_id, thread_id, validate_id

__all__ = ["user_sessions", "export_conversations", "delete_conversations"]


def _saver(conn: sqlite3.Connection) -> Any:
    from langgraph.checkpoint.sqlite import SqliteSaver

    return SqliteSaver(conn)


def user_sessions(path: Path, user_id: str) -> list[str]:
    validate_id(user_id, "user id")
    if not Path(path).exists():
        return []
    with closing(sqlite3.connect(str(path))) as conn:
        threads = {c.config["configurable"]["thread_id"] for c in _saver(conn).list(None)}
    return sorted(s for u, s in map(split_thread_id, threads) if u == user_id)


def export_conversations(path: Path, user_id: str) -> dict[str, list[dict[str, str]]]:
    """``{session_id: [{"role": ..., "content": ...}, ...]}`` for every session of the user."""
    out: dict[str, list[dict[str, str]]] = {}
    sessions = user_sessions(path, user_id)
    if not sessions:
        return out
    with closing(sqlite3.connect(str(path))) as conn:
        saver = _saver(conn)
        for session in sessions:
            tup = saver.get_tuple({"configurable": {"thread_id": thread_id(user_id, session)}})
            messages = (tup.checkpoint.get("channel_values", {}).get("messages", []) if tup else [])
            out[session] = [{"role": "user" if m.type == "human" else "assistant",
                             "content": m.content if isinstance(m.content, str) else str(m.content)}
                            for m in messages]
    return out


def delete_conversations(path: Path, user_id: str) -> int:
    """Erase every conversation checkpoint of the user; returns the number of sessions erased."""
    sessions = user_sessions(path, user_id)
    if not sessions:
        return 0
    with closing(sqlite3.connect(str(path))) as conn:
        saver = _saver(conn)
        for session in sessions:
            saver.delete_thread(thread_id(user_id, session))
        # Deleted rows linger in free pages until a vacuum: erasure means gone from disk.
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and out of the write-ahead log
    return len(sessions)
