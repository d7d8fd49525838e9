"""The reply guard's second look (opt-in): a logistic probe on a frozen small LLM's hidden states.

Why: the MiniLM guard judges collusion with a belief, reinforcing a compulsion or encouraging a
dangerous plan mostly from the presentation *tag* it is told, not from the reply's words (README,
"Why the guard misses"). A frozen Qwen2.5-Coder-0.5B-Instruct that reads the person's last words as
the user turn and the reply as its own assistant turn separates harmful from good replies far
better: a logistic head on the mean of the reply's hidden states at layer 18 ranks the held-out
guard pairs at ROC AUC 0.99 (the session-24 figures are in the model card).  It costs one forward
pass of a 0.5 B model (~0.3 s on 2 cores), so it runs only where the guard's context is risky (a
presentation, a risk context or a means question read by the safety stage) and only after the
patterns and the MiniLM layer passed the text.

Opt-in (``EMPATHIC_SAFETY_GUARD_PROBE=qwen2.5-coder-0.5b-instruct``; the model comes from the
``llm-qwen-0-5b`` extra), because the default install does not carry a 0.5 B model.  The head
(``weights/guard_probe.npz``) is trained by ``empathic safety train-guard-probe``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np

from empathic_agent.errors import ConfigError, ModelError

__all__ = ["GuardProbe", "PROBE_PATH", "PROBE_SYSTEM", "REPLY_TOKENS"]

log = logging.getLogger(__name__)

PROBE_PATH: Final[Path] = Path(__file__).parent / "weights" / "guard_probe.npz"
#: The system turn the probe's features were computed under (part of the weights' contract).
PROBE_SYSTEM: Final[str] = "You are a supportive assistant in a mental-health support app."
#: The probe reads at most this many tokens of the reply (the first ones).
REPLY_TOKENS: Final[int] = 160


class GuardProbe:
    """P(harmful) of a reply after what the person said, from the frozen LLM ``model_spec``.

    The model loads on first use (or in :meth:`load`); calls are serialised by a lock (one forward
    pass at a time on a shared model)."""

    def __init__(self, model_spec: str, cache_dir: Path | str, *, path: Path | str | None = PROBE_PATH) -> None:
        """``path``: the head's weights; None = the frozen model's features only (for training)."""
        self.model_spec = model_spec
        self.cache_dir = Path(cache_dir)
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._tok: Any = None
        self._model: Any = None
        head: dict[str, Any] = self._read_head(self.path) if self.path is not None else {
            "layer": 18, "threshold": 1.0, "mean": np.zeros(1), "scale": np.ones(1), "coef": np.zeros(1),
            "intercept": 0.0, "model": ""}
        self.layer: int = int(head["layer"])
        self.threshold: float = float(head["threshold"])
        self._mean, self._scale = head["mean"], head["scale"]
        self._coef, self._intercept = head["coef"], float(head["intercept"])
        self.trained_on: str = str(head["model"])

    @staticmethod
    def _read_head(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise ConfigError(f"guard probe weights not found: {path} (train them with: empathic safety train-guard-probe)")
        with np.load(path, allow_pickle=False) as z:
            head = {k: z[k] for k in z.files}
        missing = {"layer", "threshold", "mean", "scale", "coef", "intercept", "model"} - set(head)
        if missing:
            raise ConfigError(f"guard probe weights {path} lack {sorted(missing)}")
        return head

    @classmethod
    def from_settings(cls, settings: Any) -> "GuardProbe":
        return cls(settings.safety_guard_probe, settings.cache_dir)

    def load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:
                raise ModelError(f"the guard probe needs torch and transformers ({exc})") from exc
            from empathic_agent.models import resolve_model

            where = resolve_model("llm", self.model_spec, self.cache_dir).location
            try:
                tok = AutoTokenizer.from_pretrained(where)
                # bfloat16: the dtype the head was trained on (float32 reads the same states
                # within rounding, at twice the memory).
                model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.bfloat16)
            except OSError as exc:
                raise ModelError(f"could not load the guard probe's model {self.model_spec!r} from {where}: {exc}") from exc
            self._tok, self._model = tok, model.eval()

    def encode(self, said: str, reply: str) -> tuple[list[int], list[int]]:
        """(prompt ids, reply ids): the person's words as the user turn, the reply as the assistant's."""
        self.load()
        prompt = self._tok.apply_chat_template(
            [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": said or "(no message)"}],
            tokenize=False, add_generation_prompt=True)
        return (self._tok(prompt, add_special_tokens=False)["input_ids"],
                self._tok(reply, add_special_tokens=False)["input_ids"][:REPLY_TOKENS])

    def features(self, said: str, reply: str, layers: tuple[int, ...] | None = None) -> np.ndarray:
        """The mean of the reply tokens' hidden states at ``layers`` (default: the head's), concatenated."""
        import torch

        a, b = self.encode(said, reply)
        if not b:
            raise ValueError("the probe needs a non-empty reply")
        with self._lock, torch.inference_mode():
            hs = self._model(torch.tensor([a + b]), output_hidden_states=True).hidden_states
            return np.concatenate([hs[k][0, len(a):].float().mean(0).numpy() for k in (layers or (self.layer,))])

    def score(self, features: np.ndarray) -> float:
        if self.path is None:
            raise ConfigError("this probe has no head (path=None): features only")
        z = (np.asarray(features, dtype=np.float64) - self._mean) / self._scale
        return float(1.0 / (1.0 + np.exp(-(z @ self._coef + self._intercept))))

    def p_harmful(self, said: str, reply: str) -> float:
        return self.score(self.features(said, reply))
