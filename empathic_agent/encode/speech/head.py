"""The trained heads (numpy inference), the doubt of an utterance from its measured properties, and
probabilities -> a `Reading` mixed with the latent space's prior.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.speech.baseline import BASELINE_PRIOR_CLIPS, DEFAULT_MIN_BASELINE_CLIPS, VoiceBaseline
from empathic_agent.encode.speech.features import feature_version
from empathic_agent.encode.speech.prosody import PROSODY_NAMES
from empathic_agent.encode.speech.whisper_layers import WHISPER_DIM
from empathic_agent.errors import ModelError
from empathic_agent.latent import CATEGORIES, MODALITY_SPEECH, Reading, categories_to_vad
from empathic_agent.latent.prior import mix_with_prior

log = logging.getLogger(__name__)

#: Committed trained heads (weights.npz + config.json + MODEL_CARD.md).
DEFAULT_WEIGHTS_DIR: Final[Path] = Path(__file__).resolve().parent.parent / "weights" / "speech"
WEIGHTS_FILE: Final[str] = "weights.npz"
CONFIG_FILE: Final[str] = "config.json"
#: Format of config.json this code reads.
CONFIG_FORMAT: Final[int] = 1

# --- uncertainty (doubt) --------------------------------------------------------------------------
#: Sounding time (s) from which the clip counts as long enough; below it the doubt grows as
#: (1 - t / FULL)^2 (0.3 s -> 0.49, 0.5 s -> 0.25).  RAVDESS clips hold ~1.3 s.
FULL_SPEECH_S: Final[float] = 1.0
#: SNR (dB) above which noise adds no doubt, and below which the clip is all doubt.
CLEAN_SNR_DB: Final[float] = 20.0
NOISY_SNR_DB: Final[float] = 5.0
#: Voiced share of the sounding frames below which the sound is not voiced speech (whisper,
#: hiss, noise): doubt rises linearly from VOICED_OK to 1 at VOICED_NONE.
VOICED_OK: Final[float] = 0.3
VOICED_NONE: Final[float] = 0.1
#: Mean absolute loudness change between 10-ms frames (dB): speech ~1.5-2.5 (syllables); a
#: steady tone or hum ~0.  Doubt rises from STATIC_OK down to STATIC_FULL.
STATIC_OK_DB: Final[float] = 0.6
STATIC_FULL_DB: Final[float] = 0.2
#: A flat pitch (10th-90th percentile range below this, semitones) adds up to half a doubt:
#: monotone speech is a weaker signal, but flat affect is itself information.
MONOTONE_ST: Final[float] = 1.5
#: Doubt added when no speaker baseline is available (cold start), on top of the cold head's own
#: (calibrated, lower) confidence: population statistics fit an unknown voice less well.
COLD_START_DOUBT: Final[float] = 0.1
#: Utterances with more doubt than this do not update the speaker's baseline (noise, clicks).
MAX_DOUBT_FOR_BASELINE: Final[float] = 0.5


# ---------------------------------------------------------------------------------------------
# The trained heads (numpy inference)


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class SpeechHead:
    """Features -> category probabilities with the committed linear heads.

    ``weights.npz`` holds, for D features: ``population_mean`` (D; also the NaN imputation
    value), ``within_variance`` (D; mean within-speaker variance of the training speakers, the
    prior of short baselines), and per head (``cold``, ``adapted``) its input standardiser
    ``{head}_mu``/``{head}_sd`` (D) and multinomial logistic regression ``{head}_W`` (7, D),
    ``{head}_b`` (7).  ``config.json`` holds the layers, the feature version, each head's
    temperature (fitted on out-of-fold predictions) and the measured figures.
    """

    HEADS: Final[tuple[str, ...]] = ("cold", "adapted")

    def __init__(self, config: dict[str, Any], arrays: dict[str, NDArray[np.float64]]) -> None:
        if config.get("format") != CONFIG_FORMAT:
            raise ModelError(f"speech head config format {config.get('format')!r} is not "
                             f"{CONFIG_FORMAT}; retrain with `empathic encoders train speech`")
        if list(config.get("categories", [])) != list(CATEGORIES):
            raise ModelError("speech head categories differ from the latent space's")
        self.config = config
        self.layers: tuple[int, ...] = tuple(int(k) for k in config["whisper_layers"])
        self.version: str = feature_version(self.layers)
        if config.get("feature_version") != self.version:
            raise ModelError(f"speech head was trained on features {config.get('feature_version')!r}, "
                             f"this code computes {self.version!r}; retrain the head")
        self.dim = len(PROSODY_NAMES) + 2 * WHISPER_DIM * len(self.layers)
        self.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        for key in ("population_mean", "within_variance") + tuple(
                f"{h}_{p}" for h in self.HEADS for p in ("mu", "sd", "W", "b")):
            if key not in self.arrays:
                raise ModelError(f"speech head weights lack {key!r}")
        if self.arrays["population_mean"].shape != (self.dim,):
            raise ModelError(f"speech head expects {self.arrays['population_mean'].shape} features, "
                             f"the layers {self.layers} give {self.dim}")
        self.min_baseline_clips = int(config.get("min_baseline_clips", DEFAULT_MIN_BASELINE_CLIPS))
        self.temperatures = {h: float(config["heads"][h]["temperature"]) for h in self.HEADS}
        #: The shrinkage pseudo-count the adapted head was trained with.
        self.prior_clips = float(config.get("baseline_prior_clips", BASELINE_PRIOR_CLIPS))

    @classmethod
    def load(cls, weights_dir: Path | str = DEFAULT_WEIGHTS_DIR) -> "SpeechHead":
        weights_dir = Path(weights_dir)
        cfg_path, npz_path = weights_dir / CONFIG_FILE, weights_dir / WEIGHTS_FILE
        if not cfg_path.is_file() or not npz_path.is_file():
            raise ModelError(f"no trained speech head in {weights_dir} (expected {CONFIG_FILE} and "
                             f"{WEIGHTS_FILE}); train one with `empathic encoders train speech`")
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(config, arrays)

    @property
    def population_mean(self) -> NDArray[np.float64]:
        return self.arrays["population_mean"]

    @property
    def within_variance(self) -> NDArray[np.float64]:
        return self.arrays["within_variance"]

    def impute(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Replace undefined features (NaN: no voiced frame, too few periods...) with the
        population mean, so they carry no evidence either way.  (D,) or (N, D)."""
        x = np.array(x, dtype=np.float64, copy=True)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(self.population_mean, x.shape)[bad]
        return x

    def speaker_normalise(self, x: NDArray[np.float64], baseline: VoiceBaseline) -> NDArray[np.float64]:
        """z-score imputed features against a speaker's (shrunk) baseline."""
        centre, scale = baseline.normaliser(self.population_mean, self.within_variance, self.prior_clips)
        return (x - centre) / scale

    def logits(self, head: str, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Raw logits (N, 7) of ``head`` for its inputs (imputed features for ``cold``,
        speaker-normalised features for ``adapted``)."""
        a = self.arrays
        z = (np.atleast_2d(x) - a[f"{head}_mu"]) / a[f"{head}_sd"]
        return z @ a[f"{head}_W"].T + a[f"{head}_b"]

    def probabilities(self, head: str, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated category probabilities (N, 7) in CATEGORIES order."""
        return _softmax(self.logits(head, x) / self.temperatures[head])


def doubt_of(quality: dict[str, float], *, cold_start: bool) -> dict[str, float]:
    """Reasons to doubt a clip's reading, each in [0, 1], and their combination ``doubt``.

    Keys: ``short`` (little sound), ``noisy`` (low SNR), ``flat`` (no voicing, no loudness
    movement, half for a flat pitch), ``cold_start`` (no speaker baseline), ``doubt``.
    """
    speech_s = float(quality.get("speech_s", 0.0))
    short = float(np.clip(1.0 - speech_s / FULL_SPEECH_S, 0.0, 1.0) ** 2)
    snr = float(quality.get("snr_db", 0.0))
    noisy = float(np.clip((CLEAN_SNR_DB - snr) / (CLEAN_SNR_DB - NOISY_SNR_DB), 0.0, 1.0))
    voiced_share = float(quality.get("voiced_s", 0.0)) / speech_s if speech_s > 0 else 0.0
    unvoiced = float(np.clip((VOICED_OK - voiced_share) / (VOICED_OK - VOICED_NONE), 0.0, 1.0))
    static = float(np.clip((STATIC_OK_DB - float(quality.get("modulation", 0.0)))
                           / (STATIC_OK_DB - STATIC_FULL_DB), 0.0, 1.0))
    monotone = 0.5 * float(np.clip(1.0 - float(quality.get("f0_range_st", 0.0)) / MONOTONE_ST, 0.0, 1.0))
    flat = 1.0 - (1.0 - unvoiced) * (1.0 - static) * (1.0 - monotone)
    cold = COLD_START_DOUBT if cold_start else 0.0
    total = 1.0 - (1.0 - short) * (1.0 - noisy) * (1.0 - flat) * (1.0 - cold)
    return {"short": short, "noisy": noisy, "flat": flat, "cold_start": cold, "doubt": float(total)}


def reading_from_probabilities(probs: NDArray[np.float64], doubt: float) -> Reading:
    """Categories -> prototype-mixture VAD, then mixed with the uninformed prior (weight doubt)."""
    p = np.asarray(probs, dtype=np.float64)
    mean, var = categories_to_vad(p)
    mean_u, var_u, probs_u = mix_with_prior(mean, var, p, float(doubt))
    return Reading(mean=mean_u, variance=var_u, categories=probs_u, modality=MODALITY_SPEECH)
