"""One registry for every backend role: names validated, dotted paths resolved on first use,
third-party entry points, and base modules that never import their implementations."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.registry import Registry, resolve_target


def make_thing(settings=None):
    return ("thing", settings)


def test_a_dotted_path_is_resolved_only_when_built():
    reg: Registry[tuple] = Registry("things", noun="thing")
    reg.register("lazy", "empathic_agent_does_not_exist.module:factory")  # not imported yet: no error
    reg.register("real", f"{__name__}:make_thing")
    assert reg.create("real", 3) == ("thing", 3)
    with pytest.raises(ModuleNotFoundError):
        reg.create("lazy")


def test_names_are_validated_and_unknown_names_list_the_valid_ones():
    reg: Registry[object] = Registry("things", noun="thing")
    for bad in ("", "Upper", "has space", "../x", "x" * 65):
        with pytest.raises(ValueError):
            reg.register(bad, make_thing)
    with pytest.raises(ValueError):
        reg.register("ok", "not a path")
    with pytest.raises(TypeError):
        reg.register("ok", 42)  # type: ignore[arg-type]
    reg.register("b-one", make_thing)
    reg.register("a.two", make_thing)
    with pytest.raises(ConfigError, match=r"unknown thing 'nope'; available: a\.two, b-one"):
        reg.factory("nope")
    assert "b-one" in reg and "nope" not in reg


def test_entry_points_add_backends_but_never_replace_a_built_in(monkeypatch):
    eps = [EntryPoint("extra", f"{__name__}:make_thing", "empathic_agent.things"),
           EntryPoint("builtin", "elsewhere.module:evil", "empathic_agent.things"),
           EntryPoint("Bad Name", f"{__name__}:make_thing", "empathic_agent.things")]
    seen_groups = []

    def fake_entry_points(*, group):
        seen_groups.append(group)
        return [e for e in eps if e.group == group]

    monkeypatch.setattr("importlib.metadata.entry_points", fake_entry_points)
    reg: Registry[tuple] = Registry("things", noun="thing")
    reg.register("builtin", make_thing)
    assert reg.names() == ["builtin", "extra"]
    assert reg.create("extra", 1) == ("thing", 1)
    assert reg.factory("builtin") is make_thing
    assert seen_groups == ["empathic_agent.things"]


def test_a_copy_is_independent():
    reg: Registry[object] = Registry("things", noun="thing")
    reg.register("one", make_thing)
    other = reg.copy()
    other.register("two", make_thing)
    assert "two" not in reg and "one" in other


def test_resolve_target_follows_attributes():
    assert resolve_target("empathic_agent.registry:Registry.create") is Registry.create
    with pytest.raises(ValueError):
        resolve_target("no_colon")


def test_every_role_uses_the_one_registry_and_no_fake_is_registered_in_production():
    from empathic_agent.encode.base import ENCODERS
    from empathic_agent.evals.empathy import JUDGE_REGISTRY
    from empathic_agent.generate.llm import LLM_REGISTRY
    from empathic_agent.memory.embedder import EMBEDDERS
    from empathic_agent.perceive.stt import STT_REGISTRY
    from empathic_agent.speak.tts import TTS_REGISTRY

    for reg in (ENCODERS, JUDGE_REGISTRY, LLM_REGISTRY, EMBEDDERS, STT_REGISTRY, TTS_REGISTRY):
        assert isinstance(reg, Registry)
    assert EMBEDDERS.names() == ["e5-multilingual", "minilm"]
    assert {"text", "speech", "face"} <= set(ENCODERS.names())
    assert {"transformers", "openai", "vllm"} <= set(LLM_REGISTRY.names())
    assert {"piper", "espeak-ng"} <= set(TTS_REGISTRY.names())
    assert {"epitome", "rules"} <= set(JUDGE_REGISTRY.names())


def test_base_modules_do_not_import_their_implementations():
    code = ("import sys, empathic_agent.encode.base, empathic_agent.generate.llm, empathic_agent.speak.tts, "
            "empathic_agent.perceive.stt, empathic_agent.memory.embedder, empathic_agent.evals.empathy\n"
            "impl = ['empathic_agent.encode.text', 'empathic_agent.encode.speech', 'empathic_agent.encode.face', "
            "'empathic_agent.generate.transformers_llm', 'empathic_agent.generate.openai_llm', "
            "'empathic_agent.speak.piper_tts', 'empathic_agent.speak.espeak_tts', 'empathic_agent.testing.fakes']\n"
            "print(','.join(m for m in impl if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
