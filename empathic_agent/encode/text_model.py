"""Torch building blocks of the text emotion encoder, shared by inference and training.

Imported lazily (it imports torch at module level): `text.TextEncoder` and `training.text` import it
inside functions, so ``import empathic_agent.encode`` stays light.

The model is all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384) with

* **LoRA adapters** (Hu et al. 2021) on every linear map of the top ``TOP_LAYERS`` transformer
  layers: ``W x + (alpha / r) * B A x`` with A (r x in) and B (out x r), B initialised to zero so
  training starts from the pretrained model.  Written here in plain torch (no peft).  The layers'
  biases and LayerNorms are trained too (BitFit-style; a few thousand numbers).
* **mean pooling** over the real tokens of the last hidden state (what sentence-transformers does
  for this model, without the final L2 normalisation);
* two small **heads** on the pooled vectors of the last layer and of the last frozen layer
  (concatenated): a heteroscedastic VAD head (mean and log-variance of valence, arousal,
  dominance) and a 7-way category head (logits in CATEGORIES order).

Only the trained parts are stored (LoRA A/B, the top layers' biases/LayerNorms, the heads); at
inference the LoRA products are merged into the backbone's weights once, so encoding costs exactly
one plain MiniLM forward plus two tiny MLPs.

Training freezes the bottom ``6 - TOP_LAYERS`` layers, so their output can be computed once and
cached (`bottom_forward`); each training step then runs only the top layers (`top_forward`).
"""

from __future__ import annotations

import math
from typing import Any, Final, Iterable

import torch
from torch import nn

# The context head's dialogue-state features are defined with the features themselves.
from empathic_agent.encode.text import CONTEXT_STATE_FEATURES

__all__ = [
    "TOP_LAYERS",
    "LORA_RANK",
    "LORA_ALPHA",
    "LORA_TARGETS",
    "LORA_TARGETS_BY_TYPE",
    "lora_targets",
    "HEAD_WIDTH",
    "LOGVAR_MIN",
    "LOGVAR_MAX",
    "LoRALinear",
    "EmotionHeads",
    "add_lora",
    "lora_for_training",
    "trainable_backbone_params",
    "merge_lora",
    "mean_pool",
    "embed",
    "run_layers",
    "bottom_forward",
    "top_forward",
    "adapter_state",
    "load_adapter_state",
]

#: Transformer layers (counted from the top) that get LoRA adapters and trained biases/norms.
#: Three of six: enough to move the representation towards emotion (frozen heads reach V .65 /
#: macro-F1 .43 only), while the bottom three can be cached so training fits in ~20 min on 2 cores.
#: (The training default; a trained model's own value is in its config.json.)
TOP_LAYERS: Final[int] = 3
#: LoRA rank and scale (alpha / rank = 2): the usual small-model setting; ~55k numbers per layer.
LORA_RANK: Final[int] = 8
LORA_ALPHA: Final[float] = 16.0
#: Dropout on the LoRA branch input during training (regularises the adapters only).
LORA_DROPOUT: Final[float] = 0.05
#: Linear maps of a BERT layer that get adapters (attention q/k/v/out and the feed-forward pair).
LORA_TARGETS: Final[tuple[str, ...]] = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
#: The same maps by backbone family (``config.model_type``): MPNet names its attention maps q/k/v/o.
LORA_TARGETS_BY_TYPE: Final[dict[str, tuple[str, ...]]] = {
    "bert": LORA_TARGETS,
    "mpnet": ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
              "intermediate.dense", "output.dense"),
}
#: Hidden width of each head's MLP.
HEAD_WIDTH: Final[int] = 256
#: Dropout on the pooled vector before the heads (training only).
HEAD_DROPOUT: Final[float] = 0.1
#: Hidden width of the (small) log-variance head.
VAR_HEAD_WIDTH: Final[int] = 64
#: Bounds of the predicted log-variance: SD between ~0.03 and 1 on the [-1, 1] VAD scale (EmoBank's
#: own rating noise is larger than 0.03, so a tighter claim is never warranted and would make the
#: Gaussian NLL explode on one outlier).
LOGVAR_MIN: Final[float] = math.log(1e-3)
LOGVAR_MAX: Final[float] = 0.0
N_VAD: Final[int] = 3
N_CATEGORIES: Final[int] = 7


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (only during training).

    Shapes: x (..., in_features) -> (..., out_features); A (rank, in), B (out, rank).
    """

    def __init__(self, base: nn.Linear, rank: int = LORA_RANK, alpha: float = LORA_ALPHA,
                 dropout: float = LORA_DROPOUT) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        # Kaiming-uniform A and zero B, as in the LoRA paper: the update starts at exactly zero.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scale

    def delta(self) -> torch.Tensor:
        """The weight update (out, in) that merging adds to the base weight."""
        return (self.lora_B @ self.lora_A) * self.scale


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(_get(module, parent) if parent else module, leaf, value)


def lora_targets(bert: nn.Module) -> tuple[str, ...]:
    """The linear maps of one layer of ``bert``'s family that get adapters."""
    kind = getattr(bert.config, "model_type", "bert")
    if kind not in LORA_TARGETS_BY_TYPE:
        raise ValueError(f"no LoRA targets for backbone type {kind!r}; known: {', '.join(LORA_TARGETS_BY_TYPE)}")
    return LORA_TARGETS_BY_TYPE[kind]


def top_layer_indices(bert: nn.Module, top_layers: int = TOP_LAYERS) -> list[int]:
    n = len(bert.encoder.layer)
    return list(range(n - top_layers, n))


def add_lora(bert: nn.Module, top_layers: int = TOP_LAYERS, rank: int = LORA_RANK,
             alpha: float = LORA_ALPHA) -> dict[str, LoRALinear]:
    """Wrap the target linears of the top layers in `LoRALinear` (in place).

    Returns ``{"encoder.layer.5.attention.self.query": LoRALinear, ...}``.
    """
    wrapped: dict[str, LoRALinear] = {}
    for i in top_layer_indices(bert, top_layers):
        layer = bert.encoder.layer[i]
        for target in lora_targets(bert):
            base = _get(layer, target)
            assert isinstance(base, nn.Linear), f"{target} is {type(base).__name__}"
            lora = LoRALinear(base, rank, alpha)
            _set(layer, target, lora)
            wrapped[f"encoder.layer.{i}.{target}"] = lora
    return wrapped


def lora_for_training(bert: nn.Module, top_layers: int = TOP_LAYERS, rank: int = LORA_RANK,
                      alpha: float = LORA_ALPHA) -> tuple[dict[str, LoRALinear], list[nn.Parameter]]:
    """Freeze ``bert``, wrap its top layers in LoRA (without the adapter dropout: its copy of every
    activation doubled a step's time) and unfreeze their biases/LayerNorms.  Returns the adapters
    and every trainable backbone parameter (LoRA A/B and the biases/norms)."""
    for p in bert.parameters():
        p.requires_grad_(False)
    loras = add_lora(bert, top_layers, rank, alpha)
    for lo in loras.values():
        lo.dropout = nn.Identity()
    extra = trainable_backbone_params(bert, top_layers)
    for p in extra.values():
        p.requires_grad_(True)
    return loras, [p for lo in loras.values() for p in (lo.lora_A, lo.lora_B)] + list(extra.values())


def trainable_backbone_params(bert: nn.Module, top_layers: int = TOP_LAYERS) -> dict[str, nn.Parameter]:
    """Biases and LayerNorm parameters of the top layers (trained alongside LoRA).

    Keys are the parameter names of the *unwrapped* backbone (``...query.bias``), so the stored
    state loads onto a plain `BertModel`.
    """
    out: dict[str, nn.Parameter] = {}
    for i in top_layer_indices(bert, top_layers):
        for name, p in bert.encoder.layer[i].named_parameters():
            if "lora_" in name:
                continue
            if name.endswith(".bias") or "LayerNorm" in name:
                out[f"encoder.layer.{i}.{name.replace('.base.', '.')}"] = p
    return out


def adapter_state(bert: nn.Module, loras: dict[str, LoRALinear],
                  top_layers: int = TOP_LAYERS) -> dict[str, torch.Tensor]:
    """The trained backbone numbers to store: LoRA A/B and the top layers' biases/norms."""
    state: dict[str, torch.Tensor] = {}
    for name, lora in loras.items():
        state[f"lora.{name}.A"] = lora.lora_A.detach().clone()
        state[f"lora.{name}.B"] = lora.lora_B.detach().clone()
    for name, p in trainable_backbone_params(bert, top_layers).items():
        state[f"backbone.{name}"] = p.detach().clone()
    return state


def load_adapter_state(bert: nn.Module, state: dict[str, torch.Tensor], scale: float) -> int:
    """Apply a stored adapter state to a *plain* `BertModel` in place: merge the LoRA products
    into the weights and overwrite the trained biases/norms.  Returns the number of tensors used.
    """
    params = dict(bert.named_parameters())
    used = 0
    with torch.no_grad():
        for key, value in state.items():
            if key.startswith("lora.") and key.endswith(".A"):
                name = key[len("lora."):-len(".A")]
                b = state[f"lora.{name}.B"].float()
                weight = params[f"{name}.weight"]
                if weight.shape != (b.shape[0], value.shape[1]):
                    raise ValueError(f"adapter {name} has shape {tuple(b.shape)}x{tuple(value.shape)}, "
                                     f"backbone weight {tuple(weight.shape)}")
                weight += (b @ value.float()) * scale
                used += 2
            elif key.startswith("backbone."):
                name = key[len("backbone."):]
                if params[name].shape != value.shape:
                    raise ValueError(f"{name}: stored {tuple(value.shape)}, backbone {tuple(params[name].shape)}")
                params[name].copy_(value.float())
                used += 1
    return used


def merge_lora(bert: nn.Module, loras: dict[str, LoRALinear]) -> None:
    """Fold trained adapters back into plain linears (in place), e.g. to evaluate a checkpoint."""
    with torch.no_grad():
        for name, lora in loras.items():
            lora.base.weight += lora.delta()
            _set(bert, name, lora.base)


class EmotionHeads(nn.Module):
    """Small MLP heads on the sentence features.

    features (B, input_size) -> vad_mean (B, 3), vad_logvar (B, 3), category_logits (B, 7).
    The text encoder's features are two mean-pooled layers side by side (input_size 768).

    The log-variance head reads a *detached* copy of the pooled vector: it learns how large the
    error is for a given sentence without reshaping the representation the means are read from
    (a heteroscedastic loss otherwise lets the model "explain away" hard examples).
    """

    def __init__(self, hidden: int = 384, width: int = HEAD_WIDTH, dropout: float = HEAD_DROPOUT) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.vad = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, N_VAD))
        self.logvar = nn.Sequential(nn.Linear(hidden, VAR_HEAD_WIDTH), nn.GELU(), nn.Linear(VAR_HEAD_WIDTH, N_VAD))
        self.cat = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, N_CATEGORIES))
        # Start the variance near EmoBank's typical squared error (SD ~0.1) rather than 1.
        nn.init.constant_(self.logvar[-1].bias, math.log(0.01))

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dropout(pooled)
        logvar = self.logvar(x.detach()).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return self.vad(x), logvar, self.cat(x)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' vectors: hidden (B, L, H), mask (B, L) -> (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _layer_out(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _mask(bert: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> Any:
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=mask)


def embed(bert: nn.Module, input_ids: torch.Tensor, token_types: torch.Tensor | None = None) -> torch.Tensor:
    """The embedding layer's output (B, L, H); token types only where the family has them (MPNet
    has none)."""
    if token_types is not None and getattr(bert.embeddings, "token_type_embeddings", None) is not None:
        return bert.embeddings(input_ids=input_ids, token_type_ids=token_types)
    return bert.embeddings(input_ids=input_ids)


def run_layers(bert: nn.Module, layers: Any, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``layers`` (a slice of ``bert.encoder.layer``) on hidden states (B, L, H) with the padding
    mask (B, L).  MPNet's layers also take the relative position bias its encoder computes from the
    length alone, so running a slice on cached states gives what the whole model gives."""
    ext = _mask(bert, hidden, mask)
    compute = getattr(bert.encoder, "compute_position_bias", None)
    if compute is None:
        for layer in layers:
            hidden = _layer_out(layer(hidden, attention_mask=ext))
        return hidden
    bias = compute(hidden)
    for layer in layers:
        hidden = _layer_out(layer(hidden, attention_mask=ext, position_bias=bias))
    return hidden


def bottom_forward(bert: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor,
                   n_layers: int) -> torch.Tensor:
    """Embeddings plus the first ``n_layers`` layers: ids/mask (B, L) -> hidden (B, L, H)."""
    return run_layers(bert, bert.encoder.layer[:n_layers], embed(bert, input_ids), mask)


def top_forward(bert: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """Layers ``start..`` on cached hidden states, then mean pooling: (B, L, H) -> (B, H)."""
    return mean_pool(run_layers(bert, bert.encoder.layer[start:], hidden, mask), mask)


def head_state(heads: EmotionHeads) -> dict[str, torch.Tensor]:
    return {f"heads.{k}": v.detach().clone() for k, v in heads.state_dict().items()}


def load_head_state(heads: EmotionHeads, state: dict[str, torch.Tensor]) -> None:
    sub = {k[len("heads."):]: v.float() for k, v in state.items() if k.startswith("heads.")}
    heads.load_state_dict(sub, strict=True)


def count(params: Iterable[torch.Tensor]) -> int:
    return sum(int(p.numel()) for p in params)


#: Hidden width of the context head.
CONTEXT_WIDTH = 256


class ContextHead(nn.Module):
    """Reads a message *in its conversation*: a correction of the category logits.

    inputs: the message's sentence features (B, F) — the same vector the utterance heads read —,
    the features of the turns before it (B, F; zeros when there are none), their cosine
    similarity (B, 1: how related the message is to what came before) and the dialogue-state
    features (B, CONTEXT_STATE_FEATURES) -> a logit correction (B, 7) that is *added* to the
    utterance head's logits.  The last layer starts at zero, so an untrained head is exactly the
    utterance-only reading, and training learns only what the context adds.
    """

    def __init__(self, feature_size: int = 768, width: int = CONTEXT_WIDTH, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * feature_size + 1 + CONTEXT_STATE_FEATURES, width), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(width, N_CATEGORIES))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, utterance: torch.Tensor, context: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        cos = nn.functional.cosine_similarity(utterance, context, dim=-1, eps=1e-6).unsqueeze(-1)
        return self.net(torch.cat([utterance, context, cos, state], dim=-1))


def context_head_state(head: ContextHead) -> dict[str, torch.Tensor]:
    return {f"context.{k}": v.detach().clone() for k, v in head.state_dict().items()}


def load_context_head_state(head: ContextHead, state: dict[str, torch.Tensor]) -> None:
    sub = {k[len("context."):]: v.float() for k, v in state.items() if k.startswith("context.")}
    head.load_state_dict(sub, strict=True)
