"""The round-trip check: does the voice say what the latent asks, as measured and as *heard*?

For each voice, fixed sentences are synthesised in contrasting registers — low vs high target
arousal, negative vs positive target valence (the other dimensions at 0) — and each clip is

* **measured** (praat-parselmouth + numpy, :func:`measure_speech`): F0 median (semitones re
  100 Hz) and F0 range (10th-90th percentile, semitones) over voiced frames (two-pass pitch
  tracking, :func:`voiced_f0`); speaking rate
  (syllables of the text per second of speech, from the first to the last sounding frame — the
  text is the same in every register, so this is a duration measure); energy (mean power of the
  sounding frames, dBFS);
* **read back** with the project's own speech emotion encoder
  (:class:`~empathic_agent.encode.speech.SpeechEncoder`, cold start, no baseline): its arousal and
  valence — the latent space closing on itself, the voice as decoder and the speech encoder as
  encoder;
* optionally **transcribed** with Whisper (``transcribe=True``) to check that the register did
  not cost intelligibility (word error rate against the text).

:func:`run_roundtrip` returns a :class:`RoundTrip`: one row per voice and register (means over the
sentences) and one check per voice, contrast and measure saying whether the ordering holds
(low < high).  ``empathic speak --roundtrip`` prints it.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import BackendUnavailableError

if TYPE_CHECKING:
    from empathic_agent.settings import Settings
    from empathic_agent.speak.tts import TTS

__all__ = [
    "ROUNDTRIP_SENTENCES",
    "REGISTERS",
    "CONTRASTS",
    "Contrast",
    "RoundTrip",
    "measure_speech",
    "voiced_f0",
    "count_syllables",
    "word_error_rate",
    "run_roundtrip",
]

#: Sentences an empathic agent says; neutral in wording, so the voice carries the register.
ROUNDTRIP_SENTENCES: Final[tuple[str, ...]] = (
    "I hear you, and I am here with you.",
    "Thank you for telling me about your day at work.",
    "We can take this one small step at a time, together.",
)

#: Target (valence, arousal, dominance) of each register: 0.8 = a clear but not extreme target.
REGISTERS: Final[Mapping[str, tuple[float, float, float]]] = {
    "neutral": (0.0, 0.0, 0.0),  # the reference (in no contrast)
    "low_arousal": (0.0, -0.8, 0.0),
    "high_arousal": (0.0, 0.8, 0.0),
    "negative_valence": (-0.8, 0.0, 0.0),
    "positive_valence": (0.8, 0.0, 0.0),
}


@dataclass(frozen=True)
class Contrast:
    """Two registers and the measures expected to be ordered ``low < high`` between them."""

    dimension: str
    low: str
    high: str
    measures: tuple[str, ...]


CONTRASTS: Final[tuple[Contrast, ...]] = (
    Contrast("arousal", "low_arousal", "high_arousal",
             ("f0_median_st", "f0_range_st", "rate_syl_per_s", "energy_db", "encoder_arousal")),
    Contrast("valence", "negative_valence", "positive_valence",
             ("f0_median_st", "f0_range_st", "encoder_valence")),
)

#: Pitch analysis (Praat autocorrelation): 10 ms steps, 60-500 Hz (a low male voice shifted down
#: to a raised formant-synth voice).
PITCH_STEP_S: Final[float] = 0.01
PITCH_FLOOR_HZ: Final[float] = 60.0
PITCH_CEILING_HZ: Final[float] = 500.0
SEMITONE_REF_HZ: Final[float] = 100.0
#: Second pitch pass (:func:`voiced_f0`): floor and ceiling as factors on the first pass's 35th and
#: 65th F0 percentiles (De Looze & Hirst 2008), the floor never below 40 Hz.
SECOND_PASS_FLOOR: Final[float] = 0.72
SECOND_PASS_CEILING: Final[float] = 1.9
SECOND_PASS_MIN_FLOOR_HZ: Final[float] = 40.0
#: A frame "sounds" when within this many dB of the clip's loudest frame (25 ms frames, 10 ms hop).
ACTIVE_RANGE_DB: Final[float] = 35.0


def count_syllables(text: str) -> int:
    """Syllables of English text, by vowel groups (with silent final -e): a consistent count is
    all the rate measure needs, since every register says the same words."""
    total = 0
    for word in re.findall(r"[a-z']+", text.lower()):
        groups = re.findall(r"[aeiouy]+", word)
        n = len(groups)
        if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and n > 1:
            n -= 1
        total += max(1, n)
    return total


def _track_f0(sound: Any, floor_hz: float, ceiling_hz: float) -> NDArray[np.float64]:
    pitch = sound.to_pitch_ac(time_step=PITCH_STEP_S, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz)
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    return f0[f0 > 0]


def voiced_f0(sound: Any) -> NDArray[np.float64]:
    """F0 (Hz) of the voiced frames of a ``parselmouth.Sound``, in two passes (De Looze & Hirst
    2008): a wide first pass finds the speaker's register, the second tracks within
    ``[0.72 x q35, 1.9 x q65]`` of it.  One wide pass alone "voices" fricatives now and then
    (Piper's /s/ and /th/ at 300-500 Hz, 20+ semitones above the speaker), which put a 22-st
    "range" on a flattened voice in CI; the second pass drops those frames but keeps an
    expressive range (the ceiling sits 11 st above the 65th percentile)."""
    f0 = _track_f0(sound, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
    if f0.size < 3:
        return f0
    q35, q65 = np.percentile(f0, [35, 65])
    floor = max(SECOND_PASS_MIN_FLOOR_HZ, SECOND_PASS_FLOOR * float(q35))
    ceiling = max(floor * 2.0, SECOND_PASS_CEILING * float(q65))
    return _track_f0(sound, floor, ceiling)


def measure_speech(samples: NDArray[np.floating], sample_rate: int, text: str) -> dict[str, float]:
    """Prosody measures of one clip: ``f0_median_st``, ``f0_range_st``, ``rate_syl_per_s``,
    ``energy_db``, ``speech_s`` (NaN where undefined, e.g. no voiced frame)."""
    try:
        import parselmouth
    except ImportError as exc:
        raise BackendUnavailableError("the round trip measures pitch with praat-parselmouth: "
                                      "pip install praat-parselmouth") from exc
    from empathic_agent.perceive.audio import frame_levels_db

    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    levels = frame_levels_db(x, sample_rate, frame_s=0.025, hop_s=0.01)
    active = levels > levels.max() - ACTIVE_RANGE_DB
    energy = float(10.0 * np.log10(np.mean(10.0 ** (levels[active] / 10.0)))) if active.any() else math.nan
    idx = np.flatnonzero(active)
    speech_s = float((idx[-1] - idx[0] + 1) * 0.01 + 0.015) if idx.size else 0.0
    f0 = voiced_f0(parselmouth.Sound(x, sampling_frequency=float(sample_rate)))
    if f0.size >= 3:
        st = 12.0 * np.log2(f0 / SEMITONE_REF_HZ)
        p10, p50, p90 = np.percentile(st, [10, 50, 90])
        median, rng = float(p50), float(p90 - p10)
    else:
        median = rng = math.nan
    syllables = count_syllables(text)
    return {"f0_median_st": median, "f0_range_st": rng,
            "rate_syl_per_s": syllables / speech_s if speech_s > 0 else math.nan,
            "energy_db": energy, "speech_s": speech_s}


#: Contractions expanded before comparing words ("I'm" and "I am" are the same words spoken).
_CONTRACTIONS: Final[Mapping[str, str]] = {
    "i'm": "i am", "you're": "you are", "we're": "we are", "they're": "they are", "it's": "it is",
    "that's": "that is", "don't": "do not", "can't": "can not", "cannot": "can not", "i've": "i have",
    "we'll": "we will", "i'll": "i will", "you'll": "you will", "let's": "let us", "isn't": "is not",
}


def _words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))
    return " ".join(_CONTRACTIONS.get(w, w) for w in words).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference length (case, punctuation and contractions
    ignored)."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


@dataclass(frozen=True)
class RoundTrip:
    """Result of :func:`run_roundtrip`.

    Attributes:
        rows: one dict per voice and register: target VAD, the prosody used, the measures (means
            over the sentences), the encoder's reading (means; ``encoder_top``: most frequent top
            category), ``wer`` when transcribed, and ``per_sentence`` values of the key measures.
        checks: one dict per voice, contrast and measure: ``low``/``high`` values and ``holds``.
        seconds: wall time of the whole check.
    """

    rows: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(c["holds"] for c in self.checks)

    def check(self, voice: str, dimension: str, measure: str) -> dict[str, Any]:
        for c in self.checks:
            if (c["voice"], c["dimension"], c["measure"]) == (voice, dimension, measure):
                return c
        raise KeyError((voice, dimension, measure))

    def row(self, voice: str, register: str) -> dict[str, Any]:
        for r in self.rows:
            if (r["voice"], r["register"]) == (voice, register):
                return r
        raise KeyError((voice, register))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "checks": self.checks, "seconds": round(self.seconds, 2),
                "errors": self.errors}

    def table(self) -> str:
        """A plain-text table of the rows, then the orderings."""
        cols = [("voice", "voice", "{}"), ("register", "register", "{}"),
                ("f0_median_st", "F0 med st", "{:+.2f}"),
                ("f0_range_st", "F0 rng st", "{:.2f}"), ("rate_syl_per_s", "syl/s", "{:.2f}"),
                ("energy_db", "energy dB", "{:.1f}"), ("encoder_arousal", "enc A", "{:+.2f}"),
                ("encoder_valence", "enc V", "{:+.2f}"), ("encoder_top", "enc top", "{}")]
        if any("wer" in r for r in self.rows):
            cols.append(("wer", "WER", "{:.2f}"))
        cells = [[h for _, h, _ in cols]]
        for r in self.rows:
            cells.append([fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in cols])
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.append("")
        for c in self.checks:
            mark = "ok  " if c["holds"] else "FAIL"
            lines.append(f"{mark} {c['voice']}: {c['dimension']} {c['measure']}: "
                         f"{c['low_register']} {c['low']:.3f} < {c['high_register']} {c['high']:.3f}")
        lines.extend(f"error: {e}" for e in self.errors)
        return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def run_roundtrip(voices: Sequence[str] | None = None, settings: "Settings | None" = None, *,
                  sentences: Sequence[str] = ROUNDTRIP_SENTENCES,
                  registers: Mapping[str, tuple[float, float, float]] = REGISTERS,
                  contrasts: Sequence[Contrast] = CONTRASTS, encoder: Any = None, transcribe: bool = False,
                  stt: Any = None, tts: Mapping[str, "TTS"] | None = None) -> RoundTrip:
    """Synthesise, measure and read back every register with every voice (see module doc).

    ``voices`` defaults to every available voice; ``encoder`` (a loaded
    :class:`~empathic_agent.encode.speech.SpeechEncoder`) and ``tts`` (voice name -> TTS) can be
    passed in to reuse loaded models.  A voice that cannot be loaded is reported in ``errors``
    (its checks are missing, so ``ok`` is False).
    """
    from empathic_agent.speak.prosody import prosody_for
    from empathic_agent.speak.tts import available_voices, load_tts

    if settings is None:
        from empathic_agent.settings import Settings

        settings = Settings.from_env()
    t0 = time.perf_counter()
    voices = list(voices) if voices else available_voices()
    if encoder is None:
        from empathic_agent.encode.speech import SpeechEncoder

        encoder = SpeechEncoder.from_settings(settings, persist_baselines=False)
    if transcribe and stt is None:
        from empathic_agent.perceive.stt import load_stt

        stt = load_stt(settings)
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    errors: list[str] = []
    for voice in voices:
        try:
            engine = (tts or {}).get(voice) or load_tts(voice, settings)
            engine.load()
        except Exception as exc:  # report and go on with the other voices
            errors.append(f"{voice}: {type(exc).__name__}: {exc}")
            continue
        by_register: dict[str, dict[str, Any]] = {}
        for register, vad in registers.items():
            prosody = prosody_for(vad, engine.profile)
            per: dict[str, list[Any]] = {k: [] for k in ("f0_median_st", "f0_range_st", "rate_syl_per_s",
                                                          "energy_db", "speech_s", "encoder_arousal",
                                                          "encoder_valence", "encoder_dominance",
                                                          "encoder_top", "wer", "synth_s")}
            for sentence in sentences:
                audio = engine.synthesize(sentence, prosody)
                per["synth_s"].append(audio.timings.get("synth_s", 0.0))
                for k, v in measure_speech(audio.samples, audio.sample_rate, audio.text).items():
                    per[k].append(v)
                analysis = encoder.analyze(audio.as_tuple(), None, update_baseline=False)
                mean = analysis.reading.mean
                per["encoder_valence"].append(float(mean[0]))
                per["encoder_arousal"].append(float(mean[1]))
                per["encoder_dominance"].append(float(mean[2]))
                per["encoder_top"].append(analysis.reading.top_category)
                if stt is not None:
                    from empathic_agent.perceive.stt import TranscribeOptions

                    heard = stt.transcribe(audio.as_tuple(), TranscribeOptions(language="en", beam_size=1))
                    per["wer"].append(word_error_rate(audio.text, heard.text))
            row: dict[str, Any] = {"voice": voice, "register": register, "valence": vad[0], "arousal": vad[1],
                                   "dominance": vad[2], "prosody": prosody.to_dict()}
            for k in ("f0_median_st", "f0_range_st", "rate_syl_per_s", "energy_db", "speech_s",
                      "encoder_arousal", "encoder_valence", "encoder_dominance", "synth_s"):
                row[k] = round(_mean(per[k]), 4)
            row["encoder_top"] = Counter(per["encoder_top"]).most_common(1)[0][0]
            if per["wer"]:
                row["wer"] = round(_mean(per["wer"]), 4)
            row["per_sentence"] = {k: [round(float(v), 3) for v in per[k]]
                                   for k in ("f0_median_st", "rate_syl_per_s", "energy_db", "encoder_arousal",
                                             "encoder_valence")}
            by_register[register] = row
            rows.append(row)
        for contrast in contrasts:
            if contrast.low not in by_register or contrast.high not in by_register:
                continue
            lo, hi = by_register[contrast.low], by_register[contrast.high]
            for measure in contrast.measures:
                a, b = lo[measure], hi[measure]
                checks.append({"voice": voice, "dimension": contrast.dimension, "measure": measure,
                               "low_register": contrast.low, "high_register": contrast.high,
                               "low": a, "high": b,
                               "holds": bool(math.isfinite(a) and math.isfinite(b) and a < b)})
    return RoundTrip(rows, checks, time.perf_counter() - t0, errors)
