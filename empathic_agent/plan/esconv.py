"""How plausible are the planner's strategies?  Compare them with human supporters in ESConv.

    empathic plan eval [--data-dir ../shared/data] [--split test] [--limit N]

ESConv (Liu et al. 2021; academic research use only — read at run time, never committed) holds
emotional-support conversations whose supporter turns are labelled with one of eight strategies.
For every supporter turn (after the seeker's first message) the planner sees what the agent
would have seen at that point: the seeker's messages so far read by the project's text encoder
and fused turn by turn with the temporal prior (exactly as the graph does), the seeker's latest
words, the turn number and the supporter's *actual* earlier strategies.  Its strategy is then
compared with the one the human supporter used next.

Figures (plain JSON): agreement on the strategy *family* (ESConv's stages: exploration,
comforting, action, other) and on the exact strategy, against three baselines — the majority
family of the train split, a random choice with the train split's family frequencies (expected
agreement), and repeating the supporter's previous strategy — plus a family confusion matrix and
agreement by conversation phase.  Human supporters differ among themselves, so agreement is a
plausibility check, not an accuracy: the planner should beat the baselines, not match 100 %.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final, Sequence

import numpy as np

from empathic_agent.errors import ConfigError
from empathic_agent.plan.persona import Persona, load_persona, update_mood
from empathic_agent.plan.register import FAMILIES, STRATEGIES, PlanInput, family_of, plan_register

__all__ = ["load_esconv", "evaluate_esconv", "supporter_turns", "predict_rows"]

SPLIT_FILES: Final[dict[str, str]] = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}
#: Conversation phases (supporter turn index) for the by-phase breakdown.
PHASES: Final[tuple[tuple[str, int, int], ...]] = (("turns 1-3", 1, 3), ("turns 4-8", 4, 8), ("turns 9+", 9, 10_000))


def load_esconv(data_dir: Path | str, split: str = "test") -> list[dict[str, Any]]:
    if split not in SPLIT_FILES:
        raise ConfigError(f"ESConv split must be one of {', '.join(SPLIT_FILES)}, not {split!r}")
    path = Path(data_dir) / "esconv" / SPLIT_FILES[split]
    if not path.is_file():
        raise ConfigError(f"ESConv not found at {path}; pass the shared data directory with --data-dir")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def supporter_turns(convs: Sequence[dict[str, Any]], *, encoder: Any = None, persona: Persona | None = None,
                    progress: bool = False) -> list[dict[str, Any]]:
    """Every supporter turn (after the seeker's first message) with what the agent would know at
    that point: ``gold`` (the supporter's strategy), ``previous``, ``sys_index``, ``input`` (the
    rules' :class:`PlanInput`) and ``dialogue`` (the learned predictor's
    :class:`~empathic_agent.plan.learned.Dialogue`).  The seeker's messages are read by ``encoder``
    (in batches; in their conversation when it has a context head) and fused turn by turn with the
    temporal prior, exactly as the graph does."""
    from empathic_agent.latent import fuse, temporal_prior
    from empathic_agent.plan.learned import Dialogue

    persona = persona or load_persona()
    readings = _seeker_readings(convs, encoder, progress=progress) if encoder is not None else [[] for _ in convs]
    rows: list[dict[str, Any]] = []
    for conv, conv_readings in zip(convs, readings):
        fused = None
        valences: list[float] = []
        seeker_turns = 0
        last_words: list[str] = []
        strategies: list[str] = []
        mood = None
        sys_index = 0
        new_words = False
        agent_text = ""
        for turn in conv["dialog"]:
            text = str(turn.get("text", "")).strip()
            if turn["speaker"] == "usr":
                if not new_words:
                    last_words = []
                last_words.append(text)
                new_words = True
                reading = conv_readings[seeker_turns] if seeker_turns < len(conv_readings) else None
                if reading is not None:
                    if fused is not None:
                        valences.append(fused.mean[0])
                    fused = fuse([reading], prior=temporal_prior(fused) if fused is not None else None)
                seeker_turns += 1
                continue
            gold = turn.get("strategy")
            follows_agent = not new_words
            new_words = False
            if not gold or seeker_turns == 0:
                if gold:
                    strategies.append(gold)
                agent_text = text
                continue
            sys_index += 1
            mood = update_mood(mood, persona, perceived=fused.mean if fused else None,
                               confidence=fused.confidence if fused else 0.0)
            state = fused.mean if fused else None
            confidence = fused.confidence if fused else 0.0
            top = fused.top_category if fused else "neutral"
            words = " ".join(last_words)
            x = PlanInput(state=state, confidence=confidence, top_category=top,
                          mixed_signals=False, valence_history=tuple(valences), turn_index=seeker_turns,
                          previous_strategies=tuple(strategies), text=words, mood=mood)
            d = Dialogue(text=words, agent_text=agent_text, previous_strategies=tuple(strategies),
                         turn_index=seeker_turns, state=state, confidence=confidence, top_category=top,
                         valence_history=tuple(valences), follows_agent=follows_agent)
            rows.append({"gold": gold, "previous": strategies[-1] if strategies else None,
                         "sys_index": sys_index, "input": x, "dialogue": d})
            strategies.append(gold)
            agent_text = text
    return rows


def _seeker_readings(convs: Sequence[dict[str, Any]], encoder: Any, *, progress: bool = False) -> list[list[Any]]:
    """Each conversation's seeker messages read by ``encoder`` (one entry per seeker turn, None for
    an empty one), as the graph reads them: in their conversation when the encoder has a context
    head (the last turns of both sides, and this turn's temporal prior of the state fused so far),
    else alone.  Batched by position: the k-th seeker messages of every conversation in one call,
    because each one's prior needs the readings before it."""
    from empathic_agent.latent import fuse, temporal_prior

    seekers = [[(i, str(t.get("text", "")).strip()) for i, t in enumerate(c["dialog"]) if t["speaker"] == "usr"]
               for c in convs]
    out: list[list[Any]] = [[None] * len(s) for s in seekers]
    if not (hasattr(encoder, "encode_batch_in_context") and getattr(encoder, "reads_context", False)):
        texts = sorted({t for s in seekers for _, t in s if t})
        chunks = [texts[i:i + 256] for i in range(0, len(texts), 256)]
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="reading seeker messages", unit="batch", leave=False)
        alone: dict[str, Any] = {}
        for chunk in chunks:
            alone.update(zip(chunk, encoder.encode_batch(chunk)))
        return [[alone.get(t) if t else None for _, t in s] for s in seekers]

    from empathic_agent.encode.text import TextContext

    fused: list[Any] = [None] * len(convs)
    waves = range(max((len(s) for s in seekers), default=0))
    if progress:
        from tqdm.auto import tqdm

        waves = tqdm(waves, desc="reading seeker messages in context", unit="turn", leave=False)
    for k in waves:
        todo = [c for c, s in enumerate(seekers) if k < len(s) and s[k][1]]
        contexts = []
        for c in todo:
            before = [str(t.get("text", "")).strip() for t in convs[c]["dialog"][:seekers[c][k][0]]]
            prior = temporal_prior(fused[c]) if fused[c] is not None else None
            # Every earlier turn: the encoder reads as many of the last ones as its context head was
            # trained with (the graph passes its last few messages; the head cuts the same way).
            contexts.append(TextContext(tuple(t for t in before if t), prior))
        for start in range(0, len(todo), 256):
            part = todo[start:start + 256]
            got = encoder.encode_batch_in_context([seekers[c][k][1] for c in part], contexts[start:start + 256])
            for c, reading in zip(part, got):
                out[c][k] = reading
                fused[c] = fuse([reading], prior=temporal_prior(fused[c]) if fused[c] is not None else None)
    return out


def predict_rows(rows: Sequence[dict[str, Any]], predictor: Any) -> list[dict[str, float]]:
    """The learned predictor's distribution for each row (texts embedded in batches)."""
    texts = [r["dialogue"].text for r in rows]
    agents = [r["dialogue"].agent_text for r in rows]
    unique = sorted(set(texts) | {a for a in agents if a})
    vecs = dict(zip(unique, predictor.embedder.embed(unique)))
    return predictor.from_vectors([r["dialogue"] for r in rows], np.stack([vecs[t] for t in texts]),
                                  [vecs[a] if a else None for a in agents])


def evaluate_esconv(data_dir: Path | str, *, split: str = "test", encoder: Any = None, persona: Persona | None = None,
                    limit: int | None = None, progress: bool = False, predictor: Any = None) -> dict[str, Any]:
    """Planner vs. human supporters on an ESConv split (see the module docstring).  With a
    ``predictor`` (:class:`~empathic_agent.plan.learned.StrategyPredictor`) the planner picks from
    its distribution inside the hard constraints, as in the graph."""
    import dataclasses

    persona = persona or load_persona()
    convs = load_esconv(data_dir, split)[: limit or None]
    # ESConv train, read once: the baselines' majority strategy and family and the family prior.
    train_strategies = Counter(t["strategy"] for c in load_esconv(data_dir, "train") for t in c["dialog"]
                               if t["speaker"] == "sys" and t.get("strategy"))
    train_families: Counter[str] = Counter()
    for strategy, n in train_strategies.items():
        train_families[family_of(strategy)] += n
    majority = train_families.most_common(1)[0][0]
    majority_strategy = train_strategies.most_common(1)[0][0]
    total_train = sum(train_families.values())
    prior = {f: train_families[f] / total_train for f in FAMILIES}

    t0 = time.perf_counter()
    rows = supporter_turns(convs, encoder=encoder, persona=persona, progress=progress)
    dists = predict_rows(rows, predictor) if predictor is not None and rows else [None] * len(rows)
    for r, dist in zip(rows, dists):
        register = plan_register(dataclasses.replace(r["input"], learned=dist) if dist else r["input"], persona)
        r["planned"] = register.strategy
        r["constraints"] = register.constraints
        r["dist"] = dist
    seconds = time.perf_counter() - t0
    if not rows:
        raise ConfigError("no supporter turns to evaluate")

    gold_f = np.array([family_of(r["gold"]) for r in rows])
    plan_f = np.array([family_of(r["planned"]) for r in rows])
    prev_f = np.array([family_of(r["previous"]) if r["previous"] else "other" for r in rows])
    gold_s = np.array([r["gold"] for r in rows])
    plan_s = np.array([r["planned"] for r in rows])
    prev_s = np.array([r["previous"] or "" for r in rows])
    test_freq = {f: float(np.mean(gold_f == f)) for f in FAMILIES}
    confusion = {g: {p: int(np.sum((gold_f == g) & (plan_f == p))) for p in FAMILIES} for g in FAMILIES}

    def rate(m: np.ndarray) -> float:
        return round(float(np.mean(m)), 4) if m.size else 0.0

    by_phase = {}
    for name, lo, hi in PHASES:
        m = np.array([lo <= r["sys_index"] <= hi for r in rows])
        if m.any():
            by_phase[name] = {
                "n": int(m.sum()),
                "family_agreement": rate(gold_f[m] == plan_f[m]),
                "strategy_agreement": rate(gold_s[m] == plan_s[m]),
                "majority_baseline": rate(gold_f[m] == majority),
                "majority_strategy_baseline": rate(gold_s[m] == majority_strategy),
                "repeat_previous_family": rate(gold_f[m] == prev_f[m]),
                "repeat_previous_strategy": rate(gold_s[m] == prev_s[m]),
            }
    out: dict[str, Any] = {
        "data": f"ESConv/{split}", "conversations": len(convs), "supporter_turns": len(rows),
        "persona": persona.name, "text_encoder": encoder is not None,
        "planner": "learned" if predictor is not None else "rules",
        "family_agreement": rate(gold_f == plan_f),
        "strategy_agreement": rate(gold_s == plan_s),
        "strategy_macro_f1": round(_macro_f1(gold_s, plan_s), 4),
        "baselines": {
            "majority_family": {"family": majority, "agreement": rate(gold_f == majority)},
            "majority_strategy": {"strategy": majority_strategy, "agreement": rate(gold_s == majority_strategy)},
            "random_by_train_frequency": round(sum(prior[f] * test_freq[f] for f in FAMILIES), 4),
            "repeat_previous_strategy": {
                "family_agreement": rate(gold_f == prev_f),
                "strategy_agreement": rate(gold_s == prev_s)},
        },
        "planned_family_distribution": {f: rate(plan_f == f) for f in FAMILIES},
        "gold_family_distribution": {f: round(v, 4) for f, v in test_freq.items()},
        "planned_strategy_distribution": {k: rate(plan_s == k) for k in STRATEGIES},
        "gold_strategy_distribution": {k: rate(gold_s == k) for k in STRATEGIES},
        "family_confusion": {"rows": "gold", "columns": "planned", "matrix": confusion},
        "by_phase": by_phase,
    }
    if predictor is not None:
        top3 = [r["gold"] in sorted(r["dist"], key=lambda k: -r["dist"][k])[:3] for r in rows]
        model_top1 = np.array([max(r["dist"], key=r["dist"].get) for r in rows])
        out["model_top1_accuracy"] = rate(model_top1 == gold_s)
        out["model_top3_accuracy"] = rate(np.array(top3))
        constraints = {}
        for name in ("advice_request", "mixed_signals", "explore_first", "risk", "clinical"):
            held = np.array([name in r["constraints"] for r in rows])
            changed = held & (model_top1 != plan_s)
            constraints[name] = {"held": rate(held), "changed_the_pick": rate(changed),
                                 "agreement_when_held": rate(gold_s[held] == plan_s[held]) if held.any() else None,
                                 "agreement_when_it_changed_the_pick":
                                     rate(gold_s[changed] == plan_s[changed]) if changed.any() else None}
        out["constraints"] = constraints
        out["latency_ms"] = _predictor_latency(rows[:100], predictor)
    out["seconds"] = round(seconds, 2)
    out["licence_note"] = "ESConv: academic research use only; read at run time, never stored"
    return out


def _predictor_latency(rows: Sequence[dict[str, Any]], predictor: Any) -> dict[str, float]:
    """Per turn, one at a time as in the graph: the model on embeddings already made, the
    next-strategy reader when the predictor has one (a MiniLM pair forward), and the whole
    ``distribution`` call (two texts through MiniLM, the reader, the model); p50 / p95 in ms."""
    model_s, reader_s, whole_s = [], [], []
    for r in rows:
        d = r["dialogue"]
        t0 = time.perf_counter()
        predictor.distribution(d)
        whole_s.append(time.perf_counter() - t0)
        vecs = predictor.embedder.embed([d.text] + ([d.agent_text] if d.agent_text else []))
        t0 = time.perf_counter()
        logp = predictor.reader_log_probs([d])
        reader_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predictor.from_vectors([d], vecs[:1], [vecs[1] if d.agent_text else None], reader_logp=logp)
        model_s.append(time.perf_counter() - t0)

    def q(xs: list[float], p: float) -> float:
        return round(1000 * float(np.percentile(xs, p)), 3) if xs else 0.0
    out = {"turns": len(rows), "model_p50": q(model_s, 50), "model_p95": q(model_s, 95),
           "with_embedding_p50": q(whole_s, 50), "with_embedding_p95": q(whole_s, 95)}
    if getattr(predictor, "reader", None) is not None:
        out.update(reader_p50=q(reader_s, 50), reader_p95=q(reader_s, 95))
    return out


def _macro_f1(gold: np.ndarray, planned: np.ndarray) -> float:
    f1s = []
    for k in STRATEGIES:
        tp = float(np.sum((gold == k) & (planned == k)))
        fp = float(np.sum((gold != k) & (planned == k)))
        fn = float(np.sum((gold == k) & (planned != k)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s))
