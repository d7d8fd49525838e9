"""From the emotional latent to prosody: target VAD -> :class:`~empathic_agent.speak.tts.Prosody`.

The register planner decides how the agent's reply should *sound* as a point in the same VAD
space the encoders read people into (valence, arousal, dominance in [-1, 1]).  The voice is a
decoder of that space: :func:`prosody_for` maps the point to a few prosody parameters, per voice,
with a voice profile (:class:`VoiceProfile`, one ``voices/<name>.toml`` per voice).

The mapping (pure numpy) is linear in VAD — in log2 units for the parameters that are factors
(rate, pitch range, variation), so +1 and -1 are symmetric ("twice as fast" / "half as fast") —
added to the voice's neutral delivery (``base``), then clipped to safe limits so speech stays
intelligible whatever the planner asks::

    value(p) = clip(base(p) + G[p] . (v, a, d))            additive parameters (st, dB, dB/oct)
    value(p) = clip(base(p) * 2 ** (G[p] . (v, a, d)))     factor parameters

Why these directions (the acoustic correlates of emotion dimensions in the literature):

* **arousal** is the dimension speech carries best: higher activation -> faster speech, higher
  pitch level, wider pitch range, more vocal effort: louder and with more high-frequency energy
  (a flatter spectral slope); low activation (sadness, calm, tenderness) -> slow, low, narrow,
  soft and dark.  Juslin & Laukka (2003, *Psychological Bulletin* 129:770) review 104 studies
  and find these cues consistent across languages; Banse & Scherer (1996, *JPSP* 70:614) measure
  them in acted emotions.
* **valence** is carried more weakly and mostly by the pitch *contour* and the voice quality:
  pleasant states have a wider, more varied melody and a slightly higher pitch (e.g. smiling),
  unpleasant states a "narrow" voice — a tense, constricted vocal tract that shifts energy to
  high frequencies — where pleasant ones have a relaxed "wide" voice (Scherer 1986,
  *Psychological Bulletin* 99:143; Scherer 2003, *Speech Communication* 40:227).  Valence
  therefore raises the range and pitch a little and *lowers* the brightness.
* **dominance** (power): lower pitch signals size and dominance (Ohala's 1984 "frequency code";
  Puts et al. 2006), and a dominant speaker is louder and unhurried.
* Using these dimension-to-parameter rules for synthesis of non-extreme emotions follows
  Schröder (2004, "Dimensional emotion representation as a basis for speech synthesis with
  non-extreme emotions", LNCS 3068) and Schröder et al. (2001, Eurospeech).

The gains are per voice (a robotic formant synthesiser tolerates larger pitch moves than a neural
voice whose pitch is post-processed) and were set by measuring the output: the round-trip check
(:mod:`empathic_agent.speak.roundtrip`) synthesises low vs high arousal and negative vs positive
valence, measures F0, rate and energy, and reads the audio back with the project's speech
encoder.  Loudness is the strongest cue that encoder responds to, so low arousal is rendered
markedly softer (down to -14 dB) — a level change only, which leaves intelligibility intact
(checked with Whisper in the round trip).

Profiles: :func:`load_profile` reads ``voices/<name>.toml`` from the source checkout
(``Path(__file__).parents[2] / "voices"``) and falls back to the built-in copies
(:data:`BUILTIN_PROFILES`, kept equal to the files by a test) when the package is installed
without the checkout; a path to any ``.toml`` file works too.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Mapping

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import ConfigError
from empathic_agent.speak.tts import Prosody

__all__ = [
    "PROSODY_FIELDS",
    "FACTOR_FIELDS",
    "SAFE_LIMITS",
    "PACE_WORDS",
    "VOICES_DIR",
    "VoiceProfile",
    "prosody_for",
    "target_vad",
    "load_profile",
    "parse_profile",
    "available_profiles",
    "builtin_profile",
    "BUILTIN_PROFILES",
]

#: The prosody parameters, in :class:`Prosody` order.
PROSODY_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Prosody))
#: Parameters that are factors: their gains are in log2 units (octaves of the factor).
FACTOR_FIELDS: Final[frozenset[str]] = frozenset({"rate", "pitch_range", "variation"})

#: Outer limits no profile can exceed — beyond them speech stops being intelligible or natural:
#: 0.6x / 1.6x speed (slower drags, faster slurs), +-7 semitones (further, the post-processed
#: neural voice sounds processed and the formant voice squeaks), range 0.3x-2.5x (a flat drone or
#: a sing-song), -18..+9 dB, variation 0.3x-2x (Piper garbles above ~2x noise), +-8 dB/octave.
SAFE_LIMITS: Final[Mapping[str, tuple[float, float]]] = {
    "rate": (0.6, 1.6),
    "pitch_shift_st": (-7.0, 7.0),
    "pitch_range": (0.3, 2.5),
    "gain_db": (-18.0, 9.0),
    "variation": (0.3, 2.0),
    "brightness_db_oct": (-8.0, 8.0),
}

#: The register planner's pace words as rate factors.  Mild on purpose: the planner derives its pace
#: from the same target arousal that already sets the rate, so the word only nudges it.
PACE_WORDS: Final[Mapping[str, float]] = {"slow": 0.95, "moderate": 1.0, "lively": 1.05}

#: Where the profile files live in a source checkout (the repository's ``voices/``).
VOICES_DIR: Final[Path] = Path(__file__).resolve().parents[2] / "voices"

#: Keys of a profile file (top level) and its tables.
_TOP_KEYS: Final[frozenset[str]] = frozenset({"name", "backend", "model", "language", "description",
                                              "licence", "base", "gains", "limits", "options"})


@dataclass(frozen=True)
class VoiceProfile:
    """One voice: backend, model and the latent -> prosody mapping.

    Attributes:
        name: profile name (``settings.tts_voice``, ``--voice``).
        backend: TTS backend registry name ("piper", "espeak-ng").
        model: what the backend loads (a model-registry name, an ``.onnx`` path, an espeak voice).
        language: language/accent code of the voice.
        description, licence: for people (the licence of the backend program and of the voice).
        base: the neutral delivery (a :class:`Prosody`), what VAD (0, 0, 0) sounds like.
        gains: per prosody parameter, its change per unit of (valence, arousal, dominance);
            factor parameters (:data:`FACTOR_FIELDS`) in log2 units.
        limits: per prosody parameter, the (low, high) range the result is clipped to (inside
            :data:`SAFE_LIMITS`).
        options: backend-specific settings (e.g. Piper's output level, espeak's words/minute).
        source: the file it was read from, or "built-in" (not part of equality).
    """

    name: str
    backend: str
    model: str
    language: str = "en-us"
    description: str = ""
    licence: str = ""
    base: Prosody = field(default_factory=Prosody)
    gains: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    limits: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(SAFE_LIMITS))
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = field(default="built-in", compare=False)

    def __post_init__(self) -> None:
        for key in ("name", "backend", "model"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise ConfigError(f"voice profile {key} must be a non-empty string, "
                                  f"got {getattr(self, key)!r}")
        gains: dict[str, tuple[float, float, float]] = {}
        for name, g in dict(self.gains).items():
            _check_field(name, "gains", self.name)
            vec = tuple(float(x) for x in g) if isinstance(g, (list, tuple)) else ()
            if len(vec) != 3 or not all(math.isfinite(x) for x in vec):
                raise ConfigError(f"voice {self.name}: gains.{name} must be 3 finite numbers "
                                  f"[valence, arousal, dominance], got {g!r}")
            gains[name] = vec  # type: ignore[assignment]
        limits = dict(SAFE_LIMITS)
        for name, lim in dict(self.limits).items():
            _check_field(name, "limits", self.name)
            pair = tuple(float(x) for x in lim) if isinstance(lim, (list, tuple)) else ()
            safe_lo, safe_hi = SAFE_LIMITS[name]
            if len(pair) != 2 or not pair[0] <= pair[1] or pair[0] < safe_lo or pair[1] > safe_hi:
                raise ConfigError(f"voice {self.name}: limits.{name} must be [low, high] inside the safe "
                                  f"range [{safe_lo}, {safe_hi}], got {lim!r}")
            limits[name] = pair  # type: ignore[assignment]
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "limits", limits)
        object.__setattr__(self, "options", dict(self.options))

    def gain_matrix(self) -> NDArray[np.float64]:
        """Gains as a (len(PROSODY_FIELDS), 3) matrix (missing parameters: zeros)."""
        return np.array([self.gains.get(p, (0.0, 0.0, 0.0)) for p in PROSODY_FIELDS], dtype=np.float64)

    def with_name(self, name: str) -> "VoiceProfile":
        return replace(self, name=name)

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (the same layout as its TOML file)."""
        return {"name": self.name, "backend": self.backend, "model": self.model, "language": self.language,
                "description": self.description, "licence": self.licence,
                "base": {k: float(v) for k, v in self.base.to_dict().items()},
                "gains": {k: list(v) for k, v in self.gains.items()},
                "limits": {k: list(v) for k, v in self.limits.items()},
                "options": dict(self.options)}


def _check_field(name: str, table: str, voice: str) -> None:
    if name not in PROSODY_FIELDS:
        raise ConfigError(f"voice {voice}: unknown prosody parameter {table}.{name}; "
                          f"valid: {', '.join(PROSODY_FIELDS)}")


# ---------------------------------------------------------------------------------------------
# The mapping


def target_vad(target: Any) -> NDArray[np.float64]:
    """(valence, arousal, dominance) of a target: a :class:`~empathic_agent.latent.Reading` (its
    mean), a planned register (its ``target``), a mapping with those keys (missing = 0), or a
    sequence of 3 numbers; clipped to [-1, 1].  NaN or a wrong shape raises ``ValueError``."""
    if hasattr(target, "target") and not isinstance(target, (np.ndarray, Mapping)):
        target = target.target
    if hasattr(target, "mean") and not isinstance(target, (np.ndarray, Mapping)):
        target = target.mean
    if isinstance(target, Mapping):
        unknown = set(target) - {"valence", "arousal", "dominance"}
        if unknown:
            raise ValueError(f"target VAD: unknown keys {sorted(unknown)}")
        target = [target.get("valence", 0.0), target.get("arousal", 0.0), target.get("dominance", 0.0)]
    try:
        vad = np.asarray(target, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"target VAD must be 3 numbers, got {target!r}") from exc
    if vad.shape != (3,) or not np.all(np.isfinite(vad)):
        raise ValueError(f"target VAD must be 3 finite numbers (valence, arousal, dominance), got {target!r}")
    return np.clip(vad, -1.0, 1.0)


def prosody_for(target: Any, profile: "VoiceProfile | str | None" = None, *,
                pace: float | str | None = None) -> Prosody:
    """The :class:`Prosody` that renders ``target`` (a VAD point or a planned register, see
    :func:`target_vad`) with ``profile`` (a :class:`VoiceProfile` or a profile name; default: the
    Piper voice).

    ``pace`` is an extra rate factor (e.g. 0.9) or one of the planner's words (:data:`PACE_WORDS`),
    applied before clipping; a register's own ``pace`` is used when none is given.  The result is
    always inside the profile's limits.
    """
    if profile is None or isinstance(profile, (str, Path)):
        profile = load_profile(profile or "piper-joe-medium")
    if pace is None and isinstance(getattr(target, "pace", None), str):
        pace = target.pace
    if isinstance(pace, str):
        if pace not in PACE_WORDS:
            raise ValueError(f"unknown pace {pace!r}; valid: {', '.join(PACE_WORDS)}")
        pace = PACE_WORDS[pace]
    vad = target_vad(target)
    delta = profile.gain_matrix() @ vad  # (n_fields,)
    values: dict[str, float] = {}
    for i, name in enumerate(PROSODY_FIELDS):
        base = float(getattr(profile.base, name))
        value = base * 2.0 ** delta[i] if name in FACTOR_FIELDS else base + delta[i]
        if name == "rate" and pace is not None:
            if not (math.isfinite(pace) and pace > 0):
                raise ValueError(f"pace must be a positive factor, got {pace!r}")
            value *= pace
        lo, hi = profile.limits[name]
        values[name] = float(np.clip(value, lo, hi))
    return Prosody(**values)


# ---------------------------------------------------------------------------------------------
# Profiles

_PIPER_LICENCE: Final[str] = ("piper-tts is GPL-3.0 (an optional extra: leave it out for a permissive "
                              "deployment); the en_US-joe-medium voice is CC0 (public domain)")
_ESPEAK_LICENCE: Final[str] = ("espeak-ng is GPL-3.0; it runs as a separate program (a subprocess), so the "
                               "framework does not link it")

#: Built-in copies of ``voices/*.toml`` (a test asserts that the files and these agree).
BUILTIN_PROFILES: Final[Mapping[str, VoiceProfile]] = {
    "piper-joe-medium": VoiceProfile(
        name="piper-joe-medium",
        backend="piper",
        model="piper-joe-medium",
        language="en-us",
        description=("Piper neural voice en_US-joe-medium (male, US English); "
                     "pitch is post-processed with PSOLA"),
        licence=_PIPER_LICENCE,
        base=Prosody(),
        gains={
            "rate": (0.05, 0.35, -0.05),
            "pitch_shift_st": (1.0, 3.5, -1.5),
            "pitch_range": (0.5, 0.6, 0.0),
            "gain_db": (0.0, 16.0, 3.0),
            "variation": (0.2, 0.6, 0.0),
            "brightness_db_oct": (-3.0, 3.0, 0.0),
        },
        limits={
            "rate": (0.7, 1.4),
            "pitch_shift_st": (-5.0, 5.0),
            "pitch_range": (0.4, 2.0),
            "gain_db": (-16.0, 6.0),
            "variation": (0.4, 1.6),
            "brightness_db_oct": (-6.0, 6.0),
        },
        options={"level_db": -6.0, "f0_floor_hz": 60.0, "f0_ceiling_hz": 350.0, "sentence_pause_s": 0.2},
    ),
    "espeak-ng": VoiceProfile(
        name="espeak-ng",
        backend="espeak-ng",
        model="en-us",
        language="en-us",
        description="espeak-ng formant synthesiser (robotic, always available); prosody is native",
        licence=_ESPEAK_LICENCE,
        base=Prosody(),
        gains={
            "rate": (0.05, 0.5, -0.05),
            "pitch_shift_st": (1.0, 4.0, -1.5),
            "pitch_range": (0.5, 0.8, 0.0),
            "gain_db": (0.0, 16.0, 3.0),
            "variation": (0.0, 0.0, 0.0),
            "brightness_db_oct": (-3.0, 3.0, 0.0),
        },
        limits={
            "rate": (0.7, 1.25),
            "pitch_shift_st": (-6.0, 6.0),
            "pitch_range": (0.4, 2.2),
            "gain_db": (-16.0, 6.0),
            "variation": (1.0, 1.0),
            "brightness_db_oct": (-6.0, 6.0),
        },
        options={"words_per_minute": 165, "pitch": 50, "semitones_per_pitch_unit": 0.17, "amplitude": 100,
                 "level_db": -4.0},
    ),
}


def builtin_profile(name: str) -> VoiceProfile:
    try:
        return BUILTIN_PROFILES[name]
    except KeyError:
        raise ConfigError(f"no built-in voice profile {name!r}; "
                          f"built-in: {', '.join(sorted(BUILTIN_PROFILES))}") from None


def _profile_files() -> dict[str, Path]:
    # Only a source checkout's voices/ (next to pyproject.toml): an installed package's parents[2]
    # is site-packages, where a "voices" folder would belong to someone else.
    if not VOICES_DIR.is_dir() or not (VOICES_DIR.parent / "pyproject.toml").is_file():
        return {}
    return {p.stem: p for p in sorted(VOICES_DIR.glob("*.toml"))}


def available_profiles() -> list[str]:
    """Profile names: the checkout's ``voices/*.toml`` plus the built-ins."""
    return sorted(set(_profile_files()) | set(BUILTIN_PROFILES))


def parse_profile(data: Mapping[str, Any], *, source: str = "built-in") -> VoiceProfile:
    """A :class:`VoiceProfile` from parsed TOML data (unknown keys raise :class:`ConfigError`)."""
    where = source
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"voice profile {where}: unknown keys {sorted(unknown)}; "
                          f"valid: {sorted(_TOP_KEYS)}")
    for table in ("base", "gains", "limits", "options"):
        if table in data and not isinstance(data[table], Mapping):
            raise ConfigError(f"voice profile {where}: [{table}] must be a table")
    base_data = dict(data.get("base", {}))
    for key in base_data:
        _check_field(key, "base", str(data.get("name", where)))
    try:
        base = Prosody(**{k: float(v) for k, v in base_data.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"voice profile {where}: invalid [base]: {exc}") from exc
    try:
        return VoiceProfile(
            name=data.get("name", ""), backend=data.get("backend", ""), model=data.get("model", ""),
            language=str(data.get("language", "en-us")), description=str(data.get("description", "")),
            licence=str(data.get("licence", "")), base=base, gains=dict(data.get("gains", {})),
            limits=dict(data.get("limits", {})), options=dict(data.get("options", {})), source=source)
    except ConfigError as exc:
        raise ConfigError(f"voice profile {where}: {exc}") from None


def _read_file(path: Path) -> VoiceProfile:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"voice profile file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"voice profile {path} is not valid TOML: {exc}") from None
    return parse_profile(data, source=str(path))


def load_profile(spec: "str | Path | VoiceProfile") -> VoiceProfile:
    """A voice profile by name (checkout file first, then built-in), by ``.toml`` path, or a Piper
    ``.onnx`` model path (with the default Piper profile's mapping).  Unknown names raise
    :class:`ConfigError` listing the valid ones."""
    if isinstance(spec, VoiceProfile):
        return spec
    text = str(spec)
    path = Path(text).expanduser()
    if isinstance(spec, Path) or text.endswith((".toml", ".onnx")) or "/" in text:
        if path.suffix == ".onnx":
            if not path.is_file():
                raise ConfigError(f"Piper model file not found: {path}")
            return replace(BUILTIN_PROFILES["piper-joe-medium"], name=path.stem, model=str(path),
                           description=f"Piper voice {path.name}", licence="see the voice's model card",
                           source=str(path))
        return _read_file(path)
    files = _profile_files()
    if text in files:
        return _read_file(files[text])
    if text in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[text]
    raise ConfigError(f"unknown voice {text!r}; available voices: {', '.join(available_profiles())} "
                      "(or a path to a profile .toml / a Piper .onnx model)")
