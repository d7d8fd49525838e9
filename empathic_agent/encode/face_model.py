"""The facial-expression network: a small VGG-style CNN over 48x48 grayscale face crops.

Shapes: input ``(batch, 1, 48, 48)`` float32, each crop standardised per image (zero mean, unit
variance — removes most of the lighting difference between FER-2013's photos and a webcam);
output ``(batch, 7)`` logits in :data:`empathic_agent.latent.CATEGORIES` order.

Four stages of two 3x3 convolutions (+ batch norm, ReLU) and a 2x2 max pool, 32 -> 256 channels,
global average pooling, dropout, one linear layer: 1.17 M parameters, ~2 ms per face on two CPU
cores.  Chosen because it trains on FER-2013 in ~2.3 min per epoch on our 2-core CPUs (wider
variants cost 2-4x per epoch); VGG-style nets of this shape are the usual strong baseline on
FER-2013 (Khaireddin & Chen 2021 reach .73 with a much wider one).

Needs torch (``pip install 'empathic-agent[train]'`` or any install with the text encoder).
"""

from __future__ import annotations

from typing import Final

import torch
from torch import nn

__all__ = ["FACE_SIZE", "WIDTHS", "FaceNet", "standardise"]

#: Side of the square grayscale crop the network reads (FER-2013's native size).
FACE_SIZE: Final[int] = 48
#: Channels of the four convolution stages.
WIDTHS: Final[tuple[int, ...]] = (32, 64, 128, 256)
#: Dropout before the classifier (FER-2013 is small and noisy: the net overfits without it).
DROPOUT: Final[float] = 0.4


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
