"""Fakes for tests — yours and ours. Each subclasses the real base class it stands in for."""

from empathic_agent.testing.fakes import (
    ContextRecordingEncoder,
    FakeEmbedder,
    FakeEncoder,
    FakeFacePerception,
    FakeLLM,
    FakeSpeechPerception,
    FakeStrategyClassifier,
    FakeSTT,
    FakeTTS,
)

__all__ = ["FakeLLM", "FakeEmbedder", "FakeEncoder", "FakeStrategyClassifier", "FakeTTS", "FakeSTT",
           "FakeSpeechPerception", "FakeFacePerception", "ContextRecordingEncoder"]
