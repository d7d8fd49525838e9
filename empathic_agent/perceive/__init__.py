"""Perceive: turn what the person sent (text now; audio and images later) into clean inputs."""

from empathic_agent.perceive.text import clean_text

__all__ = ["clean_text"]
