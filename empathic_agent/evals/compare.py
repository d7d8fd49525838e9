"""Comparing two evaluation runs (A and B): what changed in the set-up, and what changed in the results.

:func:`compare_reports` turns two report dicts (schema ``empathic-eval-report/1``) into a plain,
JSON-serialisable comparison; :func:`write_compare_html` renders it as a self-contained page in
the same style as the run report (:mod:`empathic_agent.evals.report`).

Deltas are always ``b − a``.  Whether a delta is an improvement depends on the metric: latency,
errors, false alarms and forbidden content are better when lower, plain counts (n, totals, number
of scenarios or turns) are neutral — more of them is not better — and everything else (accuracies,
pass rates, empathy, valence change) is better when higher.  A metric that is null on either side
has no delta ("n/a"): a missing value is not a zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

from empathic_agent.errors import ConfigError
from empathic_agent.evals.report import (
    DASH,
    REPORT_SCHEMA,
    atomic_write_text,
    esc,
    fmt,
    get,
    num,
    page,
    pct,
    signed,
    table,
)

__all__ = ["COMPARE_SCHEMA", "compare_reports", "direction", "flatten_numeric", "load_report",
           "render_compare_html", "write_compare_html"]

COMPARE_SCHEMA: Final[str] = "empathic-eval-compare/1"

Direction = Literal["higher", "lower", "neutral"]

# Leaf names that are sizes of a sample rather than results: a bigger n is not a better run.
_COUNT_LEAVES: Final[frozenset[str]] = frozenset(
    {"n", "total", "scenarios", "turns", "dialogues", "crisis_expected"})
# Metrics where fewer is better (besides everything under latency).
_LOWER_LEAVES: Final[frozenset[str]] = frozenset({"errors", "false_alarms", "forbidden_content", "off_topic_rate",
                                                   "reference_perplexity"})
# Parts of a key under which values describe rather than score (a longer reply is not better).
_NEUTRAL_PARTS: Final[frozenset[str]] = frozenset({"length_words", "crisis_routed", "items", "scoring_s"})

# Run facts outside ``run.settings`` that change what a run measures.
_RUN_FACTS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("run.sources", ("sources",)),
    ("run.source", ("source",)),
    ("run.bare", ("bare",)),
    ("run.limit", ("limit",)),
    ("run.seed", ("seed",)),
    ("run.temperature", ("temperature",)),
    ("run.judge.kind", ("judge", "kind")),
    ("run.judge.model", ("judge", "model")),
    ("run.judge.probabilities", ("judge", "probabilities")),
    ("run.simulator.model", ("simulator", "model")),
    ("run.package_version", ("package_version",)),
)


def load_report(path_or_dir: str | Path) -> dict:
    """Read a report: a ``report.json`` path, or a run directory that holds one.

    Raises ConfigError when the file is missing, is not JSON, or is neither a dialogue report
    (``empathic-eval-report/1``) nor a reply-level one (``empathic-replies-report/1``).
    """
    from empathic_agent.evals.replies import REPLIES_SCHEMA

    path = Path(path_or_dir)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ConfigError(
            f"no evaluation report at {path} (give a report.json or a run directory holding one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable JSON report: {exc}") from exc
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in (REPORT_SCHEMA, REPLIES_SCHEMA):
        raise ConfigError(f"{path} is not an evaluation report: schema is {schema!r}, expected {REPORT_SCHEMA!r} "
                          f"or {REPLIES_SCHEMA!r}")
    return data


def flatten_numeric(tree: Any, prefix: str = "") -> dict[str, int | float | None]:
    """Every numeric (or null) leaf of nested dicts under a dotted key, e.g. ``perception.fused.accuracy``.

    Strings and lists are left out: the empathy distributions are summarised by their means, and
    labels such as ``empathy.kind`` are not metrics.
    """
    out: dict[str, int | float | None] = {}
    if not isinstance(tree, dict):
        return out
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numeric(value, dotted + "."))
        elif value is None or num(value) is not None:
            out[dotted] = value if num(value) is not None else None  # ints stay ints (counts)
    return out


def direction(key: str) -> Direction:
    """Which way is better for a dotted summary key."""
    parts = key.split(".")
    if "latency" in parts or parts[-1] in _LOWER_LEAVES:
        return "lower"
    if parts[-1] in _COUNT_LEAVES or _NEUTRAL_PARTS & set(parts):
        return "neutral"
    return "higher"


def _verdict(delta: float | None, way: Direction) -> bool | None:
    """True when the change is an improvement, False when worse, None when neutral/unknown/no change."""
    if delta is None or way == "neutral" or abs(delta) < 1e-12:
        return None
    return (delta > 0) == (way == "higher")


def _delta(a: Any, b: Any) -> int | float | None:
    x, y = num(a), num(b)
    if x is None or y is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return b - a  # a difference of counts is a count
    return y - x


def _flatten_any(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf (any type) under a dotted key: settings may nest."""
    if not isinstance(tree, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten_any(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _run_facts(report: dict) -> dict[str, Any]:
    run = get(report, "run") or {}
    return {
        "id": get(run, "id") or get(run, "run_id"), "started": get(run, "started"), "finished": get(run, "finished"),
        "wall_s": get(run, "wall_s") or get(run, "generation_s"),
        "sources": get(run, "sources") or ([get(run, "source")] if get(run, "source") else None), "seed": get(run, "seed"),
        "temperature": get(run, "temperature"), "judge": get(run, "judge"),
        "simulator": get(run, "simulator"), "package_version": get(run, "package_version"),
        "settings": get(run, "settings") or {},
    }


def _settings_diff(a: dict, b: dict) -> list[dict[str, Any]]:
    """Settings (and run facts) whose values differ; a key missing on one side counts as None."""
    sa = _flatten_any(get(a, "run", "settings"))
    sb = _flatten_any(get(b, "run", "settings"))
    for name, keys in _RUN_FACTS:
        sa[name] = get(a, "run", *keys)
        sb[name] = get(b, "run", *keys)
    keys = sorted(set(sa) | set(sb))
    return [{"key": k, "a": sa.get(k), "b": sb.get(k)} for k in keys if sa.get(k) != sb.get(k)]


def _metric_rows(a: dict, b: dict) -> list[dict[str, Any]]:
    fa = flatten_numeric(get(a, "summary"))
    fb = flatten_numeric(get(b, "summary"))
    keys = list(fa) + [k for k in fb if k not in fa]  # A's order, then what only B has
    rows = []
    for key in keys:
        delta, way = _delta(fa.get(key), fb.get(key)), direction(key)
        rows.append({"key": key, "a": fa.get(key), "b": fb.get(key), "delta": delta, "direction": way,
                     "better": _verdict(delta, way)})
    return rows


def _scenario_facts(sc: dict) -> dict[str, Any]:
    return {"status": sc.get("status"), "pass_rate": num(get(sc, "metrics", "pass_rate")),
            "empathy_overall": num(get(sc, "metrics", "empathy_overall")),
            "valence_change": num(get(sc, "trajectory", "change"))}


def _by_id(report: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for sc in get(report, "scenarios") or []:
        if isinstance(sc, dict) and sc.get("id") is not None:
            out.setdefault(str(sc["id"]), sc)  # the first wins: ids should be unique anyway
    return out


def _scenario_rows(a: dict, b: dict) -> dict[str, Any]:
    sa, sb = _by_id(a), _by_id(b)
    both = []
    for sid in [k for k in sa if k in sb]:
        fa, fb = _scenario_facts(sa[sid]), _scenario_facts(sb[sid])
        deltas = {m: _delta(fa[m], fb[m]) for m in ("pass_rate", "empathy_overall", "valence_change")}
        both.append({"id": sid, "title": sa[sid].get("title") or sb[sid].get("title"), "a": fa, "b": fb,
                     "delta": deltas, "better": {m: _verdict(d, "higher") for m, d in deltas.items()}})
    return {"both": both, "only_a": [k for k in sa if k not in sb], "only_b": [k for k in sb if k not in sa]}


def _check_rows(a: dict, b: dict) -> list[dict[str, Any]]:
    ca = get(a, "summary", "checks", "by_name") or {}
    cb = get(b, "summary", "checks", "by_name") or {}
    ca, cb = (c if isinstance(c, dict) else {} for c in (ca, cb))
    rows = []
    for name in sorted(set(ca) | set(cb)):
        ra, rb = num(get(ca, name, "rate")), num(get(cb, name, "rate"))
        delta = _delta(ra, rb)
        rows.append({"name": name, "a": ca.get(name), "b": cb.get(name), "delta": delta,
                     "better": _verdict(delta, "higher")})
    return rows


def compare_reports(a: dict, b: dict, *, labels: tuple[str, str] = ("A", "B")) -> dict:
    """Compare run ``a`` with run ``b`` (deltas are b − a); the result is JSON-serialisable.  Both
    must be dialogue runs or both reply-level runs."""
    if a.get("schema") != b.get("schema"):
        raise ConfigError(f"cannot compare a {a.get('schema')} run with a {b.get('schema')} run")
    return {
        "schema": COMPARE_SCHEMA,
        "labels": list(labels),
        "runs": [_run_facts(a), _run_facts(b)],
        "settings_diff": _settings_diff(a, b),
        "metrics": _metric_rows(a, b),
        "scenarios": _scenario_rows(a, b),
        "checks": _check_rows(a, b),
    }


# ---------------------------------------------------------------------------------------------
# HTML


def _is_rate(key: str) -> bool:
    last = key.split(".")[-1]
    return last in ("accuracy", "rate", "pass_rate", "recall", "improved_share")


def _value(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    return pct(value) if _is_rate(key) else fmt(value, 3)


def _delta_cell(delta: Any, better: bool | None, *, rate: bool = False) -> str:
    if num(delta) is None:
        return '<span class="muted">n/a</span>'
    if rate:
        text = f"{100 * delta:+.1f} pp"
    else:
        text = f"{delta:+d}" if isinstance(delta, int) else signed(delta, 3)
    cls = None if better is None else ("better" if better else "worse")
    return f'<span class="{cls}">{text}</span>' if cls else text


def _runs_html(cmp: dict) -> str:
    la, lb = (esc(x) for x in cmp.get("labels") or ("A", "B"))
    runs = list(cmp.get("runs") or [])
    ra, rb = get(runs, 0) or {}, get(runs, 1) or {}
    facts = (("Run id", "id"), ("Started", "started"), ("Wall time (s)", "wall_s"), ("Sources", "sources"),
             ("Seed", "seed"), ("Temperature", "temperature"))
    rows = [(label, _fact(get(ra, k)), _fact(get(rb, k))) for label, k in facts]
    rows.append(("Judge", esc(_judge(ra)), esc(_judge(rb))))
    rows.append(("LLM", esc(_llm(ra)), esc(_llm(rb))))
    return "<h2>Runs</h2>" + table(("", la, lb), rows, class_="facts")


def _fact(value: Any) -> str:
    if isinstance(value, list):
        return esc(", ".join(str(v) for v in value))
    return fmt(value) if isinstance(value, float) else esc(value)


def _judge(run: Any) -> str | None:
    kind, model = get(run, "judge", "kind"), get(run, "judge", "model")
    return None if kind is None else f"{kind} ({model})" if model else str(kind)


def _llm(run: Any) -> str:
    s = get(run, "settings") or {}
    model = get(s, "openai_model") if get(s, "llm_backend") in ("openai", "vllm") else None
    return f"{get(s, 'llm_backend') or DASH} / {model or get(s, 'llm_model') or DASH}"


def _settings_html(cmp: dict, la: str, lb: str) -> str:
    diff = cmp.get("settings_diff") or []
    if not diff:
        return "<h2>Differences in set-up</h2><p class=\"muted\">None: both runs used the same settings.</p>"
    rows = [(esc(d.get("key")), esc(d.get("a")), esc(d.get("b"))) for d in diff]
    return "<h2>Differences in set-up</h2>" + table(("Setting", la, lb), rows)


def _metrics_html(cmp: dict, la: str, lb: str) -> str:
    rows = [(esc(m["key"]), _value(m["key"], m.get("a")), _value(m["key"], m.get("b")),
             _delta_cell(m.get("delta"), m.get("better"), rate=_is_rate(m["key"])),
             esc({"higher": "↑ better", "lower": "↓ better", "neutral": "count"}.get(m.get("direction"))))
            for m in cmp.get("metrics") or []]
    return "<h2>Metrics</h2>" + table(("Metric", la, lb, f"Δ ({lb} − {la})", ""), rows, num_cols=(1, 2, 3))


def _scenarios_html(cmp: dict, la: str, lb: str) -> str:
    sc = cmp.get("scenarios") or {}
    rows = []
    for r in sc.get("both") or []:
        cells = [esc(r.get("id")), esc(r.get("title"))]
        for m, show in (("pass_rate", pct), ("empathy_overall", fmt), ("valence_change", signed)):
            a, b = get(r, "a", m), get(r, "b", m)
            cells += [show(a) if a is not None else "n/a", show(b) if b is not None else "n/a",
                      _delta_cell(get(r, "delta", m), get(r, "better", m), rate=m == "pass_rate")]
        rows.append(cells)
    header = ("Scenario", "Title", f"Checks {la}", f"Checks {lb}", "Δ", f"Empathy {la}", f"Empathy {lb}", "Δ",
              f"Valence change {la}", f"Valence change {lb}", "Δ")
    out = "<h2>Scenarios</h2>" + (table(header, rows, num_cols=range(2, 11)) if rows
                                  else '<p class="muted">No scenario in both runs.</p>')
    for key, label in (("only_a", la), ("only_b", lb)):
        ids = sc.get(key) or []
        if ids:
            out += f"<p><b>Only in {label}:</b> {', '.join(esc(i) for i in ids)}</p>"
    return out


def _checks_html(cmp: dict, la: str, lb: str) -> str:
    def cell(c: Any) -> str:
        if not isinstance(c, dict):
            return "n/a"
        return f"{pct(c.get('rate'))} ({esc(c.get('passed'))}/{esc(c.get('total'))})"

    rows = [(esc(r["name"]), cell(r.get("a")), cell(r.get("b")),
             _delta_cell(r.get("delta"), r.get("better"), rate=True))
            for r in cmp.get("checks") or []]
    return "<h2>Checks by name</h2>" + (table(("Check", la, lb, "Δ"), rows, num_cols=(1, 2, 3)) if rows
                                        else '<p class="muted">No checks.</p>')


def render_compare_html(cmp: dict) -> str:
    """The comparison page as a string (see :func:`write_compare_html`)."""
    la, lb = (esc(x) for x in (cmp.get("labels") or ("A", "B")))
    runs = list(cmp.get("runs") or [])
    ids = [get(runs, 0, "id"), get(runs, 1, "id")]
    title = f"Evaluation comparison: {la} = {esc(ids[0])}, {lb} = {esc(ids[1])}"
    body = (f"<h1>{title}</h1><p class=\"muted\">Deltas are {lb} − {la}; "
            "<span class=\"better\">green</span> is better, <span class=\"worse\">red</span> worse "
            "(lower is better for latency, errors, false alarms and forbidden content; "
            "counts are neutral).</p>"
            + _runs_html(cmp) + _settings_html(cmp, la, lb) + _metrics_html(cmp, la, lb)
            + _scenarios_html(cmp, la, lb) + _checks_html(cmp, la, lb))
    return page(f"Evaluation comparison {' vs '.join(str(i) for i in ids if i)}", body)


def write_compare_html(cmp: dict, path: Path) -> Path:
    """Write the self-contained comparison page (atomically); returns the path."""
    return atomic_write_text(Path(path), render_compare_html(cmp))
