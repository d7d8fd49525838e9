"""Scenario files: one scripted (or simulated) conversation with per-turn expectations.

A scenario is YAML (or JSON) validated against ``scenario.schema.json`` (draft 2020-12; print it
with ``empathic eval schema``).  Loading resolves audio/image paths relative to the file and
turns the document into frozen dataclasses the runner consumes; every problem is reported with the
file and the JSON path of the offending value, never as a traceback.

Sources accepted by :func:`load_scenarios`:

* a ``.yaml``/``.yml``/``.json`` file (one scenario, or a list under ``scenarios:``);
* a directory (every scenario file in it, sorted);
* ``shipped`` or ``shipped:NAME`` — the sets that ship with the package (``evals/scenarios/``);
* ``empatheticdialogues[:SPLIT][:N]`` and ``esconv[:SPLIT][:N]`` — converted at run time from the
  shared data (see :mod:`empathic_agent.evals.convert`; never written into the project).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Mapping

from empathic_agent.errors import ConfigError

__all__ = [
    "Check", "Expect", "Goals", "Scenario", "Simulate", "Turn",
    "SCHEMA_PATH", "SHIPPED_DIR", "load_schema", "load_scenarios", "parse_scenario", "validate_document",
]

SCHEMA_PATH: Final[Path] = Path(__file__).with_name("scenario.schema.json")
SHIPPED_DIR: Final[Path] = Path(__file__).with_name("scenarios")
SUFFIXES: Final[tuple[str, ...]] = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Check:
    """A content check: a named rule (``evals.checks.CHECKS``) or an ad-hoc regular expression."""

    name: str
    regex: str | None = None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any]) -> "Check":
        if isinstance(value, str):
            return cls(name=value)
        return cls(name=str(value.get("name") or f"regex:{value['regex']}"), regex=str(value["regex"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name} if self.regex is None else {"name": self.name, "regex": self.regex}


@dataclass(frozen=True)
class Expect:
    """What one turn should show (every field optional; only what is given is checked)."""

    emotion: tuple[str, ...] = ()
    modalities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    valence: tuple[float, float] | None = None
    arousal: tuple[float, float] | None = None
    dominance: tuple[float, float] | None = None
    mixed_signals: bool | None = None
    crisis: bool | None = None
    #: Acceptable risk levels of the safety stage at this turn (none, low, moderate, high, imminent).
    risk: tuple[str, ...] = ()
    #: Acceptable safety routes (continue, check_in, protocol, escalate, emergency, helper).
    route: tuple[str, ...] = ()
    #: Clinical presentations the safety stage must read at this turn (psychosis, mania,
    #: compulsion, eating, substance, means_seeking); ``[none]``: it must read none.
    presentation: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    tone: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    must: tuple[Check, ...] = ()
    must_not: tuple[Check, ...] = ()
    #: Whether the agent must (True) or must not (False) recall a memory of the person at this turn.
    recalled: bool | None = None

    @classmethod
    def parse(cls, d: Mapping[str, Any] | None) -> "Expect":
        d = d or {}

        def cats(v: Any) -> tuple[str, ...]:
            return (v,) if isinstance(v, str) else tuple(v or ())

        def rng(v: Any) -> tuple[float, float] | None:
            return None if v is None else (float(min(v)), float(max(v)))

        return cls(
            emotion=cats(d.get("emotion")),
            modalities={m: cats(v) for m, v in (d.get("modalities") or {}).items()},
            valence=rng(d.get("valence")), arousal=rng(d.get("arousal")), dominance=rng(d.get("dominance")),
            mixed_signals=d.get("mixed_signals"), crisis=d.get("crisis"),
            risk=cats(d.get("risk")), route=cats(d.get("route")), presentation=cats(d.get("presentation")),
            families=tuple(d.get("families") or ()),
            tone={k: rng(v) for k, v in (d.get("tone") or {}).items()},  # type: ignore[misc]
            must=tuple(Check.parse(c) for c in d.get("must") or ()),
            must_not=tuple(Check.parse(c) for c in d.get("must_not") or ()),
            recalled=d.get("recalled"),
        )

    def merged(self, other: "Expect") -> "Expect":
        """This expectation with ``other``'s content checks added (goals that apply to every turn)."""
        must = self.must + tuple(c for c in other.must if c not in self.must)
        must_not = self.must_not + tuple(c for c in other.must_not if c not in self.must_not)
        return Expect(**{**self.__dict__, "must": must, "must_not": must_not})


@dataclass(frozen=True)
class Turn:
    """One scripted turn of the person: words, optional voice recording and camera frames."""

    text: str | None = None
    audio: Path | None = None
    images: tuple[Path, ...] = ()
    expect: Expect = field(default_factory=Expect)
    #: A new session of the same person starts before this turn (memories stay, the dialogue restarts).
    new_session: bool = False


@dataclass(frozen=True)
class Simulate:
    """An LLM plays the person (from ``card``) for ``turns`` turns after the scripted ones."""

    card: str
    opening: str | None = None
    turns: int = 4
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True)
class Goals:
    valence_change_min: float | None = None
    must_not: tuple[Check, ...] = ()
    min_exploration_share: float | None = None
    max_advice_turns: int | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    user: Mapping[str, str] = field(default_factory=dict)
    turns: tuple[Turn, ...] = ()
    simulate: Simulate | None = None
    goals: Goals = field(default_factory=Goals)
    #: The file it came from (None: built in memory, e.g. by a converter).
    path: Path | None = None

    @property
    def n_turns(self) -> int:
        return len(self.turns) + (self.simulate.turns if self.simulate else 0)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON facts for the report (not the full expectations)."""
        return {"id": self.id, "title": self.title, "tags": list(self.tags), "source": self.source,
                "config": dict(self.config), "user": dict(self.user), "scripted_turns": len(self.turns),
                "simulated_turns": self.simulate.turns if self.simulate else 0,
                "path": str(self.path) if self.path else None}


# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_document(doc: Any, where: str) -> None:
    """Raise :class:`ConfigError` listing every schema violation of ``doc`` (with JSON paths)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at {'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors[:10]]
        raise ConfigError(f"{where} is not a valid scenario:\n" + "\n".join(lines))


def parse_scenario(doc: Mapping[str, Any], *, default_id: str, base: Path | None = None,
                   path: Path | None = None, where: str = "scenario") -> Scenario:
    """Validate one scenario document and build the :class:`Scenario` (files resolved under ``base``)."""
    validate_document(doc, where)
    from empathic_agent.evals.checks import validate_check

    def resolve(p: str) -> Path:
        q = Path(p).expanduser()
        q = q if q.is_absolute() or base is None else base / q
        if not q.is_file():
            raise ConfigError(f"{where}: file {p!r} not found (paths are relative to the scenario file)")
        return q

    turns = []
    for t in doc.get("turns") or ():
        images = t.get("image")
        images = [images] if isinstance(images, str) else list(images or ())
        turns.append(Turn(text=t.get("text"), audio=resolve(t["audio"]) if t.get("audio") else None,
                          images=tuple(resolve(i) for i in images), expect=Expect.parse(t.get("expect")),
                          new_session=bool(t.get("new_session", False))))
    sim = doc.get("simulate")
    simulate = None if not sim else Simulate(card=sim["card"], opening=sim.get("opening"),
                                             turns=int(sim.get("turns", 4)), expect=Expect.parse(sim.get("expect")))
    g = doc.get("goals") or {}
    goals = Goals(valence_change_min=g.get("valence_change_min"),
                  must_not=tuple(Check.parse(c) for c in g.get("must_not") or ()),
                  min_exploration_share=g.get("min_exploration_share"), max_advice_turns=g.get("max_advice_turns"))
    config = dict(doc.get("config") or {})
    if config:
        from empathic_agent.settings import Settings

        Settings.from_env({}, **config)  # unknown or invalid settings fail here, with the valid names
    scenario = Scenario(id=str(doc.get("id") or default_id), title=str(doc.get("title") or ""),
                        tags=tuple(doc.get("tags") or ()), source=str(doc.get("source") or ""), config=config,
                        user=dict(doc.get("user") or {}), turns=tuple(turns), simulate=simulate, goals=goals,
                        path=path)
    for exp in [t.expect for t in scenario.turns] + ([simulate.expect] if simulate else []) + [Expect(must_not=goals.must_not)]:
        for c in exp.must + exp.must_not:
            try:
                validate_check(c)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return scenario


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _load_file(path: Path) -> list[Scenario]:
    doc = _read(path)
    if isinstance(doc, Mapping) and "scenarios" in doc and isinstance(doc["scenarios"], list):
        return [parse_scenario(d, default_id=f"{path.stem}-{i + 1}", base=path.parent, path=path,
                               where=f"{path} (scenario {i + 1})") for i, d in enumerate(doc["scenarios"])]
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: a scenario file holds a mapping (or `scenarios:` with a list)")
    return [parse_scenario(doc, default_id=path.stem, base=path.parent, path=path, where=str(path))]


def load_scenarios(sources: list[str] | tuple[str, ...], *, data_dir: Path | str | None = None) -> list[Scenario]:
    """Every scenario of ``sources`` (see the module docstring), ids unique, in the given order."""
    if not sources:
        raise ConfigError("no scenarios given: pass files, folders, 'shipped' or e.g. 'esconv:test:20'")
    out: list[Scenario] = []
    for src in sources:
        kind, _, rest = str(src).partition(":")
        if kind == "shipped":
            folder = SHIPPED_DIR
            files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)
            if rest:
                files = [p for p in files if p.stem == rest]
                if not files:
                    names = sorted(p.stem for p in folder.iterdir() if p.suffix in SUFFIXES)
                    raise ConfigError(f"no shipped scenario set {rest!r}; available: {', '.join(names)}")
            for f in files:
                out += _load_file(f)
        elif kind in ("empatheticdialogues", "ed", "esconv") and not Path(src).exists():
            from empathic_agent.evals.convert import convert_source

            out += convert_source(kind, rest, data_dir=data_dir)
        else:
            p = Path(src).expanduser()
            if p.is_dir():
                files = sorted(q for q in p.rglob("*") if q.suffix in SUFFIXES and q.is_file())
                if not files:
                    raise ConfigError(f"{p}: no scenario files (*.yaml, *.yml, *.json) in this folder")
                for f in files:
                    out += _load_file(f)
            elif p.is_file():
                out += _load_file(p)
            else:
                raise ConfigError(f"scenario source {src!r} is not a file, a folder, 'shipped[:NAME]', "
                                  f"'empatheticdialogues[:SPLIT][:N]' or 'esconv[:SPLIT][:N]'")
    seen: dict[str, Scenario] = {}
    for s in out:
        if s.id in seen:
            raise ConfigError(f"scenario id {s.id!r} appears twice ({seen[s.id].path} and {s.path}); ids must be unique")
        seen[s.id] = s
    return out
