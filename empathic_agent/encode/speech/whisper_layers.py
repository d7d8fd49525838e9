"""Whisper-base encoder embeddings from intermediate layers: a truncated copy of the transcriber's
CTranslate2 model per chosen layer, run over the frames that hold audio; see the package docstring.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Any, BinaryIO, Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import BackendUnavailableError, ModelError

log = logging.getLogger(__name__)

#: The Whisper model whose encoder layers the heads were trained on (registry name, role "stt").
#: Always this one, whatever ``settings.stt_model`` says: other models' layers mean other things.
WHISPER_MODEL: Final[str] = "whisper-base"
#: Dimension of one Whisper-base encoder frame.
WHISPER_DIM: Final[int] = 512


# ---------------------------------------------------------------------------------------------
# Whisper encoder layers

#: CTranslate2 model.bin versions whose layout this module reads/writes (header, variables with
#: uint16-length NUL-terminated names, aliases).  Written by ctranslate2's model_spec._serialize.
_CT2_BINARY_VERSIONS: Final[tuple[int, ...]] = (5, 6)
#: Size of one element per CTranslate2 dtype id (float32, int8, int16, int32, float16, bfloat16).
_CT2_DTYPE_SIZE: Final[dict[int, int]] = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}
#: Vocabulary rows kept in the stub decoder of a truncated model (the decoder never runs).
_STUB_VOCAB: Final[int] = 8
#: Recipe version of truncated models (bump to rebuild cached ones).
_TRUNCATE_RECIPE: Final[int] = 1


def _read_string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<H", fh.read(2))
    return fh.read(n)[:-1].decode("utf-8")


def _write_string(fh: BinaryIO, s: str) -> None:
    data = s.encode("utf-8")
    fh.write(struct.pack("<H", len(data) + 1))
    fh.write(data + b"\0")


def _layer_index(name: str, stack: str) -> int | None:
    """``encoder/layer_3/...`` -> 3 for stack "encoder"; None for other variables."""
    parts = name.split("/")
    if len(parts) > 2 and parts[0] == stack and parts[1].startswith("layer_") and parts[1][6:].isdigit():
        return int(parts[1][6:])
    return None


def prepare_truncated_whisper(source_dir: Path | str, target_dir: Path | str, encoder_layers: int) -> Path:
    """Write a CTranslate2 Whisper model whose encoder stops after ``encoder_layers`` layers.

    Everything the encoder needs (convolutions, positions, the first layers, the final layer
    norm) is copied unchanged from ``source_dir/model.bin``; the decoder is reduced to one layer
    and an 8-row vocabulary (CTranslate2 needs a decoder to load the model; it never runs), so the
    file is ~25 MB instead of ~145 MB.  Built into a temporary directory and renamed into place
    (atomic), under an inter-process lock; a manifest records the source and recipe, and an
    up-to-date target is reused.  Raises :class:`ModelError` on an unreadable source.
    """
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    src = source_dir / "model.bin"
    if not src.is_file():
        raise ModelError(f"no Whisper model.bin in {source_dir}")
    manifest = {"source": str(src.resolve()), "source_size": src.stat().st_size,
                "encoder_layers": int(encoder_layers), "recipe": _TRUNCATE_RECIPE}
    manifest_path = target_dir / "empathic-truncated.json"

    def up_to_date() -> bool:
        try:
            return (json.loads(manifest_path.read_text()) == manifest
                    and (target_dir / "model.bin").is_file())
        except (OSError, ValueError):
            return False

    if up_to_date():
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(target_dir.parent / f".{target_dir.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if up_to_date():
                return target_dir
            tmp = target_dir.parent / f".{target_dir.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                _write_truncated(src, tmp / "model.bin", int(encoder_layers))
                for name in os.listdir(source_dir):
                    if name.endswith((".json", ".txt")) and not name.startswith("empathic-"):
                        shutil.copy2(source_dir / name, tmp / name)
                (tmp / manifest_path.name).write_text(json.dumps(manifest, indent=1))
                shutil.rmtree(target_dir, ignore_errors=True)
                os.replace(tmp, target_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target_dir


def _write_truncated(src: Path, dst: Path, keep: int) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        (version,) = struct.unpack("<I", fin.read(4))
        if version not in _CT2_BINARY_VERSIONS:
            raise ModelError(f"{src}: CTranslate2 binary version {version} is not supported "
                             f"(expected one of {_CT2_BINARY_VERSIONS})")
        spec = _read_string(fin)
        if spec != "WhisperSpec":
            raise ModelError(f"{src} is a {spec}, not a Whisper model")
        (revision,) = struct.unpack("<I", fin.read(4))
        (count,) = struct.unpack("<I", fin.read(4))
        kept: list[tuple[str, tuple[int, ...], int, bytes]] = []
        n_encoder = 0
        for _ in range(count):
            name = _read_string(fin)
            (rank,) = struct.unpack("<B", fin.read(1))
            shape = struct.unpack("<" + "I" * rank, fin.read(4 * rank)) if rank else ()
            (dtype,) = struct.unpack("<B", fin.read(1))
            (nbytes,) = struct.unpack("<I", fin.read(4))
            data = fin.read(nbytes)
            enc, dec = _layer_index(name, "encoder"), _layer_index(name, "decoder")
            if enc is not None:
                n_encoder = max(n_encoder, enc + 1)
                if enc >= keep:
                    continue
            if dec is not None and dec >= 1:
                continue
            if name in ("decoder/embeddings/weight", "decoder/projection/bias") and shape:
                rows = min(_STUB_VOCAB, shape[0])
                shape = (rows,) + tuple(shape[1:])
                data = data[: rows * int(np.prod(shape[1:], dtype=np.int64)) * _CT2_DTYPE_SIZE[dtype]]
            kept.append((name, tuple(shape), dtype, data))
        (n_alias,) = struct.unpack("<I", fin.read(4))
        aliases = [(_read_string(fin), _read_string(fin)) for _ in range(n_alias)]
        if not 1 <= keep <= n_encoder:
            raise ModelError(f"{src}: cannot keep {keep} encoder layers of {n_encoder}")
        fout.write(struct.pack("<I", version))
        _write_string(fout, spec)
        fout.write(struct.pack("<I", revision))
        fout.write(struct.pack("<I", len(kept)))
        for name, shape, dtype, data in kept:
            _write_string(fout, name)
            fout.write(struct.pack("<B", len(shape)))
            if shape:
                fout.write(struct.pack("<" + "I" * len(shape), *shape))
            fout.write(struct.pack("<B", dtype))
            fout.write(struct.pack("<I", len(data)))
            fout.write(data)
        fout.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases:
            _write_string(fout, alias)
            _write_string(fout, target)


class WhisperLayers:
    """Whisper-base encoder outputs after layers ``layers`` (each followed by the final layer
    norm), over only the frames that hold audio.  One truncated CTranslate2 model per layer,
    prepared once into ``cache_dir / "speech-emotion"``.  Thread-safe (a lock per instance).
    """

    def __init__(self, source_dir: Path | str, cache_dir: Path | str, layers: Sequence[int]) -> None:
        self.source_dir = Path(source_dir)
        self.cache_dir = Path(cache_dir)
        self.layers = tuple(int(k) for k in layers)
        if not self.layers:
            raise ValueError("at least one Whisper layer is needed")
        self._models: dict[int, Any] = {}
        self._mel: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_registry(cls, cache_dir: Path | str, layers: Sequence[int]) -> "WhisperLayers":
        """The packaged Whisper-base (``resolve_model("stt", WHISPER_MODEL, cache_dir)``)."""
        from empathic_agent.models import resolve_model

        resolved = resolve_model("stt", WHISPER_MODEL, Path(cache_dir))
        return cls(resolved.path, cache_dir, layers)

    def load(self) -> None:
        """Prepare (once) and load the truncated models. Idempotent."""
        if self._models:
            return
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise BackendUnavailableError(
                "the speech encoder needs faster-whisper: pip install 'empathic-agent[speech]'") from exc
        with self._lock:
            if self._models:
                return
            models = {}
            for k in self.layers:
                target = self.cache_dir / "speech-emotion" / f"{WHISPER_MODEL}-encoder-l{k}"
                path = prepare_truncated_whisper(self.source_dir, target, k)
                models[k] = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="int8")
            self._mel = FeatureExtractor()
            self._models = models

    def log_mel(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """Whisper's log-mel spectrogram (80, n_frames + 1) of 16 kHz samples."""
        self.load()
        return np.asarray(self._mel(np.asarray(samples, dtype=np.float32)), dtype=np.float32)

    def __call__(self, mel: NDArray[np.float32]) -> dict[int, NDArray[np.float32]]:
        """Hidden states per layer: {k: (ceil(n/2), 512)} for a (80, n + 1) log-mel spectrogram."""
        import ctranslate2

        from empathic_agent.perceive.stt import MIN_ENCODER_FRAMES, WHISPER_WINDOW_FRAMES

        self.load()
        n = int(min(WHISPER_WINDOW_FRAMES, max(MIN_ENCODER_FRAMES, mel.shape[-1] - 1)))
        x = mel[:, :n]
        if x.shape[-1] < n:
            x = np.pad(x, ((0, 0), (0, n - x.shape[-1])), constant_values=float(mel.min()))
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(x[None], dtype=np.float32))
        with self._lock:
            return {k: np.asarray(m.encode(features, to_cpu=True), dtype=np.float32)[0]
                    for k, m in self._models.items()}
