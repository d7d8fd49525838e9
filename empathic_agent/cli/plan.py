"""``empathic plan eval|show`` and ``empathic persona list|show``: the register planner and personas.

* ``empathic plan eval [--split test] [--limit N] [--planner learned|rules]`` — the planner's
  strategies vs. human supporters in ESConv (see :mod:`empathic_agent.plan.esconv`), printed as JSON;
* ``empathic plan train [--data-dir DIR]`` — train the learned strategy predictor on ESConv
  (:mod:`empathic_agent.training.planner`);
* ``empathic plan train-reader [--data-dir DIR] [--attach-only]`` — fine-tune the next-strategy
  reader and choose on valid how much it weighs beside the predictor;
* ``empathic plan show "text" [--valence V --arousal A --dominance D --turn N]`` — the register the
  planner picks for one message (reads the message with the text encoder unless VAD is given);
* ``empathic persona list`` / ``persona show NAME`` — the packaged personas and their mood baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import emit, handled_by
from empathic_agent.errors import ConfigError
from empathic_agent.settings import Settings

__all__ = ["add_parsers", "run_plan", "run_persona"]


def add_parsers(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("plan", help="the register planner: ESConv plausibility, one-message plans (JSON)")
    handled_by(p, "empathic_agent.cli.plan:run_plan")
    sub = p.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    q = sub.add_parser("eval", parents=[common], help="planner strategies vs. human supporters in ESConv",
                       description="For every supporter turn of an ESConv split, plan a register from the "
                                   "conversation so far (seeker messages read by the text encoder) and compare "
                                   "its strategy with the supporter's; prints agreement and baselines as JSON.")
    q.add_argument("--data-dir", help="shared data directory (default: the data_dir setting)")
    q.add_argument("--split", default="test", choices=["train", "valid", "test"])
    q.add_argument("--limit", type=int, help="first N conversations only")
    q.add_argument("--no-encoder", action="store_true", help="plan without reading emotions (ablation)")
    q.add_argument("--planner", choices=["learned", "rules"],
                   help="the learned predictor inside the hard constraints, or the rules (default: the planner setting)")
    q.add_argument("--out", help="also write the JSON to this file")
    q = sub.add_parser("train", parents=[common], help="train the learned strategy predictor on ESConv",
                       description="Fit the strategy predictor on ESConv train, select it on valid (test is not "
                                   "read: see `plan eval --split test`), write its weights; prints a JSON report.")
    q.add_argument("--data-dir", help="shared data directory (default: the data_dir setting)")
    q.add_argument("--weights", help="where to write the weights (default: the packaged ones)")
    q.add_argument("--out", help="also write the JSON report to this file")
    q = sub.add_parser("train-reader", parents=[common], help="fine-tune the next-strategy reader and attach it",
                       description="Fine-tune MiniLM (LoRA) on ESConv train to read the agent's previous reply, the "
                                   "strategies so far and the person's words -> the supporter's next strategy (epoch "
                                   "on valid), then choose on valid how much it weighs beside the predictor and the "
                                   "family offsets again; test is not read. Prints a JSON report.")
    q.add_argument("--data-dir", help="shared data directory (default: the data_dir setting)")
    q.add_argument("--weights", help="the predictor's weights file to attach it to (default: the packaged ones); "
                                     "the reader is written beside it")
    q.add_argument("--epochs", type=int, default=3)
    q.add_argument("--attach-only", action="store_true",
                   help="keep the reader beside the weights and only choose its weight and the offsets again "
                        "(after `plan train`)")
    q.add_argument("--out", help="also write the JSON report to this file")
    q = sub.add_parser("show", parents=[common], help="the register planned for one message")
    q.add_argument("text")
    q.add_argument("--turn", type=int, default=1, help="turn number in the conversation (default 1)")
    for dim in ("valence", "arousal", "dominance"):
        q.add_argument(f"--{dim}", type=float, help=f"the person's {dim} in [-1, 1] (default: read from the text)")
    q.add_argument("--mixed", action="store_true", help="pretend the modalities disagree (mixed signals)")

    p = subparsers.add_parser("persona", help="personas: list, show")
    handled_by(p, "empathic_agent.cli.plan:run_persona")
    sub = p.add_subparsers(dest="persona_command", metavar="ACTION", required=True)
    sub.add_parser("list", parents=[common], help="packaged personas")
    q = sub.add_parser("show", parents=[common], help="a persona (name or .toml path) with its mood baseline")
    q.add_argument("name", nargs="?", help="default: the persona setting")


def run_plan(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.plan import PlanInput, load_persona, plan_register, update_mood

    persona = load_persona(settings.persona)
    if args.plan_command == "train":
        from empathic_agent.plan.learned import WEIGHTS_PATH
        from empathic_agent.training.planner import train_planner

        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        emit(train_planner(data_dir, settings, out=Path(args.weights) if args.weights else WEIGHTS_PATH,
                           seed=settings.seed or 0, progress=sys.stderr.isatty()), args.out)
        return 0
    if args.plan_command == "train-reader":
        from empathic_agent.plan.learned import WEIGHTS_PATH
        from empathic_agent.training.planner import attach_reader, train_reader

        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        weights = Path(args.weights) if args.weights else WEIGHTS_PATH
        if not weights.is_file():
            raise ConfigError(f"no strategy predictor weights at {weights}: train them first with `empathic plan train`")
        report: dict[str, Any] = {}
        if not args.attach_only:
            trained = train_reader(data_dir, out=weights.parent, cache_dir=settings.cache_dir, epochs=args.epochs,
                                   seed=settings.seed or 0, progress=sys.stderr.isatty())
            report["reader_valid"] = trained["report"]["dev"]
        report.update(attach_reader(data_dir, settings, weights=weights, progress=sys.stderr.isatty()))
        emit(report, args.out)
        return 0
    if args.plan_command == "eval":
        from empathic_agent.plan.esconv import evaluate_esconv

        encoder = None
        if not args.no_encoder:
            from empathic_agent.encode import load_encoder

            encoder = load_encoder("text", settings)
        predictor = None
        if (args.planner or settings.planner) == "learned":
            from empathic_agent.plan.learned import StrategyPredictor

            predictor = StrategyPredictor.from_settings(settings)
        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        emit(evaluate_esconv(data_dir, split=args.split, encoder=encoder, persona=persona, limit=args.limit,
                              progress=sys.stderr.isatty(), predictor=predictor), args.out)
        return 0
    state, confidence, top = None, 0.0, "neutral"
    if args.valence is not None or args.arousal is not None or args.dominance is not None:
        state = (args.valence or 0.0, args.arousal or 0.0, args.dominance or 0.0)
        confidence = 0.8
    else:
        from empathic_agent.encode import load_encoder

        r = load_encoder("text", settings).encode(args.text)
        state, confidence, top = r.mean, r.confidence, r.top_category
    mood = update_mood(None, persona, perceived=state, confidence=confidence)
    reg = plan_register(PlanInput(state=state, confidence=confidence, top_category=top, mixed_signals=args.mixed,
                                  turn_index=args.turn, text=args.text, mood=mood), persona)
    emit({"persona": persona.name, "perceived": {"vad": [round(v, 3) for v in state], "confidence": round(confidence, 3),
                                                  "top_category": top},
           "agent_mood": [round(v, 3) for v in mood], "register": reg.to_dict(), "prompt": reg.prompt_lines()})
    return 0


def run_persona(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.plan import available_personas, load_persona

    if args.persona_command == "list":
        print("\n".join(available_personas()))
        return 0
    emit(load_persona(args.name or settings.persona).to_dict())
    return 0
