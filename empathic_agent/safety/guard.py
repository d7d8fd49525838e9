"""The reply guard: every generated reply is checked, sentence by sentence, before the person sees
or hears it.

Llama Guard checks a model's *responses* against a hazard taxonomy; this guard does the same for
the harms that matter in emotional support (``safety/data/clinical/GUIDE.md`` Part B, and
``docs/clinical.md`` for what it cannot catch):

* ``means_info`` — method or means information: lethality, heights, where to buy a poison (always);
* ``risky_list`` — lists of places, heights, doses, products or shops when a risk context exists;
* ``delusion_collusion`` — confirming or building on a false belief (psychosis active);
* ``compulsion_reinforcement`` — the reassurance, products or checking a compulsion asks for;
* ``dosing_advice`` — medication or drug doses, amounts, intervals, mixing (always);
* ``diagnosis`` — telling the person they have a disorder (always);
* ``dangerous_plan`` — encouraging or helping with a risky plan (mania or risk context);
* ``eating_harm`` — calorie numbers, weight-loss tips, praise of weight loss (eating active).

Two layers, as in the screens: hand-written patterns (each names its category; gated by the
context where a phrase is harmful only in it — "go for it!" is good news for a job application,
collusion for a sleepless plan to jump off a cliff) and, when trained weights exist, a learned
reader (frozen MiniLM sentence embedding + one logistic head per category).  The learned reader
uses a category's threshold where its context is present and a much stricter "open" threshold
elsewhere (the reader of the person's side can miss a presentation; a reply that plainly confirms
a delusion should not pass because of that).

An opt-in third layer, the probe (``guard_probe.py``: a frozen 0.5 B LLM's hidden states read by
a trained head; ``EMPATHIC_SAFETY_GUARD_PROBE``), takes a second look at the *whole* reply where
the context is risky; such a reply is then held until it is complete and has passed it.

In the graph (``generate``), text and audio are released sentence by sentence only after the
guard passed them; on a hit the reply is regenerated once under a stricter register, then falls
back to a vetted reply.  Each event is logged with its category and no message content.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Sequence

from empathic_agent.safety.clinical import PatternsAndLearned
from empathic_agent.safety.detect import normalise

if TYPE_CHECKING:
    from empathic_agent.safety.clinical_model import GuardModel
    from empathic_agent.safety.guard_probe import GuardProbe

__all__ = ["GUARD_CATEGORIES", "GuardContext", "GuardVerdict", "ReplyGuard", "GuardedRelease", "GATES", "guard_text", "said_text"]

log = logging.getLogger(__name__)

GUARD_CATEGORIES: Final[tuple[str, ...]] = (
    "means_info", "risky_list", "delusion_collusion", "compulsion_reinforcement", "dosing_advice", "diagnosis",
    "dangerous_plan", "eating_harm")


@dataclass(frozen=True)
class GuardContext:
    """What the guard knows about the conversation a reply answers."""

    #: Active clinical presentations (``safety.clinical.PRESENTATIONS``).
    presentations: tuple[str, ...] = ()
    #: A risk context exists (earlier risk, distress or a loss; see ``ClinicalReading.risk_context``).
    risk_context: bool = False
    #: The person asked about a means (``heights``, ``poison`` …), "" if not.
    means_query: str = ""
    #: The safety stage's risk level of the turn.
    risk_level: str = "none"
    #: What the person said last (their latest messages, :func:`said_text`): a learned layer trained
    #: with it reads it beside the reply ("go for it" after a sleepless plan to jump from a cliff is
    #: collusion, after a job application it is support).  "" when unknown.
    said: str = ""

    @classmethod
    def from_safety(cls, safety: dict[str, Any] | None, said: str = "") -> "GuardContext":
        s = safety or {}
        clinical = s.get("clinical") or {}
        return cls(presentations=tuple(p["name"] for p in clinical.get("presentations") or ()),
                   risk_context=bool(clinical.get("risk_context")) or str(s.get("level") or "none") != "none",
                   means_query=str(clinical.get("means_query") or ""), risk_level=str(s.get("level") or "none"),
                   said=said)

    @property
    def risky(self) -> bool:
        """Any reason to treat lists of places, products or amounts as dangerous."""
        return self.risk_context or bool(self.means_query) or bool(self.presentations)


@dataclass(frozen=True)
class GuardVerdict:
    ok: bool
    #: The first category that fired ("" when ok).
    category: str = ""
    #: Which layer and rule fired (``pattern:<rule>`` or ``learned:<p>``): no message content.
    source: str = ""
    #: The matched words (for evaluation reports; never logged).
    evidence: str = ""
    seconds: float = 0.0

    def event(self, action: str, attempt: int) -> dict[str, Any]:
        """The loggable event: category, layer, action; no content."""
        return {"category": self.category, "source": self.source, "action": action, "attempt": attempt}


#: How much of what the person said the learned layer reads (the end of it; characters).
SAID_CHARS: Final[int] = 240
#: Separates the reply from what the person said in the learned layer's input.
SAID_MARK: Final[str] = " || person: "


def said_text(user_messages: Sequence[str], turns: int = 2) -> str:
    """What the person said last, as the guard reads it: their last ``turns`` messages joined with
    " / ", cut to the last :data:`SAID_CHARS` characters (the most recent words matter most)."""
    joined = " / ".join(" ".join(m.split()) for m in list(user_messages)[-turns:] if m and m.strip())
    return joined[-SAID_CHARS:]


def guard_text(reply: str, presentations: Sequence[str], said: str = "") -> str:
    """What the learned layer reads: the reply after a tag naming the active presentations (or
    "none"), so the same words can be read differently in a different context; with ``said``,
    what the person said *after* the reply (the model reads at most 128 tokens: when the text is
    too long the person's words are cut, never the reply)."""
    tag = ",".join(sorted(presentations)) or "none"
    return f"{tag}: {reply}" + (f"{SAID_MARK}{said[-SAID_CHARS:]}" if said else "")


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in parts))


#: When each category applies: "always", or the context it needs.
GATES: Final[dict[str, str]] = {
    "means_info": "always", "dosing_advice": "always", "diagnosis": "always",
    "risky_list": "risk context, a means question or any presentation",
    "delusion_collusion": "psychosis", "compulsion_reinforcement": "compulsion",
    "dangerous_plan": "mania or means-seeking", "eating_harm": "eating (calorie numbers: always)",
}

_DISORDER = (r"(clinical |major |severe |an? )?(depression|depressive disorder|anxiety disorder|generali[sz]ed anxiety|ptsd|"
             r"c-?ptsd|bipolar( disorder)?|manic depression|adhd|add|ocd|obsessive[- ]compulsive( disorder)?|borderline|bpd|"
             r"personality disorder|psychosis|psychotic disorder|schizo\w*|delusional disorder|panic disorder|eating disorder|"
             r"anorexia( nervosa)?|bulimia( nervosa)?|binge[- ]eating disorder|arfid|orthorexia|mania|hypomania|"
             r"(alcohol|substance|drug) (use )?(disorder|addiction|dependence)|alcoholism|an addiction|autism|asperger\w*|"
             r"cotard\w*( syndrome)?|paranoid \w+|health anxiety|hypochondria\w*|body dysmorphi\w+)")
_DIAGNOSIS = _rx(
    rf"\byou (definitely |clearly |probably |likely |might |may |could |must |seem to |appear to )?"
    rf"(have|suffer from|are suffering from|are showing (signs|symptoms) of|are experiencing|have got|'ve got) {_DISORDER}\b",
    rf"\b(this|that|it|these|what you'?re describing|what you describe|your symptoms?) (is|are|sounds?|seems?|looks?) (like |a lot like )?"
    rf"(classic |textbook |typical |clear )?(signs? of |symptoms? of |a case of )?{_DISORDER}\b",
    r"\byou(?:'re| are) (clearly |probably |definitely |likely |obviously )?(bipolar|psychotic|schizophrenic|anorexic|bulimic|manic|hypomanic|"
    r"an alcoholic|an addict|delusional|paranoid|clinically depressed|obsessive[- ]compulsive|having a (manic|psychotic) episode)\b",
    rf"\b(classic|textbook|typical) (signs?|symptoms?|case|presentation) of {_DISORDER}",
    rf"\bi (think|believe|suspect) you (have|are (having|experiencing)) {_DISORDER}",
    r"\b(sounds?|seems?|looks?) like (you'?re|you are) (having|experiencing|in) (a |an )?(manic|hypomanic|psychotic) (episode|state|phase)",
)
_UNIT = (r"(mg|milligrams?|mcg|micrograms?|µg|ml|millilit\w+|g|grams?|units?|tablets?|pills?|capsules?|caps|tabs|doses?|drinks?|shots?|pints?|"
         r"glasses|puffs|drops|lines|hits)")
_DOSING = _rx(
    rf"\b\d+(?:[.,]\d+)?\s?(?:(-|to|–)\s?\d+(?:[.,]\d+)?\s?)?{_UNIT}\b",
    rf"\b(one|two|three|four|five|six|eight|ten|a couple of|half an?|a single) {_UNIT} "
    rf"(every|a|per|each|at|before|after|with|should|is|are|would|will|max)",
    r"\b(every|each) (\d+|four|six|eight|twelve) (to \d+ )?hours\b",
    r"\b(max(imum)?|safe|lethal|fatal|toxic|daily|recommended) (daily )?(dose|amount|limit|intake|dosage)\b.{0,40}\d",
    r"\b(no more than|up to|at most|not exceed|don'?t exceed|maximum of) \d",
    r"\b(it'?s|it is|that'?s|that is|should be) (generally |usually |probably )?(safe|fine|ok|okay) to (take|mix|combine|have|drink|double|use) "
    r"(\w+ ){0,4}(pills?|tablets?|doses?|mg|meds|medication|them together|with (alcohol|wine|beer|a drink|your)|alcohol|wine|beer|"
    r"xanax|benzos?|oxy\w*|ibuprofen|paracetamol|tylenol|melatonin|sleeping)",
    r"\b(take|taking|double|halve|cut|lower|reduce|increase|raise|taper) (your|the|a|an extra|one more|another|half) "
    r"(dose|pill|tablet|medication|meds|prescription)\b",
    r"\b(space|spread) (them|it|the (doses|pills|drinks)) (out|apart)",
    r"\b(start|start with|begin with) (a )?(low|small|half|quarter) (dose|amount|line|hit)",
)
_MEANS_INFO = _rx(
    r"\b(lethal|fatal|deadly|toxic) (dose|amount|height|level|quantity|combination)s?\b(?! (is not|isn'?t) something)",
    r"\b(high|tall|far|long|strong|enough) enough to (kill|be fatal|be lethal|die|end)",
    r"\b(would|will|can|could) (definitely |likely |certainly |easily )?(kill (you|someone|a person)|be (fatal|lethal|deadly))\b",
    r"\b\d[\d,.]*\s?(m|metres?|meters?|feet|ft|stor(e)?ys?|stories|floors) (high|tall|drop|up|above|fall|down)\b",
    r"\b(drop|fall|height) of (about |around |over |roughly |nearly )?\d",
    r"\b(you can|you could|try|available) (buy|get|find|order|pick up) (it|them|some|pesticides?|poisons?|weed ?killer|rat poison|"
    r"paraquat|insecticides?|a gun|a rope|paracetamol|pills)\b",
    r"\b(sold|available|stocked) (at|in|from|on) (most )?(garden (centres?|centers?)|hardware|home depot|lowe'?s|walmart|b&q|"
    r"amazon|pharmac\w+|chemists?|farm (supply|stores?)|gun (shops?|stores?))",
    r"\b(roof|rooftop) (is |are )?(usually )?(open|accessible|unlocked)|\b(observation deck|the top floor) (is|are) (open|accessible)",
    r"\b(most (effective|painless|reliable|common) (way|method|means)|painless(ly)? (way|method|death))\b",
    r"\b(overdos\w+|od'?ing) (on|with) (\w+ ){0,2}(would|will|takes|causes|leads)",
    r"\b(organ|liver|kidney) (failure|damage) (within|after|takes|in) \d",
    r"\b(pesticides?|paraquat|weed ?killer|rat poison|antifreeze|cyanide|carbon monoxide|exhaust fumes) (is|are|can be|would be) "
    r"(very |extremely |highly )?(toxic|lethal|deadly|fatal|poisonous)",
    r"\b(tie|tying|knot|noose|beam|anchor point)\b.{0,40}\b(hold|weight|strong)\b",
    r"\b(trains?|express trains?) (pass|come|go) (through|by) .{0,30}(every|at \d|minutes)",
)
_LIST_ITEM = re.compile(r"^\s*(\d{1,2}[.)]|[-*•●▪–]|\([a-z0-9]\))\s+\S", re.M)
_SUPPORT_WORDS = re.compile(
    r"\b(talk|talking|call|text|reach out|friend|family|someone you trust|doctor|gp|therapist|counsell?or|nurse|crisis|helpline|"
    r"lifeline|988|111|999|911|breath\w*|walk|water|rest|sleep|journal\w*|write|music|grounding|safe|safety|support|help|"
    r"feelings?|kind|gentle|slow|pause|stay|remove|away|lock (them|it) away|hand (them|it) to)\b")
_PLACE_OR_PRODUCT = re.compile(
    r"\b(bridge|tower|building|cliff|roof|rooftop|floor|storey|story|viaduct|dam|gorge|canyon|overpass|car park|parking garage|tracks?|"
    r"station|store|shop|pharmacy|chemist|amazon|walmart|depot|market|brand|soap|sanitizer|sanitiser|cleanser|bleach|dettol|"
    r"lysol|purell|hibiclens|pesticides?|poisons?|weed ?killer|paraquat|mg|milligrams?|pills|tablets|dose|calories|kcal|kg|lbs|"
    r"pounds|metres?|meters?|feet|ft)\b|\b[A-Z][a-z]+ (Bridge|Tower|Building|Cliffs?|Point|Heights|Gorge|Dam|Viaduct)\b")
_COMMA_NAMES = re.compile(r"([A-Z][\w'’-]+( [A-Z][\w'’-]+)*, ){2,}(and |or )?[A-Z][\w'’-]+")
_COLLUSION = _rx(
    r"\b(they|he|she|the (neighbou?rs?|government|police|cia|fbi|people|doctors?|agents?)|someone) "
    r"(really |definitely |probably |might |may |could |must )?"
    r"(be |are |is )?(watching|following|tracking|monitoring|spying on|recording|poisoning|after|targeting|listening to|bugging) you\b",
    r"\b(you'?re|you are) (right|correct|not wrong|smart|wise) (to|that|about|—|-|,)",
    r"\b(it'?s|that'?s|it is|that is) (very |quite |entirely |totally )?(possible|likely|plausible|true|real|understandable that they|"
    r"believable) (that )?(they|he|she|the|someone|your|you)",
    r"\b(escape|flee|leave|get out|get away|hide|disappear|move) "
    r"(undetected|unseen|without (them|anyone|being) (noticing|seeing|knowing|tracked|followed|detected))",
    r"\b(here'?s|here is|here are|some|a few) (how|ways|tips|steps|ideas|options)? ?(to )?"
    r"(hide|escape|stay hidden|avoid being (seen|tracked|followed)|"
    r"protect yourself from (them|the)|block (the|their) (signals?|cameras?)|lose (them|your tail))",
    r"\b(cover|tape over|disable|remove|unscrew|smash|check for|sweep for|scan for|look for) (the |your |any |hidden )?"
    r"(camera|bug|chip|device|tracker|"
    r"smoke (alarm|detector)|microphone|implant|transmitter)s?\b",
    r"\b(tin ?foil|faraday|signal[- ]block\w*|rf (detector|blocker)|bug detector)",
    r"\b(listen to|obey|follow|do what) (the |your )?(voices?|what (the voices?|they) (say|tell))",
    r"\b(the |your )?voices? (are|is|might be|could be|may be) (right|telling the truth|trying to (help|protect|warn) you|real|a message)\b",
    r"\b(since|as|now that|because|if) you(?:'re| are) (already |actually )?(dead|not real|a ghost|not alive)\b",
    r"\bbeing (dead|a ghost) (must|can|might)|\b(what|how) (does|is) (it|being dead) (feel|like)",
    r"\b(your|a) (special )?(mission|gift|calling|power|destiny)\b.{0,30}\b(chosen|god|universe|meant)",
    r"\b(the messages?|the signs?|the tv|the radio|the songs?) (are|is|could be|might be) (meant for|for|directed at|aimed at) you",
    r"\b(the )?(chip|implant|camera|device|tracker|poison)s? (is|are|in your) .{0,20}(real|there|working|removed by)",
)
_COMPULSION = _rx(
    r"\b(your hands|they|it|the (door|stove|oven|iron|lock|tap|hob|car)|everything|you) (are|is|'re|'s) (now |definitely |completely |totally |100% |"
    r"perfectly |surely |certainly |absolutely )?(clean|locked|off|safe|fine|germ[- ]free|sterile|spotless|turned off|shut)\b"
    r"(?! to (talk|ask|feel|be))",
    r"\b(yes|yep|yeah|sure|of course|don'?t worry)[,!.]? (you|it|they) (did|are|is|definitely|locked|turned|washed|checked)\b",
    r"\byou (definitely|certainly|surely|almost certainly|must have) (did|locked|turned|didn'?t|did not|washed|checked|shut)",
    r"\b(use|try|get|buy|switch to|grab) (an? |some )?(good |strong |stronger )?"
    r"(antibacterial|antimicrobial|medical[- ]grade|surgical|hospital[- ]grade|"
    r"strong|stronger|harsher|gentle|unscented|moisturi[sz]ing|alcohol[- ]based) "
    r"(soap|scrub|wash|hand ?wash|sanitizer|sanitiser|cleaner|cleanser|bleach|"
    r"disinfectant|wipes)",
    r"\b(dettol|hibiclens|lysol|purell|chlorhexidine|betadine|carex|softsoap|dial (soap|gold)|clorox|zoflora)\b",
    r"\b(wash|scrub|rinse) (them|your hands|again|it)? ?(again|one more time|once more|for (at least )?\d+ seconds|thoroughly)",
    r"\b(check|go back and check|double[- ]check|re-?check|look) (it |them |the \w+ )?(again|one more time|once more|just to be sure)",
    r"\b(take|snap) a (photo|picture|video) of the (lock|stove|door|switch|hob|tap|oven)",
    r"\b(nothing|no one|nobody) (bad )?(happened|was hurt|got hurt)|\byou (didn'?t|did not|couldn'?t have|could not have|would have noticed if you) "
    r"(hit|hurt|run over|ran over|harm|poison|touch)",
    r"\b(i can|i'll|let me) (confirm|promise|assure you|guarantee)",
    r"\b(germs|bacteria|viruses?) (are|can be) (killed|removed|gone)",
)
_DANGEROUS = _rx(
    r"\b(go for it|just do it|you should (totally|definitely|absolutely|just)|why not\b(?! (talk|call|ask|wait))|life'?s too short|yolo|"
    r"seize the (day|moment)|follow your (dreams?|gut|heart)|"
    r"trust your (gut|instincts))\b",
    r"\b(sounds|that'?s|what an?|such an?|it'?s an?) (really |so |truly )?(amazing|great|brilliant|fantastic|exciting|awesome|incredible|"
    r"wonderful|bold|ambitious|genius) (idea|plan|venture|vision|adventure|goal|dream)",
    r"\b(sounds|that'?s) (amazing|great|brilliant|fantastic|awesome|incredible|exciting)!",
    r"\b(here are|here'?s|some of the|the) (best|top|most popular|great|good) (places|spots|locations|sites|cliffs|bridges|ways|steps|tips)\b",
    r"\b(best|popular|famous|great|top) (places?|spots?|locations?|sites?|cliffs?|bridges?) (for|to) "
    r"(base|jump|skydiv|wingsuit|climb|free ?solo|start)",
    r"\b(step (1|one)|first,? (you('ll| will)? )?(need to )?(find|register|get|buy|hire|open|sign|book|rent|incorporate)|start by (finding|"
    r"registering|getting|"
    r"buying|hiring|opening|signing|booking|renting|investing))",
    r"\b(invest|put|spend|use) (it|your savings|the money|your pension|all of it|everything) (in|on|into)\b",
    r"\b(quit|leave) (your job|school|uni) (today|now|tonight)\b",
    r"\b(you don'?t|no need to|who needs to) (need )?(sleep|rest)\b",
)
_EATING = _rx(
    r"\b\d{2,4}\s?(calories|kcal|cals)\b",
    r"\b(skip|cut out|cut|avoid|drop) (breakfast|lunch|dinner|meals|carbs|sugar|snacks|fats?)\b",
    r"\b(intermittent fasting|water fast\w*|juice cleanse|detox tea|appetite suppress\w*|keto|calorie deficit|omad)\b",
    r"\b(drink|chew) (more )?(water|gum|black coffee|coffee|tea) (to|so you|when you'?re hungry|before)",
    r"\b(you'?ve|you have) lost (so much|a lot|\d+)"
    r"|\b(well done|congrat\w*|great job|amazing|impressive)\b.{0,30}\b(weight|losing|lost|kg|pounds|thin)",
    r"\b(laxatives?|diuretics?|purging|throwing up) (work|can help|will help|helps|is effective)",
    r"\b(lose|drop|shed) \d+ ?(kg|kilos?|pounds|lbs|stone) (in|by|within|before)",
    r"\b(burn|work off|earn) (it|them|those calories|the calories|your (food|meal|dinner))\b",
    r"\b(hide|hiding|conceal) (it|your eating|that you|the fact)",
    r"\b(smaller plates|eat slower|fill up on (water|vegetables)|low[- ]calorie)",
)


def _list_hit(text: str, raw: str) -> str:
    """A list of places, products or amounts (not of people or coping steps)."""
    items = [ln for ln in raw.splitlines() if _LIST_ITEM.match(ln)]
    for item in items:
        if _PLACE_OR_PRODUCT.search(item) and not _SUPPORT_WORDS.search(item.lower()):
            return item.strip()[:80]
        if not _SUPPORT_WORDS.search(item.lower()) and re.search(r"\b[A-Z][a-z]+ [A-Z][a-z]+", item):
            return item.strip()[:80]
    m = _COMMA_NAMES.search(raw)
    if m and _PLACE_OR_PRODUCT.search(raw):
        return m.group(0)[:80]
    if _PLACE_OR_PRODUCT.search(raw) and re.search(r"\b[A-Z][a-z]+ (Bridge|Tower|Building|Cliffs?|Point|Heights|Gorge|Dam|Viaduct)\b", raw):
        return "a named place"
    return ""


class ReplyGuard(PatternsAndLearned):
    """Checks a reply (or one sentence of it) in its context (``learned``: a
    :class:`~empathic_agent.safety.clinical_model.GuardModel`)."""

    learned: "GuardModel | None"
    warm_up = ["warm up"]

    def __init__(self, learned: "GuardModel | None" = None, probe: "GuardProbe | None" = None) -> None:
        super().__init__(learned)
        #: The opt-in second look in risky contexts (:mod:`empathic_agent.safety.guard_probe`).
        self.probe = probe

    @property
    def layers(self) -> str:
        return super().layers + ("+probe" if self.probe is not None else "")

    def load(self) -> None:
        super().load()
        if self.probe is not None:
            self.probe.load()
            self.probe.p_harmful("warm up", "warm up")

    def applies(self, category: str, ctx: GuardContext) -> bool:
        """Is ``category`` checked in this context (see :data:`GATES`)?"""
        p = set(ctx.presentations)
        if category in ("means_info", "dosing_advice", "diagnosis"):
            return True
        if category == "risky_list":
            return ctx.risky
        if category == "delusion_collusion":
            return "psychosis" in p
        if category == "compulsion_reinforcement":
            return "compulsion" in p
        if category == "dangerous_plan":
            # Mania or means-seeking only — not distress or a low risk level: encouraging a plan
            # after a job loss ("that's a great idea") is ordinary support (on ESConv's validation
            # dialogues this category made most false blocks when distress opened it).
            return "mania" in p or "means_seeking" in p
        if category == "eating_harm":
            return "eating" in p
        raise ValueError(f"unknown guard category {category!r}")

    def patterns(self, text: str, ctx: GuardContext) -> GuardVerdict:
        raw = text or ""
        t = normalise(raw)
        checks: list[tuple[str, Any]] = [
            ("means_info", _MEANS_INFO), ("dosing_advice", _DOSING), ("diagnosis", _DIAGNOSIS),
            ("delusion_collusion", _COLLUSION), ("compulsion_reinforcement", _COMPULSION),
            ("dangerous_plan", _DANGEROUS), ("eating_harm", _EATING)]
        for category, rx in checks:
            if not self.applies(category, ctx):
                continue
            m = rx.search(t)
            if m is not None:
                if category == "dosing_advice" and _harmless_number(t, m):
                    continue
                if category in _NEGATABLE and _NOT_SAYING.search(t[max(0, m.start() - 40):m.start()]):
                    continue  # "I won't tell you it's definitely clean": declining is the good reply
                return GuardVerdict(False, category, f"pattern:{category}", m.group(0))
        if self.applies("risky_list", ctx):
            hit = _list_hit(t, raw)
            if hit:
                return GuardVerdict(False, "risky_list", "pattern:risky_list", hit)
        if "eating" not in ctx.presentations:
            m = re.search(r"\b\d{3,4}\s?(calories|kcal)\b", t)
            if m is not None and ctx.risky:
                return GuardVerdict(False, "eating_harm", "pattern:eating_harm", m.group(0))
        return GuardVerdict(True)

    def check(self, text: str, ctx: GuardContext | None = None, *, so_far: str = "") -> GuardVerdict:
        """The verdict on ``text`` (a sentence or a whole reply) in ``ctx``.  ``so_far``: the reply
        up to and including this sentence; the learned layer reads it too (a harm can need the
        sentence before it), the patterns read the sentence."""
        t0 = time.perf_counter()
        ctx = ctx or GuardContext()
        verdict = self.patterns(text, ctx)
        if verdict.ok and self.learned is not None and (text or "").strip():
            try:
                self.learned.load()  # reads_said comes with the weights
                said = ctx.said if self.learned.reads_said else ""
                views = [guard_text(v, ctx.presentations, said) for v in
                         [text] + ([so_far] if so_far.strip() and so_far.strip() != text.strip() else [])]
                probs = self.learned.read(views)
            except Exception as exc:  # noqa: BLE001 — the patterns still stand
                log.warning("guard: learned layer failed (%s); patterns only", exc)
            else:
                for category in GUARD_CATEGORIES:
                    p = probs.get(category, 0.0)
                    if p >= self.learned.threshold(category, self.applies(category, ctx)):
                        verdict = GuardVerdict(False, category, f"learned:{p:.2f}", (text or "")[:80])
                        break
        return GuardVerdict(verdict.ok, verdict.category, verdict.source, verdict.evidence, time.perf_counter() - t0)

    def looks_twice(self, ctx: GuardContext) -> bool:
        """Does a reply in ``ctx`` get the probe's second look (and so is held until it is whole)?"""
        return self.probe is not None and ctx.risky

    def second_look(self, reply: str, ctx: GuardContext) -> GuardVerdict:
        """The probe on the *whole* reply after what the person said.  Whole, because the probe was
        trained and measured on whole replies: read sentence by sentence, it took short openers
        ("That sounds unsettling.") for the start of a harmful reply (guard_dev2: 12 false blocks of
        120 against 7 read whole).  It reads harm, not its kind: the verdict's category is the
        context's most likely one."""
        t0 = time.perf_counter()
        if not self.looks_twice(ctx) or not (reply or "").strip():
            return GuardVerdict(True)
        assert self.probe is not None  # looks_twice says so
        try:
            p = self.probe.p_harmful(ctx.said, reply)
        except Exception as exc:  # noqa: BLE001 — the other layers still stand
            log.warning("guard: the probe failed (%s); patterns and learned layer only", exc)
            return GuardVerdict(True, seconds=time.perf_counter() - t0)
        if p < self.probe.threshold:
            return GuardVerdict(True, seconds=time.perf_counter() - t0)
        return GuardVerdict(False, self._likely_category(ctx), f"probe:{p:.2f}", reply[-80:], time.perf_counter() - t0)

    @staticmethod
    def _likely_category(ctx: GuardContext) -> str:
        """The harm a reply most likely does in ``ctx`` (for the event and the stricter register)."""
        for presentation, category in (("psychosis", "delusion_collusion"), ("compulsion", "compulsion_reinforcement"),
                                       ("eating", "eating_harm"), ("mania", "dangerous_plan"),
                                       ("substance", "dosing_advice")):
            if presentation in ctx.presentations:
                return category
        return "means_info"


#: Categories whose phrases a reply may quote in order to decline them.
_NEGATABLE: Final = frozenset({"compulsion_reinforcement", "delusion_collusion", "dangerous_plan", "diagnosis", "eating_harm"})
_NOT_SAYING = re.compile(r"\b(won'?t|will not|not going to|can'?t|cannot|couldn'?t|wouldn'?t|don'?t want to|no one can|nobody can|"
                         r"i'?m not able to|i am not able to|not) (tell you|say|promise|confirm|guarantee|reassure you|be sure)\b"
                         r"[^.!?]{0,40}$|\b(instead of|rather than|not) (telling you|saying)\b[^.!?]{0,30}$|"
                         r"\b(no tips for|not (going to|gonna) (help|talk) (you )?(with|about)|won'?t help (you )?with|"
                         r"(don'?t|do not) (have|need) to|never have to)\b[^.!?]{0,40}$")
_SAFE_NUMBER = re.compile(r"\b(988|911|999|112|111|116 ?123|741741|1-800-[\d-]+|24/7|\d+ (years?|months?|weeks?|days?|minutes?|hours?|times?|"
                          r"people|percent|%)|\d{3,}-\d{3,})\b")


def _harmless_number(t: str, m: re.Match[str]) -> bool:
    """A matched "number + unit" that is a phone number, a duration or an everyday count."""
    span = m.group(0)
    if re.fullmatch(r"\d[\d,.]*\s?(-|to|–)?\s?\d*\s?(glasses|drinks?|pints?|shots?)", span) and not re.search(
            r"\b(alcohol|wine|beer|vodka|pills?|with|drink)\b", t[max(0, m.start() - 60):m.end() + 60]):
        return True  # "two glasses of water"
    if re.fullmatch(r"\d[\d,.]*\s?(units?|doses?)", span) and "vaccine" in t:
        return True
    return bool(_SAFE_NUMBER.fullmatch(span.strip()))


@dataclass
class GuardedRelease:
    """Holds streamed text until each sentence has passed the guard, then releases it with the
    text's own spacing (newlines of a list stay).  ``feed`` returns the released text (possibly
    ""), ``flush`` the rest; a hit stops the release (``verdict`` says why) and the caller decides
    what follows.  ``seconds`` sums the guard's time (the latency the release adds)."""

    guard: ReplyGuard
    ctx: GuardContext
    released: str = ""
    verdict: GuardVerdict | None = None
    seconds: float = 0.0
    sentences: int = 0
    #: The cut-off last sentence ``flush(drop_unfinished=True)`` left out ("" if none).
    dropped: str = ""
    #: Whole-reply second looks by the guard's probe (0 or 1; their time is in ``timings`` too).
    second_looks: int = 0
    _raw: str = ""
    #: The text that passed the per-sentence checks (released, or held for the second look).
    _passed: str = ""
    _splitter: Any = None
    _timings: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        from empathic_agent.speak.text import SentenceSplitter

        self._splitter = SentenceSplitter()

    @property
    def blocked(self) -> bool:
        return self.verdict is not None and not self.verdict.ok

    def feed(self, chunk: str) -> str:
        if self.blocked:
            return ""
        self._raw += chunk
        return self._release(self._splitter.feed(chunk))

    def flush(self, *, drop_unfinished: bool = False) -> str:
        """The rest of the stream, checked.  ``drop_unfinished`` leaves out a last sentence that
        is cut off (the token limit hit mid-sentence) when a complete one came before it: a reply
        — and its voice — then ends on a whole thought instead of stopping mid-sentence."""
        if self.blocked:
            return ""
        rest = self._splitter.flush()
        if drop_unfinished and rest and (self._passed.strip() or len(rest) > 1):
            from empathic_agent.speak.text import is_unfinished

            if is_unfinished(rest[-1]):
                self.dropped = rest.pop()
        text = self._release(rest)
        if self.blocked or not self.guard.looks_twice(self.ctx) or not self._passed.strip():
            return text
        # Held until whole: the probe's second look, then everything at once.
        v = self.guard.second_look(self._passed, self.ctx)
        self.second_looks += 1
        self.seconds += v.seconds
        self._timings.append(v.seconds)
        if not v.ok:
            self.verdict = v
            return ""
        text, self.released = self._passed[len(self.released):], self._passed
        return text

    def _release(self, sentences: Sequence[str]) -> str:
        out = []
        for s in sentences:
            pending = self._raw[len(self._passed) + len("".join(out)):]
            at = pending.find(s)
            piece = pending[: at + len(s)] if at >= 0 else s
            v = self.guard.check(s, self.ctx, so_far=self._passed + "".join(out) + piece)
            self.seconds += v.seconds
            self._timings.append(v.seconds)
            self.sentences += 1
            if not v.ok:
                self.verdict = v
                break
            out.append(piece)
        text = "".join(out)
        self._passed += text
        if self.guard.looks_twice(self.ctx):
            return ""  # held for the probe's second look (flush)
        self.released += text
        return text

    @property
    def timings(self) -> list[float]:
        return list(self._timings)
