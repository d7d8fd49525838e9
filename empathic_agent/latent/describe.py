"""Short plain-English descriptions of an emotional state, for LLM prompts.

The generator is a tiny (135M-parameter) model, so the text must be short, concrete
and formulaic; it is capped at MAX_DESCRIPTION_CHARS.  Shapes:

* ``seems sad (very low, subdued); fairly confident``
* ``voice sounds tense, words say fine — mixed signals; overall seems anxious (low,
  keyed up); unsure``
* ``no clear emotional signal``

The feeling word is the top category's adjective when that category is probable
enough, otherwise a word for the valence/arousal quadrant; the bracket gives the
valence, arousal and (only when marked) dominance words.  All cut-offs are named
constants below.
"""

from __future__ import annotations

from typing import Final, Mapping

from .constants import MODALITY_FACE, MODALITY_SPEECH, MODALITY_TEXT
from .fusion import FusedState
from .reading import Reading

#: Hard cap on description length (characters).
MAX_DESCRIPTION_CHARS: Final[int] = 200
#: Unknown modality names are shortened to this many characters in descriptions.
MAX_MODALITY_NAME_CHARS: Final[int] = 16

#: Below this confidence we say there is no clear signal rather than guess.
NO_SIGNAL_CONFIDENCE: Final[float] = 0.1
#: Confidence cut-offs for the trailing confidence phrase (highest first).
CONFIDENCE_PHRASES: Final[tuple[tuple[float, str], ...]] = (
    (0.75, "confident"),
    (0.5, "fairly confident"),
    (0.25, "unsure"),
    (0.0, "very unsure"),
)

#: The fused state's top category names the feeling only if at least this probable.
STATE_CATEGORY_MIN_PROB: Final[float] = 0.4
#: A single modality's top category names its feeling only if at least this probable
#: (stricter: one encoder alone is noisier than the fused state).
MODALITY_CATEGORY_MIN_PROB: Final[float] = 0.5

#: |valence| / |arousal| below this is "middling"; above STRONG it is "very ...".
#: 0.15 is ~0.6 prototype SDs: small enough to keep prototypes (all |v| >= 0.4) out
#: of the middle band.
MILD: Final[float] = 0.15
STRONG: Final[float] = 0.5
#: Dominance is only mentioned when |dominance| reaches this (it is the least
#: reliably estimated dimension, so only clear values are worth the tokens).
DOMINANCE_MENTION: Final[float] = 0.35

CATEGORY_ADJECTIVES: Final[Mapping[str, str]] = {
    "neutral": "fine",
    "joy": "happy",
    "sadness": "sad",
    "anger": "angry",
    "fear": "anxious",
    "surprise": "surprised",
    "disgust": "disgusted",
}

#: (noun, verb) for the modality phrase, e.g. "voice sounds tense".
MODALITY_PHRASES: Final[Mapping[str, tuple[str, str]]] = {
    MODALITY_TEXT: ("words", "say"),
    MODALITY_SPEECH: ("voice", "sounds"),
    MODALITY_FACE: ("face", "looks"),
}


def _valence_word(v: float) -> str:
    if v <= -STRONG:
        return "very low"
    if v <= -MILD:
        return "low"
    if v < MILD:
        return "even"
    if v < STRONG:
        return "positive"
    return "very positive"


def _arousal_word(a: float) -> str:
    if a <= -STRONG:
        return "drained"
    if a <= -MILD:
        return "subdued"
    if a < MILD:
        return "steady"
    if a < STRONG:
        return "energised"
    return "keyed up"


def _dominance_word(d: float) -> str | None:
    if d >= DOMINANCE_MENTION:
        return "in control"
    if d <= -DOMINANCE_MENTION:
        return "overwhelmed"
    return None


def _quadrant_word(v: float, a: float) -> str:
    """A feeling word from valence and arousal alone (used when categories are unsure)."""
    if v >= MILD:
        return "upbeat" if a >= MILD else ("relaxed" if a <= -MILD else "content")
    if v <= -MILD:
        return "tense" if a >= MILD else ("down" if a <= -MILD else "unhappy")
    return "alert" if a >= MILD else ("tired" if a <= -MILD else "fine")


def _feeling(reading: Reading, min_prob: float) -> str:
    if reading.top_probability >= min_prob:
        return CATEGORY_ADJECTIVES[reading.top_category]
    return _quadrant_word(reading.valence, reading.arousal)


def _confidence_phrase(confidence: float) -> str:
    for cutoff, phrase in CONFIDENCE_PHRASES:
        if confidence >= cutoff:
            return phrase
    return CONFIDENCE_PHRASES[-1][1]


def describe_reading(reading: Reading) -> str:
    """e.g. ``seems sad (very low, subdued); fairly confident``."""
    if reading.confidence < NO_SIGNAL_CONFIDENCE:
        return "no clear emotional signal"
    words = [_valence_word(reading.valence), _arousal_word(reading.arousal)]
    dominance = _dominance_word(reading.dominance)
    if dominance:
        words.append(dominance)
    feeling = _feeling(reading, STATE_CATEGORY_MIN_PROB)
    return f"seems {feeling} ({', '.join(words)}); {_confidence_phrase(reading.confidence)}"


def describe_modality(reading: Reading) -> str:
    """e.g. ``voice sounds tense`` / ``words say fine`` for one modality's reading."""
    noun, verb = MODALITY_PHRASES.get(
        reading.modality, (reading.modality[:MAX_MODALITY_NAME_CHARS], "suggests")
    )
    return f"{noun} {verb} {_feeling(reading, MODALITY_CATEGORY_MIN_PROB)}"


def _representative(state: FusedState, modality: str) -> Reading | None:
    """The most confident observed reading of ``modality`` in the state."""
    candidates = [r for r in state.inputs if r.modality == modality]
    return max(candidates, key=lambda r: r.confidence) if candidates else None


def _truncate(text: str) -> str:
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    return text[: MAX_DESCRIPTION_CHARS - 1].rstrip() + "…"


def describe(state: FusedState | Reading) -> str:
    """Compact prompt text for a fused state (or a bare reading), <= 200 characters.

    With mixed signals the most severe conflicting pair is named first, e.g.
    ``voice sounds tense, words say fine — mixed signals; overall seems ...``.
    """
    if isinstance(state, Reading):
        return _truncate(describe_reading(state))
    overall = describe_reading(state.reading)
    if not state.mixed_signals.flag:
        return _truncate(overall)
    conflict = state.mixed_signals.pairs[0]
    a = _representative(state, conflict.modality_a)
    b = _representative(state, conflict.modality_b)
    if a is None or b is None:  # e.g. a state rebuilt without its inputs
        head = f"{conflict.modality_a} and {conflict.modality_b} disagree — mixed signals"
    else:
        head = f"{describe_modality(a)}, {describe_modality(b)} — mixed signals"
    return _truncate(f"{head}; overall {overall}")
