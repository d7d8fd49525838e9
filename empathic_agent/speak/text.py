"""Speakable text: what the LLM wrote -> what the voice should say.

An LLM reply is written to be *read*: markdown, links, emoji, digits, code.  Spoken as it is, a
voice spells out asterisks, reads URLs character by character and says "smiling face with
smiling eyes".  This module turns such text into plain sentences a TTS voice says well:

* :func:`speakable` normalises one piece of text:

  - HTML tags are removed and entities decoded; markdown is unwrapped: fenced code blocks are
    dropped (code is for the eyes), ``inline code`` keeps its content, ``[text](url)`` keeps the
    text, ``![alt](url)`` keeps the alt text, emphasis/heading/quote/list/table markers go;
  - bare URLs become "a link", e-mail addresses "an email address";
  - emoji and other pictographs are removed (also skin-tone modifiers, joiners, variation
    selectors);
  - numbers are read the way a person reads them (:func:`number_to_words`, :func:`year_to_words`):
    ``1,200`` -> "one thousand two hundred", ``2024`` -> "twenty twenty-four", ``45%`` ->
    "forty-five percent", ``$3.50`` -> "three dollars and fifty cents", ``3:30`` -> "three
    thirty", ``2nd`` -> "second", ``3.14`` -> "three point one four", ``5-10`` -> "five to
    ten"; a long run of digits (a phone or order number) is read digit by digit, and so is a number
    to call or text ("call 911" -> "call nine one one", "text HOME to 741741");
  - a few symbols are said ("&" -> "and", "+" between numbers -> "plus"), the rest dropped;
    whitespace and repeated punctuation are collapsed.

* :func:`split_sentences` / :class:`SentenceSplitter` cut text into sentences, the unit of
  streaming synthesis: the splitter is fed LLM chunks as they arrive and hands out each sentence
  as soon as it is complete (a full stop only counts once the next character shows it is not
  "3.5" or "e.g."), so the voice can start while the LLM is still writing.  Newlines end a
  sentence (list items rarely have full stops); a very long run-on sentence is cut at a clause
  boundary so the first audio never waits for 300 characters.

* :func:`prepare_speech` does both and caps the total: a voice reply longer than
  :data:`MAX_SPOKEN_CHARS` characters stops at a sentence boundary (a listener cannot take in a
  page read aloud; the full text is still on screen).

Everything here is pure Python (``re``, ``unicodedata``, ``html``): no new dependency.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Iterable

__all__ = [
    "MAX_SPOKEN_CHARS",
    "MAX_SENTENCE_CHARS",
    "speakable",
    "number_to_words",
    "ordinal_to_words",
    "year_to_words",
    "split_sentences",
    "SentenceSplitter",
    "cap_sentences",
    "prepare_speech",
    "SpeechText",
]

#: Most characters spoken per reply (~40 s of speech at ~15 characters/s).  Longer replies stop
#: at the last sentence boundary before this; the written reply still holds everything.
MAX_SPOKEN_CHARS: Final[int] = 600
#: A "sentence" longer than this (raw characters) without a full stop is cut at a clause boundary
#: (comma, semicolon, colon, dash) or else a space, so the first audio does not wait for it.
MAX_SENTENCE_CHARS: Final[int] = 220
#: Runs of this many digits or more (without grouping commas) are read digit by digit: nobody
#: says a phone number as "five hundred fifty-five million ...".
DIGIT_BY_DIGIT_MIN: Final[int] = 7
#: Largest integer read as a number (below a quadrillion); larger ones are read digit by digit.
_MAX_WORDS_INT: Final[int] = 10**15

# Abbreviations whose full stop does not end a sentence (lower case, without the final dot).
_ABBREVIATIONS: Final[frozenset[str]] = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "approx", "dept",
    "est", "fig", "inc", "ltd", "co", "mt", "no", "vol", "cf", "al", "ca", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m",
})

_ONES: Final[tuple[str, ...]] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS: Final[tuple[str, ...]] = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)
_SCALES: Final[tuple[tuple[int, str], ...]] = (
    (10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"),
)
# Irregular ordinals of the last word ("one" -> "first"); the rest add "th" ("-y" -> "-ieth").
_ORDINAL_WORDS: Final[dict[str, str]] = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_CURRENCIES: Final[dict[str, tuple[str, str, str, str]]] = {
    # symbol: (singular, plural, cent singular, cent plural)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}


# ---------------------------------------------------------------------------------------------
# Numbers


def _below_thousand(n: int) -> str:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append(f"{_ONES[hundreds]} hundred")
    if rest:
        if rest < 20:
            words.append(_ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    return " ".join(words)


def number_to_words(n: int) -> str:
    """An integer in words: ``1234`` -> "one thousand two hundred thirty-four".

    Negative numbers get "minus"; integers of a quadrillion or more are read digit by digit.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= _MAX_WORDS_INT:
        return _digits(str(n))
    if n < 1000:
        return _below_thousand(n) if n else "zero"
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            count, n = divmod(n, value)
            words.append(f"{_below_thousand(count)} {name}")
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """``21`` -> "twenty-first", ``12`` -> "twelfth", ``100`` -> "one hundredth"."""
    words = number_to_words(n)
    head, sep, last = words.rpartition(" ")
    prefix, dash, unit = last.rpartition("-")
    if unit in _ORDINAL_WORDS:
        unit = _ORDINAL_WORDS[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + prefix + dash + unit


def year_to_words(year: int) -> str:
    """A year the way it is said: 1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh five",
    1900 -> "nineteen hundred", 2005 -> "two thousand five", 2024 -> "twenty twenty-four"."""
    if not 1000 <= year <= 9999:
        return number_to_words(year)
    if 2000 <= year <= 2009 or year % 1000 == 0:
        return number_to_words(year)
    high, low = divmod(year, 100)
    if low == 0:
        return f"{_below_thousand(high)} hundred"
    if low < 10:
        return f"{_below_thousand(high)} oh {_ONES[low]}"
    return f"{_below_thousand(high)} {_below_thousand(low)}"


def _digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s if c.isdigit())


def _int_words(raw: str) -> str:
    """Digits (maybe with grouping commas) -> words; long ungrouped runs digit by digit."""
    plain = raw.replace(",", "")
    if "," not in raw and len(plain) >= DIGIT_BY_DIGIT_MIN:
        return _digits(plain)
    if len(plain) > 1 and plain.startswith("0"):  # "007", "0800": codes, said digit by digit
        return _digits(plain)
    return number_to_words(int(plain))


def _decimal_words(raw: str) -> str:
    whole, _, frac = raw.partition(".")
    return f"{_int_words(whole or '0')} point {_digits(frac)}"


def _money(match: re.Match[str]) -> str:
    symbol, whole, cents = match.group("cur"), match.group("whole"), match.group("cents")
    one, many, cent_one, cent_many = _CURRENCIES[symbol]
    amount = int(whole.replace(",", ""))
    out = f"{_int_words(whole)} {one if amount == 1 else many}"
    scale = match.group("scale")
    if scale:
        # "$5.5 million" -> "five point five million dollars"
        number = _decimal_words(f"{whole}.{cents}") if cents else _int_words(whole)
        return f"{number} {scale.lower()} {many}"
    if cents and int(cents.ljust(2, "0")[:2]):
        c = int(cents.ljust(2, "0")[:2])
        out += f" and {number_to_words(c)} {cent_one if c == 1 else cent_many}"
    return out


def _time(match: re.Match[str]) -> str:
    hour, minute = int(match.group("h")), int(match.group("m"))
    suffix = match.group("ampm") or ""
    suffix = {"am": " a m", "pm": " p m"}.get(suffix.lower().replace(".", "").replace(" ", ""), "")
    if minute == 0:
        return f"{number_to_words(hour)}{suffix or ' o clock'}"
    if minute < 10:
        return f"{number_to_words(hour)} oh {_ONES[minute]}{suffix}"
    return f"{number_to_words(hour)} {number_to_words(minute)}{suffix}"


def _plain_number(match: re.Match[str]) -> str:
    raw = match.group(0)
    sign = ""
    if raw[0] in "-−":
        sign, raw = "minus ", raw[1:]
    if "." in raw:
        return sign + _decimal_words(raw)
    plain = raw.replace(",", "")
    if not sign and "," not in raw and len(plain) == 4 and 1100 <= int(plain) <= 2099:
        return year_to_words(int(plain))
    return sign + _int_words(raw)


_NUM: Final[str] = r"\d{1,3}(?:,\d{3})+|\d+"
_MONEY_RE: Final[re.Pattern[str]] = re.compile(
    rf"(?P<cur>[$€£])\s?(?P<whole>{_NUM})(?:\.(?P<cents>\d+))?"
    r"(?:\s?(?P<scale>million|billion|trillion|thousand)\b)?",
    re.IGNORECASE)
_TIME_RE: Final[re.Pattern[str]] = re.compile(
    r"\b(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?:\s?(?P<ampm>[ap]\.?\s?m)\b)?", re.IGNORECASE)
_PERCENT_RE: Final[re.Pattern[str]] = re.compile(rf"(?<![\w.])(?P<n>(?:{_NUM})(?:\.\d+)?)\s?%")
_ORDINAL_RE: Final[re.Pattern[str]] = re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_RANGE_RE: Final[re.Pattern[str]] = re.compile(
    rf"(?<![\w.,])(?P<a>{_NUM})\s?[-–]\s?(?P<b>{_NUM})(?![\w.,]\d)")
_NUMBER_RE: Final[re.Pattern[str]] = re.compile(rf"(?<![\w.,])[-−]?(?:{_NUM})(?:\.\d+)?(?![\d])")
_PLUS_RE: Final[re.Pattern[str]] = re.compile(r"(?<=\d)\s*\+\s*(?=\d)")
_EQUALS_RE: Final[re.Pattern[str]] = re.compile(r"(?<=\d)\s*=\s*(?=\d)")


#: A number someone is told to call, ring, dial or text ("call 911", "call or text 988", "text HOME
#: to 741741", "ring 116 123", "1-800-273-8255"), and a crisis or emergency code naming a line ("988
#: Suicide & Crisis Lifeline"), is read digit by digit: nobody says "nine hundred eleven", and in a
#: crisis reply the number is the one thing the listener must catch.
_DIALLED_RE: Final[re.Pattern[str]] = re.compile(
    r"(?P<pre>\b(?i:call|calling|ring|ringing|dial|dialling|dialing|text|texting|phone|phoning)"
    r"(?:\s+(?i:or)\s+(?i:call|text|ring|phone))?(?:\s+[A-Z]{2,}\s+(?i:to))?\s+)"
    r"(?P<n>\+?\d(?:[\d]|[ -](?=\d)){2,16})(?!\d)"
    r"|(?P<code>\b(?:911|999|112|000|988|111)\b)(?=\s+[A-Z]|\s*[.,;:!?)]|\s*$)")


def _dialled(m: re.Match[str]) -> str:
    """``call 116 123`` -> "call one one six, one two three" (the groups kept as pauses)."""
    if m.group("code"):
        return _digits(m.group("code"))
    raw = m.group("n")
    groups = ", ".join(_digits(g) for g in re.split(r"[\s-]+", raw.lstrip("+")) if g)
    return m.group("pre") + ("plus " if raw.startswith("+") else "") + groups


def _numbers(text: str) -> str:
    text = _DIALLED_RE.sub(_dialled, text)
    text = _MONEY_RE.sub(_money, text)
    text = _TIME_RE.sub(_time, text)
    text = _PERCENT_RE.sub(lambda m: _plain_number_str(m.group("n")) + " percent", text)
    text = _ORDINAL_RE.sub(lambda m: ordinal_to_words(int(m.group("n"))), text)
    text = re.sub(r"(?<=\d)(?=[^\W\d_])", " ", text)  # "5pm", "10km": a number, then a word
    text = _RANGE_RE.sub(lambda m: f"{_plain_number_str(m.group('a'))} to {_plain_number_str(m.group('b'))}",
                         text)
    text = _PLUS_RE.sub(" plus ", text)
    text = _EQUALS_RE.sub(" equals ", text)
    return _NUMBER_RE.sub(_plain_number, text)


def _plain_number_str(raw: str) -> str:
    m = _NUMBER_RE.fullmatch(raw)
    return _plain_number(m) if m else raw


# ---------------------------------------------------------------------------------------------
# Markup, links, emoji

_FENCE_RE: Final[re.Pattern[str]] = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)
_HTML_COMMENT_RE: Final[re.Pattern[str]] = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_HTML_BLOCK_RE: Final[re.Pattern[str]] = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|\Z)",
                                                    re.DOTALL | re.IGNORECASE)
_HTML_TAG_RE: Final[re.Pattern[str]] = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_IMAGE_RE: Final[re.Pattern[str]] = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK_RE: Final[re.Pattern[str]] = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK_RE: Final[re.Pattern[str]] = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_URL_RE: Final[re.Pattern[str]] = re.compile(
    r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|dev|ai|gov|edu)"
    r"(?:/[^\s<>\"')\]]*)?\b", re.IGNORECASE)
_EMAIL_RE: Final[re.Pattern[str]] = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_INLINE_CODE_RE: Final[re.Pattern[str]] = re.compile(r"`+([^`]*)`+")
_HEADING_RE: Final[re.Pattern[str]] = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]*", re.MULTILINE)
_QUOTE_RE: Final[re.Pattern[str]] = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE)
_BULLET_RE: Final[re.Pattern[str]] = re.compile(r"^[ \t]*(?:[-*+•‣◦]|\d{1,3}[.)])[ \t]+", re.MULTILINE)
_RULE_RE: Final[re.Pattern[str]] = re.compile(r"^[ \t]*(?:[-*_=][ \t]*){3,}$", re.MULTILINE)
_TABLE_SEP_RE: Final[re.Pattern[str]] = re.compile(
    r"^[ \t]*\|?(?:[ \t]*:?-{2,}:?[ \t]*\|)+[ \t]*:?-*:?[ \t]*$", re.MULTILINE)
_EMPHASIS_RE: Final[re.Pattern[str]] = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_REPEAT_PUNCT_RE: Final[re.Pattern[str]] = re.compile(r"([!?.,;:])\1+")
_SPACE_BEFORE_PUNCT_RE: Final[re.Pattern[str]] = re.compile(r"\s+([,.;:!?])")
_DROP_SYMBOLS_RE: Final[re.Pattern[str]] = re.compile(r"[*_#|^`<>{}\[\]\\~=+]")
_SPACES_RE: Final[re.Pattern[str]] = re.compile(r"[ \t\r\f\v]+")

#: Code points that are never spoken: joiners, variation selectors, keycap, tag characters.
_INVISIBLE: Final[frozenset[int]] = frozenset({0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x20E3})


def _drop_pictographs(text: str) -> str:
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        cat = unicodedata.category(ch)
        if cp in _INVISIBLE or 0xFE00 <= cp <= 0xFE0F or 0xE0000 <= cp <= 0xE007F or cat == "Cf":
            continue  # invisible: removing it must not split a word
        # So = other symbol (emoji, dingbats, pictographs); Sk = modifier symbols incl. emoji skin
        # tones (U+1F3FB..F); Cs/Co/Cn = surrogates, private use, unassigned.
        if cat in ("So", "Cs", "Co", "Cn") or (cat == "Sk" and cp >= 0x1F000):
            out.append(" ")
            continue
        if cat.startswith("C") and ch not in "\n\t":
            out.append(" ")
            continue
        out.append(ch)
    return "".join(out)


def _unmark(text: str) -> str:
    """Remove markup: HTML, markdown constructs, URLs and e-mail addresses (see module doc)."""
    text = _FENCE_RE.sub(" ", text)
    text = _HTML_COMMENT_RE.sub(" ", text)
    text = _HTML_BLOCK_RE.sub(" ", text)
    text = re.sub(r"<br\s*/?>|</p\s*>|</li\s*>", "\n", text, flags=re.IGNORECASE)
    text = _HTML_TAG_RE.sub(" ", text)
    text = html.unescape(text)
    text = _IMAGE_RE.sub(r"\1", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _REF_LINK_RE.sub(r"\1", text)
    text = _EMAIL_RE.sub("an email address", text)
    # A URL's trailing full stop/comma belongs to the sentence, not to the link.
    text = _URL_RE.sub(lambda m: "a link" + m.group(0)[len(m.group(0).rstrip(".,;:!?")):], text)
    text = _INLINE_CODE_RE.sub(r"\1", text)
    text = _TABLE_SEP_RE.sub("", text)
    text = _RULE_RE.sub("", text)
    text = _HEADING_RE.sub("", text)
    text = _QUOTE_RE.sub("", text)
    text = _BULLET_RE.sub("", text)
    # Table cells: "| a | b |" -> "a, b".
    text = re.sub(r"^[ \t]*\|(.*)\|[ \t]*$", lambda m: ", ".join(c.strip() for c in m.group(1).split("|")),
                  text, flags=re.MULTILINE)
    for _ in range(2):  # nested emphasis: ***both*** or **_mixed_**
        text = _EMPHASIS_RE.sub(r"\2", text)
    return text


def speakable(text: str) -> str:
    """Plain, speakable text of ``text`` (one line, no markup; "" when nothing is left to say).

    See the module docstring for what is changed.  Idempotent: ``speakable(speakable(t)) ==
    speakable(t)``.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFC", str(text))
    text = _unmark(text)
    text = _drop_pictographs(text)
    text = text.replace("&", " and ").replace("@", " at ")
    text = text.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    # An ellipsis is a hesitation, not the end of a sentence: said as a comma pause.
    text = re.sub(r"\s*(?:\.{3,}|…)\s*", ", ", text)
    text = _numbers(text)
    text = _DROP_SYMBOLS_RE.sub(" ", text)
    text = re.sub(r"\s*\n\s*", ". ", text.strip())  # a line break is a pause, said as a full stop
    text = _SPACES_RE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    text = re.sub(r"\.\s*([.!?])", r"\1", text)  # "Hi!." -> "Hi!"
    text = re.sub(r"([,;:])\s*([.!?])", r"\2", text)  # "Yes,." -> "Yes."
    text = _REPEAT_PUNCT_RE.sub(r"\1", text)
    text = text.strip(" ,;:")
    # Nothing but punctuation left (e.g. an emoji-only reply): nothing to say.
    if not any(ch.isalnum() for ch in text):
        return ""
    return text


# ---------------------------------------------------------------------------------------------
# Sentences

_CLOSERS: Final[str] = "\"')]}”’»"
_TERMINALS: Final[str] = ".!?…"


def _is_abbreviation(buf: str, dot: int) -> bool:
    """Whether the full stop at ``buf[dot]`` belongs to an abbreviation, an initial or a list number."""
    start = dot
    while start > 0 and (buf[start - 1].isalnum() or buf[start - 1] == "."):
        start -= 1
    token = buf[start:dot].lower()
    if not token:
        return False
    if token in _ABBREVIATIONS:
        return True
    if len(token) == 1 and token.isalpha():  # an initial: "J. K. Rowling"
        return True
    # A numbered list marker at the start of a line: "1. Breathe in".
    line_start = buf.rfind("\n", 0, start) + 1
    return token.isdigit() and not buf[line_start:start].strip()


_FINISHED = re.compile(r"[.!?…:)]['\"”’)\]]*\W*$")


def is_unfinished(sentence: str) -> bool:
    """True when ``sentence`` does not end a sentence (no final ``. ! ? … :`` or a smiley's
    bracket, before closing quotes/emoji) — what a reply cut off at the token limit looks like."""
    text = sentence.strip()
    return bool(text) and not _FINISHED.search(text)


class SentenceSplitter:
    """Incremental sentence splitter for streamed text.

    ``feed(chunk)`` returns the sentences completed by that chunk (raw text, stripped; normalise
    each with :func:`speakable`); ``flush()`` returns the rest at the end of the stream.  A
    sentence ends at ``. ! ? …`` (plus closing quotes/brackets) *followed by whitespace* — so a
    full stop at the very end of a chunk waits for the next chunk — or at a newline.  Fenced code
    blocks are kept whole (they are dropped by :func:`speakable`).  A sentence longer than
    ``max_chars`` is cut at its last clause boundary.
    """

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        if max_chars < 20:
            raise ValueError(f"max_chars must be >= 20, got {max_chars}")
        self.max_chars = max_chars
        self._buf = ""

    def feed(self, chunk: str) -> list[str]:
        if chunk:
            self._buf += chunk
        return self._drain(final=False)

    def flush(self) -> list[str]:
        out = self._drain(final=True)
        rest = self._buf.strip()
        self._buf = ""
        if rest:
            out.append(rest)
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._boundary(final=final)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                out.append(piece)
        return out

    def _boundary(self, *, final: bool) -> int | None:
        """Index just after the first sentence of the buffer, or None if it is not complete."""
        buf = self._buf
        i, n = 0, len(buf)
        while i < n:
            if buf.startswith(("```", "~~~"), i) and (i == 0 or buf[i - 1] == "\n" or buf[:i].strip() == ""):
                fence = buf[i:i + 3]
                close = buf.find(fence, i + 3)
                if close < 0:
                    return None if not final else n  # wait for the closing fence
                end = buf.find("\n", close + 3)
                return n if end < 0 and final else (end + 1 if end >= 0 else None)
            ch = buf[i]
            if ch == "\n":
                if buf[:i].strip():
                    return i + 1
            elif ch in _TERMINALS:
                j = i + 1
                while j < n and (buf[j] in _TERMINALS or buf[j] in _CLOSERS):
                    j += 1
                if j >= n:
                    if final:
                        return n
                    return self._long_cut(i)
                if buf[j].isspace() and not (ch == "." and self._not_an_end(buf, i, j)):
                    return j
                i = j
                continue
            i += 1
        return self._long_cut(n)

    def _not_an_end(self, buf: str, dot: int, after: int) -> bool:
        if _is_abbreviation(buf, dot):
            return True
        # "... e.g. bread" — a lower-case word right after a full stop continues the sentence.
        k = after
        while k < len(buf) and buf[k] in " \t":
            k += 1
        return k < len(buf) and buf[k].islower()

    def _long_cut(self, upto: int) -> int | None:
        """Cut a too-long unfinished sentence at its last clause boundary (or space)."""
        if upto <= self.max_chars:
            return None
        head = self._buf[: self.max_chars]
        for seps in ((", ", "; ", ": ", " — ", " – ", " - "), (" ",)):
            best = max(head.rfind(s) for s in seps)
            if best > self.max_chars // 3:
                return best + 1
        return self.max_chars


#: A first sentence at least this long is spoken in two parts, cut at its first clause boundary
#: (:func:`first_clause`), so the voice starts after a clause's synthesis rather than a whole long
#: sentence's (while the LLM keeps both cores busy, 1-2 s for 150 characters).
FIRST_CLAUSE_SPLIT_CHARS: Final[int] = 70


def first_clause(sentence: str, *, min_head: int = 24, min_tail: int = 20) -> tuple[str, str]:
    """(head, tail) of a long sentence cut after its first clause boundary (comma, semicolon,
    colon or dash) with at least ``min_head`` characters before it and ``min_tail`` after; the
    sentence and "" when it is shorter than :data:`FIRST_CLAUSE_SPLIT_CHARS` or has no such
    boundary."""
    if len(sentence) < FIRST_CLAUSE_SPLIT_CHARS:
        return sentence, ""
    for at in range(min_head, len(sentence) - min_tail):
        if sentence.startswith((", ", "; ", ": ", " — ", " – ", " - "), at):
            cut = at + 1 if sentence[at] != " " else at
            return sentence[:cut].strip(), sentence[cut:].strip(" —–-")
    return sentence, ""


def split_sentences(text: str, *, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """All sentences of ``text`` (raw, stripped), as :class:`SentenceSplitter` would stream them."""
    splitter = SentenceSplitter(max_chars)
    return splitter.feed(text) + splitter.flush()


def cap_sentences(sentences: Iterable[str], max_chars: int = MAX_SPOKEN_CHARS) -> tuple[list[str], bool]:
    """Keep whole sentences while their total length fits ``max_chars``; (kept, truncated).

    A first sentence that alone is too long is cut at its last word boundary before the cap, so
    something is always said.
    """
    kept: list[str] = []
    total = 0
    for s in sentences:
        extra = len(s) + (1 if kept else 0)
        if total + extra > max_chars:
            if not kept:
                head = s[:max_chars]
                space = head.rfind(" ")
                kept.append((head[:space] if space > max_chars // 2 else head).rstrip(" ,;:") + ".")
            return kept, True
        kept.append(s)
        total += extra
    return kept, False


@dataclass(frozen=True)
class SpeechText:
    """What will be said: speakable sentences, and whether the cap cut the text."""

    sentences: tuple[str, ...]
    truncated: bool

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def prepare_speech(text: str, *, max_chars: int = MAX_SPOKEN_CHARS) -> SpeechText:
    """Split ``text`` into sentences, make each speakable, drop empty ones, cap the total."""
    spoken = (speakable(s) for s in split_sentences(text or ""))
    kept, truncated = cap_sentences((s for s in spoken if s), max_chars)
    return SpeechText(tuple(kept), truncated)
