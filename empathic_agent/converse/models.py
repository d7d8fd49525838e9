"""The two small listening models of talk mode: voice activity (is the person speaking in this
32 ms?) and end of turn (has the person finished, or only paused mid-sentence?).

Both are ONNX files that ship inside a registry package and run with onnxruntime on the CPU:

* **Silero VAD** v5 (MIT): 512 samples at 16 kHz per call, with a 64-sample look-back and a
  recurrent state carried from call to call; about 0.1 ms a frame here.
* **Smart Turn** v3.2 (pipecat-ai, BSD-2-Clause): a Whisper-tiny encoder reading the last 8 s of
  the utterance as 80 log-mel bins, giving P(the turn is complete).  It hears the intonation of a
  finished sentence versus a trailing "and then I...", so the agent can wait through a
  mid-sentence pause and still answer a finished one quickly.

Both files are found inside the ``pipecat-ai`` package (installed without its dependencies by
``scripts/setup.sh``: only these two files of it are used, and it is never imported).  A user's own
files may be given instead (``SileroVAD(path)``, ``SmartTurn(path)``).

Each role is a small base class with one hook (:class:`VoiceActivity.speech_probability`,
:class:`TurnEnd.complete_probability`), so tests can subclass them with scripted fakes.
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np

from empathic_agent.errors import ModelError
from empathic_agent.lifecycle import Loadable

__all__ = ["SAMPLE_RATE", "FRAME", "VoiceActivity", "SileroVAD", "TurnEnd", "SmartTurn", "SilenceOnly",
           "packaged_file"]

#: Talk mode listens at 16 kHz mono (what both models and Whisper read).
SAMPLE_RATE: Final[int] = 16000
#: Samples per VAD frame (32 ms): the only frame size Silero VAD v5 takes at 16 kHz.
FRAME: Final[int] = 512
_CONTEXT: Final[int] = 64
#: Where the files sit inside the pipecat-ai package.
_PACKAGED: Final[dict[str, tuple[str, ...]]] = {
    "silero-vad": ("audio", "vad", "data", "silero_vad.onnx"),
    "smart-turn": ("audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx"),
}


def packaged_file(which: str) -> Path:
    """The packaged ONNX file of ``which`` ("silero-vad" or "smart-turn"), found without importing
    the package that carries it."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the {which} model ships in the pipecat-ai package, which is not installed; install it "
                         "with: pip install --no-deps 'pipecat-ai==1.14.0' (scripts/setup.sh does)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*_PACKAGED[which])
    if not path.is_file():
        raise ModelError(f"{path} not found: this pipecat-ai version does not carry the {which} model "
                         "(1.14.0 does)")
    return path


def _session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class VoiceActivity(Loadable, ABC):
    """Per 32 ms frame (:data:`FRAME` float32 samples at 16 kHz): P(speech).  Stateful: frames of
    one stream must come in order; :meth:`reset` starts a new stream."""

    kind: ClassVar[str] = "voice activity detector"
    error_class = ModelError

    @abstractmethod
    def speech_probability(self, frame: np.ndarray) -> float:
        """P(speech) of this frame, given the frames before it."""

    def reset(self) -> None:
        """Forget the stream so far."""

    def fresh(self) -> "VoiceActivity":
        """A detector for another stream (its own state; loaded weights may be shared)."""
        return self


class SileroVAD(VoiceActivity):
    """Silero VAD v5 (ONNX, MIT) from the pipecat-ai package or ``path``."""

    name = "silero"

    def __init__(self, path: str | Path | None = None, *, _shared: Any = None) -> None:
        super().__init__()
        self.path = Path(path) if path else None
        self._shared = _shared or {}
        self._lock = threading.Lock()
        self.reset()

    def _load_impl(self) -> None:
        if "session" not in self._shared:
            self._shared["session"] = _session(self.path or packaged_file("silero-vad"))

    def fresh(self) -> "SileroVAD":
        self.load()
        other = SileroVAD(self.path, _shared=self._shared)
        other.load()
        return other

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def speech_probability(self, frame: np.ndarray) -> float:
        frame = np.asarray(frame, np.float32).reshape(-1)
        if frame.size != FRAME:
            raise ValueError(f"a VAD frame is {FRAME} samples at {SAMPLE_RATE} Hz, got {frame.size}")
        self.load()
        x = np.concatenate([self._context, frame])[None, :]
        with self._lock:
            out, state = self._shared["session"].run(
                None, {"input": x, "state": self._state, "sr": np.array(SAMPLE_RATE, np.int64)})
        self._state = state
        self._context = x[0, -_CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])


class TurnEnd(Loadable, ABC):
    """P(the person has finished their turn) from the utterance's audio so far (16 kHz float32)."""

    kind: ClassVar[str] = "end-of-turn model"
    error_class = ModelError

    @abstractmethod
    def complete_probability(self, audio: np.ndarray) -> float:
        """P(complete) after this audio (the utterance up to the pause)."""


class SilenceOnly(TurnEnd):
    """No model: every pause long enough is the end of the turn (the talk options' hangover
    decides alone)."""

    name = "silence"

    def _load_impl(self) -> None:
        pass

    def complete_probability(self, audio: np.ndarray) -> float:
        return 1.0


class SmartTurn(TurnEnd):
    """Smart Turn v3.2 (ONNX, BSD-2-Clause) from the pipecat-ai package or ``path``."""

    name = "smart-turn"
    #: The model reads the last 8 s (shorter audio is zero-padded in front).
    SECONDS: ClassVar[int] = 8

    def __init__(self, path: str | Path | None = None, *, threads: int = 1) -> None:
        super().__init__()
        self.path = Path(path) if path else None
        self.threads = threads
        self._session: Any = None
        self._features: Any = None
        self._lock = threading.Lock()

    def _load_impl(self) -> None:
        from transformers import WhisperFeatureExtractor

        # Whisper's log-mel front end with an 8 s window (80 x 800), built from its defaults:
        # nothing is downloaded.
        self._features = WhisperFeatureExtractor(chunk_length=self.SECONDS)
        self._session = _session(self.path or packaged_file("smart-turn"), self.threads)

    def complete_probability(self, audio: np.ndarray) -> float:
        self.load()
        n = self.SECONDS * SAMPLE_RATE
        x = np.asarray(audio, np.float32).reshape(-1)[-n:]
        x = np.pad(x, (n - x.size, 0))
        feats = self._features(x, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="max_length",
                               max_length=n, truncation=True, do_normalize=True).input_features
        with self._lock:
            out = self._session.run(None, {"input_features": feats.astype(np.float32)})
        return float(np.asarray(out[0]).reshape(-1)[0])
