"""Risk in languages the screen does not read: a multilingual sentence embedding and a small head.

The patterns and the learned reader are English.  For a message in another language the screen
had only a hand-written cue lexicon (:mod:`.language`): eleven languages, the most common phrasings.
This reader covers the rest the way the issue asks — through a multilingual encoder:
multilingual-e5-small (MIT; ~100 languages, one shared space, so what the head learns from the
English writers carries to other languages) embeds the message, and a logistic head with two
outputs gives P(level >= low) and P(level >= moderate).

It runs only on messages the screen does not cover (:func:`.language.detect_language`), never
lowers a level, and raises conservatively: P(>= moderate) at its threshold sends the message to the
crisis protocol (level ``moderate``, whatever its real level: a human can read what the screen
cannot), P(>= low) at its threshold gives a check-in.  Thresholds were chosen on the training
writers' out-of-fold predictions (``empathic safety train-multilingual``; model card
``weights/MULTILINGUAL_MODEL_CARD.md``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from empathic_agent.errors import ConfigError

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder

__all__ = ["MultilingualRiskReader", "MultilingualReading", "WEIGHTS_FILE", "CONFIG_FILE", "OUTPUTS"]

#: The head's outputs, in order.
OUTPUTS: Final[tuple[str, ...]] = ("low", "moderate")
WEIGHTS_FILE: Final[str] = "multilingual.npz"
CONFIG_FILE: Final[str] = "multilingual.json"
FORMAT: Final[int] = 1


@dataclass(frozen=True)
class MultilingualReading:
    """P(level >= low) and P(level >= moderate) of one message, and the level they raise it to."""

    low: float
    moderate: float
    level: str

    def to_dict(self) -> dict[str, float | str]:
        return {"low": round(self.low, 4), "moderate": round(self.moderate, 4), "level": self.level}


class MultilingualRiskReader:
    """The head over an :class:`~empathic_agent.memory.embedder.Embedder` (``e5-multilingual``).
    Loads on first use; thread-safe."""

    def __init__(self, embedder: "Embedder", folder: str | Path | None = None) -> None:
        from empathic_agent.safety.learned import WEIGHTS_DIR

        self.embedder = embedder
        self.folder = Path(folder) if folder else WEIGHTS_DIR
        self._w: np.ndarray | None = None
        self._b: np.ndarray | None = None
        self.thresholds: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def available(cls, folder: str | Path | None = None) -> bool:
        from empathic_agent.safety.learned import WEIGHTS_DIR

        f = Path(folder) if folder else WEIGHTS_DIR
        return (f / WEIGHTS_FILE).exists() and (f / CONFIG_FILE).exists()

    def load(self) -> None:
        with self._lock:
            if self._w is not None:
                return
            config = json.loads((self.folder / CONFIG_FILE).read_text(encoding="utf-8"))
            if config.get("format") != FORMAT or tuple(config.get("outputs") or ()) != OUTPUTS:
                raise ConfigError(f"{self.folder / CONFIG_FILE}: not a multilingual risk head of format {FORMAT}")
            with np.load(self.folder / WEIGHTS_FILE) as z:
                w, b = np.asarray(z["w"], np.float32), np.asarray(z["b"], np.float32)
            if w.shape != (self.embedder.dim, len(OUTPUTS)) or b.shape != (len(OUTPUTS),):
                raise ConfigError(f"{self.folder / WEIGHTS_FILE}: head of shape {w.shape} does not fit "
                                  f"a {self.embedder.dim}-d embedder")
            self.thresholds = {k: float(config["thresholds"][k]) for k in OUTPUTS}
            self.embedder.load()
            self._b, self._w = b, w

    def read_many(self, texts: list[str]) -> list[MultilingualReading]:
        self.load()
        assert self._w is not None and self._b is not None
        p = 1.0 / (1.0 + np.exp(-(self.embedder.embed(texts) @ self._w + self._b)))
        out = []
        for low, moderate in p.astype(float):
            low = max(low, moderate)  # >= moderate implies >= low
            level = ("moderate" if moderate >= self.thresholds["moderate"]
                     else "low" if low >= self.thresholds["low"] else "none")
            out.append(MultilingualReading(float(low), float(moderate), level))
        return out

    def read(self, text: str) -> MultilingualReading:
        return self.read_many([text])[0]
