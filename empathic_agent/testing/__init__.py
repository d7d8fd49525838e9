"""Fakes for tests — yours and ours. Each subclasses the real base class it stands in for."""

from empathic_agent.testing.fakes import FakeEmbedder, FakeEncoder, FakeLLM

__all__ = ["FakeLLM", "FakeEmbedder", "FakeEncoder"]
