"""The responder's pieces that need no model: LLM registry entries and their preparation steps
(on small files made here), the profiles, the planner's given strategy, the trainer's batching
and options. The real training run and the merged model are in tests/integration/test_responder.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from empathic_agent.cli.main import main
from empathic_agent.errors import ConfigError, ModelPreparationError
from empathic_agent.models import available_models, model_source
from empathic_agent.models import prepare as prep
from empathic_agent.models.base import PreparedModel
from empathic_agent.plan import PlanInput, load_persona, plan_register
from empathic_agent.settings import LLM_PROFILES, Settings
from empathic_agent.training.responder import _batches


def test_registry_offers_the_packaged_llms_and_each_profile_names_one():
    names = available_models("llm")
    for name in ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        assert name in names
    for model in LLM_PROFILES.values():
        assert model in names
    qwen = model_source("llm", "qwen2.5-coder-0.5b-instruct")
    assert isinstance(qwen, PreparedModel)
    # Six packages, in part order (the GGUF is their concatenation).
    assert [rel for _, rel in qwen.candidates[0]] == [f"data/part{i:02d}.bin" for i in range(1, 7)]
    assert qwen.expected_sizes == {"part01.bin": 491_400_064}


def test_profiles_choose_the_model_unless_one_is_named():
    assert Settings.from_env({}).llm_model == LLM_PROFILES["live"]
    assert Settings.from_env({"EMPATHIC_LLM_PROFILE": "quality"}).llm_model == LLM_PROFILES["quality"]
    assert Settings.from_env({"EMPATHIC_LLM_PROFILE": "quality", "EMPATHIC_LLM_MODEL": "/m"}).llm_model == "/m"
    with pytest.raises(ConfigError, match="live or quality"):
        Settings.from_env({"EMPATHIC_LLM_PROFILE": "fastest"})


def _parts(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(chunks, start=1):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_split_gguf_is_joined_in_order_and_checked_before_conversion(tmp_path, monkeypatch):
    chunks = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    whole = b"".join(chunks)
    seen: dict[str, bytes] = {}
    monkeypatch.setattr(prep, "convert_gguf", lambda inputs, out: seen.setdefault("gguf", inputs[0].read_bytes()))
    out = tmp_path / "out"
    out.mkdir()
    step = prep.gguf_from_parts(size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    step(_parts(tmp_path, chunks), out)
    assert seen["gguf"] == whole
    assert not list(tmp_path.glob(".out.gguf*"))  # the joined file is temporary


def test_a_damaged_part_is_caught_by_the_checksum(tmp_path, monkeypatch):
    chunks = [b"GGUF" + b"a" * 10, b"b" * 7]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    monkeypatch.setattr(prep, "convert_gguf", lambda inputs, out: pytest.fail("converted a damaged file"))
    out = tmp_path / "out"
    out.mkdir()
    damaged = [chunks[0], b"B" * 7]  # same size, other bytes
    with pytest.raises(ValueError, match="damaged"):
        prep.gguf_from_parts(size=21, sha256=good)(_parts(tmp_path, damaged), out)


def test_a_damaged_split_model_fails_preparation_with_a_clear_error(tmp_path, monkeypatch):
    chunks = [b"x" * 5, b"y" * 5]
    parts = _parts(tmp_path, chunks)
    src = PreparedModel("llm", "split", candidates=[[("", str(p)) for p in parts]], pip_names=["a", "b"],
                        prepare_fn=prep.gguf_from_parts(size=10, sha256="0" * 64), install_hint="pip install a b")
    with pytest.raises(ModelPreparationError, match="damaged"):
        src.resolve(tmp_path / "cache")
    assert not (tmp_path / "cache" / "llm" / "split").exists()  # nothing half-made is left


def test_a_given_strategy_replaces_the_rules_but_never_the_safety_ones():
    persona = load_persona(None)
    ordinary = PlanInput(state=(-0.5, 0.1, 0.0), confidence=0.8, top_category="sadness", turn_index=5,
                         text="I just feel so tired of everything at work.")
    assert plan_register(ordinary, persona).strategy != "Information"
    given = PlanInput(**{**ordinary.__dict__, "strategy": "Information"})
    reg = plan_register(given, persona)
    assert reg.strategy == "Information" and "answer their question" in reg.reply_hint()
    risky = PlanInput(**{**ordinary.__dict__, "strategy": "Providing Suggestions", "risk_level": "low"})
    assert plan_register(risky, persona).strategy in ("Reflection of feelings", "Restatement or Paraphrasing")
    with pytest.raises(ValueError, match="unknown strategy"):
        plan_register(PlanInput(**{**ordinary.__dict__, "strategy": "Hug"}), persona)


def test_batches_cover_each_example_once_per_epoch_and_are_seeded():
    lengths = [(i * 37) % 101 for i in range(50)]
    a = _batches(lengths, 4, seed=3, epochs=1.0)
    assert sorted(i for b in a for i in b) == list(range(50))
    assert a == _batches(lengths, 4, seed=3, epochs=1.0)
    assert a != _batches(lengths, 4, seed=4, epochs=1.0)
    two = _batches(lengths, 4, seed=3, epochs=1.5)
    flat = [i for b in two for i in b]
    assert len(flat) == 75 and set(flat) == set(range(50))
    assert all(len(b) <= 4 for b in two)


@pytest.mark.parametrize("argv, needle", [
    (["--limit", "0"], "--limit must be >= 1"),
    (["--epochs", "0"], "--epochs and --lr must be > 0"),
])
def test_train_cli_rejects_bad_options(tmp_path, capsys, argv, needle):
    code = main(["train", "responder", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    assert code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("text, unfinished", [
    ("That sounds hard.", False), ("How are you feeling?", False), ('She said "enough."', False),
    ("Take care :)", False), ("Well done! 🎉", False), ("It sounds like you", True), ("I hear you,", True),
    ("", False),
])
def test_is_unfinished(text, unfinished):
    from empathic_agent.speak.text import is_unfinished

    assert is_unfinished(text) is unfinished


def test_a_reply_cut_at_the_token_limit_ends_on_its_last_whole_sentence():
    from empathic_agent.safety.guard import GuardContext, GuardedRelease, ReplyGuard

    guard = ReplyGuard()
    gate = GuardedRelease(guard, GuardContext())
    out = gate.feed("That sounds really hard. ") + gate.feed("It makes sense that you feel")
    out += gate.flush(drop_unfinished=True)
    assert out.strip() == "That sounds really hard." and gate.dropped == "It makes sense that you feel"
    # Nothing whole before it: the fragment is all there is, and it stays.
    alone = GuardedRelease(guard, GuardContext())
    assert (alone.feed("hey there") + alone.flush(drop_unfinished=True)) == "hey there"
    # Without the flag (the default) nothing is dropped.
    keep = GuardedRelease(guard, GuardContext())
    assert (keep.feed("Hard day. And then") + keep.flush()).endswith("And then")
