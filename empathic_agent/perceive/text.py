"""Text input hygiene: decoding, control characters, length limits.

Whatever a person (or a client) sends — bytes in a wrong encoding, pasted terminal escapes, a
whole document — becomes either a clean message or a clear :class:`InputError`, never a crash
further down the turn.
"""

from __future__ import annotations

import re
import unicodedata

from empathic_agent.errors import EmptyInputError, InputError, InputTooLongError

__all__ = ["clean_text"]

# C0/C1 control characters except tab and newline, plus ANSI escape sequences from terminals.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(raw: str | bytes | None, *, max_chars: int) -> str:
    """Return the message as clean text, or raise :class:`InputError` saying why it can't be used.

    * bytes are decoded as UTF-8; invalid sequences become U+FFFD instead of failing;
    * Unicode is NFC-normalised; control characters and ANSI escapes are removed; CRLF -> LF;
    * an empty result raises :class:`EmptyInputError`;
    * more than ``max_chars`` characters raises :class:`InputTooLongError` (we do not silently
      truncate what a person wrote: they are told the limit and keep their text).
    """
    if raw is None:
        raise EmptyInputError("the message is empty")
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        raise InputError(f"a message must be text, got {type(raw).__name__}")
    # Lone surrogates (e.g. from surrogateescape-decoded stdin) cannot be encoded anywhere later.
    text = raw.encode("utf-8", errors="replace").decode("utf-8")
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", _ANSI.sub("", text))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if not text:
        raise EmptyInputError("the message is empty")
    if len(text) > max_chars:
        raise InputTooLongError(
            f"the message has {len(text)} characters; the limit is {max_chars} "
            "(setting max_input_chars). Please shorten it or send it in parts.")
    return text
