"""The turn graph's nodes, one per step, each a verb returning only the keys it owns.

Nodes get long-lived services (models, stores) from the closure built by :func:`make_nodes`, and
per-run context (user, session) from LangGraph's runtime. Generation streams its text through
LangGraph's custom stream (``{"type": "text", "text": ...}`` events) so every front end — CLI, web
UI, HTTP API — renders tokens as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Callable, cast

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from empathic_agent.errors import EmpathicError, EmptyInputError, LLMError
from empathic_agent.generate.llm import GenerationOptions
from empathic_agent.generate.prompt import build_prompt, system_prompt
from empathic_agent.graph.state import StepError, TurnContext, TurnState
from empathic_agent.perceive.text import clean_text
from empathic_agent.safety.guard import GuardedRelease

if TYPE_CHECKING:
    from empathic_agent.graph.builder import Services

__all__ = ["make_nodes", "FALLBACK_REPLY", "CRISIS_REGISTER"]

log = logging.getLogger(__name__)

#: What the person reads when the language model fails. It must not pretend to be a reply, must not
#: lose their message (it stays in the history), and must invite them to go on.
FALLBACK_REPLY = (
    "I'm sorry — I couldn't form a reply just now because my language model is not responding. "
    "Your message is saved; please try again in a moment."
)


#: How the agent sounds and plans on a crisis turn: calm, warm, steady (the voice follows it).
CRISIS_REGISTER: dict[str, Any] = {
    "strategy": "Crisis protocol", "family": "safety",
    "target": {"valence": 0.15, "arousal": -0.45, "dominance": 0.25},
    "tone": ["calm", "warm", "steady", "clear"], "pace": "slow", "length": "medium", "notes": [],
}


def _turn_ids(messages: Any) -> set[str]:
    """Turn ids of conversation messages (their ids are ``<turn_id>-user`` / ``<turn_id>-agent``)."""
    out = set()
    for m in messages:
        mid = getattr(m, "id", None) or ""
        for suffix in ("-user", "-agent"):
            if mid.endswith(suffix):
                out.add(mid[: -len(suffix)])
    return out


def make_nodes(services: "Services") -> dict[str, Callable[..., Any]]:
    settings = services.settings
    own_embedder: list[Any] = []  # best-of-n replies without memory or learned planner: one of their own

    def relevance_embedder() -> Any:
        """The frozen MiniLM another service already holds (memory's, else the learned planner's, as
        the builder shares it), so best-of-n loads no second copy; its own only when neither exists."""
        if services.memory is not None:
            return services.memory.embedder
        from empathic_agent.memory.embedder import MiniLMEmbedder, load_embedder

        shared = getattr(services.planner, "embedder", None)
        if isinstance(shared, MiniLMEmbedder):
            return shared
        if not own_embedder:
            own_embedder.append(load_embedder(settings))
        return own_embedder[0]

    async def perceive(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Clean and validate the person's input (transcribing their voice, if they spoke) and
        append it to the conversation."""
        t0 = time.perf_counter()
        audio = runtime.context.audio if runtime.context is not None else None
        heard: dict[str, Any] = {}
        speech_reading: dict[str, Any] = {}
        errors: list[StepError] = []
        typed = state.get("input_text") or ""
        if audio is not None and services.speech is not None:
            early = runtime.context.transcript
            if early is not None:
                result = await asyncio.to_thread(services.speech.perceive, audio, runtime.context.user_id,
                                                 transcript=early)
            else:
                result = await asyncio.to_thread(services.speech.perceive, audio, runtime.context.user_id)
            heard = {"transcript": result.text, "language": getattr(result.transcript, "language", None),
                     "clip": result.clip_info, "timings": result.timings}
            if result.speech_reading is not None:
                speech_reading = result.speech_reading.to_dict()
            # Talk mode shows the transcript as soon as it exists, before the reply.
            get_stream_writer()({"type": "heard", "text": result.text})
            errors += [StepError(step="perceive", error="SpeechError", message=m) for m in result.errors]
            if not typed.strip():
                if not result.heard_speech:
                    raise EmptyInputError("no speech was recognised in the audio"
                                          + (f" ({'; '.join(result.errors)})" if result.errors else ""))
                typed = result.text
        elif audio is not None:
            if not typed.strip():  # else "the message is empty", which is not what happened
                raise EmptyInputError("voice input is not enabled on this agent (settings.encoders lacks "
                                      "'speech'); please type the message")
            errors.append(StepError(step="perceive", error="SpeechUnavailable",
                                    message="voice input is not enabled (settings.encoders lacks 'speech')"))
        images = runtime.context.images if runtime.context is not None else None
        seen: dict[str, Any] = {}
        face_reading: dict[str, Any] = {}
        if images is not None and services.face is not None:
            try:
                looked = await asyncio.to_thread(services.face.perceive, images)
            except EmpathicError as exc:  # a failing face model degrades the turn, never fails it
                errors.append(StepError(step="perceive", error=type(exc).__name__, message=str(exc)))
            else:
                seen = looked.to_dict()
                seen.pop("face_reading", None)
                if looked.face_reading is not None:
                    face_reading = looked.face_reading.to_dict()
                errors += [StepError(step="perceive", error="ImageError", message=m) for m in looked.errors]
        elif images is not None:
            errors.append(StepError(step="perceive", error="FaceUnavailable",
                                    message="face input is not enabled (settings.encoders lacks 'face')"))
        text = clean_text(typed, max_chars=settings.max_input_chars)
        turn_id = state.get("turn_id")
        return {
            "user_text": text,
            "heard": heard,
            "speech_reading": speech_reading,
            "seen": seen,
            "face_reading": face_reading,
            "messages": [HumanMessage(content=text, id=f"{turn_id}-user" if turn_id else None)],
            # Per-turn fields start empty for every turn.
            "timings": Overwrite({"perceive": time.perf_counter() - t0}),
            "degraded": Overwrite(errors),
        }

    async def encode(state: TurnState) -> dict[str, Any]:
        """Read the person's emotion from each modality and fuse it with the previous turn's state."""
        from empathic_agent.latent import FusedState, Reading, fuse, temporal_prior

        t0 = time.perf_counter()
        now = time.time()
        readings = {}
        if state.get("speech_reading"):
            readings["speech"] = Reading.from_dict(state["speech_reading"])
        if state.get("face_reading"):  # no face seen -> no face reading (not a neutral one)
            readings["face"] = Reading.from_dict(state["face_reading"])
        errors: list[StepError] = []
        prior = None
        if state.get("emotion"):
            previous = FusedState.from_dict(state["emotion"])
            elapsed = max(0.0, now - float(state.get("emotion_at") or now))
            prior = temporal_prior(previous, turns=1.0, seconds=elapsed)
        if services.text_encoder is not None:
            try:
                # Blocking torch inference: off the event loop, so other users' turns keep streaming.
                readings["text"] = await asyncio.to_thread(_read_text, services.text_encoder, state, prior)
            except EmpathicError as exc:  # an encoder failing degrades the turn, never fails it
                errors.append(StepError(step="encode", error=type(exc).__name__, message=str(exc)))
        out: dict[str, Any] = {"readings": {m: r.to_dict() for m, r in readings.items()}, "degraded": errors}
        if readings or prior is not None:
            fused = fuse(list(readings.values()), prior=prior)
            out.update(
                emotion=fused.to_dict(), emotion_at=now, perception=fused.describe(),
                emotion_trajectory=[_trajectory_entry(state.get("turn_id"), now, fused, readings)],
            )
        else:
            out["perception"] = ""
        out["timings"] = {"encode": time.perf_counter() - t0}
        return out

    async def recall(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Recall this person's memories that matter now, by meaning and by mood."""
        from empathic_agent.latent import FusedState

        t0 = time.perf_counter()
        fused = FusedState.from_dict(state["emotion"]) if state.get("emotion") else None
        # Exchanges still in the prompt's history window are already in front of the model: recalling
        # them again would only repeat them (and lengthen the prompt, which the small model pays
        # for in time to first token), so they are skipped and the next memories take their place.
        in_window = _turn_ids(state.get("messages", [])[-settings.history_messages:])
        memory = services.memory
        assert memory is not None  # this node exists only with memory (see the end of make_nodes)
        k = memory.options.k
        try:
            # Isolation is the store's job: it only ever searches this user's own collection.
            result = await asyncio.to_thread(memory.recall, runtime.context.user_id,
                                             state["user_text"], fused, k=k + len(in_window))
        except EmpathicError as exc:
            return {"memories": [], "memory_prompt": "", "timings": {"recall": time.perf_counter() - t0},
                    "degraded": [StepError(step="recall", error=type(exc).__name__, message=str(exc))]}
        kept = [m for m in result.memories
                if not (m.record.session_id == runtime.context.session_id and m.record.turn_id in in_window)][:k]
        memories = [
            {"id": m.record.id, "kind": m.record.kind, "text": m.record.text, "rank": rank,
             "top_category": m.record.top_category, "created_at": m.record.created_at,
             "scores": m.scores.to_dict()}
            for rank, m in enumerate(kept, start=1)
        ]
        return {"memories": memories,
                "memory_prompt": memory.format_memories_for_prompt(kept),
                "timings": {"recall": time.perf_counter() - t0}}

    async def remember(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Store the exchange as an episode tagged with the person's emotion (and stated facts)."""
        from empathic_agent.latent import FusedState

        t0 = time.perf_counter()
        safety = state.get("safety") or {}
        if (safety.get("crisis") or safety.get("level", "none") != "none"
                or (safety.get("clinical") or {}).get("presentations")):
            # A disclosure of risk (a crisis, or a warning sign the agent checked in on) stays in
            # the conversation (the person can see, export and delete it) but is not turned into a
            # long-term memory that resurfaces in later recall.  The same for a clinical presentation
            # (a delusion or a compulsion recalled later would feed it).
            return {"remembered": [], "timings": {"remember": time.perf_counter() - t0}}
        if state.get("degraded") and any(e["step"] == "generate" for e in state["degraded"]):
            # No real reply: the person's words stay in the conversation, but an exchange that did
            # not happen is not remembered.
            return {"remembered": [], "timings": {"remember": time.perf_counter() - t0}}
        fused = FusedState.from_dict(state["emotion"]) if state.get("emotion") else None
        ctx = runtime.context
        memory = services.memory
        assert memory is not None  # this node exists only with memory (see the end of make_nodes)
        try:
            result = await asyncio.to_thread(
                memory.remember_turn, ctx.user_id, ctx.session_id,
                state.get("turn_id") or "turn", state["user_text"], state.get("reply", ""), fused)
        except EmpathicError as exc:
            return {"remembered": [], "timings": {"remember": time.perf_counter() - t0},
                    "degraded": [StepError(step="remember", error=type(exc).__name__, message=str(exc))]}
        return {"remembered": [r.id for r in result.records], "timings": {"remember": time.perf_counter() - t0}}

    async def plan(state: TurnState) -> dict[str, Any]:
        """Decide how to answer — support strategy, emotional expression, tone, pace, length — and
        move the agent's mood (decay to the persona's baseline, contagion from the person)."""
        from empathic_agent.latent import FusedState
        from empathic_agent.plan import PlanInput, plan_register, update_mood

        t0 = time.perf_counter()
        persona = services.persona
        fused = FusedState.from_dict(state["emotion"]) if state.get("emotion") else None
        turn_id = state.get("turn_id")
        earlier = list(state.get("emotion_trajectory") or [])
        if earlier and fused is not None and (turn_id is None or earlier[-1].get("turn_id") == turn_id):
            earlier = earlier[:-1]  # the last entry is this turn's own
        previous = cast("tuple[float, float, float]", tuple(state["agent_mood"])) if state.get("agent_mood") else None
        mood = update_mood(previous, persona,
                           perceived=fused.mean if fused is not None else None,
                           confidence=fused.confidence if fused is not None else 0.0)
        x = PlanInput(
            state=fused.mean if fused is not None else None,
            confidence=fused.confidence if fused is not None else 0.0,
            top_category=fused.top_category if fused is not None else "neutral",
            mixed_signals=bool(fused.mixed_signals.flag) if fused is not None else False,
            valence_history=tuple(float(e["fused"]["v"]) for e in earlier if e.get("fused")),
            turn_index=sum(1 for m in state.get("messages", []) if isinstance(m, HumanMessage)),
            previous_strategies=tuple(state.get("strategies") or ()),
            text=state.get("user_text", ""),
            memories=tuple(state.get("memories") or ()),
            mood=mood,
            risk_level=str((state.get("safety") or {}).get("level") or "none"),
            presentations=tuple(p["name"] for p in ((state.get("safety") or {}).get("clinical") or {}).get("presentations") or ()),
            clinical=str(((state.get("safety") or {}).get("clinical") or {}).get("register") or ""),
            clinical_vetted=settings.safety_clinical_replies == "vetted",
            careful_vetted=settings.safety_careful_replies == "vetted",
        )
        errors: list[StepError] = []
        timings: dict[str, float] = {}
        if services.planner is not None:
            from empathic_agent.plan.learned import Dialogue

            said = [m for m in state.get("messages", []) if isinstance(m, AIMessage)]
            dialogue = Dialogue(text=x.text, agent_text=str(said[-1].content) if said else "",
                                previous_strategies=x.previous_strategies, turn_index=x.turn_index, state=x.state,
                                confidence=x.confidence, top_category=x.top_category,
                                valence_history=x.valence_history)
            t1 = time.perf_counter()
            try:
                # One MiniLM forward (blocking torch): off the event loop.
                learned = await asyncio.to_thread(services.planner.distribution, dialogue)
                x = dataclasses.replace(x, learned=learned)
            except EmpathicError as exc:  # the rules plan instead; the turn goes on
                errors.append(StepError(step="plan", error=type(exc).__name__, message=str(exc)))
            timings["plan.learned"] = time.perf_counter() - t1
        register = plan_register(x, persona)
        return {"register": register.to_dict(), "agent_mood": list(mood), "strategies": [register.strategy],
                "timings": {"plan": time.perf_counter() - t0, **timings}, "degraded": errors}

    def _system_prompt() -> str:
        return system_prompt(settings.system_prompt, services.persona)

    async def generate(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Ask the LLM for the reply under the planned register, streaming it through the reply
        guard (each sentence is released only after it passed); on a guard hit regenerate once
        under a stricter register, then fall back to a vetted reply; degrade to a fallback reply if
        the LLM fails.  A clinical register with a vetted reply skips the LLM."""
        from empathic_agent.plan import Register
        from empathic_agent.plan.clinical import STRICT_LINES

        t0 = time.perf_counter()
        channel = runtime.context.text_channel if runtime.context is not None else None
        stream_writer = get_stream_writer()

        def write(text: str, *, whole: bool = False) -> None:
            if not text:
                return
            stream_writer({"type": "text", "text": text})
            if channel is not None:  # the speak step reads the reply as it is released
                # Text the guard released is whole sentences.  A newline tells the voice's
                # sentence splitter so: without it the last sentence's end is only seen when the
                # next sentence's first word arrives — after the guard has passed that whole next
                # sentence — which held the first audio back by one sentence (0.3-1.4 s measured).
                channel.put_nowait(text + "\n" if whole else text)
        register = Register.from_dict(state["register"]) if state.get("register") else None
        safety = state.get("safety") or {}
        clinical = safety.get("clinical") or {}
        guard = services.safety.guard if services.safety is not None else None
        guard_ctx = None
        person = [str(m.content) for m in state.get("messages", []) if isinstance(m, HumanMessage)]
        if guard is not None:
            guard_ctx = services.safety.guard_context(safety, person[-2:])
        check_in = safety.get("message") if safety.get("route") == "check_in" else ""
        # A careful turn opens with the protocol's vetted lead-in instead of the model's words unless
        # the responder is trusted with the careful register: on development conversations the
        # embedded model answered "no, im safe ... just a bad night" with "I am sorry for your loss."
        # and two rejections with "It's great that you've been able to get out there" (README).
        careful = str(safety.get("careful") or "") if check_in and settings.safety_careful_replies == "vetted" else ""
        # A check-in on a message in a language the agent does not read: the vetted check-in alone
        # (it opens with the protocol's language note).  The embedded model reads English only;
        # its words before the check-in were nonsense ("Sounds like a good plan for the situation."
        # to a Tagalog wish not to wake up, seen in the web UI on 2026-12-06).
        lang = safety.get("language") or {}
        unread = bool(check_in) and not lang.get("covered", True)
        # The same for an ordinary message surely written in a language the responder does not
        # write (settings.reply_languages): an honest vetted reply, not the model's guess (the
        # embedded English model answered a tired Spanish message "Can I help with that? Can I
        # find some books on the topic?").  Short or unsure messages count as English.
        codes = settings.reply_language_codes
        foreign = (services.safety is not None and safety.get("route", "continue") == "continue"
                   and not lang.get("covered", True) and codes is not None and lang.get("code") not in codes)

        def prompt_for(reg: "Register | None") -> list[Any]:
            return build_prompt(_system_prompt(), state.get("messages", []),
                                max_messages=settings.history_messages,
                                perception=state.get("perception", ""),
                                memories=state.get("memory_prompt", ""),
                                register=reg.prompt_lines() if reg is not None else "",
                                reply_hint=reg.reply_hint() if reg is not None else "")

        released: list[str] = []
        errors: list[StepError] = []
        events: list[dict[str, Any]] = []
        guard_s: list[float] = []
        second_looks = 0  # the guard probe's whole-reply looks (their time is in guard_s too)
        fallback = False
        backend, model = services.llm.name, services.llm.model_name
        first_chunk_s: float | None = None
        n_chunks = 0
        candidates: dict[str, Any] = {}

        def release(text: str, *, whole: bool = True) -> None:
            released.append(text)
            write(text, whole=whole)

        def chunks(reg: "Register | None", n: int) -> "AsyncGenerator[str, None]":
            """The model's reply as it streams; with ``n`` > 1 candidates, the one closest to the
            person's words, whole (:mod:`~empathic_agent.generate.candidates`)."""
            if n <= 1:  # LLM.stream is an async generator
                return cast("AsyncGenerator[str, None]",
                            services.llm.stream(prompt_for(reg), GenerationOptions.from_settings(settings)))
            return best_of(reg, n)

        async def best_of(reg: "Register | None", n: int) -> "AsyncGenerator[str, None]":
            from empathic_agent.generate.candidates import choose_reply, sample_replies

            replies = await sample_replies(services.llm, prompt_for(reg), GenerationOptions.from_settings(settings), n)
            picked = await choose_reply(relevance_embedder(), person[-1] if person else "", replies)
            candidates.update(n=n, chosen=picked.chosen, relevance=list(picked.relevance))
            yield picked.reply

        async def attempt(reg: "Register | None", number: int, *, stream: bool, n: int = 1) -> bool:
            """One generation through the guard; True when the whole reply passed."""
            nonlocal first_chunk_s, n_chunks, second_looks
            gate = GuardedRelease(guard, guard_ctx) if guard is not None and guard_ctx is not None else None
            pending: list[str] = []
            sep = " " if released else ""
            # Closed as soon as the guard stops reading: the backend cancels its generation now.
            async with contextlib.aclosing(chunks(reg, n)) as source:
                async for chunk in source:
                    if first_chunk_s is None:
                        first_chunk_s = time.perf_counter() - t0
                    n_chunks += 1
                    out = gate.feed(chunk) if gate is not None else chunk
                    if gate is not None and gate.blocked:
                        break
                    if out:
                        text = (sep + out.lstrip()) if sep else out
                        if not stream:
                            pending.append(text)
                        else:  # without a guard the chunks are raw tokens, not sentences
                            release(text, whole=gate is not None)
                        sep = ""
            if gate is not None and not gate.blocked:
                out = gate.flush(drop_unfinished=True)
                if out:
                    (release if stream else pending.append)((sep + out.lstrip()) if sep else out)
            if gate is not None:
                guard_s.extend(gate.timings)
                second_looks += gate.second_looks
                if gate.blocked:
                    v = gate.verdict
                    assert v is not None  # blocked means a verdict
                    action = "regenerate" if number == 1 else "fallback"
                    events.append(v.event(action, number))
                    log.warning("guard: blocked a reply (category=%s, layer=%s, action=%s)", v.category, v.source, action)
                    return False
            for text in pending:
                release(text)
            return True

        try:
            vetted = clinical.get("message") if register is not None and register.vetted else ""
            if unread:
                backend, model = "safety-protocol", services.safety.protocol.name if services.safety else ""
                release(str(check_in))
                check_in = ""
            elif foreign:
                assert services.safety is not None  # part of ``foreign``
                backend, model = "language-note", services.safety.protocol.name
                release(services.safety.protocol.language_only(services.safety.locale))
            elif vetted:
                backend, model = "clinical-register", services.safety.protocol.name if services.safety else ""
                release(vetted)
            elif careful:
                backend, model = "careful-register", services.safety.protocol.name if services.safety else ""
                release(careful)
            else:
                passed = await attempt(register, 1, stream=True, n=settings.reply_candidates)
                if not passed:
                    base = register or Register("Reflection of feelings", (0.2, -0.3, 0.1), ("calm", "warm"), "slow", "short")
                    strict = dataclasses.replace(base, notes=tuple(base.notes) + STRICT_LINES, length="short")
                    passed = await attempt(strict, 2, stream=False)
                    if not passed:
                        fallback_text = clinical.get("message") or services.safety.protocol.guard_fallback(
                            services.safety.locale)
                        release((" " if released else "") + fallback_text)
            if not "".join(released).strip():
                raise LLMError("the model returned an empty reply")
            if check_in:
                # Low risk: the reply, then the protocol's vetted check-in (a small model cannot be
                # trusted to ask about safety by itself).
                release(f" {check_in}")
            reply = "".join(released).strip()
        except LLMError as exc:
            fallback = True
            errors.append(StepError(step="generate", error=type(exc).__name__, message=str(exc)))
            # Anything already released stays visible; the fallback explains why it stopped.
            head = "".join(released).strip()
            reply = (head + "\n\n" if head else "") + FALLBACK_REPLY
            write(("\n\n" if head else "") + FALLBACK_REPLY)
        finally:
            if channel is not None:
                channel.put_nowait(None)  # end of the reply, whatever happened
        turn_id = state.get("turn_id")
        guard_info = {"layers": guard.layers if guard is not None else "off", "events": events,
                      "sentences": len(guard_s) - second_looks, "second_looks": second_looks,
                      "seconds": round(sum(guard_s), 5),
                      "max_sentence_ms": round(1000 * max(guard_s), 3) if guard_s else 0.0}
        return {
            "reply": reply,
            "messages": [AIMessage(content=reply, id=f"{turn_id}-agent" if turn_id else None,
                                   additional_kwargs={"fallback": True} if fallback else {})],
            "generation": {
                "backend": backend, "model": model,
                # Measured here, not read from llm.last_stats: turns of many users run concurrently.
                "time_to_first_chunk_s": first_chunk_s,
                "chunks": n_chunks,
                "seed": settings.seed,
                **({"candidates": candidates} if candidates else {}),
            },
            "guard": guard_info,
            "timings": {"generate": time.perf_counter() - t0},
            "degraded": errors,
        }

    async def speak(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Speak the reply in the planned register, sentence by sentence as it is generated.
        The audio goes out as ``{"type": "audio"}`` stream events; a failing voice degrades the
        turn to text, never fails it."""
        t0 = time.perf_counter()
        ctx = runtime.context
        channel = ctx.text_channel if ctx is not None else None
        if channel is None:
            return {"speech": {}}
        errors: list[StepError] = []
        if services.tts is None:
            while await channel.get() is not None:  # drain: generation must not wait on us
                pass
            return {"speech": {}, "timings": {"speak": time.perf_counter() - t0},
                    "degraded": [StepError(step="speak", error="TTSUnavailable",
                                           message="voice replies are not enabled (settings.speak_replies)")]}
        from empathic_agent.speak import SpeechAudio, StreamStats, prosody_for, speak_stream

        write = get_stream_writer()
        register = state.get("register") or {}
        target = register.get("target") or {"valence": 0.0, "arousal": 0.0, "dominance": 0.0}
        vad = (target["valence"], target["arousal"], target["dominance"])

        async def reply_text():
            while (chunk := await channel.get()) is not None:
                yield chunk

        stats = StreamStats()
        chunks: list[dict[str, Any]] = []
        prosody = None
        try:
            prosody = prosody_for(vad, services.tts.profile, pace=register.get("pace"))
            async for item in speak_stream(services.tts, reply_text(), prosody, stats=stats):
                if isinstance(item, SpeechAudio):
                    write({"type": "audio", "index": len(chunks), "audio": item})
                    chunks.append({"text": item.text, "seconds": round(item.duration_s, 3),
                                   "sample_rate": item.sample_rate})
                else:
                    errors.append(StepError(step="speak", error="TTSError", message=str(item.error)))
        except Exception as exc:  # noqa: BLE001 - the voice must never fail the turn (text still goes out)
            errors.append(StepError(step="speak", error=type(exc).__name__, message=str(exc)))
        speech = {"voice": services.tts.name, "chunks": chunks,
                  "prosody": dataclasses.asdict(prosody) if prosody is not None else None,
                  "first_audio_latency_s": getattr(stats, "first_audio_latency_s", None),
                  "first_audio_s": getattr(stats, "first_audio_s", None)}
        return {"speech": speech, "timings": {"speak": time.perf_counter() - t0}, "degraded": errors}

    async def check_safety(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Screen the person's words, in the conversation so far, for risk (C-SSRS dimensions,
        warning signs, self-harm, harm to others, abuse, someone else at risk): a level and a
        route.  Crisis routes get the protocol's reply and resources, a calm steady register for
        the voice, and the escalation hook; the graph then answers by the protocol, not the LLM.
        The conversation's accumulated risk is kept in the state (checkpointed)."""
        from empathic_agent.safety import CrisisEvent

        t0 = time.perf_counter()
        try:
            assessment = await asyncio.to_thread(services.safety.assess, state.get("user_text", ""),
                                                 state.get("risk") or {})
        except Exception as exc:  # noqa: BLE001
            # A broken screen must not silence the conversation, but it is never quiet about it.
            return {"safety": {"crisis": False, "level": "none", "route": "continue", "error": str(exc)},
                    "timings": {"safety": time.perf_counter() - t0},
                    "degraded": [StepError(step="safety", error=type(exc).__name__, message=str(exc))]}
        out: dict[str, Any] = {"safety": assessment.to_dict(), "risk": dict(assessment.conversation),
                               "timings": {"safety": time.perf_counter() - t0}}
        if assessment.crisis:
            ctx = runtime.context
            event = CrisisEvent(user_id=ctx.user_id, session_id=ctx.session_id, turn_id=state.get("turn_id") or "",
                                category=assessment.category or "", score=assessment.score, signals=assessment.signals,
                                at=time.time(), text=state.get("user_text", ""), level=assessment.level,
                                route=assessment.route)
            errors = await asyncio.to_thread(services.safety.escalate, event)
            out["register"] = CRISIS_REGISTER | {"rationale": [
                f"safety: {assessment.level} risk, route {assessment.route} ({assessment.category}; "
                f"{', '.join(assessment.signals)}) -> vetted protocol"]}
            if errors:
                out["degraded"] = [StepError(step="safety", error="EscalationError", message=e) for e in errors]
        return out

    async def respond_safely(state: TurnState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Answer a crisis with the protocol's vetted reply (never free generation)."""
        t0 = time.perf_counter()
        reply = state["safety"]["message"]
        channel = runtime.context.text_channel if runtime.context is not None else None
        get_stream_writer()({"type": "text", "text": reply})
        if channel is not None:
            channel.put_nowait(reply)
            channel.put_nowait(None)
        turn_id = state.get("turn_id")
        return {"reply": reply,
                "messages": [AIMessage(content=reply, id=f"{turn_id}-agent" if turn_id else None,
                                       additional_kwargs={"safety_protocol": services.safety.protocol.name})],
                "generation": {"backend": "safety-protocol", "model": services.safety.protocol.name,
                               "time_to_first_chunk_s": time.perf_counter() - t0, "chunks": 1, "seed": None},
                "strategies": ["Crisis protocol"], "guard": {"layers": "vetted", "events": []},
                "timings": {"respond_safely": time.perf_counter() - t0}}

    nodes: dict[str, Callable[..., Any]] = {"perceive": perceive, "plan": plan, "generate": generate, "speak": speak}
    if services.safety is not None:
        nodes["check_safety"] = check_safety
        nodes["respond_safely"] = respond_safely
    if services.text_encoder is not None or services.speech is not None or services.face is not None:
        nodes["encode"] = encode
    if services.memory is not None:
        nodes["recall"] = recall
        nodes["remember"] = remember
    return nodes


#: Earlier turns handed to a text encoder that reads messages in their conversation (it reads
#: its own configured number of the most recent ones).
CONTEXT_TURNS = 4


def _read_text(encoder: Any, state: TurnState, prior: Any) -> Any:
    """The person's message read as a turn of this conversation when the encoder can (the turns
    before it and the dialogue state: this turn's prior), else alone."""
    if not hasattr(encoder, "encode_in_context") or not encoder.reads_context:
        return encoder.encode(state["user_text"])
    from empathic_agent.encode.text import TextContext

    earlier = state.get("messages", [])[:-1][-CONTEXT_TURNS:]  # the last message is this one
    turns = tuple(m.content for m in earlier if isinstance(m.content, str) and m.content.strip())
    return encoder.encode_in_context(state["user_text"], TextContext(turns, prior))


def _trajectory_entry(turn_id: str | None, at: float, fused: Any, readings: dict[str, Any]) -> dict[str, Any]:
    def point(r: Any) -> dict[str, Any]:
        v, a, d = r.mean
        return {"v": round(v, 4), "a": round(a, 4), "d": round(d, 4), "top": r.top_category,
                "confidence": round(r.confidence, 4)}

    return {"turn_id": turn_id, "at": at, "fused": point(fused.reading),
            "modalities": {m: point(r) for m, r in readings.items()},
            "mixed_signals": bool(fused.mixed_signals.flag)}
