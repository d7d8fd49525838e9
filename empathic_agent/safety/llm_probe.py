"""Probes on a frozen small LLM: logistic heads on the mean of some tokens' hidden states.

The model half of the reply guard's second look (:mod:`.guard_probe`), kept apart from what that
probe reads (a prefix — the chat template up to the text — then the text's tokens, whose hidden
states at one layer are averaged and read by a head) so that another probe on the same frozen
model shares its copy: a risk probe for the screen was built on it and measured (session 25,
README "Safety", rules 66-67) and failed its gates, so it is not shipped.

Only the layers up to the deepest one a head reads are run (``hidden_states[k]`` for ``k`` below
the model's depth is layer ``k``'s raw output, unchanged by dropping the layers after it), and the
language-model head is never computed: the guard probe's whole-reply look went from 371 ms to
230 ms (p50, 2 cores, ``empathic safety bench --guard``) with the same scores.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Final

import numpy as np

from empathic_agent.errors import ConfigError, ModelError

__all__ = ["LLMProbe", "PROBE_SYSTEM", "read_head", "sigmoid"]

#: The system turn every probe's features were computed under (part of the weights' contract).
PROBE_SYSTEM: Final[str] = "You are a supportive assistant in a mental-health support app."


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def read_head(path: Path, keys: set[str], trainer: str) -> dict[str, Any]:
    """The arrays of a head file (npz), checked for ``keys``; ``trainer`` names the command that
    writes it (for the error)."""
    if not path.is_file():
        raise ConfigError(f"probe weights not found: {path} (train them with: {trainer})")
    with np.load(path, allow_pickle=False) as z:
        head = {k: z[k] for k in z.files}
    missing = keys - set(head)
    if missing:
        raise ConfigError(f"probe weights {path} lack {sorted(missing)}")
    return head


#: Loaded models by (location, depth): probes on the same model and depth (every stage's guard
#: in one process) share one copy, and its lock: one forward pass at a time on it.
_SHARED: dict[tuple[str, int | None], tuple[Any, Any, threading.Lock]] = {}
_LOADING = threading.Lock()


def _load(model_spec: str, cache_dir: Path, depth: int | None, name: str) -> tuple[Any, Any, threading.Lock]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelError(f"the {name} needs torch and transformers ({exc})") from exc
    from empathic_agent.models import resolve_model

    where = resolve_model("llm", model_spec, cache_dir).location
    key = (str(where), depth)
    if key in _SHARED:
        return _SHARED[key]
    try:
        tok = AutoTokenizer.from_pretrained(where)
        # bfloat16: the dtype the heads were trained on (float32 reads the same states within
        # rounding, at twice the memory).
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.bfloat16)
    except OSError as exc:
        raise ModelError(f"could not load the {name}'s model {model_spec!r} from {where}: {exc}") from exc
    base = model.model  # the decoder only: the language-model head is never needed
    # One layer past the deepest read: the last entry of ``hidden_states`` is normalised.
    if depth is not None and depth + 1 < len(base.layers):
        base.layers = base.layers[:depth + 1]
    _SHARED[key] = (tok, base.eval(), threading.Lock())
    return _SHARED[key]


class LLMProbe:
    """The frozen LLM ``model_spec`` (resolved from the model cache) and the mean of hidden states.

    ``depth``: the deepest layer any head reads (the layers after it are not run); None = all.  The
    model loads on first use (or in :meth:`load`); forward passes are serialised by a lock (one at
    a time on a shared model)."""

    #: What :meth:`load`'s errors call this probe.
    name: str = "probe"

    def __init__(self, model_spec: str, cache_dir: Path | str, *, depth: int | None = None) -> None:
        self.model_spec = model_spec
        self.cache_dir = Path(cache_dir)
        self.depth = depth
        self._lock = threading.Lock()
        self._tok: Any = None
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        with _LOADING:
            if self._model is None:
                self._tok, self._model, self._lock = _load(self.model_spec, self.cache_dir, self.depth, self.name)

    def ids(self, text: str) -> list[int]:
        self.load()
        return list(self._tok(text, add_special_tokens=False)["input_ids"])

    def chat_prefix(self, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
        """The chat template's ids for ``messages`` (and the assistant's opening when asked)."""
        self.load()
        text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        return self.ids(text)

    def mean_states(self, prefix: list[int], tokens: list[int], layers: tuple[int, ...]) -> np.ndarray:
        """The mean over ``tokens`` (read after ``prefix``) of the hidden states at ``layers``, concatenated."""
        import torch

        if not tokens:
            raise ValueError(f"the {self.name} needs a non-empty text")
        if self.depth is not None and max(layers) > self.depth:
            raise ValueError(f"layer {max(layers)} is deeper than layer {self.depth}, the deepest this {self.name} runs")
        self.load()
        with self._lock, torch.inference_mode():
            hs = self._model(torch.tensor([prefix + tokens]), output_hidden_states=True).hidden_states
            return np.concatenate([hs[k][0, len(prefix):].float().mean(0).numpy() for k in layers])
