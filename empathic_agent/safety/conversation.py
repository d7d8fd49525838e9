"""Conversation-level risk: what earlier turns add to the reading of this one.

A message that is ambiguous alone ("I'm done") means something else after "nothing will ever get
better" and "everyone would be better off".  The conversation keeps an accumulated severity
(:class:`ConversationRisk`, part of the checkpointed graph state, so it survives restarts):

    A_t = DECAY ** turns_elapsed * TIME_HALF_LIFE-decay(hours) * A_{t-1} + max(0, s_t - NOISE)

where ``s_t`` is the message's severity (its level index, or the learned layer's expected level
when that is higher).  The level the agent acts on is the highest of:

* the message's own level;
* ``moderate`` when the history carries risk (``A_{t-1} >= CONTEXT_CRISIS``) and the message
  shows some of its own (``s_t >= AMBIGUOUS``) or is a short giving-up or taking-back turn ("I'm
  done", "forget it", "jk"): the ambiguous message is read in its context;
* ``low`` (careful: a check-in) after a crisis turn while the history still carries risk
  (``A_{t-1} >= CAREFUL``): the next turns stay careful until enough calm turns have passed.  (A
  single warning sign gets its own check-in, not one on every following turn.)
* the level the person's **answer** gives: a crisis reply or check-in ends with a question ("are you
  safe right now?", "are you having any thoughts of … ending your life?"), and a short reply right
  after it, made of answer words alone, is the answer to it (:func:`answer_level`): "no" or "not
  really" to *are you safe* is ``moderate`` (the protocol stays), "I'm not safe" ``high``; "yes",
  "sometimes" or "idk" to *any thoughts of* is ``moderate`` (C-SSRS: asked directly, answered yes),
  and the reply then asks the screener's next question (method, plan), where yes is ``high``.
  (The answer is the person's words now, so it may say ``high``.)

* ``moderate`` while a **means question is still open**: in the two turns after a means question
  asked in the conversation's own risk context, a follow-up that does not press it in words the
  clinical reader knows ("for the garden, the slugs are eating everything") stays on the crisis
  route, unless it is a short answer (read as one, below) or help is reached
  (:attr:`~empathic_agent.safety.clinical.ClinicalReading.means_open`).
* ``imminent`` while an **emergency is ongoing**: after a turn the agent acted on at ``imminent``
  (an overdose taken, a method in hand, someone else in that danger now), the next turns are not
  ordinary chat — "I don't want an ambulance", "I feel fine actually", "she's not answering", "should
  I call the police?" — so the emergency (or, for someone else, the helper route) leads until help
  is reached ("called 999", "paramedics are here", "at A&E", "mum is driving me"), the person says
  it is not happening now ("that was years ago"), or :data:`EMERGENCY_TURNS` turns or
  :data:`EMERGENCY_HOURS` hours have passed (crisis-line practice: the danger does not end when the
  topic changes; an overdose can feel like nothing for hours).

Otherwise history alone never raises the level above ``moderate``: only the person's words now can
say ``high`` or ``imminent``.  The constants were set on the development conversations
(``safety/data/conversations_dev.yaml``), never on the held-out ones: with the second risk reader
(trained with the distress writers) they were chosen as the setting that routes every emerging-risk
development conversation by its acting turn with the fewest altered turns on 60 ESConv
*validation* conversations (real help-seeking chats, almost all without risk): 28.7 % of their
seeker turns (13.7 % to the protocol), against 38.9 % (8.6 %) with the earlier constants, which
routed only 8 of the 11 development conversations in time.  With the third reader (every layer
adapted, seventeen writers) the same rule chose NOISE 0.3, CONTEXT_CRISIS 0.8, AMBIGUOUS 0.5:
22.3 % altered (6.3 % to the protocol), against 27.5 % (9.2 %) with the second reader's constants.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Final, Mapping

from empathic_agent.safety.detect import normalise
from empathic_agent.safety.taxonomy import level_index

__all__ = ["ConversationRisk", "advance", "asked_in", "answer_level", "answer_only", "ANSWERED", "ONGOING", "MEANS_OPEN",
           "EMERGENCY_TURNS",
           "EMERGENCY_HOURS", "DECAY", "NOISE", "AMBIGUOUS", "CONTEXT_CRISIS", "CAREFUL"]

#: Share of the accumulated severity kept from one turn to the next ("decays slowly").
DECAY: Final[float] = 0.75
#: Time decay on top: the accumulated severity halves every this many hours between turns.
TIME_HALF_LIFE_H: Final[float] = 48.0
#: Severity below this is noise (sad or stressed messages read a little above zero).
NOISE: Final[float] = 0.3
#: A message with at least this severity is ambiguous enough to be read in its context.
AMBIGUOUS: Final[float] = 0.5
#: Accumulated severity from earlier turns that makes an ambiguous message a crisis.
CONTEXT_CRISIS: Final[float] = 0.8
#: Accumulated severity from earlier turns that keeps the agent careful (check-in).
CAREFUL: Final[float] = 0.6
#: Turns after a turn acted on at ``imminent`` during which the emergency stays ongoing without
#: new words of it (unless help is reached), and the hours after which it no longer does.
EMERGENCY_TURNS: Final[int] = 4
EMERGENCY_HOURS: Final[float] = 6.0
#: The ``reason`` of a level the ongoing emergency kept.
ONGOING: Final[str] = "emergency ongoing, no help reached yet"
#: The ``reason`` of a level an open means question kept (``ClinicalReading.means_open``).
MEANS_OPEN: Final[str] = "a means question still open"
#: Cap of the accumulator (four crisis turns in a row do not need a week to decay).
MAX_SCORE: Final[float] = 6.0


@dataclass(frozen=True)
class ConversationRisk:
    """The conversation's accumulated risk after a turn."""

    score: float = 0.0
    #: The level the agent acted on at the last turn, and the highest so far.
    level: str = "none"
    peak: str = "none"
    #: Turns since the last turn at ``moderate`` or above (None: never).
    turns_since_crisis: int | None = None
    #: Whose danger the conversation is about (self / other), from the last risk turn.
    subject: str = "none"
    #: Dimensions seen in the conversation (decayed like the score), for the planner and the UI.
    dimensions: Mapping[str, float] = field(default_factory=dict)
    turns: int = 0
    updated_at: float = 0.0
    #: Why the level is above the message's own (empty when it is not).
    reason: str = ""
    #: The question (:func:`asked_in`) this message answered when the answer set the level, else "".
    answered: str = ""
    #: Turns since the last turn the agent acted on at ``imminent`` while that emergency is ongoing
    #: (None: no emergency ongoing; 0: this turn was one).
    emergency_turns: int | None = None
    #: Help was reached at this turn, in an ongoing emergency or within EMERGENCY_TURNS of a turn at
    #: ``high`` or above (an ambulance called, at hospital, someone taking them).
    help_reached: bool = False

    @property
    def ongoing_emergency(self) -> bool:
        """The level is the ongoing emergency of an earlier turn, not this message's own."""
        return self.level == "imminent" and bool(self.emergency_turns)

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "level": self.level, "peak": self.peak,
                "turns_since_crisis": self.turns_since_crisis, "subject": self.subject,
                "dimensions": {k: round(v, 4) for k, v in self.dimensions.items()}, "turns": self.turns,
                "updated_at": self.updated_at, "reason": self.reason, "answered": self.answered,
                "emergency_turns": self.emergency_turns, "help_reached": self.help_reached}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ConversationRisk":
        if not d:
            return cls()
        return cls(score=float(d.get("score", 0.0)), level=str(d.get("level", "none")), peak=str(d.get("peak", "none")),
                   turns_since_crisis=d.get("turns_since_crisis"), subject=str(d.get("subject", "none")),
                   dimensions=dict(d.get("dimensions") or {}), turns=int(d.get("turns", 0)),
                   updated_at=float(d.get("updated_at", 0.0)), reason=str(d.get("reason", "")),
                   answered=str(d.get("answered") or ""), emergency_turns=d.get("emergency_turns"),
                   help_reached=bool(d.get("help_reached")))


#: Short turns that are ambiguous alone and, after risk, read as giving up or taking a disclosure
#: back ("I'm done", "forget it", "jk", "it's fine", "doesn't matter"): a careful listener stays
#: with the risk.  (The learned reader, trained on plain everyday chat, reads them as nothing.)
_GIVING_UP = re.compile(r"(?i)\b(i'?m|i am|im) (so )?(done|finished|out|tired)\b|\b(forget (it|i said)|never ?mind|nvm|"
                        r"doesn'?t matter|does not matter|whatever|(just )?(kidding|joking)|jk|(i'?m|im) (fine|ok|okay)|"
                        r"it'?s (fine|nothing|ok)|don'?t worry|dw|what'?s the point|no point|can'?t anymore|"
                        r"(don'?t|do not) (want to|wanna) talk)\b")


#: The question a reply ends with (its last question, read from the reply's own words so that an
#: organisation's protocol is read too): ``safe`` ("are you safe right now?", "somewhere safe") or
#: ``thoughts`` ("are you having any thoughts of hurting yourself or ending your life?").
_ASKS_THOUGHTS = re.compile(r"(?i)\b(thoughts? (of|about)|thinking (of|about)|considering) (hurting|harming|killing|ending|"
                            r"suicide|taking your)")
_ASKS_SAFE = re.compile(r"(?i)\b(are you|you are|you're|feel) (\w+ )?(safe|somewhere safe)\b")
#: The screener's next question: ``plan`` ("have you been thinking about how you might do it, or made a plan?").
_ASKS_PLAN = re.compile(r"(?i)\b(how you (might|would|could) do (it|this)|made a plan|have a plan|thought about how)\b")
#: An answer that clarifies the person is fine ("no, nothing like that, just tired"): not read as one.
_FINE = re.compile(r"\b(nothing like that|not like that|i am (fine|ok|okay|good|alright|all right|safe)|not in danger|"
                   r"just (tired|stressed|exhausted|knackered|shattered|venting|busy|sad|down|low|overwhelmed|fed up)|"
                   r"i am just|it is (just|only)|i meant|i mean)\b")
#: "no" (or unsure) to *are you safe?*; explicit "I'm not safe" at any length.
_NOT_SAFE = re.compile(r"^\W*(no+|nope|nah|not really|not exactly|not right now|not at the moment|not tonight|"
                       r"i do not think so|no i am not|i am not|not sure|i am not sure|i do not know|idk|dunno|maybe|"
                       r"maybe not|i guess not|probably not|kind of|sort of|kinda)\b(?!\W*(one|body|worries)\b)")
_SAID_NOT_SAFE = re.compile(r"\bi (am not|do not feel|am not feeling|never feel) safe\b|\bnot safe (right now|tonight|"
                            r"at all|here|at home)\b|^\W*not safe\b")
#: "yes" (or unsure) to *any thoughts of …?*.
_YES = re.compile(r"^\W*(yes|yeah|yep|yup|ya|yea|yh|mhm|uh huh|i do(?! not)|i am(?! not)|i have(?! not| never)|"
                  r"sometimes|kind of|kinda|sort of|a bit|a little|maybe|idk|i do not know|dunno|not sure|i guess|"
                  r"i think so|probably|often|most (days|nights|of the time)|every (day|night)|all the time|"
                  r"constantly|a lot|on and off|now and then|yes and no)\b|\b(yes|yeah|yep)\b")
#: Help reached in an emergency: emergency services called or on their way, at hospital, someone
#: who can act is with them or taking them (normalised text: contractions spelled out).
_HELP_REACHED = re.compile(
    r"(\b(i|we|she|he|they|hes|shes|theyve|ive|weve|mum|mom|dad|my \w+|someone|somebody) |^\W*(ok\W*|so\W*)?)(have |has |is |"
    r"just |already |finally )*(called|rang|phoned|dialled|dialed|rung|got through to|texted|reached|on the phone (to|with)) "
    r"(911|999|112|000|988|111|an ambulance|the ambulance|the police|the cops|the guards|the garda|emergency|the emergency|"
    r"poison|the crisis|the hotline|samaritans|lifeline)|"
    r"\b(i am|im|i have|i will be) (calling|ringing|phoning|dialling|dialing) (911|999|112|000|988|an ambulance|the police|"
    r"them|now|emergency)|"
    r"\b(ambulance|paramedics?|police|cops|emts?|medics?|help|the crisis team|an officer|officers) (is |are |have |has )*"
    r"(here|there|coming|on (the|its|their|her|his) way|arrived|outside|with (me|her|him|them)|at (the|her|his|their|my) )|"
    r"\b(i am|we are|she is|he is|they are|im) (now |already |finally )?(at|in) (the )?(hospital|a&e|a and e|er|e\.r\.|"
    r"emergency room|emergency department|ed|urgent care|resus)\b|"
    r"\b(driving|taking|bringing|rushing) (me|her|him|them) (in|to (the )?(hospital|a&e|a and e|er|emergency))|"
    r"\b(on (my|our|her|his|the) way to|going to|heading to|in an ambulance|in the ambulance) (the )?"
    r"(hospital|a&e|a and e|er|emergency)|\bin (an|the) ambulance\b|"
    r"\b(coming|on (his|her|their|the|my) way|here) to (get|pick up|collect|fetch|take|help|stay with|sit with) "
    r"(me|her|him|them|us)\b|"
    r"\b(police|cops|ambulance|paramedics|they|someone|guards|officers) (is|are) (going|heading|driving|on (their|the|its) "
    r"way) (round|over|there|out)\b|\b(sending|sent|dispatched|dispatching) (an ambulance|someone|a car|officers|police|"
    r"the police|paramedics|the guards)\b")
#: Said not to be an emergency after all: the first message was about the past, a story, a game, a
#: programme or a pet ("no no, that was years ago", "sorry, it's the drama on telly", "it was in 2011"),
#: or the person at risk is said to be safe ("she just replied, she's ok"; not a reply alone: "she
#: texted back 'leave me alone'" is still the emergency); the message is then read for what it says.
_NOT_NOW = re.compile(
    r"\b(she|he|they) (is|are) (ok|okay|safe|fine|alright|all right)\b|"
    r"\b(years|months|ages|a long time|decades) ago\b|\b(back )?in (19|20)\d\d\b|\bin the past\b|\bnot (about )?me\b|"
    r"\bnot (happening|real)\b|^\W*(no+|nah|oh|omg|haha|lol|lmao|sorry|oops|god|gosh)\b.{0,40}?\b(it is|its|it was|"
    r"that was|that is|thats|i meant|i mean|i was talking|i am talking|i should have said|i should explain|"
    r"that came out wrong)\b|\b(it is|its|it was|that was|that is|thats|this is) (just |only )?(a |the |my |our |in (a|the|my) |"
    r"from (a|the|my) |on (the|a) )?(game|film|movie|book|story|show|series|drama|podcast|novel|play|dream|character|level|"
    r"episode|documentary|news|telly|tv|dog|cat|pet|puppy|kitten|patient|client)\b")
#: The ``reason`` of a level an answer gave (the question answered is in ``ConversationRisk.answered``).
ANSWERED: Final[str] = "answered the question asked"
#: Words in a short answer: longer messages are read for what they say, not as an answer.
ANSWER_WORDS: Final[int] = 8
#: Words of a reply that says "I'm not safe" outright and is read as the answer.
SAID_WORDS: Final[int] = 20
#: The words an answer to a yes/no question is made of.  A reply with any other word ("no, I'm not
#: dreaming", "yes, absolutely correct") says something else than the answer: on real support chats
#: such replies answered the supporter's own questions.
_ANSWER_VOCABULARY: Final[frozenset[str]] = frozenset(
    "yes yeah yep yup ya yea yh ye mhm uh huh no nope nah naw not no really exactly maybe perhaps sometimes idk dunno "
    "i am do know think guess so sure safe probably kind kinda sort of a bit little lot most many days nights day "
    "night every all the time times constantly often on and off now then right at moment tonight today too also "
    "well honestly tbh lol um uhm hmm ok okay still again yet anymore any more either".split())


def answer_only(text: str) -> bool:
    """``text`` is a short reply made of answer words alone ("no", "not really", "yes I am"): it
    answers the last question and is read as such (:func:`answer_level`), not for what else it says."""
    words = re.findall(r"[a-z]+", normalise(text))
    return bool(words) and len(words) <= ANSWER_WORDS and set(words) <= _ANSWER_VOCABULARY


def asked_in(reply: str) -> str:
    """Which question ``reply`` ends with: ``plan``, ``thoughts``, ``safe`` or "" (none of those)."""
    questions = [q for q in re.split(r"(?<=[?])", reply or "") if q.strip().endswith("?")]
    last = questions[-1] if questions else ""
    if _ASKS_PLAN.search(last):
        return "plan"
    if _ASKS_THOUGHTS.search(last):
        return "thoughts"
    return "safe" if _ASKS_SAFE.search(last) else ""


def answer_level(text: str, asked: str) -> str:
    """The level ``text`` gives as an answer to the question ``asked`` (:func:`asked_in`): ``high``
    for "I'm not safe" and for yes / unsure to *plan* (C-SSRS: method or plan), ``moderate`` for no /
    unsure to *safe* or yes / unsure to *thoughts*, else ``none``."""
    if asked not in ("safe", "thoughts", "plan"):
        return "none"
    t = normalise(text).strip()
    words = re.findall(r"[a-z]+", t)
    # Said outright, in a reply short enough to be about the question (a long message about feeling
    # unsafe among neighbours in a pandemic is read for what it says).
    if asked == "safe" and len(words) <= SAID_WORDS and _SAID_NOT_SAFE.search(t):
        return "high"
    if not answer_only(text) or _FINE.search(t):
        return "none"
    if asked == "safe":
        return "moderate" if _NOT_SAFE.search(t) else "none"
    return ("high" if asked == "plan" else "moderate") if _YES.search(t) else "none"


def advance(prev: ConversationRisk | None, *, message_level: str, severity: float, subject: str,
            dimensions: Mapping[str, float], now: float | None = None, text: str = "",
            asked: str = "", floor: str = "none", floor_reason: str = "") -> ConversationRisk:
    """The conversation's risk after one more message (pure: same inputs, same output).
    ``asked``: the question the agent's last reply ended with (:func:`asked_in`), "" if none;
    ``floor``: a level the conversation's clinical reading keeps at least (a means question still
    open, :data:`MEANS_OPEN`) unless the message is a short answer, with its ``floor_reason``."""
    prev = prev or ConversationRisk()
    now = time.time() if now is None else now
    hours = max(0.0, (now - prev.updated_at) / 3600.0) if prev.updated_at else 0.0
    keep = DECAY * 0.5 ** (hours / TIME_HALF_LIFE_H)
    history = prev.score * keep
    s = max(float(severity), float(level_index(message_level)))
    level, reason, answered_q = message_level, "", ""
    if (history >= CONTEXT_CRISIS and (s >= AMBIGUOUS or _GIVING_UP.search(text or ""))
            and level_index(level) < level_index("moderate")):
        level, reason = "moderate", f"read in context: earlier risk {history:.2f}, this message {s:.2f}"
    elif history >= CAREFUL and level_index(level) < level_index("low") and prev.turns_since_crisis is not None:
        # Careful only after a crisis turn: a single warning sign got its own check-in, and a
        # check-in on every following turn answered almost half the turns of real support chats.
        level, reason = "low", f"careful after earlier risk ({history:.2f})"
    if level_index(floor) > level_index(level) and not answer_only(text):
        # (A short answer is read as the answer, below, not held at the floor.)
        level, reason = floor, floor_reason
    # The message as an answer to the question the last reply asked (module docstring).
    answered = answer_level(text, asked)
    if answered != "none":
        # Not safe after an emergency reply is still the emergency: the answer keeps the level the
        # agent acted on last turn when that was higher.
        answered = max(answered, prev.level, key=level_index)
    if level_index(answered) > level_index(level):
        level, reason, answered_q = answered, f"{ANSWERED} ({asked}): {answered}", asked
        s = max(s, float(level_index(answered)))
    # The emergency of an earlier turn is still on until help is reached (module docstring).
    t = normalise(text or "")
    # Said not to be happening now: read once (only while an emergency is on), for both branches below.
    not_now = prev.emergency_turns is not None and bool(_NOT_NOW.search(t))
    emergency, helped = prev.emergency_turns, False
    after_crisis = (prev.turns_since_crisis is not None and prev.turns_since_crisis < EMERGENCY_TURNS
                    and level_index(prev.peak) >= level_index("high"))
    if (emergency is not None or after_crisis) and _HELP_REACHED.search(t):
        # Help reached in an emergency or right after high risk: the emergency words in the message
        # are the emergency's, already answered ("I rang 999, they're sending an ambulance" reads
        # imminent by itself); the reply is glad and stays (the protocol route with `help_coming`,
        # not "call 999 now" to someone who just did).
        emergency, helped = None, True
        level, reason = "moderate", "help reached in the emergency"
    elif message_level == "imminent":
        emergency = 0
    elif emergency is not None and emergency + 1 <= EMERGENCY_TURNS and hours <= EMERGENCY_HOURS and not not_now:
        emergency += 1
        if level != "imminent":  # ("no" to "are you safe?" kept it already: answered)
            # (The accumulator keeps what was said: the kept level adds no severity of its own.)
            level, reason = "imminent", f"{ONGOING} ({emergency} turn{'s' if emergency > 1 else ''} after)"
    else:
        if emergency is not None and hours > EMERGENCY_HOURS and not not_now and level_index(level) < level_index("moderate"):
            # Back hours later with no word of help reached ("hi again" the morning after an
            # overdose): the person is asked after before anything else (the `still` reply).
            level, reason = "moderate", "back after an emergency with no word of help reached"
        emergency = None
    score = min(MAX_SCORE, history + max(0.0, s - NOISE))
    dims = {k: v * keep for k, v in prev.dimensions.items() if v * keep >= 0.05}
    for k, v in dimensions.items():
        dims[k] = max(dims.get(k, 0.0), float(v))
    crisis_now = level_index(level) >= level_index("moderate")
    since = 0 if crisis_now else (None if prev.turns_since_crisis is None else prev.turns_since_crisis + 1)
    new_subject = subject if subject != "none" and level != "none" else (prev.subject if level != "none" else "none")
    if level_index(level) > level_index(message_level) and prev.subject != "none":
        # Raised by what was said earlier: the danger is still whose the conversation was about ("my
        # flatmate is out tonight" after the person's own crisis is not someone else at risk).
        new_subject = prev.subject
    peak = max(prev.peak, level, key=level_index)
    return replace(prev, score=score, level=level, peak=peak, turns_since_crisis=since, subject=new_subject,
                   dimensions=dims, turns=prev.turns + 1, updated_at=now, reason=reason, answered=answered_q,
                   emergency_turns=emergency, help_reached=helped)

