"""``empathic eval``: run scripted dialogue evaluations, compare runs, convert data sets to
scenarios, and print the scenario schema or the content checks.

    empathic eval run shipped --out runs/default            # the shipped scenario sets
    empathic eval run my.yaml esconv:test:20 --config cfg.yaml --judge-url http://gpu:8000/v1 --out runs/x
    empathic eval compare runs/default runs/x --out runs/cmp
    empathic eval replies --source esconv:test --limit 300 --out runs/replies   # reply-level, vs. human replies
    empathic eval convert esconv --split test --limit 50 --out scenarios/esconv
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.errors import ConfigError
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run_scenarios", "run_replies", "run_compare", "run_table", "run_convert", "run_validate",
           "run_schema", "run_checks"]

# eval-run flags that map to Settings fields.
_RUN_SETTINGS = {
    "judge": "judge", "judge_url": "judge_base_url", "judge_model": "judge_model", "judge_api_key": "judge_api_key",
    "simulator_url": "simulator_base_url", "simulator_model": "simulator_model",
    "simulator_api_key": "simulator_api_key", "persona": "persona",
}


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("eval", help="scripted dialogue evaluation: run, compare, convert",
                              description="Measure how empathetic, accurate and safe an agent configuration is.")
    sub = p.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    q = sub.add_parser("run", parents=[common], help="run scenarios through the agent; JSON + HTML report",
                       description="SCENARIOS: files or folders of YAML/JSON scenarios, 'shipped' or 'shipped:NAME' "
                                   "(the sets in the package), 'esconv[:SPLIT][:N]' or "
                                   "'empatheticdialogues[:SPLIT][:N]' (converted from --data-dir at run time). "
                                   "Resumes an interrupted run in the same --out folder.")
    handled_by(q, "empathic_agent.cli.evals:run_scenarios")
    q.add_argument("scenarios", nargs="+", metavar="SCENARIOS")
    q.add_argument("--out", required=True, help="run folder (report.json, report.html, per-scenario results)")
    q.add_argument("--config", help="YAML/JSON/TOML file of settings for the agent under test (flags win over it)")
    q.add_argument("--parallel", type=int, default=2, help="scenarios at once (default 2)")
    q.add_argument("--fresh", action="store_true", help="start over instead of resuming a run in --out")
    q.add_argument("--speak", action="store_true", help="also speak every reply (measures the TTS step)")
    q.add_argument("--persona", help="persona of the agent under test")
    q.add_argument("--judge-url", help="OpenAI-compatible server of the empathy judge (default: rule-based scorer)")
    q.add_argument("--judge-model", help="the judge's model (default: the server's first)")
    q.add_argument("--judge-api-key", help="the judge server's API key")
    q.add_argument("--simulator-url", help="OpenAI-compatible server of the user simulator (default: the agent's LLM)")
    q.add_argument("--simulator-model", help="the simulator's model")
    q.add_argument("--simulator-api-key", help="the simulator server's API key")
    q.add_argument("--data-dir", help="shared data folder for esconv:/empatheticdialogues: sources")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")

    q.add_argument("--judge", choices=["epitome", "rules"],
                   help="offline empathy judge when no --judge-url is given (default: epitome)")

    q = sub.add_parser("replies", parents=[common], help="reply-level evaluation against human replies (JSON + HTML)",
                       description="Each context (dialogue so far + the person's words) runs through the agent as in "
                                   "the UI; its reply and the human reference are scored alike: empathy judge, "
                                   "strategy adherence, relevance, off-topic rate, BLEU/ROUGE-L, Distinct, reference "
                                   "perplexity, latency.  Resumes an interrupted run in the same --out folder.")
    handled_by(q, "empathic_agent.cli.evals:run_replies")
    q.add_argument("--source", required=True,
                   help="'esconv[:SPLIT]' (from --data-dir) or a CSV with columns context,reference[,strategy]")
    q.add_argument("--out", required=True, help="run folder (items.jsonl, report.json, report.html)")
    q.add_argument("--limit", type=int, help="a draw of N items, seeded by --seed like the LLM (default: all)")
    q.add_argument("--bare", action="store_true", help="the LLM alone: same history and system prompt, no plan, "
                                                       "perception or guard (ablation)")
    q.add_argument("--config", help="YAML/JSON/TOML file of settings for the agent under test")
    q.add_argument("--judge", choices=["epitome", "rules"], help="offline empathy judge (default: epitome)")
    q.add_argument("--judge-url", help="OpenAI-compatible server of an LLM judge instead")
    q.add_argument("--judge-model")
    q.add_argument("--judge-api-key")
    q.add_argument("--data-dir", help="shared data folder for esconv: sources")
    q.add_argument("--fresh", action="store_true", help="start over instead of resuming a run in --out")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")

    q = sub.add_parser("compare", parents=[common], help="side-by-side comparison of two runs (JSON + HTML)")
    handled_by(q, "empathic_agent.cli.evals:run_compare")
    q.add_argument("a", help="run folder or report.json (baseline)")
    q.add_argument("b", help="run folder or report.json (candidate)")
    q.add_argument("--out", required=True, help="folder for compare.json and compare.html")
    q.add_argument("--labels", default="A,B", help="names of the two runs (default A,B)")

    q = sub.add_parser("table", parents=[common], help="Markdown table of responders from reply runs + bench JSON",
                       description="One row per --row NAME RUN [BENCH_JSON]: the judge's means, adherence, "
                                   "off-topic rate, overlap, diversity, perplexity, latency and memory; the "
                                   "gold row first. All runs must have the same items.")
    handled_by(q, "empathic_agent.cli.evals:run_table")
    q.add_argument("--row", nargs="+", action="append", required=True, metavar="NAME RUN [BENCH]",
                   help="a row: its name, an `eval replies` run folder and optionally a `bench llm --out` JSON")

    q = sub.add_parser("convert", parents=[common], help="write scenarios from EmpatheticDialogues or ESConv",
                       description="Writes YAML scenario files into --out (outside the project: the data's "
                                   "licences are non-commercial / research-only).")
    handled_by(q, "empathic_agent.cli.evals:run_convert")
    q.add_argument("kind", choices=["empatheticdialogues", "esconv"])
    q.add_argument("--split", default="test")
    q.add_argument("--limit", type=int, default=10, help="conversations (default 10)")
    q.add_argument("--out", required=True)
    q.add_argument("--data-dir", help="shared data folder (default: the data_dir setting)")

    q = sub.add_parser("validate", parents=[common], help="check scenario files against the schema")
    handled_by(q, "empathic_agent.cli.evals:run_validate")
    q.add_argument("scenarios", nargs="+")
    q = sub.add_parser("schema", parents=[common], help="print the scenario JSON Schema")
    handled_by(q, "empathic_agent.cli.evals:run_schema")
    q = sub.add_parser("checks", parents=[common], help="list the named content checks")
    handled_by(q, "empathic_agent.cli.evals:run_checks")


def _config_file(path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        elif p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise ConfigError(f"--config {path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings")
    return data


def run_schema(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.scenario import load_schema

    print(json.dumps(load_schema(), indent=1))
    return 0


def run_checks(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.checks import CHECKS

    for name, rule in CHECKS.items():
        print(f"{name:26s} {rule.description}")
    return 0


def run_validate(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.scenario import load_scenarios

    found = load_scenarios(args.scenarios, data_dir=settings.data_dir)
    print(json.dumps({"valid": len(found), "ids": [s.id for s in found]}, indent=1))
    return 0


def run_convert(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.convert import convert, write_scenarios

    docs = convert(args.kind, split=args.split, limit=args.limit, data_dir=args.data_dir or settings.data_dir)
    paths = write_scenarios(docs, Path(args.out))
    print(json.dumps({"written": len(paths), "out": str(Path(args.out))}, indent=1))
    return 0


def run_compare(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.compare import compare_reports, load_report, write_compare_html
    from empathic_agent.evals.report import write_json

    labels = tuple(x.strip() for x in args.labels.split(","))
    if len(labels) != 2:
        raise ConfigError("--labels takes two names separated by a comma")
    cmp = compare_reports(load_report(args.a), load_report(args.b), labels=labels)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(cmp, out / "compare.json")
    write_compare_html(cmp, out / "compare.html")
    print(json.dumps({"json": str(out / "compare.json"), "html": str(out / "compare.html")}, indent=1))
    return 0


def run_table(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.replies_table import markdown, table_rows

    rows = []
    for row in args.row:
        if len(row) not in (2, 3):
            raise ConfigError(f"--row takes NAME RUN [BENCH], got {row}")
        rows.append((row[0], Path(row[1]), Path(row[2]) if len(row) == 3 else None))
    made = table_rows(rows)
    print(markdown(made, n_items=made[0][1].get("n")))
    return 0


def _settings_for_run(args: argparse.Namespace) -> Settings:
    """Precedence: environment < --config file < command-line flags."""
    overrides = _config_file(args.config) if args.config else {}
    flags = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_") and v is not None}
    flags.update({field: getattr(args, a) for a, field in _RUN_SETTINGS.items() if getattr(args, a, None) is not None})
    return Settings.from_env(**{**overrides, **flags})


def run_replies(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.replies import RepliesOptions
    from empathic_agent.evals.replies import run_replies as evaluate_replies

    settings = _settings_for_run(args)
    options = RepliesOptions(out=Path(args.out), limit=args.limit, seed=settings.seed if settings.seed is not None else 0, bare=args.bare,
                             fresh=args.fresh, progress=not args.no_progress, data_dir=Path(args.data_dir or settings.data_dir))
    report = asyncio.run(evaluate_replies(settings, args.source, options))
    r, g = report["summary"]["reply"], report["summary"]["gold"]
    keys = ("empathy", "adherence", "gold_strategy_agreement", "relevance_message", "relevance_reference",
            "off_topic_rate", "bleu_1", "bleu_2", "bleu_4", "rouge_l", "distinct_1", "distinct_2",
            "reference_perplexity", "length_words", "latency", "errors")
    print(json.dumps({"out": str(Path(args.out)), "report": str(Path(args.out) / "report.html"), "items": r["n"],
                      "judge": report["judge"]["kind"], "agent": {k: r.get(k) for k in keys},
                      "gold": {k: g.get(k) for k in keys if k in g}}, indent=1))
    return 0 if not r.get("errors") else 1


def run_scenarios(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.runner import RunOptions, run_eval
    from empathic_agent.evals.scenario import load_scenarios

    settings = _settings_for_run(args)
    scenarios = load_scenarios(args.scenarios, data_dir=args.data_dir or settings.data_dir)
    options = RunOptions(out=Path(args.out), parallel=args.parallel, fresh=args.fresh, speak=args.speak,
                         progress=not args.no_progress)
    report = asyncio.run(run_eval(scenarios, settings, options, sources=args.scenarios))
    s = report["summary"]
    headline = {
        "out": str(Path(args.out)), "report": str(Path(args.out) / "report.html"),
        "scenarios": s["scenarios"], "errors": s["errors"], "turns": s["turns"], "pass_rate": s["pass_rate"],
        "perception_fused_accuracy": s["perception"]["fused"]["accuracy"],
        "register_family_accuracy": s["register"]["family"]["accuracy"],
        "empathy": {"kind": s["empathy"]["kind"], "overall": s["empathy"]["overall"]},
        "safety": s["safety"], "trajectory": s["trajectory"],
        "turn_s_p50": s["latency"]["turn_s"]["p50"], "wall_s": report["run"].get("wall_s"),
    }
    print(json.dumps(headline, indent=1))
    return 0 if s["errors"] == 0 else 1

