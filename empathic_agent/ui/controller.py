"""What the web UI does, without the web: turns, perception views, memories, settings.

The Gradio layer (:mod:`empathic_agent.ui.web`) only wires components to these methods, so the
logic is tested without a browser and the page stays thin.  One :class:`UIController` serves every
browser tab of a running app: the heavy services (encoders, memory, Whisper) load once and are
shared; what a person can change in the settings (persona, voice, LLM backend) selects a light
:class:`~empathic_agent.agent.Agent` over the same services and checkpointer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from empathic_agent.errors import ConfigError, InputError
from empathic_agent.ids import validate_id
from empathic_agent.latent import CATEGORIES
from empathic_agent.settings import Settings

__all__ = ["UIOptions", "UIController", "TurnUpdate", "UploadError", "BACKEND_EMBEDDED", "BACKEND_OPENAI",
           "AUDIO", "IMAGE", "upload_message",
           "trajectory_rows", "perception_markdown", "memory_rows", "category_scores"]

log = logging.getLogger(__name__)

BACKEND_EMBEDDED = "embedded"
BACKEND_OPENAI = "openai-compatible"
#: The kinds of file a person can add to a turn (see :meth:`UIController.read_upload`).
AUDIO = "audio"
IMAGE = "image"


@dataclass(frozen=True)
class UIOptions:
    """What a person chose in the settings panel (everything else comes from ``Settings``)."""

    persona: str
    voice: str
    backend: str = BACKEND_EMBEDDED
    #: Base URL of an OpenAI-compatible server (vLLM, ...) when ``backend`` is that.
    openai_url: str = ""
    #: Model name on that server ("" = the server's first model).
    openai_model: str = ""

    def llm_key(self) -> tuple[str, str, str]:
        if self.backend == BACKEND_EMBEDDED:
            return (BACKEND_EMBEDDED, "", "")
        return (BACKEND_OPENAI, self.openai_url.strip(), self.openai_model.strip())


@dataclass(frozen=True)
class TurnUpdate:
    """One step of a turn as the page shows it: the reply so far, a newly spoken sentence
    (``speak.SpeechAudio``, or None), and the finished turn's result (None until the end)."""

    reply: str
    audio: Any = None
    result: Any = None
    #: For a spoken turn, the transcript once the turn is over ("" otherwise).
    transcript: str = ""


# -- uploads -------------------------------------------------------------------------------------

class UploadError(InputError):
    """A recording or photo the person added cannot be used.  The message is written for them (what
    is wrong, what to do): never a server path, an exception's name or a decoder's internals."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        #: :data:`AUDIO` or :data:`IMAGE`: which input the page clears.
        self.kind = kind


def upload_message(kind: str, exc: BaseException) -> str:
    """What to tell the person about an unusable upload (``exc``: what the decoder raised).

    The decoders' size messages are plain words and numbers and are passed on; their messages about
    damaged data can carry a file path or a library's own error text, so those get a fixed sentence.
    """
    from empathic_agent.perceive.audio import AudioTooLargeError, AudioTooLongError, EmptyAudioError
    from empathic_agent.perceive.image import EmptyImageError, ImageTooLargeError, ImageTooSmallError

    if isinstance(exc, (ImageTooLargeError, ImageTooSmallError, AudioTooLargeError, AudioTooLongError)):
        text = str(exc)
        return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    if kind == IMAGE:
        if isinstance(exc, EmptyImageError):
            return "That photo is empty. Please choose another one."
        return ("That photo could not be opened: it is damaged, cut short, or not a picture. "
                "Please choose a JPEG, PNG, WebP, GIF or BMP image.")
    if isinstance(exc, EmptyAudioError):
        return "That recording is empty. Please record again or choose another file."
    return ("That recording could not be played: it is damaged, cut short, or not a sound file. "
            "Please record again, or choose a WAV, MP3, OGG, FLAC or WebM file.")


#: A recording that decodes but holds no speech (silence, a click): the turn would hear nothing.
NO_SPEECH_MESSAGE = ("I could not hear any words in that recording. Please record again, "
                     "a little closer to the microphone.")


def _limits(service: Any) -> Any:
    """The limits a perceiving service decodes with (it, or its encoder, holds them); None when
    the service is off: the decoder's defaults, which the services are built with too."""
    for owner in (service, getattr(service, "encoder", None)):
        limits = getattr(owner, "limits", None)
        if limits is not None:
            return limits
    return None


def _file_key(kind: str, source: Any) -> tuple[Any, ...] | None:
    """What identifies an uploaded file's content cheaply (None: not a file path, e.g. a data URL)."""
    if not isinstance(source, (str, Path)) or str(source).startswith("data:"):
        return None
    try:
        st = Path(source).stat()
    except OSError:
        return None
    return (kind, str(source), st.st_size, st.st_mtime_ns)


# -- views (pure functions of what the agent returned; unit-tested) -------------------------------

def trajectory_rows(trajectory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long-format rows (turn, dimension, series, value) for the valence/arousal plots: the fused
    state and each modality's own reading per turn."""
    rows: list[dict[str, Any]] = []
    for i, entry in enumerate(trajectory, 1):
        points = [("fused", entry.get("fused"))] + sorted((entry.get("modalities") or {}).items())
        for series, p in points:
            if not p:
                continue
            rows.append({"turn": i, "dimension": "valence", "series": series, "value": float(p["v"])})
            rows.append({"turn": i, "dimension": "arousal", "series": series, "value": float(p["a"])})
    return rows


def category_scores(emotion: dict[str, Any] | None) -> dict[str, float]:
    """The fused state's category distribution ({} before any perception)."""
    if not emotion:
        return {}
    from empathic_agent.latent import FusedState

    probs = FusedState.from_dict(emotion).reading.categories
    return {c: float(p) for c, p in zip(CATEGORIES, probs)}


def _vad(values: Any) -> str:
    v, a, d = (float(x) for x in values)
    return f"V {v:+.2f} · A {a:+.2f} · D {d:+.2f}"


def perception_markdown(result: Any) -> str:
    """What the agent perceived and how it planned the reply, for the side panel."""
    lines: list[str] = []
    fused = result.fused_state if result is not None else None
    if fused is not None:
        if fused.mixed_signals.flag:
            pairs = ", ".join(f"{c.modality_a} vs {c.modality_b}" for c in fused.mixed_signals.pairs)
            lines.append(f"⚠️ **Mixed signals** — {pairs} disagree; the reply acknowledges this gently.")
        from empathic_agent.safety.taxonomy import level_index

        feeling = result.perception or fused.reading.top_category
        level = str((getattr(result, "safety", None) or {}).get("level") or "none")
        if level_index(level) >= level_index("moderate"):
            # The emotion reading hears how the words sound, not what they say ("I've started giving
            # my stuff away" reads even and steady; calm after deciding is itself a warning sign):
            # beside a crisis banner it never stands alone as "seems fine".
            feeling += f" — how the words sound only; what they say reads as **{level} risk**, and the reply follows that"
        lines.append(f"**Feeling:** {feeling}")
        lines.append(f"**Fused:** {_vad(fused.reading.mean)} · top *{fused.reading.top_category}* "
                     f"({fused.reading.confidence:.0%} confident)")
        for modality, reading in sorted(result.readings.items()):
            mean = reading.get("mean") or {}
            if len(mean) == 3:
                # Per channel: how sure it is and how much of the fused state it made, so a person
                # can see why one channel counted more than another (or why a conflict was named).
                top = reading.get("top_category", "?")
                prob = (reading.get("categories") or {}).get(top)
                conf = reading.get("confidence")
                detail = f"{top}" + (f" {float(prob):.0%}" if prob is not None else "")
                if conf is not None:
                    detail += f" · {float(conf):.0%} confident"
                detail += f" · {fused.contribution(modality):.0%} of the fused state"
                lines.append(f"- {modality}: {_vad(mean.values())} · {detail}")
    if result is not None and result.heard.get("transcript"):
        lines.append(f"**Heard:** “{result.heard['transcript']}”")
    if result is not None and result.seen:
        faces = result.seen.get("faces_seen", 0)
        lines.append(f"**Camera:** {result.seen.get('frames', 0)} frame(s), {faces} with a face"
                     + ("" if faces else " — the face was left out"))
    reg = result.register if result is not None else {}
    if reg:
        target = reg.get("target") or {}
        lines.append(f"**Plan:** {reg.get('strategy', '?')} ({reg.get('family', '?')}) · tone "
                     f"{', '.join(reg.get('tone') or []) or '—'} · pace {reg.get('pace', '—')} · length {reg.get('length', '—')}")
        if target:
            lines.append(f"**Agent's target expression:** {_vad((target['valence'], target['arousal'], target['dominance']))}")
        if reg.get("learned_top"):
            top = " · ".join(f"{s} {float(p):.2f}" for s, p in reg["learned_top"])
            lines.append(f"**Strategy model** (what skilled supporters do next): {top} · constraints held: "
                         f"{', '.join(reg.get('constraints') or []) or 'none'}")
        rationale = reg.get("rationale")
        if rationale:
            why = "; ".join(rationale) if isinstance(rationale, (list, tuple)) else str(rationale)
            lines.append(f"<small>Why: {why}</small>")
    clinical = (getattr(result, "safety", None) or {}).get("clinical") or {}
    if clinical.get("presentations"):
        # A reading below its takeover level is shown as such: the guard checks for it, but the
        # reply is generated, not the presentation's vetted one.
        found = ", ".join(f"{p['name']} ({p['source']}" + ("" if p.get("leads", True) else ", read, not leading") + ")"
                          for p in clinical["presentations"])
        lines.append(f"**Clinical presentation:** {found}"
                     + (f" · register *{clinical['register']}*" + (" (vetted reply)" if reg.get("vetted") else "")
                        if clinical.get("register") else ""))
    guard = getattr(result, "guard", None) or {}
    if guard.get("events"):
        for ev in guard["events"]:
            lines.append(f"**Reply guard:** blocked *{ev['category']}* ({ev['source']}) → {ev['action']}")
    elif guard.get("sentences"):
        whole = " and the whole reply by the probe" if guard.get("second_looks") else ""
        lines.append(f"<small>Reply guard ({guard.get('layers', '?')}): {guard['sentences']} sentence(s){whole} "
                     f"checked, passed ({guard.get('max_sentence_ms', 0):.1f} ms the longest check)</small>")
    if result is not None and result.agent_mood:
        lines.append(f"**Agent's mood:** {_vad(result.agent_mood)}")
    for err in (result.degraded if result is not None else ()):
        lines.append(f"<small>⚙️ {err['step']}: {err['message']}</small>")
    return "\n\n".join(lines) if lines else "*Nothing perceived yet — say something.*"


def memory_rows(memories: list[Any]) -> list[list[Any]]:
    """Table rows for recalled memories (dicts from a turn) or stored ones (``MemoryRecord``)."""
    rows = []
    for m in memories:
        if isinstance(m, dict):
            scores = m.get("scores") or {}
            rows.append([m.get("rank"), m.get("text", ""), m.get("top_category") or "",
                         f"{float(scores.get('total', 0.0)):.2f} ({float(scores.get('semantic', 0.0)):.2f} · "
                         f"{float(scores.get('emotional', 0.0)):.2f})"])
        else:
            rows.append([m.id, m.text, m.kind, m.top_category or "",
                         time.strftime("%Y-%m-%d %H:%M", time.localtime(m.created_at))])
    return rows


# -- the controller -------------------------------------------------------------------------------

class UIController:
    """Shared by every tab of a running app; all methods are safe to call concurrently."""

    def __init__(self, settings: Settings, *, services: Any = None, checkpointer: Any = None,
                 voices: dict[str, Any] | None = None) -> None:
        """``services``/``checkpointer``/``voices`` (name -> TTS) default to the real ones built
        from ``settings`` in :meth:`start`; tests pass fakes."""
        self.settings = settings
        self._services = services
        self._checkpointer = checkpointer
        self._closer: Any = None
        self._llms: dict[tuple[str, str, str], Any] = {}
        self._agents: dict[UIOptions, Any] = {}
        self._voices: dict[str, Any] = dict(voices or {})
        self._lock = asyncio.Lock()
        #: The last few decoded uploads by (kind, path, size, mtime): the page checks a file when it
        #: arrives and sends it with the next message, which then need not decode it again.
        self._decoded: dict[tuple[Any, ...], Any] = {}
        # A person's export holds everything about them: the folder goes when the controller
        # closes (or is collected, or the process exits), not at the next reboot.
        self._export_dir = Path(tempfile.mkdtemp(prefix="empathic-export-"))
        #: Talk mode: one-time tickets the page hands its WebSocket (ticket -> (options, user,
        #: session, expiry)), and the last spoken turn's result per conversation (for the panels).
        self._tickets: dict[str, tuple[UIOptions, str, str, float]] = {}
        self.talk_results: dict[tuple[str, str], Any] = {}
        self._remove_exports = weakref.finalize(self, shutil.rmtree, self._export_dir, ignore_errors=True)
        served = settings.llm_backend == "openai"
        self.default_options = UIOptions(persona=settings.persona, voice=settings.tts_voice,
                                         backend=BACKEND_OPENAI if served else BACKEND_EMBEDDED,
                                         openai_url=settings.openai_base_url if served else "",
                                         openai_model=settings.openai_model if served else "")

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, *, warm_up: bool = True) -> None:
        """Open the shared services and checkpointer; with ``warm_up``, load every model now so
        that the first message is answered at full speed."""
        from empathic_agent.agent import open_checkpointer
        from empathic_agent.graph.builder import build_services

        if self._services is None:
            self._services = await asyncio.to_thread(build_services, self.settings, tts=None)
        if self._checkpointer is None:
            self._checkpointer, self._closer = await open_checkpointer(self.settings)
        self._llms[self.default_options.llm_key()] = self._services.llm
        if warm_up:
            agent = await self.agent(self.default_options)
            await agent.warm_up(speak=True)

    async def aclose(self) -> None:
        self._remove_exports()
        for llm in self._llms.values():
            await llm.aclose()
        if self._services is not None and self._services.memory is not None:
            await asyncio.to_thread(self._services.memory.close)
        if self._closer is not None:
            await self._closer.close()
            self._closer = None

    @property
    def services(self) -> Any:
        if self._services is None:
            raise RuntimeError("UIController.start() was not awaited")
        return self._services

    # -- choices -----------------------------------------------------------------------------------
    @staticmethod
    def personas() -> list[str]:
        from empathic_agent.plan import available_personas

        return available_personas()

    @staticmethod
    def voices() -> list[str]:
        from empathic_agent.speak import available_voices

        return available_voices()

    async def agent(self, options: UIOptions) -> Any:
        """The agent for these choices (built once; shares services and conversations)."""
        from empathic_agent.agent import Agent

        async with self._lock:
            if options in self._agents:
                return self._agents[options]
            if options.persona not in self.personas():
                raise ConfigError(f"unknown persona {options.persona!r}; available: {', '.join(self.personas())}")
            if options.voice not in self.voices():
                raise ConfigError(f"unknown voice {options.voice!r}; available: {', '.join(self.voices())}")
            llm = await self._llm(options)
            if options.voice not in self._voices:
                from empathic_agent.speak import load_tts

                self._voices[options.voice] = load_tts(options.voice, self.settings)
            from empathic_agent.plan import load_persona

            services = dataclasses.replace(self.services, llm=llm, persona=load_persona(options.persona),
                                           tts=self._voices[options.voice])
            agent = Agent(services, checkpointer=self._checkpointer)
            self._agents[options] = agent
            return agent

    async def _llm(self, options: UIOptions) -> Any:
        key = options.llm_key()
        if key in self._llms:
            return self._llms[key]
        from empathic_agent.generate.llm import load_remote_llm

        url = key[1]
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"the OpenAI-compatible server URL must start with http:// or https:// (got {url!r})")
        llm = load_remote_llm(self.settings, url, key[2], self.settings.openai_api_key)
        self._llms[key] = llm
        return llm

    # -- uploads -----------------------------------------------------------------------------------
    async def read_upload(self, kind: str, source: Any) -> Any:
        """Decode a file the page received (a path, or a webcam's data URL) with the agent's own
        decoders and the perceiving service's limits: an :class:`~empathic_agent.perceive.audio.AudioClip`
        for :data:`AUDIO`, an :class:`~empathic_agent.perceive.image.ImageFrame` for :data:`IMAGE`
        (the agent takes both as they are: the turn does not decode them again); None for no file.

        Unusable input raises :class:`UploadError` with a message for the person, so a bad file
        never reaches the turn (where it would fail it) and the page can clear it."""
        if source is None or source == "":
            return None
        if kind == AUDIO:
            from empathic_agent.perceive.audio import decode_audio as decode

            limits = _limits(self.services.speech)
        elif kind == IMAGE:
            from empathic_agent.perceive.image import decode_image as decode

            limits = _limits(self.services.face)
        else:
            raise ValueError(f"unknown upload kind {kind!r}")
        key = _file_key(kind, source)
        if key is not None and key in self._decoded:
            return self._decoded[key]
        try:
            decoded = await asyncio.to_thread(decode, source, limits=limits)
        except InputError as exc:
            raise UploadError(kind, upload_message(kind, exc)) from None
        except Exception as exc:  # a decoder's bug must not break the page either: say it plainly, log it
            log.warning("could not decode an uploaded %s", kind, exc_info=True)
            raise UploadError(kind, upload_message(kind, exc)) from None
        if kind == AUDIO and not decoded.usable:
            raise UploadError(kind, NO_SPEECH_MESSAGE)
        if key is not None:
            while len(self._decoded) >= 4:
                self._decoded.pop(next(iter(self._decoded)))
            self._decoded[key] = decoded
        return decoded

    # -- turns -------------------------------------------------------------------------------------
    async def turn(self, options: UIOptions, user_id: str, session_id: str, *, text: str | None = None,
                   audio: Any = None, image: Any = None, speak: bool = True) -> AsyncIterator[TurnUpdate]:
        """Run a turn; yield the growing reply, each spoken sentence as WAV, then the result."""
        from empathic_agent.agent import AudioChunk, TextChunk, TurnResult

        agent = await self.agent(options)
        reply = ""
        if audio is not None and not (text or "").strip():
            text = None  # a spoken turn: the transcript is the words
        async for event in agent.stream(user_id, session_id, text=text, audio=audio, image=image, speak=speak):
            if isinstance(event, TextChunk):
                reply += event.text
                yield TurnUpdate(reply=reply)
            elif isinstance(event, AudioChunk):
                yield TurnUpdate(reply=reply, audio=event.audio)
            elif isinstance(event, TurnResult):
                yield TurnUpdate(reply=event.reply, result=event, transcript=event.heard.get("transcript") or "")

    async def history(self, user_id: str, session_id: str) -> list[dict[str, str]]:
        """The conversation as chat messages (role, content)."""
        agent = await self.agent(self.default_options)
        # A reply the person talked over holds only what was spoken: say so.
        return [{"role": m.role, "content": m.content + (" [interrupted]" if m.interrupted else "")}
                for m in await agent.history(user_id, session_id)]

    async def trajectory(self, user_id: str, session_id: str) -> list[dict[str, Any]]:
        agent = await self.agent(self.default_options)
        return await agent.trajectory(user_id, session_id)

    async def sessions(self, user_id: str) -> list[str]:
        agent = await self.agent(self.default_options)
        return await agent.sessions(user_id)

    # -- talk mode -----------------------------------------------------------------------------------
    #: Seconds a talk ticket stays valid (the page connects at once).
    TICKET_S = 60.0

    def talk_ticket(self, options: UIOptions, user_id: str, session_id: str) -> str:
        """A one-time ticket for the talk WebSocket: the page's events are behind its login, the
        socket is not, so the page asks for a ticket (here) and the socket takes it (once)."""
        import secrets

        validate_id(user_id, "user id")
        validate_id(session_id, "session id")
        now = time.monotonic()
        self._tickets = {k: v for k, v in self._tickets.items() if v[3] > now}
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = (options, user_id, session_id, now + self.TICKET_S)
        return ticket

    def redeem_ticket(self, ticket: str) -> tuple[UIOptions, str, str] | None:
        """(options, user, session) of a valid ticket, which is used up; None otherwise."""
        entry = self._tickets.pop(str(ticket or ""), None)
        if entry is None or entry[3] < time.monotonic():
            return None
        return entry[0], entry[1], entry[2]

    # -- memories and data rights -----------------------------------------------------------------
    def _memory(self) -> Any:
        if self.services.memory is None:
            raise ConfigError("memory is turned off (settings.memory_enabled)")
        return self.services.memory

    async def memories(self, user_id: str) -> list[Any]:
        validate_id(user_id, "user id")
        if self.services.memory is None:
            return []
        records = await asyncio.to_thread(self._memory().list_memories, user_id)
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    async def delete_memory(self, user_id: str, memory_id: str) -> bool:
        validate_id(user_id, "user id")
        return await asyncio.to_thread(self._memory().delete_memory, user_id, memory_id.strip())

    async def delete_all(self, user_id: str) -> dict[str, Any]:
        """Erase everything held about the person: memories, conversations, voice baseline."""
        agent = await self.agent(self.default_options)
        return await agent.delete_user(user_id)

    async def export(self, user_id: str) -> Path:
        """Everything held about the person as a JSON file (for download)."""
        agent = await self.agent(self.default_options)
        data = await agent.export_user(user_id)
        path = self._export_dir / f"empathic-export-{user_id}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        return path
