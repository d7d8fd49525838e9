"""Simple fact and preference extraction from what a person says about themselves.

Deliberately conservative regular expressions over the person's own words (never the agent's
reply, never recalled memories): a missed fact costs little, a wrong "fact" repeated back to a
person costs trust.  Questions, hypotheticals ("if I ...") and reported speech are skipped.

Patterns (case-insensitive, one sentence at a time):

* name:        "my name is X", "my name's X", "call me X", "I'm called X"      -> fact "Their name is X."
* job:         "I work as (a|an) X", "I'm a X by profession", "my job is X"    -> fact "They work as X."
* home:        "I live in X", "I'm from X"                                    -> fact "They live in X." / "They are from X."
* likes:       "I (really) like / love / enjoy / adore X"                     -> preference "They like X."
* dislikes:    "I hate / dislike / can't stand / detest X", "I don't like X"  -> preference "They dislike X."

Each extraction has a *slot* ("name", "job", "home", "origin", or "pref:<object>" such as "pref:hiking"); the store keys facts
and preferences by slot, so restating a fact refreshes it and correcting it ("my name is Sam" after
"my name is Alex") replaces it; "I love X" and later "I hate X" share the slot ``pref:x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from empathic_agent.memory.record import KIND_FACT, KIND_PREFERENCE

__all__ = ["Extraction", "extract_facts", "MAX_OBJECT_WORDS"]

#: Longest extracted object ("X" above), in words and characters: longer captures are more likely
#: to be a misparse than a fact.
MAX_OBJECT_WORDS: Final[int] = 8
MAX_OBJECT_CHARS: Final[int] = 80
#: Most extractions from one message (a pasted document must not become 50 "preferences").
MAX_EXTRACTIONS: Final[int] = 5

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;\n])\s+|\s*\n\s*")
# An object runs until punctuation or a clause break ("but", "because", "and I", ...).
_END = r"(?=$|[.!?,;:()\"]|\s+(?:but|because|since|although|though|when|while|and\s+I|and\s+my|so)\b)"
_NAME = r"([A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ'\-]{0,30}(?:\s+[A-ZÀ-ÖØ-Þ][A-Za-zÀ-ÖØ-öø-ÿ'\-]{0,30}){0,2})"
_OBJ = r"(.+?)"

_PATTERNS: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = (
    (KIND_FACT, "name", re.compile(rf"\b(?:my name is|my name's|call me|i'?m called|i am called)\s+{_NAME}{_END}", re.I)),
    (KIND_FACT, "job", re.compile(rf"\b(?:i work as|i'?m working as|i am working as)\s+{_OBJ}{_END}", re.I)),
    (KIND_FACT, "job", re.compile(rf"\b(?:i'?m|i am)\s+{_OBJ}\s+by profession{_END}", re.I)),
    (KIND_FACT, "job", re.compile(rf"\bmy job is\s+(?:being\s+)?{_OBJ}{_END}", re.I)),
    (KIND_FACT, "home", re.compile(rf"\bi live in\s+{_OBJ}{_END}", re.I)),
    (KIND_FACT, "origin", re.compile(rf"\b(?:i'?m|i am|i come) from\s+{_OBJ}{_END}", re.I)),
    (KIND_PREFERENCE, "dislikes", re.compile(
        rf"\bi\s+(?:really\s+|truly\s+|absolutely\s+|just\s+)?(?:do not|don'?t|never)\s+(?:really\s+)?"
        rf"(?:like|enjoy|love)\s+{_OBJ}{_END}", re.I)),
    (KIND_PREFERENCE, "dislikes", re.compile(
        rf"\bi\s+(?:really\s+|truly\s+|absolutely\s+|just\s+)?(?:hate|dislike|detest|loathe|can'?t stand|cannot stand)"
        rf"\s+{_OBJ}{_END}", re.I)),
    (KIND_PREFERENCE, "likes", re.compile(
        rf"\bi\s+(?:really\s+|truly\s+|absolutely\s+|just\s+|do\s+)?(?:like|love|enjoy|adore)\s+{_OBJ}{_END}", re.I)),
)

#: Objects that are not things a person likes/does (pronouns, fillers, verbs of feeling).
_STOP_OBJECTS: Final[frozenset[str]] = frozenset({
    "it", "that", "this", "them", "him", "her", "you", "me", "myself", "what", "how", "when", "to",
    "the", "a", "an", "so", "too", "much", "very", "here", "there", "everything", "nothing", "anything",
})
#: Sentences opening like this are hypothetical or about someone else: skipped.
_SKIP_SENTENCE = re.compile(r"^\s*(?:if|when|whether|maybe|perhaps|do|does|did|would|could|should|can|"
                            r"what|why|how|who|he|she|they|my\s+(?:friend|mom|mum|dad|wife|husband|partner|boss))\b", re.I)
_SPACES = re.compile(r"\s+")

_TEMPLATES: Final[dict[str, str]] = {
    "name": "Their name is {}.",
    "job": "They work as {}.",
    "home": "They live in {}.",
    "origin": "They are from {}.",
    "likes": "They like {}.",
    "dislikes": "They dislike {}.",
}


@dataclass(frozen=True)
class Extraction:
    """One extracted fact or preference."""

    kind: str      # "fact" or "preference"
    slot: str      # "name", "job", "home", "origin", "pref:<object>"
    value: str     # the extracted object, as the person wrote it
    text: str      # the sentence stored as the memory, e.g. "They like hiking in the hills."


def _clean_object(raw: str) -> str | None:
    value = _SPACES.sub(" ", raw).strip(" '\"-")
    words = value.split()
    if not words or len(words) > MAX_OBJECT_WORDS or len(value) > MAX_OBJECT_CHARS:
        return None
    if value.lower() in _STOP_OBJECTS or words[0].lower() in {"you", "it", "that", "this", "them", "him", "her"}:
        return None
    return value


def extract_facts(text: str) -> list[Extraction]:
    """Facts and preferences stated in ``text`` (the person's message), at most MAX_EXTRACTIONS."""
    out: list[Extraction] = []
    seen: set[str] = set()
    for sentence in _SENTENCE_SPLIT.split(text or ""):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("?") or _SKIP_SENTENCE.match(sentence):
            continue
        taken: list[tuple[int, int]] = []  # spans already used (dislike patterns run before likes)
        for kind, slot, pattern in _PATTERNS:
            for m in pattern.finditer(sentence):
                if any(m.start() < e and s < m.end() for s, e in taken):
                    continue
                value = _clean_object(m.group(1))
                if value is None:
                    continue
                if slot == "name":
                    value = " ".join(w[:1].upper() + w[1:] for w in value.split())
                key = f"pref:{value.lower()}" if kind == KIND_PREFERENCE else slot
                if key in seen:
                    continue
                seen.add(key)
                taken.append((m.start(), m.end()))
                out.append(Extraction(kind, key, value, _TEMPLATES[slot].format(value)))
                if len(out) >= MAX_EXTRACTIONS:
                    return out
    return out
