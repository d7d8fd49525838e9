"""``empathic serve`` (the HTTP API) and ``empathic api-key create|list|revoke``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.settings import Settings

__all__ = ["add_parsers", "run_serve", "run_api_key"]


def add_parsers(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("serve", parents=[common], help="serve the HTTP API (FastAPI + uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-warm-up", action="store_true", help="accept requests before every model is loaded")
    handled_by(p, "empathic_agent.cli.api:run_serve")
    p = subparsers.add_parser("api-key", help="API keys of the HTTP API (one app per key)")
    handled_by(p, "empathic_agent.cli.api:run_api_key")
    sub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser("create", parents=[common], help="create a key for an app (printed once)")
    q.add_argument("--app", required=True, help="app id: 1-32 lower-case letters, digits or '-'")
    sub.add_parser("list", parents=[common], help="keys (prefixes only) and their apps")
    q = sub.add_parser("revoke", parents=[common], help="revoke every key of an app")
    q.add_argument("--app", required=True)


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from empathic_agent.api.server import create_api
    from empathic_agent.private import private_umask

    private_umask()  # the server writes people's data: its new files are private
    app = create_api(settings, warm_up=not args.no_warm_up)
    print("Empathic Agent API: loading models…", file=sys.stderr)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # the port accepts connections only now: say where, not before
                print(f"Empathic Agent API: ready on http://{args.host}:{args.port}  "
                      "(keys: empathic api-key create --app NAME)", file=sys.stderr, flush=True)

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    server.run()
    if not server.started:
        # A failed startup (unreachable backend, unusable store...) must end the process with an
        # error, so that a supervisor sees it and restarts or alerts (uvicorn has logged why).
        print("empathic serve: startup failed; exiting", file=sys.stderr)
        return 3
    return 0


def run_api_key(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.api.keys import KeyStore

    store = KeyStore(settings.api_keys_path)
    try:
        if args.key_command == "create":
            key = store.create_key(args.app)
            print(key)
            print("store it now: only its hash is kept", file=sys.stderr)
        elif args.key_command == "list":
            print(json.dumps([k.__dict__ for k in store.keys()], indent=1))
        else:
            print(json.dumps({"app": args.app, "revoked": store.revoke(args.app)}))
    finally:
        store.close()
    return 0
