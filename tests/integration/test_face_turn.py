"""Turns with images through the whole graph: real text and face encoders, real fusion, a fake LLM
(generation is not under test here), in-memory checkpoints.

Scenarios of issue 5: congruent (all sad), masking (smile + sad words -> mixed signals), missing
modality (no face found -> fusion of the rest), and bad images never failing a turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from empathic_agent.agent import Agent  # noqa: E402
from empathic_agent.encode.face import FaceAnalysis, FaceEncoder, reading_from_probabilities  # noqa: E402
from empathic_agent.graph.builder import build_services  # noqa: E402
from empathic_agent.latent import CATEGORIES  # noqa: E402
from empathic_agent.perceive.face import (
    FaceBox,  # noqa: E402
    FacePerception,  # noqa: E402
)
from empathic_agent.settings import Settings  # noqa: E402
from empathic_agent.testing.fakes import FakeLLM  # noqa: E402

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
SAD_WORDS = "My father died last week and I cannot stop crying."


class SadFaceEncoder(FaceEncoder):
    """A face encoder that sees a clearly sad face in any image (the real class, one hook faked)."""

    def _load_impl(self) -> None:
        pass

    def _analyze(self, image):  # noqa: ANN001
        p = np.full(len(CATEGORIES), 0.02)
        p[CATEGORIES.index("sadness")] = 0.88
        p /= p.sum()
        return FaceAnalysis(reading_from_probabilities(p, 0.15), "ok", FaceBox(10, 10, 150, 150, 40.0), 1,
                            (640, 480), {"doubt": 0.15}, {"total_s": 0.001}, probs=tuple(p))


@pytest.fixture(scope="module")
def text_encoder():
    from empathic_agent.encode import load_encoder

    enc = load_encoder("text", Settings.from_env({}))
    enc.load()
    return enc


@pytest.fixture(scope="module")
def face() -> FacePerception:
    p = FacePerception(FaceEncoder())
    p.load()
    return p


async def _agent(tmp_path, text_encoder, face) -> Agent:
    settings = Settings.from_env({}, memory_dir=tmp_path / "mem", memory_enabled=False)
    services = build_services(settings, llm=FakeLLM(["I'm here with you."]), text_encoder=text_encoder,
                              speech=None, memory=None, face=face)
    return await Agent.open(settings, services=services, checkpointer=InMemorySaver())


async def test_masking_smile_with_sad_words_is_flagged(tmp_path, text_encoder, face):
    agent = await _agent(tmp_path, text_encoder, face)
    res = await agent.respond("ana", "s1", text=SAD_WORDS, image=str(IMAGES / "astronaut.jpg"))
    assert set(res.readings) == {"text", "face"}
    assert res.seen["faces_seen"] == 1 and res.seen["analyses"][0]["box"]
    state = res.fused_state
    assert state.mixed_signals.flag, state.to_dict()
    assert set(state.mixed_signals.modalities) == {"text", "face"}
    shares = dict(state.contributions)
    assert shares["text"] > 0 and shares["face"] > 0
    # The face changed the state: without it the same words read sadder.
    alone = await agent.respond("ana", "s2", text=SAD_WORDS)
    assert "face" not in alone.readings and not alone.fused_state.mixed_signals.flag
    assert alone.fused_state.reading.probability("joy") < state.reading.probability("joy")
    assert res.ok, res.degraded
    await agent.aclose()


async def test_congruent_sad_face_and_words(tmp_path, text_encoder):
    agent = await _agent(tmp_path, text_encoder, FacePerception(SadFaceEncoder()))
    res = await agent.respond("ben", "s1", text=SAD_WORDS, image=str(IMAGES / "astronaut.jpg"))
    state = res.fused_state
    assert state.top_category == "sadness" and not state.mixed_signals.flag
    assert set(dict(state.contributions)) == {"text", "face"}
    text_only = await agent.respond("ben", "s2", text=SAD_WORDS)
    # Agreeing evidence sharpens the state.
    assert state.confidence > text_only.fused_state.confidence
    await agent.aclose()


async def test_no_face_found_fuses_the_rest(tmp_path, text_encoder, face):
    agent = await _agent(tmp_path, text_encoder, face)
    res = await agent.respond("cy", "s1", text=SAD_WORDS, image=str(IMAGES / "cat.jpg"))
    assert set(res.readings) == {"text"}
    assert res.seen["frames"] == 1 and res.seen["faces_seen"] == 0
    assert res.seen["analyses"][0]["status"] == "no_face"
    assert res.ok and res.reply  # no face is not an error
    assert res.fused_state.top_category == "sadness"
    await agent.aclose()


@pytest.mark.parametrize("bad", [b"\x89PNG\r\n\x1a\n truncated", b"hello", "data:image/jpeg;base64,!!!"])
async def test_bad_images_never_fail_a_turn(tmp_path, text_encoder, face, bad):
    agent = await _agent(tmp_path, text_encoder, face)
    res = await agent.respond("dee", "s1", text="I'm okay I guess.", image=bad)
    assert res.reply == "I'm here with you."
    assert "face" not in res.readings
    assert any(e["error"] == "ImageError" for e in res.degraded)
    await agent.aclose()


async def test_a_decompression_bomb_never_fails_a_turn(tmp_path, text_encoder, face):
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    # A PNG header claiming 30000x30000 pixels (900 MP) with a sliver of data.
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))
    agent = await _agent(tmp_path, text_encoder, face)
    res = await agent.respond("eve", "s1", text="hello", image=bomb)
    assert res.reply and any(e["error"] == "ImageError" for e in res.degraded)
    await agent.aclose()


async def test_webcam_frames_as_a_list_and_the_state_carries_over(tmp_path, text_encoder, face):
    from empathic_agent.cli.face import sample_frame

    agent = await _agent(tmp_path, text_encoder, face)
    frames = [sample_frame(160), sample_frame(150), np.asarray(sample_frame(160))[:, ::-1].copy()]
    first = await agent.respond("fay", "s1", text="Hi! Good to see you.", image=frames)
    assert first.seen["frames"] == 3 and first.seen["faces_seen"] == 3
    assert first.readings["face"]["categories"]["joy"] > 0.4
    # Next turn without a camera: the previous fused state is the prior (smoothing across turns).
    second = await agent.respond("fay", "s1", text="Anyway.")
    assert "prior" in dict(second.fused_state.contributions)
    assert "face" not in second.readings and second.seen == {}
    await agent.aclose()


def test_face_disabled_is_reported_not_fatal(tmp_path):
    import asyncio

    async def run():
        settings = Settings.from_env({}, memory_dir=tmp_path / "m", memory_enabled=False, encoders="")
        services = build_services(settings, llm=FakeLLM(["ok"]))
        agent = await Agent.open(settings, services=services, checkpointer=InMemorySaver())
        res = await agent.respond("gus", "s1", text="hi", image=str(IMAGES / "astronaut.jpg"))
        await agent.aclose()
        return res

    res = asyncio.run(run())
    assert res.reply == "ok" and [e["error"] for e in res.degraded] == ["FaceUnavailable"]


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "empathic")
    return subprocess.run([exe, *args], capture_output=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_cli_eval_face_on_a_csv(tmp_path):
    import json
    import shutil

    for name in ("astronaut.jpg", "cat.jpg"):
        shutil.copy(IMAGES / name, tmp_path / name)
    (tmp_path / "faces.csv").write_text("path,emotion\nastronaut.jpg,happy\ncat.jpg,neutral\n")
    p = _cli("encoders", "eval", "face", "--csv", str(tmp_path / "faces.csv"))
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert out["n"] == 2 and out["faces"] == {"ok": 1, "no_face": 1, "error": 0}
    assert out["per_class_f1"]["joy"] == 1.0


def test_cli_look_and_chat_with_an_image(tmp_path):
    import json

    p = _cli("look", str(IMAGES / "astronaut.jpg"))
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert out["faces_seen"] == 1 and out["summary"]["top_category"] == "joy"
    p = _cli("chat", "--memory-dir", str(tmp_path / "m"), "--max-new-tokens", "8", "-m", "Hello there",
             "--image", str(IMAGES / "astronaut.jpg"), "--show-perception")
    assert p.returncode == 0, p.stderr.decode()
    assert "(seen: 1 image(s), face in 1)" in p.stdout.decode()
