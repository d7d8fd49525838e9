"""``empathic models list|prepare`` and ``empathic llm-server``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.errors import EmpathicError
from empathic_agent.models import ROLES, model_source, model_statuses, resolve_model
from empathic_agent.models.base import PreparedModel
from empathic_agent.settings import Settings

__all__ = ["add_parsers", "run_models", "run_llm_server"]


def add_parsers(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """``empathic models list|prepare`` and ``empathic llm-server``."""
    p = handled_by(subparsers.add_parser("models", help="list or prepare the models of every role"),
                   "empathic_agent.cli.models:run_models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", parents=[common], help="every model role with its source, path and status")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = msub.add_parser("prepare", parents=[common], help="prepare models into the cache (idempotent)")
    q.add_argument("roles", nargs="*", help="roles to prepare (default: all)")
    q.add_argument("--verify", action="store_true", help="also verify checksums of prepared files")
    q.add_argument("--llm", dest="prepare_llm", metavar="NAME", default=None,
                   help="prepare this LLM (a registry name: see `empathic models list`) instead of the "
                        "configured one; alone, prepares only the LLM")
    p = subparsers.add_parser("llm-server", parents=[common],
                              help="serve the embedded model over an OpenAI-compatible API (for testing the vLLM path)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    handled_by(p, "empathic_agent.cli.models:run_llm_server")


def run_models(settings: Settings, args: argparse.Namespace) -> int:
    if args.models_command == "list":
        rows = model_statuses(settings)
        if args.json:
            print(json.dumps([r.__dict__ for r in rows], indent=1))
        else:
            w = {k: max(len(k), *(len(str(getattr(r, k))) for r in rows)) for k in ("role", "name", "status", "source")}
            print("  ".join(k.upper().ljust(w[k]) for k in w) + "  PATH")
            for r in rows:
                print("  ".join(str(getattr(r, k)).ljust(w[k]) for k in w) + f"  {r.location}")
                if r.detail:
                    print(" " * (w["role"] + 2) + f"-> {r.detail}")
            print(f"\ncache: {settings.cache_dir}")
        return 0 if all(r.status != "missing" for r in rows) else 1

    chosen_llm = getattr(args, "prepare_llm", None)
    roles = args.roles or (["llm"] if chosen_llm else list(ROLES))
    failed = 0
    for role in roles:
        if role not in ROLES:
            print(f"error: unknown role {role!r}; roles: {', '.join(ROLES)}", file=sys.stderr)
            return 2
        spec = chosen_llm if role == "llm" and chosen_llm else getattr(settings, ROLES[role])
        t0 = time.perf_counter()
        try:
            src = model_source(role, spec)
            if isinstance(src, PreparedModel):
                resolved = src.resolve(settings.cache_dir, deep=args.verify)
            else:
                resolved = resolve_model(role, spec, settings.cache_dir)
            print(f"{role:<11} {spec:<24} ready    {resolved.location}  ({time.perf_counter() - t0:.1f}s)")
        except EmpathicError as exc:
            failed += 1
            print(f"{role:<11} {spec:<24} FAILED   {exc}", file=sys.stderr)
    return 1 if failed else 0


def run_llm_server(settings: Settings, args: argparse.Namespace) -> int:
    host, port = args.host, args.port
    from empathic_agent.generate.local_server import LocalOpenAIServer

    resolved = resolve_model("llm", settings.llm_model, settings.cache_dir)
    server = LocalOpenAIServer(resolved.location, host=host, port=port, log=sys.stderr)
    with server:
        print(f"serving {resolved.location}\n  base URL: {server.base_url}\n  model:    {server.model_id}\n"
              f"use: empathic chat --backend openai --base-url {server.base_url}\n(Ctrl-C to stop)", flush=True)
        try:
            assert server.proc is not None
            server.proc.wait()
        except KeyboardInterrupt:
            pass
    return 0
