"""Names and numeric conventions of the emotional latent space.

Everything that defines *the space itself* lives here, so that every other module
(readings, prototypes, fusion, incongruence, descriptions) agrees on it:

* the three VAD dimensions (valence, arousal, dominance — Mehrabian & Russell's PAD
  model), each scaled to [-1, 1];
* the seven categories (Ekman's six basic emotions plus neutral, the FER-2013 label
  set, onto which GoEmotions' Ekman grouping and RAVDESS map);
* the variance conventions: a floor, the variance of an "uninformative" reading, and
  the reference variance that turns a variance into a 0..1 confidence.
"""

from __future__ import annotations

from typing import Final

#: The category labels, in the fixed order used by every probability vector.
CATEGORIES: Final[tuple[str, ...]] = (
    "neutral",
    "joy",
    "sadness",
    "anger",
    "fear",
    "surprise",
    "disgust",
)

#: The VAD dimensions, in the fixed order used by every mean/variance vector.
DIMENSIONS: Final[tuple[str, ...]] = ("valence", "arousal", "dominance")

N_CATEGORIES: Final[int] = len(CATEGORIES)
N_DIMENSIONS: Final[int] = len(DIMENSIONS)

#: Bounds of every VAD coordinate; means are clipped into this box.
VAD_MIN: Final[float] = -1.0
VAD_MAX: Final[float] = 1.0

#: Smallest variance a reading may claim (SD 0.01, i.e. 0.5 % of the [-1, 1] range).
#: No encoder is that precise; the floor stops a buggy or over-confident encoder from
#: producing a near-infinite precision that would silence every other modality in
#: fusion (and avoids division by zero).
MIN_VARIANCE: Final[float] = 1e-4

#: Variance of the "uninformative" reading and the cap on any variance.  It is finite
#: (so readings stay plain-JSON serialisable: JSON has no Infinity) but so large that
#: its precision (1e-6) is negligible next to any real reading: a reading with the
#: widest *meaningful* variance (1/3, a uniform spread over [-1, 1]) has precision 3.
UNINFORMATIVE_VARIANCE: Final[float] = 1e6

#: Variance at which a reading counts as half-confident.  It equals the squared spread
#: of a category prototype (see prototypes.PROTOTYPE_SD = 0.25), so "confidence 0.5"
#: reads as "as uncertain as the whole region of one emotion category".
#: confidence = mean over dimensions of 1 / (1 + variance / REFERENCE_VARIANCE).
REFERENCE_VARIANCE: Final[float] = 0.25**2

#: Tolerance within which a category vector already counts as summing to 1, so it is
#: not renormalised again (keeps JSON round trips bit-exact).
CATEGORY_SUM_TOLERANCE: Final[float] = 1e-9

#: Modality names with a conventional meaning.  Encoders may use other names; only
#: the ones in NON_EVIDENCE_MODALITIES are treated specially (they are not direct
#: observations of the person, so they never count towards mixed signals).
MODALITY_TEXT: Final[str] = "text"
MODALITY_SPEECH: Final[str] = "speech"
MODALITY_FACE: Final[str] = "face"
MODALITY_FUSED: Final[str] = "fused"
MODALITY_PRIOR: Final[str] = "prior"
NON_EVIDENCE_MODALITIES: Final[frozenset[str]] = frozenset({MODALITY_FUSED, MODALITY_PRIOR})
