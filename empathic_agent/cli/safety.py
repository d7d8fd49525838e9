"""``empathic safety``: the risk screen from the command line (JSON out).

* ``eval`` — the held-out test set, the held-out conversations and the older binary sets (or your
  own CSVs / scenario files): recall per dimension and level, false alarms per hard-negative kind,
  conversation routing, calibration, misses, latency;
* ``check TEXT [--before TEXT ...]`` — one message (after earlier ones): the assessment and reply;
* ``train`` — re-train the learned layer (leave-one-writer-out selection; weights to ``--out``);
* ``bench`` — screening latency per message (p50/p95), warm.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from empathic_agent.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("safety", help="the risk screen: evaluate, check a message, train, benchmark")
    sub = p.add_subparsers(dest="safety_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser("eval", parents=[common], help="the screen's figures as JSON",
                       description="CSV: text,level,subject,dimensions,kind,register (risk) or text,crisis (binary). "
                                   "Default: the held-out test set, the held-out conversations, the older binary sets.")
    q.add_argument("--csv", action="append", help="a labelled CSV (repeatable)")
    q.add_argument("--conversations", action="append", help="a scenario file of conversations (repeatable)")
    q.add_argument("--patterns-only", action="store_true", help="without the learned (MiniLM) layer")
    q.add_argument("--brief", action="store_true", help="leave out the per-message lists (misses, false alarms)")
    q = sub.add_parser("check", parents=[common], help="assess one message (JSON)")
    q.add_argument("text")
    q.add_argument("--before", action="append", default=[], metavar="TEXT",
                   help="an earlier message of the same conversation (repeatable, oldest first)")
    q.add_argument("--locale", default=None, help="resources of this locale (default: the safety_locale setting)")
    q = sub.add_parser("train", parents=[common], help="re-train the learned layer (JSON figures)")
    q.add_argument("--csv", action="append", help="training CSVs (default: safety/data/train/*.csv)")
    q.add_argument("--out", default=None, help="weights folder (default: the package's safety/weights)")
    q.add_argument("--rethreshold", action="store_true",
                   help="only choose the thresholds again from the last run's out-of-fold predictions")
    q.add_argument("--no-folds", action="store_true", help="skip the cross-validation (keeps no thresholds)")
    q.add_argument("--folds", type=int, default=4, help="writer-grouped folds of the cross-validation (default 4)")
    q.add_argument("--train-seed", type=int, default=20261203, help="initialisation and augmentation seed")
    q = sub.add_parser("bench", parents=[common], help="screening latency per message (JSON)")
    q.add_argument("--runs", type=int, default=3, help="passes over the benchmark messages")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.safety import SafetyStage

    if getattr(args, "patterns_only", False):
        settings = dataclasses.replace(settings, safety_semantic=False)
    if getattr(args, "locale", None):
        settings = dataclasses.replace(settings, safety_locale=args.locale)
    if args.safety_command == "train":
        from empathic_agent.safety.train import rethreshold, train

        if args.rethreshold:
            out = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "safety" / "weights"
            print(json.dumps(rethreshold(Path(settings.cache_dir) / "safety-oof.npz", out / "config.json"), indent=1))
            return 0
        config = train(args.csv, out_dir=args.out or Path(__file__).resolve().parents[1] / "safety" / "weights",
                       backbone=settings.embedding_model, cache_dir=settings.cache_dir, seed=args.train_seed,
                       folds=0 if args.no_folds else args.folds)
        print(json.dumps(config, indent=1))
        return 0
    stage = SafetyStage.from_settings(settings)
    stage.load()
    if args.safety_command == "check":
        conv: dict[str, Any] = {}
        for earlier in args.before:
            conv = stage.assess(earlier, conv).conversation
        print(json.dumps(stage.assess(args.text, conv).to_dict(), indent=1, ensure_ascii=False))
        return 0
    if args.safety_command == "bench":
        return _bench(stage, args.runs)
    from empathic_agent.safety.evaluate import (
        CONVERSATION_SETS,
        EVERYDAY_TEST_SET,
        SHIPPED_SETS,
        TEST_SET,
        evaluate_conversations,
        evaluate_csv,
    )

    default = not args.csv and not args.conversations
    files = args.csv or ([str(p) for p in (TEST_SET, EVERYDAY_TEST_SET) if p.exists()]
                         + [str(p) for p in SHIPPED_SETS.values()] if default else [])
    convs = args.conversations or ([str(CONVERSATION_SETS["test"])] if default else [])
    results = [evaluate_csv(stage.detector, f, progress=True) for f in files]
    results += [evaluate_conversations(stage, f) for f in convs]
    if args.brief:
        for r in results:
            for k in ("misses", "false_alarms", "false_positives", "false_negatives", "per_scenario"):
                r.pop(k, None)
    print(json.dumps(results[0] if len(results) == 1 else results, indent=1, ensure_ascii=False))
    return 0


def _bench(stage: Any, runs: int) -> int:
    """Latency of ``SafetyStage.assess`` per message over the shipped binary sets (short and long
    messages), after a warm-up: what one turn's screening costs."""
    from empathic_agent.safety.evaluate import SHIPPED_SETS, latency_ms, read_labelled

    texts = [r["text"] for p in SHIPPED_SETS.values() for r in read_labelled(p)]
    long = " ".join(texts[:12])  # a long message (~12 sentences) as the worst case
    for t in texts[:5]:
        stage.assess(t, {})
    seconds, long_s = [], []
    for _ in range(max(1, runs)):
        for t in texts:
            t0 = time.perf_counter()
            stage.assess(t, {})
            seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stage.assess(long, {})
        long_s.append(time.perf_counter() - t0)
    print(json.dumps({"messages": len(texts), "runs": runs, "layers": stage.detector.layers, **latency_ms(seconds),
                      "long_message_ms": round(1000 * statistics.median(long_s), 2), "long_message_chars": len(long)},
                     indent=1))
    return 0
