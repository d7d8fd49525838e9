"""User and session ids: validation and the conversation key built from them.

Kept in a tiny module of its own so that every layer (memory store, voice baselines, HTTP API)
can validate ids without importing the graph.
"""

from __future__ import annotations

import re

from empathic_agent.errors import InputError

__all__ = ["validate_id", "thread_id", "split_thread_id"]

#: Letters, digits and ``_ . @ -``, 1–128 characters, starting with a letter or digit. Restricting
#: ids keeps the checkpoint key ``user/session`` unambiguous and ids safe in logs and file names.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def validate_id(value: str, what: str, *, max_len: int = 128) -> str:
    """``value`` if it is a valid id of at most ``max_len`` characters (<= 128), else InputError
    naming the rule with that length."""
    if not isinstance(value, str) or not _ID.match(value) or len(value) > max_len:
        shown = value if not isinstance(value, str) or len(value) <= 140 else value[:140] + "…"
        raise InputError(f"invalid {what} {shown!r}: use 1-{max_len} letters, digits, '_', '.', '@' or '-', "
                         "starting with a letter or digit")
    return value


def thread_id(user_id: str, session_id: str) -> str:
    """The LangGraph thread of one conversation: ``user/session``."""
    return f"{validate_id(user_id, 'user id')}/{validate_id(session_id, 'session id')}"


def split_thread_id(value: str) -> tuple[str, str]:
    user, _, session = value.partition("/")
    return user, session
