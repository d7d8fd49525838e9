"""The project's small error hierarchy.

Vendor exceptions (openai, transformers, sqlite, ...) are translated into these at the boundary of
each backend, so callers — the graph, the CLI, the HTTP API — handle one family of errors and can
show a person a clear message without knowing which backend failed.
"""

from __future__ import annotations

__all__ = [
    "EmpathicError",
    "ConfigError",
    "InputError",
    "EmptyInputError",
    "InputTooLongError",
    "ModelError",
    "ModelNotFoundError",
    "ModelPreparationError",
    "BackendUnavailableError",
    "LLMError",
    "LLMConnectionError",
    "LLMTimeoutError",
    "LLMRequestError",
]


class EmpathicError(Exception):
    """Base of every error the framework raises on purpose."""


class ConfigError(EmpathicError, ValueError):
    """A setting has an invalid value (the message names the setting and the valid choices)."""


class InputError(EmpathicError, ValueError):
    """The person's input cannot be used as it is (empty, too long, wrong type)."""


class EmptyInputError(InputError):
    """The message is empty or holds only whitespace/control characters."""


class InputTooLongError(InputError):
    """The message is over the configured length limit."""


class ModelError(EmpathicError):
    """A model could not be found, prepared or loaded."""


class ModelNotFoundError(ModelError):
    """No weights for a model role: the message says how to provide them."""


class ModelPreparationError(ModelError):
    """Preparing a model into the cache failed (conversion, joining parts, checksum)."""


class BackendUnavailableError(EmpathicError, ImportError):
    """A backend's optional dependency is not installed (the message names the extra to install)."""


class LLMError(EmpathicError):
    """The language model failed to produce a reply."""

    #: Whether retrying the same request later may succeed.
    retryable: bool = False


class LLMConnectionError(LLMError):
    """The LLM server could not be reached (down, refused, DNS)."""

    retryable = True


class LLMTimeoutError(LLMError):
    """The LLM did not answer within the configured timeout."""

    retryable = True


class LLMRequestError(LLMError):
    """The LLM server rejected the request (bad model name, auth, invalid parameters)."""
