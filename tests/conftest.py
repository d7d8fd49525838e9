"""Shared fixtures. Unit tests use fakes that subclass the real interfaces; tests marked
``integration`` use the real offline models and real server processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from empathic_agent.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the user's environment: data and checkpoints under tmp_path; the
    model cache is the real one (preparing models is slow and they are read-only once prepared).
    The strategy comes from the rules (deterministic, model-free) unless a test asks for the
    learned planner (``tests/unit/test_learned_planner.py``, the integration tests' defaults)."""
    return Settings.from_env({}, memory_dir=tmp_path / "memory", temperature=0.0, max_new_tokens=24,
                             planner="rules")
