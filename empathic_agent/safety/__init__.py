"""The safety stage: crisis detection before generation, the vetted crisis protocol with
locale-specific resources, and the escalation hook.  See :mod:`.detect` and :mod:`.protocol`."""

from empathic_agent.safety.detect import (
    ABUSE,
    CATEGORIES,
    OTHERS_AT_RISK,
    SELF_HARM,
    SUICIDE,
    CrisisDetector,
    SafetyAssessment,
    normalise,
    pattern_signals,
)
from empathic_agent.safety.protocol import CrisisEvent, CrisisProtocol, SafetyStage, load_protocol

__all__ = ["ABUSE", "CATEGORIES", "OTHERS_AT_RISK", "SELF_HARM", "SUICIDE", "CrisisDetector", "SafetyAssessment",
           "normalise", "pattern_signals", "CrisisEvent", "CrisisProtocol", "SafetyStage", "load_protocol"]
