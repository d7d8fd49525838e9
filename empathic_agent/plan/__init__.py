"""Plan: how the agent answers — persona and mood (`persona`), the register planner (`register`)
and its plausibility check against human supporters in ESConv (`esconv`).  Pure Python + numpy."""

from empathic_agent.plan.persona import (
    DEFAULT_PERSONA,
    Persona,
    PersonaPolicy,
    available_personas,
    load_persona,
    ocean_to_pad,
    update_mood,
)
from empathic_agent.plan.register import (
    FAMILIES,
    STRATEGIES,
    STRATEGY_FAMILY,
    PlanInput,
    Register,
    family_of,
    plan_register,
)

__all__ = [
    "DEFAULT_PERSONA",
    "Persona",
    "PersonaPolicy",
    "available_personas",
    "load_persona",
    "ocean_to_pad",
    "update_mood",
    "FAMILIES",
    "STRATEGIES",
    "STRATEGY_FAMILY",
    "PlanInput",
    "Register",
    "family_of",
    "plan_register",
]
