"""The README's Python embedding example runs as written (real models, a temporary memory folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_api_example_runs(tmp_path):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Embedding the agent in an app"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = {**os.environ, "EMPATHIC_MEMORY_DIR": str(tmp_path / "memory"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "EMPATHIC_TEMPERATURE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) >= 5 and "'user_id': 'ann'" in out.stdout, out.stdout[-2000:]
    assert lines[1] != "-" and lines[2].endswith("False None")  # perceived; strategy, no crisis
