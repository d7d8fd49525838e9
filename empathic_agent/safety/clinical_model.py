"""Learned layers of the clinical reader and the reply guard: logistic heads on a frozen MiniLM.

Both read one text into one probability per class — the reader per presentation
(:data:`~empathic_agent.safety.clinical.PRESENTATIONS`), the guard per harm category
(:data:`~empathic_agent.safety.guard.GUARD_CATEGORIES`).  The backbone is the sentence model memory
uses (all-MiniLM-L6-v2, shipped in a registry package), frozen: one forward (~5-10 ms for a sentence
on 2 cores) plus a 384 x k linear map.  Heads, thresholds and the data they came from are in
``safety/weights/clinical_heads.npz`` / ``guard_heads.npz`` and ``clinical.json``; training is
:mod:`empathic_agent.safety.train_clinical`, the model card ``safety/weights/CLINICAL_MODEL_CARD.md``.

The patterns stay the first layer; these heads add recall on phrasings nobody wrote a pattern for.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.safety.guard import GuardContext
    from empathic_agent.settings import Settings

__all__ = ["EmbeddingHeads", "ClinicalModel", "GuardModel", "WEIGHTS_DIR", "CONFIG_FILE"]

WEIGHTS_DIR: Final = Path(__file__).resolve().parent / "weights"
CONFIG_FILE: Final = "clinical.json"
FORMAT: Final = "empathic-clinical-heads-v1"


class EmbeddingHeads:
    """One logistic head per class on a sentence embedding (weights from an ``.npz``)."""

    #: The file name of the heads in the weights folder, and its key in the config.
    kind: str = ""

    def __init__(self, folder: str | Path | None = None, *, embedder: "Embedder | None" = None,
                 settings: "Settings | None" = None) -> None:
        self.folder = Path(folder) if folder else WEIGHTS_DIR
        self._embedder = embedder
        self._settings = settings
        self._lock = threading.Lock()
        self.names: tuple[str, ...] = ()
        self.thresholds: dict[str, float] = {}
        self.open_thresholds: dict[str, float] = {}
        self._w: np.ndarray | None = None
        self._b: np.ndarray | None = None

    @classmethod
    def available(cls, folder: str | Path | None = None) -> bool:
        f = Path(folder) if folder else WEIGHTS_DIR
        return (f / f"{cls.kind}_heads.npz").exists() and (f / CONFIG_FILE).exists()

    def load(self) -> None:
        with self._lock:
            if self._w is not None:
                return
            path = self.folder / f"{self.kind}_heads.npz"
            cfg_path = self.folder / CONFIG_FILE
            if not path.exists() or not cfg_path.exists():
                raise ConfigError(f"no trained {self.kind} heads in {self.folder} (run: empathic safety train-clinical)")
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            if cfg.get("format") != FORMAT:
                raise ConfigError(f"{cfg_path}: unknown format {cfg.get('format')!r} (expected {FORMAT})")
            part = cfg[self.kind]
            data = np.load(path)
            self.names = tuple(part["names"])
            self.thresholds = {k: float(v) for k, v in part["thresholds"].items()}
            self.open_thresholds = {k: float(v) for k, v in (part.get("open_thresholds") or {}).items()}
            self._w, self._b = data["w"].astype(np.float32), data["b"].astype(np.float32)
            if self._w.shape != (len(self.names), data["w"].shape[1]):
                raise ConfigError(f"{path}: head shape {self._w.shape} does not match {len(self.names)} classes")
            if self._embedder is None:
                from empathic_agent.memory.embedder import MiniLMEmbedder
                from empathic_agent.settings import Settings

                self._embedder = MiniLMEmbedder.from_settings(self._settings or Settings())
            self._embedder.load()

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) probabilities."""
        self.load()
        assert self._w is not None and self._b is not None and self._embedder is not None
        x = self._embedder.embed([t or " " for t in texts])
        return 1.0 / (1.0 + np.exp(-(x @ self._w.T + self._b)))

    def read(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [dict(zip(self.names, map(float, row))) for row in self.probabilities(texts)]


class ClinicalModel(EmbeddingHeads):
    """P(presentation) of a person's message."""

    kind = "clinical"

    def read(self, text: str) -> dict[str, float]:  # type: ignore[override]
        return super().read([text])[0]

    def threshold(self, name: str) -> float:
        return self.thresholds.get(name, 1.01)


class GuardModel(EmbeddingHeads):
    """P(harm category) of an agent's sentence."""

    kind = "guard"

    def threshold(self, category: str, applies: bool) -> float:
        """Where the category's context is present, its threshold; elsewhere the stricter "open"
        one (chosen on ordinary supporter replies; 1.01 = never)."""
        return self.thresholds.get(category, 1.01) if applies else self.open_thresholds.get(category, 1.01)


def heads_summary(folder: str | Path | None = None) -> dict[str, Any]:
    """The config of the trained heads (for ``empathic safety info`` and the model card)."""
    f = Path(folder) if folder else WEIGHTS_DIR
    p = f / CONFIG_FILE
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
