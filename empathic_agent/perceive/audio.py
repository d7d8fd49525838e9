"""Audio input hygiene: whatever a microphone or a client sends -> a clean 16 kHz mono clip.

Accepted inputs (:func:`decode_audio`):

* **bytes** (or a binary file object) of any container/codec FFmpeg decodes — tested: WAV (PCM),
  FLAC, Ogg/Opus, Ogg/Vorbis, WebM/Opus (what browsers' MediaRecorder sends), MP3;
* a **path** (``str`` / ``os.PathLike``) to such a file;
* a **(sample_rate, numpy array)** tuple — what Gradio's ``Audio(type="numpy")`` microphone gives:
  int16/int32/uint8/float samples, shape ``(n,)`` or ``(n, channels)`` (or ``(channels, n)``);
* an :class:`AudioClip` (returned unchanged).

Every input is decoded with PyAV (the FFmpeg bindings faster-whisper already depends on), mixed
down to mono, resampled to 16 kHz float32, and trimmed of leading/trailing silence.  The result
is an :class:`AudioClip` whose ``status`` says whether it holds usable speech:

==============  ===========================================================================
``ok``          there is sound above the silence threshold for at least ``min_speech_s``
``silence``     nothing above the silence threshold (a muted mic, digital silence, steady hum)
``too_short``   sound, but a shorter span than ``min_speech_s`` (a click, a cough, a cut-off)
==============  ===========================================================================

Silence and too-short clips are *results*, not errors: the turn goes on (the agent can say it
heard nothing).  Input that cannot be used at all raises an :class:`AudioError` (an
:class:`~empathic_agent.errors.InputError`) with a message fit for a person:

* :class:`EmptyAudioError` — ``None`` or zero bytes;
* :class:`AudioDecodeError` — corrupt or unsupported data, no audio stream, NaN samples;
* :class:`AudioTooLargeError` — more than ``max_bytes`` bytes;
* :class:`AudioTooLongError` — longer than ``max_duration_s`` seconds (checked while decoding,
  so a 10-hour file is never decoded into memory).

Limits (:class:`AudioLimits`, documented defaults): 25 MB, 120 s, 0.25 s of sound; a frame is
silence below -70 dBFS or less than 12 dB above the clip's noise floor.  Decoding is blocking (run it off the event loop).
"""

from __future__ import annotations

import enum
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Union

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioLimits",
    "AudioStatus",
    "AudioClip",
    "AudioSource",
    "AudioError",
    "EmptyAudioError",
    "AudioDecodeError",
    "AudioTooLargeError",
    "AudioTooLongError",
    "decode_audio",
    "clip_from_samples",
    "frame_levels_db",
]

#: Sample rate of every clip (what Whisper and the speech emotion encoder expect).
TARGET_SAMPLE_RATE: Final[int] = 16_000

# Frame analysis for silence detection/trimming: 20 ms windows every 10 ms (speech is
# quasi-stationary over ~20 ms; a 10 ms hop gives trim points accurate to 10 ms).
_FRAME_S: Final[float] = 0.020
_HOP_S: Final[float] = 0.010
#: Floor added to frame power before the log (-120 dBFS: below 16-bit dither).
_POWER_FLOOR: Final[float] = 1e-12
#: Sample rates accepted for raw arrays (telephone 8 kHz .. studio 384 kHz, with slack).
_MIN_ARRAY_RATE: Final[int] = 1_000
_MAX_ARRAY_RATE: Final[int] = 768_000


class AudioError(InputError):
    """The audio cannot be used (the message says why, in words fit for the person)."""


class EmptyAudioError(AudioError):
    """No audio at all: ``None`` or zero bytes."""


class AudioDecodeError(AudioError):
    """Corrupt or unsupported audio data (or no audio stream, or invalid samples)."""


class AudioTooLargeError(AudioError):
    """The audio file/bytes are over the size limit."""


class AudioTooLongError(AudioError):
    """The audio is longer than the duration limit."""


class AudioStatus(str, enum.Enum):
    """What a decoded clip holds (see the module docstring)."""

    OK = "ok"
    SILENCE = "silence"
    TOO_SHORT = "too_short"


@dataclass(frozen=True)
class AudioLimits:
    """Validation limits and silence-detection thresholds (all documented defaults).

    Attributes:
        max_bytes: largest accepted encoded input (25 MB: ~2.5 min of 16-bit 44.1 kHz stereo WAV,
            hours of Opus); arrays count 4 bytes per sample after conversion to float32.
        max_duration_s: longest accepted audio (a conversational turn, not a podcast: 120 s).
        min_speech_s: shortest span of sound that counts as speech (0.25 s: a short "yes").
        silence_dbfs: frames quieter than this (20 ms RMS, dB re full scale) are silence
            (-70 dBFS: well below quiet speech on a low-gain microphone, ~-50 dBFS, and above
            16-bit dither).
        min_snr_db: frames must also stand this far above the clip's noise floor (its 10th
            percentile frame level), so steady noise (a fan, hum, hiss) counts as silence and a
            clean but quiet recording still counts as sound.
        dynamic_range_db: frames more than this below the loudest frame are silence too, so
            that a noisy-but-loud recording is still trimmed to its speech.
        trim_margin_s: silence kept before/after the sound when trimming (Whisper and pitch
            tracking need a little lead-in).
        trim: whether to trim leading/trailing silence at all.
    """

    max_bytes: int = 25 * 1024 * 1024
    max_duration_s: float = 120.0
    min_speech_s: float = 0.25
    silence_dbfs: float = -70.0
    min_snr_db: float = 12.0
    dynamic_range_db: float = 40.0
    trim_margin_s: float = 0.15
    trim: bool = True

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.max_duration_s > 0 or self.min_speech_s < 0:
            raise ValueError(f"invalid audio limits: {self}")
        if self.trim_margin_s < 0 or self.dynamic_range_db <= 0:
            raise ValueError(f"invalid audio limits: {self}")


@dataclass(frozen=True, eq=False)
class AudioClip:
    """A decoded clip: 16 kHz mono float32 samples plus what was done to them.

    Attributes:
        samples: (n,) float32, read-only, 16 kHz mono, trimmed of leading/trailing silence.
        sample_rate: always :data:`TARGET_SAMPLE_RATE`.
        status: ``ok``, ``silence`` or ``too_short``.
        original_duration_s: duration before trimming.
        trimmed_start_s, trimmed_end_s: seconds removed at the start / end.
        sound_s: span from the first to the last frame above the silence threshold.
        source_format: container name ("wav", "flac", "ogg", "matroska,webm", "mp3", "array").
        source_sample_rate, source_channels: of the input, before conversion.
        peak_dbfs: loudest 20-ms frame (RMS), dB re full scale.
        speech_dbfs: level of the sounding frames (90th percentile of frame levels).
        noise_dbfs: noise floor (10th percentile of frame levels, over the untrimmed audio).
        snr_db: ``speech_dbfs - noise_dbfs`` (a rough signal-to-noise estimate).
        clipped_fraction: fraction of samples at or beyond +-0.999 (overdriven microphone).
    """

    samples: NDArray[np.float32]
    sample_rate: int
    status: AudioStatus
    original_duration_s: float
    trimmed_start_s: float = 0.0
    trimmed_end_s: float = 0.0
    sound_s: float = 0.0
    source_format: str = "array"
    source_sample_rate: int | None = None
    source_channels: int | None = None
    peak_dbfs: float = -120.0
    speech_dbfs: float = -120.0
    noise_dbfs: float = -120.0
    snr_db: float = 0.0
    clipped_fraction: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Duration of ``samples`` (after trimming)."""
        return len(self.samples) / self.sample_rate

    @property
    def usable(self) -> bool:
        """True when the clip holds sound long enough to be speech."""
        return self.status is AudioStatus.OK

    @property
    def trimmed(self) -> bool:
        return self.trimmed_start_s > 0 or self.trimmed_end_s > 0

    def info(self) -> dict[str, Any]:
        """Plain-JSON description (for the perceive step's state, logs and the CLI)."""
        return {
            "status": self.status.value,
            "duration_s": round(self.duration_s, 3),
            "original_duration_s": round(self.original_duration_s, 3),
            "sound_s": round(self.sound_s, 3),
            "trimmed_start_s": round(self.trimmed_start_s, 3),
            "trimmed_end_s": round(self.trimmed_end_s, 3),
            "sample_rate": self.sample_rate,
            "source_format": self.source_format,
            "source_sample_rate": self.source_sample_rate,
            "source_channels": self.source_channels,
            "peak_dbfs": round(self.peak_dbfs, 1),
            "speech_dbfs": round(self.speech_dbfs, 1),
            "noise_dbfs": round(self.noise_dbfs, 1),
            "snr_db": round(self.snr_db, 1),
            "clipped_fraction": round(self.clipped_fraction, 5),
        }


#: Everything :func:`decode_audio` accepts.
AudioSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO,
                    tuple, AudioClip]


# ---------------------------------------------------------------------------------------------
def decode_audio(source: AudioSource | None, *, limits: AudioLimits | None = None) -> AudioClip:
    """Decode, mix down, resample to 16 kHz, trim and validate ``source`` (see module docstring).

    Raises :class:`AudioError` subclasses for unusable input; silence and too-short audio come
    back as clips with that ``status``.
    """
    limits = limits or AudioLimits()
    if source is None:
        raise EmptyAudioError("no audio was received")
    if isinstance(source, AudioClip):
        return source
    if isinstance(source, tuple):
        return _from_array_tuple(source, limits)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"audio file not found: {path}")
        size = path.stat().st_size
        _check_size(size, limits)
        with open(path, "rb") as fh:
            samples, meta = _decode_container(fh, limits)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_size(len(data), limits)
        samples, meta = _decode_container(io.BytesIO(data), limits)
    elif hasattr(source, "read"):
        data = source.read(limits.max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise AudioDecodeError("the audio file object must be opened in binary mode")
        _check_size(len(data), limits)
        samples, meta = _decode_container(io.BytesIO(bytes(data)), limits)
    else:
        raise AudioDecodeError(
            f"unsupported audio input of type {type(source).__name__}; pass bytes, a file path, "
            "a binary file object or a (sample_rate, numpy array) tuple")
    return clip_from_samples(samples, limits=limits, **meta)


def _check_size(size: int, limits: AudioLimits) -> None:
    if size == 0:
        raise EmptyAudioError("the audio is empty (0 bytes)")
    if size > limits.max_bytes:
        raise AudioTooLargeError(
            f"the audio is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB. "
            "Please send a shorter recording.")


def _too_long(seconds: float, limits: AudioLimits) -> AudioTooLongError:
    return AudioTooLongError(
        f"the audio is {seconds:.1f} s long; the limit is {limits.max_duration_s:.0f} s. "
        "Please send a shorter recording.")


def _decode_container(fh: BinaryIO, limits: AudioLimits) -> tuple[NDArray[np.float32], dict[str, Any]]:
    """Demux + decode the first audio stream with PyAV -> 16 kHz mono float32."""
    import av  # faster-whisper's dependency; imported lazily to keep `perceive` light

    try:
        container = av.open(fh, mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        # FFmpeg's own words ("[Errno 1094995529] Invalid data found…") help the operator, not
        # the person: they go to the debug log.
        log.debug("audio: FFmpeg could not open the data: %s", exc)
        raise AudioDecodeError("the audio could not be read: it is corrupt or not in a supported "
                               "format (wav, flac, ogg/opus, webm, mp3)") from None
    try:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise AudioDecodeError("the file holds no audio stream")
        stream = streams[0]
        fmt = container.format.name
        src_rate = stream.codec_context.sample_rate or stream.sample_rate
        src_channels = stream.codec_context.channels if stream.codec_context else None
        # Reject obviously long files from the header before decoding anything.
        if stream.duration is not None and stream.time_base is not None:
            header_s = float(stream.duration * stream.time_base)
            if header_s > limits.max_duration_s + 1.0:
                raise _too_long(header_s, limits)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SAMPLE_RATE)
        max_samples = int(math.ceil(limits.max_duration_s * TARGET_SAMPLE_RATE))
        chunks: list[NDArray[np.float32]] = []
        total = 0
        errors = 0

        def _take(frames: list[Any]) -> None:
            nonlocal total
            for out in frames:
                arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                chunks.append(arr)
                total += arr.size
            if total > max_samples:
                raise _too_long(total / TARGET_SAMPLE_RATE, limits)

        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    # One damaged packet (a truncated upload) should not lose the whole message.
                    errors += 1
                    if errors > 50:
                        raise
                    continue
                for frame in frames:
                    frame.pts = None  # the resampler re-times; broken timestamps must not matter
                    _take(resampler.resample(frame))
            _take(resampler.resample(None))  # flush
        except av.FFmpegError as exc:
            if total == 0:
                raise AudioDecodeError(f"the audio could not be decoded: it is corrupt ({exc})") from None
        if total == 0 and errors:
            raise AudioDecodeError("the audio could not be decoded: every packet is corrupt")
    except (AudioError, InputError):
        raise
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"the audio could not be decoded: {exc}") from None
    except (ValueError, RuntimeError, OSError) as exc:  # PyAV raises these for odd streams too
        raise AudioDecodeError(f"the audio could not be decoded: {type(exc).__name__}: {exc}") from None
    finally:
        container.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not np.all(np.isfinite(samples)):
        raise AudioDecodeError("the audio decoded to invalid (NaN/infinite) samples")
    meta = {"source_format": fmt, "source_sample_rate": int(src_rate) if src_rate else None,
            "source_channels": int(src_channels) if src_channels else None,
            "extra": {"decode_errors": errors} if errors else {}}
    return samples, meta


def _from_array_tuple(source: tuple, limits: AudioLimits) -> AudioClip:
    """(sample_rate, array) -> clip.  Integer PCM is scaled to [-1, 1]; channels are averaged."""
    if len(source) != 2:
        raise AudioDecodeError("an audio tuple must be (sample_rate, samples)")
    rate, arr = source
    if isinstance(arr, (int, float)) and not isinstance(rate, (int, float)):
        rate, arr = arr, rate  # tolerate (array, rate)
    try:
        rate = int(rate)
    except (TypeError, ValueError):
        raise AudioDecodeError(f"invalid sample rate {rate!r}") from None
    if not _MIN_ARRAY_RATE <= rate <= _MAX_ARRAY_RATE:
        raise AudioDecodeError(f"invalid sample rate {rate} Hz (expected {_MIN_ARRAY_RATE}-{_MAX_ARRAY_RATE})")
    a = np.asarray(arr)
    if a.dtype.kind not in "iuf" or a.ndim not in (1, 2):
        raise AudioDecodeError(f"audio samples must be a 1-D or 2-D numeric array, got "
                               f"{a.dtype} with shape {a.shape}")
    if a.size == 0:  # a recording stopped at once: a (too short) clip, not an error
        return clip_from_samples(np.zeros(0, np.float32), limits=limits, source_format="array",
                                 source_sample_rate=rate, source_channels=a.shape[1] if a.ndim == 2 else 1)
    if a.size * 4 > limits.max_bytes:
        raise AudioTooLargeError(f"the audio has {a.size} samples; the limit is "
                                 f"{limits.max_bytes // 4} (max_bytes / 4)")
    channels = 1
    if a.ndim == 2:
        # Gradio gives (n, channels); accept (channels, n) too: channels is the short axis.
        if a.shape[0] < a.shape[1] and a.shape[0] <= 8:
            a = a.T
        channels = a.shape[1]
    if a.dtype.kind == "u":
        bits = a.dtype.itemsize * 8
        x = (a.astype(np.float64) - 2 ** (bits - 1)) / 2 ** (bits - 1)
    elif a.dtype.kind == "i":
        x = a.astype(np.float64) / 2 ** (a.dtype.itemsize * 8 - 1)
    else:
        x = a.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise AudioDecodeError("the audio holds invalid (NaN/infinite) samples")
    if x.ndim == 2:
        x = x.mean(axis=1)
    seconds = x.size / rate
    if seconds > limits.max_duration_s:
        raise _too_long(seconds, limits)
    samples = _resample(x.astype(np.float32), rate)
    return clip_from_samples(samples, limits=limits, source_format="array", source_sample_rate=rate,
                             source_channels=channels)


def _resample(x: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    """Mono float32 at ``rate`` -> 16 kHz, with FFmpeg's resampler (same as file decoding)."""
    if rate == TARGET_SAMPLE_RATE:
        return np.ascontiguousarray(x, dtype=np.float32)
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, :]), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SAMPLE_RATE)
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


# ---------------------------------------------------------------------------------------------
def frame_levels_db(samples: NDArray[np.floating], sample_rate: int = TARGET_SAMPLE_RATE,
                    frame_s: float = _FRAME_S, hop_s: float = _HOP_S) -> NDArray[np.float64]:
    """RMS level of each frame in dB re full scale: (n_frames,), -120 dB for digital silence."""
    frame = max(1, int(round(frame_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    x = np.asarray(samples, dtype=np.float64)
    if x.size < frame:
        x = np.pad(x, (0, frame - x.size))
    n = 1 + (x.size - frame) // hop
    # Strided view: (n, frame) without copying the signal.
    frames = np.lib.stride_tricks.as_strided(x, shape=(n, frame), strides=(x.strides[0] * hop, x.strides[0]))
    power = np.mean(frames * frames, axis=1)
    return 10.0 * np.log10(power + _POWER_FLOOR)


def clip_from_samples(samples: NDArray[np.floating], *, limits: AudioLimits | None = None,
                      source_format: str = "array", source_sample_rate: int | None = TARGET_SAMPLE_RATE,
                      source_channels: int | None = 1, extra: dict[str, Any] | None = None) -> AudioClip:
    """Measure levels, find the sounding span, trim and classify 16 kHz mono ``samples``."""
    limits = limits or AudioLimits()
    x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise AudioDecodeError("the audio holds invalid (NaN/infinite) samples")
    sr = TARGET_SAMPLE_RATE
    original_s = x.size / sr
    if original_s > limits.max_duration_s:
        raise _too_long(original_s, limits)
    common = dict(sample_rate=sr, original_duration_s=original_s, source_format=source_format,
                  source_sample_rate=source_sample_rate, source_channels=source_channels,
                  extra=dict(extra or {}))
    if x.size == 0:
        return AudioClip(samples=_readonly(x), status=AudioStatus.TOO_SHORT, **common)

    levels = frame_levels_db(x, sr)
    hop = int(round(_HOP_S * sr))
    frame = int(round(_FRAME_S * sr))
    peak = float(levels.max())
    noise = float(np.percentile(levels, 10))
    clipped = float(np.mean(np.abs(x) >= 0.999))
    threshold = max(limits.silence_dbfs, noise + limits.min_snr_db, peak - limits.dynamic_range_db)
    active = np.flatnonzero(levels > threshold)
    common.update(peak_dbfs=peak, noise_dbfs=noise, clipped_fraction=clipped)
    if active.size == 0:
        return AudioClip(samples=_readonly(x), status=AudioStatus.SILENCE, **common)

    first = int(active[0]) * hop
    last = min(x.size, int(active[-1]) * hop + frame)
    sound_s = (last - first) / sr
    speech = float(np.percentile(levels[active], 90))
    common.update(speech_dbfs=speech, snr_db=max(0.0, speech - noise), sound_s=sound_s)
    if limits.trim:
        margin = int(round(limits.trim_margin_s * sr))
        start, end = max(0, first - margin), min(x.size, last + margin)
    else:
        start, end = 0, x.size
    status = AudioStatus.OK if sound_s >= limits.min_speech_s else AudioStatus.TOO_SHORT
    return AudioClip(samples=_readonly(x[start:end].copy()), status=status,
                     trimmed_start_s=start / sr, trimmed_end_s=(x.size - end) / sr, **common)


def _readonly(x: NDArray[np.float32]) -> NDArray[np.float32]:
    x.setflags(write=False)
    return x
