"""One turn at a time per conversation.

A turn reads the conversation's checkpoint when it starts and writes a new one when it ends, so two
concurrent turns of one conversation would each write "history + my exchange" and the last writer
would erase the other's exchange (a probe lost 2 of 3 concurrent turns this way).  Turns of one
conversation therefore queue: in one process on an :class:`asyncio.Lock` per conversation (first
come, first served), and across server processes that share a PostgreSQL checkpointer also on a
PostgreSQL advisory lock.  Turns of different conversations never wait for each other.

The locks belong to the checkpointer (:func:`locks_for`), so every :class:`~empathic_agent.agent.Agent`
built on the same store shares them, as the web UI's per-option agents do.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

__all__ = ["TurnLocks", "PostgresTurnLocks", "locks_for", "register_locks"]


class TurnLocks:
    """Serialises the turns of each conversation within this process."""

    def __init__(self) -> None:
        # conversation -> (lock, holders+waiters); entries go when nobody holds or waits.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, conversation: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(conversation, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[conversation] = (lock, users + 1)
        try:
            async with lock, self._hold_shared(conversation):
                yield
        finally:
            lock, users = self._locks[conversation]
            if users <= 1:
                del self._locks[conversation]
            else:
                self._locks[conversation] = (lock, users - 1)

    def waiting(self, conversation: str) -> int:
        """Turns of ``conversation`` running or queued in this process."""
        return self._locks.get(conversation, (None, 0))[1]

    @asynccontextmanager
    async def _hold_shared(self, conversation: str) -> AsyncIterator[None]:
        """Hook: the lock shared with other processes (none for a store only this process uses)."""
        yield

    async def aclose(self) -> None:
        """Release connections (nothing here)."""


def advisory_key(conversation: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` (a hash collision only makes two
    conversations queue behind each other, never lose anything)."""
    return int.from_bytes(hashlib.sha256(conversation.encode()).digest()[:8], "big", signed=True)


class PostgresTurnLocks(TurnLocks):
    """Also takes a PostgreSQL advisory lock, so that server processes sharing the checkpointer
    serialise their turns of one conversation too.

    Advisory locks belong to a database session, so each held lock keeps one connection of its own
    pool (not the checkpointer's: a turn waiting for a lock must never hold a connection that the
    running turn needs).  The in-process lock is taken first, so a process waits on at most one
    connection per conversation.  If a process dies, PostgreSQL drops its session and its locks."""

    def __init__(self, url: str, *, max_size: int = 16) -> None:
        super().__init__()
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(conninfo=url, min_size=1, max_size=max_size, open=False,
                                         check=AsyncConnectionPool.check_connection,
                                         kwargs={"autocommit": True, "prepare_threshold": 0})

    async def open(self) -> "PostgresTurnLocks":
        await self._pool.open(wait=True, timeout=15)
        return self

    @asynccontextmanager
    async def _hold_shared(self, conversation: str) -> AsyncIterator[None]:
        key = advisory_key(conversation)
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    async def aclose(self) -> None:
        await self._pool.close()


_BY_STORE: "weakref.WeakKeyDictionary[Any, TurnLocks]" = weakref.WeakKeyDictionary()


def register_locks(checkpointer: Any, locks: TurnLocks) -> None:
    """Use ``locks`` for every agent on ``checkpointer``."""
    _BY_STORE[checkpointer] = locks


def locks_for(checkpointer: Any) -> TurnLocks:
    """The turn locks of ``checkpointer`` (created on first use)."""
    try:
        locks = _BY_STORE.get(checkpointer)
    except TypeError:  # not weak-referenceable: this agent's own locks
        return TurnLocks()
    if locks is None:
        locks = _BY_STORE[checkpointer] = TurnLocks()
    return locks
