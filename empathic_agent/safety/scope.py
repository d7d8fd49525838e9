"""Is a pattern hit about now, and about the speaker?  The scope check of the risk screen.

The pattern layer (:mod:`empathic_agent.safety.detect`) fires on the words of risk wherever they
stand: "I used to cut myself" in a message about six years of recovery, "my brother tried to kill
himself" about a night in 2009, "goodbye" at a leaving party, "I'd never hurt myself".  On the
training writers' hard negatives, out of fold, such hits were 8 % of the messages and almost every
false alarm of the screen.  Cleaning them up phrase by phrase is what the screen was built to stop
doing; instead, two independent readings have to agree that a hit is out of scope before it is
discounted:

1. **the scope head** — a logistic regression on the *frozen* all-MiniLM-L6-v2 sentence embedding
   (the memory's embedder), trained on the training messages the patterns fire on: P(this message
   carries current risk | a pattern fired).  It reads time frame, whose risk and framing, the one
   thing a pattern cannot see;
2. **the learned reader** (:mod:`empathic_agent.safety.learned`), a separately fine-tuned MiniLM,
   must also find no risk: P(level >= low) under :attr:`PatternScope.reader_cut`.

Both cuts are chosen by :func:`empathic_agent.training.risk.train_scope` on leave-one-writer-out
predictions of both readers (never on a test set): the most hard negatives freed such that no
out-of-fold risk message at moderate or above is silenced.  Never discounted (:func:`eligible`): a
pattern of imminent danger (but a goodbye), a message that says it is happening now, abuse or harm
to others, and a message too short to carry any context.  Only pattern hits are affected: the
check costs one frozen MiniLM forward (~7 ms) and runs only when a pattern fired and the reader
disagreed, i.e. on a small share of messages.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.safety.learned import WEIGHTS_DIR

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.settings import Settings

__all__ = ["PatternScope", "eligible", "SCOPE_FILE", "SCOPE_FORMAT", "NEVER_DISCOUNTED", "NEVER_DISCOUNTED_CATEGORIES",
           "GOODBYE_PATTERNS",
           "MIN_CONTEXT_WORDS"]

log = logging.getLogger(__name__)

SCOPE_FILE: Final = "scope.json"
SCOPE_FORMAT: Final = "empathic-scope-v1"
#: Pattern levels that are never discounted, whatever both readers say: a wrong "out of scope" on
#: "the pills are in my hand" costs too much ...
NEVER_DISCOUNTED: Final = frozenset({"imminent"})
#: ... except a goodbye, the one imminent warning sign ordinary life says every day ("this is my last
#: message in this group, I'm leaving the company").  Out of fold this freed 8 more ordinary goodbyes
#: of 25 and silenced none of the 11 imminent goodbyes of 12 words or more: the reader read each of
#: them P(>= low) 0.48 or more.  Said with anything happening now ("tonight") it is never discounted.
GOODBYE_PATTERNS: Final = frozenset({"never-hear-again", "last-message", "said-goodbyes"})
#: Pattern categories never discounted: danger from someone else (abuse) or to someone else is not
#: over because the message sounds calm or speaks of the past ("I was sexually assaulted by my
#: coach" read out of scope by both readers in a first version).  Out of fold this costs 1 of the 153
#: hard negatives freed.
NEVER_DISCOUNTED_CATEGORIES: Final = frozenset({"abuse", "harm_others"})
#: A message shorter than this is never discounted: what puts risk words out of scope — a time
#: ("in 2009", "ten years ago"), a recovery, someone else's story, a story at all — takes words,
#: and a short disclosure ("My little sister is self-harming.") gives the scope head nothing to
#: read.  Out of fold every hard negative freed had at least 10 words; at 12, 150 of 153 stay freed.
MIN_CONTEXT_WORDS: Final[int] = 12


def eligible(text: str, hits: Sequence[tuple[str, str]], *, now: bool) -> bool:
    """May the pattern hits of ``text`` — (category, pattern name) pairs — be discounted at all
    (before either reading)?"""
    from empathic_agent.safety.detect import PATTERN_META

    if not hits or now or len(text.split()) < MIN_CONTEXT_WORDS:
        return False
    if {cat for cat, _ in hits} & NEVER_DISCOUNTED_CATEGORIES:
        return False
    return all(PATTERN_META[name][1] not in NEVER_DISCOUNTED or name in GOODBYE_PATTERNS for _, name in hits)


class PatternScope:
    """The scope head and its two cuts (``safety/weights/scope.json``).

    ``embedder`` is the frozen sentence embedder the head was trained on — in an agent, memory's
    (``build_services`` shares it); built from the settings when None; loads on first use.
    Thread-safe: the embedder serialises its forwards."""

    def __init__(self, embedder: "Embedder | None" = None, *, weights: str | Path | None = None,
                 settings: "Settings | None" = None) -> None:
        self.path = Path(weights) if weights else WEIGHTS_DIR / SCOPE_FILE
        self._embedder = embedder
        self._settings = settings
        self._w: np.ndarray | None = None
        self._b = 0.0
        self.scope_cut = 0.0
        self.reader_cut = 0.0
        self.config: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings", *, embedder: "Embedder | None" = None) -> "PatternScope":
        weights = Path(settings.safety_model) / SCOPE_FILE if settings.safety_model else None
        return cls(embedder, weights=weights if weights is None or weights.is_file() else None, settings=settings)

    def load(self) -> None:
        if self._w is not None:
            return
        with self._lock:
            if self._w is not None:
                return
            if not self.path.is_file():
                raise ConfigError(f"scope head not found: {self.path}; train it with 'empathic safety train-scope'")
            config = json.loads(self.path.read_text(encoding="utf-8"))
            if config.get("format") != SCOPE_FORMAT:
                raise ConfigError(f"{self.path} has format {config.get('format')!r}; this code reads {SCOPE_FORMAT}")
            w = np.asarray(config["weights"], dtype=np.float64)
            if self._embedder is None:
                from empathic_agent.memory.embedder import MiniLMEmbedder
                from empathic_agent.settings import Settings

                self._embedder = MiniLMEmbedder.from_settings(self._settings or Settings.from_env())
            self._embedder.load()
            if w.shape != (self._embedder.dim,):
                raise ConfigError(f"{self.path}: {w.shape[0]} weights for a {self._embedder.dim}-d embedder")
            self.config = config
            self._b = float(config["bias"])
            self.scope_cut = float(config["scope_cut"])
            self.reader_cut = float(config["reader_cut"])
            self._w = w

    @property
    def embedder(self) -> "Embedder":
        self.load()
        assert self._embedder is not None
        return self._embedder

    def p_current(self, texts: Sequence[str]) -> np.ndarray:
        """P(current risk | a pattern fired) per text, shape (n,)."""
        self.load()
        assert self._w is not None
        z = self.embedder.embed(list(texts)).astype(np.float64) @ self._w + self._b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))

    def discounts(self, text: str, hits: Sequence[tuple[str, str]], reader_p_low: float, *,
                  now: bool) -> float | None:
        """The scope head's P when the pattern hits of ``text`` are to be discounted, else None.

        ``hits``: (category, pattern name) of what the patterns found; ``reader_p_low``: the
        learned reader's P(level >= low); ``now``: the message says it is happening now."""
        if not eligible(text, hits, now=now):
            return None
        self.load()
        if not reader_p_low < self.reader_cut:  # also False for NaN
            return None
        p = float(self.p_current([text])[0])
        return p if p < self.scope_cut and not math.isnan(p) else None
