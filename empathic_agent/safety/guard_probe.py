"""The reply guard's second look (opt-in): a logistic probe on a frozen small LLM's hidden states.

Why: the MiniLM guard judges collusion with a belief, reinforcing a compulsion or encouraging a
dangerous plan mostly from the presentation *tag* it is told, not from the reply's words (README,
"Why the guard misses"). A frozen Qwen2.5-Coder-0.5B-Instruct that reads the person's last words as
the user turn and the reply as its own assistant turn separates harmful from good replies far
better: a logistic head on the mean of the reply's hidden states at layer 18 ranks the held-out
guard pairs at ROC AUC 0.99 (the session-24 figures are in the model card).  It costs one forward
pass of a 0.5 B model's first 19 layers (~0.23 s on 2 cores), so it runs only where the guard's context is risky (a
presentation, a risk context or a means question read by the safety stage) and only after the
patterns and the MiniLM layer passed the text.

Opt-in (``EMPATHIC_SAFETY_GUARD_PROBE=qwen2.5-coder-0.5b-instruct``; the model comes from the
``llm-qwen-0-5b`` extra), because the default install does not carry a 0.5 B model.  The head
(``weights/guard_probe.npz``) is trained by ``empathic safety train-guard-probe``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.safety.llm_probe import PROBE_SYSTEM, LLMProbe, read_head, sigmoid

__all__ = ["GuardProbe", "PROBE_PATH", "PROBE_SYSTEM", "REPLY_TOKENS"]

log = logging.getLogger(__name__)

PROBE_PATH: Final[Path] = Path(__file__).parent / "weights" / "guard_probe.npz"
#: The probe reads at most this many tokens of the reply (the first ones).
REPLY_TOKENS: Final[int] = 160


class GuardProbe(LLMProbe):
    """P(harmful) of a reply after what the person said, from the frozen LLM ``model_spec``."""

    name = "guard probe"

    def __init__(self, model_spec: str, cache_dir: Path | str, *, path: Path | str | None = PROBE_PATH) -> None:
        """``path``: the head's weights; None = the frozen model's features only (for training)."""
        self.path = Path(path) if path is not None else None
        head: dict[str, Any] = read_head(
            self.path, {"layer", "threshold", "mean", "scale", "coef", "intercept", "model"},
            "empathic safety train-guard-probe") if self.path is not None else {
            "layer": 18, "threshold": 1.0, "mean": np.zeros(1), "scale": np.ones(1), "coef": np.zeros(1),
            "intercept": 0.0, "model": ""}
        self.layer: int = int(head["layer"])
        # Features only (training) read every layer; a head reads its own.
        super().__init__(model_spec, cache_dir, depth=self.layer if self.path is not None else None)
        self.threshold: float = float(head["threshold"])
        self._mean, self._scale = head["mean"], head["scale"]
        self._coef, self._intercept = head["coef"], float(head["intercept"])
        self.trained_on: str = str(head["model"])

    @classmethod
    def from_settings(cls, settings: Any) -> "GuardProbe":
        return cls(settings.safety_guard_probe, settings.cache_dir)

    def encode(self, said: str, reply: str) -> tuple[list[int], list[int]]:
        """(prompt ids, reply ids): the person's words as the user turn, the reply as the assistant's."""
        prompt = self.chat_prefix([{"role": "system", "content": PROBE_SYSTEM},
                                   {"role": "user", "content": said or "(no message)"}], generation_prompt=True)
        return prompt, self.ids(reply)[:REPLY_TOKENS]

    def features(self, said: str, reply: str, layers: tuple[int, ...] | None = None) -> np.ndarray:
        """The mean of the reply tokens' hidden states at ``layers`` (default: the head's), concatenated."""
        a, b = self.encode(said, reply)
        if not b:
            raise ValueError("the probe needs a non-empty reply")
        return self.mean_states(a, b, layers or (self.layer,))

    def score(self, features: np.ndarray) -> float:
        if self.path is None:
            raise ConfigError("this probe has no head (path=None): features only")
        z = (np.asarray(features, dtype=np.float64) - self._mean) / self._scale
        return sigmoid(float(z @ self._coef + self._intercept))

    def p_harmful(self, said: str, reply: str) -> float:
        return self.score(self.features(said, reply))
