"""Risk in languages the screen does not read: a multilingual sentence embedding and a small head.

The patterns and the learned reader are English.  For a message in another language the screen
had only a hand-written cue lexicon (:mod:`.language`): eleven languages, the most common phrasings.
This reader covers the rest the way the issue asks — through a multilingual encoder:
multilingual-e5-small (MIT; ~100 languages, one shared space, so what the head learns from the
English writers carries to other languages) embeds the message, and a small head (one hidden
layer per output) gives P(level >= low), P(level >= moderate), P(level >= imminent) and, for a
message with risk, P(subject = other).

It runs only on messages the screen does not cover (:func:`.language.detect_language`), never
lowers a level, and raises conservatively: P(>= moderate) at its threshold sends the message to the
crisis protocol (level ``moderate``: a human can read what the screen cannot), and with P(>=
imminent) at its own threshold too the emergency route (an overdose taken, standing on a bridge:
the emergency number leads, in any language); P(>= low) at its threshold gives a check-in.  Heads
trained before the third output (formats 1 and 2) still load and never say ``imminent``.  The
fourth output, P(subject = other) (format 4), tells a helper ("my friend sent goodbye and does not
answer") from the person at risk: such a message takes the helper route, as in English.
Thresholds were chosen on the training writers' out-of-fold predictions (``empathic safety
train-multilingual``; model card ``weights/MULTILINGUAL_MODEL_CARD.md``).
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
OUTPUTS: Final[tuple[str, ...]] = ("low", "moderate", "imminent", "other")
WEIGHTS_FILE: Final[str] = "multilingual.npz"
CONFIG_FILE: Final[str] = "multilingual.json"
FORMAT: Final[int] = 4
#: How many of the outputs a head of each format has (formats 1 and 2: low and moderate; 3: and
#: imminent; 4: and other).
_FORMAT_OUTPUTS: Final[dict[int, int]] = {1: 2, 2: 2, 3: 3, 4: 4}


@dataclass(frozen=True)
class MultilingualReading:
    """P(level >= low), P(level >= moderate), P(level >= imminent) and P(subject = other) of one
    message (None for a head without that output), the level they raise it to and whose risk it is."""

    low: float
    moderate: float
    level: str
    imminent: float | None = None
    #: P(subject = other) and whose risk the reading routes: ``other`` (the helper route) when the
    #: head routes the message and that probability passes its threshold, else ``self``.
    other: float | None = None
    subject: str = "self"

    @property
    def p(self) -> float:
        """The probability behind its level (P(>= low) for ``low`` and ``none``)."""
        return {"imminent": self.imminent, "moderate": self.moderate}.get(self.level) or self.low

    def to_dict(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"low": round(self.low, 4), "moderate": round(self.moderate, 4)}
        if self.imminent is not None:
            out["imminent"] = round(self.imminent, 4)
        if self.other is not None:
            out["other"] = round(self.other, 4)
        return out | {"level": self.level, "subject": self.subject}


class MultilingualRiskReader:
    """The head over an :class:`~empathic_agent.memory.embedder.Embedder` (``e5-multilingual``).
    Loads on first use; thread-safe."""

    def __init__(self, embedder: "Embedder", folder: str | Path | None = None) -> None:
        from empathic_agent.safety.learned import WEIGHTS_DIR

        self.embedder = embedder
        self.folder = Path(folder) if folder else WEIGHTS_DIR
        self._layers: dict[str, np.ndarray] | None = None
        self.thresholds: dict[str, float] = {}
        self.outputs: tuple[str, ...] = OUTPUTS
        self._lock = threading.Lock()

    @classmethod
    def available(cls, folder: str | Path | None = None) -> bool:
        from empathic_agent.safety.learned import WEIGHTS_DIR

        f = Path(folder) if folder else WEIGHTS_DIR
        return (f / WEIGHTS_FILE).exists() and (f / CONFIG_FILE).exists()

    def load(self) -> None:
        with self._lock:
            if self._layers is not None:
                return
            config = json.loads((self.folder / CONFIG_FILE).read_text(encoding="utf-8"))
            outputs = tuple(config.get("outputs") or ())
            n_out = _FORMAT_OUTPUTS.get(int(config.get("format") or 0))
            if n_out is None or outputs != OUTPUTS[:n_out]:
                raise ConfigError(f"{self.folder / CONFIG_FILE}: not a multilingual risk head of format 1-{FORMAT}")
            with np.load(self.folder / WEIGHTS_FILE) as z:
                missing = {"w", "b"} - set(z.files) if config["format"] == 1 else {"w1", "b1", "w2", "b2"} - set(z.files)
                if missing:
                    raise ConfigError(f"{self.folder / WEIGHTS_FILE}: no {', '.join(sorted(missing))} for a head of "
                                      f"format {config['format']}")
                if config["format"] == 1:
                    # The first heads were linear (w (d, outputs), b (outputs,)): an MLP whose hidden
                    # layer passes the logit through (ReLU(z) - ReLU(-z) = z).
                    w, b = np.asarray(z["w"], np.float32).T, np.asarray(z["b"], np.float32)
                    layers = {"w1": np.stack([np.stack([wo, -wo], axis=1) for wo in w]),  # (outputs, d, 2)
                              "b1": np.stack([b, -b], axis=1),  # (outputs, 2)
                              "w2": np.tile(np.array([1.0, -1.0], np.float32), (len(b), 1)),
                              "b2": np.zeros(len(b), np.float32)}
                else:
                    layers = {k: np.asarray(z[k], np.float32) for k in ("w1", "b1", "w2", "b2")}
            n, d = len(outputs), self.embedder.dim
            h = layers["w1"].shape[-1]
            if (layers["w1"].shape != (n, d, h) or layers["b1"].shape != (n, h) or layers["w2"].shape != (n, h)
                    or layers["b2"].shape != (n,)):
                raise ConfigError(f"{self.folder / WEIGHTS_FILE}: head of shape {layers['w1'].shape} does not fit "
                                  f"a {d}-d embedder with {n} outputs")
            self.thresholds = {k: float(config["thresholds"][k]) for k in outputs}
            self.embedder.load()
            self.outputs = outputs
            self._layers = layers

    def heads(self) -> dict[str, tuple[dict[str, np.ndarray], float]]:
        """Each output's layers (``w1`` (d, h), ``b1`` (h,), ``w2`` (h,), ``b2`` ()) and threshold:
        what ``train-multilingual --keep-existing`` keeps."""
        self.load()
        z = self._layers
        assert z is not None
        return {k: ({name: z[name][i] for name in ("w1", "b1", "w2", "b2")}, self.thresholds[k])
                for i, k in enumerate(self.outputs)}

    def read_many(self, texts: list[str]) -> list[MultilingualReading]:
        self.load()
        z = self._layers
        assert z is not None
        x = self.embedder.embed(texts)  # (n, d)
        hidden = np.maximum(np.einsum("nd,odh->noh", x, z["w1"]) + z["b1"], 0.0)  # (n, outputs, h)
        logit = np.clip(np.einsum("noh,oh->no", hidden, z["w2"]) + z["b2"], -60.0, 60.0)
        p = 1.0 / (1.0 + np.exp(-logit))  # (n, outputs)
        out = []
        for row in p.astype(float):
            probs = dict(zip(self.outputs, row))
            moderate, imminent, other = probs["moderate"], probs.get("imminent"), probs.get("other")
            low = max(probs["low"], moderate)  # >= moderate implies >= low
            # The emergency needs the protocol's own threshold as well: a message the head does not
            # read as risk is never an emergency.
            level = ("imminent" if moderate >= self.thresholds["moderate"] and imminent is not None
                     and imminent >= self.thresholds["imminent"]
                     else "moderate" if moderate >= self.thresholds["moderate"]
                     else "low" if low >= self.thresholds["low"] else "none")
            # Someone else's risk: only for a message the head routes (a check-in is the person's).
            subject = ("other" if other is not None and other >= self.thresholds["other"]
                       and level in ("moderate", "imminent") else "self")
            out.append(MultilingualReading(float(low), float(moderate), level,
                                           None if imminent is None else float(imminent),
                                           None if other is None else float(other), subject))
        return out

    def read(self, text: str) -> MultilingualReading:
        return self.read_many([text])[0]
