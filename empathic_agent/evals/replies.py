"""``empathic eval replies``: what the agent says, reply by reply, against human supporters.

    empathic eval replies --source esconv:test --limit 300 --out runs/replies
    empathic eval replies --source my.csv --out runs/mine            # columns context,reference[,strategy]
    empathic eval replies --source esconv:test --limit 300 --bare --out runs/bare   # ablation

Each item is a dialogue so far, the person's newest words and a human supporter's reply to them
(the reference).  The agent answers through the same path as the UI: the history is put into a new
conversation (:meth:`Agent.seed_history`), then the person's words run through perception, the
safety stage, recall, the plan and the LLM, with the reply guard.  ``--bare`` sends the same
history to the same LLM with the system prompt only (no perception, plan or guard).

Sources:

* ``esconv:SPLIT`` (ESConv's 910/195/195 split, read from ``--data-dir`` at run time): the first
  supporter turn after each run of seeker messages, with everything before it as history, the
  seeker's words as the message and the supporter's strategy as gold (the second of two consecutive
  supporter turns is skipped: the agent answers once per message);
* a CSV file with ``context,reference[,strategy]``: ``context`` holds the dialogue so far, one turn
  per line, each optionally prefixed ``seeker:``/``user:`` or ``supporter:``/``assistant:``
  (unprefixed lines alternate backwards from the last, which is the person's).

``--limit N`` takes N items by a seeded draw (``--seed``), in data order.  Per reply and
aggregated (the same figures for the **gold** replies on the same items are the human row):

* the empathy judge's ER/IP/EX expectation and distribution (:func:`~.empathy.load_judge`);
* strategy: the classified strategy of each reply (:mod:`~.strategy`), its adherence to the plan
  (exact / family) and its agreement with the gold strategy;
* relevance: MiniLM cosine of the reply to the person's message and to the reference; the
  **off-topic rate** is the share of replies less relevant to the message than the 5th percentile
  of the gold replies' own relevance on the same items;
* BLEU-1/2/4 (sacrebleu corpus BLEU, its ``13a`` tokenisation, lower-cased) and ROUGE-L (rouge-score
  F-measure, its default tokenisation, averaged over items) against the reference; Distinct-1/2
  (distinct n-grams / all n-grams over all replies, lower-cased word tokens);
* perplexity of the reference under the agent's LLM given the bare prompt of the history (backends
  with token log-probabilities: the embedded one);
* reply length (words), first-text and total latency.

Output: ``OUT/items.jsonl`` (one generated reply per line, appended as it is made: an interrupted
run resumes where it stopped), ``OUT/report.json`` and ``OUT/report.html`` with a per-strategy
breakdown and the 10 worst replies by judge and by relevance, shown with their context.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["REPLIES_SCHEMA", "ReplyItem", "RepliesOptions", "load_items", "run_replies", "score_items",
           "distinct", "OFF_TOPIC_PERCENTILE"]

log = logging.getLogger(__name__)

REPLIES_SCHEMA: Final = "empathic-replies-report/1"
#: A reply is off-topic when less relevant to the person's message than this percentile of the
#: gold replies' relevance on the same items.
OFF_TOPIC_PERCENTILE: Final[float] = 5.0
#: How many of the worst replies the report shows (by judge and by relevance).
WORST: Final[int] = 10
_PREFIX = re.compile(r"^\s*(seeker|user|person|supporter|assistant|agent)\s*:\s*", re.I)


@dataclass(frozen=True)
class ReplyItem:
    """One context to answer: the dialogue so far, the person's newest words, a human reply."""

    id: str
    history: tuple[tuple[str, str], ...]
    message: str
    reference: str
    #: The human supporter's strategy (ESConv), when known.
    strategy: str | None = None
    #: Strategies the human supporter used earlier in the dialogue (the planner's history).
    previous_strategies: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepliesOptions:
    out: Path
    limit: int | None = None
    seed: int = 0
    #: The LLM alone: the same history and system prompt, no perception, plan or guard.
    bare: bool = False
    fresh: bool = False
    progress: bool = True
    data_dir: Path | None = None


# -- sources --------------------------------------------------------------------------------------

def esconv_items(data_dir: str | Path, split: str) -> list[ReplyItem]:
    """The first supporter turn after each run of seeker messages in an ESConv split."""
    from empathic_agent.plan.esconv import load_esconv

    items: list[ReplyItem] = []
    for ci, conv in enumerate(load_esconv(data_dir, split)):
        history: list[tuple[str, str]] = []
        strategies: list[str] = []
        seeker: list[str] = []
        for ti, turn in enumerate(conv["dialog"]):
            text = str(turn.get("text", "")).strip()
            if turn["speaker"] == "usr":
                seeker.append(text)
                continue
            if seeker and text:
                message = " ".join(seeker)
                items.append(ReplyItem(id=f"esconv-{split}-{ci:04d}-{ti:03d}", history=tuple(history), message=message,
                                       reference=text, strategy=turn.get("strategy"),
                                       previous_strategies=tuple(strategies)))
                history.append(("user", message))
            elif seeker:
                history.append(("user", " ".join(seeker)))
            seeker = []
            history.append(("assistant", text))
            if turn.get("strategy"):
                strategies.append(turn["strategy"])
    return items


def _context_turns(context: str) -> tuple[list[tuple[str, str]], str]:
    lines = [ln for ln in (context or "").replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines:
        return [], ""
    turns: list[tuple[str, str]] = []
    for back, line in enumerate(reversed(lines)):
        m = _PREFIX.match(line)
        if m:
            role = "user" if m.group(1).lower() in ("seeker", "user", "person") else "assistant"
            text = line[m.end():].strip()
        else:
            role = "user" if back % 2 == 0 else "assistant"
            text = line.strip()
        turns.insert(0, (role, text))
    # The person's newest words: the trailing run of their turns.
    words: list[str] = []
    while turns and turns[-1][0] == "user":
        words.insert(0, turns.pop()[1])
    return turns, " ".join(words)


def csv_items(path: str | Path) -> list[ReplyItem]:
    """Items of a CSV with columns ``context,reference[,strategy]`` (see the module docstring)."""
    from empathic_agent.plan.register import STRATEGIES

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"replies source not found: {p}")
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("context", "reference") if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{p} lacks column(s) {', '.join(missing)} (needs context,reference[,strategy])")
        items = []
        for i, row in enumerate(reader, start=2):
            history, message = _context_turns(row.get("context") or "")
            if not message:
                raise ConfigError(f"{p}:{i}: the context must end with the person's words")
            strategy = (row.get("strategy") or "").strip() or None
            if strategy and strategy not in STRATEGIES:
                raise ConfigError(f"{p}:{i}: unknown strategy {strategy!r} (one of: {', '.join(STRATEGIES)})")
            items.append(ReplyItem(id=f"{p.stem}-{i:05d}", history=tuple(history), message=message,
                                   reference=(row.get("reference") or "").strip(), strategy=strategy))
    if not items:
        raise ConfigError(f"no rows in {p}")
    return items


def load_items(source: str, *, data_dir: str | Path | None = None, limit: int | None = None,
               seed: int = 0) -> list[ReplyItem]:
    """Items of ``source`` (``esconv[:SPLIT]`` or a CSV path); ``limit`` draws that many (seeded)."""
    if source.startswith("esconv"):
        parts = source.split(":")
        split = parts[1] if len(parts) > 1 and parts[1] else "test"
        if data_dir is None:
            raise ConfigError("esconv: sources need --data-dir (the shared data folder)")
        items = esconv_items(data_dir, split)
    else:
        items = csv_items(source)
    if limit is not None:
        if limit < 1:
            raise ConfigError("--limit must be >= 1")
        if limit < len(items):
            keep = sorted(random.Random(seed).sample(range(len(items)), limit))
            items = [items[i] for i in keep]
    return items


# -- metrics --------------------------------------------------------------------------------------

def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", (text or "").lower())


def distinct(texts: Sequence[str], n: int) -> float | None:
    """Distinct-n: distinct n-grams / all n-grams over all texts (lower-cased word tokens)."""
    grams = [tuple(w[i:i + n]) for w in map(_words, texts) for i in range(len(w) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def _bleu_rouge(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float | None]:
    try:
        from rouge_score import rouge_scorer
        from sacrebleu.metrics import BLEU
    except ImportError as exc:
        raise ConfigError(f"BLEU/ROUGE need sacrebleu and rouge-score ({exc}); "
                          "install with: pip install 'empathic-agent[eval]'") from exc
    out: dict[str, float | None] = {}
    for n in (1, 2, 4):
        bleu = BLEU(max_ngram_order=n, lowercase=True, tokenize="13a", effective_order=True)
        out[f"bleu_{n}"] = round(float(bleu.corpus_score(list(hyps), [list(refs)]).score), 3)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs) if r.strip()]
    out["rouge_l"] = round(100 * float(np.mean(scores)), 3) if scores else None
    return out


def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return round(float(np.mean(vals)), 4) if vals else None


def _pcts(values: Sequence[Any]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"p50": None, "p95": None, "mean": None}
    return {"p50": round(float(np.percentile(vals, 50)), 4), "p95": round(float(np.percentile(vals, 95)), 4),
            "mean": round(float(np.mean(vals)), 4)}


def _aggregate(rows: Sequence[dict[str, Any]], side: str, threshold: float | None) -> dict[str, Any]:
    """Figures of one side ("reply" or "gold") over ``rows``."""
    from empathic_agent.evals.empathy import DIMENSIONS
    from empathic_agent.speak.text import is_unfinished

    judged = [r[side]["empathy"] for r in rows if r[side].get("empathy")]
    out: dict[str, Any] = {"n": len(rows)}
    out["empathy"] = {"overall": _mean([e["overall"] for e in judged])}
    for d in DIMENSIONS:
        out["empathy"][d] = {"mean": _mean([e[d]["score"] for e in judged]),
                             "distribution": [round(float(x), 4) for x in np.mean([e[d]["distribution"] for e in judged],
                                                                                   axis=0)] if judged else None}
    rel = [r[side].get("relevance_message") for r in rows]
    out["relevance_message"] = _mean(rel)
    out["relevance_reference"] = _mean([r[side].get("relevance_reference") for r in rows]) if side == "reply" else None
    out["off_topic_rate"] = (round(float(np.mean([v is not None and v < threshold for v in rel])), 4)
                             if threshold is not None and rows else None)
    read = [r[side].get("strategy") for r in rows]
    gold = [r.get("gold_strategy") for r in rows]
    pairs = [(s, g) for s, g in zip(read, gold) if s and g]
    out["gold_strategy_agreement"] = _rate([s["strategy"] == g for s, g in pairs])
    from empathic_agent.plan.register import family_of

    out["gold_family_agreement"] = _rate([s["family"] == family_of(g) for s, g in pairs])
    if side == "reply":
        adh = [r["reply"].get("adherence") for r in rows if r["reply"].get("adherence")]
        out["adherence"] = {"n": len(adh), "exact": _rate([a["exact"] for a in adh]),
                            "family": _rate([a["family"] for a in adh])}
    texts = [r[side]["text"] for r in rows]
    out["distinct_1"], out["distinct_2"] = distinct(texts, 1), distinct(texts, 2)
    out["length_words"] = _pcts([len(_words(t)) for t in texts])
    # A reply whose last sentence is cut off (the token limit hit mid-sentence): spoken, it stops
    # mid-thought.  Closing quotes/brackets and emoji after the full stop are allowed.
    out["unfinished_rate"] = _rate([is_unfinished(t) for t in texts])
    return out


def _rate(flags: Sequence[bool]) -> float | None:
    return round(float(np.mean(flags)), 4) if flags else None


# -- generation -----------------------------------------------------------------------------------

async def _generate_agent(agent: Any, item: ReplyItem, run_id: str) -> dict[str, Any]:
    # A new session per attempt: an item interrupted after its history was seeded runs again cleanly.
    uid, sid = f"replies-{run_id}-{item.id}"[:120], uuid.uuid4().hex[:12]
    await agent.seed_history(uid, sid, item.history, strategies=item.previous_strategies)
    t0 = time.perf_counter()
    result = await agent.respond(uid, sid, text=item.message, speak=False)
    return {"reply": result.reply, "total_s": round(time.perf_counter() - t0, 4),
            "first_text_s": result.generation.get("time_to_first_chunk_s"),
            "planned_strategy": (result.register or {}).get("strategy"),
            "backend": result.generation.get("backend"),
            "route": (result.safety or {}).get("route"), "crisis": result.crisis,
            "guard_events": len(result.guard_events),
            "degraded": [d.get("step") for d in result.degraded]}


def _bare_prompt(settings: "Settings", persona: Any, item: ReplyItem) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    from empathic_agent.generate.prompt import build_prompt, system_prompt

    history = [HumanMessage(content=t) if r == "user" else AIMessage(content=t) for r, t in item.history]
    history.append(HumanMessage(content=item.message))
    return build_prompt(system_prompt(settings.system_prompt, persona), history,
                        max_messages=settings.history_messages)


async def _generate_bare(llm: Any, settings: "Settings", persona: Any, item: ReplyItem) -> dict[str, Any]:
    from empathic_agent.generate.llm import GenerationOptions

    t0 = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async for chunk in llm.stream(_bare_prompt(settings, persona, item), GenerationOptions.from_settings(settings)):
        if first is None:
            first = time.perf_counter() - t0
        parts.append(chunk)
    return {"reply": "".join(parts).strip(), "total_s": round(time.perf_counter() - t0, 4),
            "first_text_s": round(first, 4) if first is not None else None, "planned_strategy": None,
            "route": None, "crisis": False, "guard_events": 0, "degraded": []}


async def _reference_logprob(llm: Any, settings: "Settings", persona: Any, item: ReplyItem) -> dict[str, Any] | None:
    if not item.reference:
        return None
    got = await llm.continuation_logprob(_bare_prompt(settings, persona, item), item.reference)
    if got is None:
        return None
    return {"logprob": round(got[0], 4), "tokens": got[1]}


# -- the run --------------------------------------------------------------------------------------

def _read_done(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption: that item runs again
            done[rec["id"]] = rec
    return done


def _retry_failed(path: Path) -> None:
    """Drop the records of items that failed, so a resumed run tries them again."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = [ln for ln in lines if ln.strip() and not _failed(ln)]
    if len(keep) != len([ln for ln in lines if ln.strip()]):
        path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def _failed(line: str) -> bool:
    try:
        return bool(json.loads(line).get("error"))
    except json.JSONDecodeError:
        return True


async def run_replies(settings: "Settings", source: str, options: RepliesOptions, *, services: Any = None,
                      judge: Any = None, embedder: Any = None, classifier: Any = "default") -> dict[str, Any]:
    """Generate (resumably) and score the replies of ``source``; write the report; return it.
    ``services``/``judge``/``embedder``/``classifier`` replace the configured ones (tests)."""
    from empathic_agent.evals.report import write_json

    items = load_items(source, data_dir=options.data_dir, limit=options.limit, seed=options.seed)
    # The agent's sampling is seeded (default 0), recorded, and its state lives in OUT/state only.
    settings = settings.replace(seed=settings.seed if settings.seed is not None else 0)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    ident = {"schema": REPLIES_SCHEMA, "source": source, "limit": options.limit, "seed": options.seed,
             "bare": options.bare, "items": len(items)}
    run_path, items_path = out / "run.json", out / "items.jsonl"
    if options.fresh:
        for p in (run_path, items_path, out / "report.json", out / "report.html"):
            p.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(out / "state", ignore_errors=True)
    if run_path.exists():
        old = json.loads(run_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in ident} != ident:
            raise ConfigError(f"{out} holds a different run ({ {k: old.get(k) for k in ident} }); "
                              "use another --out or --fresh")
        run_id = old["run_id"]
    else:
        run_id = uuid.uuid4().hex[:8]
        write_json({**ident, "run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "settings": {"llm_backend": settings.llm_backend, "llm_model": settings.llm_model,
                                 "openai_base_url": settings.openai_base_url, "openai_model": settings.openai_model,
                                 "temperature": settings.reply_temperature, "max_new_tokens": settings.max_new_tokens,
                                 "seed": settings.seed, "persona": settings.persona}}, run_path)
    _retry_failed(items_path)
    done = _read_done(items_path)
    todo = [it for it in items if it.id not in done]
    t_start = time.perf_counter()
    if todo:
        await _generate_all(settings, todo, options, run_id, items_path, services=services)
    done = _read_done(items_path)
    records = [{**done[it.id], "item": asdict(it)} for it in items if it.id in done]
    report = await score_items(settings, records, header={**json.loads(run_path.read_text(encoding="utf-8")),
                                                    "generation_s": round(time.perf_counter() - t_start, 1)},
                         judge=judge, embedder=embedder, classifier=classifier)
    write_json(report, out / "report.json")
    from empathic_agent.evals.replies_report import write_replies_html

    write_replies_html(report, out / "report.html")
    return report


async def _generate_all(settings: "Settings", todo: Sequence[ReplyItem], options: RepliesOptions, run_id: str,
                        items_path: Path, *, services: Any = None) -> None:
    from empathic_agent.graph.builder import build_services

    run_settings = settings.replace(memory_dir=options.out / "state", checkpoint_db="", speak_replies=False)
    services = services or build_services(run_settings)
    bar: Any = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="replies" + (" (bare)" if options.bare else ""), unit="reply")
    agent = None
    try:
        if not options.bare:
            from empathic_agent.agent import Agent

            agent = await Agent.open(run_settings, services=services)
            # Every model loads before the first item: its latency must not include the loading.
            await agent.warm_up()
        else:
            await services.llm.load()
        for item in todo:
            try:
                gen = (await _generate_bare(services.llm, run_settings, services.persona, item) if options.bare
                       else await _generate_agent(agent, item, run_id))
            except Exception as exc:  # one failing item is recorded, the run goes on
                log.warning("item %s failed: %s", item.id, exc)
                gen = {"reply": "", "error": f"{type(exc).__name__}: {exc}", "degraded": ["generate"]}
            try:
                gen["reference_logprob"] = await _reference_logprob(services.llm, run_settings, services.persona, item)
            except Exception as exc:
                gen["reference_logprob"] = None
                log.warning("reference log-prob of %s failed: %s", item.id, exc)
            with open(items_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"id": item.id, **gen}, ensure_ascii=False) + "\n")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if agent is not None:
            await agent.aclose()
        else:
            await services.llm.aclose()


async def score_items(settings: "Settings", records: Sequence[dict[str, Any]], *, header: dict[str, Any], judge: Any = None,
                embedder: Any = None, classifier: Any = "default") -> dict[str, Any]:
    """Score generated replies and their references (judge, strategy, relevance, overlap, diversity,
    perplexity, latency) into the report (see the module docstring)."""
    from empathic_agent.evals.empathy import EmpathyScore, EpitomeJudge, load_judge
    from empathic_agent.evals.strategy import StrategyClassifier, adherence
    from empathic_agent.memory.embedder import load_embedder
    from empathic_agent.plan.register import family_of

    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for rec in records:
        it = rec["item"]
        rows.append({"id": rec["id"], "history": it["history"], "message": it["message"],
                     "gold_strategy": it.get("strategy"),
                     "reply": {"text": rec.get("reply") or "", "planned_strategy": rec.get("planned_strategy"),
                               "first_text_s": rec.get("first_text_s"), "total_s": rec.get("total_s"),
                               "route": rec.get("route"), "crisis": rec.get("crisis"),
                               "guard_events": rec.get("guard_events"), "error": rec.get("error"),
                               "backend": rec.get("backend")},
                     "gold": {"text": it["reference"]}, "reference_logprob": rec.get("reference_logprob")})
    if not rows:
        raise ConfigError("no replies to score")
    messages = [r["message"] for r in rows]
    # The judge: the offline EPITOME judge scores in one batch; an LLM or rule judge per pair.
    judge = judge or load_judge(settings)
    for side in ("reply", "gold"):
        texts = [r[side]["text"] for r in rows]
        if isinstance(judge, EpitomeJudge):
            dims = judge.score_many(messages, texts)
            scores = [EmpathyScore(judge.kind, d, probabilities=True) for d in dims]
        else:
            scores = [await judge.score([("user", m)], t) for m, t in zip(messages, texts)]
        for r, s in zip(rows, scores):
            r[side]["empathy"] = s.to_dict()
    judge_info = judge.describe()
    header = {**header, "judge": judge_info}
    # Strategies: what each reply reads as.
    if classifier == "default":
        classifier = StrategyClassifier(settings=settings)
    strategy_info: dict[str, Any] = {"available": bool(classifier is not None and classifier.available())}
    if strategy_info["available"]:
        for side in ("reply", "gold"):
            for r, read in zip(rows, classifier.classify_many(messages, [r[side]["text"] for r in rows])):
                r[side]["strategy"] = {k: read[k] for k in ("strategy", "probability", "family")}
        for r in rows:
            r["reply"]["adherence"] = adherence(r["reply"].get("planned_strategy"), r["reply"].get("strategy"),
                                                backend=r["reply"].get("backend"))
    # Relevance: MiniLM cosine (normalised embeddings).
    embedder = embedder or load_embedder(settings)
    vec = {k: embedder.embed(v) for k, v in (("message", messages), ("reply", [r["reply"]["text"] or " " for r in rows]),
                                             ("gold", [r["gold"]["text"] or " " for r in rows]))}
    for i, r in enumerate(rows):
        r["reply"]["relevance_message"] = round(float(vec["reply"][i] @ vec["message"][i]), 4)
        r["reply"]["relevance_reference"] = round(float(vec["reply"][i] @ vec["gold"][i]), 4)
        r["gold"]["relevance_message"] = round(float(vec["gold"][i] @ vec["message"][i]), 4)
    threshold = round(float(np.percentile([r["gold"]["relevance_message"] for r in rows], OFF_TOPIC_PERCENTILE)), 4)
    for r in rows:
        r["reply"]["off_topic"] = r["reply"]["relevance_message"] < threshold
    overall = {"reply": _aggregate(rows, "reply", threshold), "gold": _aggregate(rows, "gold", threshold)}
    refs = [r["gold"]["text"] for r in rows]
    overall["reply"].update(_bleu_rouge([r["reply"]["text"] for r in rows], refs))
    # Perplexity of the references under the LLM (token-weighted over all items).
    lp = [r["reference_logprob"] for r in rows if r.get("reference_logprob")]
    ppl = round(math.exp(-sum(x["logprob"] for x in lp) / sum(x["tokens"] for x in lp)), 3) if lp else None
    overall["reply"]["reference_perplexity"] = ppl
    overall["reply"]["latency"] = {"first_text_s": _pcts([r["reply"]["first_text_s"] for r in rows]),
                                   "total_s": _pcts([r["reply"]["total_s"] for r in rows])}
    overall["reply"]["crisis_routed"] = sum(1 for r in rows if r["reply"].get("crisis"))
    overall["reply"]["errors"] = sum(1 for r in rows if r["reply"].get("error"))
    # Per gold strategy.
    by_strategy: dict[str, Any] = {}
    for s in sorted({r["gold_strategy"] for r in rows if r["gold_strategy"]}):
        sub = [r for r in rows if r["gold_strategy"] == s]
        a, g = _aggregate(sub, "reply", threshold), _aggregate(sub, "gold", threshold)
        by_strategy[s] = {"n": len(sub), "family": family_of(s),
                          "reply": {k: a[k] for k in ("empathy", "relevance_message", "off_topic_rate", "adherence",
                                                      "gold_strategy_agreement")},
                          "gold": {k: g[k] for k in ("empathy", "relevance_message", "gold_strategy_agreement")}}
    # Per planned strategy: does the reply realise what was planned?
    by_plan: dict[str, Any] = {}
    for s in sorted({r["reply"]["planned_strategy"] for r in rows if r["reply"].get("planned_strategy")}):
        sub = [r for r in rows if r["reply"].get("planned_strategy") == s]
        adh = [r["reply"]["adherence"] for r in sub if r["reply"].get("adherence")]
        by_plan[s] = {"n": len(sub), "exact": _rate([x["exact"] for x in adh]), "family": _rate([x["family"] for x in adh])}

    def brief(r: dict[str, Any]) -> dict[str, Any]:
        return {"id": r["id"], "history": r["history"][-4:], "message": r["message"], "reply": r["reply"]["text"],
                "reference": r["gold"]["text"], "overall": get_overall(r), "relevance": r["reply"]["relevance_message"],
                "planned": r["reply"].get("planned_strategy"), "gold_strategy": r["gold_strategy"]}

    def get_overall(r: dict[str, Any]) -> float:
        e = r["reply"].get("empathy") or {}
        return float(e.get("overall") or 0.0)

    worst_judge = [brief(r) for r in sorted(rows, key=lambda r: (get_overall(r), r["id"]))[:WORST]]
    worst_rel = [brief(r) for r in sorted(rows, key=lambda r: (r["reply"]["relevance_message"], r["id"]))[:WORST]]
    return {
        "schema": REPLIES_SCHEMA, "run": {k: v for k, v in header.items()}, "judge": judge_info,
        "strategy_classifier": strategy_info,
        "tokenisation": {"bleu": "sacrebleu corpus BLEU, tokenize=13a, lowercase, effective order",
                         "rouge_l": "rouge-score RougeScorer(['rougeL']) F-measure, mean over items, x100",
                         "distinct": "lower-cased [a-z0-9'] word tokens, over all replies",
                         "relevance": "all-MiniLM-L6-v2 cosine",
                         "perplexity": "reference tokens (to the end-of-turn token) after the bare prompt, "
                                       "token-weighted over items"},
        "off_topic_threshold": threshold, "summary": overall, "by_strategy": by_strategy, "by_planned_strategy": by_plan,
        "worst": {"judge": worst_judge, "relevance": worst_rel},
        "items": rows, "scoring_s": round(time.perf_counter() - t0, 2),
        "licence_note": ("ESConv and EPITOME are research-only data: this report quotes them; do not publish it "
                         "beyond research use"),
    }

