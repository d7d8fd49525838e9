"""Language of a message, and risk cues in languages the screen does not read.

The learned layer and the patterns are English: a message in another language must not be silently
"safe".  :func:`detect_language` names the language (py3langid, BSD, its model ships in the wheel)
and says whether the screen covers it; :func:`risk_cues` looks for the most common ways of saying
"I want to die", "kill myself", "suicide", "hurt myself", "end it all", "no reason to live", "not
wake up", "an attempt", "an overdose", "a goodbye letter" or "he hits me" in the languages people
most often write to us in besides English (accents folded, word boundaries respected; "an attempt"
only where it is not an attempt *at* something).  A cue in an uncovered language routes the message
to the crisis protocol (with the international directory): a human can read what the screen cannot.

The lexicon is small and written by hand; it is a safety net, not a screen.  Languages beyond it
are reported (``covered: false``) so the embedding app can route them to a human.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any, Final

__all__ = ["detect_language", "risk_cues", "word_count", "unread", "COVERED_LANGUAGES", "CUE_LANGUAGES"]

#: Languages the screen reads (its patterns and training data).
COVERED_LANGUAGES: Final[frozenset[str]] = frozenset({"en"})
#: Below this confidence, or with fewer words, a message is taken as English (short chat messages
#: — "kms", "ok" — are too short to identify, and most are English).
MIN_CONFIDENCE: Final[float] = 0.6
MIN_WORDS: Final[int] = 3

_CUES: Final[dict[str, tuple[str, ...]]] = {
    "es": (r"suicid\w*", r"matarme", r"quitarme la vida", r"me quiero morir", r"quiero morir\w*", r"no quiero vivir",
           r"no quiero seguir viviendo", r"acabar con (todo|mi vida)", r"hacerme dano", r"cortarme", r"pastillas",
           r"no vale la pena vivir", r"mejor (estarian|estaria) sin mi", r"desaparecer para siempre", r"me pega",
           r"me va a matar", r"despedirme", r"ya no aguanto mas", r"no despertar\w*", r"hice un intento(?! d)",
           r"sobredosis", r"carta de despedida", r"mejor muert[oa]", r"no quiero estar aqui"),
    "fr": (r"suicid\w*", r"me tuer", r"mettre fin a (mes jours|ma vie)", r"je veux mourir", r"envie de mourir",
           r"plus envie de vivre", r"en finir", r"me faire du mal", r"me scarifier", r"me couper", r"cachets",
           r"mieux sans moi", r"ne (plus|pas) me reveiller", r"il me frappe", r"il va me tuer", r"dire adieu",
           r"(j.ai )?fait une tentative(?! d)", r"surdose", r"overdose", r"lettre d.adieu", r"mieux (mort|morte)",
           r"disparaitre"),
    "de": (r"suizid\w*", r"selbstmord\w*", r"umbringen", r"mich toten", r"sterben", r"nicht mehr leben",
           r"will nicht mehr", r"schluss machen", r"ritzen", r"mir weh tun", r"tabletten", r"besser ohne mich",
           r"nicht mehr aufwachen", r"er schlagt mich", r"bringt mich um", r"abschied",
           r"(einen )?(selbstmord)?versuch gemacht", r"uberdosis", r"abschiedsbrief", r"lieber tot",
           r"nicht mehr da sein"),
    "pt": (r"suicid\w*", r"me matar", r"tirar (a )?minha vida", r"quero morrer", r"nao quero (mais )?viver",
           r"acabar com tudo", r"me machucar", r"me cortar", r"comprimidos", r"melhor sem mim", r"nao acordar\w*",
           r"ele me bate", r"vai me matar", r"me despedir", r"fiz uma tentativa(?! d)", r"overdose",
           r"carta de despedida", r"melhor mort[oa]", r"sumir (para|pra) sempre"),
    "it": (r"suicid\w*", r"uccidermi", r"ammazzarmi", r"togliermi la vita", r"voglio morire",
           r"non voglio (piu )?vivere", r"farla finita", r"farmi del male", r"tagliarmi", r"pastiglie",
           r"meglio senza di me", r"non svegliarmi\w*", r"mi picchia", r"mi uccidera", r"dire addio",
           r"ho fatto un tentativo(?! d)", r"overdose", r"lettera d.addio", r"meglio mort[oa]", r"sparire per sempre"),
    "nl": (r"zelfmoord\w*", r"suicid\w*", r"zelfdoding", r"mezelf (van kant maken|doden|iets aandoen)", r"dood willen",
           r"wil dood", r"niet meer leven", r"er een eind aan maken", r"snijden", r"pillen", r"beter af zonder mij",
           r"hij slaat me", r"niet meer wakker (worden|te worden)", r"poging gedaan", r"overdosis", r"afscheidsbrief"),
    "pl": (r"samobojst\w*", r"zabic sie", r"chce umrzec", r"nie chce zyc", r"skonczyc ze soba", r"ciac sie",
           r"tabletki", r"lepiej beze mnie", r"bije mnie", r"nie obudzic sie", r"probowal\w* sie zabic",
           r"przedawkowa\w*", r"list pozegnalny", r"nie ma sensu zyc"),
    "sv": (r"sjalvmord\w*", r"ta livet av mig", r"vill do", r"vill inte leva", r"skada mig sjalv", r"skara mig",
           r"tabletter", r"battre utan mig", r"han slar mig", r"inte vakna", r"forsokte ta livet", r"overdos",
           r"avskedsbrev"),
    "tr": (r"intihar\w*", r"kendimi oldur\w*", r"olmek istiyorum", r"yasamak istemiyorum", r"her seye son ver\w*",
           r"kendime zarar", r"kendimi kes\w*", r"haplar", r"bensiz daha iyi", r"beni dovuyor", r"beni oldurecek"),
}
#: Languages with a cue lexicon.
CUE_LANGUAGES: Final[frozenset[str]] = frozenset(_CUES)
_CUE_RES: Final = {lang: [(c, re.compile(rf"(?<!\w){c}(?!\w)")) for c in cues] for lang, cues in _CUES.items()}

_identifier: Any = None
_lock = threading.Lock()


def _fold(text: str) -> str:
    """Lower case without accents (people type "suicidio" and "suicídio", "tuer" and "tüer")."""
    t = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in t if not unicodedata.combining(ch)).replace("ß", "ss").replace("ł", "l")


def _classifier() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _identifier


def detect_language(text: str) -> dict[str, Any]:
    """``{"code", "confidence", "covered"}``; short or unsure messages count as English.  Without
    py3langid installed: English, ``"detector": "unavailable"``."""
    words = word_count(text)
    try:
        code, confidence = _classifier().classify(text)
    except ImportError:
        return {"code": "en", "confidence": 0.0, "covered": True, "detector": "unavailable"}
    if words < MIN_WORDS or confidence < MIN_CONFIDENCE:
        return {"code": "en", "confidence": round(float(confidence), 4), "covered": True, "guess": code}
    return {"code": code, "confidence": round(float(confidence), 4), "covered": code in COVERED_LANGUAGES}


def unread(lang: dict[str, Any]) -> bool:
    """Is a message with this :func:`detect_language` result one the English screen does not read:
    its language is not covered, or it was too short or unsure to identify and the best guess is
    not English?  (The cue lexicon and the multilingual reader read exactly these.)"""
    return bool(lang) and (not lang.get("covered", True) or lang.get("guess", "en") != "en")


#: Scripts written without spaces between words: Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar.
_UNSPACED: Final = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0eff\u1780-\u17ff\u1000-\u109f]")


def word_count(text: str) -> int:
    """Words, counting two characters of a script written without spaces (Chinese, Japanese, Thai
    …) as one: "我已经把遗书写好了" is one space-separated token but several words."""
    unspaced = len(_UNSPACED.findall(text))
    return len(_UNSPACED.sub(" ", text).split()) + unspaced // 2


def risk_cues(text: str) -> list[str]:
    """Risk cues of the multilingual lexicon in the message (any language; accents folded)."""
    t = _fold(text)
    return [f"{lang}:{cue}" for lang, res in _CUE_RES.items() for cue, rx in res if rx.search(t)]
