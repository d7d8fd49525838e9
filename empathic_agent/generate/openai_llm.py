"""OpenAI-compatible HTTP backend — the production path with ``vllm serve``.

Speaks ``/v1/chat/completions`` with streaming to any OpenAI-compatible server (vLLM, llama.cpp's
server, ``transformers serve``). vLLM-specific request fields (guided decoding, repetition penalty,
...) are passed through unchanged in ``extra_body``. The official ``openai`` client retries
connection errors, 408/409/429 and 5xx with exponential backoff (``max_retries``); everything it
raises is translated into the project's :mod:`empathic_agent.errors` at this boundary.

A down server must fail *fast*: the connect timeout is separate from (and much shorter than) the
read timeout, so a refused or unreachable server is reported in seconds, not after the full
request timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

from empathic_agent.errors import (
    BackendUnavailableError,
    LLMConnectionError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
)
from empathic_agent.generate.llm import LLM, ChatMessage, Choice, GenerationOptions, parse_choice

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["OpenAICompatibleLLM"]


class OpenAICompatibleLLM(LLM):
    """Chat completions over HTTP against an OpenAI-compatible server such as vLLM."""

    name = "openai"

    def __init__(self, base_url: str, *, model: str = "", api_key: str = "EMPTY",
                 timeout_s: float = 60.0, connect_timeout_s: float = 3.0, max_retries: int = 2,
                 extra_body: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or "EMPTY"
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.extra_body = dict(extra_body or {})
        self._client: Any = None
        #: Whether the server returns logprobs (None: not asked yet).
        self._logprobs: bool | None = None

    @classmethod
    def from_settings(cls, settings: "Settings") -> "OpenAICompatibleLLM":
        return cls(settings.openai_base_url, model=settings.openai_model,
                   api_key=settings.openai_api_key, timeout_s=settings.llm_timeout_s,
                   connect_timeout_s=settings.llm_connect_timeout_s,
                   max_retries=settings.llm_max_retries, extra_body=settings.openai_extra_body)

    @property
    def model_name(self) -> str:
        return self.model or "(server default)"

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"the OpenAI-compatible backend needs the openai package ({exc}); "
                    "install with: pip install 'empathic-agent[vllm]'") from exc
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, max_retries=self.max_retries,
                # openai's own Timeout: openai >= 3.63 is built on httpx2 and rejects httpx's.
                timeout=openai.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            )
        return self._client

    async def _load_impl(self) -> None:
        # Pick the served model when none is configured (vLLM serves exactly one by default).
        if not self.model:
            import openai

            try:
                models = await self._get_client().models.list()
            except openai.APIStatusError as exc:
                raise LLMRequestError(
                    f"the server at {self.base_url} could not list its models ({exc.status_code}); "
                    "name the model explicitly (setting openai_model / --server-model)") from exc
            ids = [m.id for m in models.data]
            if not ids:
                raise LLMRequestError(f"the server at {self.base_url} lists no models")
            self.model = ids[0]

    async def _health_impl(self) -> None:
        # Listing models is the cheapest request every OpenAI-compatible server answers; no
        # retries and a short timeout, so a probe never hangs on a dead server.
        await self._get_client().with_options(timeout=min(5.0, self.timeout_s), max_retries=0).models.list()

    async def _stream_impl(self, messages: list[ChatMessage],
                           options: GenerationOptions) -> AsyncIterator[str]:
        client = self._get_client()
        # options.repetition_penalty is not sent: it is not an OpenAI field and strict servers
        # reject unknown ones; vLLM users set it in EMPATHIC_OPENAI_EXTRA_BODY.
        extra = {**self.extra_body, **options.extra}
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=[m.to_dict() for m in messages], stream=True,
            max_tokens=options.max_new_tokens, temperature=options.temperature, top_p=options.top_p,
            stream_options={"include_usage": True},
        )
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if options.stop:
            kwargs["stop"] = list(options.stop)
        if extra:
            kwargs["extra_body"] = extra
        stream = await client.chat.completions.create(**kwargs)
        try:
            async for event in stream:
                if getattr(event, "usage", None) is not None and event.usage.completion_tokens:
                    self._completion_tokens = event.usage.completion_tokens
                if not event.choices:
                    continue
                delta = event.choices[0].delta
                if delta is not None and delta.content:
                    yield delta.content
        finally:
            await stream.close()

    async def _choose_impl(self, messages: list[ChatMessage], choices: list[str],
                           options: GenerationOptions) -> Choice:
        """One token with its top log-probabilities: the distribution over ``choices`` is the
        model's own (vLLM and OpenAI return ``top_logprobs``); servers that refuse logprobs get
        the parsed answer instead (remembered, so they are asked once)."""
        import math

        import openai

        client = self._get_client()
        kwargs: dict[str, Any] = dict(model=self.model, messages=[m.to_dict() for m in messages],
                                      max_tokens=max(1, options.max_new_tokens), temperature=0.0)
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if self._logprobs is not False:
            try:
                r = await client.chat.completions.create(**kwargs, logprobs=True, top_logprobs=10)
            except openai.BadRequestError:
                self._logprobs = False
            else:
                text = (r.choices[0].message.content or "") if r.choices else ""
                lp = r.choices[0].logprobs if r.choices else None
                tokens = (lp.content or []) if lp is not None else []
                # The first token that is not whitespace/punctuation carries the answer.
                first = next((t for t in tokens if t.token.strip(" *\"'`([\n")), None)
                if first is not None and first.top_logprobs:
                    mass = {c: 0.0 for c in choices}
                    for alt in first.top_logprobs:
                        tok = alt.token.strip(" *\"'`([\n").lower()
                        for c in choices:
                            if tok and tok == c.lower():
                                mass[c] += math.exp(alt.logprob)
                    total = sum(mass.values())
                    if total > 0:
                        self._logprobs = True
                        probs = {c: m / total for c, m in mass.items()}
                        return Choice(max(probs, key=probs.__getitem__), probs, calibrated=True, raw=text)
                self._logprobs = False if first is not None and not first.top_logprobs else self._logprobs
                return parse_choice(text, choices)
        r = await client.chat.completions.create(**kwargs)
        return parse_choice((r.choices[0].message.content or "") if r.choices else "", choices)

    def _translate_error(self, exc: Exception, stage: str = "") -> LLMError:
        import openai

        where = f"LLM server at {self.base_url}"
        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeoutError(f"{where} did not answer within {self.timeout_s:.0f}s")
        if isinstance(exc, openai.APIConnectionError):
            return LLMConnectionError(f"{where} is unreachable ({exc.__cause__ or exc}); is it running?")
        if isinstance(exc, openai.AuthenticationError):
            return LLMRequestError(f"{where} rejected the API key (401)")
        if isinstance(exc, openai.NotFoundError):
            return LLMRequestError(f"{where}: model {self.model!r} or endpoint not found (404): {exc.message}")
        if isinstance(exc, openai.RateLimitError):
            err = LLMError(f"{where} is rate limiting (429) after {self.max_retries} retries")
            err.retryable = True
            return err
        if isinstance(exc, openai.InternalServerError):
            err = LLMError(f"{where} failed ({exc.status_code}) after {self.max_retries} retries: {exc.message}")
            err.retryable = True
            return err
        if isinstance(exc, openai.APIStatusError):
            return LLMRequestError(f"{where} rejected the request ({exc.status_code}): {exc.message}")
        return super()._translate_error(exc)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
