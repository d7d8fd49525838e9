"""The web UI's logic without a browser: turns through the controller (fake LLM, encoder and voice
subclassing the real interfaces, real graph and checkpointer), the views of what was perceived,
settings selection and the data-rights actions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.errors import ConfigError, EmptyInputError
from empathic_agent.graph import build_services
from empathic_agent.latent import Reading, fuse
from empathic_agent.speak.tts import wav_bytes
from empathic_agent.testing import FakeEncoder, FakeLLM, FakeTTS
from empathic_agent.ui.controller import (
    AUDIO,
    BACKEND_EMBEDDED,
    BACKEND_OPENAI,
    IMAGE,
    UIController,
    UIOptions,
    UploadError,
    category_scores,
    memory_rows,
    perception_markdown,
    trajectory_rows,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
async def controller(settings):
    services = build_services(settings, llm=FakeLLM(["That sounds hard. What happened?"], chunk_size=4),
                              text_encoder=FakeEncoder({"I lost my job": "sadness"}), memory=None, speech=None,
                              face=None)
    c = UIController(settings, services=services, checkpointer=InMemorySaver(),
                     voices={v: FakeTTS(seconds_per_char=0.002) for v in UIController.voices()})
    await c.start(warm_up=False)
    yield c
    await c.aclose()


async def test_a_turn_streams_text_then_speech_then_the_result(controller):
    updates = [u async for u in controller.turn(controller.default_options, "ann", "s1", text="I lost my job")]
    texts = [u.reply for u in updates if u.result is None and u.audio is None]
    assert len(texts) >= 2 and texts[-1] == "That sounds hard. What happened?"  # sentence by sentence (guard)
    assert all(a in b for a, b in zip(texts, texts[1:]))  # the reply grows
    assert any(u.audio is not None for u in updates)  # spoken sentence by sentence
    result = updates[-1].result
    assert result is not None and result.reply == texts[-1] and result.audio is not None
    assert category_scores(result.emotion)["sadness"] == max(category_scores(result.emotion).values())
    panel = perception_markdown(result)
    assert "**Feeling:**" in panel and "**Plan:**" in panel and "- text:" in panel and "Why:" in panel
    # Spoken off: no audio at all.
    quiet = [u async for u in controller.turn(controller.default_options, "ann", "s1", text="hello", speak=False)]
    assert all(u.audio is None for u in quiet) and quiet[-1].result.audio is None


async def test_history_trajectory_and_sessions_follow_the_conversation(controller):
    opts = controller.default_options
    for text in ("I lost my job", "and my cat is ill"):
        [u async for u in controller.turn(opts, "ann", "monday", text=text)]
    [u async for u in controller.turn(opts, "ann", "tuesday", text="hi")]
    history = await controller.history("ann", "monday")
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "I lost my job"
    trajectory = await controller.trajectory("ann", "monday")
    assert len(trajectory) == 2
    rows = trajectory_rows(trajectory)
    assert {r["turn"] for r in rows} == {1, 2} and {r["series"] for r in rows} == {"fused", "text"}
    assert await controller.sessions("ann") == ["monday", "tuesday"]
    assert await controller.sessions("bob") == []


async def test_bad_input_is_an_error_and_leaves_no_trace(controller):
    with pytest.raises(EmptyInputError):
        [u async for u in controller.turn(controller.default_options, "ann", "s1", text="   ")]
    assert await controller.history("ann", "s1") == []


async def test_settings_select_agents_over_shared_services_and_conversations(controller):
    base = controller.default_options
    a1 = await controller.agent(base)
    assert await controller.agent(UIOptions(persona=base.persona, voice=base.voice)) is a1
    alex = await controller.agent(UIOptions(persona="alex", voice=base.voice))
    assert alex is not a1 and alex.services.persona.name.lower() == "alex"
    assert alex.checkpointer is a1.checkpointer and alex.services.text_encoder is a1.services.text_encoder
    # A conversation continues across a persona switch.
    [u async for u in controller.turn(base, "ann", "s1", text="I lost my job")]
    [u async for u in controller.turn(UIOptions(persona="alex", voice=base.voice), "ann", "s1", text="still sad")]
    assert len(await controller.history("ann", "s1")) == 4
    with pytest.raises(ConfigError, match="unknown persona"):
        await controller.agent(UIOptions(persona="nobody", voice=base.voice))
    with pytest.raises(ConfigError, match="unknown voice"):
        await controller.agent(UIOptions(persona=base.persona, voice="nobody"))
    with pytest.raises(ConfigError, match="must start with http"):
        await controller.agent(UIOptions(persona=base.persona, voice=base.voice, backend=BACKEND_OPENAI,
                                         openai_url="localhost:8000"))
    served = await controller.agent(UIOptions(persona=base.persona, voice=base.voice, backend=BACKEND_OPENAI,
                                              openai_url="http://127.0.0.1:9/v1", openai_model="m"))
    assert served.services.llm.name == "openai" and a1.services.llm.name == "fake"
    assert UIOptions("sam", "v", BACKEND_EMBEDDED, "http://x", "m").llm_key() == (BACKEND_EMBEDDED, "", "")


async def test_export_and_delete_all_cover_conversations(controller):
    [u async for u in controller.turn(controller.default_options, "ann", "s1", text="I lost my job")]
    path = await controller.export("ann")
    data = json.loads(path.read_text())
    assert data["user_id"] == "ann" and data["conversations"]["s1"][0]["content"] == "I lost my job"
    assert await controller.memories("ann") == []  # memory is off in this controller
    with pytest.raises(ConfigError, match="memory is turned off"):
        await controller.delete_memory("ann", "ep-1")
    counts = await controller.delete_all("ann")
    assert counts["conversations"] == 1 and await controller.sessions("ann") == []


async def test_exports_do_not_outlive_the_controller(settings):
    # An export holds everything about a person: it must not stay in the temp folder after the app.
    services = build_services(settings, llm=FakeLLM(["Okay."]), text_encoder=FakeEncoder({}), memory=None,
                              speech=None, face=None)
    c = UIController(settings, services=services, checkpointer=InMemorySaver(), voices={})
    await c.start(warm_up=False)
    path = await c.export("ann")
    assert path.exists()
    await c.aclose()
    assert not path.exists() and not path.parent.exists()


def _vad_text(r: Reading) -> str:
    v, a, d = r.mean
    return f"V {v:+.2f} · A {a:+.2f} · D {d:+.2f}"


def test_views_of_mixed_signals_and_memories():
    sad_words = Reading.from_categories({"sadness": 0.95, "neutral": 0.05}, "text")
    happy_face = Reading.from_categories({"joy": 0.95, "neutral": 0.05}, "face")
    fused = fuse([sad_words, happy_face])

    class R:  # the TurnResult fields the view reads
        emotion = fused.to_dict()
        fused_state = fused
        perception = "seems sad"
        readings = {"text": sad_words.to_dict(), "face": happy_face.to_dict()}
        heard = {"transcript": "I am fine"}
        seen = {"frames": 1, "faces_seen": 1}
        register = {"strategy": "Reflection of feelings", "family": "comforting", "tone": ["gentle"],
                    "pace": "slow", "length": "short", "target": {"valence": 0.2, "arousal": -0.3, "dominance": 0.0},
                    "rationale": ["mixed signals: reflect tentatively"]}
        agent_mood = (0.1, 0.0, 0.0)
        degraded = ({"step": "speak", "error": "X", "message": "voice off"},)

    panel = perception_markdown(R())
    assert fused.mixed_signals.flag
    assert "Mixed signals" in panel and "face vs text" in panel
    assert "Heard:** “I am fine”" in panel and "Camera:** 1 frame(s), 1 with a face" in panel
    assert "speak: voice off" in panel and "Why: mixed signals" in panel
    # Each channel shows its top category's probability, its confidence and its share of the state.
    share = f"{fused.contribution('text'):.0%} of the fused state"
    assert f"- text: {_vad_text(sad_words)} · sadness 95% · {sad_words.confidence:.0%} confident · {share}" in panel
    assert "- face:" in panel and "joy 95%" in panel
    assert perception_markdown(None).startswith("*Nothing perceived")

    class Quiet(R):  # a presentation read below its takeover level, one that leads
        safety = {"clinical": {"presentations": [{"name": "mania", "source": "learned", "leads": False},
                                                 {"name": "psychosis", "source": "pattern", "leads": True}],
                               "register": "psychosis"}}

    panel = perception_markdown(Quiet())
    assert "mania (learned, read, not leading), psychosis (pattern)" in panel
    assert "reads as" not in panel  # no risk level: the feeling stands as read

    class AtRisk(R):  # words that sound calm and read as risk: the feeling line says both
        perception = "seems fine (even, steady); confident"
        safety = {"level": "high", "route": "escalate"}

    panel = perception_markdown(AtRisk())
    assert "**Feeling:** seems fine (even, steady); confident — how the words sound only" in panel
    assert "reads as **high risk**" in panel
    rows = memory_rows([{"rank": 1, "text": "sister's wedding", "kind": "episode", "top_category": "joy",
                         "scores": {"total": 0.81234, "semantic": 0.7, "emotional": 0.9}}])
    assert rows == [[1, "sister's wedding", "joy", "0.81 (0.70 · 0.90)"]]


def test_the_cli_and_package_import_without_gradio_or_torch():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, empathic_agent, empathic_agent.cli.main, "
                          "empathic_agent.ui.options; print(sorted(m for m in ('gradio', 'torch', 'fastapi') "
                          "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    path.write_bytes(wav_bytes(samples, rate))
    return path


async def test_bad_uploads_are_refused_in_plain_words(controller, tmp_path):
    """What the page received is decoded before a turn: a usable file comes back decoded (the
    agent takes it as it is); an unusable one is an UploadError whose message a person can act on:
    no server path, no exception name, no decoder internals."""
    from PIL import Image

    from empathic_agent.perceive.audio import AudioClip
    from empathic_agent.perceive.image import ImageFrame

    photo = (FIXTURES / "images" / "astronaut.jpg").read_bytes()
    t = np.arange(16000) / 16000  # a second of a syllable-like tone between silences
    syllables = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    speech = np.concatenate([np.zeros(8000), syllables, np.zeros(8000)])
    good_wav = _wav(tmp_path / "voice.wav", speech)
    assert isinstance(await controller.read_upload(IMAGE, str(FIXTURES / "images" / "astronaut.jpg")),
                      ImageFrame)
    clip = await controller.read_upload(AUDIO, str(good_wav))
    assert isinstance(clip, AudioClip)
    # Checked on arrival, sent with the next message: the same file is not decoded twice; a file
    # written again under the same name is.
    assert await controller.read_upload(AUDIO, str(good_wav)) is clip
    _wav(good_wav, speech[::-1].copy())
    os.utime(good_wav, ns=(1, 1))
    assert await controller.read_upload(AUDIO, str(good_wav)) is not clip
    assert await controller.read_upload(IMAGE, None) is None and await controller.read_upload(AUDIO, None) is None

    bad: dict[str, tuple[str, Path]] = {}

    def write(kind: str, name: str, data: bytes | str) -> None:
        path = tmp_path / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        bad[name] = (kind, path)

    write(IMAGE, "note.jpg", "just some text, renamed to look like a photo\n" * 4)
    write(IMAGE, "cut.jpg", photo[: len(photo) // 3])
    write(IMAGE, "empty.png", b"")
    Image.new("1", (9000, 9000)).save(tmp_path / "huge.png")  # 81 megapixels in a few kB
    bad["huge.png"] = (IMAGE, tmp_path / "huge.png")
    write(AUDIO, "note.wav", "just some text, renamed to look like a recording\n" * 4)
    write(AUDIO, "cut.wav", good_wav.read_bytes()[:30])
    write(AUDIO, "empty.wav", b"")
    bad["silent.wav"] = (AUDIO, _wav(tmp_path / "silent.wav", np.zeros(16000)))
    messages = {}
    for name, (kind, path) in bad.items():
        with pytest.raises(UploadError) as caught:
            await controller.read_upload(kind, str(path))
        message = messages[name] = str(caught.value)
        assert caught.value.kind == kind, name
        assert message[:1].isupper() and message.endswith("."), (name, message)
        assert "/" not in message and str(tmp_path) not in message and name not in message, (name, message)
        assert not re.search(r"error|exception|traceback|pillow|ffmpeg", message, re.IGNORECASE), (name, message)
    # Size limits keep their numbers (the person learns what would pass); silence is not "damaged".
    assert "megapixels" in messages["huge.png"] and "hear" in messages["silent.wav"]


async def test_talk_tickets_are_single_use_and_expire(controller, monkeypatch):
    ticket = controller.talk_ticket(controller.default_options, "ann", "s1")
    assert controller.redeem_ticket(ticket) == (controller.default_options, "ann", "s1")
    assert controller.redeem_ticket(ticket) is None          # used up
    assert controller.redeem_ticket("made-up") is None
    stale = controller.talk_ticket(controller.default_options, "ann", "s1")
    monkeypatch.setattr(type(controller), "TICKET_S", -1.0)
    late = controller.talk_ticket(controller.default_options, "ann", "s2")
    assert controller.redeem_ticket(late) is None            # expired
    assert controller.redeem_ticket(stale) is not None       # issued before, still valid
    with pytest.raises(Exception, match="user id"):
        controller.talk_ticket(controller.default_options, "../x", "s1")
