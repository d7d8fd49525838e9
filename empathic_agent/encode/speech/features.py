"""The feature vector of one utterance: prosody ++ pooled Whisper layers (:class:`SpeechFeatureExtractor`),
and the feature version that keeps cached features and stored baselines comparable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.speech.prosody import PROSODY_NAMES, extract_prosody
from empathic_agent.encode.speech.whisper_layers import WHISPER_DIM, WhisperLayers
from empathic_agent.perceive.audio import AudioClip

log = logging.getLogger(__name__)

#: Version of the feature definition (prosody set + pooling).  The full feature version adds the
#: Whisper layers (:func:`feature_version`); cached training features and stored speaker
#: baselines of another version are not comparable and are ignored/rebuilt.
FEATURE_FORMAT: Final[str] = "speech-features-2"

def feature_version(layers: Sequence[int]) -> str:
    """The feature version string of a Whisper layer set, e.g. ``speech-features-2:L2-4``."""
    return f"{FEATURE_FORMAT}:L{'-'.join(str(int(k)) for k in layers)}"


def feature_names(layers: Sequence[int]) -> list[str]:
    """Names of the feature vector's entries (prosody, then mean and std of each layer)."""
    names = list(PROSODY_NAMES)
    for k in layers:
        names += [f"whisper_l{k}_mean_{i}" for i in range(WHISPER_DIM)]
        names += [f"whisper_l{k}_std_{i}" for i in range(WHISPER_DIM)]
    return names




@dataclass(frozen=True, eq=False)
class SpeechFeatures:
    """The features of one utterance.

    Attributes:
        vector: (D,) float64 = prosody (may hold NaN) ++ for each Whisper layer: mean ++ std.
        quality: measures of the audio used for the doubt (``speech_s``, ``voiced_s``,
            ``f0_range_st``, ``int_std_db``, ``modulation``, ``snr_db``, ``duration_s``).
        timings: seconds per stage (``prosody_s``, ``whisper_s``).
    """

    vector: NDArray[np.float64]
    quality: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


class SpeechFeatureExtractor:
    """Clip -> :class:`SpeechFeatures` (prosody + pooled Whisper layers)."""

    def __init__(self, whisper: WhisperLayers) -> None:
        self.whisper = whisper

    @property
    def layers(self) -> tuple[int, ...]:
        return self.whisper.layers

    @property
    def dim(self) -> int:
        return len(PROSODY_NAMES) + 2 * WHISPER_DIM * len(self.layers)

    @property
    def version(self) -> str:
        return feature_version(self.layers)

    def extract(self, clip: AudioClip, *, mel: NDArray[np.float32] | None = None) -> SpeechFeatures:
        """Features of a clip; ``mel`` (from the transcriber) skips recomputing the spectrogram."""
        t0 = time.perf_counter()
        prosody, quality = extract_prosody(clip.samples, clip.sample_rate)
        t1 = time.perf_counter()
        if mel is None:
            mel = self.whisper.log_mel(clip.samples)
        hidden = self.whisper(mel)
        pooled = [np.concatenate([hidden[k].mean(axis=0), hidden[k].std(axis=0)]) for k in self.layers]
        t2 = time.perf_counter()
        quality = {**quality, "snr_db": float(clip.snr_db), "duration_s": float(clip.duration_s)}
        vector = np.concatenate([prosody] + [p.astype(np.float64) for p in pooled])
        return SpeechFeatures(vector=vector, quality=quality,
                              timings={"prosody_s": t1 - t0, "whisper_s": t2 - t1})
