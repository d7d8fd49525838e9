"""The facial-expression network: a small VGG-style CNN over 48x48 grayscale face crops.

Shapes: input ``(batch, 1, 48, 48)`` float32, each crop standardised per image (zero mean, unit
variance — removes most of the lighting difference between FER-2013's photos and a webcam);
output ``(batch, 7)`` logits in :data:`empathic_agent.latent.CATEGORIES` order.

Four stages of two 3x3 convolutions (+ batch norm, ReLU) and a 2x2 max pool, 32 -> 256 channels,
global average pooling, dropout, one linear layer: 1.17 M parameters, ~2 ms per face on two CPU
cores.  Chosen because it trains on FER-2013 in ~2.3 min per epoch on our 2-core CPUs (wider
variants cost 2-4x per epoch); VGG-style nets of this shape are the usual strong baseline on
FER-2013 (Khaireddin & Chen 2021 reach .73 with a much wider one).

Test-time augmentation (:class:`TestTimeAugmentation`, :func:`tta_views`, :func:`predict_logits`):
a crop is read as several small, label-preserving variants — the mirror image, 2-px shifts, a slight
zoom — and the logits are averaged, over the views and over several weight files of the same
architecture (independently trained runs, or snapshots of one run).  The training script (evaluation, calibration) and the runtime encoder both call
:func:`predict_logits`, so what is measured is what runs.

Needs torch (``pip install 'empathic-agent[train]'`` or any install with the text encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FACE_SIZE", "WIDTHS", "FaceNet", "standardise", "TestTimeAugmentation", "FLIP_ONLY", "tta_views",
           "predict_logits", "to_inference"]

#: Side of the square grayscale crop the network reads (FER-2013's native size).
FACE_SIZE: Final[int] = 48
#: Channels of the four convolution stages.
WIDTHS: Final[tuple[int, ...]] = (32, 64, 128, 256)
#: Dropout before the classifier (FER-2013 is small and noisy: the net overfits without it).
DROPOUT: Final[float] = 0.4
#: Most augmented views pushed through the network at once by :func:`predict_logits` (bounds
#: memory: the first stage's activations are ~300 kB per view).
MAX_VIEWS_PER_BATCH: Final[int] = 512


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FaceNet(nn.Module):
    """48x48 grayscale crop -> 7 category logits (see the module docstring for shapes)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, n_classes: int = 7, dropout: float = DROPOUT) -> None:
        super().__init__()
        chans = (1, *widths)
        self.features = nn.Sequential(*[_stage(chans[i], chans[i + 1]) for i in range(len(widths))])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(chans[-1], n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 48, 48) -> (B, 7)
        return self.head(self.features(x))


def standardise(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per-image standardisation of ``(B, 1, H, W)`` crops with values in [0, 1]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + eps)


@dataclass(frozen=True)
class TestTimeAugmentation:
    """Which views of a crop are read and averaged.

    Attributes:
        flip: also read the mirror image (faces are roughly symmetric; the net trained with flips).
        shift_px: if > 0, also read the crop shifted by this many pixels left, right, up and down
            (five positions with the centre) — FER-2013's crops are only roughly aligned.
        scales: zoom factors (1.0 = as is; > 1 zooms in on the centre), each read at every shift.

    ``views = len(scales) * (5 if shift_px else 1) * (2 if flip else 1)``; every view costs one
    forward pass (~3-5 ms per view on one CPU core).
    """

    __test__ = False  # a "Test*" name that pytest should not try to collect from importing modules

    flip: bool = True
    shift_px: int = 0
    scales: tuple[float, ...] = (1.0,)

    @property
    def n_views(self) -> int:
        return len(self.scales) * (5 if self.shift_px else 1) * (2 if self.flip else 1)

    @classmethod
    def from_config(cls, value: Any) -> "TestTimeAugmentation":
        """From ``config.json`` → ``facenet.test_time_augmentation``: a mapping
        ``{"flip": bool, "shift_px": int, "scales": [float, ...]}``; older configs stored the string
        ``"horizontal flip"`` (flip only); ``None``/``"none"``/``false`` reads the crop as is."""
        if value is None or value is False:
            return cls(flip=False)
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return cls(flip=False)
        if isinstance(value, str):
            if "flip" in value.lower():
                return FLIP_ONLY
            raise ValueError(f"unknown test-time augmentation {value!r}")
        if not isinstance(value, dict):
            raise ValueError(f"test-time augmentation must be a mapping, got {type(value).__name__}")
        scales = tuple(float(v) for v in value.get("scales", (1.0,))) or (1.0,)
        if any(v <= 0 for v in scales):
            raise ValueError(f"test-time augmentation scales must be positive: {scales}")
        return cls(flip=bool(value.get("flip", True)), shift_px=max(0, int(value.get("shift_px", 0))),
                   scales=scales)

    def to_config(self) -> dict[str, Any]:
        return {"flip": self.flip, "shift_px": self.shift_px, "scales": list(self.scales)}


#: What the shipped models used before configurable augmentation: the crop and its mirror image.
FLIP_ONLY: Final[TestTimeAugmentation] = TestTimeAugmentation(flip=True)


def tta_views(x: torch.Tensor, tta: TestTimeAugmentation) -> torch.Tensor:
    """``(B, 1, H, W)`` crops in [0, 1] -> ``(B * V, 1, H, W)`` views, the ``V`` views of each crop
    consecutive (reshape the network's output to ``(B, V, classes)`` to average).

    One ``grid_sample`` does all views: identity, mirror and whole-pixel shifts land exactly on pixel
    centres (``align_corners=False``), so they copy pixels; zooms interpolate bilinearly.  Edges
    are replicated (``padding_mode="border"``) as in the training augmentation.
    """
    b, _, h, w = x.shape
    shifts = [(0, 0)]
    if tta.shift_px:
        d = tta.shift_px
        shifts += [(d, 0), (-d, 0), (0, d), (0, -d)]
    mirrors = (1.0, -1.0) if tta.flip else (1.0,)
    rows = []
    for s in tta.scales:
        for dx, dy in shifts:
            for m in mirrors:  # normalised coordinates: one pixel is 2/w wide
                rows.append([[m / s, 0.0, 2.0 * dx / w], [0.0, 1.0 / s, 2.0 * dy / h]])
    theta = torch.tensor(rows, dtype=x.dtype)  # (V, 2, 3)
    v = theta.shape[0]
    if v == 1 and rows[0] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]:
        return x
    theta = theta.unsqueeze(0).expand(b, v, 2, 3).reshape(b * v, 2, 3)
    xv = x.unsqueeze(1).expand(b, v, *x.shape[1:]).reshape(b * v, *x.shape[1:])
    grid = F.affine_grid(theta, [b * v, *x.shape[1:]], align_corners=False)
    return F.grid_sample(xv, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_inference(model: FaceNet) -> FaceNet:
    """Ready a trained :class:`FaceNet` for reading, in place; returns it.  Eval mode, each batch norm
    folded into the convolution before it (one pass less over the activations; same outputs up to
    float rounding) and the weights in channels-last layout (see :func:`predict_logits`).  The
    result can no longer be trained or saved as a :class:`FaceNet` state dict."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for stage in model.features:
        for i in range(len(stage) - 1):
            if isinstance(stage[i], nn.Conv2d) and isinstance(stage[i + 1], nn.BatchNorm2d):
                stage[i], stage[i + 1] = fuse_conv_bn_eval(stage[i], stage[i + 1]), nn.Identity()
    return model.to(memory_format=torch.channels_last)


def predict_logits(models: nn.Module | Sequence[nn.Module], crops: Any,
                   tta: TestTimeAugmentation = FLIP_ONLY) -> torch.Tensor:
    """Eval-mode logits ``(N, classes)`` of ``(N, 48, 48)`` uint8 crops (numpy or torch), averaged
    over the augmented views and over the models (snapshots of one network: their logits share a
    scale, so one temperature fits the average).  Call under ``torch.inference_mode()`` or not."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models:
        raise ValueError("predict_logits needs at least one model")
    x = torch.as_tensor(crops)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    x = x.float().div(255).unsqueeze(1)
    chunk = max(1, MAX_VIEWS_PER_BATCH // tta.n_views)
    outs = []
    with torch.inference_mode():
        for m in models:
            m.eval()
        for s in range(0, x.shape[0], chunk):
            xb = x[s:s + chunk]
            # channels-last activations take oneDNN's faster convolutions on CPU (~30 % for a
            # batch of views, when the weights are channels-last too: see to_inference).
            views = standardise(tta_views(xb, tta)).contiguous(memory_format=torch.channels_last)
            lo = sum(m(views) for m in models) / len(models)
            outs.append(lo.reshape(xb.shape[0], tta.n_views, -1).mean(1))
    return torch.cat(outs)
