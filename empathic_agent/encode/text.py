"""The text emotion encoder: a message -> a `Reading` (modality "text").

Backbone: all-MiniLM-L6-v2 (Apache-2.0), found offline through the model registry
(``resolve_model("embeddings", "all-minilm-l6-v2", cache_dir)``), run as a plain transformers
forward with mean pooling (a single ``SentenceTransformer.encode`` call costs ~100 ms of overhead,
the bare forward a few ms).  On top of it, the trained parts committed in ``weights/text/``:
LoRA adapters of the top layers (merged into the weights at load time), a heteroscedastic VAD
head trained on EmoBank and a category head trained on GoEmotions' Ekman grouping, plus their
calibration (see `training.text` and the model card).  The heads read the mean-pooled last layer
and the mean-pooled last *frozen* layer side by side (the middle layer carries more of arousal
and dominance).

How one message becomes a reading:

1. **Model outputs.**  VAD mean and variance from the VAD head, the variance scaled per dimension
   so that on EmoBank dev the mean squared z-score is 1 (residual calibration); category
   probabilities from the category head, logit-adjusted towards balanced classes and
   temperature-scaled on GoEmotions dev (see ``config.json``).
2. **Doubt.**  The heads only know English sentences like their training data, so three measured
   properties of the *input* give a doubt ``u`` in [0, 1]:

   * ``u_words = 2 ** -n_words``: evidence grows with the number of words (letter runs); each word
     halves the doubt.  Empty or emoji-only text has no words (``u = 1``), "ok" has one (0.5).
   * ``u_ood``: Mahalanobis distance of the sentence from the training sentences' distribution,
     relative to in-domain (dev) sentences: 0 up to the dev 95th percentile, rising (log-linearly)
     to 1 at ``OOD_FULL_RATIO`` times it.  Measured on the mean-pooled states of the last layer
     that fine-tuning left frozen: the tuned top layers map anything unfamiliar onto "neutral",
     where it looks typical, while the frozen layers still set code, other languages and
     gibberish apart from English sentences.
   * ``u_truncated = TRUNCATION_DOUBT * (unread fraction)``: a paste longer than the backbone's
     maximum length is read only up to it.

   * ``u_style = STYLE_DOUBT * (number of kinds of marker, at most 2)``: writing the training
     sentences rarely have and whose literal reading is unreliable — sarcasm and irony markers
     ("/s", "yeah right", "totally fine", "oh great", "just perfect"), chat slang and
     abbreviations ("idk", "ngl", "smh", "lowkey", "fr") and drawn-out words ("sooo", "ughhh").
     The MiniLM states do not set these apart (they look like ordinary English), so they are
     recognised on the surface; the reading is then wider, and in fusion voice and face count
     more.

   Combined as independent reasons to doubt,
   ``u = 1 - (1-u_words)(1-u_ood)(1-u_truncated)(1-u_style)``.
3. **Reading.**  With probability ``1 - u`` the model is right and with ``u`` we know nothing
   beyond the population prior (neutral mean, ``PRIOR_VARIANCE`` = the variance of a uniform
   spread over [-1, 1]; uniform categories).  The reading is that mixture, moment-matched:
   mean ``(1-u) m``, variance ``(1-u) v + u PRIOR_VARIANCE + u (1-u) m^2``, categories
   ``(1-u) p + u / 7``.  So doubtful input comes out wide and flat, never as an error.

**In a conversation** (:meth:`TextEncoder.analyze` with contexts, :meth:`encode_in_context`) the
message is read together with what came before it (:class:`TextContext`): the last turns of both
sides (one more forward pass, truncated from the left so the most recent words are kept) and the
dialogue state the agent keeps (the previous fused reading).  A context head (``ContextHead``,
trained by `training.text_context` on conversational data) adds a correction to the category
logits, and the **conversation domain's calibration** (fitted on conversational dev data) replaces
the written-text one.  "Yeah, I'm doing alright now, but with minor injuries." after a story of a
tyre bursting on a busy road is read differently from the same words alone.  Without a context
(plain :meth:`encode`) the reading is exactly the utterance-only reading above, so the written-text
figures (EmoBank, GoEmotions) do not move.  Weights without a context head read every message
utterance-only.

Nothing here imports torch at module level; the model loads on first use.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.base import INPUT_TEXT, Encoder, EncoderError
from empathic_agent.errors import EmpathicError, ModelError
from empathic_agent.latent import CATEGORIES, MODALITY_TEXT, Reading, categories_to_vad
from empathic_agent.latent.prior import PRIOR_VARIANCE, mix_with_prior

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "TextEncoder",
    "TextAnalysis",
    "TextContext",
    "context_state_features",
    "DEFAULT_WEIGHTS_DIR",
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "PRIOR_VARIANCE",
    "OOD_FULL_RATIO",
    "TRUNCATION_DOUBT",
    "calibrate_outputs",
    "word_count",
]

#: Committed trained weights (adapters + heads + calibration), loaded on top of the backbone.
DEFAULT_WEIGHTS_DIR: Final[Path] = Path(__file__).resolve().parent / "weights" / "text"
WEIGHTS_FILE: Final[str] = "text_encoder.safetensors"
CONFIG_FILE: Final[str] = "config.json"
#: Format of config.json this code reads.
CONFIG_FORMAT: Final[int] = 1

#: Messages per forward pass in encode_batch (sorted by length, so padding stays small).
INFER_BATCH: Final[int] = 32
#: Longest max length used when the backbone does not say (MiniLM's sentence-transformers
#: config says 256; its position table allows 512).
DEFAULT_MAX_LENGTH: Final[int] = 256
#: Characters handed to the tokenizer at most: far beyond what fits in the max length, so a huge
#: paste costs bounded tokenisation time.
MAX_TOKENISED_CHARS: Final[int] = 20_000

#: Mahalanobis distance (as a multiple of the dev 95th percentile) at which input counts as fully
#: out of domain.  At the dev 95th percentile the doubt is 0; halfway (in log scale) it is 0.5.
#: Measured on the frozen layer: clear English sentences sit at 0.6-1.0x the dev 95th percentile,
#: other languages at 1.15-2x, code at 1.15-1.45x, the dev 99th percentile at ~1.17x.
OOD_FULL_RATIO: Final[float] = 1.5
#: Doubt from truncation per unread fraction: reading 10 % of a paste gives 0.45.
TRUNCATION_DOUBT: Final[float] = 0.5

_WORD = re.compile(r"[^\W\d_]+")

#: Doubt per kind of style marker (sarcasm, slang, drawn-out words); two kinds give 0.51.
STYLE_DOUBT: Final[float] = 0.3
_SARCASM = re.compile(
    r"(?:^|\s)/s\b|\byeah,? right\b|\bsure,? (?:jan|buddy)\b|\btotally (?:fine|great|normal|okay|ok)\b"
    r"|\boh,? (?:great|wonderful|joy|perfect|fantastic|lovely)\b|\bjust (?:great|perfect|wonderful|fantastic|lovely)\b"
    r"|\bas if\b|\bthanks a lot\b|\bwhat a (?:surprise|shock)\b|\bcould(?:n'?t| not) be better\b"
    r"|\bi just love (?:it )?when\b|\bfine, everything is fine\b|\beverything is (?:totally |just )?fine\b",
    re.IGNORECASE)
_SLANG = re.compile(
    r"\b(?:idk|ngl|smh|tbh|imo|lowkey|highkey|fr|frfr|deadass|bruh|af|fml|wtf|lmao|lmfao|rofl|ikr|istg|jk|tfw|mfw"
    r"|yolo|fomo|sus|no cap|bussin|big mood|it's giving|slay|rn|ppl|ur|pls|plz)\b",
    re.IGNORECASE)
_DRAWN_OUT = re.compile(r"([a-z])\1{2,}", re.IGNORECASE)


def style_markers(text: str) -> tuple[str, ...]:
    """The kinds of style marker in ``text``: ``sarcasm``, ``slang``, ``drawn_out`` (see
    ``u_style`` in the module docstring)."""
    kinds = []
    if _SARCASM.search(text):
        kinds.append("sarcasm")
    if _SLANG.search(text):
        kinds.append("slang")
    if _DRAWN_OUT.search(text):
        kinds.append("drawn_out")
    return tuple(kinds)


def word_count(text: str) -> int:
    """Number of words (runs of letters, any script): the evidence term's count."""
    return len(_WORD.findall(text))


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibrate_outputs(mean: NDArray[np.float64], logvar: NDArray[np.float64], logits: NDArray[np.float64],
                      calibration: dict[str, Any]) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                            NDArray[np.float64]]:
    """Raw head outputs -> calibrated (mean (N,3), variance (N,3), probabilities (N,7)).

    ``calibration`` holds ``category_prior`` (7), ``logit_adjustment`` (tau), ``temperature``,
    ``variance_scale`` (3) and ``fuse_category_vad`` (bool), as fitted on dev by `training.text`.
    """
    prior = np.asarray(calibration["category_prior"], dtype=np.float64)
    tau = float(calibration["logit_adjustment"])
    temperature = float(calibration["temperature"])
    probs = _softmax((np.asarray(logits, dtype=np.float64) - tau * np.log(prior)) / temperature)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.exp(np.asarray(logvar, dtype=np.float64))
    if calibration.get("fuse_category_vad"):
        # Product of Gaussians with the VAD region the categories imply (latent prototypes).
        pairs = [categories_to_vad(p) for p in probs]
        c_mean = np.array([m for m, _ in pairs])
        c_var = np.array([v for _, v in pairs])
        precision = 1.0 / var + 1.0 / c_var
        mean = (mean / var + c_mean / c_var) / precision
        var = 1.0 / precision
    var = var * np.asarray(calibration["variance_scale"], dtype=np.float64)
    return mean, var, probs


@dataclass(frozen=True)
class TextContext:
    """What the conversation said before a message.

    Attributes:
        turns: the previous turns of both sides, oldest first (the agent's replies included);
            only the last few are read (the config's ``context.turns``).
        state: the dialogue state before this message — the previous turn's fused reading (or its
            temporal prior); None at the start of a conversation.
    """

    turns: tuple[str, ...] = ()
    state: Reading | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(_as_text(t).strip() for t in self.turns if _as_text(t).strip()))
        if self.state is not None and not isinstance(self.state, Reading):
            raise TypeError(f"TextContext.state must be a Reading, got {type(self.state).__name__}")

    def text(self, max_turns: int) -> str:
        """The last ``max_turns`` turns as one passage (what the context head's forward pass reads)."""
        return " ".join(self.turns[-max_turns:]) if max_turns > 0 else ""


#: Dialogue-state features of the context head (see `context_state_features`).
CONTEXT_STATE_FEATURES: Final[int] = 13


def context_state_features(context: TextContext | None) -> NDArray[np.float64]:
    """The dialogue-state features of the context head (CONTEXT_STATE_FEATURES): has turns,
    has a state, the state's confidence, VAD mean (3) and categories (7)."""
    out = np.zeros(CONTEXT_STATE_FEATURES)
    if context is None:
        return out
    out[0] = 1.0 if context.turns else 0.0
    if context.state is not None:
        out[1] = 1.0
        out[2] = context.state.confidence
        out[3:6] = context.state.mean
        out[6:13] = context.state.categories
    return out


@dataclass(frozen=True)
class TextAnalysis:
    """A reading plus why it is as certain as it is (for debugging and evaluation)."""

    reading: Reading
    n_words: int
    seen_fraction: float
    mahalanobis: float | None
    doubt_words: float
    doubt_ood: float
    doubt_truncated: float
    doubt: float
    doubt_style: float = 0.0
    style: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reading": self.reading.to_dict(), "n_words": self.n_words,
                "seen_fraction": self.seen_fraction, "mahalanobis": self.mahalanobis,
                "doubt_words": self.doubt_words, "doubt_ood": self.doubt_ood,
                "doubt_truncated": self.doubt_truncated, "doubt_style": self.doubt_style,
                "style": list(self.style), "doubt": self.doubt}


def _as_text(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", errors="replace")
    # Lone surrogates cannot be tokenised; replace them like invalid UTF-8.
    return x.encode("utf-8", errors="replace").decode("utf-8")


class TextEncoder(Encoder):
    """all-MiniLM-L6-v2 + trained LoRA/heads -> calibrated text `Reading`.

    Args:
        weights_dir: folder with ``text_encoder.safetensors`` and ``config.json`` (default: the
            weights committed in the package).
        backbone: the backbone to load — a registry name, a local directory (default: the one the
            weights were trained on, from ``config.json``).  Must be all-MiniLM-L6-v2.
        cache_dir: the model cache of the registry (default: the settings' default).
        max_length: truncation length in tokens (default: the backbone's, 256).
        batch_size: messages per forward pass in `encode_batch`.
    """

    name = "minilm-emotion"
    modality = MODALITY_TEXT
    input_kind = INPUT_TEXT
    input_types = (str, bytes, bytearray)

    def __init__(self, weights_dir: Path | str | None = None, *, backbone: str | None = None,
                 cache_dir: Path | str | None = None, max_length: int | None = None,
                 batch_size: int = INFER_BATCH) -> None:
        super().__init__()
        self.weights_dir = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
        self.backbone_spec = backbone
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_length = max_length
        self.batch_size = max(1, int(batch_size))
        self.config: dict[str, Any] = {}
        self.backbone_path: str | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._heads: Any = None
        self._context_head: Any = None
        self._ood_mean: NDArray[np.float64] | None = None
        self._ood_precision: NDArray[np.float64] | None = None
        # Tokenizers are not safe to call from several threads at once; neither is our state.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "TextEncoder":
        return cls(cache_dir=settings.cache_dir)

    # -- loading -------------------------------------------------------------------------------
    def _read_config(self) -> dict[str, Any]:
        path = self.weights_dir / CONFIG_FILE
        if not path.is_file() or not (self.weights_dir / WEIGHTS_FILE).is_file():
            raise ModelError(f"text encoder weights not found in {self.weights_dir} (expected {CONFIG_FILE} "
                             f"and {WEIGHTS_FILE}); train them with `empathic encoders train text`")
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("format") != CONFIG_FORMAT:
            raise ModelError(f"{path} has format {config.get('format')!r}; this code reads {CONFIG_FORMAT}")
        return config

    def _load_impl(self) -> None:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        from empathic_agent.encode import text_model as tm
        from empathic_agent.models import resolve_model

        config = self._read_config()
        arch = config["architecture"]
        spec = self.backbone_spec or config["backbone"]
        cache_dir = self.cache_dir
        if cache_dir is None:
            from empathic_agent.settings import Settings

            cache_dir = Settings.from_env().cache_dir
        resolved = resolve_model("embeddings", spec, cache_dir)
        self.backbone_path = resolved.location
        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
        model = AutoModel.from_pretrained(resolved.location, dtype=torch.float32).eval()
        mc = model.config
        if (mc.hidden_size, mc.num_hidden_layers) != (arch["hidden_size"], arch["num_layers"]):
            raise ModelError(f"backbone {spec!r} (hidden {mc.hidden_size}, {mc.num_hidden_layers} layers) does not "
                             f"match the trained weights ({arch['hidden_size']}, {arch['num_layers']}): the text "
                             f"encoder needs {config['backbone']}")
        state = load_file(str(self.weights_dir / WEIGHTS_FILE))
        tm.load_adapter_state(model, state, scale=arch["lora_alpha"] / arch["lora_rank"])
        heads = tm.EmotionHeads(arch["head_input_size"], arch["head_width"]).eval()
        tm.load_head_state(heads, state)
        context_head = None
        if config.get("context") and any(k.startswith("context.") for k in state):
            context_head = tm.ContextHead(arch["head_input_size"], int(config["context"]["width"])).eval()
            tm.load_context_head_state(context_head, state)
        self._context_head = context_head
        self._ood_mean = state["ood.mean"].double().numpy()
        self._ood_precision = state["ood.precision"].double().numpy()
        if self.max_length is None:
            self.max_length = int(_backbone_max_length(Path(resolved.location), tokenizer))
        self._tokenizer, self._model, self._heads, self.config = tokenizer, model, heads, config

    def info(self) -> dict[str, Any]:
        out = super().info()
        out.update({"weights": str(self.weights_dir), "backbone": self.backbone_path or self.backbone_spec,
                    "max_length": self.max_length})
        return out

    # -- encoding ------------------------------------------------------------------------------
    def _forward(self, texts: list[str], *, max_length: int | None = None,
                 from_end: bool = False) -> dict[str, NDArray[np.float64]]:
        """Raw outputs for non-empty texts: mean/logvar (N,3), logits (N,7), seen (N,), the
        mean-pooled states of the last frozen layer (N,H) under ``pooled`` and the heads' input
        (N,2H) under ``features``.  ``from_end`` keeps the *end* of a text that is too long (the
        tokenizer truncates from the left): a context passage's newest words matter most."""
        # At most this many characters can be read: bound the tokenisation work.
        clipped = [t[-MAX_TOKENISED_CHARS:] if from_end else t[:MAX_TOKENISED_CHARS] for t in texts]
        side = self._tokenizer.truncation_side
        self._tokenizer.truncation_side = "left" if from_end else "right"
        try:
            return self._run(texts, clipped, self.max_length if max_length is None else max_length)
        finally:
            self._tokenizer.truncation_side = side

    def _run(self, texts: list[str], clipped: list[str], max_length: int | None) -> dict[str, NDArray[np.float64]]:
        """The forward passes of `_forward` (batches sorted by length, so padding stays small)."""
        import torch

        from empathic_agent.encode import text_model as tm

        # The last layer that fine-tuning left frozen: a second input of the heads and the space of
        # the out-of-domain statistics.
        mid_layer = int(self.config["ood"]["layer"])
        order = sorted(range(len(texts)), key=lambda i: len(clipped[i]))
        pooled = np.zeros((len(texts), self._model.config.hidden_size))
        mean = np.zeros((len(texts), 3))
        logvar = np.zeros((len(texts), 3))
        logits = np.zeros((len(texts), len(CATEGORIES)))
        features = np.zeros((len(texts), 2 * self._model.config.hidden_size))
        seen = np.ones(len(texts))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self._tokenizer([clipped[i] for i in idx], truncation=True, max_length=max_length,
                                        padding=True, return_tensors="pt", return_offsets_mapping=True)
                offsets = batch.pop("offset_mapping")
                mask = batch["attention_mask"]
                out = self._model(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True)
                mid = tm.mean_pool(out.hidden_states[mid_layer], mask)
                feats = torch.cat([tm.mean_pool(out.last_hidden_state, mask), mid], dim=-1)
                m, lv, lg = self._heads(feats)
                rows = np.asarray(idx)
                features[rows] = feats.double().numpy()
                pooled[rows] = mid.double().numpy()
                mean[rows] = m.double().numpy()
                logvar[rows] = lv.double().numpy()
                logits[rows] = lg.double().numpy()
                ends = offsets[..., 1].max(dim=1).values.numpy()
                for j, i in enumerate(idx):
                    total = len(texts[i].rstrip())
                    seen[i] = min(1.0, float(ends[j]) / total) if total else 1.0
        return {"pooled": pooled, "mean": mean, "logvar": logvar, "logits": logits, "seen": seen,
                "features": features}

    def _context_features(self, passages: list[str], max_tokens: int | None = None) -> NDArray[np.float64]:
        """The heads' input features of context passages (N, 2H), read from their end."""
        if max_tokens is None:
            max_tokens = int(self.config["context"]["max_tokens"])
        return self._forward(passages, max_length=max_tokens, from_end=True)["features"]

    @property
    def reads_context(self) -> bool:
        """True when the loaded weights have a context head (loads the encoder)."""
        self.load()
        return self._context_head is not None

    def _context_logits(self, features: NDArray[np.float64], contexts: Sequence[TextContext | None]) -> NDArray[np.float64]:
        """The context head's logit corrections (N, 7) for messages with these contexts."""
        import torch

        n = len(contexts)
        max_turns = int(self.config["context"]["turns"])
        passages = [c.text(max_turns) if c is not None else "" for c in contexts]
        ctx_features = np.zeros_like(features)
        with_turns = [i for i, p in enumerate(passages) if p]
        if with_turns:
            ctx_features[with_turns] = self._context_features([passages[i] for i in with_turns])
        state = np.stack([context_state_features(c) for c in contexts]) if n else np.zeros((0, CONTEXT_STATE_FEATURES))
        with torch.inference_mode():
            delta = self._context_head(torch.as_tensor(features, dtype=torch.float32),
                                       torch.as_tensor(ctx_features, dtype=torch.float32),
                                       torch.as_tensor(state, dtype=torch.float32))
        return delta.double().numpy()

    def _mahalanobis(self, pooled: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._ood_mean is not None and self._ood_precision is not None
        diff = pooled - self._ood_mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, self._ood_precision, diff), 0.0))

    def analyze(self, texts: Sequence[Any], contexts: Sequence[TextContext | None] | None = None,
                *, use_context_head: bool = True) -> list[TextAnalysis]:
        """Readings with the components of their doubt (see the module docstring).

        ``contexts`` (one per text, None for a message without one) reads the messages as turns
        of a conversation: the context head's correction and the conversation domain's
        calibration.  ``use_context_head=False`` keeps the conversation calibration but reads
        each message alone (the utterance-only baseline of the evaluation)."""
        self.load()
        items = [_as_text(t) for t in texts]
        n = len(items)
        if contexts is not None and len(contexts) != n:
            raise ValueError(f"{len(contexts)} contexts for {n} texts")
        in_conversation = contexts is not None and self._context_head is not None
        calibration = self.config["context"]["calibration"] if in_conversation else self.config["calibration"]
        ood = self.config["ood"]
        mean = np.zeros((n, 3))
        var = np.full((n, 3), PRIOR_VARIANCE)
        probs = np.full((n, len(CATEGORIES)), 1.0 / len(CATEGORIES))
        seen = np.ones(n)
        dist = np.full(n, np.nan)
        words = np.array([word_count(t) for t in items])
        live = [i for i, t in enumerate(items) if t.strip()]
        if live:
            with self._lock:
                raw = self._forward([items[i] for i in live])
                if in_conversation and use_context_head:
                    assert contexts is not None
                    raw["logits"] = raw["logits"] + self._context_logits(raw["features"], [contexts[i] for i in live])
            m, v, p = calibrate_outputs(raw["mean"], raw["logvar"], raw["logits"], calibration)
            mean[live], var[live], probs[live] = m, v, p
            seen[live] = raw["seen"]
            dist[live] = self._mahalanobis(raw["pooled"])
        u_words = np.power(2.0, -words.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.log(np.where(np.isnan(dist), 1.0, dist) / float(ood["dev_q95"])) / math.log(OOD_FULL_RATIO)
        u_ood = np.where(np.isnan(dist), 0.0, np.clip(ratio, 0.0, 1.0))
        u_trunc = TRUNCATION_DOUBT * (1.0 - seen)
        markers = [style_markers(t) for t in items]
        u_style = np.array([1.0 - (1.0 - STYLE_DOUBT) ** min(2, len(k)) for k in markers])
        doubt = 1.0 - (1.0 - u_words) * (1.0 - u_ood) * (1.0 - u_trunc) * (1.0 - u_style)
        for i, t in enumerate(items):
            if not t.strip():
                doubt[i] = 1.0
        m, v, p = mix_with_prior(mean, var, probs, doubt)
        out = []
        for i in range(n):
            reading = Reading(mean=m[i], variance=v[i], categories=p[i], modality=self.modality)
            out.append(TextAnalysis(reading=reading, n_words=int(words[i]), seen_fraction=float(seen[i]),
                                    mahalanobis=None if np.isnan(dist[i]) else float(dist[i]),
                                    doubt_words=float(u_words[i]), doubt_ood=float(u_ood[i]),
                                    doubt_style=float(u_style[i]), style=markers[i],
                                    doubt_truncated=float(u_trunc[i]), doubt=float(doubt[i])))
        return out

    def _encode_batch_impl(self, xs: list[Any]) -> list[Reading]:
        return [a.reading for a in self.analyze(xs)]

    def encode_in_context(self, text: Any, context: TextContext | None) -> Reading:
        """One message read as a turn of a conversation (see the module docstring)."""
        return self.encode_batch_in_context([text], [context])[0]

    def encode_batch_in_context(self, texts: Sequence[Any], contexts: Sequence[TextContext | None]) -> list[Reading]:
        """Messages read in their conversations, one context per message (the same input checks
        and error boundary as :meth:`encode_batch`)."""
        items, ctxs = list(texts), list(contexts)
        if len(items) != len(ctxs):
            raise ValueError(f"{len(ctxs)} contexts for {len(items)} texts")
        for i, (x, c) in enumerate(zip(items, ctxs)):
            if x is not None and not isinstance(x, self.input_types):
                raise TypeError(f"{self.name} encoder: input {i} is {type(x).__name__}; expected str, bytes or None")
            if c is not None and not isinstance(c, TextContext):
                raise TypeError(f"{self.name} encoder: context {i} is {type(c).__name__}; expected TextContext or None")
        if not items:
            return []
        self.load()
        return self._translate(lambda: [a.reading for a in self.analyze(items, ctxs)], "encoding")

    def _translate_error(self, exc: Exception, stage: str) -> EmpathicError:
        if isinstance(exc, (OSError, KeyError, ValueError)) and stage == "loading":
            return EncoderError(f"text encoder could not load its weights from {self.weights_dir}: "
                                f"{type(exc).__name__}: {exc}")
        return super()._translate_error(exc, stage)


def _backbone_max_length(path: Path, tokenizer: Any) -> int:
    """The backbone's max length: sentence-transformers' max_seq_length if given, else the
    tokenizer's (capped at DEFAULT_MAX_LENGTH when it is the 'unlimited' sentinel)."""
    try:
        value = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]
        return int(value)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    limit = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
    return int(limit) if isinstance(limit, int) and 0 < limit <= 4096 else DEFAULT_MAX_LENGTH
