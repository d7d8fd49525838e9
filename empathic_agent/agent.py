"""The agent facade: build from settings, hold conversations, answer turns.

    async with await Agent.open(Settings.from_env()) as agent:
        result = await agent.respond("alice", "s1", text="I had a rough day")
        async for event in agent.stream("alice", "s1", text="..."):
            ...  # TextChunk(text) events, then the TurnResult

Conversations persist in a LangGraph checkpointer (SQLite under ``memory_dir`` by default), keyed
by user and session, so a conversation resumes after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from empathic_agent.converse.events import Transcript
from empathic_agent.errors import EmpathicError
from empathic_agent.generate.llm import ChatMessage
from empathic_agent.graph.builder import Services, build_graph, build_services
from empathic_agent.graph.state import StepError, TurnContext
from empathic_agent.graph.turn_lock import TurnLocks, locks_for, register_locks
from empathic_agent.ids import split_thread_id, thread_id, validate_id
from empathic_agent.perceive.text import clean_text
from empathic_agent.settings import Settings

_log = logging.getLogger(__name__)

__all__ = ["Agent", "TurnResult", "TextChunk", "AudioChunk", "validate_id", "thread_id", "open_checkpointer"]

@dataclass(frozen=True)
class TextChunk:
    """A piece of the reply's text, as it is generated."""

    text: str


@dataclass(frozen=True)
class AudioChunk:
    """A spoken sentence of the reply (``speak.SpeechAudio``), as soon as it is synthesised."""

    index: int
    audio: Any

    @property
    def text(self) -> str:
        return self.audio.text


@dataclass(frozen=True)
class TurnResult:
    """Everything a turn produced."""

    user_id: str
    session_id: str
    turn_id: str
    user_text: str
    reply: str
    #: Steps that failed and degraded (the turn still got a reply).
    degraded: tuple[StepError, ...] = ()
    #: Seconds per step.
    timings: dict[str, float] = field(default_factory=dict)
    #: Backend, model, time to first chunk, tokens, seed.
    generation: dict[str, Any] = field(default_factory=dict)
    #: The person's fused emotional state after this turn (``FusedState.to_dict()``), or None.
    emotion: dict[str, Any] | None = None
    #: This turn's per-modality readings (``Reading.to_dict()`` by modality).
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The short description of the state that the prompt received.
    perception: str = ""
    #: For a spoken turn: transcript, language, clip facts and timings of what was heard.
    heard: dict[str, Any] = field(default_factory=dict)
    #: For a turn with image(s): frames, faces seen, each frame's face box, status and timings.
    seen: dict[str, Any] = field(default_factory=dict)
    #: How the reply was planned (``Register.to_dict()``): strategy, family, target VAD, tone, pace,
    #: length, rationale.
    register: dict[str, Any] = field(default_factory=dict)
    #: The agent's mood (VAD) after this turn.
    agent_mood: tuple[float, ...] = ()
    #: Memories recalled for this turn (id, kind, text, rank, scores).
    memories: tuple[dict[str, Any], ...] = ()
    #: The spoken reply, sentence by sentence (``speak.SpeechAudio``; empty when not spoken).
    audio_chunks: tuple[Any, ...] = ()
    #: How the reply was spoken: voice, prosody, chunk texts and durations, first-audio latency.
    speech: dict[str, Any] = field(default_factory=dict)
    #: The safety stage's assessment (``SafetyAssessment.to_dict()``: ``level`` and ``route``,
    #: ``crisis``, ``category``, ``dimensions`` with evidence, ``language``, the ``conversation``'s
    #: accumulated risk; on a crisis route the protocol's ``message`` and ``resources``).
    #: {} when the safety stage is off.
    safety: dict[str, Any] = field(default_factory=dict)
    #: The reply guard's work: ``layers``, ``events`` (category, layer, action, attempt — never
    #: content), sentences checked, seconds added.  {} when the guard did not run.
    guard: dict[str, Any] = field(default_factory=dict)

    @property
    def presentations(self) -> tuple[str, ...]:
        """Clinical presentations read in the conversation at this turn (psychosis, mania, …)."""
        return tuple(p["name"] for p in (self.safety.get("clinical") or {}).get("presentations") or ())

    @property
    def guard_events(self) -> tuple[dict[str, Any], ...]:
        """What the reply guard blocked this turn (category, layer, action), oldest first."""
        return tuple(self.guard.get("events") or ())

    @property
    def crisis(self) -> bool:
        """The safety stage routed this turn to the crisis protocol (the reply is the protocol's)."""
        return bool(self.safety.get("crisis"))

    @property
    def risk_level(self) -> str:
        """The conversation's risk level at this turn: none, low, moderate, high or imminent."""
        return str(self.safety.get("level") or "none")

    @property
    def route(self) -> str:
        """What the agent did about the risk: continue, check_in, protocol, escalate, emergency or helper."""
        return str(self.safety.get("route") or "continue")

    @property
    def audio(self) -> Any:
        """The whole spoken reply as one ``speak.SpeechAudio`` (None when not spoken)."""
        if not self.audio_chunks:
            return None
        import numpy as np

        from empathic_agent.speak import SpeechAudio

        first = self.audio_chunks[0]
        gap = np.zeros(int(0.15 * first.sample_rate), dtype=np.float32)  # a breath between sentences
        parts: list[Any] = []
        for c in self.audio_chunks:
            parts += [c.samples, gap]
        return SpeechAudio(sample_rate=first.sample_rate, samples=np.concatenate(parts[:-1]),
                           text=" ".join(c.text for c in self.audio_chunks), voice=first.voice, prosody=first.prosody)

    @property
    def fused_state(self) -> Any:
        """The emotion as a :class:`~empathic_agent.latent.FusedState` (None when not perceived)."""
        if not self.emotion:
            return None
        from empathic_agent.latent import FusedState

        return FusedState.from_dict(self.emotion)

    @property
    def ok(self) -> bool:
        return not self.degraded


class Agent:
    """An empathic agent: a compiled turn graph plus the services and checkpointer it uses."""

    def __init__(self, services: Services, *, checkpointer: Any, _closer: Any = None,
                 locks: TurnLocks | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.checkpointer = checkpointer
        self.graph = build_graph(services, checkpointer=checkpointer)
        self._closer = _closer
        if locks is not None:
            register_locks(checkpointer, locks)
        #: One turn at a time per conversation (shared by every agent on this checkpointer).
        self.locks = locks or locks_for(checkpointer)
        self._owns_locks = locks is not None

    @classmethod
    async def open(cls, settings: Settings | None = None, *, services: Services | None = None,
                   checkpointer: Any = None) -> "Agent":
        """Build an agent; by default conversations persist in SQLite at ``settings.checkpoint_path``."""
        settings = settings or (services.settings if services else Settings.from_env())
        services = services or build_services(settings)
        closer = locks = None
        if checkpointer is None:
            checkpointer, closer = await open_checkpointer(settings)
            if settings.checkpoint_backend == "postgres":
                from empathic_agent.graph.turn_lock import PostgresTurnLocks

                try:
                    locks = await PostgresTurnLocks(settings.postgres_url).open()
                except Exception:
                    await closer.close()
                    raise
        return cls(services, checkpointer=checkpointer, _closer=closer, locks=locks)

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.services.llm.aclose()
        if self.services.memory is not None:
            await asyncio.to_thread(self.services.memory.close)
        if self._owns_locks:
            self._owns_locks = False
            await self.locks.aclose()
        if self._closer is not None:
            await self._closer.close()
            self._closer = None

    async def warm_up(self, *, speak: bool = False) -> dict[str, float]:
        """Load every model now (LLM, encoders, Whisper, face models, memory embedder, voice) and
        run one throwaway turn, so the first real message is answered at full speed.  Nothing is
        stored: the turn runs on an in-memory checkpointer without long-term memory.  Returns
        seconds per part."""
        from langgraph.checkpoint.memory import InMemorySaver

        s = self.services
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        await s.llm.load()
        out["llm"] = time.perf_counter() - t0
        for name in ("text_encoder", "speech", "face", "safety", "planner", "tts"):
            part = getattr(s, name)
            if part is not None and hasattr(part, "load") and (name != "tts" or speak):
                t = time.perf_counter()
                await asyncio.to_thread(part.load)
                out[name] = time.perf_counter() - t
        if s.memory is not None:
            t = time.perf_counter()
            await asyncio.to_thread(s.memory.recall, "warm-up", "hello")  # loads the embedder; reads nothing
            out["memory"] = time.perf_counter() - t
        t = time.perf_counter()
        scratch = Agent(dataclasses.replace(s, memory=None), checkpointer=InMemorySaver())
        image = None
        if s.face is not None:
            from empathic_agent.perceive.face import sample_frame

            image = sample_frame(160)
        await scratch.respond("warm-up", "warm-up", text="Hello, I had a long day.", image=image,
                              speak=speak and s.tts is not None)
        out["first_turn"] = time.perf_counter() - t
        out["total"] = time.perf_counter() - t0
        return {k: round(v, 3) for k, v in out.items()}

    # -- turns -----------------------------------------------------------------------------------
    def _config(self, user_id: str, session_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id(user_id, session_id)}}

    async def stream(self, user_id: str, session_id: str, *, text: str | bytes | None = None,
                     audio: Any = None, image: Any = None, speak: bool | None = None,
                     turn_id: str | None = None, transcripts: bool = False, transcript: Any = None
                     ) -> AsyncIterator[TextChunk | AudioChunk | TurnResult | Transcript]:
        """Run one turn; yield :class:`TextChunk` events as the reply is generated, then the result.

        ``audio`` (bytes of wav/flac/ogg/webm/mp3, a file path, or ``(sample_rate, samples)``) is
        transcribed and read for emotion; typed ``text``, when given too, takes precedence as the
        words of the turn.  ``image`` (JPEG/PNG/WebP bytes, a path, a data URL, a numpy frame, or
        a list of a few webcam frames) is read for the person's facial expression; an image with
        no face, or an unusable one, leaves the face out (noted in ``degraded``), never fails the turn.
        ``speak`` (default ``settings.speak_replies``) speaks the reply: :class:`AudioChunk` events
        arrive sentence by sentence while the text is still streaming.

        ``transcripts`` also yields a :class:`~empathic_agent.converse.events.Transcript` as soon
        as spoken input is transcribed, before the reply (talk mode's captions).  ``transcript``
        is ``audio``'s words when they are transcribed already or under way (a ``Transcript`` or a
        ``concurrent.futures.Future`` of one, e.g. ``SpeechPerception.transcribe_soon``): Whisper
        does not run again.

        Turns of one conversation run one at a time, in the order they arrive (concurrent turns
        would each overwrite the other's exchange); other conversations never wait.
        """
        config = self._config(user_id, session_id)
        self.check_input(text, audio)
        async with self.locks.hold(config["configurable"]["thread_id"]):
            async for event in self._stream(user_id, session_id, config, text=text, audio=audio, image=image,
                                            speak=speak, turn_id=turn_id, transcripts=transcripts,
                                            transcript=transcript):
                yield event

    async def _stream(self, user_id: str, session_id: str, config: dict[str, Any], *, text: Any, audio: Any,
                      image: Any, speak: bool | None, turn_id: str | None, transcripts: bool = False,
                      transcript: Any = None) -> AsyncIterator[TextChunk | AudioChunk | TurnResult | Transcript]:
        text = text if text is not None else ""
        turn_id = turn_id or uuid.uuid4().hex
        final: dict[str, Any] = {}
        speak = self.settings.speak_replies if speak is None else bool(speak)
        channel: asyncio.Queue[str | None] | None = asyncio.Queue() if speak else None
        audio_chunks: list[Any] = []
        async for mode, payload in self.graph.astream(
            {"input_text": text if isinstance(text, str) else bytes(text).decode("utf-8", "replace"),
             "turn_id": turn_id},
            config=config, context=TurnContext(user_id=user_id, session_id=session_id, audio=audio, images=image,
                                               speak=speak, text_channel=channel, transcript=transcript),
            stream_mode=["custom", "values"],
        ):
            if mode == "custom" and isinstance(payload, dict) and payload.get("type") == "text":
                yield TextChunk(payload["text"])
            elif mode == "custom" and isinstance(payload, dict) and payload.get("type") == "heard":
                if transcripts:
                    yield Transcript(payload["text"])
            elif mode == "custom" and isinstance(payload, dict) and payload.get("type") == "audio":
                audio_chunks.append(payload["audio"])
                yield AudioChunk(payload["index"], payload["audio"])
            elif mode == "values":
                final = payload
        yield TurnResult(
            user_id=user_id, session_id=session_id, turn_id=turn_id,
            user_text=final.get("user_text", ""), reply=final.get("reply", ""),
            degraded=tuple(final.get("degraded", [])), timings=dict(final.get("timings", {})),
            generation=dict(final.get("generation", {})),
            emotion=final.get("emotion"), readings=dict(final.get("readings", {})),
            perception=final.get("perception", ""), heard=dict(final.get("heard") or {}),
            seen=dict(final.get("seen") or {}), register=dict(final.get("register") or {}),
            agent_mood=tuple(final.get("agent_mood") or ()), memories=tuple(final.get("memories") or ()),
            audio_chunks=tuple(audio_chunks), speech=dict(final.get("speech") or {}),
            safety=dict(final.get("safety") or {}), guard=dict(final.get("guard") or {}),
        )

    def check_input(self, text: str | bytes | None, audio: Any = None) -> None:
        """Raise the turn's :class:`InputError` now (empty, too long, ...): callers that must answer
        before the turn starts (e.g. a streaming HTTP response) check first; ``stream`` checks too,
        before touching the conversation, so bad input leaves no trace in the history."""
        if audio is None:
            clean_text(text, max_chars=self.settings.max_input_chars)

    async def respond(self, user_id: str, session_id: str, *, text: str | bytes | None = None,
                      audio: Any = None, image: Any = None, speak: bool | None = None,
                      turn_id: str | None = None) -> TurnResult:
        """Run one turn and return its result."""
        result: TurnResult | None = None
        async for event in self.stream(user_id, session_id, text=text, audio=audio, image=image, speak=speak,
                                       turn_id=turn_id):
            if isinstance(event, TurnResult):
                result = event
        assert result is not None
        return result

    async def seed_history(self, user_id: str, session_id: str, turns: Sequence[tuple[str, str]], *,
                           strategies: Sequence[str] = ()) -> None:
        """Start a conversation from a transcript: ``turns`` as (role, text), role "user" or
        "assistant", oldest first, and the support ``strategies`` already used.  The next turn then
        runs with this history, exactly as if it had been said here (reply-level evaluations put a
        data set's dialogue so far in front of the agent this way).  The conversation must be new."""
        from langchain_core.messages import AIMessage, HumanMessage

        from empathic_agent.errors import ConfigError

        validate_id(user_id, "user id")
        validate_id(session_id, "session id")
        config = self._config(user_id, session_id)
        snap = await self.graph.aget_state(config)
        if (snap.values or {}).get("messages"):
            raise ConfigError(f"conversation {user_id}/{session_id} already has messages; seed only a new one")
        messages = []
        for i, (role, text) in enumerate(turns):
            if role not in ("user", "assistant"):
                raise ValueError(f"turn {i}: role must be 'user' or 'assistant', not {role!r}")
            cls = HumanMessage if role == "user" else AIMessage
            messages.append(cls(content=str(text), id=f"seed-{i}"))
        if not messages and not strategies:
            return
        # As the graph's last step: nothing is left to run, so the next turn starts from the top.
        last = "remember" if "remember" in self.graph.nodes else "generate"
        await self.graph.aupdate_state(config, {"messages": messages, "strategies": list(strategies)}, as_node=last)

    async def record_interrupted(self, user_id: str, session_id: str, turn_id: str, user_text: str,
                                 spoken: str) -> None:
        """Keep in the history only what the person heard of an interrupted reply: the turn's
        words and ``spoken`` (marked interrupted), replacing whatever the cancelled turn stored
        under the same ``turn_id``; a long-term memory of the turn keeps only ``spoken`` too."""
        from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage

        config = self._config(user_id, session_id)
        messages: list[Any] = [HumanMessage(content=user_text, id=f"{turn_id}-user")]
        async with self.locks.hold(config["configurable"]["thread_id"]):
            snap = await self.graph.aget_state(config)
            stored = {getattr(m, "id", None) for m in (snap.values or {}).get("messages", [])}
            if spoken.strip():
                messages.append(AIMessage(content=spoken, id=f"{turn_id}-agent",
                                          additional_kwargs={"interrupted": True}))
            elif f"{turn_id}-agent" in stored:  # nothing of the reply was heard: it was not said
                messages.append(RemoveMessage(id=f"{turn_id}-agent"))
            last = "remember" if "remember" in self.graph.nodes else "generate"
            await self.graph.aupdate_state(config, {"messages": messages}, as_node=last)
        if self.services.memory is not None:
            # The turn may have been remembered already (it finished before the person spoke):
            # its long-term memory keeps only what they heard too.
            try:
                await asyncio.to_thread(self.services.memory.correct_reply, user_id, turn_id, spoken)
            except EmpathicError as exc:
                _log.warning("could not correct the memory of an interrupted turn: %s", exc)

    def converse(self, user_id: str, session_id: str, frames: Any, *, sample_rate: int = 16000,
                 options: Any = None, speak: bool = True, vad: Any = None, turn_end: Any = None
                 ) -> AsyncIterator[Any]:
        """A spoken conversation over a stream of audio: ``frames`` is an async iterator of mono
        PCM chunks (PCM16 ``bytes`` or numpy arrays) at ``sample_rate``; ``options`` a
        :class:`~empathic_agent.converse.TalkOptions`.  Yields the events of
        :mod:`empathic_agent.converse.events` and the turns' own ``TextChunk`` / ``AudioChunk`` /
        ``TurnResult`` (see :func:`empathic_agent.converse.session.converse`; ``vad`` and
        ``turn_end`` replace the packaged listening models)."""
        from empathic_agent.converse.session import converse

        return converse(self, user_id, session_id, frames, sample_rate=sample_rate, options=options, speak=speak,
                        vad=vad, turn_end=turn_end)

    # -- health ----------------------------------------------------------------------------------
    async def health(self, *, timeout_s: float = 5.0) -> dict[str, str]:
        """What is broken right now, by part ("conversations", "memory", "llm") with the kind of
        failure (never an address or a path); empty when every part answers.  Each failure is
        logged.  A failed memory store is probed with a real write, so this says "ready" again
        as soon as the store has recovered."""
        async def conversations() -> None:
            await list_threads_probe(self.checkpointer)

        async def memory() -> None:
            assert self.services.memory is not None  # checked only when memory is on (below)
            store = self.services.memory.store
            reason = await asyncio.to_thread(store.health)
            if reason:
                raise _NotReady(store.failure or "unavailable", reason)

        checks = {"conversations": conversations, "llm": self.services.llm.health}
        if self.services.memory is not None:
            checks["memory"] = memory
        problems: dict[str, str] = {}
        for part, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001 — reported, not raised
                kind = ("timeout" if isinstance(exc, asyncio.TimeoutError)
                        else exc.args[0] if isinstance(exc, _NotReady) else type(exc).__name__)
                problems[part] = kind
                _log.warning("not ready: %s: %s", part, exc.args[-1] if isinstance(exc, _NotReady) else exc)
        return problems

    # -- data rights -----------------------------------------------------------------------------
    async def sessions(self, user_id: str) -> list[str]:
        """Session ids of the user's saved conversations."""
        validate_id(user_id, "user id")
        threads = await list_threads(self.checkpointer)
        return sorted(s for u, s in (split_thread_id(t) for t in threads) if u == user_id)

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything held about a person: conversations (every session), memories, voice baseline."""
        conversations = {}
        for session in await self.sessions(user_id):
            conversations[session] = [m.to_dict() for m in await self.history(user_id, session)]
        out: dict[str, Any] = {"user_id": user_id, "conversations": conversations}
        if self.services.memory is not None:
            out["memories"] = await asyncio.to_thread(self.services.memory.export_user, user_id)
        if self.services.speech is not None:
            out["voice_baseline"] = await asyncio.to_thread(self.services.speech.export_user, user_id)
        return out

    async def delete_user(self, user_id: str) -> dict[str, Any]:
        """Erase a person: conversation checkpoints, memories and voice baseline. Returns counts."""
        sessions = await self.sessions(user_id)
        for session in sessions:
            key = thread_id(user_id, session)
            async with self.locks.hold(key):  # never under a running turn, which would write it back
                await self.checkpointer.adelete_thread(key)
        conn = getattr(self.checkpointer, "conn", None)
        if sessions and conn is not None and hasattr(conn, "execute") and self._closer is conn:
            await conn.execute("VACUUM")  # erased means gone from disk, not left in free pages
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out: dict[str, Any] = {"user_id": user_id, "conversations": len(sessions)}
        if self.services.memory is not None:
            out["memories"] = await asyncio.to_thread(self.services.memory.delete_user, user_id)
        if self.services.speech is not None:
            out["voice_baseline"] = await asyncio.to_thread(self.services.speech.forget_user, user_id)
        return out

    async def trajectory(self, user_id: str, session_id: str) -> list[dict[str, Any]]:
        """The conversation's emotional trajectory, one entry per turn (fused and per-modality
        valence/arousal/dominance, top category, mixed signals), oldest first."""
        snap = await self.graph.aget_state(self._config(user_id, session_id))
        return list((snap.values or {}).get("emotion_trajectory") or [])

    async def history(self, user_id: str, session_id: str) -> list[ChatMessage]:
        """The conversation so far, oldest first (including fallback replies of failed generations)."""
        snap = await self.graph.aget_state(self._config(user_id, session_id))
        out: list[ChatMessage] = []
        for m in (snap.values or {}).get("messages", []):
            role = "user" if m.type == "human" else "assistant"
            text = m.content if isinstance(m.content, str) else str(m.content)
            out.append(ChatMessage(role, text, interrupted=bool((m.additional_kwargs or {}).get("interrupted"))))
        return out


class _NotReady(Exception):
    """A part is broken: (short kind for clients, full reason for the log)."""


async def list_threads_probe(checkpointer: Any) -> None:
    """Read one checkpoint (or none): the store answers."""
    async for _item in checkpointer.alist(None, limit=1):
        break


async def list_threads(checkpointer: Any) -> set[str]:
    """Thread ids (``user/session``) that have checkpoints."""
    threads: set[str] = set()
    async for item in checkpointer.alist(None):
        threads.add(item.config["configurable"]["thread_id"])
    return threads


async def open_checkpointer(settings: Settings) -> tuple[Any, Any]:
    """The conversation store named by ``settings.checkpoint_backend``: (saver, closer)."""
    if settings.checkpoint_backend == "postgres":
        return await open_postgres_checkpointer(settings.postgres_url)
    return await open_sqlite_checkpointer(settings.checkpoint_path)


async def open_postgres_checkpointer(url: str) -> tuple[Any, Any]:
    """An AsyncPostgresSaver on a connection pool (tables created if missing), for several
    server processes sharing conversations."""
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool
    except ImportError as exc:
        from empathic_agent.errors import ConfigError

        raise ConfigError("checkpoint_backend=postgres needs the 'scale' extra "
                          "(pip install 'empathic-agent[scale]')") from exc
    # ``check``: a connection is tested before each use, so after PostgreSQL restarts the first turn
    # gets a fresh connection instead of an error from a dead one.
    pool = AsyncConnectionPool(conninfo=url, min_size=1, max_size=8, open=False,
                               check=AsyncConnectionPool.check_connection,
                               kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    try:
        await pool.open(wait=True, timeout=15)
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]  # a dict_row pool, as the saver wants
        await saver.setup()
    except Exception as exc:
        await pool.close()
        from empathic_agent.errors import ConfigError

        raise ConfigError(f"cannot use the PostgreSQL checkpoint store at {_redact(url)}: {exc}") from exc
    return saver, pool


def _redact(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


async def open_sqlite_checkpointer(path: Path) -> tuple[Any, Any]:
    """An AsyncSqliteSaver on ``path`` (WAL mode: durable commits, readers don't block the writer)."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from empathic_agent.private import private_dir, private_file

    path = Path(path)
    private_dir(path.parent)
    conn = await aiosqlite.connect(str(path))
    await conn.execute("PRAGMA journal_mode=WAL")
    private_file(path)
    await conn.execute("PRAGMA synchronous=FULL")
    saver = AsyncSqliteSaver(conn)
    await saver.setup()
    return saver, conn
