"""Encoders: each modality's input -> a `Reading` in the emotional latent space (docs/architecture.md).

* `base` — the :class:`Encoder` base class (public ``encode``/``encode_batch`` owning timing and
  error translation, one ``_encode_batch_impl`` hook) and the registry
  (:func:`available_encoders`, :func:`load_encoder`, :func:`register_encoder`);
* `text` — :class:`TextEncoder`: all-MiniLM-L6-v2 with trained LoRA adapters and heads (EmoBank
  VAD with calibrated variance, GoEmotions-Ekman categories with calibrated probabilities);
* `speech`, `face` — the speech and face encoders; `text_model`, `face_model` — torch building blocks.

Training, data set readers and the generic offline evaluation of encoders live in
:mod:`empathic_agent.training` (``training.text``, ``training.evaluate``, ``training.datasets`` …).

Importing this package is cheap: torch and transformers load when a model is first used.
"""

from __future__ import annotations

from empathic_agent.encode.base import (
    INPUT_PATH,
    INPUT_TEXT,
    Encoder,
    EncoderError,
    EncodeStats,
    available_encoders,
    load_encoder,
    register_encoder,
)

__all__ = [
    "Encoder",
    "EncoderError",
    "EncodeStats",
    "INPUT_TEXT",
    "INPUT_PATH",
    "available_encoders",
    "load_encoder",
    "register_encoder",
    "TextEncoder",
    "TextAnalysis",
    "TextContext",
]


def __getattr__(name: str) -> object:
    # The implementations load on first use, like the registry's entries: importing the package
    # (or its base module) never imports an encoder.
    if name in ("TextEncoder", "TextAnalysis", "TextContext"):
        from empathic_agent.encode import text

        return getattr(text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
