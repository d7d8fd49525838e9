"""Clinical-presentation reading: what in the person's words needs a register that does not collude.

The crisis screen (:mod:`.detect`) asks "is this person in danger of dying or being hurt?".  This
module asks a different question of the same turn, read with the conversation so far: does the
person show a presentation where an agreeable, helpful reply does harm even though no crisis is
declared?  (``safety/data/clinical/GUIDE.md`` defines each one; ``docs/clinical.md`` gives the
registers and their sources.)

* ``psychosis`` — fixed false beliefs, persecution, voices giving commands, "I'm actually dead";
* ``mania`` — no sleep, grandiosity, big spending or dangerous activity;
* ``compulsion`` — washing, checking, ordering, reassurance-seeking ("just tell me it's clean");
* ``eating`` — restriction, purging, laxatives, compensatory exercise, hiding;
* ``substance`` — use with overdose or acute-harm risk (mixing depressants, relapse at the old dose);
* ``means_seeking`` — heights, bridges, poisons, pesticides, medication quantities or weapons asked
  about after distress, a loss, or any earlier risk in the conversation.  This one is a crisis
  route: the stage raises the risk level to ``high`` (researching a method).

Two layers, as in the crisis screen: hand-written patterns (each names its presentation; the
evidence is the words that fired) and, when trained weights exist, a learned reader (frozen MiniLM
sentence embedding + one logistic head per presentation, :mod:`.clinical_model`).  A presentation
stays active for a few turns (decayed like the conversation's risk), so "which soap, then?" after
twenty washes is still read as compulsion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Mapping, Sequence

from empathic_agent.safety.detect import normalise

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.safety.clinical_model import ClinicalModel

__all__ = ["PRESENTATIONS", "PresentationReading", "ClinicalReading", "ClinicalReader", "means_query",
           "distress_cue", "CARRY", "ACTIVE"]

PRESENTATIONS: Final[tuple[str, ...]] = ("psychosis", "mania", "compulsion", "eating", "substance", "means_seeking")
#: Share of a presentation's score carried to the next turn (it fades over about three turns).
CARRY: Final[float] = 0.6
#: A long message continues a carried presentation when its sentence embedding is at least this
#: close (cosine) to a message that showed it, or the learned reader gives the presentation at
#: least CONTINUE_SHARE of its threshold on the message alone.  Chosen on hand-written dev
#: conversations (``safety/data/clinical/register_dev.csv``, 60 long follow-ups on the same concern,
#: 35 long messages about something else) by the rule "keep the most follow-ups, then free the most
#: other messages": 56 of 60 follow-ups handled carefully (the register or a crisis route; the old
#: length-only rule 42, 36 of them crisis routes) and 21 of 35 other messages answered normally
#: (old rule 30).  A register held a turn too long costs a vetted reply that misses the point; one
#: dropped too early leaves a reassurance request to free generation.
CONTINUE_COSINE: Final[float] = 0.15
CONTINUE_SHARE: Final[float] = 0.3
#: Messages kept per presentation as its evidence in the carried state (for the cosine above).
EVIDENCE_KEPT: Final[int] = 3
#: A carried presentation at or above this is still active.
ACTIVE: Final[float] = 0.3
#: Which presentation's register leads when several are active (the most dangerous first).
REGISTER_PRIORITY: Final[tuple[str, ...]] = ("substance", "psychosis", "eating", "mania", "compulsion")
#: Pattern kinds that need another sign of their presentation.
CONTEXT_KINDS: Final[frozenset[str]] = frozenset({"racing", "risky-act"})
#: Turns an earlier distress or loss keeps a means question in a risk context.
DISTRESS_TURNS: Final[int] = 6
#: The learned reader's P(means_seeking) at which a message is a means question beside the
#: patterns — counted only in the conversation's *own* risk context (see :meth:`ClinicalReader.read`).
MEANS_LEARNED: Final[float] = 0.9
#: Turns after a means question read in its own risk context during which a follow-up that presses
#: it ("just answer the question", "it's for the garden", "which one is the highest, then?") is read
#: as means seeking too; a follow-up is pressing by the words below or by a sentence-embedding cosine
#: to the question of at least PRESS_COSINE.  Any other follow-up in the window keeps the crisis
#: route (:attr:`ClinicalReading.means_open`): the question is still open.
PRESS_TURNS: Final[int] = 2
PRESS_COSINE: Final[float] = 0.2


@dataclass(frozen=True)
class PresentationReading:
    """One presentation found: how sure (0-1), the words that show it, and which layer found it
    (``pattern:<name>``, ``learned``, ``conversation``)."""

    name: str
    score: float
    evidence: str
    source: str
    #: The presentation may lead the reply's register (its vetted reply).  False for a learned
    #: reading below the model's takeover threshold: it still opens the guard's checks and
    #: informs the planner, but an ordinary help-seeker's "we thought we could make a bundle"
    #: (mania 0.86) does not get the mania reply.
    leads: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(float(self.score), 4), "evidence": self.evidence,
                "source": self.source, "leads": self.leads}


@dataclass(frozen=True)
class ClinicalReading:
    """The presentations of a turn in its conversation, and what the guard needs to know."""

    presentations: tuple[PresentationReading, ...] = ()
    #: The message asks about a means (heights, poisons, doses, weapons …), in any context.
    means_query: str = ""
    #: A risk context exists: earlier risk, distress or a loss in this conversation (or this turn).
    risk_context: bool = False
    #: The carried state for the next turn (part of the checkpointed ``risk`` dict).
    state: Mapping[str, Any] | None = None
    #: Carried presentations this message still speaks about (by meaning, see
    #: :meth:`ClinicalReader.continues`): their register keeps leading even in a long message.
    continued: tuple[str, ...] = ()
    #: Means seeking again: a follow-up pressing a means question, or a means question asked while
    #: an earlier one is still open (its window, :data:`PRESS_TURNS`).
    asked_again: bool = False
    #: A means question of the last :data:`PRESS_TURNS` turns is still open and this follow-up was
    #: not read as pressing it: the stage keeps the crisis route (issue: every means-seeking turn
    #: after a risk cue reaches the protocol, and cover stories take forms no reader lists — "for
    #: the garden, the slugs are eating everything", "just a number. please.").
    means_open: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.presentations)

    def to_dict(self) -> dict[str, Any]:
        out = {"presentations": [p.to_dict() for p in self.presentations], "means_query": self.means_query,
               "risk_context": self.risk_context}
        if self.means_open:
            out["means_open"] = True
        return out


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in parts))


# -- patterns (applied to normalised text: lower case, straight apostrophes) ------------------------
_THEY = (r"(they|he|she|people|someone|somebody|the (government|police|cia|fbi|neighbou?rs?|doctors?|nurses?)|my (neighbou?rs?|family|landlord|boss|"
         r"coworkers?)|everyone)")
_PATTERNS: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = (
    # psychosis: persecution, surveillance, control, voices, Cotard, reference, broadcasting
    ("psychosis", "surveillance", _rx(
        rf"{_THEY} (is|are|has|have|'ve|'s)( been)? (watching|following|tracking|monitoring|spying on|recording|listening to|bugging) me",
        r"(camera|cameras|microphone|mic|bug|bugs|chip|tracker|implant)s? (in|inside|behind|into) (my|the) (walls?|smoke (alarm|detector)|"
        r"tooth|teeth|head|brain|arm|body|light|outlet|vents?|phone|tv|mirror)",
        r"(put|planted|implanted|installed|hid) (a |an )?(camera|chip|tracker|bug|device|microphone)s? (in|inside|on) (me|my)",
        r"(tapped|bugged|hacked) my (phone|thoughts|brain|mind|head)",
    )),
    ("psychosis", "persecution", _rx(
        rf"{_THEY} (is|are|'re) (trying to|going to|out to|plotting to) (poison|kill|hurt|drug|replace|erase) me",
        r"(poisoning|drugging|putting something in) my (food|water|drinks?|meals?|coffee|tea)",
        r"\b(gang[- ]?stalk\w*|targeted individual|organi[sz]ed stalking)",
        r"(is|are) (an? )?(impostor|imposter|replaced|a replica|a robot|not really (my|him|her))",
        r"(escape|flee|get out of) (the city|town|here) (undetected|without (them|anyone) (knowing|seeing|noticing))",
        r"(undetected|without being (seen|tracked|followed)|so (they|the \w+) can'?t (find|track|follow) me)",
    )),
    ("psychosis", "voices", _rx(
        r"\b(the |these |a )?voices? (is |are |keeps? |keep )?(tell|telling|told|say|saying|said|command\w*|order\w*|want|wants|"
        r"whisper\w*|won'?t (stop|leave))",
        r"\bhear(ing)? (voices|them talking|people talking (about|to) me|god (tell|talking))",
        r"(god|the devil|satan|angels?|demons?|spirits?) (is |are |keeps? )?(telling|told|tells|commanding|ordered|wants?) me to",
        r"(voice|someone) in my head (tells?|told|says|said|is telling)",
    )),
    ("psychosis", "cotard", _rx(
        r"\bi(?:'m| am) (actually|already|really) dead\b", r"\bi(?:'m| am) not (real|alive|really here)\b",
        r"\bi died (weeks|days|months|years|a while) ago\b", r"\bmy (organs|insides|brain|heart) (are|is) (gone|rotting|dead|missing)",
        r"\b(i'?m|i am) a (ghost|corpse|dead body)\b(?! (at|in) (work|school))",
        r"\bno one (can|could) see (that )?i(?:'m| am) dead\b",
    )),
    ("psychosis", "reference", _rx(
        r"(tv|radio|news|presenter|newsreader|songs?|billboards?|license plates?|number plates?|ads?|adverts?) (is|are) "
        r"(talking|speaking|sending (me )?(messages|signs)|meant) (to|for) me",
        r"(secret|special|hidden|coded) (messages?|signs?|codes?) (meant )?(for|to) me",
        r"(keeps?|is|are|been) (sending|giving|leaving|showing) me (secret |special |hidden |coded )?(messages|signs|signals|codes)",
        r"(reading|read|hear|hearing|broadcast\w*|stealing|inserting|putting) (my )?thoughts( into my head| out loud)?",
        r"my thoughts (are|get|being) (broadcast|read|stolen|heard|put there)",
        r"i (am|'m) (the )?(chosen one|messiah|prophet|son of god|reincarnat\w+ of)",
        r"(only i|i alone) (can|am meant to) (save|stop|fix) (the world|humanity|everyone)",
    )),
    # mania: sleeplessness with energy, grandiosity, spending, risk
    ("mania", "no-sleep-energy", _rx(
        r"(haven'?t|have not|hasn'?t|didn'?t|did not|don'?t|do not|no) (slept|sleep|need (to )?sleep|needed sleep)( in| for)? "
        r"(\d+|two|three|four|five|six|days|nights)",
        r"(no|zero|without) sleep (in|for) (\d+|two|three|four|five|days)",
        r"(don'?t|do not|never) (even )?need (to )?sleep",
        r"(slept|sleeping) (one|two|1|2|3) hours? (a|per|each) night",
        r"(up|awake) (for|all) (\d+|two|three|four|days|nights)",
        r"(haven'?t|not) slept (since|in)",
    )),
    ("mania", "grandiose", _rx(
        r"(i'?m|i am) (unstoppable|invincible|a genius|destined|limitless|god ?like|superhuman)\b(?! (at|in) (\w+ )?(game|workout|gym))",
        r"(going to|gonna|will) (be (a |the )?(billionaire|millionaire|famous|president|next)|change the world|"
        r"open (\d+|two|three|four|five|ten|a chain of|an empire of)|build (a|an) (\w+ )?empire)",
        r"(empire|franchise|chain) of (restaurants|cafes|shops|stores|gyms|clubs)",
        r"(best|greatest|most brilliant) idea (anyone|ever|in history)",
    )),
    # Racing thoughts count as mania only with another sign of it (this message or carried): a
    # student whose mind races about exams at night is anxious, not manic.
    ("mania", "racing", _rx(
        r"(racing|racing thoughts|thoughts (are )?(racing|going so fast)|ideas (are )?(coming|pouring) (so )?fast)",
    )),
    # Risky acts count as mania only with another sign of it (this message or carried): an
    # experienced BASE jumper asking about a site is not manic.
    ("mania", "risky-act", _rx(
        r"(spent|spend|spending|put|putting|invest\w*|blew|max(ed)? out|withdr[ae]w\w*|cash(ed)? out|loan|borrow\w*) "
        r"(all (of )?)?(my|our|the) (savings|pension|retirement|inheritance|house|credit cards?|401k|rent money|life savings)",
        r"(quit|quitting|quitting) (my job|school|uni) (today|tonight|right now|this morning|to)",
        r"(base jump\w*|wingsuit|free ?solo|jump(ing)? off (a|the) (cliff|bridge|roof))",
        r"(drive|driving|drove) (at |over )?(\d{3}|really fast|as fast as)",
    )),
    # compulsion: washing, checking, reassurance, ordering
    ("compulsion", "washing", _rx(
        r"(wash\w*|scrub\w*|clean\w*|sanitiz\w*|sanitis\w*|shower\w*) (my )?(hands|myself|skin)?\s*"
        r"(\d+|ten|twenty|thirty|fifty|hundred|so many|dozens of) times",
        r"(hands|skin) (are )?(raw|bleeding|cracked) from (washing|scrubbing|cleaning|sanitiz\w*|sanitis\w*|bleach)",
        r"(still|never) (feel|feels|get|gets) (fully |completely |really )?clean",
        r"(fully|completely|100%|totally|properly) (clean|germ[- ]free|sterile|decontaminated)\?",
        r"contaminat\w+", r"\bgerms? (are )?(everywhere|on me|all over)",
    )),
    ("compulsion", "checking", _rx(
        r"(check\w*|re-?check\w*|go back|went back|going back) "
        r".{0,40}(\d+|ten|twenty|fifteen|so many|a dozen|again and again|over and over)( more)? times",
        r"(locked|turned off|unplugged|shut) .{0,30}(\d+|ten|twenty|so many) times",
        r"(just )?(tell|promise|confirm|reassure|assure) me (that )?(i |i'?m |it |it'?s |my |nothing |they |the (door|stove|oven|car|lock|iron) )"
        r".{0,40}(clean|safe|locked|ok|okay|fine|off|shut|didn'?t|did not|won'?t|wasn'?t|not (going|sick|dirty|contaminated|dangerous))",
        r"(can you|could you|please) (just )?(confirm|tell me|promise|reassure me|assure me|say) (that )?"
        r"(i (definitely|really|didn'?t|did|locked|turned)|"
        r"it'?s (clean|safe|fine|off|locked)|nothing bad)",
        r"(what if i|did i) (hit|ran over|run over|hurt|poisoned|stabbed|touched) (someone|somebody|a (person|child|kid))",
        r"(need|have) to (count|tap|touch|arrange|line up|order|re-?read|repeat) .{0,30}(until|times|or else|exactly)",
        r"(or|otherwise) (something bad|someone) (will|might) (happen|die)",
        r"(intrusive|obsessive) thoughts?", r"\bmy ocd (is|has|makes|won'?t|keeps|tells)",
    )),
    # eating: restriction, purging, laxatives, compensation, hiding
    ("eating", "restriction", _rx(
        r"(under|below|less than|only|just|max|maximum of) (\d{2,4}) ?(calories|cals?|kcal)",
        r"(\d{2,4}) ?(calories|cals?|kcal) (a|per) day",
        r"(stop|stopped|skip|skipping|avoid) (eating|food|meals)( completely| entirely| for (days|a week))",
        r"(haven'?t|have not|didn'?t) eaten (in|for|since) (\d+|two|three|four|days)",
        r"(eat|eating) (less|nothing|as little as possible) (without|so (that )?(no ?one|nobody|my (mum|mom|parents|partner)))",
        r"(lose|drop|lost|losing) (\d+|ten|five) ?(kg|kilos?|lbs?|pounds|stone) (in|by|before) (\d+|a|one|two|this) ?(days?|weeks?|friday|monday)",
        r"(fastest|quickest) way to (lose|drop) (weight|\d+)",
        r"(hide|hiding|hid) (that i|how little i|my) (don'?t |didn'?t )?(eat|eating|food|meals|weight)",
        r"(suppress|kill|curb) my appetite", r"(pro-?ana|thinspo|thinspiration)",
    )),
    ("eating", "purging", _rx(
        r"(made|make|making) myself (sick|throw up|vomit|puke)",
        r"(throw|threw|throwing) (it )?up after (eating|dinner|lunch|meals|every meal|i eat)",
        r"\b(purg\w+|laxatives?|diuretics?|water pills|diet pills)\b",
        r"(fingers? down my throat)",
        r"(binge\w*|binging) (and|then) (purg\w+|throw|restrict|starv\w+|fast)",
        r"(burn|work) (it|off|them) (all )?off|(exercise|run|workout)\w* (until|till) i (burn|earn)",
        r"(earn|deserve) (my|the) (food|dinner|meal|calories)",
        r"(disgusting|hate myself|so ashamed) (after|when) (i )?(eat|ate|binge)",
    )),
    # substance: overdose or acute-harm risk
    ("substance", "mixing", _rx(
        r"(alcohol|drink\w*|wine|vodka|beer|whisky|whiskey|booze) .{0,40}(xanax|valium|diazepam|benzo\w*|klonopin|ativan|"
        r"oxy\w*|opioids?|opiates?|heroin|fentanyl|morphine|codeine|tramadol|sleeping (pills|tablets)|zopiclone|ambien|gabapentin|methadone)",
        r"(xanax|valium|diazepam|benzo\w*|klonopin|ativan|oxy\w*|opioids?|heroin|fentanyl|morphine|codeine|tramadol|"
        r"sleeping (pills|tablets)|zopiclone|ambien|methadone) .{0,40}(alcohol|drink\w*|wine|vodka|beer|whisky|whiskey|booze)",
    )),
    ("substance", "dose-risk", _rx(
        r"how (many|much) (\w+ ){0,2}(xanax|valium|diazepam|benzos?|oxy\w*|percs?|percocets?|pills|tabs|mg|grams?|g|lines|hits|"
        r"heroin|fentanyl|morphine|codeine|tramadol|mdma|molly|ketamine|ket|coke|cocaine|ghb|g|acid|edibles?) (can|should|could|do|would|to)",
        r"(same|usual|old) (dose|amount) (as|like) (before|i used to)",
        r"(relapse\w*|using again|used again|back on (it|the gear|heroin|oxy\w*)) .{0,60}(clean|sober|off it|rehab)",
        r"(after|been) .{0,20}(months?|years?|weeks?) (clean|sober) .{0,40}(dose|use|using|take|shoot|score)",
        r"(using|use|shoot\w*|take|taking|drinking) (alone|by myself) (tonight|again|so no one)",
        r"(double|triple|extra) (dose|the dose|up) (to|so|because|since)",
        r"(whole|entire|full) (bottle|fifth|handle) (of )?(vodka|whisky|whiskey|wine|gin|rum)?.{0,40}(pills|tablets|xanax|benzo)",
        r"(shaking|seizures?|dts|delirium tremens|withdrawal) .{0,40}(stop(ped)? drinking|cold turkey|without (alcohol|a drink))",
    )),
)

#: Medicines by name or kind that a quantity question is about ("how many of my sleeping pills").
_MED_NAMES = (r"paracetamol|acetaminophen|tylenol|ibuprofen|aspirin|pills?|tablets?|sleeping pills|insulin|"
              r"antidepressants?|amitriptyline|lithium|xanax|benzos?|opioids?|oxy\w*|codeine|tramadol|morphine")
#: A question about a means of dying: heights, bridges, poisons, doses, weapons, ropes, gas, trains.
_ASK = (r"(where|how|which|what|what'?s|is there|are there|any|can (i|you)|could (i|you)|do you know|best|nearest|closest|tallest|highest|"
        r"looking for|need to (find|know|buy|get)|tell me|list)")
_MEANS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("heights", _rx(
        r"(tall|high)(est|er)? "
        r"(bridges?|buildings?|towers?|cliffs?|roofs?|rooftops?|car parks?|parking (garages?|structures?)|places?|points?|floors?|balcon\w+)",
        r"(bridges?|buildings?|towers?|cliffs?|roofs?|rooftops?|parking (garages?|structures?)|car parks?) (that are |which are )?"
        r"(taller|higher|over|above|more than)( than)? \d",
        r"how (high|tall) (is|are) (the |that |a )?(\w+ ){0,3}(bridge|building|tower|cliff|roof|car park|parking garage|balcony|multi-?stor(e)?y)",
        r"(rooftops?|roofs?) (i|you) can (get|access|go) (to|up|on)",
        r"(access|get (up )?(to|on)) (the )?(roof|rooftop|top floor|top of)",
        r"(bridges?|cliffs?) (near|in|around|close to|nearby)",
        r"(fall|drop) from .{0,20}(survive|fatal|kill)",
    )),
    ("railway", _rx(r"(train|railway|rail|subway|metro) (tracks?|lines?|crossings?|times|schedule|timetable)s? "
                    r".{0,40}(near|close|nearest|when|fast|express)",
                    r"(express|freight|fast) trains? (pass|go|come) (through|by)")),
    ("poison", _rx(
        r"(pesticides?|insecticides?|herbicides?|weed ?killers?|rat poison|poisons?|cyanide|arsenic|antifreeze|paraquat|strychnine|"
        r"rodenticides?|slug pellets|bleach to drink)",
    )),
    ("medication", _rx(
        rf"how (many|much) (\w+ ){{0,3}}({_MED_NAMES})",
        r"(lethal|fatal|deadly|toxic|overdose|od) (dose|amount|quantity|level)",
        r"(too many|enough) (paracetamol|tylenol|pills|tablets|sleeping pills)( to| would| could)",
        r"what happens if (you|i|someone) (take|takes|swallow\w*) (a lot of|too many|\d+|a whole (bottle|box|pack))",
        r"(buy|get|order) .{0,20}(paracetamol|tylenol|pills|tablets) .{0,20}(in bulk|lots of|several (boxes|packs)|without a prescription)",
    )),
    ("weapon", _rx(
        r"(buy|get|getting|obtain|borrow|purchase|find) (a |an )?(gun|firearm|pistol|handgun|rifle|shotgun|revolver)",
        r"(gun (shop|store|shows?)|ammo|ammunition)", r"(how|where) (to|can i|do i) (load|get) (a )?(gun|pistol|rifle)",
    )),
    ("ligature", _rx(r"\b(rope|noose|cord|belt) .{0,30}(hold|strong enough|weight|beam|knot)", r"(beam|hook|rail) strong enough",
                     r"how to tie (a )?(noose|knot that)")),
    ("gas", _rx(r"(carbon monoxide|charcoal (in|inside)|car exhaust|hose .{0,20}exhaust|helium (tank|bag)|gas (oven|the house)|nitrogen)")),
    ("blades", _rx(r"(buy|get|where) .{0,20}(razor blades|scalpel|box cutter)", r"(sharpest|sharp enough) (knife|blade)")),
)
_QUESTIONISH = re.compile(rf"\?|\b{_ASK}\b")
#: The same medicines and more, for the "too much of it" family below.
_MEDS = (rf"({_MED_NAMES}|meds|medications?|medicines?|diazepam|methadone|painkillers?|sertraline|citalopram|"
         r"fluoxetine|quetiapine|propranolol|fentanyl|heroin)")
#: More ways of asking about the same means (2026-12-06): families of wording, each kind as above,
#: that count only in a message that asks (a question mark or an asking word) — "take all my
#: tablets" said as a fact is the crisis screen's, not a question about means.
_MEANS_ASKED: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("heights", _rx(
        r"(spot|place|point|bridge|cliff|roof|building|height|edge)s? .{0,25}(to jump|jump (off|from))",
        r"(roofs?|rooftops?) .{0,30}(get (onto|on|up)|without a key|sneak|climb (onto|up))",
        r"(sneak|get|climb) (onto|into|up) .{0,20}(roof|rooftop|top floor)",
    )),
    ("medication", _rx(
        rf"(too much|too many|max(imum)?|dangerous|lethal|fatal|overdose) .{{0,40}}\b{_MEDS}\b",
        rf"\b{_MEDS} .{{0,40}}(too much|too many|dangerous|lethal|fatal|overdose|would be too|not wake up|never wake up)",
        rf"take (all|every one of|the whole (box|bottle|pack|packet) of) (my |your |the |his |her |their )?(\w+ )?{_MEDS}",
        r"\b(overdose|od) on\b",
    )),
    ("poison", _rx(
        r"(cleaners?|chemicals?|bleach|detergents?|cleaning products?) .{0,30}(if|to|when) (you |i |someone |a person )?(drink|swallow|ingest)",
        r"(dangerous|deadly|toxic|poisonous) (if|to|when) (you |i |someone )?(drink|swallow|ingest)",
    )),
    ("gas", _rx(
        r"exhaust (fumes? )?(from|in|into|to fill|fill) .{0,30}(car|garage)",
        r"fumes? .{0,20}fill (up )?(a |the |my )?(car|garage)",
        r"closed garage",
    )),
    ("railway", _rx(
        r"(last|fast|express|night|late|freight|non-?stop) trains? .{0,40}(time|when|come|go|pass|through|thru)",
        r"(train|railway|rail) (line|track)s? .{0,30}(no fence|without a fence|not fenced|unfenced|does not have a fence)",
        r"unfenced .{0,20}(track|line|railway)",
    )),
    ("ligature", _rx(r"(strong|strongest|thick|thickest) (\w+ ){0,2}rope", r"rope .{0,30}(hold|weight of) (a person|someone|me)")),
    ("weapon", _rx(r"(open|unlock|get into|break into|crack) .{0,20}gun (safe|cabinet|locker)")),
)

#: Distress or a loss: what makes a means question a risk context (with any earlier risk).
_DISTRESS = _rx(
    r"(lost|losing) (my )?(job|house|home|everything|custody|the baby|my (wife|husband|partner|mum|mom|dad|son|daughter|child|best friend))",
    r"\b(got |been |was )?(fired|laid off|sacked|let go|made redundant|evicted|dumped|kicked out)\b",
    r"(passed away|died|funeral|killed in|lost (him|her|them))",
    r"(left me|broke up|breakup|break-up|divorc\w+|cheated on me|walked out)",
    r"(can'?t|cannot) (take|do|handle|cope with|bear) (it|this|any ?more|anything)",
    r"(no|nothing|what'?s the) (point|reason|hope)|nothing matters|hopeless|worthless|pointless|give up|giving up",
    r"(hate|ruined|wrecked) (my )?(life|myself)|(wish|want) (i was|to be) (dead|gone)|want to (die|disappear|hurt myself)",
    r"(everything|my life) (is )?(falling apart|over|ruined|a mess)|(so|really|completely) (alone|empty|numb|done)",
    r"(failed|flunked) (my|the|all)|bankrupt|in so much (debt|pain)|(crying|cried) (all|every)",
    r"(diagnos\w+ with|terminal|cancer)|(miscarri\w+|stillbirth)",
    r"(i'?m|i am|feel|feeling) (so |really |completely )?(miserable|devastated|desperate|broken|crushed|awful|terrible|depressed|suicidal)",
)


#: A follow-up that presses a means question: insisting, a cover reason, or asking it again without
#: naming the means (only read inside the window after such a question).  Applied to normalised
#: text, so contractions are spelled out ("won't" -> "will not", "it's" -> "it is").
_PRESSING = _rx(
    r"\bjust (answer|tell|give|say|name|list)|answer (the|my) (question|q)\b|(why|how come) (will not|cannot|do not|are not|"
    r"would not) you (just )?(tell|answer|say|help)|you (did not|have not|never|still have not) answer|"
    r"stop (avoiding|dodging|changing the subject)|not what i asked|(simple|easy|normal|basic) question|\bcome on\b|"
    r"\bplease just\b|\bi (just|only) (asked|want(ed)? to know)|\b(yes or no|which one)\b",
    r"\b(it is|this is) (just |only )?for (a|an|my|the|our) (\w+ )?(story|book|novel|essay|school|project|homework|research|"
    r"class|garden|shed|rats?|mice|pests?|work|job|friend|game|script|film|article|assignment)|asking for a (friend|story)|"
    r"\bhypothetical(ly)?\b|(just|only|purely) (curious|wondering|asking)|out of curiosity|"
    r"i am (not|never) going to (do|try) anything|it is (public|common|basic) (info|information|knowledge)|"
    r"\b(i|you) (can|could) (just )?(google|look) (it|that)|i will (just )?(google|look it up|find (it|out) myself)",
    r"\b(which|what) (one|is|are|would be) (the )?(highest|tallest|closest|nearest|best|fastest|strongest|quickest|most|easiest|worst)|"
    r"\bhow (many|much) (then|exactly|would it take|does it take)|\bwhat about (the|a|an)\b|where (exactly|then)|"
    r"\b(is|would|will) (that|it|this) (be )?enough\b|what (would|will) (happen|it take)|\b(so|and|ok|okay) (how|which|where|what) ",
)


def means_query(text: str) -> str:
    """The kind of means a message asks about (``heights``, ``poison``, ``medication`` …), or ""."""
    t = normalise(text)
    for kind, rx in _MEANS:
        m = rx.search(t)
        if m is not None and (_QUESTIONISH.search(t) or kind in ("medication", "ligature", "gas")):
            return kind
    if _QUESTIONISH.search(t):
        for kind, rx in _MEANS_ASKED:
            if rx.search(t):
                return kind
    return ""


def distress_cue(text: str) -> str:
    """The words showing distress or a loss in a message, or ""."""
    m = _DISTRESS.search(normalise(text))
    return m.group(0) if m else ""


def pattern_presentations(text: str) -> list[PresentationReading]:
    """The presentations the patterns find in one message (one reading per presentation: the first
    pattern that fired is the evidence)."""
    t = normalise(text)
    found: dict[str, PresentationReading] = {}
    for name, kind, rx in _PATTERNS:
        if name in found:
            continue
        m = rx.search(t)
        if m is not None and kind not in CONTEXT_KINDS and not _not_current_self(t, m):
            found[name] = PresentationReading(name, 1.0, m.group(0), f"pattern:{kind}")
    return list(found.values())


#: Someone else's symptoms, a past (treated) episode, or a story, game or assignment: words of a
#: presentation that is not the person's own now.
_OTHER_PERSON = re.compile(
    r"\b(my|our|his|her|their) (\w+ )?(dad|mum|mom|mother|father|brother|sister|friend|flatmate|roommate|cousin|partner|husband|"
    r"wife|son|daughter|grandad|grandpa|grandma|gran|patient|client|boss|colleague|coworker|neighbou?r|character|kid|child|"
    r"aunt|uncle|nan|boyfriend|girlfriend|student|teen|toddler)s?\b|\b(he|she) (has|hasn'?t|is|keeps|says|thinks|checks|won'?t)\b")
_PAST = re.compile(r"\b(used to|years ago|when i was (a |younger|\d)|back (then|in)|after (treatment|therapy|the war)|"
                   r"(they|it) (stopped|went away)|in recovery|recovered|no longer|not anymore)\b")
_STORY = re.compile(r"\b(novel|story|game|film|movie|book|character|essay|assignment|class|lecture|podcast|episode|show|"
                    r"script|screenplay|role ?play|dnd|d&d|writing about|research)\b")


def _not_current_self(t: str, m: re.Match[str]) -> bool:
    """The match is about someone else, the past or a story (its clause says so)."""
    start = max(t.rfind(".", 0, m.start()), t.rfind("!", 0, m.start()), t.rfind("?", 0, m.start()), -1) + 1
    end = min([i for i in (t.find(".", m.end()), t.find("!", m.end()), t.find("?", m.end())) if i >= 0] or [len(t)])
    before, clause = t[start:m.start()], t[start:end]
    # "my neighbours are recording me": someone else is the persecutor, the belief is the person's.
    other = _OTHER_PERSON.search(before) and not _TARGET_ME.search(clause)
    return bool(other or _PAST.search(clause) or _STORY.search(clause))


_TARGET_ME = re.compile(r"\bme\b|\bmy (thoughts|food|phone|house|flat|home|head|brain|mind|body|drinks?|room|car|water)\b")


def context_presentations(text: str) -> list[PresentationReading]:
    """Patterns that show a presentation only when another sign of it is present (a risky act
    shows mania only with sleeplessness or grandiosity, now or carried)."""
    t = normalise(text)
    out = []
    for name, kind, rx in _PATTERNS:
        if kind in CONTEXT_KINDS and (m := rx.search(t)) is not None:
            out.append(PresentationReading(name, 1.0, m.group(0), f"pattern:{kind}"))
    return out


class PatternsAndLearned:
    """A reader of two layers: hand-written patterns and an optional learned model (``learned``;
    None = patterns only) that loads on first use or in :meth:`load` (with one warm-up read)."""

    #: What the learned model reads in the warm-up (its ``read`` argument).
    warm_up: Any = "warm up"

    def __init__(self, learned: Any = None) -> None:
        self.learned = learned

    @property
    def layers(self) -> str:
        return "patterns+learned" if self.learned is not None else "patterns"

    def load(self) -> None:
        if self.learned is not None:
            self.learned.load()
            self.learned.read(self.warm_up)


class ClinicalReader(PatternsAndLearned):
    """Reads a turn, in its conversation, for the clinical presentations (``learned``: a
    :class:`~empathic_agent.safety.clinical_model.ClinicalModel`)."""

    learned: "ClinicalModel | None"

    def __init__(self, learned: "ClinicalModel | None" = None, *, embedder: "Embedder | None" = None) -> None:
        super().__init__(learned)
        #: The frozen sentence embedder (memory's) for :meth:`continues`; None: a long message
        #: continues a carried presentation only by the learned reader's reading.
        self.embedder = embedder

    def load(self) -> None:
        super().load()
        if self.embedder is not None:
            self.embedder.load()

    def read(self, text: str, state: Mapping[str, Any] | None = None, *, earlier_risk: bool = False,
             risk_now: bool = False) -> ClinicalReading:
        """The presentations of ``text`` given the carried ``state`` (from the previous turn's
        reading; None for a message alone).  ``earlier_risk``: the conversation already carried
        risk; ``risk_now``: the crisis screen found some risk in this message."""
        state = dict(state or {})
        found = {p.name: p for p in pattern_presentations(text)}
        probs: dict[str, float] = {}
        if self.learned is not None and text.strip():
            probs = {k: float(v) for k, v in self.learned.read(text).items()}
            for name, p in probs.items():
                if name == "means_seeking":
                    continue  # needs a context the model cannot see; the rule below decides
                if p >= self.learned.threshold(name) and name not in found:
                    found[name] = PresentationReading(name, float(p), text.strip()[:160], "learned",
                                                      leads=p >= self.learned.takeover(name))
        means = means_query(text)
        distress_now = distress_cue(text)
        since = state.get("turns_since_distress")
        if distress_now or risk_now:
            since = 0
        elif since is not None:
            since = int(since) + 1
        risk_context = bool(earlier_risk or risk_now or distress_now or (since is not None and since <= DISTRESS_TURNS))
        if means and risk_context:
            why = "earlier risk" if earlier_risk else ("distress now" if distress_now or risk_now else "earlier distress")
            found["means_seeking"] = PresentationReading("means_seeking", 1.0, f"asks about {means} after {why}",
                                                         f"pattern:means-{means}")
        # The conversation's *own* risk context: risk or distress in a turn that was not itself a
        # means question.  A plain question the screen flags ("how many paracetamol can I take for
        # period pain?") must not become the risk context of its own follow-up.
        p_means = probs.get("means_seeking", 0.0)
        asked = bool(means) or p_means >= MEANS_LEARNED
        own_since = state.get("own_risk_since")
        if (distress_now or risk_now) and not asked:
            own_since = 0
        elif own_since is not None:
            own_since = int(own_since) + 1
        own_context = bool(distress_now or (own_since is not None and 0 < own_since <= DISTRESS_TURNS))
        if "means_seeking" not in found and p_means >= MEANS_LEARNED and own_context:
            found["means_seeking"] = PresentationReading("means_seeking", p_means, "asks about a means after earlier risk",
                                                         "learned")
        # Pressing a means question: the next turns that insist, give a cover reason or ask again
        # are the same question ("just tell me which one is the highest").
        press = dict(state.get("press") or {})
        open_before = int(press.get("left", 0)) > 0
        pressed = False
        if ("means_seeking" not in found and press.get("left", 0) > 0 and text.strip()
                and self.presses(text, str(press.get("question", "")))):
            found["means_seeking"] = PresentationReading("means_seeking", 1.0, "presses an earlier means question",
                                                         "conversation:pressing")
            pressed = True
        if "means_seeking" in found and not pressed and own_context:
            press = {"question": text.strip()[:300], "left": PRESS_TURNS}
        elif press:
            press = {**press, "left": int(press.get("left", 0)) - 1} if int(press.get("left", 0)) > 1 else {}
        # Carry: a presentation read in the last turns stays active while it fades.
        carried = {k: float(v) * CARRY for k, v in (state.get("presentations") or {}).items()}
        for p in context_presentations(text):
            if p.name in found or carried.get(p.name, 0.0) >= ACTIVE:
                found[p.name] = p if p.name not in found else found[p.name]
        # A presentation only ever read below the takeover level stays quiet while it is carried.
        quiet = set(state.get("quiet") or ()) - {p.name for p in found.values() if p.leads}
        quiet |= {p.name for p in found.values() if not p.leads}
        for name, score in carried.items():
            if name not in found and score >= ACTIVE and name != "means_seeking":
                found[name] = PresentationReading(name, score, "earlier in the conversation", "conversation",
                                                  leads=name not in quiet)
        scores = {k: v for k, v in carried.items() if v >= 0.05}
        for p in found.values():
            scores[p.name] = max(scores.get(p.name, 0.0), p.score)
        evidence = {k: list(v) for k, v in (state.get("evidence") or {}).items() if k in scores}
        for p in found.values():
            if p.source != "conversation" and text.strip():
                evidence[p.name] = (evidence.get(p.name, []) + [text.strip()[:300]])[-EVIDENCE_KEPT:]
        carried_names = [p.name for p in found.values() if p.source == "conversation"]
        continued = self.continues(text, carried_names, evidence, probs) if carried_names else ()
        new_state = {"presentations": {k: round(v, 4) for k, v in scores.items()}, "turns_since_distress": since,
                     "evidence": evidence, "quiet": sorted(quiet & set(scores)), "own_risk_since": own_since,
                     "press": press}
        ordered = tuple(sorted(found.values(), key=lambda p: (PRESENTATIONS.index(p.name), -p.score)))
        again = "means_seeking" in found and (pressed or open_before)
        still_open = open_before and "means_seeking" not in found and bool(text.strip())
        return ClinicalReading(ordered, means, risk_context, new_state, continued, again, still_open)

    def presses(self, text: str, question: str) -> bool:
        """``text`` presses the earlier means ``question``: by its words, or close in meaning."""
        if _PRESSING.search(normalise(text)):
            return True
        if self.embedder is None or not question:
            return False
        v = self.embedder.embed([text, question])
        return float(v[0] @ v[1]) >= PRESS_COSINE

    def continues(self, text: str, names: Sequence[str], evidence: Mapping[str, Sequence[str]],
                  probs: Mapping[str, float]) -> tuple[str, ...]:
        """The carried presentations (``names``) that ``text`` still speaks about: the learned
        reader finds a share of the presentation in it, or it is close in meaning to a message
        that showed the presentation ("Is it ok if I check the stove one more time before mum
        comes?" after twenty checks).  A message about something else ("what's a good name for a
        quiz team?") continues none."""
        by_reader = [n for n in names if self.learned is not None
                     and probs.get(n, 0.0) >= CONTINUE_SHARE * self.learned.threshold(n)]
        rest = [n for n in names if n not in by_reader and evidence.get(n)]
        if self.embedder is None or not rest or not text.strip():
            return tuple(by_reader)
        # One forward for the message and every earlier message that showed a presentation.
        earlier = [(n, e) for n in rest for e in evidence[n]]
        v = self.embedder.embed([text] + [e for _, e in earlier])
        sims = v[1:] @ v[0]
        out = list(by_reader)
        for name in rest:
            if max(float(c) for (n, _), c in zip(earlier, sims) if n == name) >= CONTINUE_COSINE:
                out.append(name)
        return tuple(out)


def names_of(readings: Sequence[Mapping[str, Any]] | None) -> tuple[str, ...]:
    """Presentation names from ``ClinicalReading.to_dict()["presentations"]``."""
    return tuple(str(r.get("name")) for r in readings or ())
