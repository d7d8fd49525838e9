"""Crisis detection: does this message say the person (or someone with them) is in danger?

Two layers, because each fails differently:

1. **Patterns** (high precision on explicit phrasing): first-person suicidal ideation, self-harm,
   and violence or abuse toward the person; someone else at risk ("my friend says she wants to kill
   herself").  Before matching, idioms are blanked out ("this traffic is killing me", "dying to
   see it", "bored to death"), and explicit negations are recognised ("I would never hurt myself",
   "I'm not suicidal") so they do not fire — unless another, un-negated signal is present.  A bare
   topic word ("suicide") in a topic context (essay, documentary, prevention, statistics) does not fire.
2. **Semantic** (recall on implicit phrasing, "everyone would be better off without me"): the
   message's MiniLM sentence embedding against a bank of crisis and safe exemplars
   (:mod:`empathic_agent.safety.exemplars`, written separately from the evaluation set); it fires
   when the nearest crisis exemplar is close and clearly closer than the nearest safe one.

Errs towards firing: a false alarm costs a gentle check-in with resources, a miss can cost a life.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from empathic_agent.safety.exemplars import CRISIS_EXEMPLARS, SAFE_EXEMPLARS

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.settings import Settings

__all__ = ["SafetyAssessment", "CrisisDetector", "CATEGORIES", "SUICIDE", "SELF_HARM", "ABUSE", "OTHERS_AT_RISK",
           "normalise", "pattern_signals"]

log = logging.getLogger(__name__)

SUICIDE: Final = "suicide"
SELF_HARM: Final = "self_harm"
ABUSE: Final = "abuse"
#: Someone else (a friend, a child) is at risk: the person needs resources to help them.
OTHERS_AT_RISK: Final = "others_at_risk"
CATEGORIES: Final = (SUICIDE, SELF_HARM, ABUSE, OTHERS_AT_RISK)

#: Semantic layer: fire when the nearest crisis exemplar has cosine >= this ...
SEMANTIC_MIN_SIM: Final[float] = 0.50
#: ... and is at least this much closer than the nearest safe exemplar.
SEMANTIC_MARGIN: Final[float] = 0.10
#: A crisis exemplar this close fires whatever the safe bank says.
SEMANTIC_SURE_SIM: Final[float] = 0.80


@dataclass(frozen=True)
class SafetyAssessment:
    """What the safety stage concluded about one message."""

    crisis: bool
    #: One of :data:`CATEGORIES` when ``crisis`` (the strongest signal's), else None.
    category: str | None = None
    #: 0-1: 1.0 for an explicit pattern, the cosine similarity for a semantic match.
    score: float = 0.0
    #: What fired: ``pattern:<name>`` / ``semantic:<exemplar category>`` entries.
    signals: tuple[str, ...] = ()
    #: Explicit negations recognised (and discounted), e.g. ``negated:never-hurt-myself``.
    discounted: tuple[str, ...] = ()
    seconds: float = 0.0
    #: Filled by the graph on a crisis: the protocol's resources shown to the person.
    resources: tuple[dict[str, str], ...] = field(default=())
    message: str = ""
    #: The locale's emergency number (on a crisis).
    emergency: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"crisis": self.crisis, "category": self.category, "score": round(self.score, 4),
                "signals": list(self.signals), "discounted": list(self.discounted), "seconds": round(self.seconds, 4),
                "resources": [dict(r) for r in self.resources], "message": self.message, "emergency": self.emergency}


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
    r"\bbeat(ing)? myself up\b", r"^\W*beats me\b|\b(it|that) beats me\b|\bbeats me (why|how|what|where|when)\b", r"\bcut myself off from (social media|the news|twitter)\b",
    r"\bshoot(ing)? myself in the foot\b", r"\bkill(ing)? myself (laughing|at the gym|with work)\b",
)]

#: Explicit negations of a danger signal (discounted; the message can still fire on another signal).
_NEGATIONS = [(name, re.compile(p)) for name, p in (
    ("never-hurt-myself", r"\b(would|will|could) (never|not) (ever )?(kill|hurt|harm|cut) myself\b"),
    ("not-going-to-hurt-myself", r"\b(i am )?not (going|gonna) to (kill|hurt|harm|cut) myself\b"),
    ("not-suicidal", r"\b(i am|i have|i have never been|i was) (not|never|never been) (been )?suicidal\b"),
    ("not-suicidal-short", r"\bnot suicidal\b"),
    ("no-thoughts", r"\bno (thoughts|plans?|intention|intent) (of|to|about) (suicide|killing myself|hurting myself|harming myself|ending (it|my life))\b"),
    ("do-not-want-to-die", r"\bi do not want to die\b(?! alone)"),
    ("never-self-harm", r"\b(never|not) (self[- ]?harm(ed|ing)?|cut|cutting|hurt myself)\b"),
    # Past, with recovery: "I used to self-harm but I've been fine for years" (a history, not now).
    ("not-thinking-of-it", r"\bnot (thinking|planning) (of|about|on) (hurting|killing|harming|cutting) myself\b"),
    ("never-wanted-to-die", r"\bnever (wanted|want|wished) to (die|kill myself|be dead)\b"),
    ("recovered", r"[^.!?]*\b(used to|years ago|back then|last year|in (college|school|high school|university)|when i was (a )?(teen|teenager|younger|kid|child)|as a (teen|teenager|kid))\b[^.!?]*"
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
    (SUICIDE, "suicidal", r"\b(feel|feeling|felt|am|been|get|getting|becoming|so|really|very|quite) (so |really |very |quite |a bit |kind of )?suicidal\b|\bsuicidal (thoughts|feelings|ideation|again)\b|\bthoughts of suicide\b"),
    (SUICIDE, "commit-suicide", r"\b(commit|committing|attempt|attempting|attempted|thinking about|think about|considering|planning|plan) (to commit )?suicide\b"),
    (SUICIDE, "want-to-die", r"\b(i|i just|i really|part of me|sometimes i) (want|wanted|wanna|wish) (to die|to be dead|i (was|were) dead|i could die|i would die|i (was|were) never born|i could disappear forever)\b"),
    (SUICIDE, "better-off-dead", r"\bbetter off dead\b|\bbetter off without me\b|\bhappier without me\b|\bwould not miss me\b|\bno one would (miss|notice) (me|if i (was|were) gone)\b"),
    (SUICIDE, "no-reason-to-live", r"\b(no|not any|lost (my|all)|(cannot|do not) see any|(do not|cannot) find any) (reason|point|will) (to|in) (live|living|go on|going on|keep going|keep living|stay|staying alive|be alive)\b|\blife is not worth living\b|\bnot worth living\b"),
    (SUICIDE, "not-want-to-live", r"\bi (do not|no longer|really do not) want to (live|be alive|exist|be here anymore|wake up)\b|\bi (hope|wish) i (do not|never) wake up\b"),
    (SUICIDE, "not-be-here", r"\b(will not|am not going to|might not) (be here|be around) (much longer|anymore|for long|tomorrow|next week)\b"),
    (SUICIDE, "said-goodbyes", r"\bi (have )?(said|am saying|been saying) (my )?goodbyes?\b"),
    (SUICIDE, "nobody-would-care", r"\b(nobody|no one|no-one) would (care|notice|miss me|even notice|even care) if i (died|was gone|were gone|disappeared|killed myself|was dead|were dead)\b"),
    (SUICIDE, "jump-from", r"\b(jump|jumping|throw myself|throwing myself) (off|from|out of) (the |a |my )?(roof|rooftop|bridge|building|balcony|cliff|window|car park)\b"),
    (SUICIDE, "goodbye-note", r"\b(wrote|writing|write|left) (a|my) (suicide|goodbye|farewell) (note|letter)\b|\bsaying goodbye to everyone\b|\bgave away (all )?my (things|stuff|belongings)\b"),
    (SUICIDE, "means", r"\b(stockpiling|saved up|saving up|collecting|have|bought|got) (enough |all (my|the) )?(pills|sleeping pills|a rope|rope|a gun)\b.*\b(end|die|it|enough|ready)\b|\b(bridge|rooftop|roof|train tracks)\b.*\b(jump|jumping)\b|\bjump (off|from|in front of)\b"),
    (SUICIDE, "means-ready", r"\b(pills|tablets|rope|gun|razor|blade|noose)s? (are |is )?(ready|here|next to me|in my hand)\b|\b(take|swallow|taking|swallowing) (them all|all of them|all (my|the) (pills|tablets|meds))\b"),
    (SUICIDE, "cannot-go-on", r"\bi cannot (go on|keep going|do this anymore|take (it|this) anymore|live like this)\b"),
    (SUICIDE, "disappear-forever", r"\b(disappear|vanish|sleep) (forever|and never wake up)\b"),
    # Warning signs (988 Lifeline / AFSP lists): burden, no way out, done with life, goodbyes,
    # giving things away, researching methods, not waking up, no point in living.
    (SUICIDE, "burden", r"\b(i am|i feel like|i have become|i am just) (a|such a|nothing but a) (burden|waste of space)\b|\b(will not|do not|never) have to (deal with|worry about|put up with|take care of) me\b"),
    (SUICIDE, "no-way-out", r"\bno way out\b|\bonly way out\b"),
    (SUICIDE, "done-with-life", r"\b(done|finished|through) with (life|living|being alive|it all)\b"),
    (SUICIDE, "made-peace", r"\bi have made (my )?peace\b|\bready to (die|leave this world|go for good)\b"),
    (SUICIDE, "last-message", r"\b(this is|consider this|here is) my (last|final) (message|post|goodbye|words)\b"),
    (SUICIDE, "giving-away", r"\bgiv(e|ing|en) (away )?(all )?my (things|stuff|belongings|possessions)( away)?\b"),
    (SUICIDE, "methods", r"\b(ways|how|best way|easiest way|quickest way|painless way) to (die|kill myself|end it|end my life)\b|\bdie painlessly\b"),
    (SUICIDE, "not-wake-up", r"\b(go to sleep|sleep|fall asleep) and (not|never) wake up\b"),
    (SUICIDE, "point-of-living", r"\b(what is|there is no|there is not any|no|i do not see the|cannot see the) (the )?point (of|in) (living|life|going on|being alive|staying alive)\b"),
    (SUICIDE, "rather-not-exist", r"\b(rather|prefer to|want to) not (be here|exist|be alive)( at all| anymore)?\b"),
    (SUICIDE, "if-i-were-gone", r"\b(notice|care|miss me) if i (was|were) gone\b|\bif i (just )?(was|were) (gone|not alive|not here|dead)\b"),
    (SUICIDE, "over-for-good", r"\bwant (it|this|everything|all of it) to (be over|end|stop) (for good|forever|permanently)\b"),
    (SUICIDE, "crash-on-purpose", r"\b(drive|driving|crash|crashing|steer|steering)( my car)? into (oncoming traffic|a (wall|tree|truck))\b|\bstep(ping)? in front of (a|the) (train|bus|truck|car)\b"),
    # self-harm
    (SELF_HARM, "hurt-myself", r"\b(cut|cutting|burn|burning|hurt|hurting|harm|harming|hit|hitting|scratch|scratching|punish|punishing|starve|starving) myself\b"),
    (SELF_HARM, "self-harm", r"\bself[- ]?harm(ing|ed)?\b|\bself[- ]?injur(y|ing)\b"),
    (SELF_HARM, "cut-my-wrists", r"\b(cut|cuts|slit|slits|slash|slashed|slitting|cutting) (my|into my) (wrists?|arms?|legs?|thighs?|skin|stomach)\b"),
    (SELF_HARM, "burn-my-skin", r"\b(burn|burns|burned|burnt|burning) (my|myself on the) (arms?|skin|legs?|hands?|wrists?)\b[^.!?]*\b(cigarettes?|lighter|on purpose|upset|angry|sad|when i|to feel)\b"),
    (SELF_HARM, "hurt-my-body", r"\bhurt(ing)? my (own )?body\b"),
    (SELF_HARM, "urge-to-cut", r"\b(want|need|urge|urges|tempted) to (cut|burn|hurt myself|self[- ]?harm)\b"),
    (SELF_HARM, "cutting-again", r"\b(started|start|began|been) (cutting|burning) (again|myself)?\b|\brelapsed\b.*\bcutting\b"),
    (SELF_HARM, "overdose", r"\b(overdose|overdosed|overdosing|od'?d)\b|\btook (too many|a (bunch|handful|lot) of|all (my|the)) (pills|tablets|meds)\b"),
    # violence / abuse toward the person
    (ABUSE, "hits-me", rf"\b{_ABUSER} (hits|hit|beats|beat|hurts|hurt|chokes|choked|strangles|strangled|kicks|kicked|slaps|slapped|punches|punched|shoves|shoved|burns|burned|locks|locked) me\b"),
    (ABUSE, "assaulted", r"\b(i was|i have been|i am being|i got|been|being|was) (raped|sexually assaulted|assaulted|molested|abused|beaten( up)?|attacked|groomed|trafficked)\b"),
    (ABUSE, "threatens-me", rf"\b{_ABUSER} (threatens|threatened|keeps threatening|is threatening|said (he|she|they) (would|will)|says (he|she|they) (will|would)|will) (to )?(kill|hurt|beat|stab|shoot) me\b|\b(make|making) me (pay|regret it|suffer)\b"),
    (ABUSE, "going-to-kill-me", rf"\b{_ABUSER} (is|are) going to (kill|hurt|beat|stab|shoot) me\b"),
    (ABUSE, "stalked", r"\b(keeps|kept|is|has been|started) (following|stalking|watching) me\b"),
    (ABUSE, "afraid-of-them", rf"\b(afraid|scared|terrified) (that )?{_ABUSER} (will|is going to|are going to|might) (kill|hurt|beat|find) me\b|\bafraid for my life\b|\bfear for my (life|safety)\b"),
    (ABUSE, "unsafe-at-home", r"\b(not|do not feel|never feel|never) safe (at home|in my (home|house|own home))\b|\bafraid to go home\b"),
    (ABUSE, "touches-me", rf"\b{_ABUSER} (touches|touched|forces|forced|makes|made) me\b.*\b(do not|did not|never) want\b|\bforced me to (have sex|do sexual|sleep with)\b"),
    # someone else at risk
    (OTHERS_AT_RISK, "other-kill-self", rf"\b{_REL}\b.*\b(kill|killing|hurt|hurting|cut|cutting|harm|harming|end|ending) (herself|himself|themself|themselves|(her|his|their) (own )?life)\b"),
    (OTHERS_AT_RISK, "other-suicidal", rf"\b{_REL}\b.*\b(is|seems|sounds|has been|was|said (she|he|they) (is|was|are|were)|told me (she|he|they) (is|was|are|were)) (so |really |very )?suicidal\b|\b{_REL}\b.*\b(wants|wanted|said (she|he|they) wants?|told me (she|he|they) wants?) to die\b"),
    (OTHERS_AT_RISK, "other-not-live", rf"\b{_REL}\b.*\b(does not|do not|does not really|no longer) want(s)? to (live|be alive|be here)\b|\b{_REL}\b.*\b(said|told me|says|keeps saying) (that )?(she|he|they) (does not|do not|no longer) want(s)? to (live|be alive|be here)\b"),
    (OTHERS_AT_RISK, "other-goodbye-pills", rf"\b{_REL}\b.*\b(said goodbye|texted goodbye|pills|overdose|overdosed|locked (himself|herself|themselves) in)\b[^.!?]*\b(pills|goodbye|not answering|will not answer|bathroom)\b"),
    (OTHERS_AT_RISK, "other-abused", rf"\b{_REL}\b.*\b(is being|was|has been|got|is getting) (abused|beaten|raped|hit)\b"),
)]


def _suppress_topic(name: str, text: str) -> bool:
    """A topic mention: the word appears, but about the subject rather than the speaker."""
    return name in ("commit-suicide", "self-harm", "overdose") and bool(_TOPIC.search(text)) and not re.search(
        r"\bi (am|was|have been|keep|cannot stop) (thinking|considering|planning)\b", text)


def pattern_signals(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(category, pattern name) matches of a normalised message, and the negations discounted."""
    t = normalise(text)
    for idiom in _IDIOMS:
        t = idiom.sub(" ~ ", t)
    discounted: list[str] = []
    for name, neg in _NEGATIONS:
        if neg.search(t):
            discounted.append(f"negated:{name}")
            t = neg.sub(" ~ ", t)
    hits = [(cat, name) for cat, name, pat in _PATTERNS if pat.search(t) and not _suppress_topic(name, t)]
    # "my friend ... kill herself" must not also count as the speaker's own words.
    if any(cat == OTHERS_AT_RISK for cat, _ in hits):
        hits = [(c, n) for c, n in hits if c == OTHERS_AT_RISK or not re.search(r"\b(herself|himself|themsel(f|ves))\b", t)]
    return hits, discounted


# -- the detector ---------------------------------------------------------------------------------

class CrisisDetector:
    """Patterns + semantic similarity.  ``embedder`` (an :class:`~empathic_agent.memory.embedder.Embedder`;
    None = patterns only) loads on first use; thread-safe."""

    def __init__(self, embedder: "Embedder | None" = None, *, min_sim: float = SEMANTIC_MIN_SIM,
                 margin: float = SEMANTIC_MARGIN, sure_sim: float = SEMANTIC_SURE_SIM) -> None:
        self.embedder = embedder
        self.min_sim, self.margin, self.sure_sim = min_sim, margin, sure_sim
        self._bank: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings", *, embedder: "Embedder | None" = None) -> "CrisisDetector":
        if embedder is None and settings.safety_semantic:
            from empathic_agent.memory.embedder import load_embedder

            embedder = load_embedder(settings)
        return cls(embedder)

    def load(self) -> None:
        self._exemplars()

    def _exemplars(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._bank is None:
                assert self.embedder is not None
                crisis = self.embedder.embed([text for _, text in CRISIS_EXEMPLARS])
                safe = self.embedder.embed(list(SAFE_EXEMPLARS))
                self._bank = (np.asarray(crisis, np.float32), np.asarray(safe, np.float32))
            return self._bank

    def semantic(self, text: str) -> tuple[float, float, str | None]:
        """(best crisis similarity, best safe similarity, category of the best crisis exemplar)."""
        if self.embedder is None:
            return 0.0, 0.0, None
        crisis, safe = self._exemplars()
        q = np.asarray(self.embedder.embed([text]), np.float32)[0]
        cs, ss = crisis @ q, safe @ q
        i = int(np.argmax(cs))
        return float(cs[i]), float(ss.max()), CRISIS_EXEMPLARS[i][0]

    def assess(self, text: str) -> SafetyAssessment:
        t0 = time.perf_counter()
        hits, discounted = pattern_signals(text)
        signals = [f"pattern:{cat}:{name}" for cat, name in hits]
        category, score = (hits[0][0], 1.0) if hits else (None, 0.0)
        if not hits and text.strip():
            try:
                best, best_safe, cat = self.semantic(text)
            except Exception as exc:  # noqa: BLE001 — the pattern layer still stands
                log.warning("safety: semantic layer failed (%s); patterns only", exc)
                best, best_safe, cat = 0.0, 0.0, None
            # Negated messages ("I would never hurt myself") sit close to crisis exemplars by
            # meaning: after an explicit negation both bars are raised.
            floor = self.sure_sim if discounted else self.min_sim
            sure = self.sure_sim + (0.1 if discounted else 0.0)
            if cat is not None and (best >= sure or (best >= floor and best - best_safe >= self.margin)):
                signals.append(f"semantic:{cat}:{best:.3f}/{best_safe:.3f}")
                category, score = cat, best
        return SafetyAssessment(crisis=bool(signals), category=category, score=score, signals=tuple(signals),
                                discounted=tuple(discounted), seconds=time.perf_counter() - t0)
