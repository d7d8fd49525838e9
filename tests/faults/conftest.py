"""The fault suite: defects found by probing the API and UI (races, hostile input, store and
backend failures, killed processes), each kept found by a test.  In-process tests use the real app
and stores with fakes for the models; ``test_processes.py`` drives real server processes."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture
def settings(settings):
    # As in the unit tests: the safety stage's pattern layer only, the rule-based judge.
    return dataclasses.replace(settings, safety_semantic=False, judge="rules")
