"""Registers for clinical presentations: what to do, and what never to do, when the person shows
psychotic content, mania, compulsions, disordered eating or substance risk.

Each register is the planner's rule 0a (before everything but crisis): a strategy, a calm tone and
constraint lines the prompt carries.  Sources (summarised in ``docs/clinical.md``):

* psychosis — NICE CG178 (psychosis and schizophrenia in adults) and CBT for psychosis engagement
  (Kingdon & Turkington): acknowledge the distress, neither confirm nor argue with the belief,
  explore gently, stay with safety and sleep, involve a trusted person or the care team;
* mania — NICE CG185 (bipolar disorder): reduce stimulation, protect sleep, delay big decisions and
  risky activity, involve someone trusted or the care team; never help with the plan;
* compulsion — NICE CG31 (OCD) and exposure and response prevention: reassurance and accommodation
  maintain the cycle; acknowledge the anxiety, do not give the certainty or the ritual's tools;
* eating — NICE NG69 and the Beat/Academy for Eating Disorders media guidance: no numbers (weights,
  calories), no diet tips, no praise of weight loss; point to a doctor or an eating-disorder service;
* substance — SAMHSA's Opioid Overdose Prevention Toolkit and harm-reduction practice: no amounts or
  mixing advice; say plainly that mixing depressants and lost tolerance are dangerous; do not use
  alone; the emergency number if something has been taken.

The default embedded model cannot be trusted to hold such a register, so by default these turns are
answered with the protocol's vetted replies (``safety_clinical_replies = "vetted"``); with a model
that can, the LLM writes the reply under the register and the reply guard checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["ClinicalRegister", "CLINICAL_REGISTERS", "STRICT_LINES"]


@dataclass(frozen=True)
class ClinicalRegister:
    presentation: str
    strategy: str
    #: What the reply must and must not do (the prompt's lines).
    constraints: tuple[str, ...]
    source: str


CLINICAL_REGISTERS: Final[dict[str, ClinicalRegister]] = {r.presentation: r for r in (
    ClinicalRegister("psychosis", "Reflection of feelings", (
        "Acknowledge the fear or distress without confirming or arguing with the belief.",
        "Never say they are being watched, followed, poisoned or that the voices are right; never help them hide, escape or act on it.",
        "Gently ask about sleep, safety and someone they trust or their doctor.",
    ), "NICE CG178; CBT for psychosis engagement"),
    ClinicalRegister("mania", "Question", (
        "Do not encourage or help with the plan: no places, steps, money or activity advice.",
        "Acknowledge the energy, ask about sleep, suggest waiting and talking to someone they trust or their doctor before big decisions.",
    ), "NICE CG185"),
    ClinicalRegister("compulsion", "Reflection of feelings", (
        "Do not give the reassurance they ask for (never say it is clean, locked, safe or that nothing happened).",
        "Do not recommend products, more washing or better checking.",
        "Acknowledge the anxiety and support sitting with the uncertainty; therapy with exposure and response prevention helps.",
    ), "NICE CG31; exposure and response prevention"),
    ClinicalRegister("eating", "Reflection of feelings", (
        "Never give numbers (calories, weights), diet tips or ways to eat less, purge or hide it; never praise weight loss.",
        "Acknowledge how hard it is and suggest a doctor or an eating-disorder service.",
    ), "NICE NG69; Beat media guidelines"),
    ClinicalRegister("substance", "Providing Suggestions", (
        "Never give amounts, doses or mixing advice.",
        "Say plainly that mixing alcohol with pills or drugs, or an old dose after a break, is dangerous; do not use alone.",
        "If something has been taken and they feel unwell, they should call the emergency number now.",
    ), "SAMHSA Opioid Overdose Prevention Toolkit; harm reduction"),
)}

#: The stricter register of a regeneration after the reply guard blocked a reply.
STRICT_LINES: Final[tuple[str, ...]] = (
    "Your previous answer was blocked because it was unsafe.",
    "Do not give any numbers, doses, places, products, methods, steps or instructions. Do not diagnose.",
    "Do not agree that anyone is watching or harming them, do not reassure that something is clean or safe, do not encourage risky plans.",
    "In one or two sentences, acknowledge the feeling and ask how they are.",
)
