"""One registry for every backend role: a name → a factory, written as a dotted path.

Each role (emotion encoders, LLM backends, TTS backends, speech-to-text backends, memory
embedders, empathy judges) keeps one :class:`Registry`.  Entries are ``"package.module:attr"``
strings (``attr`` may be dotted: ``"empathic_agent.encode.text:TextEncoder.from_settings"``),
imported only when that backend is built — so a base module never imports its implementations
and ``import empathic_agent`` stays light.  Callables are accepted too (tests, applications).

Third parties add entries without touching this package, through Python entry points in the
group ``empathic_agent.<role>`` — e.g. in their ``pyproject.toml``::

    [project.entry-points."empathic_agent.llm_backends"]
    mybackend = "my_package.llm:MyLLM.from_settings"

Names are validated (lower-case letters, digits, ``.``, ``_``, ``-``; at most 64 characters).  A
built-in name wins over an entry point of the same name (a package cannot silently replace the
vetted backends); :meth:`Registry.register` replaces explicitly.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from typing import Any, Callable, Final, Generic, TypeVar

from empathic_agent.errors import ConfigError

__all__ = ["Registry", "resolve_target", "NAME_PATTERN"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a registry name may look like.
NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve_target(target: str) -> Any:
    """The object a ``"package.module:attr[.attr]"`` path names (imports the module)."""
    if not _TARGET.match(target):
        raise ValueError(f"a registry target is 'package.module:attribute', got {target!r}")
    module, _, attrs = target.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


class Registry(Generic[T]):
    """Names → factories of one backend role (see the module docstring).

    ``noun`` words the error for an unknown name ("unknown LLM backend 'x'; available: …").
    """

    def __init__(self, role: str, *, noun: str) -> None:
        if not NAME_PATTERN.match(role.replace("_", "-")):
            raise ValueError(f"invalid registry role {role!r}")
        self.role = role
        self.noun = noun
        self._entries: dict[str, str | Callable[..., T]] = {}
        self._builtin: set[str] = set()
        self._entry_points_read = False
        self._lock = threading.Lock()

    @property
    def entry_point_group(self) -> str:
        return f"empathic_agent.{self.role}"

    # -- adding ----------------------------------------------------------------------------------
    def register(self, name: str, target: str | Callable[..., T]) -> None:
        """Add (or replace) ``name``: a ``"module:attr"`` path or a callable returning a ``T``."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"invalid {self.noun} name {name!r}: use lower-case letters, digits, '.', '_' "
                             "or '-' (at most 64 characters)")
        if isinstance(target, str):
            if not _TARGET.match(target):
                raise ValueError(f"a registry target is 'package.module:attribute', got {target!r}")
        elif not callable(target):
            raise TypeError(f"a {self.noun} factory must be callable or a 'module:attr' path, got {target!r}")
        with self._lock:
            self._entries[name] = target
            self._builtin.add(name)

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        with self._lock:
            if self._entry_points_read:
                return
            self._entry_points_read = True
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.entry_point_group):
                if ep.name in self._builtin:
                    log.warning("entry point %s=%s ignored: %r is a built-in %s", ep.name, ep.value, ep.name,
                                self.noun)
                elif NAME_PATTERN.match(ep.name) and _TARGET.match(ep.value.replace(" ", "")):
                    self._entries[ep.name] = ep.value.replace(" ", "")
                else:
                    log.warning("entry point %s=%s ignored: invalid name or target", ep.name, ep.value)

    # -- reading ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every registered name, built-ins and entry points, sorted."""
        self._read_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def factory(self, name: str) -> Callable[..., T]:
        """The factory of ``name``; :class:`ConfigError` naming the valid names when unknown."""
        if name not in self._entries:
            self._read_entry_points()
        try:
            target = self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.noun} {name!r}; available: {', '.join(self.names()) or '(none)'}") from None
        return resolve_target(target) if isinstance(target, str) else target

    def copy(self) -> "Registry[T]":
        """An independent registry with the same entries (tests swap one in and out)."""
        new: Registry[T] = Registry(self.role, noun=self.noun)
        new._entries, new._builtin = dict(self._entries), set(self._builtin)
        new._entry_points_read = self._entry_points_read
        return new

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Build ``name``'s backend: ``factory(name)(*args, **kwargs)``."""
        return self.factory(name)(*args, **kwargs)
