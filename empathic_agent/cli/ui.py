"""``empathic ui``: the web UI (the same as ``python app.py``)."""

from __future__ import annotations

import argparse
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from empathic_agent.ui.options import add_ui_arguments

    p = subparsers.add_parser("ui", parents=[common], help="start the web UI (the same as python app.py)")
    add_ui_arguments(p)
    handled_by(p, "empathic_agent.cli.ui:run")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.ui.web import launch

    launch(settings, host=args.host, port=args.port, auth=args.auth, warm_up=not args.no_warm_up)
    return 0
