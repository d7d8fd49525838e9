"""The register planner: how the agent should answer this turn — strategy, expression, tone, pace, length.

Inputs (:class:`PlanInput`): the person's fused state now and over the conversation, mixed
signals, recalled memories, the person's words (for explicit requests), the strategies used so
far, the agent's mood and persona.  Output: a :class:`Register`:

* ``strategy`` — one of ESConv's eight support strategies (Liu et al. 2021), with its *family*
  (ESConv's three stages: exploration, comforting, action; plus "other");
* ``target`` — the emotional expression of the reply, a VAD point (what the voice renders);
* ``tone`` words, ``pace`` and ``length`` for the prompt and the voice;
* ``rationale`` — which rules fired, in words (shown in the UI and in evaluations).

The rules, in order (the first that applies picks the strategy; every rule is unit-tested):

0a. **A clinical presentation** (psychosis, mania, compulsion, disordered eating, substance risk;
   ``plan.clinical``) -> that presentation's register: a strategy and constraint lines that do not
   collude (never confirm the belief, give the reassurance, the numbers or help with the plan);
   answered by the protocol's vetted reply unless ``safety_clinical_replies = "guarded"``.
0. **Risk** (the safety stage's level is ``low``: a warning sign, or the turns after a crisis) ->
   Reflection of feelings / Restatement, gentle and serious, never advice (the stage adds a
   vetted check-in to the reply).
1. **Social messages** — thanks or goodbye (short) -> Others: a warm, brief closing; meeting
   "thank you" with another probing question feels like not listening.  A bare greeting ->
   Question: greet back and ask how they are.
2. **Explicit request for advice** ("what should I do?") -> Providing Suggestions, offered
   tentatively: honouring a direct request respects autonomy; refusing it feels evasive.
3. **A question about themselves being normal/okay** -> Affirmation and Reassurance.
   **Another direct question**, when not in distress -> Information (a distressed "why me?" is
   not a request for facts).
4. **Mixed signals** (words and voice/face disagree) -> Reflection of feelings, *tentative*: name
   the feeling as a possibility and ask, never assert what the person "really" feels.
5. **Positive states** -> Question (let them tell more: "capitalisation" of good news) alternating
   with Affirmation.
6. **Explore before advising**: during the first ``explore_turns`` turns -> Question, alternating
   with Reflection of feelings (advice before understanding is the classic empathy failure; ESConv
   supporters explore in 64 % of their first two turns).
7. **High-arousal distress** (negative valence, high arousal: anger, fear, panic) -> Reflection
   of feelings / Affirmation: validation first, then calm.
8. **Low and worsening** (valence falling over the last turns) -> Affirmation and Reassurance.
9. Otherwise the **helping cycle** (Hill's stages, which ESConv's are built on): after exploring,
   comfort (reflect the feeling, or restate when no emotion is clear); after comforting, one
   gentle suggestion (never twice in a row); after a suggestion, reassure; then explore again.

**With a learned predictor** (``PlanInput.learned``, :mod:`empathic_agent.plan.learned`, the
default in the graph) rules 1-9 give way to the predictor's distribution, inside hard constraints
that hold whatever it predicts: rules 0a and 0 (clinical, risk) first; an explicit request for
advice -> Providing Suggestions; mixed signals -> no suggestion, information or self-disclosure,
and the tentative note; nothing explored yet -> no suggestion.  The rationale names the constraints
and the model's three most probable strategies.

Target expression (co-regulation rather than mirroring of distress): for negative states the
agent speaks *calm and warm* — low arousal (lower the more agitated the person is), mildly
positive valence (warmth, capped so grief is never met with cheer), steady dominance for fear
and anger (a calm anchor), neutral dominance for sadness (not overpowering).  Positive states are
mirrored by the persona's ``mirroring`` share.  The agent's mood is blended in (20 %), so the
persona's temperament colours every reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Mapping, Sequence

import numpy as np

from empathic_agent.plan.clinical import CLINICAL_REGISTERS
from empathic_agent.plan.persona import Persona

__all__ = [
    "STRATEGIES",
    "FAMILIES",
    "STRATEGY_FAMILY",
    "STRATEGY_INSTRUCTIONS",
    "PlanInput",
    "Register",
    "plan_register",
    "family_of",
]

#: ESConv's support strategies (``strategy.json``), in its order.
STRATEGIES: Final[tuple[str, ...]] = (
    "Question", "Restatement or Paraphrasing", "Reflection of feelings", "Self-disclosure",
    "Affirmation and Reassurance", "Providing Suggestions", "Information", "Others",
)
#: ESConv's stages of support (Liu et al. 2021, after Hill's helping skills) as strategy families.
FAMILIES: Final[tuple[str, ...]] = ("exploration", "comforting", "action", "other")
STRATEGY_FAMILY: Final[dict[str, str]] = {
    "Question": "exploration", "Restatement or Paraphrasing": "exploration",
    "Reflection of feelings": "comforting", "Self-disclosure": "comforting",
    "Affirmation and Reassurance": "comforting",
    "Providing Suggestions": "action", "Information": "action",
    "Others": "other",
}
#: What each strategy asks of the reply — phrased for a small model: one concrete instruction.
STRATEGY_INSTRUCTIONS: Final[dict[str, str]] = {
    "Question": "ask one open question about what they feel or what happened",
    "Restatement or Paraphrasing": "say back in your own words what they told you, then stop",
    "Reflection of feelings": "name the feeling you sense in them and say it makes sense",
    "Self-disclosure": "briefly share that you understand from a similar experience",
    "Affirmation and Reassurance": "affirm their strength or worth and reassure them warmly",
    "Providing Suggestions": "offer one small, gentle suggestion as a possibility, not an order",
    "Information": "answer their question plainly and briefly",
    "Others": "respond kindly and briefly",
}

# Thresholds on the person's fused state (VAD in [-1, 1]).
NEGATIVE_V: Final[float] = -0.15
POSITIVE_V: Final[float] = 0.25
HIGH_AROUSAL: Final[float] = 0.25
#: Valence drop over the recent turns that counts as "worsening".
WORSENING_DROP: Final[float] = 0.1
#: Below this fused confidence the state is "unclear" (no emotional rule applies).
MIN_CONFIDENCE: Final[float] = 0.15
#: Share of the agent's mood in its target expression.
MOOD_SHARE: Final[float] = 0.2
#: Warmth of the agent's valence when meeting distress, and its cap.
WARMTH_V: Final[float] = 0.25
MAX_WARMTH_V: Final[float] = 0.35

_ADVICE = re.compile(r"\b(what (should|can|do) i do|(don'?t|do not) know what to do|any (advice|tips|ideas|suggestions)|how (can|do|should) i\b|"
                     r"should i\b|what would you do|help me (figure|decide|deal))", re.I)
#: Thanks or goodbye (a closing), and a bare greeting (an opening).
_CLOSING = re.compile(r"^(ok(ay)?[,.]? )?(thanks?|thank you|thx|bye|goodbye|see you|have a (good|great|nice)|"
                      r"take care|you too)\b", re.I)
_GREETING = re.compile(r"^(hi|hello|hey|good (morning|evening|afternoon))\b[\s!.,?]*(there)?[\s!.,?]*$", re.I)
SOCIAL_MAX_WORDS: Final[int] = 12
_NORMAL = re.compile(r"\b(is (it|this|that) (normal|okay|ok|weird|wrong)|am i (normal|crazy|wrong|overreacting|"
                     r"a bad|broken|too)|is something wrong with me|do you think i)", re.I)


@dataclass(frozen=True)
class PlanInput:
    """Everything the planner looks at (plain data, so it is easy to test and to log)."""

    #: The person's fused state now: (valence, arousal, dominance), its confidence and top category.
    state: tuple[float, float, float] | None = None
    confidence: float = 0.0
    top_category: str = "neutral"
    mixed_signals: bool = False
    #: Fused valence of earlier turns, oldest first (the trajectory).
    valence_history: tuple[float, ...] = ()
    #: Which turn of the conversation this is (1 = the person's first message).
    turn_index: int = 1
    #: Strategies the agent used so far in this conversation, oldest first.
    previous_strategies: tuple[str, ...] = ()
    #: The person's words this turn.
    text: str = ""
    #: Recalled memories: dicts with at least ``text`` and ``top_category``.
    memories: tuple[Mapping[str, Any], ...] = ()
    #: The agent's mood (VAD).
    mood: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: The safety stage's risk level of the conversation at this turn (none … imminent).  Crisis
    #: levels never reach the planner (the protocol answers); ``low`` asks for a careful register.
    risk_level: str = "none"
    #: Clinical presentations the safety stage read in the conversation, and the one whose
    #: register leads (``plan.clinical``); "" for none.
    presentations: tuple[str, ...] = ()
    clinical: str = ""
    #: Answer a presentation with the protocol's vetted reply instead of the LLM.
    clinical_vetted: bool = True
    #: Careful (risk ``low``) turns are answered with the protocol's vetted lead-in and check-in
    #: (``settings.safety_careful_replies``): the rationale says so.
    careful_vetted: bool = False
    #: A strategy decided elsewhere (ESConv's gold strategy when the responder is trained on the
    #: agent's own prompts): it replaces rules 1-9, never the clinical or risk rules, which are safety.
    strategy: str | None = None
    #: The learned predictor's distribution over the strategies (``plan.learned``): when given,
    #: the strategy is its most probable one that the hard constraints allow, instead of rules 1-9.
    learned: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Register:
    strategy: str
    target: tuple[float, float, float]
    tone: tuple[str, ...]
    pace: str
    length: str
    rationale: tuple[str, ...] = ()
    #: Extra instructions for the prompt (e.g. acknowledge mixed signals, a memory to bring up).
    notes: tuple[str, ...] = ()
    #: The clinical presentation whose register this is ("" for none), and whether the reply is
    #: the protocol's vetted one rather than the LLM's.
    clinical: str = ""
    vetted: bool = False
    #: Hard constraints that held when the strategy was picked from a learned distribution
    #: ("clinical", "risk", "advice_request", "mixed_signals", "explore_first").
    constraints: tuple[str, ...] = ()
    #: The learned distribution's three most probable strategies: ((strategy, probability), ...).
    learned_top: tuple[tuple[str, float], ...] = ()

    @property
    def family(self) -> str:
        return STRATEGY_FAMILY.get(self.strategy, "other")

    def prompt_lines(self) -> str:
        """The register's lines for the system message: tone and any notes (compact on purpose)."""
        return "\n".join([f"Speak in a {', '.join(self.tone)} tone.", *self.notes])

    def reply_hint(self) -> str:
        """The one-line instruction appended to the person's latest message in the prompt (never
        stored in the conversation).  The small default model ignores strategy instructions in the
        system message but follows one at the end of the user turn (measured: see the tests)."""
        sentences = {"short": "1-2 short sentences", "medium": "2-3 short sentences"}[self.length]
        return f"In {sentences}, {STRATEGY_INSTRUCTIONS[self.strategy]}."

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "family": self.family,
                "target": {"valence": round(self.target[0], 4), "arousal": round(self.target[1], 4),
                           "dominance": round(self.target[2], 4)},
                "tone": list(self.tone), "pace": self.pace, "length": self.length,
                "rationale": list(self.rationale), "notes": list(self.notes), "clinical": self.clinical,
                "vetted": self.vetted, "constraints": list(self.constraints),
                "learned_top": [[s, round(p, 4)] for s, p in self.learned_top]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Register":
        t = d["target"]
        return cls(strategy=d["strategy"], target=(float(t["valence"]), float(t["arousal"]), float(t["dominance"])),
                   tone=tuple(d.get("tone", ())), pace=d.get("pace", "moderate"), length=d.get("length", "short"),
                   rationale=tuple(d.get("rationale", ())), notes=tuple(d.get("notes", ())),
                   clinical=str(d.get("clinical", "")), vetted=bool(d.get("vetted", False)),
                   constraints=tuple(d.get("constraints", ())),
                   learned_top=tuple((str(s), float(p)) for s, p in d.get("learned_top", ())))


def family_of(strategy: str) -> str:
    return STRATEGY_FAMILY.get(strategy, "other")


def _alternate(previous: Sequence[str], first: str, second: str) -> str:
    """``first``, unless the agent just used it — then ``second`` (no strategy twice in a row)."""
    return second if previous and previous[-1] == first else first


def _choose_learned(x: PlanInput, why: list[str], notes: list[str], held: list[str]) -> str:
    """The learned distribution's most probable strategy that the hard constraints allow (the
    clinical and risk rules came before and always win)."""
    probs = {s: float((x.learned or {}).get(s, 0.0)) for s in STRATEGIES}
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    why.append("learned (what skilled supporters do next): "
               + ", ".join(f"{s} {p:.2f}" for s, p in ranked[:3]))
    text = (x.text or "").strip()
    if _ADVICE.search(text):
        held.append("advice_request")
        why.append("constraint: they asked for advice -> one suggestion, offered tentatively")
        return "Providing Suggestions"
    allowed = set(STRATEGIES)
    if x.mixed_signals:
        held.append("mixed_signals")
        allowed -= {"Providing Suggestions", "Information", "Self-disclosure"}
        notes.append("What they say and how they seem may differ: mention it gently, as a question.")
        why.append("constraint: mixed signals -> tentative, no advice, facts or stories of our own")
    if not any(family_of(s) == "exploration" for s in x.previous_strategies):
        held.append("explore_first")
        allowed.discard("Providing Suggestions")
        why.append("constraint: nothing explored yet -> no suggestion")
    choice = next(s for s, _ in ranked if s in allowed)
    if choice != ranked[0][0]:
        why.append(f"-> {choice} (the model's first choice, {ranked[0][0]}, is not allowed here)")
    return choice


def _choose_strategy(x: PlanInput, persona: Persona, held: list[str] | None = None) -> tuple[str, list[str], list[str]]:
    held = held if held is not None else []
    why: list[str] = []
    notes: list[str] = []
    prev = x.previous_strategies
    text = (x.text or "").strip()
    v, a, _d = x.state if x.state is not None else (0.0, 0.0, 0.0)
    clear = x.state is not None and x.confidence >= MIN_CONFIDENCE
    negative = clear and v <= NEGATIVE_V
    positive = clear and v >= POSITIVE_V

    if x.clinical in CLINICAL_REGISTERS:
        reg = CLINICAL_REGISTERS[x.clinical]
        why.append(f"clinical presentation {x.clinical}: a register that does not collude ({reg.source})"
                   + (" -> vetted reply" if x.clinical_vetted else ""))
        notes.extend(reg.constraints)
        held.append("clinical")
        if x.risk_level not in ("none", ""):
            notes.append("Be gentle and serious. Do not joke or change the subject.")
        return reg.strategy, why, notes
    if x.risk_level not in ("none", ""):
        held.append("risk")
        # Warning signs (or a crisis earlier in the conversation): stay with the feeling, never
        # advise or change the subject; the safety stage appends a vetted check-in.
        why.append(f"risk {x.risk_level}: careful register, reflect and stay with them (no advice)"
                   + (" -> vetted reply" if x.careful_vetted else ""))
        notes.append("Be gentle and serious. Do not give advice, do not joke, do not change the subject.")
        return _alternate(prev, "Reflection of feelings", "Restatement or Paraphrasing"), why, notes
    if x.strategy:
        if x.strategy not in STRATEGY_FAMILY:
            raise ValueError(f"unknown strategy {x.strategy!r}; one of: {', '.join(STRATEGIES)}")
        why.append("strategy given by the caller")
        return x.strategy, why, notes
    if x.learned:
        return _choose_learned(x, why, notes, held), why, notes
    if _GREETING.match(text):
        why.append("a greeting: greet back and ask how they are")
        return "Question", why, notes
    if _CLOSING.match(text) and len(text.split()) <= SOCIAL_MAX_WORDS:
        why.append("thanks or goodbye: answer it warmly and briefly")
        return "Others", why, notes
    if _ADVICE.search(text):
        why.append("they asked for advice: offer one suggestion, tentatively")
        return "Providing Suggestions", why, notes
    if text.endswith("?"):
        if _NORMAL.search(text):
            why.append("they asked whether they are okay/normal: reassure")
            return "Affirmation and Reassurance", why, notes
        if not negative:  # a distressed "why me?" is not a request for facts
            why.append("they asked a direct question: answer it")
            return "Information", why, notes
    if x.mixed_signals:
        why.append("mixed signals: reflect the feeling tentatively and check, never assert")
        notes.append("What they say and how they seem may differ: mention it gently, as a question.")
        return "Reflection of feelings", why, notes
    if positive:
        why.append("a positive state: let them tell more, affirm it")
        return _alternate(prev, "Question", "Affirmation and Reassurance"), why, notes
    if x.turn_index <= persona.policy.explore_turns:
        why.append(f"turn {x.turn_index}: explore before advising")
        return _alternate(prev, "Question", "Reflection of feelings"), why, notes
    if negative and a >= HIGH_AROUSAL:
        why.append("high-arousal distress: validate first, then calm (co-regulation)")
        return _alternate(prev, "Reflection of feelings", "Affirmation and Reassurance"), why, notes
    hist = list(x.valence_history[-3:])
    if negative and len(hist) >= 2 and hist[0] - v >= WORSENING_DROP:
        why.append("low and worsening over the last turns: reassure")
        return _alternate(prev, "Affirmation and Reassurance", "Reflection of feelings"), why, notes
    # The helping cycle (Hill's stages, as in ESConv): explored -> comfort -> one suggestion ->
    # reassure -> explore again.
    last = family_of(prev[-1]) if prev else "other"
    if last == "exploration":
        emotional = clear and (negative or x.top_category not in ("neutral",))
        why.append("after exploring: " + ("reflect the feeling" if emotional else "say back what they told you"))
        return ("Reflection of feelings" if emotional else "Restatement or Paraphrasing"), why, notes
    if last == "comforting":
        if "Providing Suggestions" not in prev[-2:]:
            why.append("understood and comforted: one gentle suggestion")
            return "Providing Suggestions", why, notes
        why.append("a suggestion was just made: check in with a question")
        return "Question", why, notes
    if last == "action":
        why.append("after a suggestion: reassure, do not pile on advice")
        return "Affirmation and Reassurance", why, notes
    why.append("explore")
    return _alternate(prev, "Question", "Restatement or Paraphrasing"), why, notes


def _target(x: PlanInput, persona: Persona) -> tuple[np.ndarray, list[str]]:
    why: list[str] = []
    mood = np.asarray(x.mood, dtype=np.float64)
    if x.clinical in CLINICAL_REGISTERS:
        # A clinical presentation is met calm, warm and steady, never mirrored (euphoria included).
        return np.array([0.15, -0.4, 0.2]), ["expression: calm, warm and steady (clinical register, never mirrored)"]
    if x.state is None or x.confidence < MIN_CONFIDENCE:
        target = mood.copy()
        why.append("expression: the agent's own mood (the person's state is unclear)")
    else:
        v, a, d = x.state
        if v <= NEGATIVE_V:
            # Co-regulation: calm and warm; calmer the more agitated the person is.
            warmth = min(MAX_WARMTH_V, WARMTH_V + 0.1 * max(0.0, -v))
            arousal = -0.3 - 0.3 * max(0.0, a)
            dominance = 0.2 if (a >= HIGH_AROUSAL and x.top_category in ("fear", "anger")) else 0.0
            target = np.array([warmth, arousal, dominance])
            why.append("expression: calm and warm (co-regulation, not mirroring distress)")
        elif v >= POSITIVE_V:
            m = persona.policy.mirroring
            target = m * np.array([v, a, d]) + (1 - m) * np.array([0.4, 0.1, 0.1])
            why.append(f"expression: share their good mood (mirroring {m:.2f})")
        else:
            target = np.array([0.15, -0.1, 0.0])
            why.append("expression: friendly and even")
    target = (1 - MOOD_SHARE) * target + MOOD_SHARE * mood
    return np.clip(target, -1.0, 1.0), why


def _tone(target: np.ndarray, mixed: bool, strategy: str) -> tuple[str, ...]:
    v, a, d = target
    words: list[str] = []
    if a <= -0.2:
        words.append("calm")
    elif a >= 0.3:
        words.append("upbeat" if v > 0.2 else "alert")
    if v >= 0.15 and a < 0.3:
        words.append("warm")
    elif v >= 0.3:
        words.append("bright")
    if d >= 0.15:
        words.append("steady")
    if mixed or strategy == "Providing Suggestions":
        words.append("tentative")
    if a <= -0.2 and v > 0:
        words.append("gentle")
    return tuple(dict.fromkeys(words or ["kind"]))


def plan_register(x: PlanInput, persona: Persona) -> Register:
    """The register for this turn (rules in the module docstring)."""
    held: list[str] = []
    strategy, why, notes = _choose_strategy(x, persona, held)
    target, why_t = _target(x, persona)
    v, a, _ = x.state if x.state is not None else (0.0, 0.0, 0.0)
    pace = "slow" if target[1] <= -0.2 else ("lively" if target[1] >= 0.3 else "moderate")
    # Short replies to agitation and at the start; a little more room once trust is built.
    length = "short" if (x.turn_index <= 1 or a >= HIGH_AROUSAL or strategy == "Question") else "medium"
    if (persona.policy.mood_repair_memory and x.state is not None and v <= NEGATIVE_V
            and strategy in ("Affirmation and Reassurance", "Providing Suggestions")):
        happy = [m for m in x.memories if m.get("top_category") == "joy" and m.get("text")]
        if happy:
            notes.append("If it fits, gently remind them of the good memory above.")
            why.append("mood repair: a pleasant memory was recalled")
    clinical = x.clinical if x.clinical in CLINICAL_REGISTERS else ""
    if clinical:
        pace = "slow" if pace != "slow" else pace  # calm and unhurried, whatever the person's energy
    return Register(strategy=strategy, target=tuple(float(t) for t in target),  # type: ignore[arg-type]
                    tone=_tone(target, x.mixed_signals, strategy), pace=pace, length=length,
                    rationale=tuple(why + why_t), notes=tuple(notes), clinical=clinical,
                    vetted=bool(clinical) and x.clinical_vetted,
                    constraints=tuple(held) if x.learned else (),
                    learned_top=tuple(sorted(((s, float(p)) for s, p in x.learned.items()),
                                             key=lambda kv: -kv[1])[:3]) if x.learned else ())
