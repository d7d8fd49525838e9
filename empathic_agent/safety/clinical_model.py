"""The learned layer of the clinical reader and the reply guard: one fine-tuned MiniLM, two sets of
heads.

all-MiniLM-L6-v2 (the sentence model memory uses, shipped in a registry package) with LoRA adapters
on its top three layers (the same plain-torch adapters as the risk screen and the text emotion
encoder), fine-tuned on two kinds of text at once:

* the person's messages -> one sigmoid per presentation (:data:`~.clinical.PRESENTATIONS`);
* the agent's replies -> one sigmoid per harm category (:data:`~.guard.GUARD_CATEGORIES`).

One backbone serves both (loaded once, adapters merged into the weights): a message costs one
MiniLM forward plus a linear map.  Weights and thresholds: ``safety/weights/clinical_model.npz`` and
``clinical.json``; training :mod:`empathic_agent.training.clinical`; model card
``safety/weights/CLINICAL_MODEL_CARD.md``.  The patterns stay the first layer; the heads add recall
on phrasings nobody wrote a pattern for.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError, ModelError
from empathic_agent.lifecycle import Loadable

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["ClinicalBackbone", "ClinicalModel", "GuardModel", "WEIGHTS_DIR", "CONFIG_FILE", "WEIGHTS_FILE", "FORMAT"]

log = logging.getLogger(__name__)

WEIGHTS_DIR: Final = Path(__file__).resolve().parent / "weights"
CONFIG_FILE: Final = "clinical.json"
WEIGHTS_FILE: Final = "clinical_model.npz"
FORMAT: Final = "empathic-clinical-v1"
MAX_TOKENS: Final[int] = 128


class ClinicalBackbone(Loadable):
    """The fine-tuned MiniLM and its head; shared by the reader and the guard (one per folder;
    loading lifecycle: :class:`Loadable`)."""

    kind = "reader"
    name = "clinical"
    error_class = ModelError

    _shared: dict[str, "ClinicalBackbone"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, folder: Path, settings: "Settings | None" = None) -> None:
        super().__init__()
        self.folder = folder
        self._settings = settings
        self.config: dict[str, Any] = {}
        self._model: Any = None
        self._tokenizer: Any = None
        self._head: Any = None
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, folder: str | Path | None, settings: "Settings | None" = None) -> "ClinicalBackbone":
        key = str(Path(folder) if folder else WEIGHTS_DIR)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(Path(key), settings)
            return cls._shared[key]

    @staticmethod
    def available(folder: str | Path | None = None) -> bool:
        f = Path(folder) if folder else WEIGHTS_DIR
        return (f / WEIGHTS_FILE).is_file() and (f / CONFIG_FILE).is_file()

    def read_config(self) -> dict[str, Any]:
        path = self.folder / CONFIG_FILE
        if not self.available(self.folder):
            raise ConfigError(f"clinical model weights not found in {self.folder} ({CONFIG_FILE} and {WEIGHTS_FILE}); "
                              "train them with 'empathic safety train-clinical'")
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ConfigError(f"{path} has format {config.get('format')!r}; this code reads {FORMAT}")
        return config

    def _load_impl(self) -> None:
        from empathic_agent.safety.learned import load_adapted
        from empathic_agent.settings import Settings

        config = self.read_config()
        settings = self._settings or Settings.from_env()
        tokenizer, model, head = load_adapted(config["backbone"], settings.cache_dir, self.folder / WEIGHTS_FILE,
                                              config["architecture"])
        self.config, self._tokenizer, self._head = config, tokenizer, head
        self._model = model

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Sigmoid of every output (N, presentations + categories)."""
        import torch

        from empathic_agent.encode.text_model import mean_pool

        self.load()
        with self._lock, torch.inference_mode():
            batch = self._tokenizer([t or " " for t in texts], truncation=True, max_length=MAX_TOKENS, padding=True,
                                    return_tensors="pt")
            out = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            pooled = mean_pool(out.last_hidden_state, batch["attention_mask"])
            return torch.sigmoid(self._head(pooled)).numpy()


class _Heads:
    """One kind of heads of the shared backbone (``kind``: its key in the config).

    A kind may bring its own trained model in a subfolder of the weights folder (``own``, e.g.
    ``weights/guard/``, written by ``train-clinical --out``); without one it reads with the shared
    model."""

    kind: str = ""
    #: Subfolder with this kind's own model, used when present.
    own: str = ""

    def __init__(self, folder: str | Path | None = None, *, settings: "Settings | None" = None) -> None:
        self.backbone = ClinicalBackbone.shared(self.folder_for(folder), settings)
        self.names: tuple[str, ...] = ()
        self.thresholds: dict[str, float] = {}
        self._slice = slice(0, 0)

    @classmethod
    def folder_for(cls, folder: str | Path | None = None) -> Path:
        base = Path(folder) if folder else WEIGHTS_DIR
        return base / cls.own if cls.own and ClinicalBackbone.available(base / cls.own) else base

    @classmethod
    def available(cls, folder: str | Path | None = None) -> bool:
        return ClinicalBackbone.available(cls.folder_for(folder))

    def load(self) -> None:
        if self.names:
            return
        self.backbone.load()
        part = self.backbone.config[self.kind]
        self.names = tuple(part["names"])
        self.thresholds = {k: float(v) for k, v in part["thresholds"].items()}
        self._slice = slice(int(part["offset"]), int(part["offset"]) + len(self.names))
        self._extra(part)

    def _extra(self, part: dict[str, Any]) -> None:
        pass

    def read_many(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.load()
        p = self.backbone.probabilities(texts)[:, self._slice]
        return [dict(zip(self.names, map(float, row))) for row in p]


class ClinicalModel(_Heads):
    """P(presentation) of a person's message."""

    kind = "clinical"

    def read(self, text: str) -> dict[str, float]:
        return self.read_many([text])[0]

    def threshold(self, name: str) -> float:
        return self.thresholds.get(name, 1.01)

    def _extra(self, part: dict[str, Any]) -> None:
        self.takeovers = {k: float(v) for k, v in (part.get("takeover_thresholds") or {}).items()}

    def takeover(self, name: str) -> float:
        """The score at which this layer's reading alone answers with the presentation's vetted reply
        (weights without ``takeover_thresholds``: its threshold, as before)."""
        return max(self.threshold(name), self.takeovers.get(name, 0.0))


class GuardModel(_Heads):
    """P(harm category) of an agent's reply text (the max over the views given).

    The packaged guard reads with its own model (``weights/guard/``): retrained with four more
    guard writers, it found more harm out of fold at the same false blocks (recall 0.568 -> 0.633),
    but the same joint training raised the reader's false alarms (7.0 % -> 10.1 % of the written
    ``none`` messages), so the reader keeps the earlier model.  A second MiniLM in memory (~90 MB);
    no added latency (the reader and the guard never read the same text)."""

    kind = "guard"
    own = "guard"

    #: Trained with what the person said beside each reply (``said`` in the config).
    reads_said: bool = False

    def _extra(self, part: dict[str, Any]) -> None:
        self.open_thresholds = {k: float(v) for k, v in (part.get("open_thresholds") or {}).items()}
        self.reads_said = bool(part.get("said"))

    def read(self, views: Sequence[str]) -> dict[str, float]:
        rows = self.read_many(views)
        return {n: max(r[n] for r in rows) for n in self.names}

    def threshold(self, category: str, applies: bool) -> float:
        """Where the category's context is present, its threshold; elsewhere the stricter "open"
        one (chosen on ordinary supporter replies; 1.01 = never)."""
        return self.thresholds.get(category, 1.01) if applies else self.open_thresholds.get(category, 1.01)


def heads_summary(folder: str | Path | None = None) -> dict[str, Any]:
    """The config of the trained heads (for reports and the model card)."""
    f = Path(folder) if folder else WEIGHTS_DIR
    p = f / CONFIG_FILE
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
