"""Per-user voice baselines, persisted in SQLite beside the other per-user stores (memories,
conversations): what the speech encoder learned about how each person usually sounds, with export
and deletion for users' data rights.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.speech.baseline import VoiceBaseline
from empathic_agent.errors import InputError

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

log = logging.getLogger(__name__)

class VoiceBaselineStore:
    """Per-user voice baselines, persisted in SQLite (or kept in memory with ``path=None``).

    One row per user: feature version, clip count, effective weight, mean and variance vectors
    (float64 blobs).  Rows of another feature version are ignored (and replaced on the next
    update).  Thread-safe; each write is its own committed transaction, so an acknowledged
    update survives a killed process.  Users' data rights: :meth:`export` and :meth:`delete`.

    What is stored is a statistical summary of how a person's voice sounds (not audio, not
    words) — still personal data, so it lives with the user's other data under ``memory_dir``.
    """

    FILE_NAME: Final[str] = "baselines.sqlite"

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}
        self._memory: dict[str, VoiceBaseline] = {}
        self._ready = False  # the file is created on first use, not by merely building a store

    def _ensure(self, db: sqlite3.Connection) -> None:
        if not self._ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS voice_baselines (user_id TEXT PRIMARY KEY, "
                "feature_version TEXT NOT NULL, clips INTEGER NOT NULL, weight REAL NOT NULL, "
                "mean BLOB NOT NULL, variance BLOB NOT NULL, updated_at REAL NOT NULL)")
            self._ready = True

    @classmethod
    def from_settings(cls, settings: "Settings") -> "VoiceBaselineStore":
        """The store at ``settings.memory_dir / "voice_baselines" / "baselines.sqlite"``."""
        return cls(Path(settings.memory_dir) / "voice_baselines" / cls.FILE_NAME)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived autocommit connection (closed afterwards; safe across threads)."""
        from empathic_agent.private import private_dir, private_file

        assert self.path is not None
        private_dir(self.path.parent)
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            self._ensure(db)
            private_file(self.path)
            yield db
        finally:
            db.close()

    @staticmethod
    def _check_user(user_id: str) -> str:
        if not isinstance(user_id, str) or not user_id:
            raise InputError(f"user_id must be a non-empty string, got {user_id!r}")
        return user_id

    def get(self, user_id: str, version: str | None = None) -> VoiceBaseline | None:
        """The user's baseline (None when there is none, or it is of another ``version``)."""
        self._check_user(user_id)
        with self._lock:
            if self.path is None:
                base = self._memory.get(user_id)
            elif not self.path.exists():
                base = None
            else:
                with self._connect() as db:
                    row = db.execute("SELECT feature_version, clips, weight, mean, variance, updated_at "
                                     "FROM voice_baselines WHERE user_id = ?", (user_id,)).fetchone()
                base = None if row is None else VoiceBaseline(
                    int(row[1]), float(row[2]), np.frombuffer(row[3], dtype=np.float64).copy(),
                    np.frombuffer(row[4], dtype=np.float64).copy(), row[0], float(row[5]))
        if base is None or (version is not None and base.feature_version != version):
            return None
        return base

    def put(self, user_id: str, baseline: VoiceBaseline) -> None:
        """Store (replace) the user's baseline."""
        self._check_user(user_id)
        with self._lock:
            if self.path is None:
                self._memory[user_id] = baseline
                return
            with self._connect() as db:
                db.execute(
                    "INSERT OR REPLACE INTO voice_baselines VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (user_id, baseline.feature_version, baseline.clips, baseline.weight,
                     np.ascontiguousarray(baseline.mean, dtype=np.float64).tobytes(),
                     np.ascontiguousarray(baseline.variance, dtype=np.float64).tobytes(),
                     baseline.updated_at or time.time()))

    def update(self, user_id: str, vector: NDArray[np.float64], version: str) -> VoiceBaseline:
        """Add one utterance's (imputed) features to the user's baseline; returns the new one."""
        with self._user_lock(user_id):
            base = self.get(user_id, version) or VoiceBaseline.empty(len(vector), version)
            new = base.updated(vector)
            self.put(user_id, new)
            return new

    def _user_lock(self, user_id: str) -> threading.Lock:
        # One lock per user, so concurrent turns of one user never lose an update.
        with self._lock:
            return self._user_locks.setdefault(self._check_user(user_id), threading.Lock())

    def export(self, user_id: str, names: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The user's stored baseline as plain JSON (None when there is none)."""
        base = self.get(user_id)
        return None if base is None else {"user_id": user_id, **base.to_dict(names)}

    def delete(self, user_id: str) -> bool:
        """Erase the user's baseline; True when there was one."""
        self._check_user(user_id)
        with self._lock:
            if self.path is None:
                return self._memory.pop(user_id, None) is not None
            if not self.path.exists():
                return False
            with self._connect() as db:
                cur = db.execute("DELETE FROM voice_baselines WHERE user_id = ?", (user_id,))
                return cur.rowcount > 0

    def users(self) -> list[str]:
        """Users with a stored baseline."""
        with self._lock:
            if self.path is None:
                return sorted(self._memory)
            if not self.path.exists():
                return []
            with self._connect() as db:
                return [r[0] for r in db.execute("SELECT user_id FROM voice_baselines ORDER BY user_id")]
