"""A whole spoken turn through the graph with the real offline models: Piper speech in, Whisper
transcript, text + speech readings fused, memory, a reply from the embedded LLM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.agent import Agent
from empathic_agent.errors import EmptyInputError
from empathic_agent.settings import Settings
from empathic_agent.speak.tts import wav_bytes
from tests.integration.test_speech import _norm, cache_dir, say, voice  # noqa: F401  (fixtures)

SENTENCE = "I lost my job today and I feel terrible."


@pytest.fixture
def voice_settings(tmp_path) -> Settings:
    return Settings.from_env({}, memory_dir=tmp_path / "mem", max_new_tokens=16, temperature=0.0)


async def test_a_spoken_turn_is_transcribed_read_fused_and_answered(voice_settings, say):  # noqa: F811 (fixture)
    rate, x = say(SENTENCE)
    async with await Agent.open(voice_settings) as agent:
        res = await agent.respond("vic", "s1", audio=wav_bytes(x, rate))
        assert _norm(res.user_text) == _norm(SENTENCE)
        assert res.heard["transcript"] and res.heard["language"] == "en"
        assert set(res.readings) == {"text", "speech"}
        state = res.fused_state
        shares = dict(state.contributions)
        assert shares["text"] > 0 and shares["speech"] > 0
        assert state.mean[0] < 0  # the words are clearly negative
        assert res.reply.strip() and res.ok, res.degraded
        # The spoken words are in the conversation like typed ones, and were remembered.
        hist = await agent.history("vic", "s1")
        assert _norm(hist[0].content) == _norm(SENTENCE)
        assert agent.services.memory.count("vic") >= 1
        # Silence is not a message: a clear error, nothing added to the conversation.
        with pytest.raises(EmptyInputError, match="no speech"):
            await agent.respond("vic", "s1", audio=wav_bytes(np.zeros(16000, dtype=np.float32), 16000))
        assert len(await agent.history("vic", "s1")) == 2
        gone = await agent.delete_user("vic")
        assert gone["conversations"] == 1 and gone["memories"] >= 1


def test_cli_chat_takes_an_audio_file(tmp_path, say):  # noqa: F811 (fixture)
    rate, x = say(SENTENCE)
    wav = tmp_path / "turn.wav"
    wav.write_bytes(wav_bytes(x, rate))
    exe = str(Path(sys.executable).parent / "empathic")
    p = subprocess.run([exe, "chat", "--memory-dir", str(tmp_path / "m"), "--max-new-tokens", "12",
                        "--audio", str(wav), "--show-perception"],
                       capture_output=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "(heard: " in out and _norm(out.split("(heard: ", 1)[1].split(")\n", 1)[0]) == _norm(SENTENCE)
    assert "(perceived: " in out
