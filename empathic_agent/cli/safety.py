"""``empathic safety eval`` (the crisis detector on labelled CSVs, JSON) and ``empathic safety
check TEXT`` (one message: the assessment and the protocol's reply)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from empathic_agent.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("safety", help="the crisis detector: evaluate on labelled CSVs, check a message")
    sub = p.add_subparsers(dest="safety_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser("eval", parents=[common], help="recall/precision and the misses as JSON",
                       description="Columns text,crisis (0/1), optional kind. Default: the shipped sets.")
    q.add_argument("--csv", action="append", help="a labelled CSV (repeatable); default: the shipped eval + holdout sets")
    q.add_argument("--patterns-only", action="store_true", help="without the semantic (MiniLM) layer")
    q = sub.add_parser("check", parents=[common], help="assess one message (JSON)")
    q.add_argument("text")
    q.add_argument("--locale", default=None, help="resources of this locale (default: the safety_locale setting)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.safety import SafetyStage
    from empathic_agent.safety.evaluate import SHIPPED_SETS, evaluate_csv

    if getattr(args, "patterns_only", False):
        settings = dataclasses.replace(settings, safety_semantic=False)
    if getattr(args, "locale", None):
        settings = dataclasses.replace(settings, safety_locale=args.locale)
    stage = SafetyStage.from_settings(settings)
    if args.safety_command == "check":
        print(json.dumps(stage.assess(args.text).to_dict(), indent=1, ensure_ascii=False))
        return 0
    files = args.csv or [str(p) for p in SHIPPED_SETS.values()]
    results = [evaluate_csv(stage.detector, f, progress=True) for f in files]
    print(json.dumps(results[0] if len(results) == 1 else results, indent=1, ensure_ascii=False))
    return 0
