"""``empathic judge``: the offline EPITOME empathy judge and the ESConv strategy classifier.

    empathic judge score --context "My boss yelled at me..." --reply "That sounds humiliating..."
    empathic judge eval --csv pairs.csv [--split test]       # seeker_post,response_post,er_level,ip_level,ex_level
    empathic judge train --data ../shared/data/epitome        # a member epitome-s{SEED} + the judge epitome.json
    empathic judge combine --data ../shared/data/epitome --members epitome-s0 epitome-max-s1
    empathic judge train-strategy --data-dir ../shared/data   # writes evals/weights/strategy.*
    empathic judge strategy-eval --data-dir ../shared/data [--split test]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.errors import ConfigError
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run_score", "run_eval", "run_train", "run_combine", "run_train_strategy", "run_strategy_eval"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("judge", help="the offline empathy judge (EPITOME) and strategy classifier",
                              description="Score, evaluate and train the fine-tuned MiniLM readers of replies. "
                                          "Their weights are research-only (EPITOME, ESConv).")
    sub = p.add_subparsers(dest="judge_command", metavar="ACTION", required=True)
    q = sub.add_parser("score", parents=[common], help="judge one reply: ER/IP/EX distributions and its strategy")
    handled_by(q, "empathic_agent.cli.judge:run_score")
    q.add_argument("--context", required=True, help="what the person said")
    q.add_argument("--reply", required=True, help="the reply to judge")
    q.add_argument("--weights", help="folder of epitome.*/strategy.* (default: the packaged weights)")

    q = sub.add_parser("eval", parents=[common], help="the judge on an EPITOME-style CSV (JSON per mechanism)")
    handled_by(q, "empathic_agent.cli.judge:run_eval")
    q.add_argument("--csv", required=True, help="columns seeker_post,response_post,er_level,ip_level,ex_level "
                                                "(a folder: its epitome_reddit.csv)")
    q.add_argument("--split", choices=["train", "dev", "test"],
                   help="only the rows of this split by seeker post (needs sp_id); default: every row")
    q.add_argument("--weights", help="folder of epitome.* (default: the packaged weights)")

    q = sub.add_parser("train", parents=[common], help="fine-tune one member of the EPITOME judge (~20 min on 2 cores)",
                       description="Trains the member epitome-s{SEED} (or epitome-max-s{SEED}) on the train split, "
                                   "chooses its epoch on dev, then makes the judge (epitome.json) of --members "
                                   "(default: this member alone); temperatures are fitted on dev.")
    handled_by(q, "empathic_agent.cli.judge:run_train")
    q.add_argument("--data", required=True, help="the EPITOME folder or CSV (with sp_id and rationales)")
    q.add_argument("--out", help="weights folder (default: the package's evals/weights)")
    q.add_argument("--epochs", type=int, default=8)
    q.add_argument("--pooling", choices=["mean", "mean+max"], default="mean")
    q.add_argument("--reply-tokens", type=int, default=128, help="tokens of the reply read (default 128)")
    q.add_argument("--members", nargs="+", help="members of the judge after training (default: the new one)")
    q.add_argument("--extra-train", nargs="+", default=[], metavar="CSV",
                   help="hand-written pairs (same columns, no sp_id) added to train")
    q.add_argument("--extra-dev", nargs="+", default=[], metavar="CSV",
                   help="hand-written pairs added to dev (selection and temperatures)")
    q.add_argument("--no-rationales", action="store_true", help="without the rationale-tagging auxiliary task")
    q.add_argument("--backbone", default="all-minilm-l6-v2",
                   help="encoder: a registry name (all-minilm-l6-v2, all-mpnet-base-v2) or a local BERT/MPNet folder")
    q.add_argument("--top-layers", type=int, default=6,
                   help="layers from the top with LoRA adapters (default 6: all of MiniLM's; the rest run once)")
    q.add_argument("--no-test", action="store_true",
                   help="leave the test split unread (choose members on dev, then read test once with 'judge eval')")
    q.add_argument("--no-progress", action="store_true")

    q = sub.add_parser("combine", parents=[common], help="make the judge (epitome.json) of trained members",
                       description="Averages the members' logits, fits the temperatures on dev and reports dev and "
                                   "test figures (choose members by their dev figures only).")
    handled_by(q, "empathic_agent.cli.judge:run_combine")
    q.add_argument("--data", required=True, help="the EPITOME folder or CSV (for the dev and test splits)")
    q.add_argument("--members", nargs="+", required=True, help="member names, e.g. epitome-s0 epitome-max-s1")
    q.add_argument("--extra-dev", nargs="+", default=[], metavar="CSV",
                   help="hand-written pairs added to dev (selection and temperatures)")
    q.add_argument("--out", help="weights folder (default: the package's evals/weights)")
    q.add_argument("--no-test", action="store_true", help="leave the test split unread (dev figures only)")

    q = sub.add_parser("train-strategy", parents=[common], help="fine-tune the ESConv strategy classifier")
    handled_by(q, "empathic_agent.cli.judge:run_train_strategy")
    q.add_argument("--data-dir", help="the shared data folder holding esconv/ (default: the data_dir setting)")
    q.add_argument("--out", help="weights folder (default: the package's evals/weights)")
    q.add_argument("--epochs", type=int, default=3)
    q.add_argument("--no-progress", action="store_true")

    q = sub.add_parser("strategy-eval", parents=[common], help="the strategy classifier on an ESConv split")
    handled_by(q, "empathic_agent.cli.judge:run_strategy_eval")
    q.add_argument("--data-dir", help="the shared data folder holding esconv/ (default: the data_dir setting)")
    q.add_argument("--split", default="test", choices=["train", "valid", "test"])
    q.add_argument("--limit", type=int)
    q.add_argument("--weights", help="folder of strategy.* (default: the packaged weights)")


def run_score(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.evals.empathy import EpitomeJudge
    from empathic_agent.evals.strategy import StrategyClassifier

    if not args.reply.strip():
        raise ConfigError("--reply is empty")
    judge = EpitomeJudge(args.weights, settings=settings)
    if not judge.model.available():
        raise ConfigError(f"no EPITOME judge weights in {judge.model.folder}; train them with 'empathic judge train'")
    dims = judge.score_many([args.context], [args.reply])[0]
    out: dict[str, Any] = {"judge": "epitome", **{d: s.to_dict() for d, s in dims.items()},
                           "overall": round(sum(s.score for s in dims.values()) / 6, 4)}
    classifier = StrategyClassifier(args.weights, settings=settings)
    if classifier.available():
        read = classifier.classify(args.context, args.reply)
        out["strategy"] = {"strategy": read["strategy"], "probability": read["probability"],
                           "family": read["family"]}
    print(json.dumps(out, indent=1))
    return 0


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.judge import evaluate_epitome

    print(json.dumps(evaluate_epitome(args.csv, split=args.split, folder=args.weights, settings=settings), indent=1))
    return 0


def run_train(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.judge import combine_epitome, train_epitome

    result = train_epitome(args.data, out=args.out, cache_dir=settings.cache_dir, epochs=args.epochs,
                           seed=settings.seed if settings.seed is not None else 0, rationales=not args.no_rationales, pooling=args.pooling,
                           reply_tokens=args.reply_tokens, extra_train=args.extra_train, extra_dev=args.extra_dev,
                           backbone=args.backbone, top_layers=args.top_layers, with_test=not args.no_test,
                           progress=not args.no_progress)
    member = result["config"]["name"]
    judge = combine_epitome(args.data, args.members or [member], folder=args.out, extra_dev=args.extra_dev,
                            with_test=not args.no_test, settings=settings)
    print(json.dumps({"member": member, "training": result["config"]["training"],
                      "member_figures": result["config"]["figures"], "judge": judge["config"]["members"],
                      "judge_figures": judge["config"]["figures"]}, indent=1))
    return 0


def run_combine(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.judge import combine_epitome

    judge = combine_epitome(args.data, args.members, folder=args.out, extra_dev=args.extra_dev,
                            with_test=not args.no_test, settings=settings)
    print(json.dumps({"members": judge["config"]["members"], "members_dev_macro_f1": judge["members_dev"],
                      "temperatures": {h["name"]: h["temperature"] for h in judge["config"]["heads"]},
                      "figures": judge["config"]["figures"]}, indent=1))
    return 0


def run_train_strategy(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.judge import train_strategy

    data_dir = getattr(args, "data_dir", None) or settings.data_dir
    result = train_strategy(data_dir, out=args.out, cache_dir=settings.cache_dir, epochs=args.epochs,
                            seed=settings.seed if settings.seed is not None else 0, progress=not args.no_progress)
    print(json.dumps({"training": result["config"]["training"], "figures": result["config"]["figures"]}, indent=1))
    return 0


def run_strategy_eval(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.judge import evaluate_strategy

    data_dir = getattr(args, "data_dir", None) or settings.data_dir
    print(json.dumps(evaluate_strategy(data_dir, split=args.split, folder=args.weights, limit=args.limit,
                                       settings=settings), indent=1))
    return 0

