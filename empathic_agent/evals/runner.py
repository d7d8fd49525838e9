"""``empathic eval run``: scenarios through the real agent graph, scored, into a report folder.

The runner builds the same :class:`~empathic_agent.agent.Agent` the UI and the API use (real
models, memory, safety stage), with all state of the run inside its output folder::

    OUT/run.json             the run's identity: id, start, settings, seed, judge (kept on resume)
    OUT/scenarios/ID.json    one finished scenario (written atomically when it completes)
    OUT/state/               the agent's conversations and memories for this run
    OUT/report.json          the machine-readable report (``metrics.summarise`` + every scenario)
    OUT/report.html          the self-contained HTML report

**Resumable**: a scenario whose file exists is not run again; one interrupted half-way is erased
(its conversation and memories) and run again from its first turn, so a resumed run equals an
uninterrupted one.  **Parallel**: ``parallel`` scenarios run at once (turns of one scenario are
sequential).  **Deterministic where the backends allow**: the sampling seed is fixed (settings'
``seed``, default 0) and recorded; each scenario is its own user, so no memory leaks between them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from empathic_agent.errors import ConfigError, EmpathicError
from empathic_agent.evals.metrics import (
    perceived_of,
    scenario_metrics,
    score_goals,
    score_turn,
    summarise,
    trajectory_of,
)
from empathic_agent.evals.scenario import Expect, Scenario
from empathic_agent.evals.strategy import adherence as adhere

if TYPE_CHECKING:
    from empathic_agent.evals.empathy import EmpathyJudge
    from empathic_agent.graph.builder import Services
    from empathic_agent.settings import Settings

__all__ = ["RunOptions", "run_eval", "REPORT_SCHEMA"]

log = logging.getLogger(__name__)

REPORT_SCHEMA = "empathic-eval-report/1"
#: Settings that select or shape the LLM: a scenario changing one of them gets its own LLM.
_LLM_FIELDS = ("llm_backend", "llm_model", "openai_base_url", "openai_model", "openai_api_key")


@dataclass(frozen=True)
class RunOptions:
    out: Path
    #: Scenarios run at once (each runs its turns in order).
    parallel: int = 2
    #: Start over: erase a previous run in ``out`` instead of resuming it.
    fresh: bool = False
    #: Speak the replies too (measures the TTS step; off by default: reports are about the words).
    speak: bool = False
    progress: bool = True


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    from empathic_agent.evals.report import write_json

    write_json(data, path)


def _user_id(scenario: Scenario) -> str:
    return "eval-" + re.sub(r"[^A-Za-z0-9_.-]", "-", scenario.id)[:100]


class _Run:
    """One run's shared services, per-config agents and bookkeeping."""

    def __init__(self, settings: "Settings", services: "Services", checkpointer: Any, judge: "EmpathyJudge",
                 options: RunOptions) -> None:
        self.settings = settings
        self.services = services
        self.checkpointer = checkpointer
        self.judge = judge
        self.options = options
        self._agents: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self.simulator: Any = None
        self.bar: Any = None
        #: Reads each reply's strategy for the adherence figures (None: no adherence); set by run_eval.
        self.strategies: Any = None

    async def agent_for(self, config: Mapping[str, Any]) -> Any:
        """The agent for a scenario's settings overrides (built once per distinct config)."""
        from empathic_agent.agent import Agent

        key = json.dumps(dict(config), sort_keys=True, default=str)
        async with self._lock:
            if key in self._agents:
                return self._agents[key]
            settings = self.settings.replace(**config) if config else self.settings
            changes: dict[str, Any] = {"settings": settings}
            if settings.persona != self.settings.persona:
                from empathic_agent.plan import load_persona

                changes["persona"] = load_persona(settings.persona)
            if any(getattr(settings, f) != getattr(self.settings, f) for f in _LLM_FIELDS):
                from empathic_agent.generate.llm import load_llm

                changes["llm"] = load_llm(settings)
            if settings.tts_voice != self.settings.tts_voice and self.services.tts is not None:
                from empathic_agent.speak import load_tts

                changes["tts"] = load_tts(settings.tts_voice, settings)
            agent = Agent(dataclasses.replace(self.services, **changes), checkpointer=self.checkpointer)
            self._agents[key] = agent
            return agent

    async def run_scenario(self, scenario: Scenario) -> dict[str, Any]:
        agent = await self.agent_for(scenario.config)
        uid, sid = _user_id(scenario), "dialogue"
        await agent.delete_user(uid)  # a half-run from an interrupted run starts over
        t0 = time.perf_counter()
        record: dict[str, Any] = {**scenario.summary(), "status": "ok", "error": None,
                                  "seed": agent.settings.seed, "turns": []}
        conversation: list[tuple[str, str]] = []
        goal_checks = Expect(must_not=scenario.goals.must_not)
        try:
            for i, turn in enumerate(scenario.turns):
                if turn.new_session and i > 0:
                    # A restart: the same person in a new session (their memories stay).
                    sid = f"dialogue-{i}"
                    conversation = []
                record["turns"].append(await self._turn(agent, uid, sid, i, "scripted", conversation,
                                                        text=turn.text, audio=turn.audio, images=turn.images,
                                                        expect=turn.expect.merged(goal_checks)))
            if scenario.simulate is not None:
                sim = scenario.simulate
                for k in range(sim.turns):
                    i = len(record["turns"])
                    if k == 0 and sim.opening and not scenario.turns:
                        text = sim.opening
                    else:
                        text = await self.simulator.next_message(sim.card, conversation, turn=i)
                    record["turns"].append(await self._turn(agent, uid, sid, i, "simulated", conversation, text=text,
                                                            expect=sim.expect.merged(goal_checks)))
        except EmpathicError as exc:
            record["status"], record["error"] = "error", f"{type(exc).__name__}: {exc}"
            log.warning("scenario %s failed: %s", scenario.id, exc)
        record["wall_s"] = round(time.perf_counter() - t0, 3)
        record["trajectory"] = trajectory_of(record["turns"])
        record["goals"] = score_goals(scenario.goals, record["turns"], record["trajectory"]) \
            if record["status"] == "ok" else []
        record["metrics"] = scenario_metrics(record["turns"], record["goals"])
        return record

    async def _turn(self, agent: Any, uid: str, sid: str, index: int, kind: str,
                    conversation: list[tuple[str, str]], *, text: str | None, expect: Expect,
                    audio: Path | None = None, images: Sequence[Path] = ()) -> dict[str, Any]:
        image: Any = None
        if images:
            image = [p.read_bytes() for p in images] if len(images) > 1 else images[0].read_bytes()
        t0 = time.perf_counter()
        result = await agent.respond(uid, sid, text=text, audio=audio.read_bytes() if audio else None, image=image,
                                     speak=self.options.speak)
        turn_s = time.perf_counter() - t0
        previous = [t for r, t in conversation if r == "assistant"]
        conversation += [("user", result.user_text), ("assistant", result.reply)]
        perceived = perceived_of(result.emotion, result.readings)
        checks = score_turn(expect, perceived=perceived, register=result.register, crisis=result.crisis,
                            reply=result.reply, previous_replies=previous, safety=result.safety,
                            recalled=len(result.memories))
        empathy: dict[str, Any] | None = None
        degraded = [{"step": e.get("step"), "error": e.get("message") or e.get("error")} for e in result.degraded]
        try:
            empathy = (await self.judge.score(conversation[:-1], result.reply)).to_dict()
        except EmpathicError as exc:  # a judge that fails is recorded, the dialogue goes on
            degraded.append({"step": "judge", "error": str(exc)})
        adherence = None
        backend = result.generation.get("backend")
        if self.strategies is not None and result.reply and adhere(result.register.get("strategy"), {"strategy": ""},
                                                                   backend=backend) is not None:
            from empathic_agent.evals.empathy import seeker_text

            read = await asyncio.to_thread(self.strategies.classify, seeker_text(conversation[:-1]), result.reply)
            adherence = adhere(result.register.get("strategy"), read, backend=backend)
        if self.bar is not None:
            self.bar.update(1)
        return {
            "index": index, "kind": kind, "user_text": result.user_text, "reply": result.reply,
            "inputs": {"audio": str(audio) if audio else None, "images": [str(p) for p in images]},
            "perceived": perceived,
            "register": {k: result.register.get(k) for k in ("strategy", "family", "target", "tone", "pace", "length")}
            if result.register else {},
            "crisis": result.crisis, "safety": {k: result.safety.get(k) for k in ("crisis", "category", "score", "level", "route")}
            | {"presentations": list(result.presentations)} if result.safety else {},
            "guard": {"events": list(result.guard_events), "sentences": result.guard.get("sentences", 0),
                      "max_sentence_ms": result.guard.get("max_sentence_ms", 0.0)} if result.guard else {},
            "empathy": empathy, "adherence": adherence, "checks": checks,
            "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
            "turn_s": round(turn_s, 4), "degraded": degraded,
            "first_text_s": result.generation.get("time_to_first_chunk_s"),
            "generation": {k: result.generation.get(k) for k in ("backend", "model", "seed", "tokens")},
        }


async def run_eval(scenarios: Sequence[Scenario], settings: "Settings", options: RunOptions, *,
                   services: "Services | None" = None, judge: "EmpathyJudge | None" = None,
                   strategies: Any = "default",
                   sources: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or resume) the scenarios; write and return the report (see the module docstring)."""
    from empathic_agent.agent import open_checkpointer
    from empathic_agent.evals.empathy import load_judge
    from empathic_agent.evals.simulator import UserSimulator
    from empathic_agent.graph.builder import build_services

    if not scenarios:
        raise ConfigError("no scenarios to run")
    if options.parallel < 1:
        raise ConfigError(f"parallel must be >= 1, got {options.parallel}")
    out = Path(options.out)
    done_dir = out / "scenarios"
    if options.fresh and out.exists():
        import shutil

        for name in ("scenarios", "state", "run.json", "report.json", "report.html"):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    done_dir.mkdir(parents=True, exist_ok=True)
    # Every piece of the run's state lives in OUT/state: the user's own data is never touched.
    settings = settings.replace(memory_dir=out / "state", checkpoint_db="",
                                seed=settings.seed if settings.seed is not None else 0)
    (out / "state").mkdir(exist_ok=True)
    judge = judge or load_judge(settings)

    run_path = out / "run.json"
    header = json.loads(run_path.read_text()) if run_path.is_file() else {
        "id": uuid.uuid4().hex[:12], "started": _now()}
    finished = {p.stem for p in done_dir.glob("*.json")}
    wanted = {s.id for s in scenarios}
    todo = [s for s in scenarios if s.id not in finished]
    resumed = len(wanted & finished)

    services = services or build_services(settings)
    if services.settings is not settings:
        services = dataclasses.replace(services, settings=settings)
    checkpointer, closer = await open_checkpointer(settings)
    run = _Run(settings, services, checkpointer, judge, options)
    if strategies == "default":
        from empathic_agent.evals.strategy import StrategyClassifier

        strategies = StrategyClassifier(settings=settings)
    run.strategies = strategies if strategies is not None and strategies.available() else None
    run.simulator = UserSimulator.from_settings(settings, services.llm)
    header.update({"sources": list(sources), "settings": settings.to_dict(), "seed": settings.seed,
                   "temperature": settings.reply_temperature, "judge": judge.describe(),
                   "simulator": run.simulator.describe() if any(s.simulate for s in scenarios) else None,
                   "parallel": options.parallel, "package_version": _version(), "resumed": resumed})
    _write_json(run_path, header)
    t0 = time.perf_counter()
    try:
        if options.progress:
            from tqdm.auto import tqdm

            run.bar = tqdm(total=sum(s.n_turns for s in todo), unit="turn", desc="eval", dynamic_ncols=True)
        gate = asyncio.Semaphore(options.parallel)

        async def one(s: Scenario) -> None:
            async with gate:
                rec = await run.run_scenario(s)
                _write_json(done_dir / f"{s.id}.json", rec)

        await asyncio.gather(*(one(s) for s in todo))
    finally:
        if run.bar is not None:
            run.bar.close()
        if closer is not None:
            await closer.close()
        await judge.aclose()
        if run.simulator.llm is not services.llm:
            await run.simulator.llm.aclose()
        await services.llm.aclose()
        if services.memory is not None:
            await asyncio.to_thread(services.memory.close)
    records = [json.loads((done_dir / f"{s.id}.json").read_text()) for s in scenarios]
    header.update({"finished": _now(), "wall_s": round(time.perf_counter() - t0, 2) + header.get("wall_s_before", 0.0),
                   "judge": judge.describe()})
    header["wall_s_before"] = header["wall_s"]
    _write_json(run_path, header)
    report = {"schema": REPORT_SCHEMA, "run": {k: v for k, v in header.items() if k != "wall_s_before"},
              "summary": summarise(records, judge=header["judge"]), "scenarios": records}
    from empathic_agent.evals.report import write_html, write_json

    write_json(report, out / "report.json")
    write_html(report, out / "report.html")
    return report


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("empathic-agent")
    except Exception:  # not installed (a source checkout)
        return "unknown"
