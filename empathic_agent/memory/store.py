"""The memory store: Chroma, with per-user isolation enforced here and nowhere else.

Isolation by construction
-------------------------
Each person's memories live in **their own Chroma collection**, named
``eam-<first 40 hex digits of sha256(user id)>``.  Every public method takes the user id as its
first argument, validates it with the agent's id rule, and can only reach that user's collection:

* no method accepts a caller's filter, ``where`` dict, collection name or metadata dict - the store
  builds every Chroma call itself;
* the collection name is a hash, so no user id (valid or crafted: ``"a' OR 1=1"``, ``"$or"``,
  another user's collection name) can name another user's collection; crafted ids are rejected
  by validation before that anyway;
* memory ids are validated by shape and looked up only inside the caller's collection, so knowing
  another user's memory id gives nothing;
* every row read back is checked once more (its ``user_id`` metadata must equal the caller's) and
  dropped with an error log if not - defence in depth against a corrupted store;
* there are no metadata ``where`` filters in the hot path: a Chroma filter is evaluated over the
  whole database (cost grows with *all* users' memories), a per-user collection is not.

Per-user collections are also what makes erasure complete and cheap (drop the collection, then -
embedded backend - remove its index files and vacuum the database, see :meth:`delete_user`) and
keeps recall latency flat as the number of users grows.

Backends (``Settings.memory_backend``)
--------------------------------------
* ``embedded`` (default): ``chromadb.PersistentClient`` under ``settings.chroma_path`` or
  ``settings.memory_dir / "chroma"``.  One process per store directory (Chroma's rule): the agent and
  the ``empathic memory`` CLI should not write the same directory at the same time.
* ``http``: ``chromadb.HttpClient`` to a Chroma server (``chroma run --path DIR --host H --port P``),
  for deployments that outgrow one process.  The same isolation applies; authentication and TLS
  are the server's deployment concern (``chroma_ssl`` turns on https).

Telemetry is always off (``anonymized_telemetry=False``) and no embedding function is ever attached
to a collection (Chroma's default one downloads a model): embeddings always come from our embedder.

Durability: ``add``/``upsert``/``delete`` return only after Chroma has committed the write to its
SQLite log, so an acknowledged write survives a killed process (tested with SIGKILL).

All methods are blocking (call them with ``asyncio.to_thread`` from async code) and thread-safe.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Iterator, Sequence, TypeVar

import numpy as np

from empathic_agent.errors import ConfigError, EmpathicError, InputError
from empathic_agent.memory.errors import MemoryStoreError, MemoryStoreUnavailableError
from empathic_agent.memory.record import (
    SCHEMA_VERSION,
    MemoryRecord,
    validate_memory_id,
    validate_user_id,
)
from empathic_agent.memory.strategies import Candidates
from empathic_agent.private import private_dir, private_tree

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "MemoryStore",
    "MEMORY_BACKENDS",
    "collection_name_for",
    "default_chroma_path",
]

log = logging.getLogger(__name__)

#: Valid values of ``Settings.memory_backend``.
MEMORY_BACKENDS: Final[tuple[str, ...]] = ("embedded", "http")
#: Prefix of every memory collection (other collections in the same Chroma database are ignored).
COLLECTION_PREFIX: Final[str] = "eam-"
#: Hex digits of the user-id hash in a collection name (160 bits: collisions are not a concern).
_HASH_HEX: Final[int] = 40
#: Collection handles kept open (an LRU): a handle is cheap, but a server may host many users.
_COLLECTION_CACHE_SIZE: Final[int] = 4096
#: Rows per page when reading a whole collection (export, list).
_PAGE: Final[int] = 500
#: Chroma's database file inside an embedded store directory.
_CHROMA_DB: Final[str] = "chroma.sqlite3"
#: Collection written by the health probe of a failed store (outside the ``eam-`` namespace).
_PROBE: Final[str] = "ea-health-probe"
_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: HNSW settings of every memory collection: cosine space (embeddings are L2-normalised), and the
#: index persisted after every write (sync_threshold 1).  Why: Chroma replays a collection's
#: not-yet-persisted log entries when it (re)loads the collection, and that log query slows with the
#: log's size across *all* collections.  With the default threshold (1000) and ~100 memories per
#: person nothing is ever persisted, the log keeps every memory of every user, and recalling for a
#: person whose collection is not in memory cost ~200 ms at 100k memories / 1000 users (~30 ms at
#: 300 users).  Persisting on every write keeps the log empty: ~2-4 ms, at no measurable cost per
#: write (the remember step writes a handful of records per turn).
_HNSW: Final[dict[str, Any]] = {"hnsw": {"space": "cosine", "sync_threshold": 1}}

T = TypeVar("T")


def collection_name_for(user_id: str) -> str:
    """The Chroma collection holding ``user_id``'s memories (validates the id)."""
    uid = validate_user_id(user_id)
    return COLLECTION_PREFIX + hashlib.sha256(uid.encode("utf-8")).hexdigest()[:_HASH_HEX]


def default_chroma_path(settings: "Settings") -> Path:
    """Directory of the embedded store: ``settings.chroma_path`` or ``memory_dir / "chroma"``."""
    custom = getattr(settings, "chroma_path", "")
    return Path(custom).expanduser() if custom else Path(settings.memory_dir) / "chroma"


@dataclass(frozen=True)
class QueryRows:
    """Raw rows of one nearest-neighbour query (best first)."""

    ids: list[str]
    documents: list[str]
    metadatas: list[dict[str, Any]]
    distances: list[float]

    def candidates(self) -> Candidates:
        return Candidates.from_rows(self.ids, self.documents, self.metadatas, self.distances)


class MemoryStore:
    """Per-user memory collections in Chroma (embedded or client/server)."""

    def __init__(self, client: Any, *, backend: str, location: str) -> None:
        self._client = client
        self.backend = backend
        self.location = location
        self._lock = threading.Lock()
        self._collections: OrderedDict[str, Any] = OrderedDict()
        self._closed = False
        self._max_batch: int | None = None
        #: The last failure while it lasts (None when healthy); see :meth:`health`.
        self.failure: str | None = None
        self._failures = 0  # failed calls so far; the client is reopened once after each
        self._reopened_after = 0

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: "Settings") -> "MemoryStore":
        backend = getattr(settings, "memory_backend", "embedded")
        if backend == "embedded":
            return cls.open_embedded(default_chroma_path(settings))
        if backend == "http":
            return cls.open_http(getattr(settings, "chroma_host", "127.0.0.1"),
                                 int(getattr(settings, "chroma_port", 8000)),
                                 ssl=bool(getattr(settings, "chroma_ssl", False)))
        raise ConfigError(f"memory_backend={backend!r} is not valid; choose one of {', '.join(MEMORY_BACKENDS)}")

    @classmethod
    def open_embedded(cls, path: str | Path) -> "MemoryStore":
        """A store in a local directory (created if missing)."""
        chromadb, chroma_settings = _import_chroma()
        path = Path(path).expanduser()
        try:
            private_dir(path)
            private_tree(path)  # a store made before files were private
            client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        except EmpathicError:
            raise
        except Exception as exc:
            raise MemoryStoreUnavailableError(
                f"cannot open the memory store at {path}: {type(exc).__name__}: {exc}") from exc
        return cls(client, backend="embedded", location=str(path))

    @classmethod
    def open_http(cls, host: str, port: int, *, ssl: bool = False,
                  headers: dict[str, str] | None = None) -> "MemoryStore":
        """A store on a Chroma server (``chroma run``); fails fast if the server is not reachable."""
        chromadb, chroma_settings = _import_chroma()
        url = f"{'https' if ssl else 'http'}://{host}:{port}"
        try:
            client = chromadb.HttpClient(host=host, port=int(port), ssl=ssl, headers=headers,
                                         settings=chroma_settings)
            client.heartbeat()
        except Exception as exc:
            raise MemoryStoreUnavailableError(
                f"cannot reach the Chroma server at {url} (memory_backend=http): {type(exc).__name__}: {exc}. "
                f"Start one with: chroma run --path DIR --host {host} --port {port}") from exc
        return cls(client, backend="http", location=url)

    # -- collections -------------------------------------------------------------------------------
    def _collection(self, user_id: str, *, create: bool) -> Any | None:
        """The user's collection (created when ``create``), or None if it does not exist."""
        name = collection_name_for(user_id)
        self._recover()  # before the cache: a cached handle of a failed client is no use
        with self._lock:
            if self._closed:
                raise MemoryStoreError("the memory store is closed")
            col = self._collections.get(name)
            if col is not None:
                self._collections.move_to_end(name)
                return col
        if create:
            col = self._call("open collection", lambda: self._client.get_or_create_collection(
                name, embedding_function=None, configuration=_HNSW,
                metadata={"user_id": user_id, "schema": SCHEMA_VERSION}))
        else:
            col = self._call("open collection", lambda: _get_or_none(self._client, name))
            if col is None:
                return None
        owner = (col.metadata or {}).get("user_id")
        if owner != user_id:
            raise MemoryStoreError(f"collection {name} belongs to another user id; refusing to use it")
        with self._lock:
            self._collections[name] = col
            self._collections.move_to_end(name)
            while len(self._collections) > _COLLECTION_CACHE_SIZE:
                self._collections.popitem(last=False)
        return col

    def _forget(self, user_id: str) -> None:
        with self._lock:
            self._collections.pop(collection_name_for(user_id), None)

    def _with_collection(self, user_id: str, op: str, fn: Callable[[Any], T], *, create: bool,
                         missing: T) -> T:
        """Run ``fn(collection)``; if the collection was deleted meanwhile (another process), reopen
        it once (writes) or return ``missing`` (reads)."""
        col = self._collection(user_id, create=create)
        if col is None:
            return missing
        try:
            return self._call(op, lambda: fn(col), reraise_not_found=True)
        except _CollectionGone:
            self._forget(user_id)
            if not create:
                return missing
            col = self._collection(user_id, create=True)
            return self._call(op, lambda: fn(col))

    # -- writes ------------------------------------------------------------------------------------
    def upsert(self, records: Sequence[MemoryRecord]) -> None:
        """Insert or replace records (each must carry its embedding).  All must share one user."""
        if not records:
            return
        user_id = _single_user(records)
        for r in records:
            validate_memory_id(r.id)
            if r.embedding is None:
                raise InputError(f"memory {r.id} has no embedding")
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise InputError("duplicate memory ids in one write")
        embeddings = np.asarray([r.embedding for r in records], dtype=np.float32)
        docs = [r.text for r in records]
        metas = [r.to_metadata() for r in records]

        if self._max_batch is None:
            self._max_batch = max(1, _max_batch(self._client))
        step = self._max_batch

        def write(col: Any) -> None:
            for s in range(0, len(ids), step):
                col.upsert(ids=ids[s:s + step], embeddings=embeddings[s:s + step],
                           documents=docs[s:s + step], metadatas=metas[s:s + step])

        self._with_collection(user_id, "write memories", write, create=True, missing=None)

    # -- reads -------------------------------------------------------------------------------------
    def query(self, user_id: str, embedding: np.ndarray, n: int) -> QueryRows:
        """The ``n`` memories of ``user_id`` nearest to ``embedding`` (cosine), best first."""
        vec = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        if not np.all(np.isfinite(vec)):
            raise InputError("query embedding must be finite")
        empty = QueryRows([], [], [], [])

        def run(col: Any) -> QueryRows:
            res = col.query(query_embeddings=vec, n_results=int(n),
                            include=["documents", "metadatas", "distances"])
            return QueryRows(list(res["ids"][0]), list(res["documents"][0] or []),
                             [dict(m or {}) for m in (res["metadatas"][0] or [])],
                             [float(d) for d in (res["distances"][0] or [])])

        rows = self._with_collection(user_id, "query memories", run, create=False, missing=empty)
        return self._own_rows(user_id, rows)

    def get(self, user_id: str, memory_ids: Sequence[str], *, include_embeddings: bool = False) -> list[MemoryRecord]:
        """The user's memories with these ids (missing ids are skipped; order as stored)."""
        ids = [validate_memory_id(i) for i in memory_ids]
        if not ids:
            return []
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        res = self._with_collection(user_id, "read memories", lambda col: col.get(ids=ids, include=include),
                                    create=False, missing=None)
        return self._records(user_id, res, include_embeddings)

    def iter_all(self, user_id: str, *, include_embeddings: bool = False,
                 page: int = _PAGE) -> Iterator[MemoryRecord]:
        """Every memory of the user, page by page (for export and listing)."""
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        offset = 0
        while True:
            res = self._with_collection(
                user_id, "list memories",
                lambda col, o=offset: col.get(include=include, limit=page, offset=o),
                create=False, missing=None)
            recs = self._records(user_id, res, include_embeddings)
            n_rows = 0 if res is None else len(res["ids"])
            yield from recs
            if n_rows < page:
                return
            offset += n_rows

    def count(self, user_id: str) -> int:
        return int(self._with_collection(user_id, "count memories", lambda col: col.count(),
                                         create=False, missing=0))

    # -- deletion ----------------------------------------------------------------------------------
    def delete(self, user_id: str, memory_ids: Sequence[str]) -> int:
        """Delete these memories of the user; returns how many existed.  Others' ids do nothing."""
        ids = [validate_memory_id(i) for i in memory_ids]
        if not ids:
            return 0

        def run(col: Any) -> int:
            found = col.get(ids=ids, include=[])["ids"]
            if found:
                col.delete(ids=list(found))
            return len(found)

        return self._with_collection(user_id, "delete memories", run, create=False, missing=0)

    def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user (drops their collection); returns how many there were.

        Embedded backend: Chroma leaves a dropped collection's vector-index directory on disk and the
        deleted rows in free SQLite pages, so the store also removes that directory and vacuums the
        database - after this returns, the person's text and embeddings are gone from the store's
        files.  Http backend: erasure on the server's disk is the server's job (``chroma vacuum``).
        """
        name = collection_name_for(user_id)
        col = self._collection(user_id, create=False)
        if col is None:
            return 0
        n = self.count(user_id)
        segment_dirs = self._segment_dirs(col) if self.backend == "embedded" else []
        self._forget(user_id)
        try:
            self._call("delete user", lambda: self._client.delete_collection(name), reraise_not_found=True)
        except _CollectionGone:
            pass
        if self.backend == "embedded":
            for d in segment_dirs:
                shutil.rmtree(d, ignore_errors=True)
            self.vacuum()
        return n

    def vacuum(self) -> bool:
        """Embedded backend: rewrite the database so deleted rows leave no trace in free pages.

        Cost grows with the store (a full rewrite); done automatically after :meth:`delete_user`.
        Deleting single memories does not vacuum.  Returns False if it could not run (logged).
        """
        if self.backend != "embedded":
            return False
        db = Path(self.location) / _CHROMA_DB
        try:
            conn = sqlite3.connect(str(db), timeout=30)
            try:
                conn.execute("VACUUM")
            finally:
                conn.close()
            return True
        except sqlite3.Error as exc:
            log.warning("memory store: vacuum of %s failed (deleted rows may linger in free pages): %s", db, exc)
            return False

    def _segment_dirs(self, col: Any) -> list[Path]:
        """Directories of the collection's on-disk segments (embedded backend; read-only lookup)."""
        root = Path(self.location)
        try:
            conn = sqlite3.connect(f"file:{root / _CHROMA_DB}?mode=ro", uri=True, timeout=30)
            try:
                rows = conn.execute("SELECT id FROM segments WHERE collection = ?", (str(col.id),)).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:  # schema changed in a future Chroma: erasure still drops the rows
            log.warning("memory store: cannot list segments of %s: %s", col.name, exc)
            return []
        out = []
        for (seg_id,) in rows:
            seg = str(seg_id)
            if _UUID.match(seg) and (root / seg).is_dir():
                out.append(root / seg)
        return out

    def close(self) -> None:
        """Drop cached handles; the embedded client's files stay consistent without an explicit close."""
        with self._lock:
            self._collections.clear()
            self._closed = True

    def heartbeat(self) -> float:
        """Round-trip check (seconds)."""
        t0 = time.perf_counter()
        self._call("heartbeat", self._client.heartbeat)
        return time.perf_counter() - t0

    def health(self) -> str | None:
        """None if the store works, else why not.  A store that failed is probed with a real write
        (to a collection outside the memory namespace), so readiness says "broken" exactly while
        writes fail and "healthy" again as soon as they work; a healthy store is only heartbeaten."""
        try:
            if self.failure is None:
                self._call("heartbeat", self._client.heartbeat)
            else:
                def probe() -> None:
                    col = self._client.get_or_create_collection(_PROBE, embedding_function=None)
                    col.upsert(ids=["probe"], embeddings=[[1.0, 0.0]], documents=["probe"])
                    col.delete(ids=["probe"])
                self._call("health probe", probe)
        except EmpathicError as exc:
            return str(exc)
        return None

    # -- recovery ----------------------------------------------------------------------------------
    def _failed(self, op: str, exc: Exception) -> None:
        if self.failure is None:  # log the transition, not every failed turn
            log.error("memory store (%s at %s) failed to %s: %s: %s; recovering on the next call",
                      self.backend, self.location, op, type(exc).__name__, exc)
        self.failure = f"{op}: {type(exc).__name__}"
        self._failures += 1

    def _recover(self) -> None:
        """After a failure, start the next call on a fresh embedded Chroma client.  Why: a write
        that failed while the directory was not writable leaves Chroma's connections read-only
        and its compaction stuck ("Error in compaction: Failed to apply logs…") until the process
        restarts, although the files are writable again.  An HTTP client reconnects by itself."""
        if self.failure is None or self.backend != "embedded" or self._reopened_after == self._failures:
            return
        chromadb, chroma_settings = _import_chroma()
        with self._lock:
            if self._reopened_after == self._failures:
                return
            self._reopened_after = self._failures
            _drop_shared_system(self._client)
            self._collections.clear()
            try:
                self._client = chromadb.PersistentClient(path=self.location, settings=chroma_settings)
                return
            except Exception as exc:  # noqa: BLE001 — still broken: this call fails, the next one retries
                error = exc
        self._failed("reopen", error)
        raise MemoryStoreError(f"memory store failed to reopen: {type(error).__name__}: {error}") from error

    # -- helpers -----------------------------------------------------------------------------------
    def _own_rows(self, user_id: str, rows: QueryRows) -> QueryRows:
        keep = [i for i, m in enumerate(rows.metadatas) if m.get("user_id") == user_id]
        if len(keep) == len(rows.ids):
            return rows
        log.error("memory store: %d row(s) in %s's collection carry another user id; dropped",
                  len(rows.ids) - len(keep), user_id)
        return QueryRows([rows.ids[i] for i in keep], [rows.documents[i] for i in keep],
                         [rows.metadatas[i] for i in keep], [rows.distances[i] for i in keep])

    def _records(self, user_id: str, res: Any, include_embeddings: bool) -> list[MemoryRecord]:
        if res is None:
            return []
        out = []
        embs = res.get("embeddings") if include_embeddings else None
        for i, mid in enumerate(res["ids"]):
            meta = (res["metadatas"] or [None] * len(res["ids"]))[i] or {}
            if meta.get("user_id") != user_id:
                log.error("memory store: row %s in %s's collection carries another user id; dropped", mid, user_id)
                continue
            doc = (res["documents"] or [None] * len(res["ids"]))[i]
            emb = None if embs is None else embs[i]
            try:
                out.append(MemoryRecord.from_chroma(mid, doc, meta, emb))
            except (ValueError, TypeError) as exc:
                log.error("memory store: skipping malformed row %s: %s", mid, exc)
        return out

    def _call(self, op: str, fn: Callable[[], T], *, reraise_not_found: bool = False) -> T:
        """Run a Chroma call, translating its exceptions into the project's errors; a failure is
        logged once and the next call starts on a fresh client (:meth:`_recover`)."""
        self._recover()
        try:
            out = fn()
        except EmpathicError:
            raise
        except Exception as exc:
            if reraise_not_found and _is_not_found(exc):
                raise _CollectionGone() from exc
            self._failed(op, exc)
            if _is_connection_error(exc):
                raise MemoryStoreUnavailableError(
                    f"memory store ({self.backend} at {self.location}) unreachable during {op}: {exc}") from exc
            raise MemoryStoreError(f"memory store failed to {op}: {type(exc).__name__}: {exc}") from exc
        if self.failure is not None and op != "heartbeat":
            log.warning("memory store (%s at %s) works again after: %s", self.backend, self.location, self.failure)
            self.failure = None
        return out


class _CollectionGone(Exception):
    """Internal: the collection was deleted underneath a cached handle."""


def _single_user(records: Sequence[MemoryRecord]) -> str:
    users = {r.user_id for r in records}
    if len(users) != 1:
        raise InputError("one write may hold the memories of exactly one user")
    return validate_user_id(next(iter(users)))


def _get_or_none(client: Any, name: str) -> Any | None:
    try:
        return client.get_collection(name, embedding_function=None)
    except Exception as exc:
        if _is_not_found(exc):
            return None
        raise


def _is_not_found(exc: Exception) -> bool:
    try:
        from chromadb.errors import NotFoundError
    except ImportError:  # pragma: no cover
        NotFoundError = ()  # type: ignore[assignment]
    if isinstance(exc, NotFoundError):
        return True
    text = str(exc).lower()
    return "does not exist" in text or "not found" in text


def _is_connection_error(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("connect", "connection", "timeout", "timed out", "unreachable"))


def _drop_shared_system(client: Any) -> None:
    """Stop the Chroma system behind ``client`` and forget it, so that a new client on the same
    directory builds fresh connections (Chroma shares one system per directory per process)."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        ident = getattr(client, "_identifier", None)
        with SharedSystemClient._refcount_lock:
            system = SharedSystemClient._identifier_to_system.pop(ident, None)
            SharedSystemClient._identifier_to_refcount.pop(ident, None)
        if system is not None:
            system.stop()
    except Exception as exc:  # noqa: BLE001 — a Chroma without these internals: a new client still helps
        log.debug("memory store: could not stop the old Chroma system: %s", exc)


def _max_batch(client: Any) -> int:
    try:
        return int(client.get_max_batch_size())
    except Exception:
        return 1000


def _import_chroma() -> tuple[Any, Any]:
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
    except ImportError as exc:  # pragma: no cover - depends on the install
        from empathic_agent.errors import BackendUnavailableError

        raise BackendUnavailableError("the memory store needs chromadb: pip install 'empathic-agent[memory]'") from exc
    return chromadb, ChromaSettings(anonymized_telemetry=False, allow_reset=False)
