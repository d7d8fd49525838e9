"""The emotional latent space: the one home of the emotion representation.

See docs/architecture.md ("The emotional latent space").  Every modality encoder produces a `Reading` (a diagonal Gaussian
over valence/arousal/dominance in [-1, 1] plus a distribution over seven categories);
`fuse` combines a turn's readings with a `temporal_prior` from earlier turns into a
`FusedState`, which carries a `MixedSignals` incongruence result; `describe` turns a
state into a short prompt phrase.  Pure numpy, so importing it is cheap.

Modules: `constants` (names, variance conventions), `prototypes` (category regions in
VAD, Russell & Mehrabian 1977, and the conversions), `reading`, `fusion`,
`incongruence`, `describe`.
"""

from __future__ import annotations

from .constants import (
    CATEGORIES,
    DIMENSIONS,
    MIN_VARIANCE,
    MODALITY_FACE,
    MODALITY_FUSED,
    MODALITY_PRIOR,
    MODALITY_SPEECH,
    MODALITY_TEXT,
    REFERENCE_VARIANCE,
    UNINFORMATIVE_VARIANCE,
)
from .describe import MAX_DESCRIPTION_CHARS, describe, describe_modality, describe_reading
from .fusion import (
    PROCESS_NOISE_PER_SECOND,
    PROCESS_NOISE_PER_TURN,
    FusedState,
    fuse,
    temporal_prior,
)
from .incongruence import (
    MAHALANOBIS_THRESHOLD,
    Conflict,
    MixedSignals,
    detect_mixed_signals,
)
from .prior import PRIOR_VARIANCE, mix_with_prior
from .prototypes import (
    PROTOTYPE_MEANS,
    PROTOTYPE_SD,
    categories_to_vad,
    vad_to_categories,
)
from .reading import Reading

__all__ = [
    "PRIOR_VARIANCE",
    "mix_with_prior",
    "CATEGORIES",
    "DIMENSIONS",
    "MIN_VARIANCE",
    "UNINFORMATIVE_VARIANCE",
    "REFERENCE_VARIANCE",
    "MODALITY_TEXT",
    "MODALITY_SPEECH",
    "MODALITY_FACE",
    "MODALITY_FUSED",
    "MODALITY_PRIOR",
    "PROTOTYPE_MEANS",
    "PROTOTYPE_SD",
    "PROCESS_NOISE_PER_TURN",
    "PROCESS_NOISE_PER_SECOND",
    "MAHALANOBIS_THRESHOLD",
    "MAX_DESCRIPTION_CHARS",
    "Reading",
    "FusedState",
    "MixedSignals",
    "Conflict",
    "categories_to_vad",
    "vad_to_categories",
    "fuse",
    "temporal_prior",
    "detect_mixed_signals",
    "describe",
    "describe_reading",
    "describe_modality",
]
