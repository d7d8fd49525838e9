"""A learned strategy predictor: which support strategy would a skilled supporter use next?

Trained on ESConv's human supporters (``empathic plan train``; :mod:`empathic_agent.training.planner`),
it reads the conversation so far — what the agent would know at this point — and gives a
distribution over ESConv's eight strategies.  The register planner (:mod:`.register`) takes its
choice from that distribution, inside hard constraints (safety, an explicit request for advice,
mixed signals, no suggestion before exploring) that hold whatever the model predicts.

**Features** (:func:`features`; one function for training and serving, so they cannot drift):

* the person's latest words and the agent's previous reply, each as an all-MiniLM-L6-v2 sentence
  embedding (the frozen embedder memory uses; 384 + 384);
* the strategies used so far: the last two (one-hot), the share of each, how many;
* the turn number (log and phase buckets) and whether the agent spoke last (ESConv has runs of
  supporter turns; live, the person always spoke last);
* the person's fused emotional state (VAD, confidence, top category) and its trajectory;
* cues the rules read too: a question, a request for advice, thanks or goodbye, a greeting, "is
  it normal", the message length.

**Model**: standardised features -> one hidden layer (ReLU) -> eight logits, averaged over a few
members trained with different seeds; a temperature fitted on ESConv valid, and one offset per
strategy family, chosen on valid, that keeps the planned mix of families near the human one (an
argmax alone plans suggestions twice as often as supporters make them).  numpy at run time: well under a millisecond per turn; the two
sentence embeddings cost one MiniLM forward (~10 ms on 2 cores).

The weights (``plan/weights/strategy_predictor.npz``) are a model of ESConv (academic research
use only): see ``plan/weights/MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Mapping, Sequence

import numpy as np

from empathic_agent.errors import ConfigError, ModelError
from empathic_agent.latent.constants import CATEGORIES
from empathic_agent.plan.register import _ADVICE, _CLOSING, _GREETING, _NORMAL, STRATEGIES

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.settings import Settings

__all__ = ["Dialogue", "StrategyPredictor", "features", "reader_pair", "FEATURE_VERSION", "WEIGHTS_PATH", "EMBED_DIM"]

WEIGHTS_PATH: Final[Path] = Path(__file__).parent / "weights" / "strategy_predictor.npz"
#: Bumped whenever :func:`features` changes (weights of another version are refused).
FEATURE_VERSION: Final[int] = 1
EMBED_DIM: Final[int] = 384
_NONE = len(STRATEGIES)  # "no strategy yet" slot of the one-hot


@dataclass(frozen=True)
class Dialogue:
    """The conversation at the moment the agent answers (what the predictor reads)."""

    #: The person's words since the agent last spoke.
    text: str
    #: The agent's previous reply ("" at the start).
    agent_text: str = ""
    #: Strategies the agent used so far, oldest first.
    previous_strategies: tuple[str, ...] = ()
    #: Which of the person's messages this is (1 = the first).
    turn_index: int = 1
    #: The person's fused state now (VAD), its confidence and top category; None = unknown.
    state: tuple[float, float, float] | None = None
    confidence: float = 0.0
    top_category: str = "neutral"
    #: Fused valence of earlier turns, oldest first.
    valence_history: tuple[float, ...] = ()
    #: The agent spoke last (a second supporter turn in a row; never live).
    follows_agent: bool = False


def reader_pair(d: Dialogue) -> tuple[str, str]:
    """What the fine-tuned next-strategy reader reads (one function for training and serving):
    (the agent's previous reply followed by the last two strategies used — its end is kept when
    it is long —, the person's words since)."""
    used = " then ".join(d.previous_strategies[-2:]) or "none yet"
    return f"{' '.join((d.agent_text or '').split())} [strategies: {used}]", (d.text or "").strip() or "(nothing)"


def features(d: Dialogue, text_vec: np.ndarray, agent_vec: np.ndarray | None) -> np.ndarray:
    """The feature vector of one dialogue moment (see the module docstring)."""
    prev = [STRATEGIES.index(s) for s in d.previous_strategies if s in STRATEGIES]
    last = np.zeros(len(STRATEGIES) + 1, np.float32)
    last[prev[-1] if prev else _NONE] = 1.0
    before = np.zeros(len(STRATEGIES) + 1, np.float32)
    before[prev[-2] if len(prev) >= 2 else _NONE] = 1.0
    share = np.bincount(prev, minlength=len(STRATEGIES)).astype(np.float32) / max(1, len(prev))
    t = max(1, int(d.turn_index))
    turn = np.array([np.log1p(t), t == 1, t == 2, t == 3, 4 <= t <= 8, t >= 9, np.log1p(len(prev))], np.float32)
    v, a, dom = d.state if d.state is not None else (0.0, 0.0, 0.0)
    hist = list(d.valence_history)
    state = np.array([v, a, dom, d.confidence if d.state is not None else 0.0, d.state is not None,
                      v - hist[0] if hist else 0.0, v - hist[-3] if len(hist) >= 3 else 0.0], np.float32)
    top = np.zeros(len(CATEGORIES), np.float32)
    if d.state is not None and d.top_category in CATEGORIES:
        top[CATEGORIES.index(d.top_category)] = 1.0
    text = (d.text or "").strip()
    cues = np.array([text.endswith("?"), "?" in text, bool(_ADVICE.search(text)), bool(_CLOSING.match(text)),
                     bool(_GREETING.match(text)), bool(_NORMAL.search(text)), np.log1p(len(text.split())),
                     d.follows_agent, bool(d.agent_text)], np.float32)
    agent = agent_vec if agent_vec is not None else np.zeros(EMBED_DIM, np.float32)
    return np.concatenate([np.asarray(text_vec, np.float32), np.asarray(agent, np.float32),
                           last, before, share, turn, state, top, cues])


class StrategyPredictor:
    """The trained predictor (numpy) with the sentence embedder it reads through.

    ``distribution(dialogue)`` embeds the two texts and returns {strategy: probability};
    ``from_vectors`` does the same from embeddings already made (training, evaluation).
    """

    def __init__(self, weights: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                 embedder: "Embedder | None" = None) -> None:
        if int(meta.get("feature_version", -1)) != FEATURE_VERSION:
            raise ModelError(f"strategy predictor weights are for features v{meta.get('feature_version')}, "
                             f"this code makes v{FEATURE_VERSION}: re-train with `empathic plan train`")
        if list(meta.get("strategies", [])) != list(STRATEGIES):
            raise ModelError("strategy predictor weights name other strategies than the planner's")
        self.mean = np.asarray(weights["mean"], np.float32)
        self.scale = np.asarray(weights["scale"], np.float32)
        # One member or an ensemble (a leading members axis).
        self.w1 = np.asarray(weights["w1"], np.float32).reshape((-1, *np.shape(weights["w1"])[-2:]))
        self.b1 = np.asarray(weights["b1"], np.float32).reshape((self.w1.shape[0], -1))
        self.w2 = np.asarray(weights["w2"], np.float32).reshape((self.w1.shape[0], *np.shape(weights["w2"])[-2:]))
        self.b2 = np.asarray(weights["b2"], np.float32).reshape((self.w1.shape[0], -1))
        #: Added to the logits: moves the planned mix towards the human one (chosen on valid).
        self.bias = np.asarray(weights.get("bias", np.zeros(len(STRATEGIES))), np.float32)
        self.temperature = float(meta.get("temperature", 1.0))
        self.meta = dict(meta)
        self.embedder = embedder
        #: The fine-tuned next-strategy reader (a :class:`~empathic_agent.evals.pair_model.PairClassifier`)
        #: whose log-probabilities, times ``reader_weight``, are added to the logits; None: the MLP alone.
        self.reader: Any = None
        self.reader_weight = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path | str = WEIGHTS_PATH, *, embedder: "Embedder | None" = None,
                  settings: "Settings | None" = None) -> "StrategyPredictor":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no strategy predictor weights at {path}; train them with `empathic plan train` "
                              "or set planner=rules")
        with np.load(path, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
        model = cls(weights, meta, embedder)
        reader = meta.get("reader") or {}
        if reader.get("weight"):
            from empathic_agent.evals.pair_model import PairClassifier

            model.reader = PairClassifier(str(reader["name"]), path.parent, settings=settings)
            if not model.reader.available():
                raise ConfigError(f"the strategy predictor at {path} reads with {reader['name']!r}, whose weights "
                                  f"are not in {path.parent}; train them with `empathic plan train-reader`")
            model.reader_weight = float(reader["weight"])
        return model

    @classmethod
    def from_settings(cls, settings: "Settings", *, embedder: "Embedder | None" = None) -> "StrategyPredictor":
        if embedder is None:
            from empathic_agent.memory.embedder import MiniLMEmbedder

            embedder = MiniLMEmbedder.from_settings(settings)
        return cls.from_file(WEIGHTS_PATH, embedder=embedder, settings=settings)

    def load(self) -> None:
        """Load the sentence embedder and the reader now (otherwise the first turn does)."""
        if self.embedder is not None:
            self.embedder.load()
        if self.reader is not None:
            self.reader.load()

    def reader_log_probs(self, dialogues: Sequence[Dialogue]) -> np.ndarray | None:
        """The reader's calibrated log-probabilities (n, 8) of these moments; None without a reader."""
        if self.reader is None:
            return None
        pairs = [reader_pair(d) for d in dialogues]
        p = self.reader.predict([c for c, _ in pairs], [r for _, r in pairs])["strategy"]
        return np.log(np.clip(p, 1e-6, 1.0)).astype(np.float32)

    def logits(self, x: np.ndarray, reader_logp: np.ndarray | None = None) -> np.ndarray:
        """Logits of feature rows (n, d) -> (n, 8), temperature and bias applied; with a reader,
        its log-probabilities of the same rows (:meth:`reader_log_probs`) are required."""
        z = (np.atleast_2d(x) - self.mean) / self.scale
        # An ensemble: w1 (members, d, h), b1 (members, h), w2 (members, h, 8), b2 (members, 8);
        # the members' logits are averaged.
        h = np.maximum(np.einsum("nd,mdh->mnh", z, self.w1) + self.b1[:, None, :], 0.0)
        out = np.einsum("mnh,mhk->mnk", h, self.w2) + self.b2[:, None, :]
        logits = out.mean(axis=0) / self.temperature + self.bias
        if self.reader is not None:
            # Silently planning without the reader would be a different planner than the one chosen.
            if reader_logp is None:
                raise ConfigError("this strategy predictor reads with its next-strategy reader: pass reader_logp")
            logits = logits + self.reader_weight * np.atleast_2d(reader_logp)
        return np.asarray(logits)

    def probabilities(self, x: np.ndarray, reader_logp: np.ndarray | None = None) -> np.ndarray:
        z = self.logits(x, reader_logp)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def from_vectors(self, dialogues: Sequence[Dialogue], text_vecs: np.ndarray,
                     agent_vecs: Sequence[np.ndarray | None],
                     reader_logp: np.ndarray | None = None) -> list[dict[str, float]]:
        x = np.stack([features(d, t, a) for d, t, a in zip(dialogues, text_vecs, agent_vecs)])
        if reader_logp is None:
            reader_logp = self.reader_log_probs(dialogues)
        return [{s: float(p) for s, p in zip(STRATEGIES, row)} for row in self.probabilities(x, reader_logp)]

    def distribution(self, d: Dialogue) -> dict[str, float]:
        """{strategy: probability} for this moment of the conversation (blocking: one MiniLM forward,
        and one more with the reader)."""
        if self.embedder is None:
            raise ConfigError("the strategy predictor needs a sentence embedder to read the dialogue")
        texts = [d.text or ""] + ([d.agent_text] if d.agent_text else [])
        vecs = self.embedder.embed(texts)
        return self.from_vectors([d], vecs[:1], [vecs[1] if d.agent_text else None])[0]


def top_strategies(dist: Mapping[str, float], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` most probable strategies, most probable first."""
    return sorted(dist.items(), key=lambda kv: -kv[1])[:k]
