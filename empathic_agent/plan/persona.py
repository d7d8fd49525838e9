"""Personas: who the agent is — name, style, Big Five personality, policy knobs — and its mood.

A persona is a TOML file (``personas/<name>.toml`` in this package, or any path): see
``personas/sam.toml`` (the default) for every field with comments.  Select one with the
``persona`` setting (``EMPATHIC_PERSONA``): a packaged name or a file path.

**Mood** lives in the same VAD space as the person's emotion (docs/architecture.md, "The emotional latent space"):

* the *baseline* comes from the persona's OCEAN traits through Mehrabian's (1996) temperament
  mapping as used by the ALMA model (Gebhard 2005), traits and result on [-1, 1]::

      P = 0.21 E + 0.59 A + 0.19 S          (S = emotional stability = -neuroticism)
      A = 0.15 O + 0.30 A' - 0.57 S         (A' = agreeableness)
      D = 0.25 O + 0.17 C + 0.60 E - 0.32 A'

* each turn the mood first *decays* towards the baseline (half-life :data:`MOOD_HALF_LIFE_TURNS`
  turns; ALMA's mood decay), then is *nudged* by what the agent perceives — emotional contagion
  scaled by the persona's ``contagion`` knob and by the perception's confidence (the "preceding
  emotion + context-triggered variation, affected by personality" transition of
  Wen et al., "Automatically Select Emotion for Response via Personality-affected Emotion
  Transition", 2021).  Neuroticism makes the agent's arousal more reactive; agreeableness makes
  it share the person's valence more.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Mapping

import numpy as np

from empathic_agent.errors import ConfigError

__all__ = [
    "Persona",
    "PersonaPolicy",
    "PERSONAS_DIR",
    "DEFAULT_PERSONA",
    "MOOD_HALF_LIFE_TURNS",
    "available_personas",
    "load_persona",
    "ocean_to_pad",
    "update_mood",
]

PERSONAS_DIR: Final[Path] = Path(__file__).resolve().parent / "personas"
DEFAULT_PERSONA: Final[str] = "sam"
TRAITS: Final[tuple[str, ...]] = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
#: Turns for the mood's distance from baseline to halve (ALMA decays mood over minutes; a turn
#: of conversation is our clock).
MOOD_HALF_LIFE_TURNS: Final[float] = 3.0
#: Cap on how far one turn can move the mood (contagion is a nudge, not a copy).
MAX_MOOD_STEP: Final[float] = 0.25


@dataclass(frozen=True)
class PersonaPolicy:
    """Knobs of the register planner (documented in ``personas/sam.toml``)."""

    mirroring: float = 0.35
    mood_repair_memory: bool = True
    explore_turns: int = 2
    contagion: float = 0.3
    boundaries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    style: str
    language: str = "en"
    ocean: Mapping[str, float] = field(default_factory=dict)
    policy: PersonaPolicy = PersonaPolicy()
    source: str = ""

    @property
    def baseline_mood(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in ocean_to_pad(self.ocean))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "style": self.style, "language": self.language,
                "ocean": dict(self.ocean), "policy": {**self.policy.__dict__, "boundaries": list(self.policy.boundaries)},
                "baseline_mood": list(self.baseline_mood), "source": self.source}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "") -> "Persona":
        where = source or "persona"
        try:
            ocean = {t: float(data.get("ocean", {}).get(t, 0.0)) for t in TRAITS}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: ocean traits must be numbers in [-1, 1]: {exc}") from None
        unknown = set(data.get("ocean", {})) - set(TRAITS)
        if unknown:
            raise ConfigError(f"{where}: unknown ocean traits {sorted(unknown)}; expected {', '.join(TRAITS)}")
        bad = {t: v for t, v in ocean.items() if not -1.0 <= v <= 1.0}
        if bad:
            raise ConfigError(f"{where}: ocean traits must be in [-1, 1], got {bad}")
        p = dict(data.get("policy", {}))
        try:
            policy = PersonaPolicy(
                mirroring=float(np.clip(float(p.get("mirroring", 0.35)), 0.0, 1.0)),
                mood_repair_memory=bool(p.get("mood_repair_memory", True)),
                explore_turns=max(0, int(p.get("explore_turns", 2))),
                contagion=float(np.clip(float(p.get("contagion", 0.3)), 0.0, 1.0)),
                boundaries=tuple(str(b) for b in p.get("boundaries", ())),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad policy value: {exc}") from None
        name = str(data.get("name", "")).strip()
        if not name:
            raise ConfigError(f"{where}: a persona needs a name")
        return cls(name=name, description=str(data.get("description", "")).strip(),
                   style=str(data.get("style", "")).strip(), language=str(data.get("language", "en")),
                   ocean=ocean, policy=policy, source=source)


def ocean_to_pad(ocean: Mapping[str, float]) -> np.ndarray:
    """Mehrabian's (1996) temperament mapping (ALMA): Big Five on [-1, 1] -> PAD baseline on [-1, 1]."""
    o, c, e, a, n = (float(ocean.get(t, 0.0)) for t in TRAITS)
    s = -n  # emotional stability
    pad = np.array([0.21 * e + 0.59 * a + 0.19 * s,
                    0.15 * o + 0.30 * a - 0.57 * s,
                    0.25 * o + 0.17 * c + 0.60 * e - 0.32 * a])
    return np.clip(pad, -1.0, 1.0)


def available_personas() -> list[str]:
    return sorted(p.stem for p in PERSONAS_DIR.glob("*.toml"))


def load_persona(spec: str | Path | None = None) -> Persona:
    """A packaged persona by name (``sam``, ``alex``, ...) or a TOML file path."""
    spec = spec or DEFAULT_PERSONA
    path = Path(spec).expanduser()
    if not (path.suffix == ".toml" and path.is_file()):
        path = PERSONAS_DIR / f"{spec}.toml"
        if not path.is_file():
            raise ConfigError(f"unknown persona {str(spec)!r}; packaged: {', '.join(available_personas())} "
                              "(or pass the path of a .toml file)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read persona file {path}: {exc}") from None
    return Persona.from_mapping(data, source=str(path))


def update_mood(mood: tuple[float, float, float] | None, persona: Persona, *,
                perceived: tuple[float, float, float] | None = None, confidence: float = 0.0,
                turns: float = 1.0) -> tuple[float, float, float]:
    """The agent's mood after a turn: decay towards the baseline, then contagion from the person."""
    base = np.asarray(persona.baseline_mood)
    m = base.copy() if mood is None else np.asarray(mood, dtype=np.float64)
    m = base + (m - base) * 0.5 ** (max(0.0, turns) / MOOD_HALF_LIFE_TURNS)
    if perceived is not None and confidence > 0:
        o = persona.ocean
        # Personality shapes the reaction: agreeable agents share valence more, neurotic ones
        # get aroused more easily; dominance is barely contagious.
        gain = persona.policy.contagion * float(np.clip(confidence, 0.0, 1.0)) * np.array([
            0.6 + 0.4 * float(o.get("agreeableness", 0.0)),
            0.5 + 0.5 * float(o.get("neuroticism", 0.0)),
            0.2,
        ])
        step = np.clip(gain * (np.asarray(perceived, dtype=np.float64) - m), -MAX_MOOD_STEP, MAX_MOOD_STEP)
        m = m + step
    return tuple(float(v) for v in np.clip(m, -1.0, 1.0))  # type: ignore[return-value]
