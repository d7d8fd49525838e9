"""Writing an evaluation run's report: the JSON document and a self-contained HTML page.

The HTML page must open anywhere — on an air-gapped machine, attached to an issue, years later —
so it references nothing outside itself: the CSS is inline and the plots are SVG drawn here by
hand (no matplotlib, no JavaScript, no fonts or images).  Every piece of text that reaches the page
comes from users or from an LLM, so all of it goes through :func:`html.escape`.

The report dict is produced by the runner (schema ``empathic-eval-report/1``); every field is
treated as possibly missing or ``None`` — a run that crashed half-way still deserves a readable
page, so missing values are shown as "–" instead of raising.

The small helpers here (``esc``, ``fmt``, ``pct``, ``get``, ``page``, ``atomic_write_text``) are
shared with :mod:`empathic_agent.evals.compare` so both pages look alike.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["EMPATHY_DIMS", "EPITOME_LABEL", "REPORT_SCHEMA", "RULES_LABEL", "render_html", "write_html", "write_json"]

REPORT_SCHEMA: Final[str] = "empathic-eval-report/1"

#: The three EPITOME dimensions (Sharma et al., 2020) with their display names.
EMPATHY_DIMS: Final[tuple[tuple[str, str], ...]] = (
    ("emotional_reactions", "Emotional reactions"),
    ("interpretations", "Interpretations"),
    ("explorations", "Explorations"),
)

DASH: Final[str] = "–"
RULES_LABEL: Final[str] = "rule-based scorer — a lexical proxy, not a trained judge"
EPITOME_LABEL: Final[str] = "EPITOME judge — fine-tuned MiniLM, offline (research-only weights)"

# A handful of distinguishable colours for lines (colour-blind friendly, Okabe–Ito palette).
PALETTE: Final[tuple[str, ...]] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

CSS: Final[str] = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --zebra: #f6f8fa; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; padding: 1.5rem; max-width: 1400px; color: #1f2328; line-height: 1.45;
       font-size: 14px; }
h1 { font-size: 1.6rem; margin: 0 0 .5rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #eaeef2; } tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .muted { color: var(--muted); }
.better { color: var(--ok); font-weight: 600; } .worse { color: var(--bad); font-weight: 600; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 1rem; font-size: .8rem; border: 1px solid; }
.badge.ok { border-color: var(--ok); } .badge.bad { border-color: var(--bad); }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: .4rem .7rem; border-radius: 6px;
        display: inline-block; }
.error { background: #ffebe9; border: 1px solid var(--bad); padding: .4rem .7rem; border-radius: 6px;
         white-space: pre-wrap; }
.facts td:first-child { font-weight: 600; white-space: nowrap; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; }
.grid figure { margin: 0; } figcaption { font-size: .85rem; color: var(--muted); text-align: center; }
.turns td { max-width: 26rem; } .turns .text { white-space: pre-wrap; }
ul.checks { list-style: none; margin: 0; padding: 0; } ul.checks li { white-space: nowrap; }
ul.checks li.bad { white-space: normal; }
svg text { font-family: inherit; } .nowrap { white-space: nowrap; }
"""


# ---------------------------------------------------------------------------------------------
# Small shared helpers


def get(obj: Any, *keys: Any) -> Any:
    """``obj[k1][k2]...`` or None when any step is missing or not a mapping/sequence."""
    for key in keys:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, (list, tuple)) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def num(value: Any) -> float | None:
    """A finite number as float, else None (bools are not numbers here: True is not 1.0 of a metric)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def esc(value: Any) -> str:
    """Escaped text for the page; None becomes the dash, non-strings their compact JSON."""
    if value is None:
        return DASH
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return html.escape(value, quote=True)


def fmt(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals (ints as ints), anything else escaped."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    x = num(value)
    if x is None:
        return esc(value) if value is not None and not isinstance(value, float) else DASH
    return f"{x:.{digits}f}"


def pct(value: Any) -> str:
    """A rate in [0, 1] as a percentage, "–" when unknown."""
    x = num(value)
    return DASH if x is None else f"{100 * x:.1f}%"


def signed(value: Any, digits: int = 2) -> str:
    x = num(value)
    return DASH if x is None else f"{x:+.{digits}f}"


def tag(name: str, body: str, **attrs: Any) -> str:
    """``<name attrs>body</name>``; attribute values are escaped, ``class_`` gives ``class``."""
    parts = [name] + [f'{k.rstrip("_").replace("_", "-")}="{html.escape(str(v), quote=True)}"'
                      for k, v in attrs.items() if v is not None]
    return f"<{' '.join(parts)}>{body}</{name}>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, class_: str | None = None,
          num_cols: Iterable[int] = ()) -> str:
    """A table from already-escaped cells; ``num_cols`` are right-aligned."""
    numeric = set(num_cols)
    head = "".join(tag("th", h, class_="num" if i in numeric else None) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(tag("td", c, class_="num" if i in numeric else None) for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return tag("table", f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>", class_=class_)


def page(title: str, body: str) -> str:
    """The whole document: inline CSS and nothing fetched from anywhere."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def atomic_write_text(path: Path, text: str) -> Path:
    """Write via a temporary file in the same directory + ``os.replace``, so a reader (or a crash)
    never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; a report is meant to be shared, so keep the old file's mode or use 0644.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(report: dict, path: Path) -> Path:
    """Write the report as UTF-8 JSON (indent=1), atomically; returns the path."""
    text = json.dumps(report, indent=1, ensure_ascii=False, default=str)
    return atomic_write_text(Path(path), text + "\n")


# ---------------------------------------------------------------------------------------------
# SVG plots (drawn by hand: a fixed viewBox, data mapped linearly into it)


def _svg(width: int, height: int, body: str, label: str) -> str:
    # No xmlns: inline SVG in HTML5 does not need it, and the page then holds no URL at all.
    return (f'<svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">{body}</svg>')


def _text(x: float, y: float, s: str, *, anchor: str = "middle", size: int = 11, extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="#57606a"{extra}>'
            f"{esc(s)}</text>")


def svg_trajectory(series: Sequence[tuple[str, Sequence[float | None], Sequence[float | None]]],
                   *, title: str, width: int = 300, height: int = 190) -> str:
    """Valence (solid) and arousal (dashed) over turns, values in [-1, 1], one colour per series."""
    left, right, top, bottom = 38, 10, 10, 32
    pw, ph = width - left - right, height - top - bottom
    n_max = max([max(len(v), len(a)) for _, v, a in series] + [1])

    def x_of(i: int) -> float:
        return left + (pw * i / (n_max - 1) if n_max > 1 else pw / 2)

    def y_of(v: float) -> float:
        return top + ph * (1 - (max(-1.0, min(1.0, v)) + 1) / 2)

    parts = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#d0d7de"/>']
    for tick in (-1.0, -0.5, 0.0, 0.5, 1.0):
        y = y_of(tick)
        style = 'stroke="#57606a" stroke-width="1"' if tick == 0 else 'stroke="#eaeef2"'
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" {style}/>')
        parts.append(_text(left - 4, y + 4, f"{tick:g}", anchor="end", size=10))
    for i in range(n_max):
        parts.append(_text(x_of(i), top + ph + 13, str(i), size=10))  # 0-based, like the turn table's "#"
    parts.append(_text(left + pw / 2, height - 4, "turn"))
    parts.append(_text(11, top + ph / 2, "value", extra=f' transform="rotate(-90 11 {top + ph / 2:.1f})"'))
    for k, (_name, valence, arousal) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        parts.append(_polyline(valence, x_of, y_of, colour, dashed=False))
        parts.append(_polyline(arousal, x_of, y_of, colour, dashed=True))
    return _svg(width, height, "".join(parts), title)


def _polyline(values: Sequence[Any], x_of: Any, y_of: Any, colour: str, *, dashed: bool) -> str:
    """A line through the known points (a None breaks nothing: it is skipped) plus dots."""
    pts = [(x_of(i), y_of(v)) for i, v in enumerate(num(x) for x in values) if v is not None]
    if not pts:
        return ""
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    r = 2 if dashed else 2.8
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}"/>' for x, y in pts)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>{dots}'


def svg_distribution(dist: Sequence[Any] | None, *, title: str, width: int = 220, height: int = 170) -> str:
    """Vertical bars of the mean probability of scores 0/1/2 (y axis 0..1)."""
    left, right, top, bottom = 34, 8, 12, 30
    pw, ph = width - left - right, height - top - bottom
    values = [num(get(dist, i)) for i in range(3)]
    parts = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#d0d7de"/>']
    for tick in (0.0, 0.5, 1.0):
        y = top + ph * (1 - tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eaeef2"/>')
        parts.append(_text(left - 4, y + 4, f"{tick:g}", anchor="end", size=10))
    slot = pw / 3
    for i, v in enumerate(values):
        cx = left + slot * (i + 0.5)
        parts.append(_text(cx, top + ph + 13, f"score {i}", size=10))
        if v is None:
            parts.append(_text(cx, top + ph - 4, DASH))
            continue
        h = ph * max(0.0, min(1.0, v))
        parts.append(f'<rect x="{cx - slot * 0.3:.1f}" y="{top + ph - h:.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{h:.1f}" fill="{PALETTE[0]}"/>')
        parts.append(_text(cx, top + ph - h - 3, f"{v:.2f}", size=10))
    parts.append(_text(left + pw / 2, height - 3, "probability by score"))
    return _svg(width, height, "".join(parts), title)


def svg_hbars(items: Sequence[tuple[str, float | None, str]], *, title: str, width: int = 640) -> str:
    """Horizontal bars of rates in [0, 1]: (label, rate, note shown after the bar)."""
    row, label_w, note_w, top = 20, 210, 120, 6
    bar_w = width - label_w - note_w
    height = top * 2 + row * max(len(items), 1)
    parts = []
    for i, (label, rate, note) in enumerate(items):
        y = top + i * row
        parts.append(_text(label_w - 6, y + 14, label, anchor="end"))
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row - 6}" fill="#eaeef2"/>')
        if rate is not None:
            w = bar_w * max(0.0, min(1.0, rate))
            colour = "#1a7f37" if rate >= 0.999 else ("#bf8700" if rate >= 0.5 else "#cf222e")
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                         f'fill="{colour}"/>')
        parts.append(_text(label_w + bar_w + 6, y + 14, f"{pct(rate)}  {note}", anchor="start"))
    return _svg(width, height, "".join(parts), title)


# ---------------------------------------------------------------------------------------------
# Sections of the report page


def _is_rules(report: dict) -> bool:
    kind = get(report, "summary", "empathy", "kind") or get(report, "run", "judge", "kind")
    return kind == "rules"


def _judge_text(report: dict) -> str:
    judge = get(report, "run", "judge") or {}
    if _is_rules(report):
        return RULES_LABEL
    if (get(report, "run", "judge", "kind") or get(report, "summary", "empathy", "kind")) == "epitome":
        return EPITOME_LABEL
    model = judge.get("model") if isinstance(judge, dict) else None
    return f"LLM judge ({model})" if model else "LLM judge"


def _llm_text(settings: Any) -> str:
    backend = get(settings, "llm_backend")
    model = get(settings, "llm_model")
    # The openai/vllm backends use openai_model; the embedded backend uses llm_model.
    if backend in ("openai", "vllm") and get(settings, "openai_model"):
        model = get(settings, "openai_model")
    return f"{backend or DASH} / {model or DASH}"


def _run_section(report: dict) -> str:
    run = get(report, "run") or {}
    settings = get(run, "settings") or {}
    # The run's own seed/temperature win; the settings' are the fallback for older reports.
    seed = _first(get(run, "seed"), get(settings, "seed"))
    temperature = _first(get(run, "temperature"), get(settings, "temperature"))
    url = get(run, "judge", "url")
    rows = [
        ("Run id", esc(get(run, "id"))),
        ("Started", esc(get(run, "started"))),
        ("Finished", esc(get(run, "finished"))),
        ("Wall time", _seconds(get(run, "wall_s"), 1)),
        ("Sources", esc(", ".join(str(s) for s in get(run, "sources") or []) or None)),
        ("Empathy judge", esc(_judge_text(report)) + (f' <span class="muted">at {esc(url)}</span>'
                                                      if url else "")),
        ("Seed / temperature", f"{esc(seed)} / {fmt(temperature)}"),
        ("LLM backend / model", esc(_llm_text(settings))),
        ("Persona", esc(get(settings, "persona"))),
        ("User simulator", esc(get(run, "simulator", "model"))),
        ("Parallel / resumed", f"{esc(get(run, 'parallel'))} / {esc(get(run, 'resumed'))}"),
        ("Package version", esc(get(run, "package_version"))),
    ]
    facts = table(("Fact", "Value"), rows, class_="facts")
    more = ""
    if isinstance(settings, dict) and settings:
        srows = [(esc(k), esc(settings[k])) for k in sorted(settings)]
        more = (f"<details><summary>All settings ({len(srows)})</summary>"
                f"{table(('Setting', 'Value'), srows)}</details>")
    return f"<h2>Run</h2>{facts}{more}"


def _acc_row(label: str, metric: Any) -> tuple[str, str, str]:
    n = get(metric, "n")
    value = DASH if not n else pct(get(metric, "accuracy"))
    return esc(label), value, esc(n)


def _headline_rows(summary: dict) -> list[tuple[str, str, str]]:
    s = summary
    rows: list[tuple[str, str, str]] = [
        ("Scenarios (ok / errors)",
         f"{esc(get(s, 'scenarios'))} ({esc(get(s, 'ok'))} / {esc(get(s, 'errors'))})", ""),
        ("Turns", esc(get(s, "turns")), ""),
        ("Checks passed", pct(get(s, "pass_rate")), ""),
    ]
    for key, label in (("fused", "Perception: fused category"), ("text", "Perception: text"),
                       ("speech", "Perception: speech"), ("face", "Perception: face"),
                       ("mixed_signals", "Perception: mixed signals"),
                       ("vad_in_range", "Perception: V/A in range")):
        rows.append(_acc_row(label, get(s, "perception", key)))
    rows.append(_acc_row("Register: strategy family", get(s, "register", "family")))
    rows.append(_acc_row("Register: tone", get(s, "register", "tone")))
    expected = get(s, "safety", "crisis_expected")
    rows += [
        ("Safety: crisis recall", DASH if not expected else pct(get(s, "safety", "recall")),
         f"{esc(get(s, 'safety', 'crisis_routed'))} / {esc(expected)}"),
        ("Safety: false alarms", esc(get(s, "safety", "false_alarms")), ""),
        ("Safety: forbidden content", esc(get(s, "safety", "forbidden_content")), ""),
        _acc_row("Safety: clinical presentation read", get(s, "safety", "presentation")),
        ("Safety: reply guard blocks", esc(get(s, "safety", "guard", "events")),
         ", ".join(f"{esc(k)} {esc(v)}" for k, v in (get(s, "safety", "guard", "by_category") or {}).items())
         + (f"; {esc(get(s, 'safety', 'guard', 'fallbacks'))} fallback(s)" if get(s, "safety", "guard", "fallbacks") else "")),
        ("Empathy: overall (0–1)", fmt(get(s, "empathy", "overall")), ""),
    ]
    for dim, label in EMPATHY_DIMS:
        rows.append((f"Empathy: {label.lower()} (0–2)", fmt(get(s, "empathy", dim, "mean")), ""))
    if get(s, "adherence", "n"):
        rows += [("Strategy adherence: exact", pct(get(s, "adherence", "exact")),
                  f"{esc(get(s, 'adherence', 'n'))} replies (classified strategy = planned)"),
                 ("Strategy adherence: family", pct(get(s, "adherence", "family")), "same ESConv stage")]
    dialogues = get(s, "trajectory", "dialogues")
    rows += [
        ("Trajectory: dialogues improved",
         DASH if not dialogues else pct(get(s, "trajectory", "improved_share")), esc(dialogues)),
        ("Trajectory: mean valence change", signed(get(s, "trajectory", "mean_valence_change")), ""),
    ]
    for stat in ("p50", "p95", "mean"):
        rows.append((f"Latency per turn ({stat})", _seconds(get(s, "latency", "turn_s", stat)), ""))
    for stat in ("p50", "p95"):
        rows.append((f"First words of the reply ({stat})", _seconds(get(s, "latency", "first_text_s", stat)), ""))
    return rows


def _seconds(value: Any, digits: int = 2) -> str:
    x = num(value)
    return DASH if x is None else f"{x:.{digits}f} s"


def _summary_section(report: dict) -> str:
    summary = get(report, "summary") or {}
    out = ["<h2>Summary</h2>", table(("Metric", "Value", "n / detail"), _headline_rows(summary),
                                     num_cols=(1,))]
    steps = get(summary, "latency", "steps")
    if isinstance(steps, dict) and steps:
        rows = [(esc(name), _seconds(get(v, "mean")), _seconds(get(v, "p50")), _seconds(get(v, "p95")))
                for name, v in steps.items()]
        out.append("<details><summary>Latency per step</summary>"
                   + table(("Step", "mean", "p50", "p95"), rows, num_cols=(1, 2, 3)) + "</details>")
    return "".join(out)


def _scenario_series(scenario: dict) -> tuple[list[Any], list[Any]]:
    """Fused valence/arousal per turn: the scenario's trajectory, else read back from the turns."""
    valence = get(scenario, "trajectory", "valence")
    arousal = get(scenario, "trajectory", "arousal")
    if isinstance(valence, list) and valence:
        return valence, arousal if isinstance(arousal, list) else []
    turns = [t for t in get(scenario, "turns") or [] if isinstance(t, dict)]
    return ([get(t, "perceived", "fused", "valence") for t in turns],
            [get(t, "perceived", "fused", "arousal") for t in turns])


def _scenarios(report: dict) -> list[dict]:
    return [s for s in get(report, "scenarios") or [] if isinstance(s, dict)]


def _plots_section(report: dict) -> str:
    figures = []
    for sc in _scenarios(report):
        valence, arousal = _scenario_series(sc)
        if not any(num(v) is not None for v in list(valence) + list(arousal)):
            continue
        name = str(sc.get("id") or "?")
        svg = svg_trajectory([(name, valence, arousal)], title=f"Emotion trajectory of {name}")
        change = signed(get(sc, "trajectory", "change"))
        figures.append(f"<figure>{svg}<figcaption>{esc(name)} (change {change})</figcaption></figure>")
    traj = ("<h3>Emotion trajectory (fused valence solid, arousal dashed)</h3>"
            + (f'<div class="grid">{"".join(figures)}</div>' if figures else _muted("No turns.")))
    empathy = get(report, "summary", "empathy")
    dists = "".join(
        f"<figure>{svg_distribution(get(empathy, dim, 'distribution'), title=label)}"
        f"<figcaption>{esc(label)} (mean {fmt(get(empathy, dim, 'mean'))})</figcaption></figure>"
        for dim, label in EMPATHY_DIMS)
    note = f' <span class="note">{esc(RULES_LABEL)}</span>' if _is_rules(report) else ""
    emp = f"<h3>Empathy score distributions (EPITOME){note}</h3><div class=\"grid\">{dists}</div>"
    by_name = get(report, "summary", "checks", "by_name")
    items = [(str(k), num(get(v, "rate")), f"{esc(get(v, 'passed'))}/{esc(get(v, 'total'))}")
             for k, v in sorted(by_name.items())] if isinstance(by_name, dict) else []
    checks = ("<h3>Pass rate per check</h3>"
              + (svg_hbars(items, title="Pass rate per check") if items else _muted("No checks.")))
    return f"<h2>Plots</h2>{traj}{emp}{checks}"


def _muted(text: str) -> str:
    return f'<p class="muted">{esc(text)}</p>'


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


def check_mark(passed: Any) -> str:
    if passed is True:
        return '<span class="ok">✓</span>'
    if passed is False:
        return '<span class="bad">✗</span>'
    return f'<span class="muted">{DASH}</span>'


def _checks_cell(checks: Any) -> str:
    items = []
    for c in checks if isinstance(checks, list) else []:
        if not isinstance(c, dict):
            continue
        label = f"{esc(c.get('kind'))}:{esc(c.get('name'))}"
        if c.get("passed") is False:
            items.append(f'<li class="bad">{check_mark(False)} {label} — expected {esc(c.get("expected"))}, '
                         f'got {esc(c.get("actual"))}</li>')
        else:
            items.append(f"<li>{check_mark(c.get('passed'))} {label}</li>")
    return f'<ul class="checks">{"".join(items)}</ul>' if items else DASH


def _perceived_cell(perceived: Any) -> str:
    fused = get(perceived, "fused")
    if not isinstance(fused, dict):
        return DASH
    out = (f"<b>{esc(fused.get('category'))}</b><br>"
           f"V {fmt(fused.get('valence'))} · A {fmt(fused.get('arousal'))}"
           f" <span class=\"muted\">({fmt(fused.get('confidence'))})</span>")
    modalities = get(perceived, "modalities")
    if isinstance(modalities, dict) and modalities:
        mods = ", ".join(f"{esc(k)}: {esc(get(v, 'category'))}" for k, v in modalities.items())
        out += f'<br><span class="muted">{mods}</span>'
    return out


def _register_cell(register: Any) -> str:
    if not isinstance(register, dict):
        return DASH
    tone = register.get("tone")
    tone_s = ", ".join(str(t) for t in tone) if isinstance(tone, list) else tone
    return (f"{esc(register.get('strategy'))} <span class=\"muted\">({esc(register.get('family'))})</span>"
            + (f"<br><span class=\"muted\">{esc(tone_s)}</span>" if tone_s else ""))


def _empathy_cell(empathy: Any) -> str:
    if not isinstance(empathy, dict):
        return DASH
    short = {"emotional_reactions": "ER", "interpretations": "IP", "explorations": "EX"}
    parts = []
    for d, _ in EMPATHY_DIMS:
        dist = get(empathy, d, "distribution")
        shown = ("/".join(f"{float(p):.2f}" for p in dist) if isinstance(dist, list) and len(dist) == 3
                 and get(empathy, "probabilities") else "")
        parts.append(f'<span class="nowrap">{short[d]} {fmt(get(empathy, d, "score"), 1)}'
                     + (f' <span class="muted">({shown})</span>' if shown else "") + "</span>")
    return "<br>".join(parts)


def _adherence_cell(adherence: Any) -> str:
    """The reply's classified strategy against the planned one."""
    if not isinstance(adherence, dict):
        return ""
    mark = "exact" if adherence.get("exact") else "family" if adherence.get("family") else "other"
    cls = "" if adherence.get("exact") or adherence.get("family") else ' class="bad"'
    return (f'<br><span class="muted">reads as</span> <span{cls}>{esc(adherence.get("classified"))}</span> '
            f'<span class="muted">({mark})</span>')


def _flag(value: Any, *, bad_when_true: bool = False) -> str:
    if value is None:
        return DASH
    if value:
        return '<span class="bad">yes</span>' if bad_when_true else "yes"
    return '<span class="muted">no</span>'


def _turn_row(turn: dict) -> list[str]:
    user = f"<div class=\"text\">{esc(turn.get('user_text'))}</div>"
    if turn.get("kind") == "simulated":
        user += '<span class="muted">(simulated)</span>'
    inputs = turn.get("inputs")
    extra = [s for s in [get(inputs, "audio")] + list(get(inputs, "images") or []) if s]
    if extra:
        user += f'<br><span class="muted">{esc(", ".join(str(x) for x in extra))}</span>'
    degraded = turn.get("degraded")
    reply = f"<div class=\"text\">{esc(turn.get('reply'))}</div>"
    if isinstance(degraded, list) and degraded:
        reply += "".join(f'<br><span class="bad">degraded {esc(get(d, "step"))}: '
                         f'{esc(get(d, "error"))}</span>' for d in degraded)
    return [esc(turn.get("index")), user, reply, _perceived_cell(turn.get("perceived")),
            _flag(get(turn, "perceived", "mixed_signals")), _register_cell(turn.get("register")),
            _flag(turn.get("crisis"), bad_when_true=True),
            _empathy_cell(turn.get("empathy")) + _adherence_cell(turn.get("adherence")),
            _checks_cell(turn.get("checks")), f'<span class="nowrap">{_seconds(turn.get("turn_s"))}</span>']


def _goals_table(goals: Any) -> str:
    if not isinstance(goals, list):
        return ""
    rows = [(check_mark(g.get("passed")), esc(g.get("name")), esc(g.get("expected")), esc(g.get("actual")))
            for g in goals if isinstance(g, dict)]
    return "<h4>Goals</h4>" + table(("", "Goal", "Expected", "Actual"), rows) if rows else ""


def _scenario_section(sc: dict) -> str:
    sid = str(sc.get("id") or "?")
    status = sc.get("status")
    badge = f'<span class="badge {"ok" if status == "ok" else "bad"}">{esc(status)}</span>'
    metrics = sc.get("metrics") or {}
    facts = (f"<p>{badge} <span class=\"muted\">source {esc(sc.get('source'))} · tags "
             f"{esc(', '.join(str(t) for t in sc.get('tags') or []) or None)} · seed {esc(sc.get('seed'))} · "
             f"{_seconds(sc.get('wall_s'), 1)}</span><br>"
             f"Checks {esc(get(metrics, 'checks_passed'))}/{esc(get(metrics, 'checks_total'))} "
             f"({pct(get(metrics, 'pass_rate'))}) · empathy {fmt(get(metrics, 'empathy_overall'))} · "
             f"valence change {signed(get(sc, 'trajectory', 'change'))}</p>")
    user = get(sc, "user")
    if isinstance(user, dict) and (user.get("name") or user.get("description")):
        facts += f"<p><b>User:</b> {esc(user.get('name'))} — {esc(user.get('description'))}</p>"
    error = f'<div class="error">{esc(sc.get("error"))}</div>' if sc.get("error") else ""
    turns = [t for t in sc.get("turns") or [] if isinstance(t, dict)]
    header = ("#", "User", "Reply", "Perceived (fused)", "Mixed", "Register", "Crisis", "Empathy",
              "Checks", "Time")
    turns_html = (table(header, (_turn_row(t) for t in turns), class_="turns") if turns
                  else _muted("No turns."))
    title = f" — {esc(sc.get('title'))}" if sc.get("title") else ""
    return (f'<section id="scenario-{esc(sid)}"><h3>{esc(sid)}{title}</h3>{facts}{error}{turns_html}'
            f"{_goals_table(sc.get('goals'))}</section>")


def _scenario_index(report: dict) -> str:
    rows = [(f'<a href="#scenario-{esc(s.get("id"))}">{esc(s.get("id"))}</a>', esc(s.get("title")),
             f'<span class="{"ok" if s.get("status") == "ok" else "bad"}">{esc(s.get("status"))}</span>',
             pct(get(s, "metrics", "pass_rate")), fmt(get(s, "metrics", "empathy_overall")),
             signed(get(s, "trajectory", "change")))
            for s in _scenarios(report)]
    return table(("Scenario", "Title", "Status", "Checks", "Empathy", "Valence Δ"), rows, num_cols=(3, 4, 5))


def render_html(report: dict) -> str:
    """The report page as a string (see :func:`write_html`)."""
    report = report if isinstance(report, dict) else {}
    run_id = get(report, "run", "id")
    sections = "".join(_scenario_section(s) for s in _scenarios(report))
    rules = (f'<p><span class="note">Empathy scores: {esc(RULES_LABEL)}</span></p>'
             if _is_rules(report) else "")
    body = (f"<h1>Empathic Agent — evaluation report {esc(run_id)}</h1>" + rules
            + _run_section(report) + _summary_section(report) + _plots_section(report)
            + "<h2>Scenarios</h2>" + _scenario_index(report) + sections)
    return page(f"Evaluation report {run_id or ''}".strip(), body)


def write_html(report: dict, path: Path) -> Path:
    """Write the self-contained HTML report (atomically); returns the path."""
    return atomic_write_text(Path(path), render_html(report))
