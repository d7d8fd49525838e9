"""The crisis protocol: the vetted reply and the locale's resources for a flagged turn, and the
escalation hook that tells the embedding app.

Routes (:mod:`.taxonomy`): ``continue``; ``check_in`` (the generated reply gets the protocol's
check-in sentence); ``protocol``, ``escalate``, ``helper`` (the vetted reply of the category);
``emergency`` (the protocol's emergency sentence first, then the category's reply).

The reply is a template from a TOML protocol file (``protocols/default.toml``, or your
organisation's own via ``EMPATHIC_SAFETY_PROTOCOL``) filled with the locale's resources — never
free generation.  Escalation: in-process callbacks (``SafetyStage.on_crisis``) and an optional
webhook (``EMPATHIC_SAFETY_WEBHOOK_URL``) receive who/when/what category — not the message text
unless ``safety_webhook_include_text`` is set — and can never fail the turn.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Mapping, Sequence

from empathic_agent.errors import ConfigError
from empathic_agent.safety.conversation import MEANS_OPEN, ConversationRisk, advance, asked_in
from empathic_agent.safety.detect import CATEGORIES, CrisisDetector, SafetyAssessment
from empathic_agent.safety.taxonomy import CRISIS_ROUTES, level_index, protocol_category, route_for

if TYPE_CHECKING:
    from empathic_agent.memory.embedder import Embedder
    from empathic_agent.safety.clinical import ClinicalReader, ClinicalReading
    from empathic_agent.safety.guard import GuardContext, ReplyGuard
    from empathic_agent.settings import Settings

__all__ = ["CrisisProtocol", "SafetyStage", "load_protocol", "DEFAULT_PROTOCOL", "CrisisEvent"]

log = logging.getLogger(__name__)
#: A message this short after a presentation is read as a follow-up of it (its register leads).
FOLLOW_UP_WORDS = 12
DEFAULT_PROTOCOL = Path(__file__).resolve().parent / "protocols" / "default.toml"
#: Signals of layers other than the learned reader (see ``SafetyStage.assess``: the ``unsure`` reply).
_NOT_THE_READER = ("pattern:", "language:", "multilingual:", "clinical:")
#: The reply to a message that reads higher than anything said before, shortly after a crisis reply,
#: per protocol category (optional replies; a category without one keeps its other replies).
_ESCALATED: Final[dict[str, str]] = {"suicide": "escalated", "abuse": "escalated_abuse"}
#: A route raised by the carried risk alone within this many turns of a crisis reply gets the
#: ``still`` reply instead of the protocol's again (see ``SafetyStage.assess``).
STILL_TURNS = 2


def _words(route: str, category: str) -> str:
    """Which reply a crisis route gives (before any situational wording): the protocol and
    escalate routes say the same words."""
    return f"{'protocol' if route == 'escalate' else route}:{category}"


def _as_risk(conversation: "ConversationRisk | dict[str, Any] | None") -> ConversationRisk:
    """The conversation's risk after the previous turn, from its checkpointed form."""
    if isinstance(conversation, ConversationRisk):
        return conversation
    return ConversationRisk.from_dict(conversation) if conversation else ConversationRisk()


@dataclass(frozen=True)
class CrisisProtocol:
    name: str
    replies: Mapping[str, str]
    locales: Mapping[str, Mapping[str, Any]]
    default_locale: str = "en-US"
    source: str = ""
    #: Vetted replies per clinical presentation (variants), ``[clinical]`` in the protocol file.
    clinical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Vetted lead-ins of careful (check-in) turns, ``[careful] lead_ins``; () = the packaged ones.
    careful: tuple[str, ...] = ()

    def locale(self, locale: str | None) -> Mapping[str, Any]:
        """The locale's entry: exact (en-GB), then same language's default, then ``intl``."""
        loc = locale or self.default_locale
        if loc in self.locales:
            return self.locales[loc]
        return self.locales.get("intl") or self.locales[self.default_locale]

    def resources(self, category: str, locale: str | None) -> tuple[dict[str, str], ...]:
        entry = self.locale(locale)
        return tuple({"name": r["name"], "contact": r["contact"]} for r in entry.get("resources", ())
                     if category in r.get("categories", ()) or "all" in r.get("categories", ()))

    def reply(self, category: str, locale: str | None, *, route: str = "protocol", language_note: bool = False,
              situation: str = "") -> str:
        """The vetted reply of a category; on the ``emergency`` route the emergency sentence leads,
        and ``check_in`` gives the check-in sentence that follows a generated reply.  ``situation``
        (``means``, ``means_again``, ``unsure``, ``still``, ``still_again``, ``not_safe``,
        ``thoughts_yes``, ``escalated``, ``escalated_abuse``, ``emergency_still``, ``emergency_still_again``, ``helper_still``,
        ``helper_still_again``, ``help_coming``; on the check-in route ``check_in_again``) names a reply for the situation, used when this
        protocol file has it (an organisation's file without it keeps its category reply)."""
        note = self._fill("language_note", category, locale) if language_note else ""
        if route == "check_in":
            return note + self._fill(situation if situation in self.replies else "check_in", category, locale)
        key = situation if situation and situation in self.replies else category if category in self.replies else "suicide"
        text = self._fill(key, category, locale)
        if route == "emergency":
            text = self._fill("emergency", category, locale) + text
        return note + text

    def clinical_reply(self, presentation: str, locale: str | None, *, variant: int = 0) -> str:
        """The vetted reply of a clinical presentation (variant ``variant`` modulo their number);
        "" for a presentation the protocol has no reply for."""
        return self._variant(self.clinical.get(presentation) or _packaged().clinical.get(presentation) or (),
                             variant, locale)

    def careful_lead_in(self, locale: str | None, *, variant: int = 0) -> str:
        """The words that open a careful (check-in) turn instead of the model's, when the responder
        is not trusted with a careful register (variant ``variant`` modulo their number)."""
        return self._variant(self.careful or _packaged().careful, variant, locale)

    def _variant(self, options: Sequence[str], variant: int, locale: str | None) -> str:
        """One of several vetted wordings (``variant`` modulo their number); "" for none."""
        if not options:
            return ""
        entry = self.locale(locale)
        return options[variant % len(options)].format(
            resources="", emergency=entry.get("emergency", "your local emergency number"))

    def language_only(self, locale: str | None) -> str:
        """The whole reply to a message in a language the responder does not write."""
        return self._fill("language_only", "suicide", locale)

    def guard_fallback(self, locale: str | None) -> str:
        """What the agent says when the reply guard blocked a reply and its regeneration."""
        return self._fill("guard_fallback", "suicide", locale)

    def _fill(self, key: str, category: str, locale: str | None) -> str:
        entry = self.locale(locale)
        listed = " ".join(f"You can reach {r['name']}: {r['contact']}." for r in self.resources(category, locale))
        template = self.replies.get(key) or _packaged().replies.get(key) or self.replies["suicide"]
        return template.format(resources=listed, emergency=entry.get("emergency", "your local emergency number"))


@functools.lru_cache(maxsize=1)
def _packaged() -> "CrisisProtocol":
    """The packaged protocol, read once: the default protocol, and the defaults of another file's
    optional replies, clinical replies and careful lead-ins."""
    return _read_protocol(DEFAULT_PROTOCOL)


def _check_fields(template: str, what: str) -> None:
    """A protocol text may use only the ``{resources}`` and ``{emergency}`` fields."""
    try:
        template.format(resources="", emergency="")
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"{what} uses an unknown field {exc}") from None


def load_protocol(path: str | Path | None = None) -> CrisisProtocol:
    """Read and validate a protocol file (default: the packaged one, read once per process)."""
    p = Path(path) if path else DEFAULT_PROTOCOL
    if p.is_file() and p.resolve() == DEFAULT_PROTOCOL.resolve():
        return _packaged()
    return _read_protocol(p)


def _read_protocol(p: Path) -> CrisisProtocol:
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"safety protocol file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"safety protocol {p} is not valid TOML: {exc}") from None
    replies = data.get("replies") or {}
    missing = [c for c in CATEGORIES if c not in replies]
    if missing:
        raise ConfigError(f"safety protocol {p} lacks replies for: {', '.join(missing)}")
    locales = data.get("locales") or {}
    default = data.get("default_locale", "en-US")
    if default not in locales:
        raise ConfigError(f"safety protocol {p}: default_locale {default!r} has no [locales.{default}] entry")
    for name, entry in locales.items():
        for r in entry.get("resources", ()):
            if not r.get("name") or not r.get("contact"):
                raise ConfigError(f"safety protocol {p}: a resource of locale {name!r} lacks name or contact")
    for cat, template in replies.items():
        if not isinstance(template, str):
            raise ConfigError(f"safety protocol {p}: reply {cat!r} is not text")
        _check_fields(template, f"safety protocol {p}: reply {cat!r}")
    clinical: dict[str, tuple[str, ...]] = {}
    for name, options in (data.get("clinical") or {}).items():
        options = [options] if isinstance(options, str) else options
        if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
            raise ConfigError(f"safety protocol {p}: [clinical] {name!r} must be a reply or a list of replies")
        for o in options:
            _check_fields(o, f"safety protocol {p}: clinical reply {name!r}")
        clinical[name] = tuple(options)
    careful = (data.get("careful") or {}).get("lead_ins", [])
    if not isinstance(careful, list) or not all(isinstance(o, str) and o.strip() for o in careful):
        raise ConfigError(f"safety protocol {p}: [careful] lead_ins must be a list of replies")
    for o in careful:
        _check_fields(o, f"safety protocol {p}: a careful lead-in")
    return CrisisProtocol(name=data.get("name", p.stem), replies=replies, locales=locales, default_locale=default,
                          source=str(p), clinical=clinical, careful=tuple(careful))


@dataclass(frozen=True)
class CrisisEvent:
    """What the escalation hook receives (no message text unless configured)."""

    user_id: str
    session_id: str
    turn_id: str
    category: str
    score: float
    signals: tuple[str, ...]
    at: float
    text: str | None = None
    #: The risk level and route (``escalate`` and ``emergency`` ask the app to escalate).
    level: str = "moderate"
    route: str = "protocol"

    @property
    def escalate(self) -> bool:
        """The route asks for escalation (high or imminent risk, or someone else in imminent danger)."""
        return self.route in ("escalate", "emergency") or (self.route == "helper" and self.level == "imminent")

    def to_dict(self) -> dict[str, Any]:
        return {"event": "crisis", "user_id": self.user_id, "session_id": self.session_id, "turn_id": self.turn_id,
                "category": self.category, "level": self.level, "route": self.route, "escalate": self.escalate,
                "score": round(self.score, 4), "signals": list(self.signals),
                "at": self.at, **({"text": self.text} if self.text is not None else {})}


@dataclass
class SafetyStage:
    """Detector + protocol + escalation, as the graph's safety step uses them."""

    detector: CrisisDetector
    protocol: CrisisProtocol
    locale: str = "en-US"
    webhook_url: str = ""
    webhook_include_text: bool = False
    webhook_timeout_s: float = 5.0
    #: In-process escalation callbacks: ``fn(CrisisEvent)``; exceptions are logged, never raised.
    on_crisis: list[Callable[[CrisisEvent], Any]] = field(default_factory=list)
    #: Reads each turn for clinical presentations (None: off).
    clinical: "ClinicalReader | None" = None
    #: Checks every generated reply before it is released (None: off).
    guard: "ReplyGuard | None" = None

    @classmethod
    def from_settings(cls, settings: "Settings", *, embedder: "Embedder | None" = None) -> "SafetyStage":
        """``embedder``: the frozen sentence embedder to share with the scope check (memory's)."""
        from empathic_agent.safety.clinical import ClinicalReader
        from empathic_agent.safety.clinical_model import ClinicalModel, GuardModel
        from empathic_agent.safety.guard import ReplyGuard

        folder = settings.safety_model or None
        clinical = guard = None
        if embedder is None and settings.safety_semantic and (settings.safety_scope or settings.safety_clinical):
            from empathic_agent.memory.embedder import MiniLMEmbedder

            embedder = MiniLMEmbedder.from_settings(settings)  # one copy for the scope check and the reader
        if settings.safety_clinical:
            learned = (ClinicalModel(folder, settings=settings)
                       if settings.safety_semantic and ClinicalModel.available(folder) else None)
            clinical = ClinicalReader(learned, embedder=embedder if settings.safety_semantic else None)
        if settings.safety_guard:
            learned_guard = (GuardModel(folder, settings=settings)
                             if settings.safety_semantic and GuardModel.available(folder) else None)
            probe = None
            if settings.safety_guard_probe:
                from empathic_agent.safety.guard_probe import GuardProbe

                probe = GuardProbe.from_settings(settings)
            guard = ReplyGuard(learned_guard, probe)
        return cls(detector=CrisisDetector.from_settings(settings, embedder=embedder),
                   protocol=load_protocol(settings.safety_protocol or None), locale=settings.safety_locale,
                   webhook_url=settings.safety_webhook_url, webhook_include_text=settings.safety_webhook_include_text,
                   clinical=clinical, guard=guard)

    def load(self) -> None:
        self.detector.load()
        if self.clinical is not None:
            self.clinical.load()
        if self.guard is not None:
            self.guard.load()

    def assess(self, text: str, conversation: ConversationRisk | dict[str, Any] | None = None, *,
               now: float | None = None) -> SafetyAssessment:
        """The screen's verdict on the message in its conversation (``conversation``: the risk
        after the previous turn, None for a message alone), with the protocol's reply and
        resources attached on a crisis route and resources on a check-in."""
        a = self.detector.assess(text)
        # The conversation's risk after the previous turn, read once from its checkpointed form.
        prev = _as_risk(conversation)
        reading = None
        if self.clinical is not None:
            reading = self._read_clinical(text, conversation, prev, a)
            if "means_seeking" in reading.names and level_index(a.level) < level_index("high"):
                a = _means_seeking(a, reading)
        # The learned reader alone sent the message to the protocol: at *moderate* (on ESConv's
        # ordinary help-seekers, "a hard time falling asleep at night" read as a wish to be dead),
        # or on a message the clinical reader reads as a compulsion ("Checked the front door lock
        # four times tonight …" read high).  Such routes are often false alarms, but not always, so
        # the route stands and only the words change: the reply asks rather than thanks the person
        # for a disclosure they may not have made.
        reader_only = a.crisis and not any(x.startswith(_NOT_THE_READER) for x in a.signals)
        unsure = reader_only and (a.level == "moderate" or (reading is not None and any(
            p.name == "compulsion" and p.source != "conversation" for p in reading.presentations)))
        own_level = a.level
        # Turns since the agent last answered on a crisis route (None: never), before this one, and
        # the situational reply it gave last turn (the `still` reply alternates its two wordings).
        since_crisis = prev.turns_since_crisis if conversation is not None else None
        last_reply = str(conversation.get("reply") or "") if isinstance(conversation, dict) else ""
        last_said = str(conversation.get("said") or "") if isinstance(conversation, dict) else ""
        # The question the agent's last reply ended with: this message may be the answer to it.
        asked = str(conversation.get("asked") or "") if isinstance(conversation, dict) else ""
        if conversation is not None:
            # A means question asked in the conversation's own risk context is still open for the
            # next turns: a follow-up that does not press it in words the reader knows keeps the
            # crisis route (a short answer is read as the answer; help reached ends it).
            floor = "moderate" if reading is not None and reading.means_open else "none"
            a = self.in_conversation(a, prev, now=now, text=text, asked=asked, floor=floor)
        if reading is not None:
            a = self._with_clinical(a, reading, text)
        if a.route == "continue":
            return a
        category = a.category or protocol_category({d.name for d in a.dimensions}, a.subject)
        emergency = str(self.protocol.locale(self.locale).get("emergency", ""))
        resources = self.protocol.resources(category, self.locale)
        note = not a.language.get("covered", True)
        if a.route == "check_in":
            # In a language the agent does not read, the check-in is the whole reply (the graph
            # asks no model for words it could not understand): it opens with the language note.
            # Right after a check-in, the other wording (never the same paragraph twice running).
            wording = self._alternating("check_in", last_reply) or "check_in"
            message = self.protocol.reply(category, self.locale, route="check_in", language_note=note,
                                          situation=wording)
            carried = dict(a.conversation, reply=wording) if a.conversation else a.conversation
            # The vetted lead-in the graph uses instead of the model's words when the responder is
            # not trusted with a careful register (settings.safety_careful_replies): consecutive
            # turns take consecutive lead-ins, so none opens two replies running.
            turns = int(a.conversation.get("turns", 0) or 0) if a.conversation else 0
            careful = self.protocol.careful_lead_in(self.locale, variant=max(0, turns - 1))
            return replace(a, resources=resources, emergency=emergency, message=message, careful=careful,
                           conversation=_with_question(carried, message, category))
        # A means question (or a follow-up pressing one) is answered as such: the information is
        # declined and the person asked about suicide directly, rather than thanked for a disclosure
        # they did not make.  Not on the emergency or helper routes, whose replies lead with more.
        situation = ""
        if a.route in ("emergency", "helper") and ConversationRisk.from_dict(a.conversation).ongoing_emergency:
            # An earlier turn's emergency, still on (help not reached): the emergency leads again, in
            # words that stay with the person rather than repeat the first reply (two wordings,
            # alternating); the helper is told again to call.
            situation = self._alternating("helper_still" if a.route == "helper" else "emergency_still", last_reply)
        elif a.route in ("protocol", "helper") and a.conversation.get("help_reached"):
            # Help reached in an emergency ("I rang 999, they're sending an ambulance"): glad, tell
            # the helpers what happened, stay — not "call now" to someone who just did.
            situation = "help_coming" if "help_coming" in self.protocol.replies else ""
        elif reading is not None and "means_seeking" in reading.names and a.route in ("protocol", "escalate"):
            # Asked again while the last means question is still open: the second wording.
            situation = "means_again" if reading.asked_again else "means"
        elif unsure and a.route in ("protocol", "escalate") and a.level == own_level:
            situation = "unsure"
        elif (_ESCALATED.get(category, "") in self.protocol.replies and a.route in ("protocol", "escalate")
              and since_crisis is not None and since_crisis < STILL_TURNS
              and level_index(own_level) > level_index(prev.peak)):
            # Within two turns of a crisis reply, the message itself reads higher than anything said
            # before ("everyone would be better off without me", then "I've started giving my stuff
            # away"; "he hit me again", then "he says he'll kill me and the kids"): more worried,
            # said so, and the next question (intent and plan; somewhere safe) — not the first reply
            # again, nor a `still` that does not hear what was just said.
            situation = _ESCALATED[category]
        elif (a.route in ("protocol", "escalate") and level_index(own_level) < level_index("moderate")
              and a.conversation.get("answered") in _ANSWER_REPLIES):
            # The level came from the answer to the question the last reply asked: the reply for
            # that answer (an organisation's file without it gives `still`, which asks again).
            answer_reply = _ANSWER_REPLIES[a.conversation["answered"]]
            situation = answer_reply if answer_reply in self.protocol.replies else "still"
        elif (a.route == "protocol" and level_index(own_level) < level_index("moderate")
              and since_crisis is not None and since_crisis < STILL_TURNS):
            # Raised by the conversation's carried risk alone, right after a crisis reply: the agent
            # stays with the person and asks how they are instead of repeating the protocol; on
            # consecutive such turns its two wordings alternate (never the same words twice running).
            situation = self._alternating("still", last_reply)
        said = _words(a.route, category)
        # (A situational reply says the same words whatever the category: the `unsure` question after
        # a suicide reading, then after a self-harm one.)
        if since_crisis == 0 and ((situation and situation == last_reply) or (not situation and said == last_said)):
            # The same words would follow the same words ("I want to kill myself", twice; the
            # protocol's reply again when the level rose from protocol to escalate; a means question
            # pressed a third time): the agent stays with the person in the `still` wordings
            # (alternating), which keep the resources and, on the emergency route, the emergency
            # sentence first; a pressed means question gets its other wording.
            if situation == "means_again" and "means" in self.protocol.replies:
                situation = "means"
            else:
                situation = self._alternating({"emergency": "emergency_still", "helper": "helper_still"}.get(a.route, "still"),
                                              last_reply)
        # The situational reply given, and which reply it was, are carried with the conversation
        # (checkpointed with the risk).
        carried = dict(a.conversation, reply=situation, said=said) if a.conversation else a.conversation
        message = self.protocol.reply(category, self.locale, route=a.route, language_note=note, situation=situation)
        return replace(a, category=category, resources=resources, emergency=emergency, message=message,
                       conversation=_with_question(carried, message, category))

    def _alternating(self, first: str, last_reply: str) -> str:
        """The situational reply ``first``, or its ``_again`` wording when ``first`` was the last
        reply (never the same words twice running); "" when this protocol file has neither (its
        category reply then answers)."""
        again = f"{first}_again"
        situation = again if last_reply == first and again in self.protocol.replies else first
        return situation if situation in self.protocol.replies else ""

    def _read_clinical(self, text: str, conversation: ConversationRisk | dict[str, Any] | None,
                       prev: ConversationRisk, a: SafetyAssessment) -> "ClinicalReading":
        """The clinical reading of ``text``: ``prev`` is the conversation's risk so far, and the
        reader's own state is carried in the checkpointed ``conversation`` dict."""
        assert self.clinical is not None
        state = conversation.get("clinical") if isinstance(conversation, dict) else None
        earlier = prev.peak != "none" or prev.score >= 0.5
        return self.clinical.read(text, state, earlier_risk=earlier, risk_now=a.message_level != "none")

    def _with_clinical(self, a: SafetyAssessment, reading: "ClinicalReading", text: str) -> SafetyAssessment:
        """Attach the reading, the presentation the register follows and its vetted reply; carry
        the reader's state in the conversation dict (checkpointed with the risk)."""
        from empathic_agent.safety.clinical import REGISTER_PRIORITY

        clinical = reading.to_dict()
        # A presentation carried from earlier turns leads the register for a short follow-up
        # ("which one, then?") and for a longer message that still speaks about it (the reader's
        # ``continued``); a message on something else gets the ordinary register (the presentation
        # stays active for the guard).
        follow_up = len(text.split()) <= FOLLOW_UP_WORDS
        names = tuple(p.name for p in reading.presentations
                      if p.leads and (p.source != "conversation" or follow_up or p.name in reading.continued))
        lead = next((n for n in REGISTER_PRIORITY if n in names), "")
        if lead and not a.crisis:
            turns = int(a.conversation.get("turns", 0) or 0)
            clinical["register"] = lead
            clinical["message"] = self.protocol.clinical_reply(lead, self.locale, variant=max(0, turns - 1))
        conversation = dict(a.conversation)
        if conversation or reading.state:
            conversation["clinical"] = dict(reading.state or {})
        return replace(a, clinical=clinical, conversation=conversation)

    @staticmethod
    def in_conversation(a: SafetyAssessment, conversation: ConversationRisk | dict[str, Any], *,
                        now: float | None = None, text: str = "", asked: str = "",
                        floor: str = "none") -> SafetyAssessment:
        """The message's assessment raised by the conversation's accumulated risk (``asked``: the
        question the agent's last reply ended with, :func:`~empathic_agent.safety.conversation.asked_in`;
        ``floor``: the level an open means question keeps at least)."""
        prev = _as_risk(conversation)
        severity = max(level_index(a.message_level), float(sum((a.learned.get("at_least") or {}).values())))
        conv = advance(prev, message_level=a.message_level, severity=severity, subject=a.subject,
                       dimensions={d.name: d.score for d in a.dimensions}, now=now, text=text, asked=asked,
                       floor=floor, floor_reason=MEANS_OPEN)
        if conv.level == a.level:
            return replace(a, conversation=conv.to_dict())
        # Raised by the conversation: its subject (whose danger the carried risk is about) leads.
        subject = conv.subject if conv.subject != "none" else (a.subject if a.subject != "none" else "self")
        route = route_for(conv.level, subject)
        crisis = route in CRISIS_ROUTES
        dims = set(conv.dimensions) | {d.name for d in a.dimensions}
        return replace(a, level=conv.level, route=route, subject=subject, crisis=crisis,
                       category=protocol_category(dims, subject) if crisis else None,
                       signals=a.signals + (f"conversation:{conv.reason}",), conversation=conv.to_dict())

    def guard_context(self, safety: dict[str, Any] | None, user_messages: Sequence[str] = ()) -> "GuardContext":
        """The reply guard's context: the turn's safety reading and what the person said last
        (``user_messages``, oldest first)."""
        from empathic_agent.safety.guard import GuardContext, said_text

        return GuardContext.from_safety(safety, said=said_text(user_messages))

    def escalate(self, event: CrisisEvent) -> list[str]:
        """Tell the embedding app (callbacks now; the webhook in a background thread). Returns
        the errors of failing callbacks (logged too)."""
        errors = []
        for fn in list(self.on_crisis):
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 — a broken hook must not break the turn
                log.error("safety: escalation callback %r failed: %s", fn, exc)
                errors.append(f"callback {getattr(fn, '__name__', fn)!s}: {exc}")
        if self.webhook_url:
            payload = event.to_dict()
            if not self.webhook_include_text:
                payload.pop("text", None)
            threading.Thread(target=self._post, args=(payload,), daemon=True, name="crisis-webhook").start()
        return errors

    def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        for attempt in range(3):
            try:
                req = urllib.request.Request(self.webhook_url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.webhook_timeout_s) as r:
                    if 200 <= r.status < 300:
                        return
            except Exception as exc:  # noqa: BLE001
                log.error("safety: webhook %s failed (attempt %d): %s", self.webhook_url, attempt + 1, exc)
            time.sleep(0.5 * (attempt + 1))


#: The situational reply to an answer that set the level, by the question answered: "no" or "I
#: don't know" to "are you safe right now?" is answered as such (`not_safe`), not asked again; yes
#: to "any thoughts of …?" is acknowledged, then the screener's next question, method and plan
#: (`thoughts_yes`).  An answer to the plan question is high: the emergency reply, as it stands.
_ANSWER_REPLIES: Final[dict[str, str]] = {"safe": "not_safe", "thoughts": "thoughts_yes"}


def _with_question(conversation: dict[str, Any], message: str, category: str | None) -> dict[str, Any]:
    """The conversation dict with the question ``message`` ends with (``asked``), so the next turn
    reads a short reply as its answer; only a question about the person's own safety (not the
    helper's or harm-to-others replies)."""
    asked = asked_in(message) if category not in ("others_at_risk", "harm_others") else ""
    return dict(conversation, asked=asked) if asked and conversation else conversation


def _means_seeking(a: SafetyAssessment, reading: "ClinicalReading") -> SafetyAssessment:
    """A means question in a risk context is researching a method: ``high`` (C-SSRS: method),
    answered by the protocol and escalated."""
    from empathic_agent.safety.taxonomy import DimensionReading

    ev = next(p for p in reading.presentations if p.name == "means_seeking")
    dims = tuple(a.dimensions) + (DimensionReading("method", 1.0, ev.evidence, "clinical:means_seeking"),)
    subject = a.subject if a.subject != "none" else "self"
    route = route_for("high", subject)
    names = {d.name for d in dims}
    return replace(a, level="high", message_level="high", route=route, subject=subject, crisis=route in CRISIS_ROUTES,
                   category=protocol_category(names, subject), score=max(a.score, ev.score),
                   signals=a.signals + (f"clinical:means_seeking:{reading.means_query}",), dimensions=dims)
