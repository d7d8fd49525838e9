"""Fakes for tests — yours and ours. Each subclasses the real base class it stands in for."""

from empathic_agent.testing.fakes import FakeEmbedder, FakeEncoder, FakeLLM, FakeStrategyClassifier

__all__ = ["FakeLLM", "FakeEmbedder", "FakeEncoder", "FakeStrategyClassifier"]
