"""The learned layer of the risk screen: all-MiniLM-L6-v2 fine-tuned to read risk.

The backbone is the sentence model memory uses (shipped in a registry package); training
(:mod:`empathic_agent.training.risk`) adapts its top layers with LoRA (the same plain-torch adapters
as the text emotion encoder, :mod:`empathic_agent.encode.text_model`) on messages the contributors
wrote and labelled from the taxonomy (``safety/data/GUIDE.md``; model card in
``safety/weights/MODEL_CARD.md``).  At load time the adapters are merged into the weights, so
reading a message costs one MiniLM forward plus a linear head.  A frozen backbone was tried first
and could not tell hard negatives ("this deadline is killing me") from risk at a usable
false-alarm rate (leave-one-writer-out recall 0.62-0.74 at 4-6 % false alarms).

Per text, the head gives:

* ``at_least`` — P(level >= low), P(>= moderate), P(>= high), P(>= imminent): an *ordinal* head
  (cumulative link, one sigmoid per threshold, made monotone);
* ``subject`` — P(none), P(self), P(other at risk);
* ``dimensions`` — one sigmoid per taxonomy dimension (multi-label).

A reader may be an average of several such models (``"members"`` in ``config.json``, each a
``.npz`` in the same folder, made by ``empathic safety combine``): each member reads the message and
their probabilities are averaged.

**The second look** (``second_look.json``, made by ``empathic safety train-second-look``): a
logistic regression on the reader's own pooled vector (no extra forward) trained on quiet risk —
practical method questions, quiet preparation, calm imminent risk — and the hard negatives that share
its surface, written by contributors whose words the reader never read, with ordinary help-seekers'
turns as negatives.  The ordinal head, trained mostly on risk said outright, reads many such
messages as ``low`` or nothing; P(>= high) of the second look at its (strict) threshold raises them
to ``high`` (:mod:`empathic_agent.safety.detect`).  The head belongs to the reader whose vectors it
was trained on: the file names the reader's weights by hash, and a mismatch disables it.

A message is read whole and, when it is long, window by window (a few sentences each: risk said in
the middle of a long message should not be averaged away by the mean pooling); each output is the
maximum over those views, and a dimension's evidence is the view that showed it most.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError, ModelError
from empathic_agent.lifecycle import Loadable
from empathic_agent.safety.taxonomy import DIMENSIONS, LEVELS, SUBJECTS

if TYPE_CHECKING:
    import torch

__all__ = ["RiskModel", "LearnedReading", "WEIGHTS_DIR", "split_sentences", "MAX_TOKENS",
           "CONFIG_FORMAT", "SECOND_LOOK_FILE", "SECOND_LOOK_FORMAT", "weights_digest"]

log = logging.getLogger(__name__)

WEIGHTS_DIR: Final = Path(__file__).resolve().parent / "weights"
CONFIG_FORMAT: Final = "empathic-risk-v1"
#: The weights of a single-model reader (a combined reader lists its members' files).
WEIGHTS_FILE: Final = "risk_model.npz"
#: The second look's head (optional; see the module docstring).
SECOND_LOOK_FILE: Final = "second_look.json"
SECOND_LOOK_FORMAT: Final = "empathic-second-look-v1"
#: A message longer than this is also read in windows of a few sentences: mean pooling over a long
#: message (and truncation at :data:`MAX_TOKENS`) would dilute risk said in its middle.  Shorter
#: messages are read whole only: a short sentence out of its message ("I'll be alright.") reads
#: as something else (the training run measured false alarms tripling with sentence views).
LONG_MESSAGE_CHARS: Final[int] = 300
#: Target length of a window, and the cap on windows per message (bounds the latency).
WINDOW_CHARS: Final[int] = 220
MAX_WINDOWS: Final[int] = 6
#: Tokens read per view: chat messages are short; a long one is also read window by window.
MAX_TOKENS: Final[int] = 128

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Windows of consecutive sentences (each about :data:`WINDOW_CHARS`, overlapping by one
    sentence) of a long message; [] for a message shorter than :data:`LONG_MESSAGE_CHARS`."""
    if len(text or "") <= LONG_MESSAGE_CHARS:
        return []
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
    windows: list[str] = []
    i = 0
    while i < len(parts) and len(windows) < MAX_WINDOWS:
        j, size = i, 0
        while j < len(parts) and (j == i or size + len(parts[j]) <= WINDOW_CHARS):
            size += len(parts[j]) + 1
            j += 1
        windows.append(" ".join(parts[i:j]))
        if j >= len(parts):
            break
        i = max(i + 1, j - 1)
    return windows if len(windows) > 1 else []


@dataclass(frozen=True)
class LearnedReading:
    """The learned layer's reading of one message (maxima over its views)."""

    #: P(level >= low), P(>= moderate), P(>= high), P(>= imminent).
    at_least: tuple[float, float, float, float]
    subject: dict[str, float]
    dimensions: dict[str, float]
    #: Per dimension: the sentence (or the whole message) that scored it highest.
    evidence: dict[str, str]
    #: The second look's P(level >= high) (None: no second look loaded).
    second_look: float | None = None

    def level(self, thresholds: Sequence[float]) -> str:
        """The highest level reached by a chain of thresholds: level k needs P(>= k) at its
        threshold *and* every lower level reached (a message that is not even ``low`` is never
        ``imminent``, whatever the thresholds' order)."""
        return LEVELS[chain_level(self.at_least, thresholds)]

    def expected_level(self) -> float:
        """E[level index] = sum of the P(>= k): a continuous severity in [0, 4]."""
        return float(sum(self.at_least))

    def to_dict(self) -> dict[str, Any]:
        return {"at_least": {LEVELS[k + 1]: round(p, 4) for k, p in enumerate(self.at_least)},
                "subject": {k: round(v, 4) for k, v in self.subject.items()},
                "dimensions": {k: round(v, 4) for k, v in self.dimensions.items() if v >= 0.05}} | (
                    {} if self.second_look is None else {"second_look": round(self.second_look, 4)})


def chain_level(at_least: Sequence[float], thresholds: Sequence[float]) -> int:
    """Index of the highest level k with P(>= j) >= threshold j for every j <= k."""
    idx = 0
    for k, (p, t) in enumerate(zip(at_least, thresholds), start=1):
        if p < t:
            break
        idx = k
    return idx


def head_outputs(logits: "torch.Tensor", n_sub: int = len(SUBJECTS)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head logits (N, 4 + 3 + D) → P(>= k) (N, 4, monotone), subject (N, 3), dimensions (N, D)."""
    import torch

    n_ord = len(LEVELS) - 1
    p_ord = torch.sigmoid(logits[:, :n_ord]).cummin(dim=1).values
    p_sub = torch.softmax(logits[:, n_ord:n_ord + n_sub], dim=1)
    p_dim = torch.sigmoid(logits[:, n_ord + n_sub:])
    return p_ord.numpy(), p_sub.numpy(), p_dim.numpy()


def load_adapted(backbone: str, cache_dir: str | Path, weights: Path, arch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A MiniLM with trained LoRA adapters merged into its weights, and its linear head (tokenizer,
    model, head; eval mode): the learned layers of the safety stage all load this way."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from empathic_agent.encode import text_model as tm
    from empathic_agent.models import resolve_model

    resolved = resolve_model("embeddings", backbone, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(resolved.location)
    model = AutoModel.from_pretrained(resolved.location, dtype=torch.float32).eval()
    with np.load(weights) as z:
        state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
    tm.load_adapter_state(model, {k: v for k, v in state.items() if not k.startswith("head.")},
                          scale=arch["lora_alpha"] / arch["lora_rank"])
    head = torch.nn.Linear(state["head.weight"].shape[1], state["head.weight"].shape[0])
    head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    return tokenizer, model, head.eval()


def weights_digest(path: str | Path) -> str:
    """First 16 hex digits of a weights file's SHA-256: names the reader a second look belongs to."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class RiskModel(Loadable):
    """The fine-tuned reader (torch).  Loads on first use, from ``weights_dir`` (default: the
    packaged weights) and the MiniLM backbone the registry resolves offline (loading lifecycle:
    :class:`Loadable`)."""

    kind = "reader"
    name = "risk"
    error_class = ModelError

    def __init__(self, weights_dir: str | Path | None = None, *, backbone: str | None = None,
                 cache_dir: str | Path | None = None, second_look: bool = True) -> None:
        super().__init__()
        self.weights_dir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
        self.backbone_spec = backbone
        self.cache_dir = cache_dir
        self.config: dict[str, Any] = {}
        #: Load the second look when its file is there (see the module docstring).
        self.use_second_look = second_look
        #: (weights, bias) on the pooled vector, and its config; None until loaded / without one.
        self._second: tuple[np.ndarray, float] | None = None
        self.second_look_config: dict[str, Any] = {}
        self._tokenizer: Any = None
        #: (merged MiniLM, head) per member; None until loaded.
        self._members: list[tuple[Any, Any]] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def member_files(config: dict[str, Any]) -> list[str]:
        """The weight files of the reader's members (one for a single model)."""
        return list(config.get("members") or [WEIGHTS_FILE])

    # -- loading -----------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        path = self.weights_dir / "config.json"
        if not path.is_file():
            raise ConfigError(f"risk model weights not found in {self.weights_dir} (config.json and risk_model.npz); "
                              "train them with 'empathic safety train'")
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("format") != CONFIG_FORMAT:
            raise ConfigError(f"{path} has format {config.get('format')!r}; this code reads {CONFIG_FORMAT}")
        missing = [f for f in self.member_files(config) if not (self.weights_dir / f).is_file()]
        if missing:
            raise ConfigError(f"risk model weights not found in {self.weights_dir}: {', '.join(missing)}; "
                              "train them with 'empathic safety train'")
        return config

    @property
    def thresholds(self) -> tuple[float, ...]:
        """Thresholds on P(>= low / moderate / high / imminent), chosen by the training script on
        leave-one-writer-out predictions (never on the test set)."""
        return tuple(self.config.get("thresholds", (0.5, 0.5, 0.5, 0.5)))

    def _load_impl(self) -> None:
        config = self.read_config()
        cache_dir = self.cache_dir
        if cache_dir is None:
            from empathic_agent.settings import Settings

            cache_dir = Settings.from_env().cache_dir
        members = []
        for name in self.member_files(config):
            tokenizer, model, head = load_adapted(self.backbone_spec or config["backbone"], cache_dir,
                                                  self.weights_dir / name, config["architecture"])
            members.append((model, head))
        self.config, self._tokenizer = config, tokenizer
        self._members = members
        if self.use_second_look:
            self._load_second_look(config)

    def _load_second_look(self, config: dict[str, Any]) -> None:
        path = self.weights_dir / SECOND_LOOK_FILE
        if not path.is_file():
            return
        sl = json.loads(path.read_text(encoding="utf-8"))
        if sl.get("format") != SECOND_LOOK_FORMAT:
            raise ConfigError(f"{path} has format {sl.get('format')!r}; this code reads {SECOND_LOOK_FORMAT}")
        reader = weights_digest(self.weights_dir / self.member_files(config)[0])
        if sl.get("reader") != reader:
            # Its vectors came from another reader: the head would read noise.  Retrain it.
            log.warning("safety: %s belongs to another reader (%s, this one %s): second look off; run "
                        "'empathic safety train-second-look'", path, sl.get("reader"), reader)
            return
        self._second = (np.asarray(sl["weights"], np.float32), float(sl["bias"]))
        self.second_look_config = sl

    @property
    def second_look_threshold(self) -> float | None:
        """P(>= high) of the second look that raises a message to ``high``; None without one."""
        return float(self.second_look_config["threshold"]) if self._second is not None else None

    # -- reading -----------------------------------------------------------------------------------
    def _forward(self, texts: Sequence[str]) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
        """Each member's head outputs, and the first member's pooled vectors (N, 384)."""
        import torch

        from empathic_agent.encode.text_model import mean_pool

        self.load()
        assert self._members is not None
        with self._lock, torch.inference_mode():
            batch = self._tokenizer(list(texts), truncation=True, max_length=MAX_TOKENS, padding=True,
                                    return_tensors="pt")
            outs, pooled = [], []
            for model, head in self._members:
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                pooled.append(mean_pool(out.last_hidden_state, batch["attention_mask"]))
                outs.append(head_outputs(head(pooled[-1])))
            return outs, pooled[0].numpy()

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts → P(>= k) (N, 4), subject probabilities (N, 3), dimension probabilities (N, D)."""
        outs, _ = self._forward(texts)
        # The members' probabilities are averaged (P(>= k) stays monotone: a mean of monotone rows).
        return tuple(np.mean([o[i] for o in outs], axis=0) for i in range(3))  # type: ignore[return-value]

    def pooled(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """The first member's pooled vectors (N, 384): what the second look reads."""
        parts = [self._forward(texts[i:i + batch])[1] for i in range(0, len(texts), batch)]
        return np.vstack(parts) if parts else np.zeros((0, 384), np.float32)

    def second_look_p(self, pooled: np.ndarray) -> np.ndarray | None:
        """The second look's P(>= high) of pooled vectors; None without a second look."""
        if self._second is None:
            return None
        w, b = self._second
        return 1.0 / (1.0 + np.exp(-(pooled.astype(np.float64) @ w + b)))

    def read(self, text: str) -> LearnedReading:
        views = [text] + (split_sentences(text) if self.config.get("sentence_views", True) else [])
        outs, pooled = self._forward(views)
        p_ord, p_sub, p_dim = (np.mean([o[i] for o in outs], axis=0) for i in range(3))
        p_second = self.second_look_p(pooled)
        dims = tuple(self.config.get("dimensions", DIMENSIONS))
        subjects = tuple(self.config.get("subjects", SUBJECTS))
        # Subject from the view that carries the most risk (the whole message when none does).
        top = int(np.argmax(p_ord[:, 1])) if p_ord[:, 1].max() >= 0.5 else 0
        best = p_dim.argmax(axis=0)
        return LearnedReading(
            at_least=tuple(float(v) for v in p_ord.max(axis=0)),  # type: ignore[arg-type]
            subject={s: float(p_sub[top, i]) for i, s in enumerate(subjects)},
            dimensions={d: float(p_dim[:, i].max()) for i, d in enumerate(dims)},
            evidence={d: views[int(best[i])] for i, d in enumerate(dims)},
            second_look=None if p_second is None else float(p_second.max()),
        )
