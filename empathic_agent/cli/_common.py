"""What every ``empathic`` command module shares: the settings flags, the one dispatch, JSON output
and the machine facts benchmarks report.

A command module adds its parsers with ``add_parser(subparsers, common)`` and names the function
that runs each one with :func:`handled_by` — a dotted ``"module:function"`` string, resolved only
when that command runs, so ``empathic --help`` imports no command's heavy dependencies.  Every
handler has the signature ``handler(settings, args) -> exit code``.  :func:`dispatch` is the only
place a handler is looked up: there is no if-chain whose order matters.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from empathic_agent.machine import cpu_count, load_average, machine_info
from empathic_agent.settings import LLM_BACKENDS, Settings

__all__ = ["SETTINGS_FLAGS", "settings_parent", "settings_from_args", "handled_by", "dispatch", "emit",
           "machine_info", "cpu_count", "load_average"]

#: Flags that map 1:1 to Settings fields: flag -> (field, type, help).
SETTINGS_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--backend": ("llm_backend", str, f"LLM backend: {', '.join(LLM_BACKENDS)}"),
    "--model": ("llm_model", str, "embedded LLM: registry name, local directory/GGUF file, or hub id"),
    "--base-url": ("openai_base_url", str, "OpenAI-compatible server URL (vLLM), e.g. http://127.0.0.1:8000/v1"),
    "--server-model": ("openai_model", str, "model name to request from the server (default: first listed)"),
    "--api-key": ("openai_api_key", str, "API key of the server"),
    "--max-new-tokens": ("max_new_tokens", int, "generation limit per reply"),
    "--temperature": ("temperature", float, "sampling temperature (0 = greedy)"),
    "--seed": ("seed", int, "sampling seed for reproducible replies"),
    "--timeout": ("llm_timeout_s", float, "seconds to wait for the LLM"),
    "--cache-dir": ("cache_dir", str, "where prepared models are cached"),
    "--memory-dir": ("memory_dir", str, "where user data (conversations) is stored"),
}

#: The attribute of the parsed arguments that names the handler.
_HANDLER = "handler"


def settings_parent() -> argparse.ArgumentParser:
    """The parent parser of every leaf command: the settings flags and ``-v``."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("settings (override EMPATHIC_* environment variables)")
    for flag, (field, tp, help_) in SETTINGS_FLAGS.items():
        g.add_argument(flag, dest=f"setting_{field}", type=tp, default=None, help=help_)
    g.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the flags given on the command line over ``EMPATHIC_*`` and the defaults."""
    overrides = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_")}
    return Settings.from_env(**overrides)


def handled_by(parser: argparse.ArgumentParser, target: str) -> argparse.ArgumentParser:
    """Make ``target`` (``"package.module:function"``) run ``parser``'s command (and, for a command
    group, every sub-command that does not name its own).  Returns the parser."""
    module, sep, func = target.partition(":")
    if not sep or not module or not func:
        raise ValueError(f"a handler is 'module:function', got {target!r}")
    parser.set_defaults(**{_HANDLER: target})
    return parser


def _resolve(target: str) -> Callable[[Settings, argparse.Namespace], int]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` were parsed for; its exit code."""
    target = getattr(args, _HANDLER, None)
    if not target:
        raise LookupError(f"no handler for command {getattr(args, 'command', None)!r}")
    return int(_resolve(target)(settings_from_args(args), args) or 0)


def emit(obj: Any, out: str | os.PathLike[str] | None = None) -> None:
    """Print ``obj`` as indented JSON (the output of every JSON command); also write it to ``out``."""
    text = json.dumps(obj, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")


