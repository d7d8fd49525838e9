"""Empathic Agent web UI — the entry point of ``bash scripts/run.sh``.

    python app.py [--host 127.0.0.1] [--port 7860] [--auth user:password]

Builds the agent from ``EMPATHIC_*`` settings (embedded defaults: everything runs on this machine)
and serves the Gradio page; see ``empathic_agent/ui/web.py``.
"""

import sys

from empathic_agent.ui.web import main

if __name__ == "__main__":
    sys.exit(main())
