"""The Piper backend: a neural voice (VITS, ONNX) with prosody control added around it.

Piper (``piper-tts``, GPL-3.0, optional extra ``voice``) speaks the packaged
``en_US-joe-medium`` voice (CC0) offline, faster than real time on CPU.  It has no emotion
control, so the :class:`~empathic_agent.speak.tts.Prosody` is realised like this:

* **rate** -> ``length_scale = 1 / rate`` (the duration predictor's scale: natural, not a
  time-stretch);
* **variation** -> ``noise_scale`` and ``noise_w_scale`` times the factor (the sampling noise of
  the VITS prior and of the duration predictor: more = livelier, less regular intonation and
  timing; less = flatter, steadier);
* **gain** -> Piper's ``volume`` on top of the profile's output level (``level_db``, -6 dBFS peak
  by default, which leaves 6 dB of headroom for louder registers; Piper peak-normalises each
  sentence first, so levels are consistent from sentence to sentence);
* **pitch level and range** -> post-processing with **PSOLA** (pitch-synchronous overlap-add,
  Praat's Manipulation through praat-parselmouth, already a dependency of the speech encoder).
  Why PSOLA rather than ``sox pitch`` or resampling + time-stretching: those move the
  formants together with the pitch (a "chipmunk" voice that also changes who is speaking) and
  can only *shift* the pitch; PSOLA re-spaces the glottal pulses, so the spectral envelope — the
  speaker's identity — stays, duration is unchanged, and the same pass also scales the pitch
  *range* around the median, in semitones (valence and arousal need the contour, not only the
  level).  It costs ~10-20 ms per second of speech.  Without parselmouth, a pure-numpy fallback
  (:func:`numpy_pitch_shift`: WSOLA time-stretch then band-limited FFT resampling) shifts the
  level only, and the range is left as it is (logged once);
* **brightness** is done by the base class (a spectral tilt).

One chunk per sentence comes from Piper; they are joined with a short pause (``sentence_pause_s``
of the profile's options, scaled by 1/rate).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import BackendUnavailableError
from empathic_agent.speak.prosody import VoiceProfile
from empathic_agent.speak.tts import TTS, Prosody, TTSCapabilities, apply_gain

__all__ = ["PiperTTS", "psola_pitch", "numpy_pitch_shift", "shift_pitch"]

log = logging.getLogger(__name__)

#: Output level (peak, dBFS) of the neutral register when the profile does not say.
DEFAULT_LEVEL_DB: Final[float] = -6.0
#: Pitch analysis range for PSOLA (Hz); the profile's ``f0_floor_hz``/``f0_ceiling_hz`` override it.
DEFAULT_F0_FLOOR_HZ: Final[float] = 60.0
DEFAULT_F0_CEILING_HZ: Final[float] = 400.0
#: Changes smaller than these are inaudible: skip the PSOLA pass (and its cost).
MIN_PITCH_SHIFT_ST: Final[float] = 0.05
MIN_RANGE_CHANGE: Final[float] = 0.02
#: WSOLA of the numpy fallback: 30 ms frames, 50 % overlap, +-8 ms search for the best-matching
#: continuation (speech pitch periods are 2.5-12 ms, so the search always spans one period).
WSOLA_FRAME_S: Final[float] = 0.030
WSOLA_TOLERANCE_S: Final[float] = 0.008

_PARSELMOUTH_WARNED = threading.Event()


def psola_pitch(samples: NDArray[np.floating], sample_rate: int, semitones: float, range_factor: float, *,
                f0_floor_hz: float = DEFAULT_F0_FLOOR_HZ,
                f0_ceiling_hz: float = DEFAULT_F0_CEILING_HZ) -> NDArray[np.float32]:
    """Shift the pitch by ``semitones`` and scale its range by ``range_factor`` (PSOLA, Praat).

    Praat's Manipulation: the pitch contour is analysed (``To Manipulation``), every pitch point
    becomes ``new_median * (f0 / median) ** range_factor`` — the excursions are scaled in
    *semitones* around the median, as listeners hear them (Praat's "Change gender" scales them in
    Hz, which exaggerates the low dips and flattens the peaks) — and the sound is resynthesised by
    overlap-add on the original glottal pulses (duration and formants unchanged).  Returns
    float32 samples of the same length; input without voiced frames is returned unchanged.
    Raises ImportError without parselmouth.
    """
    import parselmouth
    from parselmouth.praat import call

    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    snd = parselmouth.Sound(x, sampling_frequency=float(sample_rate))
    manipulation = call(snd, "To Manipulation", 0.01, f0_floor_hz, f0_ceiling_hz)
    tier = call(manipulation, "Extract pitch tier")
    n = int(call(tier, "Get number of points"))
    if n == 0:
        return x.astype(np.float32)
    values = np.array([call(tier, "Get value at index", i + 1) for i in range(n)], dtype=np.float64)
    median = float(np.median(values[values > 0])) if np.any(values > 0) else 0.0
    if not (math.isfinite(median) and median > 0):
        return x.astype(np.float32)
    new_median = median * 2.0 ** (semitones / 12.0)
    call(tier, "Formula", f"{new_median!r} * (self / {median!r}) ^ {float(range_factor)!r}")
    call([tier, manipulation], "Replace pitch tier")
    y = np.asarray(call(manipulation, "Get resynthesis (overlap-add)").values[0], dtype=np.float64)
    if y.size != x.size:  # guard against off-by-a-few samples
        y = np.pad(y, (0, max(0, x.size - y.size)))[: x.size]
    return y.astype(np.float32)


def _wsola(x: NDArray[np.float64], stretch: float, sample_rate: int) -> NDArray[np.float64]:
    """Time-stretch ``x`` by ``stretch`` (output ~ len(x) * stretch) without changing pitch (WSOLA)."""
    frame = max(16, int(WSOLA_FRAME_S * sample_rate))
    hop_out = frame // 2
    tol = int(WSOLA_TOLERANCE_S * sample_rate)
    window = np.hanning(frame)
    n_out = int(round(x.size * stretch))
    n_frames = max(1, (n_out - frame) // hop_out + 1)
    padded = np.pad(x, (tol + frame, tol + 2 * frame))
    off = tol + frame  # index of x[0] in padded
    out = np.zeros(n_frames * hop_out + frame)
    norm = np.zeros_like(out)
    prev = 0  # input position (in x) of the previous frame actually used
    for k in range(n_frames):
        nominal = int(round(k * hop_out / stretch))
        if k == 0:
            pos = nominal
        else:
            # The natural continuation of the previous frame; pick the candidate around the
            # nominal position that resembles it most (cross-correlation), so periods line up.
            target = padded[off + prev + hop_out: off + prev + hop_out + frame]
            lo = off + nominal - tol
            region = padded[lo: lo + frame + 2 * tol]
            corr = np.correlate(region, target, mode="valid")
            pos = nominal - tol + int(np.argmax(corr))
        seg = padded[off + pos: off + pos + frame]
        out[k * hop_out: k * hop_out + frame] += seg * window
        norm[k * hop_out: k * hop_out + frame] += window
        prev = pos
    out /= np.maximum(norm, 1e-3)
    return out[:n_out]


def _fft_resample(x: NDArray[np.float64], n_new: int) -> NDArray[np.float64]:
    """Band-limited resampling of the whole signal to ``n_new`` samples (spectrum truncation or
    zero-padding: no aliasing, no imaging)."""
    if n_new == x.size:
        return x
    spec = np.fft.rfft(x)
    y = np.fft.irfft(spec, n=n_new) if n_new > x.size else np.fft.irfft(spec[: n_new // 2 + 1], n=n_new)
    return y * (n_new / x.size)


def numpy_pitch_shift(samples: NDArray[np.floating], sample_rate: int,
                      semitones: float) -> NDArray[np.float32]:
    """Pitch shift in pure numpy: WSOLA-stretch by the pitch ratio, then resample back to the
    original length (the classic stretch-and-resample method).  Duration is kept; formants move
    with the pitch, so keep shifts small — this is the fallback when parselmouth is missing."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if abs(semitones) < MIN_PITCH_SHIFT_ST or x.size < 4 * int(WSOLA_FRAME_S * sample_rate):
        return x.astype(np.float32)
    ratio = 2.0 ** (semitones / 12.0)
    stretched = _wsola(x, ratio, sample_rate)
    return _fft_resample(stretched, x.size).astype(np.float32)


def shift_pitch(samples: NDArray[np.floating], sample_rate: int, semitones: float, range_factor: float = 1.0,
                *, f0_floor_hz: float = DEFAULT_F0_FLOOR_HZ, f0_ceiling_hz: float = DEFAULT_F0_CEILING_HZ,
                method: str = "auto") -> NDArray[np.float32]:
    """Pitch level (semitones) and range (factor) of speech: PSOLA when parselmouth is installed
    (``method="auto"`` or ``"psola"``), else the numpy fallback (level only)."""
    if abs(semitones) < MIN_PITCH_SHIFT_ST and abs(range_factor - 1.0) < MIN_RANGE_CHANGE:
        return np.asarray(samples, dtype=np.float32)
    if method not in ("auto", "psola", "numpy"):
        raise ValueError(f"pitch method must be auto, psola or numpy, got {method!r}")
    if method != "numpy":
        try:
            return psola_pitch(samples, sample_rate, semitones, range_factor,
                               f0_floor_hz=f0_floor_hz, f0_ceiling_hz=f0_ceiling_hz)
        except ImportError:
            if method == "psola":
                raise BackendUnavailableError("PSOLA pitch control needs praat-parselmouth: "
                                              "pip install praat-parselmouth") from None
            if not _PARSELMOUTH_WARNED.is_set():
                _PARSELMOUTH_WARNED.set()
                log.warning("praat-parselmouth is not installed: pitch level is shifted with the numpy "
                            "fallback and the pitch range is not changed (pip install praat-parselmouth)")
    return numpy_pitch_shift(samples, sample_rate, semitones)


class PiperTTS(TTS):
    """Piper (ONNX) voice with post-processed pitch; see the module docstring."""

    name = "piper"
    capabilities = TTSCapabilities(rate=True, pitch=True, pitch_range=True, gain=True, variation=True,
                                   brightness=False, sentence_chunks=True, languages=("en-us",))

    @classmethod
    def from_profile(cls, profile: VoiceProfile, settings: Any) -> "PiperTTS":
        return cls(profile, cache_dir=settings.cache_dir)

    def __init__(self, profile: VoiceProfile, *, cache_dir: str | Path | None = None) -> None:
        super().__init__(profile)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.voice_model: Any = None
        self.model_path: str | None = None
        self._sample_rate = 22050

    # options of the profile, with defaults
    def _opt(self, key: str, default: float) -> float:
        return float(self.profile.options.get(key, default))

    def _resolve(self) -> tuple[str, str | None]:
        """(onnx path, config path) of the profile's model: a file or a model-registry name."""
        model = self.profile.model
        path = Path(model).expanduser()
        if path.suffix == ".onnx" and path.is_file():
            config = Path(str(path) + ".json")
            return str(path), str(config) if config.is_file() else None
        from empathic_agent.models import resolve_model

        cache = self.cache_dir
        if cache is None:
            from empathic_agent.settings import Settings

            cache = Settings.from_env().cache_dir
        resolved = resolve_model("tts", model, cache)
        return resolved.location, resolved.files.get("config")

    def _load_impl(self) -> None:
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise BackendUnavailableError("piper-tts is not installed: pip install 'empathic-agent[voice]' "
                                          "(GPL-3.0), or use the espeak-ng voice") from exc
        onnx, config = self._resolve()
        self.model_path = onnx
        self.voice_model = PiperVoice.load(onnx, config_path=config)
        self._sample_rate = int(self.voice_model.config.sample_rate)

    def _synthesize_impl(self, text: str, prosody: Prosody) -> tuple[int, NDArray[np.float32]]:
        from piper import SynthesisConfig

        voice = self.voice_model
        cfg = voice.config
        level_db = self._opt("level_db", DEFAULT_LEVEL_DB) + prosody.gain_db
        # Piper clips at full scale after its volume: keep its volume <= 1 and apply any rest
        # (only possible with an unusual profile) as plain gain before the base class's limiter.
        extra_db = max(0.0, level_db)
        syn = SynthesisConfig(
            length_scale=float(cfg.length_scale) / prosody.rate,
            noise_scale=float(cfg.noise_scale) * prosody.variation,
            noise_w_scale=float(cfg.noise_w_scale) * prosody.variation,
            normalize_audio=True,
            volume=float(10.0 ** (min(0.0, level_db) / 20.0)),
        )
        chunks = [np.asarray(c.audio_float_array, dtype=np.float32) for c in voice.synthesize(text, syn)]
        sr = int(cfg.sample_rate)
        if not chunks:
            return sr, np.zeros(0, np.float32)
        pause = np.zeros(int(self._opt("sentence_pause_s", 0.2) / prosody.rate * sr), np.float32)
        parts: list[NDArray[np.float32]] = []
        for i, c in enumerate(chunks):
            if i:
                parts.append(pause)
            parts.append(c)
        audio = np.concatenate(parts)
        audio = shift_pitch(audio, sr, prosody.pitch_shift_st, prosody.pitch_range,
                            f0_floor_hz=self._opt("f0_floor_hz", DEFAULT_F0_FLOOR_HZ),
                            f0_ceiling_hz=self._opt("f0_ceiling_hz", DEFAULT_F0_CEILING_HZ),
                            method=str(self.profile.options.get("pitch_method", "auto")))
        return sr, apply_gain(audio, extra_db)

    def _sample_rate_hint(self) -> int:
        return self._sample_rate
