"""The speech emotion encoder: how something was said -> a `Reading` (modality "speech").

Features of one utterance (:class:`SpeechFeatureExtractor`, ~50-100 ms for a few seconds):

* **prosody** (:data:`PROSODY_NAMES`, 30 numbers, praat-parselmouth + numpy): F0 level, spread,
  range, slope and movement (semitones), loudness level/spread/range/slope/movement, voice
  quality (jitter, shimmer, harmonics-to-noise ratio), spectral balance (alpha ratio,
  Hammarberg index, centroid, flatness, flux) and tempo (syllable-nucleus rate, pauses);
* **Whisper-base encoder embeddings** from *intermediate* layers, pooled over time (mean and
  standard deviation of the 512-d frames of each chosen layer).  Whisper's last encoder layer is
  tuned for transcription; its middle layers carry much more about *how* something was said
  (measured here: 7-class accuracy on unseen speakers ~.72 with the last layer, ~.80 with layers
  2 and 4 — see the model card).  CTranslate2 returns only the encoder's output, so for each
  chosen layer k the Whisper weights the transcriber uses are copied once into a model whose
  encoder stops after layer k (:func:`prepare_truncated_whisper`; a ~25 MB file in the cache,
  built from the packaged model, decoder reduced to a stub).  The encoder runs over only the
  frames that hold audio (CTranslate2 accepts fewer than 3000 frames), and the log-mel
  spectrogram is shared with the transcriber when the perception pipeline runs both.

A small head trained on RAVDESS (`training.speech`: actor-disjoint splits, model selection by
cross-validation over actor folds) maps features to the seven categories.  Two heads are
committed in ``weights/speech/``:

* **cold start** — features standardised with population statistics;
* **speaker-adapted** — features normalised against *this speaker's own* running baseline
  (:class:`VoiceBaseline`: mean and variance of the features of the speaker's earlier
  utterances, unlabelled).  Voices differ more between people than between one person's
  emotions; subtracting the speaker's baseline removes most of that.  The baseline is shrunk
  towards the population statistics (:meth:`VoiceBaseline.normaliser`) and the adapted head is
  used once it holds ``min_baseline_clips`` clips (chosen by training; see ``config.json``).

Baselines are persisted per user in a small SQLite file (:class:`VoiceBaselineStore`, under
``settings.memory_dir / "voice_baselines"``), with export and deletion for users' data rights.

From probabilities to a reading (uncertainty):

1. categories -> VAD with the latent space's prototype mixture (``categories_to_vad``):
   hesitating between distant categories already widens the variance;
2. a **doubt** ``u`` in [0, 1] from measured properties of the audio — short (little sound),
   noisy (low SNR), flat (no loudness movement or no voicing: a hum, a tone, a hiss; a flat
   pitch counts half) — and from the absence of a speaker baseline (cold start is less
   reliable), combined as independent reasons to doubt: ``u = 1 - prod(1 - u_i)``;
3. the reading is the moment-matched mixture of the model's reading (weight ``1-u``) and the
   uninformed prior (weight ``u``: neutral mean, variance of a uniform spread over [-1, 1],
   uniform categories), as the text encoder does.  Silence gives an uninformative reading.

Nothing heavy is imported at module level (parselmouth, ctranslate2, faster-whisper load on
first use).  Licence note: the committed heads are trained on RAVDESS (CC BY-NC-SA 4.0):
non-commercial use only — see ``weights/speech/MODEL_CARD.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.base import INPUT_PATH, Encoder, EncoderError
from empathic_agent.errors import BackendUnavailableError, EmpathicError, InputError, ModelError
from empathic_agent.latent import CATEGORIES, MODALITY_SPEECH, Reading, categories_to_vad
from empathic_agent.latent.prior import mix_with_prior
from empathic_agent.perceive.audio import (
    TARGET_SAMPLE_RATE,
    AudioClip,
    AudioError,
    AudioLimits,
    decode_audio,
    frame_levels_db,
)

if TYPE_CHECKING:
    from empathic_agent.perceive.stt import STT, Transcript
    from empathic_agent.settings import Settings

__all__ = [
    "FEATURE_FORMAT",
    "PROSODY_NAMES",
    "WHISPER_DIM",
    "WHISPER_MODEL",
    "DEFAULT_WEIGHTS_DIR",
    "feature_version",
    "feature_names",
    "extract_prosody",
    "prepare_truncated_whisper",
    "WhisperLayers",
    "SpeechFeatures",
    "SpeechFeatureExtractor",
    "VoiceBaseline",
    "VoiceBaselineStore",
    "leave_one_out_normalise",
    "SpeechHead",
    "doubt_of",
    "reading_from_probabilities",
    "SpeechAnalysis",
    "SpeechEncoder",
    "SpeechPerception",
    "SpeechPerceptionResult",
]

log = logging.getLogger(__name__)

#: Version of the feature definition (prosody set + pooling).  The full feature version adds the
#: Whisper layers (:func:`feature_version`); cached training features and stored speaker
#: baselines of another version are not comparable and are ignored/rebuilt.
FEATURE_FORMAT: Final[str] = "speech-features-2"

#: Committed trained heads (weights.npz + config.json + MODEL_CARD.md).
DEFAULT_WEIGHTS_DIR: Final[Path] = Path(__file__).resolve().parent / "weights" / "speech"
WEIGHTS_FILE: Final[str] = "weights.npz"
CONFIG_FILE: Final[str] = "config.json"
#: Format of config.json this code reads.
CONFIG_FORMAT: Final[int] = 1
#: The Whisper model whose encoder layers the heads were trained on (registry name, role "stt").
#: Always this one, whatever ``settings.stt_model`` says: other models' layers mean other things.
WHISPER_MODEL: Final[str] = "whisper-base"
#: Dimension of one Whisper-base encoder frame.
WHISPER_DIM: Final[int] = 512

#: Pitch search range (Hz): covers low male to high female/child voices (Praat's usual 75-600).
F0_FLOOR_HZ: Final[float] = 75.0
F0_CEILING_HZ: Final[float] = 600.0
#: Analysis hop of every contour (s).
HOP_S: Final[float] = 0.010
#: Reference of the semitone scale (Hz); only differences matter after normalisation.
SEMITONE_REF_HZ: Final[float] = 100.0
#: Frames within this many dB of the loudest frame count as "sounding" (speech, not pause).
ACTIVE_RANGE_DB: Final[float] = 30.0
#: Frames below this level are digital silence whatever the gain (16-bit dither is ~-100 dBFS).
DIGITAL_FLOOR_DB: Final[float] = -90.0
#: A syllable nucleus is an intensity peak at least this prominent (dB above the dip before it)
#: in a voiced frame (de Jong & Wempe 2009 use 2 dB).
NUCLEUS_PROMINENCE_DB: Final[float] = 2.0
#: Minimum distance between two nuclei (s): syllables are rarely shorter than ~70 ms.
NUCLEUS_MIN_GAP_S: Final[float] = 0.07
#: STFT for the spectral balance features: 25 ms window, 10 ms hop, 512-point FFT at 16 kHz.
STFT_WINDOW: Final[int] = 400
STFT_HOP: Final[int] = 160
STFT_FFT: Final[int] = 512

#: The prosody features, in vector order.  Units: st = semitones, dB, s, Hz/1000.
PROSODY_NAMES: Final[tuple[str, ...]] = (
    # pitch (voiced frames)
    "f0_mean_st", "f0_std_st", "f0_p10_st", "f0_p50_st", "f0_p90_st", "f0_range_st",
    "f0_slope_st_per_s", "f0_velocity_st", "voiced_fraction",
    # loudness (sounding frames)
    "int_mean_db", "int_std_db", "int_p10_db", "int_p90_db", "int_range_db", "int_slope_db_per_s",
    "int_velocity_db",
    # voice quality
    "jitter_local", "shimmer_local", "hnr_mean_db", "hnr_std_db",
    # spectral balance (sounding frames)
    "alpha_ratio_db", "hammarberg_db", "centroid_khz", "centroid_std_khz", "flatness", "flux",
    "low_high_ratio_db",
    # tempo
    "nucleus_rate_per_s", "pause_fraction", "sound_fraction",
)

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

# --- speaker adaptation -------------------------------------------------------------------------
#: Pseudo-count of the population statistics in the shrunk speaker baseline: with n clips the
#: baseline mean is (n * speaker_mean + K * population_mean) / (n + K) (a conjugate-prior
#: estimate), so a handful of clips moves it only part of the way.
BASELINE_PRIOR_CLIPS: Final[float] = 4.0
#: Running statistics forget old clips once this many are in (an exponentially weighted
#: baseline follows a voice that changes — a new microphone, a cold — instead of freezing).
BASELINE_MAX_WEIGHT: Final[float] = 200.0
#: Default number of baseline clips before the adapted head is used (config.json may override
#: it with the value training measured).
DEFAULT_MIN_BASELINE_CLIPS: Final[int] = 8


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


def _nan_stats(x: NDArray[np.float64]) -> tuple[float, float, float, float, float]:
    """(mean, std, p10, p50, p90) of a 1-D array, NaNs when empty."""
    if x.size == 0:
        return (math.nan,) * 5
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return float(x.mean()), float(x.std()), float(p10), float(p50), float(p90)


def _slope(t: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Least-squares slope dy/dt, NaN with fewer than 3 points or no time spread."""
    if y.size < 3 or np.ptp(t) <= 0:
        return math.nan
    t = t - t.mean()
    return float((t @ (y - y.mean())) / (t @ t))


def _velocity(y: NDArray[np.float64], valid: NDArray[np.bool_]) -> float:
    """Mean absolute change between consecutive valid frames (per hop), NaN if none."""
    both = valid[1:] & valid[:-1]
    if not both.any():
        return math.nan
    return float(np.mean(np.abs(np.diff(y))[both]))


def _syllable_nuclei(intensity: NDArray[np.float64], voiced: NDArray[np.bool_], floor_db: float) -> int:
    """Count intensity peaks that are prominent, voiced and above ``floor_db`` (de Jong & Wempe)."""
    count, last_peak, dip = 0, -10**9, float(intensity[0]) if intensity.size else 0.0
    min_gap = int(round(NUCLEUS_MIN_GAP_S / HOP_S))
    for i in range(1, intensity.size - 1):
        y = intensity[i]
        dip = min(dip, y)
        if y >= intensity[i - 1] and y > intensity[i + 1] and y > floor_db and voiced[i]:
            if y - dip >= NUCLEUS_PROMINENCE_DB and i - last_peak >= min_gap:
                count += 1
                last_peak = i
                dip = y
    return count


def extract_prosody(samples: NDArray[np.floating],
                    sample_rate: int = TARGET_SAMPLE_RATE) -> tuple[NDArray[np.float64], dict[str, float]]:
    """Prosody vector (len(PROSODY_NAMES),) and quality measures of a mono clip.

    Undefined values (no voiced frame, too few periods for jitter) are NaN; the head replaces
    them with the population mean.  Quality keys: ``speech_s`` (sounding time), ``voiced_s``,
    ``f0_range_st``, ``int_std_db``, ``modulation`` (loudness movement) — used for the doubt.
    """
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendUnavailableError("praat-parselmouth is not installed: pip install praat-parselmouth") from exc
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    min_len = int(0.1 * sample_rate)  # Praat needs a few pitch periods of signal
    if x.size < min_len:
        x = np.pad(x, (0, min_len - x.size))
    snd = parselmouth.Sound(x, sampling_frequency=float(sample_rate))

    # Loudness contour on our own 10-ms grid (dBFS), and which frames sound.
    levels = frame_levels_db(x, sample_rate, frame_s=0.025, hop_s=HOP_S)
    n = levels.size
    times = np.arange(n) * HOP_S + 0.0125
    # Relative to the clip's loudest frame (microphone gain varies by tens of dB), above the
    # digital floor.
    active = (levels > levels.max() - ACTIVE_RANGE_DB) & (levels > DIGITAL_FLOOR_DB)

    # Pitch on the same grid (Praat's autocorrelation method).
    pitch = snd.to_pitch_ac(time_step=HOP_S, pitch_floor=F0_FLOOR_HZ, pitch_ceiling=F0_CEILING_HZ)
    f0_t = np.asarray(pitch.xs(), dtype=np.float64)
    f0_hz = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    f0 = np.zeros(n)
    if f0_t.size:
        idx = np.clip(np.round((f0_t - 0.0125) / HOP_S).astype(int), 0, n - 1)
        f0[idx] = f0_hz
    voiced = (f0 > 0) & active
    st = np.where(voiced, 12.0 * np.log2(np.maximum(f0, 1.0) / SEMITONE_REF_HZ), 0.0)
    st_v = st[voiced]
    f_mean, f_std, f_p10, f_p50, f_p90 = _nan_stats(st_v)
    voiced_fraction = float(voiced.sum() / max(1, active.sum()))

    lv = levels[active]
    i_mean, i_std, i_p10, _, i_p90 = _nan_stats(lv)

    # Voice quality (Praat's standard settings).
    hnr = np.asarray(snd.to_harmonicity_cc(time_step=HOP_S, minimum_pitch=F0_FLOOR_HZ).values[0])
    hnr = hnr[hnr > -100]  # Praat marks unvoiced frames with -200 dB
    jitter = shimmer = math.nan
    if voiced.sum() >= 5:
        try:
            pp = call(snd, "To PointProcess (periodic, cc)", F0_FLOOR_HZ, F0_CEILING_HZ)
            jitter = float(call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3))
            shimmer = float(call([snd, pp], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6))
        except parselmouth.PraatError:
            pass

    # Spectral balance over sounding frames.
    spec = _spectral(x, active)

    # Tempo.
    speech_s = float(active.sum() * HOP_S)
    nuclei = _syllable_nuclei(levels, voiced, floor_db=float(np.median(lv)) if lv.size else 0.0)
    first = int(np.argmax(active)) if active.any() else 0
    last = int(n - 1 - np.argmax(active[::-1])) if active.any() else 0
    span = active[first:last + 1]
    pause_fraction = float(1.0 - span.mean()) if span.size else math.nan

    vec = np.array([
        f_mean, f_std, f_p10, f_p50, f_p90, f_p90 - f_p10,
        _slope(times[voiced], st_v), _velocity(st, voiced), voiced_fraction,
        i_mean, i_std, i_p10, i_p90, i_p90 - i_p10, _slope(times[active], lv), _velocity(levels, active),
        jitter, shimmer,
        float(hnr.mean()) if hnr.size else math.nan, float(hnr.std()) if hnr.size else math.nan,
        spec["alpha_ratio_db"], spec["hammarberg_db"], spec["centroid_khz"], spec["centroid_std_khz"],
        spec["flatness"], spec["flux"], spec["low_high_ratio_db"],
        nuclei / speech_s if speech_s > 0 else math.nan, pause_fraction, float(active.mean()),
    ], dtype=np.float64)
    quality = {
        "speech_s": speech_s,
        "voiced_s": float(voiced.sum() * HOP_S),
        "f0_range_st": float(f_p90 - f_p10) if st_v.size else 0.0,
        "int_std_db": float(i_std) if lv.size else 0.0,
        "modulation": float(_velocity(levels, active)) if active.sum() > 1 else 0.0,
    }
    return vec, quality


def _spectral(x: NDArray[np.float64], active: NDArray[np.bool_]) -> dict[str, float]:
    """Spectral balance features of the sounding frames (power spectrum, Hann window)."""
    nan = {k: math.nan for k in ("alpha_ratio_db", "hammarberg_db", "centroid_khz", "centroid_std_khz",
                                 "flatness", "flux", "low_high_ratio_db")}
    if x.size < STFT_WINDOW:
        return nan
    n = 1 + (x.size - STFT_WINDOW) // STFT_HOP
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n, STFT_WINDOW), strides=(x.strides[0] * STFT_HOP, x.strides[0]))
    power = np.abs(np.fft.rfft(frames * np.hanning(STFT_WINDOW), n=STFT_FFT, axis=1)) ** 2 + 1e-12
    m = min(n, active.size)
    sel = np.flatnonzero(active[:m])
    if sel.size == 0:
        return nan
    p = power[sel]
    freqs = np.fft.rfftfreq(STFT_FFT, 1.0 / TARGET_SAMPLE_RATE)

    def band(lo: float, hi: float) -> NDArray[np.float64]:
        return p[:, (freqs >= lo) & (freqs < hi)]

    alpha = 10 * np.log10(band(1000, 5000).sum(1) / band(50, 1000).sum(1))
    hammarberg = 10 * np.log10(band(0, 2000).max(1) / band(2000, 5000).max(1))
    centroid = (p * freqs).sum(1) / p.sum(1) / 1000.0
    flatness = np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)
    logp = np.log(p)
    flux = np.mean(np.abs(np.diff(logp, axis=0)), axis=1) if p.shape[0] > 1 else np.array([math.nan])
    low_high = 10 * np.log10(band(0, 500).sum(1) / band(500, 8000).sum(1))
    return {"alpha_ratio_db": float(alpha.mean()), "hammarberg_db": float(hammarberg.mean()),
            "centroid_khz": float(centroid.mean()), "centroid_std_khz": float(centroid.std()),
            "flatness": float(flatness.mean()), "flux": float(np.nanmean(flux)),
            "low_high_ratio_db": float(low_high.mean())}


# ---------------------------------------------------------------------------------------------
# Whisper encoder layers

#: CTranslate2 model.bin versions whose layout this module reads/writes (header, variables with
#: uint16-length NUL-terminated names, aliases).  Written by ctranslate2's model_spec._serialize.
_CT2_BINARY_VERSIONS: Final[tuple[int, ...]] = (5, 6)
#: Size of one element per CTranslate2 dtype id (float32, int8, int16, int32, float16, bfloat16).
_CT2_DTYPE_SIZE: Final[dict[int, int]] = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}
#: Vocabulary rows kept in the stub decoder of a truncated model (the decoder never runs).
_STUB_VOCAB: Final[int] = 8
#: Recipe version of truncated models (bump to rebuild cached ones).
_TRUNCATE_RECIPE: Final[int] = 1


def _read_string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<H", fh.read(2))
    return fh.read(n)[:-1].decode("utf-8")


def _write_string(fh: BinaryIO, s: str) -> None:
    data = s.encode("utf-8")
    fh.write(struct.pack("<H", len(data) + 1))
    fh.write(data + b"\0")


def _layer_index(name: str, stack: str) -> int | None:
    """``encoder/layer_3/...`` -> 3 for stack "encoder"; None for other variables."""
    parts = name.split("/")
    if len(parts) > 2 and parts[0] == stack and parts[1].startswith("layer_") and parts[1][6:].isdigit():
        return int(parts[1][6:])
    return None


def prepare_truncated_whisper(source_dir: Path | str, target_dir: Path | str, encoder_layers: int) -> Path:
    """Write a CTranslate2 Whisper model whose encoder stops after ``encoder_layers`` layers.

    Everything the encoder needs (convolutions, positions, the first layers, the final layer
    norm) is copied unchanged from ``source_dir/model.bin``; the decoder is reduced to one layer
    and an 8-row vocabulary (CTranslate2 needs a decoder to load the model; it never runs), so the
    file is ~25 MB instead of ~145 MB.  Built into a temporary directory and renamed into place
    (atomic), under an inter-process lock; a manifest records the source and recipe, and an
    up-to-date target is reused.  Raises :class:`ModelError` on an unreadable source.
    """
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    src = source_dir / "model.bin"
    if not src.is_file():
        raise ModelError(f"no Whisper model.bin in {source_dir}")
    manifest = {"source": str(src.resolve()), "source_size": src.stat().st_size,
                "encoder_layers": int(encoder_layers), "recipe": _TRUNCATE_RECIPE}
    manifest_path = target_dir / "empathic-truncated.json"

    def up_to_date() -> bool:
        try:
            return (json.loads(manifest_path.read_text()) == manifest
                    and (target_dir / "model.bin").is_file())
        except (OSError, ValueError):
            return False

    if up_to_date():
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(target_dir.parent / f".{target_dir.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if up_to_date():
                return target_dir
            tmp = target_dir.parent / f".{target_dir.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                _write_truncated(src, tmp / "model.bin", int(encoder_layers))
                for name in os.listdir(source_dir):
                    if name.endswith((".json", ".txt")) and not name.startswith("empathic-"):
                        shutil.copy2(source_dir / name, tmp / name)
                (tmp / manifest_path.name).write_text(json.dumps(manifest, indent=1))
                shutil.rmtree(target_dir, ignore_errors=True)
                os.replace(tmp, target_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target_dir


def _write_truncated(src: Path, dst: Path, keep: int) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        (version,) = struct.unpack("<I", fin.read(4))
        if version not in _CT2_BINARY_VERSIONS:
            raise ModelError(f"{src}: CTranslate2 binary version {version} is not supported "
                             f"(expected one of {_CT2_BINARY_VERSIONS})")
        spec = _read_string(fin)
        if spec != "WhisperSpec":
            raise ModelError(f"{src} is a {spec}, not a Whisper model")
        (revision,) = struct.unpack("<I", fin.read(4))
        (count,) = struct.unpack("<I", fin.read(4))
        kept: list[tuple[str, tuple[int, ...], int, bytes]] = []
        n_encoder = 0
        for _ in range(count):
            name = _read_string(fin)
            (rank,) = struct.unpack("<B", fin.read(1))
            shape = struct.unpack("<" + "I" * rank, fin.read(4 * rank)) if rank else ()
            (dtype,) = struct.unpack("<B", fin.read(1))
            (nbytes,) = struct.unpack("<I", fin.read(4))
            data = fin.read(nbytes)
            enc, dec = _layer_index(name, "encoder"), _layer_index(name, "decoder")
            if enc is not None:
                n_encoder = max(n_encoder, enc + 1)
                if enc >= keep:
                    continue
            if dec is not None and dec >= 1:
                continue
            if name in ("decoder/embeddings/weight", "decoder/projection/bias") and shape:
                rows = min(_STUB_VOCAB, shape[0])
                shape = (rows,) + tuple(shape[1:])
                data = data[: rows * int(np.prod(shape[1:], dtype=np.int64)) * _CT2_DTYPE_SIZE[dtype]]
            kept.append((name, tuple(shape), dtype, data))
        (n_alias,) = struct.unpack("<I", fin.read(4))
        aliases = [(_read_string(fin), _read_string(fin)) for _ in range(n_alias)]
        if not 1 <= keep <= n_encoder:
            raise ModelError(f"{src}: cannot keep {keep} encoder layers of {n_encoder}")
        fout.write(struct.pack("<I", version))
        _write_string(fout, spec)
        fout.write(struct.pack("<I", revision))
        fout.write(struct.pack("<I", len(kept)))
        for name, shape, dtype, data in kept:
            _write_string(fout, name)
            fout.write(struct.pack("<B", len(shape)))
            if shape:
                fout.write(struct.pack("<" + "I" * len(shape), *shape))
            fout.write(struct.pack("<B", dtype))
            fout.write(struct.pack("<I", len(data)))
            fout.write(data)
        fout.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases:
            _write_string(fout, alias)
            _write_string(fout, target)


class WhisperLayers:
    """Whisper-base encoder outputs after layers ``layers`` (each followed by the final layer
    norm), over only the frames that hold audio.  One truncated CTranslate2 model per layer,
    prepared once into ``cache_dir / "speech-emotion"``.  Thread-safe (a lock per instance).
    """

    def __init__(self, source_dir: Path | str, cache_dir: Path | str, layers: Sequence[int]) -> None:
        self.source_dir = Path(source_dir)
        self.cache_dir = Path(cache_dir)
        self.layers = tuple(int(k) for k in layers)
        if not self.layers:
            raise ValueError("at least one Whisper layer is needed")
        self._models: dict[int, Any] = {}
        self._mel: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_registry(cls, cache_dir: Path | str, layers: Sequence[int]) -> "WhisperLayers":
        """The packaged Whisper-base (``resolve_model("stt", WHISPER_MODEL, cache_dir)``)."""
        from empathic_agent.models import resolve_model

        resolved = resolve_model("stt", WHISPER_MODEL, Path(cache_dir))
        return cls(resolved.path, cache_dir, layers)

    def load(self) -> None:
        """Prepare (once) and load the truncated models. Idempotent."""
        if self._models:
            return
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise BackendUnavailableError(
                "the speech encoder needs faster-whisper: pip install 'empathic-agent[speech]'") from exc
        with self._lock:
            if self._models:
                return
            models = {}
            for k in self.layers:
                target = self.cache_dir / "speech-emotion" / f"{WHISPER_MODEL}-encoder-l{k}"
                path = prepare_truncated_whisper(self.source_dir, target, k)
                models[k] = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="int8")
            self._mel = FeatureExtractor()
            self._models = models

    def log_mel(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """Whisper's log-mel spectrogram (80, n_frames + 1) of 16 kHz samples."""
        self.load()
        return np.asarray(self._mel(np.asarray(samples, dtype=np.float32)), dtype=np.float32)

    def __call__(self, mel: NDArray[np.float32]) -> dict[int, NDArray[np.float32]]:
        """Hidden states per layer: {k: (ceil(n/2), 512)} for a (80, n + 1) log-mel spectrogram."""
        import ctranslate2

        from empathic_agent.perceive.stt import MIN_ENCODER_FRAMES, WHISPER_WINDOW_FRAMES

        self.load()
        n = int(min(WHISPER_WINDOW_FRAMES, max(MIN_ENCODER_FRAMES, mel.shape[-1] - 1)))
        x = mel[:, :n]
        if x.shape[-1] < n:
            x = np.pad(x, ((0, 0), (0, n - x.shape[-1])), constant_values=float(mel.min()))
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(x[None], dtype=np.float32))
        with self._lock:
            return {k: np.asarray(m.encode(features, to_cpu=True), dtype=np.float32)[0]
                    for k, m in self._models.items()}


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


# ---------------------------------------------------------------------------------------------
# Per-speaker baselines


@dataclass(frozen=True, eq=False)
class VoiceBaseline:
    """Running statistics of one speaker's (imputed) feature vectors, unlabelled.

    An exponentially weighted mean and variance: exact running statistics for the first
    ``BASELINE_MAX_WEIGHT`` clips, then a window that slowly forgets old clips.

    Attributes:
        clips: utterances seen.
        weight: effective number of clips (min(clips, BASELINE_MAX_WEIGHT)).
        mean, variance: (D,) float64.
        feature_version: :func:`feature_version` of the vectors.
    """

    clips: int
    weight: float
    mean: NDArray[np.float64]
    variance: NDArray[np.float64]
    feature_version: str = ""
    updated_at: float = 0.0

    @classmethod
    def empty(cls, dim: int, version: str = "") -> "VoiceBaseline":
        return cls(0, 0.0, np.zeros(dim), np.zeros(dim), version)

    @classmethod
    def from_vectors(cls, vectors: NDArray[np.float64], version: str = "") -> "VoiceBaseline":
        """The baseline of a set of (imputed) feature vectors (N, D) at once."""
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, D) array, got shape {v.shape}")
        n = v.shape[0]
        return cls(n, float(min(n, BASELINE_MAX_WEIGHT)), v.mean(axis=0), v.var(axis=0), version, time.time())

    def updated(self, x: NDArray[np.float64]) -> "VoiceBaseline":
        """The baseline after one more (imputed) feature vector."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.mean.shape:
            raise ValueError(f"feature vector has shape {x.shape}, baseline {self.mean.shape}")
        weight = min(self.weight + 1.0, BASELINE_MAX_WEIGHT)
        alpha = 1.0 / weight
        delta = x - self.mean
        mean = self.mean + alpha * delta
        # Exponentially weighted variance; equals the plain running (population) variance
        # while weight == clips.
        var = (1.0 - alpha) * (self.variance + alpha * delta * delta)
        return VoiceBaseline(self.clips + 1, weight, mean, var, self.feature_version, time.time())

    def normaliser(self, population_mean: NDArray[np.float64], within_variance: NDArray[np.float64],
                   prior_clips: float = BASELINE_PRIOR_CLIPS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(centre, scale) to z-score this speaker's features, shrunk towards the population.

        centre = (w * mean + K * population_mean) / (w + K); the variance likewise shrinks
        towards the average within-speaker variance of the training speakers (K =
        BASELINE_PRIOR_CLIPS, w = the baseline's weight).
        """
        w, k = self.weight, float(prior_clips)
        centre = (w * self.mean + k * population_mean) / (w + k)
        var = (w * self.variance + k * within_variance) / (w + k)
        return centre, np.sqrt(np.maximum(var, 1e-12))

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Plain JSON (for a user's data export)."""
        out: dict[str, Any] = {"clips": self.clips, "weight": self.weight,
                               "feature_version": self.feature_version, "updated_at": self.updated_at}
        if names is not None and len(names) == self.mean.size:
            out["feature_names"] = list(names)
        out["mean"] = self.mean.tolist()
        out["variance"] = self.variance.tolist()
        return out


def leave_one_out_normalise(vectors: NDArray[np.float64], speakers: Sequence[Any],
                            population_mean: NDArray[np.float64], within_variance: NDArray[np.float64],
                            *, baseline_size: int | None = None,
                            seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Normalise every row against a baseline of the *other* rows of the same speaker.

    ``vectors`` (N, D) must be imputed (no NaN).  With ``baseline_size``, each row's baseline is
    a random subset of that many other clips (fixed ``seed``), as early in a conversation.
    A speaker with a single row gets the population statistics (an empty baseline).
    Returns the normalised rows (N, D) and each row's baseline size (N,).
    """
    x = np.asarray(vectors, dtype=np.float64)
    spk = np.asarray([str(s) for s in speakers])
    if len(spk) != len(x):
        raise ValueError(f"{len(spk)} speakers for {len(x)} rows")
    out = np.empty_like(x)
    sizes = np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    dim = x.shape[1]
    for s in np.unique(spk):
        rows = np.flatnonzero(spk == s)
        block = x[rows]
        total, total2 = block.sum(axis=0), (block * block).sum(axis=0)
        for j, r in enumerate(rows):
            others = len(rows) - 1
            if others < 1:
                base = VoiceBaseline.empty(dim)
            elif baseline_size is None or baseline_size >= others:
                m = (total - block[j]) / others
                v = np.maximum((total2 - block[j] ** 2) / others - m * m, 0.0)
                base = VoiceBaseline(others, float(min(others, BASELINE_MAX_WEIGHT)), m, v)
            else:
                pick = rng.choice(np.delete(np.arange(len(rows)), j), size=baseline_size, replace=False)
                base = VoiceBaseline.from_vectors(block[pick])
            centre, scale = base.normaliser(population_mean, within_variance)
            out[r] = (block[j] - centre) / scale
            sizes[r] = base.clips
    return out, sizes


class VoiceBaselineStore:
    """Per-user voice baselines, persisted in SQLite (or kept in memory with ``path=None``).

    One row per user: feature version, clip count, effective weight, mean and variance vectors
    (float64 blobs).  Rows of another feature version are ignored (and replaced on the next
    update).  Thread-safe; each write is its own committed transaction, so an acknowledged
    update survives a killed process.  Users' data rights: :meth:`export` and :meth:`delete`.

    What is stored is a statistical summary of how a person's voice sounds (not audio, not
    words) — still personal data, so it lives with the user's other data under ``memory_dir``.
    """

    FILE_NAME: Final[str] = "baselines.sqlite"

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}
        self._memory: dict[str, VoiceBaseline] = {}
        self._ready = False  # the file is created on first use, not by merely building a store

    def _ensure(self, db: sqlite3.Connection) -> None:
        if not self._ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS voice_baselines (user_id TEXT PRIMARY KEY, "
                "feature_version TEXT NOT NULL, clips INTEGER NOT NULL, weight REAL NOT NULL, "
                "mean BLOB NOT NULL, variance BLOB NOT NULL, updated_at REAL NOT NULL)")
            self._ready = True

    @classmethod
    def from_settings(cls, settings: "Settings") -> "VoiceBaselineStore":
        """The store at ``settings.memory_dir / "voice_baselines" / "baselines.sqlite"``."""
        return cls(Path(settings.memory_dir) / "voice_baselines" / cls.FILE_NAME)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived autocommit connection (closed afterwards; safe across threads)."""
        from empathic_agent.private import private_dir, private_file

        assert self.path is not None
        private_dir(self.path.parent)
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            self._ensure(db)
            private_file(self.path)
            yield db
        finally:
            db.close()

    @staticmethod
    def _check_user(user_id: str) -> str:
        if not isinstance(user_id, str) or not user_id:
            raise InputError(f"user_id must be a non-empty string, got {user_id!r}")
        return user_id

    def get(self, user_id: str, version: str | None = None) -> VoiceBaseline | None:
        """The user's baseline (None when there is none, or it is of another ``version``)."""
        self._check_user(user_id)
        with self._lock:
            if self.path is None:
                base = self._memory.get(user_id)
            elif not self.path.exists():
                base = None
            else:
                with self._connect() as db:
                    row = db.execute("SELECT feature_version, clips, weight, mean, variance, updated_at "
                                     "FROM voice_baselines WHERE user_id = ?", (user_id,)).fetchone()
                base = None if row is None else VoiceBaseline(
                    int(row[1]), float(row[2]), np.frombuffer(row[3], dtype=np.float64).copy(),
                    np.frombuffer(row[4], dtype=np.float64).copy(), row[0], float(row[5]))
        if base is None or (version is not None and base.feature_version != version):
            return None
        return base

    def put(self, user_id: str, baseline: VoiceBaseline) -> None:
        """Store (replace) the user's baseline."""
        self._check_user(user_id)
        with self._lock:
            if self.path is None:
                self._memory[user_id] = baseline
                return
            with self._connect() as db:
                db.execute(
                    "INSERT OR REPLACE INTO voice_baselines VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (user_id, baseline.feature_version, baseline.clips, baseline.weight,
                     np.ascontiguousarray(baseline.mean, dtype=np.float64).tobytes(),
                     np.ascontiguousarray(baseline.variance, dtype=np.float64).tobytes(),
                     baseline.updated_at or time.time()))

    def update(self, user_id: str, vector: NDArray[np.float64], version: str) -> VoiceBaseline:
        """Add one utterance's (imputed) features to the user's baseline; returns the new one."""
        with self._user_lock(user_id):
            base = self.get(user_id, version) or VoiceBaseline.empty(len(vector), version)
            new = base.updated(vector)
            self.put(user_id, new)
            return new

    def _user_lock(self, user_id: str) -> threading.Lock:
        # One lock per user, so concurrent turns of one user never lose an update.
        with self._lock:
            return self._user_locks.setdefault(self._check_user(user_id), threading.Lock())

    def export(self, user_id: str, names: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The user's stored baseline as plain JSON (None when there is none)."""
        base = self.get(user_id)
        return None if base is None else {"user_id": user_id, **base.to_dict(names)}

    def delete(self, user_id: str) -> bool:
        """Erase the user's baseline; True when there was one."""
        self._check_user(user_id)
        with self._lock:
            if self.path is None:
                return self._memory.pop(user_id, None) is not None
            if not self.path.exists():
                return False
            with self._connect() as db:
                cur = db.execute("DELETE FROM voice_baselines WHERE user_id = ?", (user_id,))
                return cur.rowcount > 0

    def users(self) -> list[str]:
        """Users with a stored baseline."""
        with self._lock:
            if self.path is None:
                return sorted(self._memory)
            if not self.path.exists():
                return []
            with self._connect() as db:
                return [r[0] for r in db.execute("SELECT user_id FROM voice_baselines ORDER BY user_id")]


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


# ---------------------------------------------------------------------------------------------
# The encoder


@dataclass(frozen=True)
class SpeechAnalysis:
    """A speech reading plus why it is as certain as it is.

    Attributes:
        reading: the :class:`Reading` (modality "speech").
        status: the clip's status ("ok", "silence", "too_short") or "error".
        head: which head read it: "adapted", "cold", or "none" (no usable audio).
        baseline_clips: clips in the speaker's baseline when it was read (0 = none / no user).
        baseline_updated: whether this utterance was added to the speaker's baseline.
        doubt: the doubt components (see :func:`doubt_of`); empty when no model ran.
        quality: the audio measures behind the doubt.
        timings: seconds per stage.
        error: why the audio could not be read (the reading is then uninformative).
    """

    reading: Reading
    status: str
    head: str
    baseline_clips: int = 0
    baseline_updated: bool = False
    doubt: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reading": self.reading.to_dict(), "status": self.status, "head": self.head,
                "baseline_clips": self.baseline_clips, "baseline_updated": self.baseline_updated,
                "doubt": {k: round(v, 4) for k, v in self.doubt.items()},
                "quality": {k: round(v, 4) for k, v in self.quality.items()},
                "timings": {k: round(v, 4) for k, v in self.timings.items()}, "error": self.error}


class SpeechEncoder(Encoder):
    """Speech audio -> :class:`Reading` (prosody + Whisper-base layers + RAVDESS-trained heads).

    Inputs (``encode``/``encode_batch``): a file path (``str``/``Path``), encoded bytes, a
    ``(sample_rate, array)`` tuple, or an :class:`~empathic_agent.perceive.audio.AudioClip`.
    ``encode`` reads without a speaker (cold start).  :meth:`analyze` takes a ``user_id``: it
    reads with that user's voice baseline once there is enough of it, and adds the utterance to
    the baseline afterwards.  :meth:`encode_with_speakers` reads a labelled set with a baseline
    of each speaker's *other* clips (the evaluation's "with baseline" mode).

    Silence, too-short and corrupt audio give an uninformative reading (never an exception); a
    path that does not exist raises :class:`InputError`.
    """

    name = "whisper-prosody-ravdess"
    modality = MODALITY_SPEECH
    input_kind = INPUT_PATH
    input_types = (str, os.PathLike, bytes, bytearray, tuple, AudioClip)

    def __init__(self, weights_dir: Path | str | None = None, *, cache_dir: Path | str | None = None,
                 baselines: VoiceBaselineStore | None = None, limits: AudioLimits | None = None,
                 whisper: WhisperLayers | None = None) -> None:
        super().__init__()
        self.weights_dir = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        #: Per-user voice baselines; None = no speaker adaptation (every read is cold start).
        self.baselines = baselines
        self.limits = limits or AudioLimits()
        self._whisper = whisper
        self.head: SpeechHead | None = None
        self.extractor: SpeechFeatureExtractor | None = None
        self.last_analyses: list[SpeechAnalysis] = []

    @classmethod
    def from_settings(cls, settings: "Settings", *, persist_baselines: bool = True) -> "SpeechEncoder":
        """The committed heads, the packaged Whisper-base, and per-user baselines under
        ``settings.memory_dir`` (in memory only with ``persist_baselines=False``)."""
        store = VoiceBaselineStore.from_settings(settings) if persist_baselines else VoiceBaselineStore(None)
        return cls(cache_dir=settings.cache_dir, baselines=store)

    # -- loading -----------------------------------------------------------------------------
    def _load_impl(self) -> None:
        head = SpeechHead.load(self.weights_dir)
        whisper = self._whisper
        if whisper is None:
            cache = self.cache_dir
            if cache is None:
                from empathic_agent.settings import Settings

                cache = Settings.from_env().cache_dir
            whisper = WhisperLayers.from_registry(cache, head.layers)
        elif tuple(whisper.layers) != head.layers:
            raise ModelError(f"the speech head needs Whisper layers {head.layers}, got {whisper.layers}")
        whisper.load()
        self.head, self._whisper = head, whisper
        self.extractor = SpeechFeatureExtractor(whisper)

    @property
    def whisper(self) -> WhisperLayers:
        self.load()
        assert self._whisper is not None
        return self._whisper

    def info(self) -> dict[str, Any]:
        out = super().info()
        if self.head is not None:
            cfg = self.head.config
            out.update({"feature_version": self.head.version, "whisper_layers": list(self.head.layers),
                        "min_baseline_clips": self.head.min_baseline_clips,
                        "trained_on": cfg.get("training", {}).get("data", "RAVDESS"),
                        "licence": cfg.get("licence", "CC BY-NC-SA 4.0 (non-commercial)")})
        return out

    # -- reading ----------------------------------------------------------------------------------
    def _clip(self, x: Any) -> AudioClip:
        if isinstance(x, (str, os.PathLike)) and not Path(x).is_file():
            raise InputError(f"audio file not found: {x}")
        return decode_audio(x, limits=self.limits)

    def analyze(self, x: Any, user_id: str | None = None, *, update_baseline: bool = True,
                mel: NDArray[np.float32] | None = None) -> SpeechAnalysis:
        """Read one utterance, with ``user_id``'s voice baseline when there is enough of it.

        With a ``user_id`` (and a baseline store) the utterance is added to the user's baseline
        afterwards (unless ``update_baseline`` is False or the clip is too doubtful).  ``mel``
        is the clip's log-mel spectrogram if the caller already has it (the transcriber's).
        """
        if x is not None and not isinstance(x, self.input_types):
            raise TypeError(f"{self.name} encoder: input is {type(x).__name__}")
        self.load()
        return self._translate(lambda: self._analyze(x, user_id, update_baseline, mel), "encoding")

    def _analyze(self, x: Any, user_id: str | None, update_baseline: bool,
                 mel: NDArray[np.float32] | None) -> SpeechAnalysis:
        t0 = time.perf_counter()
        if x is None:
            return SpeechAnalysis(Reading.uninformative(MODALITY_SPEECH), "error", "none", error="no audio")
        try:
            clip = self._clip(x)
        except AudioError as exc:  # corrupt/unsupported: no evidence, not a crash
            log.warning("speech encoder: unreadable audio: %s", exc)
            return SpeechAnalysis(Reading.uninformative(MODALITY_SPEECH), "error", "none", error=str(exc),
                                  timings={"total_s": time.perf_counter() - t0})
        decode_s = time.perf_counter() - t0
        if not clip.usable:
            return SpeechAnalysis(Reading.uninformative(MODALITY_SPEECH), clip.status.value, "none",
                                  timings={"decode_s": decode_s, "total_s": time.perf_counter() - t0})
        head, extractor = self.head, self.extractor
        assert head is not None and extractor is not None
        feats = extractor.extract(clip, mel=mel)
        x_imp = head.impute(feats.vector)
        baseline = None
        if user_id is not None and self.baselines is not None:
            baseline = self.baselines.get(user_id, head.version)
        clips = baseline.clips if baseline is not None else 0
        adapted = baseline is not None and clips >= head.min_baseline_clips
        t1 = time.perf_counter()
        if adapted:
            assert baseline is not None
            probs = head.probabilities("adapted", head.speaker_normalise(x_imp, baseline))[0]
        else:
            probs = head.probabilities("cold", x_imp)[0]
        doubt = doubt_of(feats.quality, cold_start=not adapted)
        reading = reading_from_probabilities(probs, doubt["doubt"])
        head_s = time.perf_counter() - t1
        updated = False
        if (update_baseline and user_id is not None and self.baselines is not None
                and doubt["doubt"] - doubt["cold_start"] <= MAX_DOUBT_FOR_BASELINE):
            self.baselines.update(user_id, x_imp, head.version)
            updated = True
        timings = {"decode_s": decode_s, **feats.timings, "head_s": head_s,
                   "total_s": time.perf_counter() - t0}
        return SpeechAnalysis(reading, clip.status.value, "adapted" if adapted else "cold", clips, updated,
                              doubt, feats.quality, timings)

    def _encode_batch_impl(self, xs: list[Any]) -> list[Reading]:
        analyses = [self._analyze(x, None, False, None) for x in xs]
        self.last_analyses = analyses
        return [a.reading for a in analyses]

    def encode_with_speakers(self, xs: Sequence[Any], speakers: Sequence[Any], *,
                             baseline_size: int | None = None, seed: int = 0,
                             progress: bool = False) -> list[Reading]:
        """Readings of a set of utterances, each with a baseline of the *same speaker's other*
        utterances in the set (all of them, or a random ``baseline_size`` of them).

        Rows whose speaker has fewer other usable clips than the head's minimum are read cold.
        Nothing is stored.  This is the evaluation's "with speaker baseline" mode.
        """
        return self.read_with_speakers(xs, speakers, baseline_size=baseline_size, seed=seed,
                                       progress=progress)["with_baseline"]

    def read_with_speakers(self, xs: Sequence[Any], speakers: Sequence[Any], *,
                           baseline_size: int | None = None, seed: int = 0,
                           progress: bool = False) -> dict[str, Any]:
        """Both evaluation modes from one feature pass: ``{"cold_start": [Reading],
        "with_baseline": [Reading], "baseline_clips": [int], "adapted": [bool]}``."""
        if len(xs) != len(speakers):
            raise ValueError(f"{len(speakers)} speakers for {len(xs)} inputs")
        self.load()
        head, extractor = self.head, self.extractor
        assert head is not None and extractor is not None
        n = len(xs)
        none = Reading.uninformative(MODALITY_SPEECH)
        cold: list[Reading] = [none] * n
        warm: list[Reading] = [none] * n
        clips_in_baseline = [0] * n
        used_adapted = [False] * n
        vectors, quality, rows = [], [], []
        iterator: Any = range(n)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="speech features", unit="clip", leave=False)
        for i in iterator:
            x = xs[i]
            if x is not None and not isinstance(x, self.input_types):
                raise TypeError(f"{self.name} encoder: input {i} is {type(x).__name__}")
            try:
                clip = self._clip(x) if x is not None else None
            except AudioError as exc:  # corrupt: no evidence (a missing file still raises)
                log.warning("speech encoder: unreadable audio %s: %s", i, exc)
                clip = None
            if clip is None or not clip.usable:
                continue
            feats = self._translate(lambda: extractor.extract(clip), "encoding")  # noqa: B023 (called at once)
            vectors.append(head.impute(feats.vector))
            quality.append(feats.quality)
            rows.append(i)
        if rows:
            x_all = np.array(vectors)
            z, sizes = leave_one_out_normalise(x_all, [speakers[i] for i in rows], head.population_mean,
                                               head.within_variance, baseline_size=baseline_size, seed=seed)
            p_adapted = head.probabilities("adapted", z)
            p_cold = head.probabilities("cold", x_all)
            for j, i in enumerate(rows):
                cold[i] = reading_from_probabilities(p_cold[j], doubt_of(quality[j], cold_start=True)["doubt"])
                adapted = bool(sizes[j] >= head.min_baseline_clips)
                warm[i] = (reading_from_probabilities(p_adapted[j], doubt_of(quality[j], cold_start=False)["doubt"])
                           if adapted else cold[i])
                clips_in_baseline[i], used_adapted[i] = int(sizes[j]), adapted
        return {"cold_start": cold, "with_baseline": warm, "baseline_clips": clips_in_baseline,
                "adapted": used_adapted}

    # -- users' data ---------------------------------------------------------------------------------
    def baseline_of(self, user_id: str) -> VoiceBaseline | None:
        """The user's current voice baseline (None if none, or no store)."""
        if self.baselines is None:
            return None
        self.load()
        assert self.head is not None
        return self.baselines.get(user_id, self.head.version)

    def export_baseline(self, user_id: str) -> dict[str, Any] | None:
        """The user's stored voice baseline as plain JSON (for a data export)."""
        if self.baselines is None:
            return None
        names = feature_names(self.head.layers) if self.head is not None else None
        return self.baselines.export(user_id, names)

    def delete_baseline(self, user_id: str) -> bool:
        """Erase the user's voice baseline (True if there was one)."""
        return self.baselines.delete(user_id) if self.baselines is not None else False

    def _translate_error(self, exc: Exception, stage: str) -> EncoderError:
        return EncoderError(f"{self.name} speech encoder failed while {stage}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
# Perception of one spoken turn: words + how they were said


@dataclass(frozen=True)
class SpeechPerceptionResult:
    """What was heard in one utterance.

    Attributes:
        transcript: the words (None when the audio could not be read or STT failed).
        speech_reading: how they were said (None when the audio could not be read or the
            encoder failed; an uninformative reading for silence / too-short audio).
        clip_info: :meth:`AudioClip.info` of the decoded audio (None if it could not be read).
        timings: seconds: ``decode_s``, ``stt_s``, ``emotion_s``, ``total_s`` and the parts
            (``stt.*``, ``emotion.*``).
        errors: one message per failed stage ("audio: ...", "stt: ...", "speech_emotion: ...");
            a failed stage never raises from :meth:`SpeechPerception.perceive`.
        analysis: the speech encoder's :class:`SpeechAnalysis` (head, baseline, doubt).
    """

    transcript: "Transcript | None"
    speech_reading: Reading | None
    clip_info: dict[str, Any] | None
    timings: dict[str, float]
    errors: tuple[str, ...] = ()
    analysis: SpeechAnalysis | None = None

    @property
    def text(self) -> str:
        """The transcript's text ("" when nothing was understood)."""
        return self.transcript.text if self.transcript is not None else ""

    @property
    def heard_speech(self) -> bool:
        """True when there were words."""
        return bool(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transcript": self.transcript.to_dict() if self.transcript is not None else None,
            "speech_reading": self.speech_reading.to_dict() if self.speech_reading is not None else None,
            "clip": self.clip_info,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "errors": list(self.errors),
            "analysis": self.analysis.to_dict() if self.analysis is not None else None,
        }


class SpeechPerception:
    """Audio of one turn -> transcript + speech reading (blocking; see :meth:`aperceive`).

    Built from long-lived services (an :class:`~empathic_agent.perceive.stt.STT` backend and a
    :class:`SpeechEncoder`), so tests can pass fakes; :meth:`from_settings` builds the defaults.
    The audio is decoded once; the Whisper log-mel spectrogram is shared between transcription
    and the emotion features; the utterance updates the user's voice baseline.
    """

    def __init__(self, stt: "STT", encoder: SpeechEncoder, *, limits: AudioLimits | None = None,
                 parallel: bool = True) -> None:
        self.stt = stt
        self.encoder = encoder
        self.limits = limits or AudioLimits()
        #: Read the emotion in a worker thread while transcribing (see :meth:`perceive`).
        self.parallel = parallel
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings", *, persist_baselines: bool = True) -> "SpeechPerception":
        from empathic_agent.perceive.stt import load_stt

        return cls(load_stt(settings), SpeechEncoder.from_settings(settings, persist_baselines=persist_baselines))

    def load(self) -> None:
        """Load both models now (otherwise the first turn does)."""
        self.stt.load()
        self.encoder.load()

    def _shared_mel(self, clip: AudioClip) -> NDArray[np.float32] | None:
        """The transcriber's log-mel spectrogram of the clip, if it is Whisper-base's."""
        runtime = getattr(self.stt, "runtime", None)
        if runtime is None or getattr(self.stt, "model_name", None) != WHISPER_MODEL:
            return None
        return runtime.log_mel(clip.samples)

    def perceive(self, audio: Any, user_id: str | None = None, *, language: str | None = None,
                 update_baseline: bool = True) -> SpeechPerceptionResult:
        """Transcribe and read one utterance.  Never raises for bad audio or a failed stage:
        the result's ``errors`` say what went wrong (wrong-type arguments still raise)."""
        from empathic_agent.perceive.stt import TranscribeOptions

        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        errors: list[str] = []
        try:
            clip = decode_audio(audio, limits=self.limits)
        except AudioError as exc:
            timings["decode_s"] = timings["total_s"] = time.perf_counter() - t0
            return SpeechPerceptionResult(None, None, None, timings, (f"audio: {exc}",))
        timings["decode_s"] = time.perf_counter() - t0

        mel = None
        if clip.usable:
            try:
                self.stt.load()
                mel = self._shared_mel(clip)
            except EmpathicError as exc:  # reported by the transcription below
                log.debug("speech perception: no shared spectrogram: %s", exc)

        def transcribe() -> tuple["Transcript | None", dict[str, float], list[str]]:
            t = time.perf_counter()
            try:
                tr = self.stt.transcribe(clip, TranscribeOptions(language=language))
                return tr, {**{f"stt.{k}": v for k, v in tr.timings.items()},
                            "stt_s": time.perf_counter() - t}, []
            except EmpathicError as exc:
                log.warning("speech perception: transcription failed: %s", exc)
                return None, {"stt_s": time.perf_counter() - t}, [f"stt: {exc}"]

        def read() -> tuple[SpeechAnalysis | None, dict[str, float], list[str]]:
            t = time.perf_counter()
            try:
                an = self.encoder.analyze(clip, user_id, update_baseline=update_baseline, mel=mel)
                return an, {**{f"emotion.{k}": v for k, v in an.timings.items()},
                            "emotion_s": time.perf_counter() - t}, \
                    ([f"speech_emotion: {an.error}"] if an.error else [])
            except EmpathicError as exc:
                log.warning("speech perception: speech emotion failed: %s", exc)
                return None, {"emotion_s": time.perf_counter() - t}, [f"speech_emotion: {exc}"]

        if self.parallel and clip.usable:
            # The emotion features run in a worker thread while Whisper decodes: CTranslate2
            # releases the GIL, so the two overlap instead of adding up.
            future = self._pool().submit(read)
            transcript, t_stt, e_stt = transcribe()
            analysis, t_emo, e_emo = future.result()
        else:
            transcript, t_stt, e_stt = transcribe()
            analysis, t_emo, e_emo = read()
        timings.update(t_stt)
        timings.update(t_emo)
        errors += e_stt + e_emo
        timings["total_s"] = time.perf_counter() - t0
        return SpeechPerceptionResult(transcript, analysis.reading if analysis is not None else None,
                                      clip.info(), timings, tuple(errors), analysis)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="speech-emotion")
            return self._executor

    def close(self) -> None:
        """Stop the worker thread (safe to call twice)."""
        with self._pool_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def aperceive(self, audio: Any, user_id: str | None = None, *, language: str | None = None,
                        update_baseline: bool = True) -> SpeechPerceptionResult:
        """:meth:`perceive` in a worker thread (keeps the event loop free)."""
        return await asyncio.to_thread(self.perceive, audio, user_id, language=language,
                                       update_baseline=update_baseline)

    def export_user(self, user_id: str) -> dict[str, Any] | None:
        """The user's voice baseline as plain JSON (for a data export), or None."""
        return self.encoder.export_baseline(user_id)

    def forget_user(self, user_id: str) -> bool:
        """Erase the user's voice baseline (True if there was one)."""
        return self.encoder.delete_baseline(user_id)
