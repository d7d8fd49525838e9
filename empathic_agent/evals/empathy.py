"""Empathy scoring of a reply: an LLM judge, or a deterministic rule-based scorer.

The rubric is EPITOME (Sharma, Miner, Atkins & Althoff, "A Computational Approach to Understanding
Empathy Expressed in Text-Based Mental Health Support", EMNLP 2020): three communication
mechanisms, each scored 0 (none), 1 (weak) or 2 (strong):

* **emotional reactions** — expressing warmth, compassion, concern about what the person feels;
* **interpretations** — communicating an understanding of the person's feelings and experience;
* **explorations** — improving understanding by exploring what the person has not yet said.

:class:`LLMJudge` asks any OpenAI-compatible model one closed question per mechanism and reads the
distribution over "0"/"1"/"2" from the answer token's log-probabilities (vLLM and OpenAI return
them), so scores are expectations with their uncertainty; servers without logprobs give a one-hot
distribution, and the report says so (``probabilities: false``).  :class:`EpitomeJudge` is the
default when no LLM judge is configured: all-MiniLM-L6-v2 fine-tuned on the EPITOME annotations
(:mod:`empathic_agent.evals.pair_model`), calibrated distributions over 0/1/2 that run offline in
milliseconds (research-only weights: the data's licence).  :class:`RuleJudge` (``judge = "rules"``)
stays available: transparent lexical rules for the same three mechanisms — reproducible, but a
proxy, and labelled as such everywhere it is reported.

Each judge subclasses :class:`EmpathyJudge` and implements one hook, ``_score_impl``.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Sequence

from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["DIMENSIONS", "RUBRIC", "DimensionScore", "EmpathyJudge", "EmpathyScore", "EpitomeJudge", "LLMJudge",
           "RuleJudge", "JUDGES", "JUDGE_REGISTRY", "load_judge", "seeker_text"]

DIMENSIONS: Final[tuple[str, ...]] = ("emotional_reactions", "interpretations", "explorations")
LEVELS: Final[tuple[str, ...]] = ("0", "1", "2")

#: The judge's rubric per mechanism (after EPITOME's annotation guidelines).
RUBRIC: Final[dict[str, str]] = {
    "emotional_reactions": (
        "EMOTIONAL REACTIONS: does the response express warmth, compassion, concern or similar feelings "
        "towards the person?\n0 = none.\n1 = weak: a generic or alluding expression (e.g. 'Everything will "
        "be fine', 'I understand').\n2 = strong: explicitly names and reacts to what the person feels "
        "(e.g. 'I'm so sorry, losing him must hurt terribly')."),
    "interpretations": (
        "INTERPRETATIONS: does the response communicate an understanding of the person's feelings and "
        "experiences inferred from what they said?\n0 = none.\n1 = weak: a generic acknowledgement "
        "('I understand how you feel').\n2 = strong: specifies the inferred feeling or experience "
        "('It sounds like you feel left out because your friends didn't invite you') or relates a "
        "similar experience."),
    "explorations": (
        "EXPLORATIONS: does the response explore the person's feelings and experiences that they have "
        "not stated, to understand them better?\n0 = none.\n1 = weak: a generic question ('What "
        "happened?', 'How are you?').\n2 = strong: a specific, gentle question about their experience "
        "or feelings ('Are you feeling lonely right now?', 'What was the hardest part of the call?')."),
}

JUDGE_SYSTEM: Final[str] = (
    "You are an expert rater of empathy in text-based emotional support, trained on the EPITOME "
    "framework. You rate only the RESPONSE, given the conversation before it. Answer with a single "
    "digit: 0, 1 or 2.")


@dataclass(frozen=True)
class DimensionScore:
    """Expected score (0..2) and the distribution over 0/1/2."""

    score: float
    distribution: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "distribution": [round(p, 4) for p in self.distribution]}


@dataclass(frozen=True)
class EmpathyScore:
    kind: str
    dims: dict[str, DimensionScore]
    #: The distributions are the judge's probabilities (not one-hot answers).
    probabilities: bool = False
    seconds: float = 0.0

    @property
    def overall(self) -> float:
        """Mean expected score over the mechanisms, scaled to 0..1."""
        return sum(d.score for d in self.dims.values()) / (2 * len(self.dims))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "probabilities": self.probabilities, "overall": round(self.overall, 4),
                "seconds": round(self.seconds, 3), **{k: v.to_dict() for k, v in self.dims.items()}}


class EmpathyJudge(ABC):
    """Scores a reply's empathy on the EPITOME mechanisms."""

    #: "llm", "epitome" or "rules" (reported with every score).
    kind: str = "base"

    @classmethod
    def from_settings(cls, settings: "Settings") -> "EmpathyJudge":
        """The registry's factory (a judge that needs settings or weights overrides it)."""
        return cls()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": None, "url": None, "probabilities": False}

    async def score(self, context: Sequence[tuple[str, str]], reply: str) -> EmpathyScore:
        """``context``: the conversation before the reply as (role, text), role "user" or
        "assistant", the person's last message last.  Raises :class:`LLMError` for a judge that
        cannot be reached (the runner records it per turn and goes on)."""
        t0 = time.perf_counter()
        dims = await self._score_impl(list(context), reply or "")
        probabilities = any(not _one_hot(d.distribution) for d in dims.values())
        return EmpathyScore(self.kind, dims, probabilities=probabilities, seconds=time.perf_counter() - t0)

    @abstractmethod
    async def _score_impl(self, context: list[tuple[str, str]], reply: str) -> dict[str, DimensionScore]:
        """One :class:`DimensionScore` per name in :data:`DIMENSIONS`."""

    async def aclose(self) -> None:
        """Release connections (default: nothing)."""


def _one_hot(dist: Sequence[float]) -> bool:
    return sorted(dist)[-1] > 0.999


def _point(level: int) -> DimensionScore:
    return DimensionScore(float(level), tuple(float(i == level) for i in range(3)))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z']+")
_STOP: Final[frozenset[str]] = frozenset(
    "i me my myself we our you your yours he she it they them their this that these those a an the and or but if "
    "so to of in on at for with about as is am are was were be been being have has had do does did not no just "
    "really very so too can could would should will shall may might must it's i'm that's don't can't there here "
    "what how why when where who which than then out up down all any some more most much many feel feeling felt "
    "like get got know think want".split())
_REACTION_STRONG = re.compile(
    r"\b(i'?m (so |really |very )?sorry|so sorry|my heart|that (sounds|must be|must have been) (so |really |very )?"
    r"(hard|painful|awful|heartbreaking|devastating|frightening|scary|lonely|exhausting|overwhelming|upsetting|"
    r"frustrating|difficult|tough|wonderful|exciting|amazing)|how (wonderful|exciting|awful|painful|hard)|"
    r"congrat\w*|i'?m (so )?(glad|happy) (for|to hear)|i'?m here (for|with) you)", re.I)
_REACTION_WEAK = re.compile(r"\b(sorry|i understand|that'?s (hard|tough|great|sad)|hope|glad|here for you|"
                            r"take care|it'?s okay|it is okay|you'?re not alone)", re.I)
_INTERPRET_STRONG = re.compile(
    r"\b(it sounds like|sounds like you|it seems (like )?you|you (must|might|may) (feel|be|have)|you'?re feeling|"
    r"you are feeling|you feel|you'?ve been feeling|that must (feel|have felt)|i can (see|hear|imagine) (why|how|that)|"
    r"makes sense (that|you)|no wonder you|i (went|have been) through (something|the same))", re.I)
_INTERPRET_WEAK = re.compile(r"\b(i understand|i (can )?see|i hear you|makes sense|understandable|i get it)", re.I)
_QUESTION_GENERIC = re.compile(r"^\W*(how are you|what happened|are you (ok|okay)|how (do|does) that make you feel)"
                               r"\W*$", re.I)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


class RuleJudge(EmpathyJudge):
    """Deterministic lexical proxy of EPITOME (used when no LLM judge is configured).

    * emotional reactions: 2 for an explicit, feeling-specific reaction ("I'm so sorry", "that
      sounds really hard"), 1 for a generic one ("I understand", "hope", "here for you");
    * interpretations: 2 for an explicit inference about them ("it sounds like you...", "you must
      feel...") that also reuses a content word of their message, 1 for either part alone;
    * explorations: 2 for a question that is about their message (shares a content word, or asks
      about feelings), 1 for a generic question, 0 for none.
    """

    kind = "rules"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": "rule-based scorer (no LLM judge configured)", "url": None,
                "probabilities": False}

    async def _score_impl(self, context: list[tuple[str, str]], reply: str) -> dict[str, DimensionScore]:
        last_user = next((t for r, t in reversed(context) if r == "user"), "")
        theirs = _content_words(last_user)
        sentences = re.split(r"(?<=[.!?])\s+", reply.strip())
        non_questions = " ".join(s for s in sentences if not s.endswith("?"))
        questions = [s for s in sentences if s.endswith("?")]
        shared = theirs & _content_words(non_questions)

        reaction = 2 if _REACTION_STRONG.search(reply) else 1 if _REACTION_WEAK.search(reply) else 0
        explicit = bool(_INTERPRET_STRONG.search(non_questions))
        interpretation = (2 if explicit and shared else 1 if explicit or _INTERPRET_WEAK.search(non_questions)
                          or len(shared) >= 2 else 0)
        exploration = 0
        for q in questions:
            specific = (theirs & _content_words(q)) or re.search(r"\b(feel|feeling|felt|hardest|mean to you|"
                                                                 r"tell me more|what (was|is) it like)\b", q, re.I)
            level = 2 if specific and not _QUESTION_GENERIC.match(q) else 1
            exploration = max(exploration, level)
        return {"emotional_reactions": _point(reaction), "interpretations": _point(interpretation),
                "explorations": _point(exploration)}


def seeker_text(context: Sequence[tuple[str, str]]) -> str:
    """The person's words the reply answers: their messages since the agent last spoke (EPITOME
    rates a response to one seeker post)."""
    words: list[str] = []
    for role, text in reversed(list(context)):
        if role != "user":
            if words:
                break
            continue
        words.insert(0, text)
    return " ".join(words)


class EpitomeJudge(EmpathyJudge):
    """EPITOME with a fine-tuned MiniLM pair reader (offline; calibrated 0/1/2 distributions).

    Reads (the person's last words, the reply) with the weights in ``evals/weights/epitome.*``
    (trained by ``empathic judge train``; model card ``EPITOME_MODEL_CARD.md``).  Trained on Reddit
    support posts: research-only, non-commercial.
    """

    kind = "epitome"

    @classmethod
    def from_settings(cls, settings: "Settings") -> "EpitomeJudge":
        """The packaged judge; a clear error when its weights are missing."""
        if not cls.available():
            from empathic_agent.errors import ConfigError

            raise ConfigError("the EPITOME judge's weights are missing (evals/weights/epitome.*); train them with "
                              "'empathic judge train' or choose judge = \"rules\"")
        return cls(settings=settings)

    def __init__(self, folder: Any = None, *, settings: "Settings | None" = None) -> None:
        from empathic_agent.evals.pair_model import PairClassifier

        self.model = PairClassifier("epitome", folder, settings=settings)

    @staticmethod
    def available(folder: Any = None) -> bool:
        from empathic_agent.evals.pair_model import PairClassifier

        return PairClassifier("epitome", folder).available()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": "EPITOME judge (fine-tuned all-MiniLM-L6-v2; research-only)",
                "url": None, "probabilities": True, "weights": str(self.model.config_path),
                "members": [p.name for p in self.model.member_files]}

    def score_many(self, contexts: Sequence[str], replies: Sequence[str]) -> list[dict[str, DimensionScore]]:
        """Batch scoring: the person's words and the reply per pair (synchronous)."""
        probs = self.model.predict(list(contexts), [r or "" for r in replies])
        out = []
        for i in range(len(replies)):
            dims = {}
            for d in DIMENSIONS:
                dist = tuple(float(p) for p in probs[d][i])
                dims[d] = DimensionScore(sum(k * p for k, p in enumerate(dist)), dist)  # type: ignore[arg-type]
            out.append(dims)
        return out

    async def _score_impl(self, context: list[tuple[str, str]], reply: str) -> dict[str, DimensionScore]:
        import asyncio

        return (await asyncio.to_thread(self.score_many, [seeker_text(context)], [reply]))[0]


class LLMJudge(EmpathyJudge):
    """EPITOME through any OpenAI-compatible chat model (one closed question per mechanism)."""

    kind = "llm"

    def __init__(self, llm: Any, *, url: str | None = None) -> None:
        self.llm = llm
        self.url = url

    @classmethod
    def from_settings(cls, settings: "Settings") -> "LLMJudge":
        from empathic_agent.generate.llm import load_remote_llm

        llm = load_remote_llm(settings, settings.judge_base_url, settings.judge_model, settings.judge_api_key)
        return cls(llm, url=settings.judge_base_url)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.llm.model_name, "url": self.url,
                "probabilities": bool(getattr(self.llm, "_logprobs", False))}

    async def _score_impl(self, context: list[tuple[str, str]], reply: str) -> dict[str, DimensionScore]:
        from empathic_agent.generate.llm import ChatMessage, GenerationOptions

        convo = "\n".join(f"{'Person' if r == 'user' else 'Supporter'}: {t}" for r, t in context[-6:])
        out: dict[str, DimensionScore] = {}
        for dim in DIMENSIONS:
            prompt = (f"{RUBRIC[dim]}\n\nConversation so far:\n{convo}\n\nRESPONSE: {reply}\n\n"
                      f"Score the RESPONSE for {dim.replace('_', ' ')}. Answer with one digit (0, 1 or 2).")
            choice = await self.llm.choose([ChatMessage("system", JUDGE_SYSTEM), ChatMessage("user", prompt)],
                                           LEVELS, GenerationOptions(max_new_tokens=2, temperature=0.0, seed=0))
            dist = tuple(choice.probabilities[c] for c in LEVELS)
            out[dim] = DimensionScore(sum(i * p for i, p in enumerate(dist)), dist)  # type: ignore[arg-type]
        return out

    async def aclose(self) -> None:
        await self.llm.aclose()


#: Offline judges by ``settings.judge`` (an LLM judge is chosen by ``judge_base_url`` instead); more
#: through the ``empathic_agent.judges`` entry-point group.
JUDGE_REGISTRY: "Registry[EmpathyJudge]" = Registry("judges", noun="empathy judge")
JUDGE_REGISTRY.register("epitome", "empathic_agent.evals.empathy:EpitomeJudge.from_settings")
JUDGE_REGISTRY.register("rules", "empathic_agent.evals.empathy:RuleJudge.from_settings")
#: The packaged offline judges.
JUDGES: Final[tuple[str, ...]] = ("epitome", "rules")


def load_judge(settings: "Settings") -> EmpathyJudge:
    """The LLM judge when ``settings.judge_base_url`` is set; else ``settings.judge``: the EPITOME
    judge (default), the rule-based scorer, or a judge another package registered."""
    if settings.judge_base_url:
        if not settings.judge_base_url.startswith(("http://", "https://")):
            from empathic_agent.errors import ConfigError

            raise ConfigError(f"judge_base_url must start with http:// or https:// (got {settings.judge_base_url!r})")
        return LLMJudge.from_settings(settings)
    return JUDGE_REGISTRY.create(settings.judge, settings)
