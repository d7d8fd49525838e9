"""The encoder interface: one modality's input -> a `Reading` in the emotional latent space.

Every per-modality encoder (text, speech, face) subclasses :class:`Encoder` and
implements one hook, :meth:`Encoder._encode_batch_impl`.  The public methods around it own what
every encoder must do the same way (livekit-agents' ``stt/stt.py`` pattern):

* lazy, timed loading (``load()`` runs ``_load_impl`` once, on first use; :class:`~empathic_agent.lifecycle.Loadable`);
* timing of every call (``last_stats``), so benchmarks read one place;
* error translation: a vendor exception (torch, transformers, onnxruntime, ...) becomes an
  :class:`EncoderError` at this boundary, so the graph handles one family of errors;
* a contract check: one `Reading` per input, tagged with the encoder's modality.

Encoders are built through a registry, whisper-style::

    from empathic_agent.encode import available_encoders, load_encoder
    available_encoders()                 # ['text']
    enc = load_encoder("text", settings)  # weights load on first encode()
    enc.encode("I'm so happy today!")    # -> Reading(modality="text", ...)

Factories import their backend lazily, so importing this module never pulls in torch.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from empathic_agent.errors import EmpathicError
from empathic_agent.latent import Reading
from empathic_agent.lifecycle import Loadable
from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "Encoder",
    "EncoderError",
    "EncodeStats",
    "INPUT_TEXT",
    "INPUT_PATH",
    "available_encoders",
    "load_encoder",
    "register_encoder",
]

log = logging.getLogger(__name__)

#: Input kinds an encoder may declare (capabilities as data).  The generic evaluation reads the
#: CSV column of that name: ``text`` for text encoders, ``path`` (audio file, image) otherwise.
INPUT_TEXT = "text"
INPUT_PATH = "path"


class EncoderError(EmpathicError):
    """An encoder failed to load or to run (the message names the encoder and the cause)."""


@dataclass(frozen=True)
class EncodeStats:
    """Timing of the last finished ``encode``/``encode_batch`` call (seconds)."""

    encoder: str
    modality: str
    batch_size: int
    total_s: float

    @property
    def per_item_s(self) -> float:
        return self.total_s / max(1, self.batch_size)


class Encoder(Loadable, ABC):
    """Base class of every modality encoder: input -> :class:`~empathic_agent.latent.Reading`.

    Subclasses set ``name``, ``modality`` and ``input_kind`` and implement
    :meth:`_encode_batch_impl` (and optionally :meth:`_load_impl`).  Bad *content* (empty text,
    silence, a blank image) must not raise: the encoder returns a low-confidence reading instead.
    Only inputs of the wrong *type* raise (``TypeError``), and internal failures raise
    :class:`EncoderError`.
    """

    #: Registry/display name of the encoder, e.g. "minilm-emotion".
    name: str = "base"
    #: Modality tag written into every reading ("text", "speech", "face", ...).
    modality: str = "base"
    #: What one input is: INPUT_TEXT (a string) or INPUT_PATH (a file path).
    input_kind: str = INPUT_TEXT
    #: Python types accepted as one input (``None`` is always accepted and means "no input").
    input_types: tuple[type, ...] = (str,)

    kind = "encoder"
    error_class = EncoderError

    def __init__(self) -> None:
        super().__init__()  # the loading lifecycle: load(), loaded, load_s, _translate
        self.last_stats: EncodeStats | None = None

    # -- public API ------------------------------------------------------------------------------
    def encode(self, x: Any) -> Reading:
        """One input -> one reading (see :meth:`encode_batch`)."""
        return self.encode_batch([x])[0]

    def encode_batch(self, xs: Iterable[Any]) -> list[Reading]:
        """Inputs -> one reading each, in order.  Batching is faster; results equal ``encode``.

        Raises ``TypeError`` for inputs of the wrong type and :class:`EncoderError` when the
        encoder itself fails.
        """
        items = list(xs)
        if not items:
            return []
        for i, x in enumerate(items):
            if x is not None and not isinstance(x, self.input_types):
                names = ", ".join(t.__name__ for t in self.input_types)
                raise TypeError(f"{self.name} encoder: input {i} is {type(x).__name__}; "
                                f"expected {names} or None")
        self.load()
        t0 = time.perf_counter()
        readings = self._translate(lambda: self._encode_batch_impl(items), "encoding")
        total = time.perf_counter() - t0
        if not isinstance(readings, list) or len(readings) != len(items):
            raise EncoderError(f"encoder {self.name} returned {len(readings) if isinstance(readings, list) else type(readings).__name__} "
                               f"readings for {len(items)} inputs")
        for r in readings:
            if not isinstance(r, Reading):
                raise EncoderError(f"encoder {self.name} returned {type(r).__name__}, not a Reading")
        self.last_stats = EncodeStats(self.name, self.modality, len(items), total)
        return readings

    def info(self) -> dict[str, Any]:
        """Plain-JSON facts about the encoder (for eval reports and benchmarks)."""
        return {"name": self.name, "modality": self.modality, "input_kind": self.input_kind}

    # -- hooks (and _load_impl, _translate_error from Loadable) -----------------------------------
    @abstractmethod
    def _encode_batch_impl(self, xs: list[Any]) -> list[Reading]:
        """Encode a non-empty list of inputs: exactly one reading per input, in order."""


# ---------------------------------------------------------------------------------------------
# Registry: modality -> factory(settings) -> Encoder, by dotted path (imported on first use, so
# `import empathic_agent.encode` never pulls in torch and this module never imports its subclasses).
ENCODERS: "Registry[Encoder]" = Registry("encoders", noun="encoder for modality")
ENCODERS.register("text", "empathic_agent.encode.text:TextEncoder.from_settings")
ENCODERS.register("speech", "empathic_agent.encode.speech:SpeechEncoder.from_settings")
ENCODERS.register("face", "empathic_agent.encode.face:FaceEncoder.from_settings")


def register_encoder(modality: str, factory: "str | Callable[[Settings], Encoder]") -> None:
    """Register (or replace) the encoder of a modality: a factory ``(settings) -> Encoder`` or its
    ``"module:attr"`` path.  Packages can also add one through the ``empathic_agent.encoders``
    entry-point group."""
    ENCODERS.register(modality, factory)


def available_encoders() -> list[str]:
    """Modalities that have an encoder."""
    return ENCODERS.names()


def load_encoder(modality: str, settings: "Settings | None" = None) -> Encoder:
    """Build the encoder of ``modality`` (weights load on first use).

    Raises :class:`~empathic_agent.errors.ConfigError` naming the valid modalities when there is no such encoder.
    """
    factory = ENCODERS.factory(modality)
    if settings is None:
        from empathic_agent.settings import Settings

        settings = Settings.from_env()
    return factory(settings)
