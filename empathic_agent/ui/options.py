"""Command-line options of the web UI, shared by ``python app.py`` and ``empathic ui`` (no Gradio
import: building the CLI parser stays fast)."""

import argparse
import os

__all__ = ["add_ui_arguments"]


def add_ui_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("EMPATHIC_UI_HOST", "127.0.0.1"),
                   help="interface to bind (default 127.0.0.1: this machine only; env EMPATHIC_UI_HOST)")
    p.add_argument("--port", type=int, default=int(os.environ.get("EMPATHIC_UI_PORT", "7860")),
                   help="port (default 7860; env EMPATHIC_UI_PORT)")
    p.add_argument("--auth", default=None,
                   help="user:password[,user2:password2]: ask for a login, each login its own user "
                        "(env EMPATHIC_UI_AUTH); needed to serve other machines safely")
    p.add_argument("--no-warm-up", action="store_true", help="start serving before every model is loaded")
