"""API keys (hashed at rest, one app per key) and the audit log of data access, in SQLite.

A key is ``ea_<app>_<43 random url-safe chars>`` (256 bits): it is shown once when created and
only its salted SHA-256 is stored — a random key of that size cannot be brute-forced, so a slow
password hash would only slow every request.  Each app's users live in their own namespace
(:func:`scoped_user`), so an app can never name another app's user.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empathic_agent.errors import InputError
from empathic_agent.private import private_dir, private_file

__all__ = ["KeyStore", "AppKey", "scoped_user", "unscoped_user", "validate_app_id"]

_APP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
#: External user ids are at most this long (the scoped id "<app>@<user>" must stay <= 128).
MAX_USER_ID = 95


def validate_app_id(app_id: str) -> str:
    if not isinstance(app_id, str) or not _APP_ID.match(app_id):
        raise InputError(f"invalid app id {app_id!r}: 1-32 lower-case letters, digits or '-', starting with a letter or digit")
    return app_id


def scoped_user(app_id: str, user_id: str) -> str:
    """The agent's user id for ``user_id`` of ``app_id``: ``<app>@<user>`` (app ids have no '@',
    so the first '@' always separates them)."""
    from empathic_agent.ids import validate_id

    validate_id(user_id, "user id", max_len=MAX_USER_ID)
    return f"{app_id}@{user_id}"


def unscoped_user(app_id: str, scoped: str) -> str | None:
    prefix = f"{app_id}@"
    return scoped[len(prefix):] if scoped.startswith(prefix) else None


@dataclass(frozen=True)
class AppKey:
    app_id: str
    key_prefix: str
    created_at: float
    revoked_at: float | None = None


class KeyStore:
    """Thread-safe; one SQLite file (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        private_file(self.path)
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS api_keys (
                key_prefix TEXT PRIMARY KEY, app_id TEXT NOT NULL, salt BLOB NOT NULL, key_hash BLOB NOT NULL,
                created_at REAL NOT NULL, revoked_at REAL);
            CREATE INDEX IF NOT EXISTS api_keys_app ON api_keys(app_id);
            CREATE TABLE IF NOT EXISTS audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, app_id TEXT NOT NULL, user_id TEXT NOT NULL,
                action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
            CREATE INDEX IF NOT EXISTS audit_user ON audit(app_id, user_id);
        """)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- keys ------------------------------------------------------------------------------------
    def create_key(self, app_id: str) -> str:
        """A new key for ``app_id`` (returned once; only its hash is kept)."""
        validate_app_id(app_id)
        secret = secrets.token_urlsafe(32)
        key = f"ea_{app_id}_{secret}"
        prefix = key[: len(app_id) + 12]
        salt = secrets.token_bytes(16)
        with self._lock:
            self._db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                             (prefix, app_id, salt, hashlib.sha256(salt + key.encode()).digest(), time.time()))
        return key

    def verify(self, key: str | None) -> str | None:
        """The app of a valid, unrevoked key; None otherwise (constant-time comparison).

        Nothing is cached: ``empathic api-key revoke`` runs in another process, and a revocation
        must hold in every running server at its next request.  One indexed SQLite read and one
        SHA-256 per request cost a few microseconds."""
        if not key or not isinstance(key, str) or not key.startswith("ea_") or len(key) > 200:
            return None
        m = re.match(r"^ea_([a-z0-9][a-z0-9-]{0,31})_", key)
        if not m:
            return None
        prefix = key[: len(m.group(1)) + 12]
        with self._lock:
            row = self._db.execute("SELECT app_id, salt, key_hash, revoked_at FROM api_keys WHERE key_prefix = ?",
                                   (prefix,)).fetchone()
        if row is None or row[3] is not None:
            return None
        app_id, salt, key_hash, _ = row
        if not hmac.compare_digest(hashlib.sha256(salt + key.encode()).digest(), key_hash):
            return None
        return app_id

    def revoke(self, app_id: str) -> int:
        with self._lock:
            n = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE app_id = ? AND revoked_at IS NULL",
                                 (time.time(), app_id)).rowcount
        return n

    def keys(self) -> list[AppKey]:
        with self._lock:
            rows = self._db.execute("SELECT app_id, key_prefix, created_at, revoked_at FROM api_keys ORDER BY created_at").fetchall()
        return [AppKey(*r) for r in rows]

    # -- audit -----------------------------------------------------------------------------------
    def audit(self, app_id: str, user_id: str, action: str, detail: str = "") -> None:
        """Record an access to a person's data (never message contents)."""
        with self._lock:
            self._db.execute("INSERT INTO audit (at, app_id, user_id, action, detail) VALUES (?, ?, ?, ?, ?)",
                             (time.time(), app_id, user_id, action, detail))

    def audit_entries(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT at, action, detail FROM audit WHERE app_id = ? AND user_id = ? ORDER BY id",
                                    (app_id, user_id)).fetchall()
        return [{"at": r[0], "action": r[1], "detail": r[2]} for r in rows]

    def forget_user(self, app_id: str, user_id: str) -> int:
        """Delete the person's audit entries; one pseudonymous entry records that the erasure happened."""
        digest = hashlib.sha256(f"{app_id}@{user_id}".encode()).hexdigest()[:16]
        with self._lock:
            n = self._db.execute("DELETE FROM audit WHERE app_id = ? AND user_id = ?", (app_id, user_id)).rowcount
            self._db.execute("INSERT INTO audit (at, app_id, user_id, action, detail) VALUES (?, ?, ?, ?, ?)",
                             (time.time(), app_id, f"erased:{digest}", "user_erased", f"{n} audit entries removed"))
        return n
