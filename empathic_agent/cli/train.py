"""``empathic train``: fine-tune the embedded responder.

    empathic train responder --data-dir ../shared/data --out runs/responder-smol --limit 2400
    empathic train responder --data-dir ../shared/data --base qwen2.5-coder-0.5b-instruct --out runs/q05

The same command resumes an interrupted run (``--max-minutes`` stops it cleanly at a checkpoint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.errors import ConfigError
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run_responder"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("train", help="fine-tune the embedded responder (LoRA)")
    sub = p.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    q = sub.add_parser(
        "responder", parents=[common], help="LoRA fine-tune of an LLM on ESConv train in the agent's prompt format",
        description="Fine-tunes BASE with LoRA (peft) to say what the planned strategy asks: the input is the prompt "
                    "the agent builds at run time, with ESConv's gold strategy as the plan; the target is the "
                    "supporter's reply. ESConv is for academic research only: so is the adapter.")
    handled_by(q, "empathic_agent.cli.train:run_responder")
    q.add_argument("--data-dir", required=True, type=Path, help="the shared data folder (holds esconv/)")
    q.add_argument("--out", required=True, type=Path, help="run folder: examples, checkpoint, adapter/, training.json")
    q.add_argument("--base", default="smollm2-135m-instruct",
                   help="base LLM: registry name, local directory or hub id (default: smollm2-135m-instruct)")
    q.add_argument("--limit", type=int, help="train on this many ESConv train turns (seeded draw; default all)")
    q.add_argument("--dev-limit", type=int, default=100, help="ESConv valid turns for the dev loss (default 100)")
    q.add_argument("--epochs", type=float, default=1.0)
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--lr", type=float, default=2e-4)
    q.add_argument("--rank", type=int, default=16)
    q.add_argument("--alpha", type=float, default=32.0)
    q.add_argument("--max-tokens", type=int, default=768, help="longest example (prompt + reply) in tokens")
    q.add_argument("--checkpoint-every", type=int, default=25, help="steps between checkpoints")
    q.add_argument("--max-minutes", type=float, help="stop cleanly at a checkpoint after this long (resume later)")
    q.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    q.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    q.add_argument("--no-progress", action="store_true")


def run_responder(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.responder import ResponderOptions, train_responder

    for name in ("limit", "dev_limit", "batch_size", "rank", "max_tokens", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.epochs <= 0 or args.lr <= 0:
        raise ConfigError("--epochs and --lr must be > 0")
    opts = ResponderOptions(
        out=args.out, data_dir=args.data_dir, base=args.base, limit=args.limit, dev_limit=args.dev_limit,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, rank=args.rank, alpha=args.alpha,
        max_tokens=args.max_tokens, seed=settings.seed or 0, checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes, fresh=args.fresh, progress=not args.no_progress, threads=args.threads)
    report = train_responder(opts, settings)
    print(json.dumps(report, indent=1))
    return 0
