"""Unit-test settings: the safety stage runs its pattern layer only (the semantic layer loads the
real MiniLM; it is tested in tests/integration/test_safety.py), and evaluations score with the
rule-based judge (the EPITOME judge is a real model: tests/integration/test_judge.py)."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, safety_semantic=False, judge="rules")
