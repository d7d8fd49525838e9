"""The HTML page of an ``empathic eval replies`` run (schema ``empathic-replies-report/1``).

Self-contained like the dialogue report (:mod:`empathic_agent.evals.report`, whose helpers and
style it shares): the agent's replies beside the human references on the same items, the figures
side by side, a per-strategy breakdown, and the worst replies shown with their context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from empathic_agent.evals.report import (
    DASH,
    EMPATHY_DIMS,
    EPITOME_LABEL,
    RULES_LABEL,
    atomic_write_text,
    esc,
    fmt,
    get,
    page,
    pct,
    svg_distribution,
    table,
)

__all__ = ["render_replies_html", "write_replies_html"]


def _judge_label(report: dict) -> str:
    kind = get(report, "judge", "kind")
    if kind == "rules":
        return RULES_LABEL
    if kind == "epitome":
        return EPITOME_LABEL
    return f"LLM judge ({get(report, 'judge', 'model') or '?'})"


def _summary_rows(report: dict) -> list[list[str]]:
    r, g = get(report, "summary", "reply") or {}, get(report, "summary", "gold") or {}
    rows: list[list[str]] = [["Empathy (judge): overall 0–1", fmt(get(r, "empathy", "overall")),
                              fmt(get(g, "empathy", "overall"))]]
    for dim, label in EMPATHY_DIMS:
        rows.append([f"{label} (0–2)", fmt(get(r, "empathy", dim, "mean")), fmt(get(g, "empathy", dim, "mean"))])
    rows += [
        ["Strategy adherence to the plan: exact", pct(get(r, "adherence", "exact")), DASH],
        ["Strategy adherence to the plan: family", pct(get(r, "adherence", "family")), DASH],
        ["Agreement with the gold strategy (classified)", pct(get(r, "gold_strategy_agreement")),
         pct(get(g, "gold_strategy_agreement"))],
        ["Agreement with the gold family (classified)", pct(get(r, "gold_family_agreement")),
         pct(get(g, "gold_family_agreement"))],
        ["Relevance to the person's message (cosine)", fmt(get(r, "relevance_message"), 3),
         fmt(get(g, "relevance_message"), 3)],
        ["Relevance to the reference (cosine)", fmt(get(r, "relevance_reference"), 3), DASH],
        [f"Off-topic rate (relevance < {fmt(get(report, 'off_topic_threshold'), 3)})", pct(get(r, "off_topic_rate")),
         pct(get(g, "off_topic_rate"))],
        ["BLEU-1 / BLEU-2 / BLEU-4", " / ".join(fmt(get(r, k)) for k in ("bleu_1", "bleu_2", "bleu_4")), DASH],
        ["ROUGE-L", fmt(get(r, "rouge_l")), DASH],
        ["Distinct-1 / Distinct-2", f"{fmt(get(r, 'distinct_1'), 3)} / {fmt(get(r, 'distinct_2'), 3)}",
         f"{fmt(get(g, 'distinct_1'), 3)} / {fmt(get(g, 'distinct_2'), 3)}"],
        ["Perplexity of the reference under the LLM", fmt(get(r, "reference_perplexity")), DASH],
        ["Length, words (p50 / mean)", f"{fmt(get(r, 'length_words', 'p50'), 0)} / {fmt(get(r, 'length_words', 'mean'), 1)}",
         f"{fmt(get(g, 'length_words', 'p50'), 0)} / {fmt(get(g, 'length_words', 'mean'), 1)}"],
        ["First text, s (p50 / p95)", f"{fmt(get(r, 'latency', 'first_text_s', 'p50'))} / "
                                      f"{fmt(get(r, 'latency', 'first_text_s', 'p95'))}", DASH],
        ["Whole reply, s (p50 / p95)", f"{fmt(get(r, 'latency', 'total_s', 'p50'))} / "
                                       f"{fmt(get(r, 'latency', 'total_s', 'p95'))}", DASH],
        ["Replies on a crisis route", esc(get(r, "crisis_routed")), DASH],
        ["Items that failed", esc(get(r, "errors")), DASH],
    ]
    return rows


def _context_cell(item: dict) -> str:
    lines = [f'<span class="muted">{"Person" if role == "user" else "Supporter"}:</span> {esc(text)}'
             for role, text in (item.get("history") or [])]
    lines.append(f"<b>Person:</b> {esc(item.get('message'))}")
    return '<div class="text">' + "<br>".join(lines) + "</div>"


def _worst_table(rows: Any) -> str:
    if not isinstance(rows, list) or not rows:
        return f'<p class="muted">{DASH}</p>'
    body = [[esc(r.get("id")), _context_cell(r), f'<div class="text">{esc(r.get("reply"))}</div>',
             f'<div class="text">{esc(r.get("reference"))}</div>', fmt(r.get("overall")), fmt(r.get("relevance"), 3),
             esc(r.get("planned")), esc(r.get("gold_strategy"))] for r in rows]
    return table(("Item", "Context (last turns)", "Agent's reply", "Human reference", "Judge 0–1", "Relevance",
                  "Planned", "Gold strategy"), body, class_="turns", num_cols=(4, 5))


def render_replies_html(report: dict) -> str:
    report = report if isinstance(report, dict) else {}
    run = report.get("run") or {}
    facts = table(("", ""), [
        ["Source", esc(run.get("source"))], ["Items", esc(run.get("items"))],
        ["Mode", "bare LLM (no perception, plan or guard)" if run.get("bare") else "the agent (as in the UI)"],
        ["LLM", esc(get(run, "settings", "llm_backend")) + " · " + esc(get(run, "settings", "openai_model")
                                                                       or get(run, "settings", "llm_model"))],
        ["Seed", esc(run.get("seed"))], ["Empathy judge", esc(_judge_label(report))],
        ["Strategy classifier", "ESConv-trained MiniLM" if get(report, "strategy_classifier", "available")
         else "not available"],
        ["Tokenisation", "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in (report.get("tokenisation") or {}).items())],
    ], class_="facts")
    summary = table(("Figure", "Agent", "Human (gold)"), _summary_rows(report), num_cols=(1, 2))
    dists = "".join(
        f"<figure>{svg_distribution(get(report, 'summary', side, 'empathy', dim, 'distribution'), title=label)}"
        f"<figcaption>{esc(label)} — {'agent' if side == 'reply' else 'human'}</figcaption></figure>"
        for dim, label in EMPATHY_DIMS for side in ("reply", "gold"))
    strat_rows = []
    for s, v in (report.get("by_strategy") or {}).items():
        strat_rows.append([esc(s), esc(v.get("family")), esc(v.get("n")),
                           fmt(get(v, "reply", "empathy", "overall")), fmt(get(v, "gold", "empathy", "overall")),
                           fmt(get(v, "reply", "relevance_message"), 3), fmt(get(v, "gold", "relevance_message"), 3),
                           pct(get(v, "reply", "off_topic_rate")), pct(get(v, "reply", "gold_strategy_agreement")),
                           pct(get(v, "gold", "gold_strategy_agreement"))])
    by_strategy = table(("Gold strategy", "Family", "n", "Judge: agent", "Judge: human", "Relevance: agent",
                         "Relevance: human", "Off-topic: agent", "Agent reads as gold", "Human reads as gold"),
                        strat_rows, num_cols=(2, 3, 4, 5, 6, 7, 8, 9))
    plan_rows = [[esc(s), esc(v.get("n")), pct(v.get("exact")), pct(v.get("family"))]
                 for s, v in (report.get("by_planned_strategy") or {}).items()]
    by_plan = table(("Planned strategy", "n", "Adherence: exact", "Adherence: family"), plan_rows, num_cols=(1, 2, 3))
    body = (f"<h1>Empathic Agent — reply evaluation</h1>"
            f'<p><span class="note">{esc(report.get("licence_note"))}</span></p>'
            + facts + "<h2>Summary</h2>" + summary
            + f'<h3>Judged empathy distributions</h3><div class="grid">{dists}</div>'
            + "<h2>By gold strategy</h2>" + by_strategy
            + "<h2>By planned strategy</h2>" + by_plan
            + f"<h2>The {len(get(report, 'worst', 'judge') or [])} lowest-rated replies (judge)</h2>"
            + _worst_table(get(report, "worst", "judge"))
            + f"<h2>The {len(get(report, 'worst', 'relevance') or [])} least relevant replies</h2>"
            + _worst_table(get(report, "worst", "relevance")))
    return page(f"Reply evaluation {run.get('run_id') or ''}".strip(), body)


def write_replies_html(report: dict, path: Path) -> Path:
    return atomic_write_text(Path(path), render_replies_html(report))
