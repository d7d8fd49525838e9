"""Fake backends that subclass the real interfaces, configured with what they should do."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.evals.strategy import StrategyClassifier
from empathic_agent.generate.llm import LLM, ChatMessage, GenerationOptions
from empathic_agent.memory.embedder import Embedder
from empathic_agent.perceive.audio import AudioClip
from empathic_agent.perceive.face import FacePerception, FacePerceptionResult
from empathic_agent.perceive.speech import SpeechPerception, SpeechPerceptionResult
from empathic_agent.perceive.stt import STT, TranscribeOptions, Transcript
from empathic_agent.safety.clinical_model import ClinicalModel
from empathic_agent.speak.prosody import VoiceProfile
from empathic_agent.speak.tts import TTS, Prosody, TTSCapabilities

__all__ = ["FakeLLM", "FakeEmbedder", "FakeStrategyClassifier", "FakeClinicalModel", "FakeTTS", "FakeSTT", "FakeSpeechPerception",
           "FakeFacePerception"]


class FakeLLM(LLM):
    """An LLM that replies from a script (cycling), or raises a given exception.

    It records every prompt it received in ``prompts`` so tests can check what the model saw.
    """

    name = "fake"

    def __init__(self, replies: Sequence[str] = ("I hear you.",), *, error: Exception | None = None,
                 chunk_size: int = 4, delay_s: float = 0.0) -> None:
        super().__init__()
        self.replies = list(replies)
        self.error = error
        self.chunk_size = chunk_size
        self.delay_s = delay_s
        self.prompts: list[list[ChatMessage]] = []
        self._i = 0

    @property
    def model_name(self) -> str:
        return "fake"

    async def _stream_impl(self, messages: list[ChatMessage],
                           options: GenerationOptions) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        if self.error is not None:
            raise self.error
        reply = self.replies[self._i % len(self.replies)]
        self._i += 1
        for i in range(0, len(reply), self.chunk_size):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield reply[i:i + self.chunk_size]


class FakeEmbedder(Embedder):
    """A deterministic embedder for tests: a signed, hashed bag of words, L2-normalised.

    Texts sharing content words get a high cosine, texts sharing none get ~0, so tests can build
    "semantically similar" and "unrelated" memories by wording alone.  Common function words are
    ignored (they would make every English sentence similar).  ``vectors`` pins exact texts to given
    vectors; ``error`` makes every call raise it.  Every batch is recorded in ``calls``.
    """

    name = "fake"

    STOPWORDS = frozenset(
        "i me my mine you your we our a an the and or but to of in on at for with about is am are was were "
        "be been it its this that so very really just had have has do did does not no".split())

    def __init__(self, dim: int = 128, *, vectors: dict[str, Sequence[float]] | None = None,
                 error: Exception | None = None, batch_size: int = 32) -> None:
        super().__init__(batch_size=batch_size)
        self._dim = dim
        self.vectors = {k: list(v) for k, v in (vectors or {}).items()}
        self.error = error
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self._dim

    def _embed_impl(self, texts: list[str]):
        import hashlib
        import re

        import numpy as np

        self.calls.append(list(texts))
        if self.error is not None:
            raise self.error
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if text in self.vectors:
                out[row] = np.asarray(self.vectors[text], dtype=np.float32)
                continue
            for token in re.findall(r"[a-z0-9']+", text.lower()):
                if token in self.STOPWORDS:
                    continue
                h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
                out[row, h % self._dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Encoders

# Imports of the encoder fake live with it (this section was appended to the file).
from os import PathLike  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Mapping  # noqa: E402

from empathic_agent.encode.base import INPUT_PATH, INPUT_TEXT, Encoder  # noqa: E402
from empathic_agent.latent import MODALITY_FACE, MODALITY_SPEECH, Reading  # noqa: E402


class FakeEncoder(Encoder):
    """An encoder that answers from a script: input -> `Reading` (or a category name), else a default.

    * ``readings`` maps an input (a text, or a path's file name for ``input_kind="path"``) to a
      `Reading` or to a category name (shortcut for a reading concentrated on that category, with
      the category's prototype VAD);
    * inputs not in the script get ``default`` (an uninformative reading of the modality if None);
    * ``error`` makes every call raise it (a vendor-style exception becomes an EncoderError).

    Every batch it received is recorded in ``calls``.
    """

    name = "fake"

    def __init__(self, readings: Mapping[str, Reading | str] | None = None, *,
                 default: Reading | str | None = None, modality: str = "text",
                 input_kind: str = INPUT_TEXT, error: Exception | None = None) -> None:
        super().__init__()
        self.modality = modality
        self.input_kind = input_kind
        self.input_types = (str, PathLike) if input_kind == INPUT_PATH else (str,)
        self.readings = dict(readings or {})
        self.default = default
        self.error = error
        self.calls: list[list[Any]] = []

    def _as_reading(self, value: Reading | str | None) -> Reading:
        if value is None:
            return Reading.uninformative(self.modality)
        if isinstance(value, str):
            return Reading.from_categories({value: 1.0}, modality=self.modality)
        return value

    def _key(self, x: Any) -> str:
        if x is None:
            return ""
        if self.input_kind == INPUT_PATH:
            return Path(x).name
        return str(x)

    def _encode_batch_impl(self, xs: list[Any]) -> list[Reading]:
        self.calls.append(list(xs))
        if self.error is not None:
            raise self.error
        return [self._as_reading(self.readings.get(self._key(x), self.default)) for x in xs]


class ContextRecordingEncoder(FakeEncoder):
    """A :class:`FakeEncoder` with a context head, as the text encoder has: reads a message in its
    conversation the way it reads it alone, and records every ``(text, context)`` it was given."""

    reads_context = True

    def __init__(self, readings: Mapping[str, Reading | str] | None = None, *,
                 default: Reading | str | None = "neutral") -> None:
        super().__init__(readings, default=default)
        self.seen: list[tuple[Any, Any]] = []

    def encode_in_context(self, text: Any, context: Any) -> Reading:
        return self.encode_batch_in_context([text], [context])[0]

    def encode_batch_in_context(self, texts: Sequence[Any], contexts: Sequence[Any]) -> list[Reading]:
        self.seen.extend(zip(texts, contexts))
        return self.encode_batch(list(texts))


__all__ += ["FakeEncoder", "ContextRecordingEncoder"]


class FakeStrategyClassifier(StrategyClassifier):
    """Reads a reply's strategy from its surface: a question is "Question", "sorry"/"sounds" is
    "Reflection of feelings", "should"/"try" is "Providing Suggestions", else "Others"."""

    def __init__(self) -> None:
        super().__init__()

    def available(self) -> bool:
        return True

    def classify_many(self, contexts: Sequence[str], replies: Sequence[str]) -> list[dict]:
        from empathic_agent.plan.register import STRATEGIES, family_of

        out = []
        for reply in replies:
            low = reply.lower()
            s = ("Question" if "?" in reply else "Reflection of feelings" if "sorry" in low or "sounds" in low
                 else "Providing Suggestions" if "should" in low or "try" in low else "Others")
            out.append({"strategy": s, "probability": 1.0, "family": family_of(s),
                        "distribution": {c: float(c == s) for c in STRATEGIES}})
        return out


class FakeClinicalModel(ClinicalModel):
    """The clinical reader's learned layer with scripted probabilities: ``scores`` maps a word
    found in the message (lower case) to its presentations' probabilities; the first word found
    answers, else every presentation reads 0.  Thresholds 0.5, takeover 0.8."""

    def __init__(self, scores: dict[str, dict[str, float]]) -> None:
        from empathic_agent.safety.clinical import PRESENTATIONS

        self.scores = {k.lower(): dict(v) for k, v in scores.items()}
        self.names = PRESENTATIONS
        self.thresholds = {n: 0.5 for n in PRESENTATIONS}
        self.takeovers = {n: 0.8 for n in PRESENTATIONS}

    def load(self) -> None:
        return None

    def read_many(self, texts: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for text in texts:
            hit = next((v for k, v in self.scores.items() if k in text.lower()), {})
            out.append({n: float(hit.get(n, 0.0)) for n in self.names})
        return out


# ---------------------------------------------------------------------------------------------
# Voice and face: the graph's perceive step with no model behind it.


class FakeTTS(TTS):
    """A test double that subclasses the real base class: speaks a tone (no model).

    Each character lasts ``seconds_per_char``; ``delay_s`` simulates synthesis time; ``error``
    (an exception instance) is raised by every synthesis, ``fail_on`` only for sentences that
    contain that substring.  Pitch shift and gain are realised (the tone moves), so tests can see
    the prosody arrive.  Calls are recorded in :attr:`calls`.
    """

    name = "fake"
    capabilities = TTSCapabilities(pitch=True, gain=False, sentence_chunks=False)

    def __init__(self, profile: "VoiceProfile | None" = None, *, sample_rate: int = 16000,
                 seconds_per_char: float = 0.05, delay_s: float = 0.0, error: Exception | None = None,
                 fail_on: str | None = None) -> None:
        if profile is None:
            from empathic_agent.speak.prosody import builtin_profile

            profile = builtin_profile("espeak-ng").with_name("fake")
        super().__init__(profile)
        self.sample_rate = sample_rate
        self.seconds_per_char = seconds_per_char
        self.delay_s = delay_s
        self.error = error
        self.fail_on = fail_on
        self.calls: list[tuple[str, Prosody]] = []

    def _synthesize_impl(self, text: str, prosody: Prosody) -> tuple[int, NDArray[np.float32]]:
        self.calls.append((text, prosody))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError(f"fake failure on {self.fail_on!r}")
        n = max(1, int(len(text) * self.seconds_per_char * self.sample_rate))
        t = np.arange(n) / self.sample_rate
        f0 = 120.0 * 2.0 ** (prosody.pitch_shift_st / 12.0)
        return self.sample_rate, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)

    def _sample_rate_hint(self) -> int:
        return self.sample_rate


class FakeSTT(STT):
    """Speech-to-text that "hears" the texts it was given, one per call (the last one repeats);
    silence still gives an empty transcript (the base class skips it).  Calls are recorded."""

    name = "fake"

    def __init__(self, texts: Sequence[str] = ("I had a hard day at work.",), **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if not texts:
            raise ValueError("FakeSTT needs at least one text")
        self.texts = list(texts)
        self.clips: list[AudioClip] = []

    @property
    def model_name(self) -> str:
        return "fake"

    def _transcribe_impl(self, clip: AudioClip, options: TranscribeOptions) -> Transcript:
        text = self.texts[min(len(self.clips), len(self.texts) - 1)]
        self.clips.append(clip)
        return Transcript(text=text, language=options.language or "en", language_probability=1.0,
                          audio_s=clip.duration_s, backend=self.name, model="fake")


class FakeSpeechPerception(SpeechPerception):
    """The voice step with a :class:`FakeSTT` and a fixed speech reading: the audio is really
    decoded and validated (bad audio gives the same errors as in production), then "heard"."""

    def __init__(self, stt: STT | None = None, reading: Reading | None = None) -> None:
        super().__init__(stt or FakeSTT(), encoder=None, parallel=False)  # type: ignore[arg-type]
        self.reading = reading if reading is not None else Reading.from_categories(
            {"sadness": 0.8, "neutral": 0.2}, MODALITY_SPEECH)
        self.users: list[str | None] = []

    def load(self) -> None:
        self.stt.load()

    def export_user(self, user_id: str) -> dict[str, Any] | None:
        """What a voice baseline would hold: how many clips the user sent (None: none)."""
        clips = sum(1 for u in self.users if u == user_id)
        return {"user": user_id, "clips": clips} if clips else None

    def forget_user(self, user_id: str) -> bool:
        had = user_id in self.users
        self.users = [u for u in self.users if u != user_id]
        return had

    def perceive(self, audio: Any, user_id: str | None = None, *, language: str | None = None,
                 update_baseline: bool = True, transcript: Any = None) -> SpeechPerceptionResult:
        import concurrent.futures

        from empathic_agent.perceive.audio import AudioError, decode_audio

        t0 = time.perf_counter()
        self.users.append(user_id)
        try:
            clip = decode_audio(audio, limits=self.limits)
        except AudioError as exc:
            return SpeechPerceptionResult(None, None, None, {"total_s": time.perf_counter() - t0}, (f"audio: {exc}",))
        timings: dict[str, float] = {}
        if isinstance(transcript, concurrent.futures.Future):
            # As in production: a failed early transcription is done again.
            transcript = transcript.result() if transcript.exception() is None else None
        if transcript is not None:
            timings["stt_early"] = 1.0
        else:
            transcript = self.stt.transcribe(clip, TranscribeOptions(language=language))
        reading = self.reading if transcript.text else None
        return SpeechPerceptionResult(transcript, reading, clip.info(), {**timings, "total_s": time.perf_counter() - t0})


#: "Use the fake's default" (where ``None`` means something: no face seen).
DEFAULT = object()


class FakeFacePerception(FacePerception):
    """The face step with a fixed reading per turn (default: a sad face; ``None``: no face seen);
    counts the frames it was given."""

    def __init__(self, reading: "Reading | None | object" = DEFAULT) -> None:
        super().__init__(encoder=None)  # type: ignore[arg-type]
        self.reading: Reading | None = Reading.from_categories({"sadness": 0.7, "neutral": 0.3}, MODALITY_FACE) \
            if reading is DEFAULT else reading  # type: ignore[assignment]
        self.frames: list[int] = []

    def load(self) -> None:
        pass

    def perceive(self, images: Any) -> FacePerceptionResult:
        frames = list(images) if isinstance(images, (list, tuple)) else [images]
        self.frames.append(len(frames))
        return FacePerceptionResult(self.reading, (), {"total_s": 0.0})
