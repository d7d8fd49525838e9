"""``empathic``: the one command line of the project.

Every command takes the common settings flags (``--backend``, ``--model``, ``--base-url``, ...);
they override ``EMPATHIC_*`` environment variables, which override defaults — all resolved in
:meth:`Settings.from_env`, the one place settings are read.

Each command module adds its own parsers and names its handler (:func:`~empathic_agent.cli._common.handled_by`);
this module only lists the modules in the order ``empathic --help`` shows them and dispatches once.
To add a command: write ``cli/<name>.py`` with ``add_parser(subparsers, common)`` and a
``run(settings, args) -> int``, and add the module to :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Final, Sequence

from empathic_agent.cli._common import dispatch, settings_from_args, settings_parent
from empathic_agent.errors import EmpathicError

__all__ = ["main", "build_parser", "settings_from_args", "COMMAND_MODULES"]

#: (module, the function that adds its parsers), in the order of ``empathic --help``: talking to
#: the agent, perceiving and speaking, a person's data, the planner and safety, evaluation,
#: training, models and benchmarks.
COMMAND_MODULES: Final[tuple[tuple[str, str], ...]] = (
    ("empathic_agent.cli.chat", "add_parser"),
    ("empathic_agent.cli.ui", "add_parser"),
    ("empathic_agent.cli.api", "add_parsers"),              # serve, api-key
    ("empathic_agent.cli.speech", "add_transcribe_parser"),
    ("empathic_agent.cli.face", "add_look_parser"),
    ("empathic_agent.cli.speak", "add_parser"),
    ("empathic_agent.cli.memory", "add_parser"),
    ("empathic_agent.cli.speech", "add_baseline_parser"),   # voice-baseline
    ("empathic_agent.cli.plan", "add_parsers"),             # plan, persona
    ("empathic_agent.cli.safety", "add_parser"),
    ("empathic_agent.cli.evals", "add_parser"),
    ("empathic_agent.cli.judge", "add_parser"),
    ("empathic_agent.cli.encoders", "add_parser"),
    ("empathic_agent.cli.train", "add_parser"),
    ("empathic_agent.cli.models", "add_parsers"),           # models, llm-server
    ("empathic_agent.cli.bench", "add_parser"),
)


def build_parser() -> argparse.ArgumentParser:
    common = settings_parent()
    parser = argparse.ArgumentParser(prog="empathic", description="Empathic Agent command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module, add in COMMAND_MODULES:
        getattr(importlib.import_module(module), add)(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return dispatch(args)
    except EmpathicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
