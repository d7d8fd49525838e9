"""The runtime stays apart from training: serving a turn (agent, graph, safety stage, API, web UI)
imports no training pipeline.  (The command line does: its training commands take their flags
from the pipelines.)"""

from __future__ import annotations

import subprocess
import sys


def test_the_runtime_imports_no_training_module():
    code = ("import sys, empathic_agent.agent, empathic_agent.graph.builder, empathic_agent.api.server, "
            "empathic_agent.ui.web, empathic_agent.safety, empathic_agent.evals.empathy\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('empathic_agent.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
