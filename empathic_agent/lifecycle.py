"""One loading lifecycle for every model-backed backend: lazy, once, timed, thread-safe, and one
place where vendor exceptions become ours.

A backend base class (``Encoder``, ``STT``, ``TTS``, ``Embedder``, the EPITOME/strategy pair
readers) subclasses :class:`Loadable` and names its error class — or, for the asynchronous LLM
backends (a server's connection check is a coroutine), :class:`AsyncLoadable`, the same lifecycle
with an ``async def load()`` and single-flight under an asyncio lock; an implementation overrides :meth:`Loadable._load_impl` (weights in)
and calls :meth:`Loadable._translate` around every vendor call.  ``load()`` runs ``_load_impl``
once, on first use or ahead of it (warm-up), under the backend's own lock *and* the process-wide
:data:`~empathic_agent.models.base.LOAD_LOCK` — concurrent transformers loads broke once, and
loads are rare and slow anyway, so they run one at a time.  Lock order is always the backend's
lock, then ``LOAD_LOCK`` (a re-entrant lock: a load may resolve a model, which takes it again).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, ClassVar

from empathic_agent.errors import EmpathicError

__all__ = ["Loadable", "AsyncLoadable"]

log = logging.getLogger(__name__)


class _Lifecycle:
    """What both flavours share: names, the loaded flag, the load time, error translation."""

    #: What the backend is, in logs and error messages ("encoder", "speech-to-text", ...).
    kind: ClassVar[str] = "backend"
    #: Registry/display name of the implementation.
    name: str = "base"
    #: The error class vendor exceptions are translated into.
    error_class: ClassVar[type[EmpathicError]] = EmpathicError

    def __init__(self) -> None:
        self.load_s: float | None = None
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _loaded_what(self) -> str:
        """Extra words for the load log line (e.g. " model whisper-base")."""
        return ""

    def _done_loading(self, t0: float) -> None:
        self.load_s = time.perf_counter() - t0
        self._loaded = True
        log.info("%s %s loaded%s in %.2fs", self.kind, self.name, self._loaded_what(), self.load_s)

    def _translate_error(self, exc: Exception, stage: str) -> EmpathicError:
        """Map a vendor exception to :attr:`error_class` (implementations may refine this)."""
        return self.error_class(f"{self.name} {self.kind} failed while {stage}: {type(exc).__name__}: {exc}")


class Loadable(_Lifecycle):
    """Lazy, once-only, timed loading and error translation (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Load once (called automatically by the first use). Thread-safe."""
        if self._loaded:
            return
        from empathic_agent.models.base import LOAD_LOCK

        with self._load_lock, LOAD_LOCK:
            if self._loaded:
                return
            t0 = time.perf_counter()
            self._translate(self._load_impl, "loading")
            self._done_loading(t0)

    def _load_impl(self) -> None:
        """Load weights / open the vendor runtime (default: nothing to load)."""

    def _translate(self, fn: Callable[[], Any], stage: str) -> Any:
        """Run ``fn``; our own errors pass through, vendor errors become :attr:`error_class`."""
        try:
            return fn()
        except EmpathicError:
            raise
        except Exception as exc:  # vendor errors become ours at this boundary
            raise self._translate_error(exc, stage) from exc


class AsyncLoadable(_Lifecycle):
    """The same lifecycle for asynchronous backends: ``await load()`` runs ``_load_impl`` once;
    concurrent first requests wait for that one load (single flight).  A backend whose load
    blocks on weights runs it in a worker thread under ``LOAD_LOCK`` itself (a threading lock
    cannot be held across ``await``)."""

    def __init__(self) -> None:
        super().__init__()
        self._load_gate: asyncio.Lock | None = None

    async def load(self) -> None:
        """Load once (called automatically by the first request)."""
        if self._loaded:
            return
        if self._load_gate is None:
            self._load_gate = asyncio.Lock()
        async with self._load_gate:
            if self._loaded:
                return
            t0 = time.perf_counter()
            await self._atranslate(self._load_impl, "loading")
            self._done_loading(t0)

    async def _load_impl(self) -> None:
        """Load weights / check the connection (default: nothing to load)."""

    async def _atranslate(self, fn: Callable[[], Any], stage: str) -> Any:
        """Await ``fn()``; our own errors pass through, vendor errors become :attr:`error_class`."""
        try:
            return await fn()
        except EmpathicError:
            raise
        except Exception as exc:  # vendor errors become ours at this boundary
            raise self._translate_error(exc, stage) from exc
