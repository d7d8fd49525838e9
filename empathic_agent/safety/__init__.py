"""The safety stage: a risk screen before generation (C-SSRS dimensions, warning signs,
self-harm, harm to others, abuse, someone else at risk; a level and a route per message, raised by
the conversation's accumulated risk), the vetted crisis protocol with locale-specific resources,
and the escalation hook.  See :mod:`.taxonomy`, :mod:`.detect`, :mod:`.conversation` and
:mod:`.protocol`; ``docs/safety.md`` for what the stage can and cannot do."""

from empathic_agent.safety.conversation import ConversationRisk
from empathic_agent.safety.detect import (
    ABUSE,
    CATEGORIES,
    HARM_OTHERS,
    OTHERS_AT_RISK,
    SELF_HARM,
    SUICIDE,
    CrisisDetector,
    RiskScreen,
    SafetyAssessment,
    normalise,
    pattern_readings,
    pattern_signals,
)
from empathic_agent.safety.protocol import CrisisEvent, CrisisProtocol, SafetyStage, load_protocol
from empathic_agent.safety.taxonomy import DIMENSIONS, LEVELS, ROUTES, DimensionReading, route_for

__all__ = ["ABUSE", "CATEGORIES", "HARM_OTHERS", "OTHERS_AT_RISK", "SELF_HARM", "SUICIDE", "CrisisDetector",
           "RiskScreen", "SafetyAssessment", "ConversationRisk", "DimensionReading", "DIMENSIONS", "LEVELS", "ROUTES",
           "route_for", "normalise", "pattern_readings", "pattern_signals", "CrisisEvent", "CrisisProtocol",
           "SafetyStage", "load_protocol"]
