"""The speech emotion encoder: a clip -> features -> the cold-start or speaker-adapted head -> a
`Reading` (modality "speech"); see the package docstring.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.base import INPUT_PATH, Encoder, EncoderError
from empathic_agent.encode.speech.baseline import VoiceBaseline, leave_one_out_normalise
from empathic_agent.encode.speech.features import SpeechFeatureExtractor, feature_names
from empathic_agent.encode.speech.head import (
    DEFAULT_WEIGHTS_DIR,
    MAX_DOUBT_FOR_BASELINE,
    SpeechHead,
    doubt_of,
    reading_from_probabilities,
)
from empathic_agent.encode.speech.whisper_layers import WhisperLayers
from empathic_agent.errors import InputError, ModelError
from empathic_agent.latent import MODALITY_SPEECH, Reading
from empathic_agent.perceive.audio import AudioClip, AudioError, AudioLimits, decode_audio

if TYPE_CHECKING:
    from empathic_agent.memory.voice_baselines import VoiceBaselineStore
    from empathic_agent.settings import Settings

log = logging.getLogger(__name__)


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
        from empathic_agent.memory.voice_baselines import VoiceBaselineStore  # a per-user store (memory/)

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
