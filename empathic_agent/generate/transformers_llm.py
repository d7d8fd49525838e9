"""Embedded LLM backend: a transformers causal LM running in this process.

The model is loaded once (from the prepared cache directory, ~0.3 s for SmolLM2-135M) and reused.
Generation runs in a worker thread — it is blocking, CPU-bound torch code — and streams text back
to the event loop through ``TextIteratorStreamer``. One generation runs at a time: on 2 CPU cores a
second concurrent generation would only halve the speed of both.

**Prefix cache.**  On a CPU, reading the prompt (prefill) dominates the time to the first token —
about 1.5-3 ms per token for SmolLM2-135M on our 2 cores — and a conversation's prompt repeats the
previous one's beginning (system prompt and history).  Like vLLM's automatic prefix caching, the
key/value cache of the last few generations (prompt + reply) is kept; a new prompt that starts with
one of them only prefills the new tokens.  The prompt is laid out for it (``generate.prompt``:
per-turn context comes last, the history window moves in steps).
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Final, Sequence

from empathic_agent.errors import BackendUnavailableError, LLMError, LLMTimeoutError, ModelError
from empathic_agent.generate.llm import LLM, ChatMessage, GenerationOptions
from empathic_agent.models import resolve_model

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["TransformersLLM", "chat_reply_tokens", "resolve_dtype"]

#: Seconds the streaming bridge waits for the next chunk before declaring the worker stuck.
_CHUNK_POLL_S = 0.05
#: Generations whose key/value cache is kept for reuse (one per recent conversation; ~46 kB per
#: token for SmolLM2-135M, so 8 caches of 1,000 tokens are ~370 MB).
PREFIX_CACHE_ENTRIES: Final[int] = 8
#: Shortest shared prefix worth reusing (below it, copying the cache costs about what it saves).
MIN_PREFIX_TOKENS: Final[int] = 32


class TransformersLLM(LLM):
    """Chat generation with ``AutoModelForCausalLM`` + the model's own chat template."""

    name = "transformers"

    def __init__(self, model: str, *, cache_dir: Path, timeout_s: float = 60.0, dtype: str = "auto") -> None:
        super().__init__()
        self.model_spec = model
        self.cache_dir = Path(cache_dir)
        #: "float32" or "bfloat16" ("auto" resolved here: see :func:`resolve_dtype`).
        self.dtype = resolve_dtype(dtype)
        self.timeout_s = timeout_s
        self._model: Any = None
        self._tok: Any = None
        self._lock = asyncio.Lock()
        #: token ids (tuple) -> their DynamicCache, most recently used last.
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        #: Prompt tokens read from the cache / prefilled, of the last generation (for benchmarks).
        self.last_prefix: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: "Settings") -> "TransformersLLM":
        return cls(settings.llm_model, cache_dir=settings.cache_dir, timeout_s=settings.llm_timeout_s,
                   dtype=settings.llm_dtype)

    @property
    def model_name(self) -> str:
        return self.model_spec

    async def _load_impl(self) -> None:
        await asyncio.to_thread(self._load_locked)

    def _load_locked(self) -> None:
        from empathic_agent.models.base import LOAD_LOCK

        with LOAD_LOCK:  # transformers' imports and loads are not thread-safe (see LOAD_LOCK)
            self._load_sync()

    def _load_sync(self) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the transformers backend needs torch and transformers ({exc}); "
                "install with: pip install 'empathic-agent[llm]'") from exc
        from transformers.utils import logging as hf_logging

        # Loading progress bars would interleave with the chat's streamed text on the terminal.
        hf_logging.disable_progress_bar()
        resolved = resolve_model("llm", self.model_spec, self.cache_dir)
        where = resolved.location
        try:
            self._tok = AutoTokenizer.from_pretrained(where)
            self._model = AutoModelForCausalLM.from_pretrained(where, dtype=getattr(torch, self.dtype))
        except OSError as exc:
            hint = " (a hub id needs network access)" if resolved.is_hub else ""
            raise ModelError(f"could not load LLM {self.model_spec!r} from {where}{hint}: {exc}") from exc
        self._model.eval()
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token

    async def _stream_impl(self, messages: list[ChatMessage],
                           options: GenerationOptions) -> AsyncIterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        async with self._lock:
            cancel = threading.Event()

            class _Cancel(StoppingCriteria):
                # Lets an abandoned stream (client gone, timeout) stop the worker thread early.
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                    return cancel.is_set()

            inputs = self._tok.apply_chat_template(
                [m.to_dict() for m in messages], add_generation_prompt=True,
                return_tensors="pt", return_dict=True,  # the attention mask comes with the ids
            )
            streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True,
                                            timeout=_CHUNK_POLL_S)
            kwargs: dict[str, Any] = dict(
                **inputs, streamer=streamer, max_new_tokens=options.max_new_tokens,
                pad_token_id=self._tok.pad_token_id, max_time=self.timeout_s,
                stopping_criteria=StoppingCriteriaList([_Cancel()]),
            )
            if options.repetition_penalty != 1.0:
                kwargs.update(repetition_penalty=options.repetition_penalty)
            if options.temperature > 0:
                kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p)
            else:
                kwargs.update(do_sample=False)
            if options.stop:
                kwargs.update(stop_strings=list(options.stop), tokenizer=self._tok)
            errors: list[BaseException] = []
            n_prompt = int(inputs["input_ids"].shape[-1])
            result: dict[str, int] = {}
            prompt_ids = tuple(int(t) for t in inputs["input_ids"][0].tolist())
            cache, reused = self._cache_for(prompt_ids)
            kwargs.update(past_key_values=cache, return_dict_in_generate=True)
            self.last_prefix = {"reused": reused, "prefilled": n_prompt - reused}

            def work() -> None:
                import torch

                try:
                    if options.seed is not None:
                        torch.manual_seed(options.seed)
                    with torch.inference_mode():
                        out = self._model.generate(**kwargs)
                    sequence = out.sequences[0]
                    result["tokens"] = int(sequence.shape[-1]) - n_prompt
                    self._keep(tuple(int(t) for t in sequence.tolist()), out.past_key_values)
                except BaseException as exc:  # reported to the consumer below
                    errors.append(exc)
                    streamer.end()

            thread = threading.Thread(target=work, name="llm-generate", daemon=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout_s + 5.0
            thread.start()
            it = iter(streamer)
            try:
                while True:
                    chunk = await asyncio.to_thread(_next_chunk, it)
                    if chunk is _DONE:
                        break
                    if chunk is not _EMPTY:
                        yield chunk  # type: ignore[misc]
                    elif loop.time() > deadline:
                        raise LLMTimeoutError(f"embedded model produced nothing for {self.timeout_s:.0f}s")
            finally:
                cancel.set()
                await asyncio.to_thread(thread.join)
            if errors:
                raise LLMError(f"generation failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
            self._completion_tokens = result.get("tokens")


    async def continuation_logprob(self, messages: Sequence[ChatMessage], continuation: str) -> tuple[float, int] | None:
        """Log-probability of ``continuation`` (its tokens up to and including the chat template's
        end-of-turn token) after the prompt the model would be given for ``messages``."""
        await self.load()
        async with self._lock:
            return await asyncio.to_thread(self._logprob_sync, list(messages), continuation)

    def _logprob_sync(self, messages: list[ChatMessage], continuation: str) -> tuple[float, int] | None:
        import torch

        split = chat_reply_tokens(self._tok, [m.to_dict() for m in messages], continuation)
        if split is None:
            return None
        f_ids, n_prompt = split
        ids = torch.tensor([f_ids])
        with torch.inference_mode():
            logits = self._model(input_ids=ids).logits[0, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        target = ids[0, 1:]
        picked = logp[torch.arange(len(target)), target][n_prompt - 1:]
        return float(picked.sum()), int(picked.numel())

    # -- prefix cache (used by one generation at a time: under self._lock) --------------------------
    def _cache_for(self, ids: tuple[int, ...]) -> tuple[Any, int]:
        """A cache to generate ``ids`` with: a copy of the longest cached prefix of ``ids`` (cut to
        the shared part, leaving at least one token to prefill), or a new empty one."""
        from transformers import DynamicCache

        best_key, best = None, 0
        for key in self._prefixes:
            n = _common_prefix(key, ids)
            if n > best:
                best_key, best = key, n
        best = min(best, len(ids) - 1)
        if best_key is None or best < MIN_PREFIX_TOKENS:
            return DynamicCache(), 0
        self._prefixes.move_to_end(best_key)
        cache = copy.deepcopy(self._prefixes[best_key])
        extra = int(cache.get_seq_length()) - best
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count of tokens to remove
        return cache, best

    def _keep(self, ids: tuple[int, ...], cache: Any) -> None:
        if cache is None:
            return
        n = int(cache.get_seq_length())  # the last generated token has no cache entry yet
        key = ids[:n]
        # A cache that extends an older one supersedes it (the same conversation, one turn on).
        for old in [k for k in self._prefixes if _common_prefix(k, key) == len(k)]:
            del self._prefixes[old]
        self._prefixes[key] = cache
        while len(self._prefixes) > PREFIX_CACHE_ENTRIES:
            self._prefixes.popitem(last=False)


def chat_reply_tokens(tok: Any, chat: list[dict[str, str]], reply: str) -> tuple[list[int], int] | None:
    """Token ids of the chat template's prompt for ``chat`` followed by ``reply`` (up to and
    including the template's end-of-turn token), and the prompt's length; None when the template
    rewrites the prompt around the reply (no clean split).  Scoring a reference (perplexity) and
    training the responder read replies the same way."""
    prompt = list(tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    full = list(tok.apply_chat_template(chat + [{"role": "assistant", "content": reply}],
                                        tokenize=True, return_dict=True)["input_ids"])
    if len(full) <= len(prompt) or full[:len(prompt)] != prompt:
        return None
    # Up to the end-of-turn token: a template may add a newline after it that is no part of the reply.
    end = tok.convert_tokens_to_ids(tok.eos_token) if tok.eos_token else None
    if end is not None and end in full[len(prompt):]:
        full = full[:full.index(end, len(prompt)) + 1]
    return full, len(prompt)


def resolve_dtype(dtype: str) -> str:
    """``auto`` -> ``bfloat16`` when this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX
    flags in /proc/cpuinfo), else ``float32`` (emulated bf16 would be slower than float32)."""
    if dtype != "auto":
        return dtype
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = set(next((line for line in fh if line.startswith("flags")), "").split())
    except OSError:
        return "float32"
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


_DONE = object()
_EMPTY = object()


def _next_chunk(it: Any) -> Any:
    """Next streamer chunk, _EMPTY when none arrived within the poll interval, _DONE at the end."""
    import queue

    try:
        return next(it)
    except StopIteration:
        return _DONE
    except queue.Empty:
        return _EMPTY
