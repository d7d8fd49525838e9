r"""Wiring of the turn graph: the one block that reads like the design's flow.

    perceive -> encode -> check_safety -> recall -> plan -> generate -> remember
                                                          \-> speak ----/

``speak`` runs beside ``generate`` (same LangGraph superstep): it reads the reply's text from a
per-turn channel as it streams and synthesises it sentence by sentence, so the first audio is
ready before the reply is finished.  ``check_safety`` runs after ``encode``, before ``recall``: a
crisis route answers by the vetted protocol (``respond_safely``) instead of recall, plan and
generate.  ``encode`` is present when an emotion encoder is configured (``Settings.encoders``);
``recall`` and ``remember`` when memory is on (``Settings.memory_enabled``).  The full map of
steps, packages and state: docs/architecture.md.  Services are built
once by :func:`build_services` and injected, so tests can pass fakes and in-memory checkpointers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.graph import END, START, StateGraph

from empathic_agent.generate.llm import LLM, load_llm
from empathic_agent.graph.nodes import make_nodes
from empathic_agent.graph.state import TurnContext, TurnState
from empathic_agent.settings import Settings

if TYPE_CHECKING:
    from empathic_agent.encode.base import Encoder
    from empathic_agent.memory import MemoryService

__all__ = ["Services", "build_services", "build_graph"]


@dataclass(frozen=True)
class Services:
    """Long-lived components shared by every turn and user."""

    settings: Settings
    llm: LLM
    #: Reads the person's words into the emotional latent space (None: no text emotion).
    text_encoder: "Encoder | None" = None
    #: Hears the person's voice: transcript + speech emotion reading (None: no voice input).
    speech: Any = None
    #: Who the agent is (``plan.Persona``; loaded from ``settings.persona`` when not given).
    persona: Any = None
    #: Speaks the reply (``speak.TTS``; None: text only).
    tts: Any = None
    #: Reads the person's face from a turn's image(s) (None: no face input).
    face: Any = None
    #: Long-term, mood-congruent memory of every person (None: no memory).
    memory: "MemoryService | None" = None
    #: Crisis screening before generation + the vetted protocol (None: no safety stage).
    safety: Any = None
    #: The learned strategy predictor (``plan.learned.StrategyPredictor``; None: the rules plan).
    planner: Any = None


_DEFAULT = object()


def build_services(settings: Settings, *, llm: LLM | None = None, text_encoder: Any = _DEFAULT,
                   memory: Any = _DEFAULT, speech: Any = _DEFAULT, face: Any = _DEFAULT,
                   persona: Any = None, tts: Any = _DEFAULT, safety: Any = _DEFAULT,
                   planner: Any = _DEFAULT) -> Services:
    """Services from settings; pass components explicitly to override (tests pass fakes, or
    ``None`` to leave a step out). Weights load on first use, not here."""
    if text_encoder is _DEFAULT:
        text_encoder = None
        if "text" in settings.encoder_modalities:
            from empathic_agent.encode import load_encoder

            text_encoder = load_encoder("text", settings)
    if speech is _DEFAULT:
        speech = None
        if "speech" in settings.encoder_modalities:
            from empathic_agent.perceive.speech import SpeechPerception

            speech = SpeechPerception.from_settings(settings)
    if face is _DEFAULT:
        face = None
        if "face" in settings.encoder_modalities:
            from empathic_agent.perceive.face import FacePerception

            face = FacePerception.from_settings(settings)
    if memory is _DEFAULT:
        memory = None
        if settings.memory_enabled:
            from empathic_agent.memory import MemoryService

            memory = MemoryService.from_settings(settings)
    if tts is _DEFAULT:
        tts = None
        if settings.speak_replies:
            from empathic_agent.speak import load_tts

            tts = load_tts(settings.tts_voice, settings)
    if safety is _DEFAULT:
        safety = None
        if settings.safety_enabled:
            from empathic_agent.memory.embedder import MiniLMEmbedder
            from empathic_agent.safety import SafetyStage

            # The scope check reads with the same frozen MiniLM as memory: one copy, not two.
            shared = getattr(memory, "embedder", None)
            safety = SafetyStage.from_settings(settings, embedder=shared if isinstance(shared, MiniLMEmbedder) else None)
    if planner is _DEFAULT:
        planner = None
        if settings.planner == "learned":
            from empathic_agent.memory.embedder import MiniLMEmbedder
            from empathic_agent.plan.learned import StrategyPredictor

            # It reads the dialogue with the same frozen MiniLM as memory: one copy, not two.
            shared = getattr(memory, "embedder", None)
            planner = StrategyPredictor.from_settings(
                settings, embedder=shared if isinstance(shared, MiniLMEmbedder) else None)
    if persona is None:
        from empathic_agent.plan import load_persona

        persona = load_persona(settings.persona)
    return Services(settings=settings, llm=llm if llm is not None else load_llm(settings),
                    text_encoder=text_encoder, memory=memory, speech=speech, face=face, persona=persona,
                    tts=tts, safety=safety, planner=planner)


def build_graph(services: Services, *, checkpointer: Any = None) -> Any:
    """Compile the turn graph. ``checkpointer`` persists conversations (None: LangGraph decides).

    perceive → encode → check_safety ─┬─(no crisis)→ recall → plan → generate ∥ speak ─┬→ remember
                                      └─(crisis)───→ respond_safely ∥ speak ───────────┘
    (steps whose service is off are left out)."""
    nodes = make_nodes(services)
    g = StateGraph(TurnState, context_schema=TurnContext)
    for name, fn in nodes.items():
        g.add_node(name, fn)
    head: list[str] = [s for s in ("perceive", "encode", "check_safety") if s in nodes]
    body: list[str] = [s for s in ("recall", "plan") if s in nodes]
    end = "remember" if "remember" in nodes else END
    g.add_edge(START, head[0])
    for a, b in zip(head, head[1:]):
        g.add_edge(a, b)
    if "check_safety" in nodes:
        def route(state: dict[str, Any]) -> Any:
            return ["respond_safely", "speak"] if (state.get("safety") or {}).get("crisis") else body[0]

        g.add_conditional_edges("check_safety", route, ["respond_safely", "speak", body[0]])
        g.add_edge("respond_safely", end)
    else:
        g.add_edge(head[-1], body[0])
    for a, b in zip(body, body[1:]):
        g.add_edge(a, b)
    # The voice: a branch beside generate, joined again before remember (or the end).
    g.add_edge(body[-1], "generate")
    g.add_edge(body[-1], "speak")
    g.add_edge("generate", end)
    g.add_edge("speak", end)
    if end != END:
        g.add_edge(end, END)
    return g.compile(checkpointer=checkpointer, name="empathic-agent")
