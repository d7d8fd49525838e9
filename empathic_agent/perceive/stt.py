"""Speech-to-text: one base class with one hook, a faster-whisper backend, and a registry.

:meth:`STT.transcribe` is the public method: it decodes/validates the audio (anything
:func:`~empathic_agent.perceive.audio.decode_audio` accepts), skips silence and too-short clips
without running a model, times every stage, and translates vendor exceptions into
:class:`STTError`.  A backend implements only :meth:`STT._transcribe_impl` (and optionally
:meth:`STT._load_impl`).  Results are frozen dataclasses (:class:`Transcript`).

The default backend, :class:`WhisperSTT`, runs Whisper **base** in CTranslate2 format through
faster-whisper (``WhisperModel(dir, device="cpu", compute_type="int8")``), with the weights
provisioned offline by the model resolver (``resolve_model("stt", settings.stt_model, ...)``).
The loaded model lives in a process-wide :class:`WhisperRuntime` (one copy in memory, loaded
once, guarded by a lock), and work is shared wherever it can be:

* the log-mel spectrogram of a clip is computed once (:meth:`WhisperRuntime.log_mel` caches the
  last one) and reused by the speech emotion encoder, which runs the first layers of the same
  Whisper weights over only the frames that hold audio (``encode/speech/``: the emotion lives
  in the middle layers; ~20-60 ms instead of ~0.5 s for the 30-s padded window);
* transcription runs the padded 30-s encoder window exactly once: language detection and
  decoding share that one pass (faster-whisper's own ``transcribe`` runs it twice for a clip
  whose language is not given).

Usage::

    stt = load_stt(settings)                     # weights load on first use (or stt.load())
    t = stt.transcribe("hello.ogg")              # -> Transcript(text="Hello.", language="en", ...)
    t = await stt.atranscribe(audio_bytes)       # off the event loop
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import BackendUnavailableError, ConfigError, EmpathicError
from empathic_agent.lifecycle import Loadable
from empathic_agent.perceive.audio import AudioClip, AudioLimits, AudioSource, decode_audio
from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "STTError",
    "STTCapabilities",
    "TranscribeOptions",
    "TranscriptSegment",
    "Transcript",
    "STT",
    "WhisperSTT",
    "WhisperRuntime",
    "shared_whisper_runtime",
    "register_stt_backend",
    "available_stt_backends",
    "load_stt",
]

log = logging.getLogger(__name__)

#: Whisper's input window: 30 s of audio = 3000 log-mel frames (10 ms hop); the encoder halves the
#: time axis (stride-2 convolution), so one encoder frame covers 20 ms.
WHISPER_WINDOW_FRAMES: Final[int] = 3000
#: Fewest mel frames the encoder pass over audio-only frames accepts (the conv stack needs a few).
MIN_ENCODER_FRAMES: Final[int] = 4


class STTError(EmpathicError):
    """Transcription failed (the message names the backend and the cause)."""


@dataclass(frozen=True)
class STTCapabilities:
    """What a backend can do (capabilities as data)."""

    language_detection: bool = True
    #: Languages it can transcribe; empty = not restricted/known.
    languages: tuple[str, ...] = ()
    streaming: bool = False
    word_timestamps: bool = False


@dataclass(frozen=True)
class TranscribeOptions:
    """Per-request transcription options.

    Attributes:
        language: ISO code ("en", "fr"...) or None to detect it.
        beam_size: beam search width (5 = Whisper's default; 1 = greedy, faster, a little worse).
        temperatures: fallback temperatures when a decode looks like a failure (compression ratio
            or log-probability thresholds), as in openai/whisper.
        initial_prompt: text to condition the first window on (names, jargon).
        no_speech_threshold: a window whose no-speech probability is above this (and whose
            tokens are improbable) is treated as silence.
    """

    language: str | None = None
    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    initial_prompt: str | None = None
    no_speech_threshold: float = 0.6

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {self.beam_size}")
        if not self.temperatures:
            raise ConfigError("temperatures must not be empty")


@dataclass(frozen=True)
class TranscriptSegment:
    """One decoded segment (times in seconds from the start of the trimmed clip)."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "text": self.text,
                "avg_logprob": round(self.avg_logprob, 4), "no_speech_prob": round(self.no_speech_prob, 4)}


@dataclass(frozen=True)
class Transcript:
    """What was said.

    Attributes:
        text: the whole transcript, stripped ("" when nothing was said).
        language: detected (or given) language code; "" when the model did not run.
        language_probability: the detector's probability of ``language`` (1.0 when given).
        segments: the decoded segments, in order.
        audio_s: duration of the (trimmed) audio that was transcribed.
        backend, model: which backend/model produced it.
        skipped: why the model did not run ("silence", "too_short"), else None.
        timings: seconds per stage (backend-specific keys plus ``total_s``).
    """

    text: str
    language: str = ""
    language_probability: float = 0.0
    segments: tuple[TranscriptSegment, ...] = ()
    audio_s: float = 0.0
    backend: str = ""
    model: str = ""
    skipped: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.text

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "language": self.language,
                "language_probability": round(self.language_probability, 4),
                "segments": [s.to_dict() for s in self.segments], "audio_s": round(self.audio_s, 3),
                "backend": self.backend, "model": self.model, "skipped": self.skipped,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


class STT(Loadable, ABC):
    """Base class of every speech-to-text backend (loading lifecycle: :class:`Loadable`)."""

    kind = "speech-to-text"
    error_class = STTError
    #: Registry name of the backend.
    name: str = "base"
    capabilities: STTCapabilities = STTCapabilities()

    def __init__(self, *, limits: AudioLimits | None = None) -> None:
        super().__init__()
        self.limits = limits or AudioLimits()
        self.last_transcript: Transcript | None = None

    # -- public API ------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return "?"

    def _loaded_what(self) -> str:
        return f" {self.model_name}"

    def transcribe(self, audio: AudioSource | AudioClip,
                   options: TranscribeOptions | None = None) -> Transcript:
        """Transcribe one utterance (blocking).

        ``audio`` is anything :func:`decode_audio` accepts.  Unusable input raises an
        :class:`~empathic_agent.perceive.audio.AudioError`; silence and too-short clips give an
        empty transcript with ``skipped`` set; model failures raise :class:`STTError`.
        """
        options = options or TranscribeOptions()
        t0 = time.perf_counter()
        clip = decode_audio(audio, limits=self.limits)
        audio_decode_s = time.perf_counter() - t0
        if not clip.usable:
            result = Transcript(text="", audio_s=clip.duration_s, backend=self.name, model=self.model_name,
                                skipped=clip.status.value,
                                timings={"audio_decode_s": audio_decode_s,
                                         "total_s": time.perf_counter() - t0})
            self.last_transcript = result
            return result
        self.load()
        t1 = time.perf_counter()
        result = self._translate(lambda: self._transcribe_impl(clip, options), "transcribing")
        if not isinstance(result, Transcript):
            raise STTError(f"stt backend {self.name} returned {type(result).__name__}, not a Transcript")
        timings = {"audio_decode_s": audio_decode_s, **result.timings, "model_s": time.perf_counter() - t1,
                   "total_s": time.perf_counter() - t0}
        result = Transcript(text=result.text.strip(), language=result.language,
                            language_probability=result.language_probability, segments=result.segments,
                            audio_s=clip.duration_s, backend=self.name, model=self.model_name,
                            skipped=None, timings=timings)
        self.last_transcript = result
        return result

    async def atranscribe(self, audio: AudioSource | AudioClip,
                          options: TranscribeOptions | None = None) -> Transcript:
        """:meth:`transcribe` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.transcribe, audio, options)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_name, "loaded": self._loaded,
                "load_s": self.load_s, "capabilities": vars(self.capabilities)}

    # -- hooks (and _load_impl, _translate_error from Loadable) -----------------------------------
    @abstractmethod
    def _transcribe_impl(self, clip: AudioClip, options: TranscribeOptions) -> Transcript:
        """Transcribe a usable 16 kHz mono clip. ``timings`` may carry per-stage seconds."""


# ---------------------------------------------------------------------------------------------
class WhisperRuntime:
    """One loaded faster-whisper model per model directory, shared by every transcriber in the
    process (its log-mel spectrogram is also handed to the speech emotion encoder).

    Thread-safe: model calls are serialised by a lock (on 2 cores, parallel CTranslate2 calls
    only fight over the same cores).  Get the shared instance with :func:`shared_whisper_runtime`.
    """

    def __init__(self, model_dir: str | Path, *, cpu_threads: int = 0) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendUnavailableError(
                "faster-whisper is not installed: pip install 'empathic-agent[speech]'") from exc
        self.model_dir = str(model_dir)
        self.model = WhisperModel(self.model_dir, device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        self.lock = threading.RLock()
        self._mel_lock = threading.Lock()
        self._mel_key: NDArray[np.float32] | None = None
        self._mel_value: NDArray[np.float32] | None = None

    @property
    def is_multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def log_mel(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """Whisper's log-mel spectrogram of 16 kHz samples: (80, n_frames + 1), 10 ms hop.

        The last result is cached by identity of ``samples`` (clips are read-only), so the
        transcriber and the emotion encoder compute it once per utterance.
        """
        # Its own lock, and computed outside it (plain numpy): talk mode's early transcription
        # holds the model's lock for a whole decode, and the turn's emotion read must not wait.
        with self._mel_lock:
            if self._mel_key is samples and self._mel_value is not None:
                return self._mel_value
        mel = np.asarray(self.model.feature_extractor(np.asarray(samples, dtype=np.float32)), dtype=np.float32)
        with self._mel_lock:
            self._mel_key, self._mel_value = samples, mel
        return mel

    def encode_window(self, mel: NDArray[np.float32]) -> Any:
        """Encoder output of the first padded 30-s window, exactly as faster-whisper computes it
        for decoding (a CTranslate2 StorageView (1, 1500, 512))."""
        from faster_whisper.audio import pad_or_trim

        content = mel.shape[-1] - 1
        window = pad_or_trim(mel[:, : min(WHISPER_WINDOW_FRAMES, content)])
        with self.lock:
            return self.model.encode(window)


_RUNTIMES: dict[str, WhisperRuntime] = {}
_RUNTIMES_LOCK = threading.Lock()


def shared_whisper_runtime(model_dir: str | Path) -> WhisperRuntime:
    """The process-wide :class:`WhisperRuntime` of ``model_dir`` (loaded on first call)."""
    key = str(Path(model_dir).resolve())
    with _RUNTIMES_LOCK:
        rt = _RUNTIMES.get(key)
        if rt is None:
            from empathic_agent.machine import cpu_count

            # One thread per core we may use (up to 4): CTranslate2's default oversubscribes a
            # 2-core machine (encoder pass 0.45 s against 0.38 s with 2 threads, measured idle).
            rt = WhisperRuntime(key, cpu_threads=min(4, max(1, cpu_count())))
            _RUNTIMES[key] = rt
        return rt


class WhisperSTT(STT):
    """faster-whisper (CTranslate2, int8, CPU) with the model from the resolver."""

    name = "whisper"
    capabilities = STTCapabilities(language_detection=True, streaming=False, word_timestamps=False)

    def __init__(self, model_spec: str = "whisper-base", cache_dir: str | Path | None = None, *,
                 model_dir: str | Path | None = None, limits: AudioLimits | None = None) -> None:
        super().__init__(limits=limits)
        self.model_spec = model_spec
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.model_dir = str(model_dir) if model_dir is not None else None
        self.runtime: WhisperRuntime | None = None

    @classmethod
    def from_settings(cls, settings: "Settings", *, limits: AudioLimits | None = None) -> "WhisperSTT":
        return cls(settings.stt_model, settings.cache_dir, limits=limits)

    @property
    def model_name(self) -> str:
        return self.model_spec

    def resolve_dir(self) -> str:
        """The local CTranslate2 model directory (prepared once by the resolver)."""
        if self.model_dir is None:
            from empathic_agent.models import resolve_model
            from empathic_agent.settings import Settings

            cache = self.cache_dir or Settings.from_env().cache_dir
            resolved = resolve_model("stt", self.model_spec, cache)
            # A hub id is handed to faster-whisper as is (downloads only where there is network).
            self.model_dir = resolved.location
        return self.model_dir

    def _load_impl(self) -> None:
        self.runtime = shared_whisper_runtime(self.resolve_dir())

    def _transcribe_impl(self, clip: AudioClip, options: TranscribeOptions) -> Transcript:
        rt = self.runtime
        assert rt is not None
        model = rt.model
        timings: dict[str, float] = {}
        t = time.perf_counter()
        mel = rt.log_mel(clip.samples)
        timings["features_s"] = time.perf_counter() - t

        # One padded encoder pass serves language detection and the first decoding window.
        t = time.perf_counter()
        encoder_output = rt.encode_window(mel)
        timings["encode_s"] = time.perf_counter() - t
        language, language_probability = options.language, 1.0
        t = time.perf_counter()
        if language is None:
            if rt.is_multilingual:
                with rt.lock:
                    probs = model.model.detect_language(encoder_output)[0]
                token, language_probability = probs[0]
                language = token[2:-2]  # "<|en|>" -> "en"
            else:
                language = "en"
        timings["language_s"] = time.perf_counter() - t

        t = time.perf_counter()
        with rt.lock:
            raw = self._decode(model, mel, encoder_output, language, options, clip)
        timings["decode_s"] = time.perf_counter() - t
        segments = tuple(TranscriptSegment(float(s.start), float(s.end), s.text.strip(),
                                           float(s.avg_logprob), float(s.no_speech_prob)) for s in raw)
        text = " ".join(s.text for s in segments if s.text).strip()
        return Transcript(text=text, language=language, language_probability=float(language_probability),
                          segments=segments, timings=timings)

    @staticmethod
    def _decode(model: Any, mel: NDArray[np.float32], encoder_output: Any, language: str,
                options: TranscribeOptions, clip: AudioClip) -> list[Any]:
        """Decode with faster-whisper's segment loop, reusing ``encoder_output`` for window 1.

        Falls back to the public ``transcribe`` (one extra encoder pass) if the internal API of
        the installed faster-whisper differs from 1.2's.
        """
        kwargs = dict(beam_size=options.beam_size, best_of=5, patience=1.0, length_penalty=1.0,
                      repetition_penalty=1.0, no_repeat_ngram_size=0, log_prob_threshold=-1.0,
                      no_speech_threshold=options.no_speech_threshold, compression_ratio_threshold=2.4,
                      condition_on_previous_text=True, prompt_reset_on_temperature=0.5,
                      temperatures=list(options.temperatures), initial_prompt=options.initial_prompt,
                      prefix=None, suppress_blank=True, without_timestamps=False,
                      max_initial_timestamp=1.0, word_timestamps=False,
                      prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
                      multilingual=False, max_new_tokens=None, clip_timestamps="0",
                      hallucination_silence_threshold=None, hotwords=None)
        try:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                  language=language)
            topts = TranscriptionOptions(suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), **kwargs)
            return list(model.generate_segments(mel, tokenizer, topts, False, encoder_output))
        except (ImportError, TypeError, AttributeError) as exc:
            log.debug("faster-whisper internals differ (%s); using the public transcribe()", exc)
            segments, _ = model.transcribe(clip.samples, language=language, beam_size=options.beam_size,
                                           temperature=list(options.temperatures),
                                           initial_prompt=options.initial_prompt,
                                           no_speech_threshold=options.no_speech_threshold)
            return list(segments)


# ---------------------------------------------------------------------------------------------
# Registry: backend name -> factory(settings) -> STT, by dotted path (vendors import lazily).
STT_REGISTRY: "Registry[STT]" = Registry("stt_backends", noun="speech-to-text backend")
STT_REGISTRY.register("whisper", "empathic_agent.perceive.stt:WhisperSTT.from_settings")


def register_stt_backend(name: str, factory: "str | Callable[[Settings], STT]") -> None:
    """Register (or replace) a speech-to-text backend: a factory ``(settings) -> STT`` or its
    ``"module:attr"`` path (also through the ``empathic_agent.stt_backends`` entry-point group)."""
    STT_REGISTRY.register(name, factory)


def available_stt_backends() -> list[str]:
    return STT_REGISTRY.names()


def load_stt(settings: "Settings | None" = None, backend: str = "whisper") -> STT:
    """Build the speech-to-text backend ``backend`` (weights load on first use).

    Raises :class:`ConfigError` naming the valid backends for an unknown name.
    """
    factory = STT_REGISTRY.factory(backend)
    if settings is None:
        from empathic_agent.settings import Settings

        settings = Settings.from_env()
    return factory(settings)
