"""Prosody features of one utterance (30 numbers: pitch, loudness, voice quality, spectral balance,
tempo), from praat-parselmouth and numpy; see the package docstring.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import BackendUnavailableError
from empathic_agent.perceive.audio import TARGET_SAMPLE_RATE, frame_levels_db

log = logging.getLogger(__name__)

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
