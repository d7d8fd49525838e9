"""``empathic eval table``: one Markdown row per responder, from its ``eval replies`` run and its
``bench llm`` JSON — the table the README's "Choosing the responder" section shows.

    empathic eval table --row "SmolLM2 base" runs/smol runs/smol-bench.json \\
                        --row "SmolLM2 tuned" runs/smol-esconv runs/smol-esconv-bench.json

Every row must come from the same items (same source, ``--limit`` and ``--seed``): the command
refuses runs whose item ids differ.  The gold row is read from the first run (the human
supporters' replies on the same items).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from empathic_agent.errors import ConfigError

__all__ = ["COLUMNS", "table_rows", "markdown"]

#: (header, how to read it from a summary side, format).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("ER", "empathy.emotional_reactions.mean"), ("IP", "empathy.interpretations.mean"),
    ("EX", "empathy.explorations.mean"), ("ER+IP+EX", "empathy_sum"),
    ("adherence family / exact", "adherence"), ("off-topic", "off_topic_rate"), ("BLEU-2", "bleu_2"),
    ("ROUGE-L", "rouge_l"), ("Distinct-2", "distinct_2"), ("PPL", "reference_perplexity"),
    ("unfinished", "unfinished_rate"), ("words p50", "length_words.p50"),
    ("first text p50 (s)", "latency.first_text_s.p50"), ("first token (s)", "bench.ttft_s_median"),
    ("tokens/s", "bench.tokens_per_s_median"), ("peak RSS (GB)", "bench.peak_rss_mb"),
)


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def _cell(side: dict[str, Any], key: str) -> str:
    if key == "empathy_sum":
        vals = [_get(side, f"empathy.{d}.mean") for d in ("emotional_reactions", "interpretations", "explorations")]
        return f"{sum(vals):.3f}" if all(v is not None for v in vals) else "–"
    if key == "adherence":
        fam, exact = _get(side, "adherence.family"), _get(side, "adherence.exact")
        return f"{fam:.3f} / {exact:.3f}" if fam is not None and exact is not None else "–"
    v = _get(side, key)
    if v is None:
        return "–"
    if key == "bench.peak_rss_mb":
        return f"{v / 1024:.2f}"
    if key in ("off_topic_rate", "unfinished_rate"):
        return f"{100 * v:.1f} %"
    if key == "distinct_2":
        return f"{100 * v:.1f}" if v <= 1 else f"{v:.1f}"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def table_rows(rows: Sequence[tuple[str, Path, Path | None]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, summary side with ``bench``) per row, plus the gold row first."""
    from empathic_agent.evals.compare import load_report

    out: list[tuple[str, dict[str, Any]]] = []
    ids: list[str] | None = None
    for name, run, bench in rows:
        report = load_report(run)
        got = sorted(str(it["id"]) for it in report.get("items") or [])
        if ids is None:
            ids = got
            out.append(("gold (ESConv supporters)", dict(report["summary"]["gold"])))
        elif got != ids:
            raise ConfigError(f"{run}: its items differ from the first run's (use the same source, --limit, --seed)")
        side = dict(report["summary"]["reply"])
        if bench is not None:
            data = json.loads(Path(bench).read_text())
            results = data.get("results") if isinstance(data, dict) else None
            side["bench"] = results[0] if results else data
        out.append((name, side))
    return out


def markdown(rows: Sequence[tuple[str, dict[str, Any]]], n_items: int | None = None) -> str:
    head = "| responder | " + " | ".join(h for h, _ in COLUMNS) + " |"
    sep = "|---|" + "---|" * len(COLUMNS)
    lines = [head, sep] + ["| " + name + " | " + " | ".join(_cell(side, k) for _, k in COLUMNS) + " |"
                           for name, side in rows]
    if n_items is not None:
        lines.append(f"\n{n_items} items.")
    return "\n".join(lines)
