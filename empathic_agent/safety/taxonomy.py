"""The risk taxonomy the safety stage reads messages into: dimensions, levels and routes.

Dimensions follow the Columbia Suicide Severity Rating Scale (C-SSRS) screener (wish to be dead,
active ideation, method, intent, plan, preparatory behaviour, recent attempt), the published
suicide warning signs (AFSP, 988 Lifeline: feeling a burden, hopelessness, sudden calm after
deciding, access to means, withdrawal; giving things away and saying goodbye are preparatory
behaviour), plus non-suicidal self-injury, harm to others, abuse or danger to the person, and
someone else at risk (the person is a helper).  ``safety/data/GUIDE.md`` defines each one with
examples; the data the learned layer trains on and is tested on is labelled by that guide.

Levels are ordered; each maps to a route (what the agent does):

    none      -> continue     ordinary conversation
    low       -> check_in     the reply goes on, in a careful register, with a gentle check-in
    moderate  -> protocol     the vetted crisis protocol (never free generation)
    high      -> escalate     the protocol, and the embedding app's escalation hooks are told
    imminent  -> emergency    the locale's emergency number first, then the protocol; escalation

Someone else at risk (``subject == "other"``) takes the ``helper`` route at ``moderate`` and
above: support for the helper, with resources (and the emergency number first when imminent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Mapping

__all__ = [
    "DIMENSIONS", "CSSRS", "WARNING_SIGNS", "OTHER_DANGER", "LEVELS", "ROUTES", "SUBJECTS",
    "CRISIS_ROUTES", "level_index", "level_name", "route_for", "protocol_category", "DimensionReading",
]

#: C-SSRS screener dimensions.
CSSRS: Final[tuple[str, ...]] = ("wish_dead", "ideation", "method", "intent", "plan", "preparatory", "attempt")
#: Published warning signs (AFSP, 988 Lifeline) not already in the C-SSRS dimensions.
WARNING_SIGNS: Final[tuple[str, ...]] = ("burden", "hopelessness", "calm_after_decision", "means_access", "withdrawal")
#: Danger other than the person's own suicide risk.
OTHER_DANGER: Final[tuple[str, ...]] = ("self_harm", "harm_others", "abuse", "third_party")
DIMENSIONS: Final[tuple[str, ...]] = CSSRS + WARNING_SIGNS + OTHER_DANGER

LEVELS: Final[tuple[str, ...]] = ("none", "low", "moderate", "high", "imminent")
ROUTES: Final[tuple[str, ...]] = ("continue", "check_in", "protocol", "escalate", "emergency", "helper")
#: Routes answered by the vetted protocol instead of the language model.
CRISIS_ROUTES: Final[frozenset[str]] = frozenset({"protocol", "escalate", "emergency", "helper"})
SUBJECTS: Final[tuple[str, ...]] = ("none", "self", "other")

_ROUTE_OF_LEVEL: Final[dict[str, str]] = {"none": "continue", "low": "check_in", "moderate": "protocol",
                                          "high": "escalate", "imminent": "emergency"}


def level_index(level: str) -> int:
    """0 (none) … 4 (imminent); unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown risk level {level!r}; valid: {', '.join(LEVELS)}") from None


def level_name(index: int) -> str:
    return LEVELS[max(0, min(len(LEVELS) - 1, int(index)))]


def route_for(level: str, subject: str = "self") -> str:
    """The route of a level; someone else at risk takes the helper route from ``moderate`` up."""
    if subject == "other" and level_index(level) >= level_index("moderate"):
        return "helper"
    return _ROUTE_OF_LEVEL[level]


def protocol_category(dimensions: Mapping[str, float] | set[str] | tuple[str, ...], subject: str) -> str:
    """Which of the protocol's replies fits: ``others_at_risk``, ``abuse``, ``harm_others``,
    ``self_harm`` (self-injury without suicidal dimensions) or ``suicide``."""
    dims = set(dimensions)
    if subject == "other":
        return "others_at_risk"
    if "abuse" in dims and not dims & set(CSSRS):
        return "abuse"
    if "harm_others" in dims and not dims & set(CSSRS):
        return "harm_others"
    if "self_harm" in dims and not dims & (set(CSSRS) - {"attempt"}):
        return "self_harm"
    return "suicide"


@dataclass(frozen=True)
class DimensionReading:
    """One dimension found in a message: how sure (0-1), the words that show it, and which layer
    found it (``pattern:<name>``, ``learned``, ``language:<code>``, ``conversation``)."""

    name: str
    score: float
    evidence: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(float(self.score), 4), "evidence": self.evidence,
                "source": self.source}
