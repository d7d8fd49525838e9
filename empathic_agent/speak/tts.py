"""Text-to-speech: one base class with one hook, prosody and audio as frozen data, and a registry.

:meth:`TTS.synthesize` is the public method: it makes the text speakable
(:func:`~empathic_agent.speak.text.speakable`, capped at
:data:`~empathic_agent.speak.text.MAX_SPOKEN_CHARS`), loads the voice once, calls the backend's
one hook :meth:`TTS._synthesize_impl`, applies the parts of the :class:`Prosody` the backend
cannot do itself (capabilities as data: :class:`TTSCapabilities`), keeps the level safe
(a soft limiter instead of hard clipping), times every stage, and translates vendor exceptions
into :class:`TTSError`.  A backend implements ``_synthesize_impl`` (and optionally ``_load_impl``).

Voices are *profiles* (``voices/*.toml``, see :mod:`empathic_agent.speak.prosody`): a backend, a
model and the mapping from the emotional latent to prosody.  :func:`load_tts` builds the backend
of a profile through a small registry of backend factories (``piper``, ``espeak-ng``);
:func:`available_voices` lists the profiles.  No backend is imported before it is used.

Usage::

    from empathic_agent.speak import load_tts, prosody_for
    tts = load_tts("piper-joe-medium", settings)
    prosody = prosody_for((0.4, -0.3, 0.1), tts.profile)  # warm, calm, a little steady
    audio = tts.synthesize("I'm glad you told me.", prosody)
    audio.write_wav("reply.wav")
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import threading
import time
import wave
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import ConfigError, EmpathicError
from empathic_agent.lifecycle import Loadable
from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.settings import Settings
    from empathic_agent.speak.prosody import VoiceProfile

__all__ = [
    "TTSError",
    "wav_bytes",
    "Prosody",
    "SpeechAudio",
    "TTSCapabilities",
    "TTS",
    "register_tts_backend",
    "available_tts_backends",
    "available_voices",
    "load_tts",
    "apply_brightness",
    "apply_gain",
    "soft_limit",
]

log = logging.getLogger(__name__)

#: Peak level the soft limiter keeps every output under (-0.4 dBFS: inter-sample peaks of a
#: full-scale signal would clip on some DACs).
LIMIT_PEAK: Final[float] = 0.95
#: Below this fraction of LIMIT_PEAK the limiter is transparent; above it peaks are compressed
#: smoothly (tanh) instead of being clipped flat (hard clipping sounds like crackle).
LIMIT_KNEE: Final[float] = 0.8
#: The spectral-tilt filter pivots at 1 kHz (level there unchanged) and acts between these
#: frequencies; below/above it stays flat so rumble and hiss are not boosted without bound.
TILT_PIVOT_HZ: Final[float] = 1000.0
TILT_LOW_HZ: Final[float] = 250.0
TILT_HIGH_HZ: Final[float] = 8000.0


class TTSError(EmpathicError):
    """Speech synthesis failed (the message names the voice and the cause)."""


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Prosody:
    """How to say something, relative to a voice's neutral delivery.

    Attributes:
        rate: speaking-rate factor (1 = the voice's normal pace, 1.2 = 20 % faster).
        pitch_shift_st: shift of the voice's pitch level, in semitones (+12 = an octave up).
        pitch_range: factor on the pitch excursions around the voice's median (1 = unchanged,
            0.5 = half as much melody, flatter; 1.5 = livelier).
        gain_db: loudness change in dB (the backend's level; +6 dB = twice the amplitude).
        variation: factor on the voice's natural variability (Piper's sampling noise for
            intonation and timing; 1 = the model's default).
        brightness_db_oct: spectral tilt in dB per octave around 1 kHz (+ = brighter, more
            pressed/tense timbre; - = darker, softer).
    """

    rate: float = 1.0
    pitch_shift_st: float = 0.0
    pitch_range: float = 1.0
    gain_db: float = 0.0
    variation: float = 1.0
    brightness_db_oct: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"prosody {name} must be a finite number, got {value!r}")
        for name in ("rate", "pitch_range", "variation"):
            if getattr(self, name) <= 0:
                raise ValueError(f"prosody {name} is a factor and must be > 0, got {getattr(self, name)}")

    @property
    def is_neutral(self) -> bool:
        return self == Prosody()

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def _readonly(x: NDArray[np.float32]) -> NDArray[np.float32]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class SpeechAudio:
    """Synthesised speech.

    Attributes:
        sample_rate: samples per second (Piper and espeak-ng: 22050).
        samples: mono float32 samples in [-1, 1], shape (n,), read-only.
        text: what was said (after normalisation).
        voice: the voice profile's name.
        prosody: the prosody it was said with (None = neutral).
        timings: seconds per stage: ``load_s`` (0 when already loaded), ``synth_s`` (the
            backend), ``post_s`` (post-processing), ``total_s``; plus ``audio_s`` and ``rtf``
            (real-time factor = synthesis time / audio duration; < 1 is faster than real time).
        truncated: whether the text was cut at the spoken-length cap.
    """

    sample_rate: int
    samples: NDArray[np.float32]
    text: str = ""
    voice: str = ""
    prosody: Prosody | None = None
    timings: dict[str, float] = field(default_factory=dict)
    truncated: bool = False

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        object.__setattr__(self, "samples", _readonly(np.asarray(self.samples, dtype=np.float32).reshape(-1)))

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate

    @property
    def empty(self) -> bool:
        return self.samples.size == 0

    def as_tuple(self) -> tuple[int, NDArray[np.float32]]:
        """``(sample_rate, samples)``: what Gradio's ``Audio`` and :func:`decode_audio` accept."""
        return self.sample_rate, self.samples

    def to_int16(self) -> NDArray[np.int16]:
        return (np.clip(self.samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)

    def to_wav_bytes(self) -> bytes:
        """16-bit PCM mono WAV."""
        return wav_bytes(self.samples, self.sample_rate)

    def write_wav(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_wav_bytes())
        return path

    def to_dict(self) -> dict[str, Any]:
        """Everything but the samples (for logs and JSON)."""
        return {"text": self.text, "voice": self.voice, "sample_rate": self.sample_rate,
                "duration_s": round(self.duration_s, 3), "truncated": self.truncated,
                "prosody": self.prosody.to_dict() if self.prosody else None,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


@dataclass(frozen=True)
class TTSCapabilities:
    """Which prosody parameters a backend realises itself (capabilities as data).

    The base class post-processes ``gain_db`` and ``brightness_db_oct`` when the backend does not
    (both are simple, exact signal operations); a parameter neither can realise is logged once and
    ignored.
    """

    rate: bool = False
    pitch: bool = False
    pitch_range: bool = False
    gain: bool = False
    variation: bool = False
    brightness: bool = False
    #: The backend yields one chunk per sentence itself (Piper does).
    sentence_chunks: bool = False
    languages: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Signal post-processing shared by every backend (pure numpy)


def apply_gain(samples: NDArray[np.floating], gain_db: float) -> NDArray[np.float32]:
    """``samples`` scaled by ``gain_db`` decibels (no limiting; see :func:`soft_limit`)."""
    if gain_db == 0:
        return np.asarray(samples, dtype=np.float32)
    return (np.asarray(samples, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def apply_brightness(samples: NDArray[np.floating], sample_rate: int,
                     db_per_octave: float) -> NDArray[np.float32]:
    """Tilt the spectrum by ``db_per_octave`` around 1 kHz, keeping the RMS level.

    A zero-phase gain curve applied in the frequency domain over the whole utterance (one FFT:
    ~5 ms for 5 s of 22 kHz audio): ``g(f) = db_per_octave * log2(f / 1 kHz)``, flat below
    250 Hz and above 8 kHz.  The result is rescaled to the input's RMS so that brightness
    changes timbre, not loudness (loudness is :func:`apply_gain`'s job).
    """
    x = np.asarray(samples, dtype=np.float32)
    if db_per_octave == 0 or x.size < 64:
        return x
    n = x.size
    spec = np.fft.rfft(x.astype(np.float64))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    octaves = np.log2(np.clip(freqs, TILT_LOW_HZ, TILT_HIGH_HZ) / TILT_PIVOT_HZ)
    y = np.fft.irfft(spec * 10.0 ** (db_per_octave * octaves / 20.0), n=n)
    rms_in = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    rms_out = float(np.sqrt(np.mean(y**2)))
    if rms_out > 0:
        y *= rms_in / rms_out
    return y.astype(np.float32)


def soft_limit(samples: NDArray[np.floating], peak: float = LIMIT_PEAK,
               knee: float = LIMIT_KNEE) -> NDArray[np.float32]:
    """Keep ``|x| < peak``: identity below ``knee * peak``, a tanh curve above it (continuous
    value and slope at the knee), so loud syllables are rounded off rather than clipped flat."""
    x = np.asarray(samples, dtype=np.float32)
    threshold = knee * peak
    over = np.abs(x) > threshold
    if not over.any():
        return x
    y = x.astype(np.float64).copy()
    head = peak - threshold
    a = np.abs(y[over])
    y[over] = np.sign(y[over]) * (threshold + head * np.tanh((a - threshold) / head))
    return y.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Base class


class TTS(Loadable, ABC):
    """Base class of every text-to-speech backend (one voice profile per instance; loading
    lifecycle: :class:`Loadable`).

    Thread-safe: synthesis calls are serialised by a lock (on 2 cores parallel synthesis only
    fights over the same cores, and ONNX/subprocess state stays simple).
    """

    kind = "tts"
    error_class = TTSError
    #: Registry name of the backend ("piper", "espeak-ng").
    name: str = "base"
    capabilities: TTSCapabilities = TTSCapabilities()

    def __init__(self, profile: "VoiceProfile") -> None:
        super().__init__()
        self.profile = profile
        self._lock = threading.RLock()  # synthesis
        self._warned: set[str] = set()

    # -- public API ------------------------------------------------------------------------------
    @property
    def voice(self) -> str:
        return self.profile.name

    @classmethod
    def from_profile(cls, profile: "VoiceProfile", settings: "Settings") -> "TTS":
        """The registry's factory: this backend speaking ``profile`` (a backend that needs more
        of the settings, e.g. the model cache, overrides it)."""
        return cls(profile)

    def _loaded_what(self) -> str:
        return f" voice {self.voice}"

    def synthesize(self, text: str, prosody: Prosody | None = None, *, normalize: bool = True) -> SpeechAudio:
        """Speak ``text`` with ``prosody`` (blocking).

        With ``normalize`` (default) the text is made speakable and capped first (see
        :func:`~empathic_agent.speak.text.prepare_speech`); pass ``normalize=False`` for text
        that already is (the streaming path normalises per sentence).  Text with nothing to say
        (empty, only emoji) gives an empty :class:`SpeechAudio`, not an error.  Backend failures
        raise :class:`TTSError`; a missing backend raises
        :class:`~empathic_agent.errors.BackendUnavailableError`.
        """
        from empathic_agent.speak.text import prepare_speech

        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if prosody is not None and not isinstance(prosody, Prosody):
            raise TypeError(f"prosody must be a Prosody, got {type(prosody).__name__}")
        t0 = time.perf_counter()
        truncated = False
        if normalize:
            prepared = prepare_speech(text)
            text, truncated = prepared.text, prepared.truncated
        else:
            text = " ".join(text.split())
        prosody = prosody or Prosody()
        if not text:
            return SpeechAudio(self._sample_rate_hint(), np.zeros(0, np.float32), "", self.voice, prosody,
                               {"total_s": time.perf_counter() - t0, "audio_s": 0.0}, truncated)
        load_t = time.perf_counter()
        was_loaded = self._loaded
        self.load()
        load_s = 0.0 if was_loaded else time.perf_counter() - load_t
        with self._lock:
            t1 = time.perf_counter()
            result = self._translate(lambda: self._synthesize_impl(text, prosody), "synthesising")
            synth_s = time.perf_counter() - t1
        try:
            sample_rate, samples = int(result[0]), np.asarray(result[1], dtype=np.float32).reshape(-1)
        except (TypeError, ValueError, IndexError) as exc:
            raise TTSError(f"tts backend {self.name} returned {type(result).__name__}, "
                           "not (sample_rate, samples)") from exc
        if not np.all(np.isfinite(samples)):
            raise TTSError(f"voice {self.voice}: the backend produced invalid (NaN/inf) samples")
        t2 = time.perf_counter()
        samples = self._post_process(samples, sample_rate, prosody)
        post_s = time.perf_counter() - t2
        audio_s = samples.size / sample_rate
        total = time.perf_counter() - t0
        timings = {"load_s": load_s, "synth_s": synth_s, "post_s": post_s, "total_s": total,
                   "audio_s": audio_s, "rtf": (total - load_s) / audio_s if audio_s > 0 else 0.0}
        return SpeechAudio(sample_rate, samples, text, self.voice, prosody, timings, truncated)

    async def asynthesize(self, text: str, prosody: Prosody | None = None, *,
                          normalize: bool = True) -> SpeechAudio:
        """:meth:`synthesize` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.synthesize, text, prosody, normalize=normalize)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "voice": self.voice, "model": self.profile.model,
                "loaded": self._loaded, "load_s": self.load_s, "licence": self.profile.licence,
                "capabilities": asdict(self.capabilities)}

    # -- hooks (and _load_impl from Loadable) -----------------------------------------------------
    @abstractmethod
    def _synthesize_impl(self, text: str, prosody: Prosody) -> tuple[int, NDArray[np.float32]]:
        """Speak non-empty, speakable ``text``: ``(sample_rate, mono float32 samples (n,))``.

        Realise the prosody parameters the class's :attr:`capabilities` claim; the base class
        does gain and brightness otherwise, and the limiter always.
        """

    def _sample_rate_hint(self) -> int:
        """Sample rate reported for empty audio (before anything was synthesised)."""
        return 22050

    # -- internals -------------------------------------------------------------------------------
    def _post_process(self, samples: NDArray[np.float32], sample_rate: int,
                      prosody: Prosody) -> NDArray[np.float32]:
        caps = self.capabilities
        if not caps.brightness and prosody.brightness_db_oct:
            samples = apply_brightness(samples, sample_rate, prosody.brightness_db_oct)
        if not caps.gain and prosody.gain_db:
            samples = apply_gain(samples, prosody.gain_db)
        for name, flag, neutral in (("rate", caps.rate, prosody.rate == 1.0),
                                    ("pitch_shift_st", caps.pitch, prosody.pitch_shift_st == 0.0),
                                    ("pitch_range", caps.pitch_range, prosody.pitch_range == 1.0),
                                    ("variation", caps.variation, prosody.variation == 1.0)):
            if not flag and not neutral and name not in self._warned:
                self._warned.add(name)
                log.warning("tts %s cannot realise prosody %s; it is ignored", self.name, name)
        return soft_limit(samples)

    def _translate_error(self, exc: Exception, stage: str) -> TTSError:
        return TTSError(f"voice {self.voice} ({self.name}) failed while {stage}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
# Registry: backend name -> factory(profile, settings) -> TTS, by dotted path (vendors import
# lazily; this module never imports its backends).
TTS_REGISTRY: "Registry[TTS]" = Registry("tts_backends", noun="TTS backend")
TTS_REGISTRY.register("piper", "empathic_agent.speak.piper_tts:PiperTTS.from_profile")
TTS_REGISTRY.register("espeak-ng", "empathic_agent.speak.espeak_tts:EspeakTTS.from_profile")


def register_tts_backend(name: str, factory: "str | Callable[[VoiceProfile, Settings], TTS]") -> None:
    """Register (or replace) a TTS backend, used for profiles with ``backend = name``: a factory
    ``(profile, settings) -> TTS`` or its ``"module:attr"`` path (also through the
    ``empathic_agent.tts_backends`` entry-point group)."""
    TTS_REGISTRY.register(name, factory)


def available_tts_backends() -> list[str]:
    return TTS_REGISTRY.names()


def available_voices() -> list[str]:
    """Names of the voice profiles (``voices/*.toml`` of the checkout, else the built-ins)."""
    from empathic_agent.speak.prosody import available_profiles

    return available_profiles()


def load_tts(name_or_profile: "str | Path | VoiceProfile | None" = None,
             settings: "Settings | None" = None) -> TTS:
    """Build the TTS of a voice: a profile name (``available_voices()``), a profile TOML file,
    a :class:`~empathic_agent.speak.prosody.VoiceProfile`, or a Piper ``.onnx`` model file (spoken
    with the default Piper profile's mapping).  ``None`` = ``settings.tts_voice``.

    The voice loads on first use (or ``tts.load()``).  Raises :class:`ConfigError` naming the
    valid voices for an unknown name.
    """
    from empathic_agent.speak.prosody import VoiceProfile, load_profile

    if settings is None:
        from empathic_agent.settings import Settings

        settings = Settings.from_env()
    if name_or_profile is None:
        name_or_profile = settings.tts_voice
    profile = name_or_profile if isinstance(name_or_profile, VoiceProfile) else load_profile(name_or_profile)
    try:
        factory = TTS_REGISTRY.factory(profile.backend)
    except ConfigError as exc:
        raise ConfigError(f"voice {profile.name!r} uses an {exc}") from None
    return factory(profile, settings)


def wav_bytes(samples: NDArray[np.floating[Any]], sample_rate: int, channels: int = 1) -> bytes:
    """Float samples in [-1, 1] → a 16-bit PCM WAV (the one WAV writer of the package and its
    tests).  ``samples``: shape ``(n,)`` (copied to every channel) or ``(n, channels)``."""
    data = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    if data.ndim == 1 and channels > 1:
        data = np.stack([data] * channels, axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes((data * 32767.0).round().astype("<i2").tobytes())
    return buf.getvalue()
