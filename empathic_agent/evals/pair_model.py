"""Fine-tuned MiniLM readers of a (context, reply) pair: the EPITOME empathy judge and the ESConv
strategy classifier.

Both are all-MiniLM-L6-v2 (the sentence model memory uses, shipped in a registry package) with
plain-torch LoRA adapters (:mod:`empathic_agent.encode.text_model`) merged into its weights at load
time, reading one BERT pair input::

    [CLS] context (its last CONTEXT_TOKENS tokens) [SEP] reply (its first REPLY_TOKENS) [SEP]

The features are the mean of the reply's token vectors beside the mean over the whole pair (the
reply is what is rated; the context tells whether it answers *this* person), optionally with the
max over the reply's tokens (:data:`POOLINGS`), and one linear map gives every head's logits side
by side.  A model may be an ensemble of members trained with different seeds (``members`` in its
config): their probabilities are averaged.  Each head is a calibrated distribution over its classes:
``softmax(logits / T)`` with the head's temperature fitted on the training run's dev split.

Weights: ``evals/weights/NAME.npz`` + ``NAME.json`` (format :data:`FORMAT`); training
:mod:`empathic_agent.training.judge`; model cards ``evals/weights/*_MODEL_CARD.md``.
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
    import torch

    from empathic_agent.settings import Settings

__all__ = ["PairClassifier", "WEIGHTS_DIR", "FORMAT", "CONTEXT_TOKENS", "REPLY_TOKENS", "POOLINGS", "encode_pairs",
           "pair_features"]

log = logging.getLogger(__name__)

WEIGHTS_DIR: Final = Path(__file__).resolve().parent / "weights"
FORMAT: Final = "empathic-pair-v1"
#: Tokens kept of the context (its end: the person's last words matter most) and of the reply (its
#: start).  EPITOME's seeker posts have a median of 40 tokens, responses 37 (90th percentile 130).
CONTEXT_TOKENS: Final[int] = 64
REPLY_TOKENS: Final[int] = 128


def encode_pairs(tokenizer: Any, contexts: Sequence[str], replies: Sequence[str], *,
                 context_tokens: int = CONTEXT_TOKENS, reply_tokens: int = REPLY_TOKENS,
                 offsets: bool = False) -> list[dict[str, Any]]:
    """Token ids of each pair (unpadded): ``ids``, ``types`` (0 context, 1 reply) and, with
    ``offsets``, the character span in the reply of every reply token (None elsewhere)."""
    # Whole texts, cut here (the context from its end): no "longer than 512" warnings, no lost ends.
    ctx = tokenizer(list(contexts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    rep = tokenizer(list(replies), add_special_tokens=False, truncation=False, verbose=False,
                    return_offsets_mapping=offsets)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = []
    for i, c in enumerate(ctx):
        c = c[-context_tokens:]
        r = rep["input_ids"][i][:reply_tokens] or [tokenizer.unk_token_id]
        item: dict[str, Any] = {"ids": [cls, *c, sep, *r, sep], "types": [0] * (len(c) + 2) + [1] * (len(r) + 1)}
        if offsets:
            spans = list(rep["offset_mapping"][i][:reply_tokens]) or [(0, 0)]
            item["spans"] = [None] * (len(c) + 2) + spans + [None]
        out.append(item)
    return out


def pad(items: Sequence[dict[str, Any]], pad_id: int | None = 0) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """ids (padded with the tokenizer's ``pad_id``: MPNet numbers positions from it), token types,
    attention mask (B, L) of a batch of :func:`encode_pairs` items."""
    import torch

    n = max(len(it["ids"]) for it in items)
    ids = torch.full((len(items), n), pad_id or 0, dtype=torch.long)
    types = torch.zeros(len(items), n, dtype=torch.long)
    mask = torch.zeros(len(items), n, dtype=torch.long)
    for k, it in enumerate(items):
        m = len(it["ids"])
        ids[k, :m] = torch.tensor(it["ids"])
        types[k, :m] = torch.tensor(it["types"])
        mask[k, :m] = 1
    return ids, types, mask


#: Pooling of the pair: "mean" = [mean of the reply's tokens, mean of all tokens] (2H); "mean+max"
#: adds the element-wise max over the reply's tokens (3H), so one telling phrase in a long reply
#: ("it sounds like you...") is not averaged away.
POOLINGS: Final[dict[str, int]] = {"mean": 2, "mean+max": 3}


def pair_features(hidden: "torch.Tensor", types: "torch.Tensor", mask: "torch.Tensor",
                  pooling: str = "mean") -> "torch.Tensor":
    """Pooled features of a batch: (B, L, H) -> (B, k H) with k from :data:`POOLINGS`."""
    import torch

    from empathic_agent.encode.text_model import mean_pool

    reply_mask = mask * types
    parts = [mean_pool(hidden, reply_mask), mean_pool(hidden, mask)]
    if pooling == "mean+max":
        parts.append(hidden.masked_fill(reply_mask.unsqueeze(-1) == 0, -1e4).max(dim=1).values)
    elif pooling != "mean":
        raise ValueError(f"unknown pooling {pooling!r}; one of {', '.join(POOLINGS)}")
    return torch.cat(parts, dim=1)


class PairClassifier(Loadable):
    """A trained pair reader (``name``: ``epitome`` or ``strategy``) from ``folder`` (default: the
    packaged weights).  Loads on first use; thread-safe (loading lifecycle: :class:`Loadable`).

    ``NAME.json`` describes either one model (its weights ``NAME.npz``) or an ensemble: ``members``
    lists member names, each with its own ``MEMBER.npz`` and ``MEMBER.json`` (architecture), and the
    members' logits are averaged before the ensemble's temperatures apply.
    """

    kind = "pair reader"
    error_class = ModelError

    def __init__(self, name: str, folder: str | Path | None = None, *, settings: "Settings | None" = None) -> None:
        super().__init__()
        self.name = name
        self.folder = Path(folder) if folder else WEIGHTS_DIR
        self._settings = settings
        self.config: dict[str, Any] = {}
        #: Loaded members: (tokenizer, model, head, architecture).
        self._members: list[tuple[Any, Any, Any, dict[str, Any]]] = []
        self._lock = threading.Lock()

    @property
    def config_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def weights_path(self) -> Path:
        """The weights file (the first member's, for an ensemble)."""
        members = self._member_names()
        return self.folder / f"{members[0]}.npz"

    @property
    def member_files(self) -> list[Path]:
        """Every weights file the model reads (one per member)."""
        return [self.folder / f"{m}.npz" for m in self._member_names()]

    def _member_names(self) -> list[str]:
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8")) if self.config_path.is_file() else {}
        except json.JSONDecodeError:
            config = {}
        return list(config.get("members") or [self.name])

    def available(self) -> bool:
        return self.config_path.is_file() and all((self.folder / f"{m}.npz").is_file() for m in self._member_names())

    def _read(self, path: Path) -> dict[str, Any]:
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ConfigError(f"{path} has format {config.get('format')!r}; this code reads {FORMAT}")
        return config

    def read_config(self) -> dict[str, Any]:
        if not self.available():
            raise ConfigError(f"{self.name} weights not found in {self.folder} ({self.config_path.name} and its .npz "
                              "file(s)); train them with 'empathic judge train'")
        return self._read(self.config_path)

    @property
    def heads(self) -> dict[str, list[str]]:
        """Head name -> its class labels, in output order."""
        self.load()
        return {h["name"]: list(h["classes"]) for h in self.config["heads"]}

    def _load_impl(self) -> None:
        from empathic_agent.safety.learned import load_adapted

        config = self.read_config()
        cache_dir = (self._settings.cache_dir if self._settings is not None else None)
        if cache_dir is None:
            from empathic_agent.settings import Settings

            cache_dir = Settings.from_env().cache_dir
        members = []
        for m in config.get("members") or [self.name]:
            mconf = config if m == self.name else self._read(self.folder / f"{m}.json")
            tokenizer, model, head = load_adapted(mconf["backbone"], cache_dir, self.folder / f"{m}.npz",
                                                  mconf["architecture"])
            members.append((tokenizer, model, head, mconf["architecture"]))
        self.config = config
        self._members = members

    def _loaded_what(self) -> str:
        return f" ({len(self._members)} member(s))"

    def logits(self, contexts: Sequence[str], replies: Sequence[str], *, batch: int = 32) -> np.ndarray:
        """Raw head outputs (N, total classes), averaged over the members."""
        if len(contexts) != len(replies):
            raise ValueError(f"{len(contexts)} contexts but {len(replies)} replies")
        self.load()
        with self._lock:
            return np.mean([self._member_logits(m, contexts, replies, batch) for m in self._members], axis=0)

    @staticmethod
    def _member_logits(member: tuple[Any, Any, Any, dict[str, Any]], contexts: Sequence[str],
                       replies: Sequence[str], batch: int) -> np.ndarray:
        import torch

        tokenizer, model, head, arch = member
        items = encode_pairs(tokenizer, [c or "" for c in contexts], [r or "" for r in replies],
                             context_tokens=arch.get("context_tokens", CONTEXT_TOKENS),
                             reply_tokens=arch.get("reply_tokens", REPLY_TOKENS))
        order = sorted(range(len(items)), key=lambda i: len(items[i]["ids"]))
        out = np.zeros((len(items), head.out_features), np.float32)
        with torch.inference_mode():
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                ids, types, mask = pad([items[j] for j in idx], tokenizer.pad_token_id)
                # Token types only where the backbone has them (BERT; MPNet has none).
                kinds = {"token_type_ids": types} if getattr(model.embeddings, "token_type_embeddings", None) else {}
                hidden = model(input_ids=ids, attention_mask=mask, **kinds).last_hidden_state
                out[idx] = head(pair_features(hidden, types, mask, arch.get("pooling", "mean"))).numpy()
        return out

    def predict(self, contexts: Sequence[str], replies: Sequence[str]) -> dict[str, np.ndarray]:
        """Head name -> calibrated class probabilities (N, classes)."""
        logits = self.logits(contexts, replies)
        out: dict[str, np.ndarray] = {}
        start = 0
        for h in self.config["heads"]:
            n = len(h["classes"])
            z = logits[:, start:start + n] / float(h.get("temperature", 1.0))
            z = np.exp(z - z.max(axis=1, keepdims=True))
            out[h["name"]] = z / z.sum(axis=1, keepdims=True)
            start += n
        return out
