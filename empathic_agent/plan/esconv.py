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
from empathic_agent.plan.register import FAMILIES, PlanInput, family_of, plan_register

__all__ = ["load_esconv", "evaluate_esconv"]

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


def _family_counts(convs: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(family_of(t["strategy"]) for c in convs for t in c["dialog"]
                   if t["speaker"] == "sys" and t.get("strategy"))


def evaluate_esconv(data_dir: Path | str, *, split: str = "test", encoder: Any = None, persona: Persona | None = None,
                    limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Planner vs. human supporters on an ESConv split (see the module docstring)."""
    from empathic_agent.latent import fuse, temporal_prior

    persona = persona or load_persona()
    convs = load_esconv(data_dir, split)[: limit or None]
    train_families = _family_counts(load_esconv(data_dir, "train"))
    majority = train_families.most_common(1)[0][0]
    total_train = sum(train_families.values())
    prior = {f: train_families[f] / total_train for f in FAMILIES}

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    iterator: Any = convs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(convs, desc="ESConv conversations", unit="conv", leave=False)
    for conv in iterator:
        fused = None
        valences: list[float] = []
        seeker_turns = 0
        last_words: list[str] = []
        strategies: list[str] = []
        mood = None
        sys_index = 0
        new_words = False
        for turn in conv["dialog"]:
            text = str(turn.get("text", "")).strip()
            if turn["speaker"] == "usr":
                if not new_words:
                    last_words = []
                last_words.append(text)
                new_words = True
                if encoder is not None and text:
                    reading = encoder.encode(text)
                    if fused is not None:
                        valences.append(fused.mean[0])
                    fused = fuse([reading], prior=temporal_prior(fused) if fused is not None else None)
                seeker_turns += 1
                continue
            gold = turn.get("strategy")
            if new_words:
                new_words = False
            if not gold or seeker_turns == 0:
                if gold:
                    strategies.append(gold)
                continue
            sys_index += 1
            mood = update_mood(mood, persona, perceived=fused.mean if fused else None,
                               confidence=fused.confidence if fused else 0.0)
            x = PlanInput(state=fused.mean if fused else None, confidence=fused.confidence if fused else 0.0,
                          top_category=fused.top_category if fused else "neutral",
                          mixed_signals=False, valence_history=tuple(valences), turn_index=seeker_turns,
                          previous_strategies=tuple(strategies), text=" ".join(last_words), mood=mood)
            planned = plan_register(x, persona).strategy
            rows.append({"gold": gold, "planned": planned, "previous": strategies[-1] if strategies else None,
                         "sys_index": sys_index})
            strategies.append(gold)
    seconds = time.perf_counter() - t0
    if not rows:
        raise ConfigError("no supporter turns to evaluate")

    gold_f = np.array([family_of(r["gold"]) for r in rows])
    plan_f = np.array([family_of(r["planned"]) for r in rows])
    prev_f = np.array([family_of(r["previous"]) if r["previous"] else "other" for r in rows])
    test_freq = {f: float(np.mean(gold_f == f)) for f in FAMILIES}
    confusion = {g: {p: int(np.sum((gold_f == g) & (plan_f == p))) for p in FAMILIES} for g in FAMILIES}
    by_phase = {}
    for name, lo, hi in PHASES:
        m = np.array([lo <= r["sys_index"] <= hi for r in rows])
        if m.any():
            by_phase[name] = {"n": int(m.sum()), "family_agreement": round(float(np.mean(gold_f[m] == plan_f[m])), 4),
                              "majority_baseline": round(float(np.mean(gold_f[m] == majority)), 4)}
    return {
        "data": f"ESConv/{split}", "conversations": len(convs), "supporter_turns": len(rows),
        "persona": persona.name, "text_encoder": encoder is not None,
        "family_agreement": round(float(np.mean(gold_f == plan_f)), 4),
        "strategy_agreement": round(float(np.mean([r["gold"] == r["planned"] for r in rows])), 4),
        "baselines": {
            "majority_family": {"family": majority, "agreement": round(float(np.mean(gold_f == majority)), 4)},
            "random_by_train_frequency": round(sum(prior[f] * test_freq[f] for f in FAMILIES), 4),
            "repeat_previous_strategy": {
                "family_agreement": round(float(np.mean(gold_f == prev_f)), 4),
                "strategy_agreement": round(float(np.mean([r["gold"] == r["previous"] for r in rows])), 4)},
        },
        "planned_family_distribution": {f: round(float(np.mean(plan_f == f)), 4) for f in FAMILIES},
        "gold_family_distribution": {f: round(v, 4) for f, v in test_freq.items()},
        "planned_strategies": dict(Counter(r["planned"] for r in rows).most_common()),
        "family_confusion": {"rows": "gold", "columns": "planned", "matrix": confusion},
        "by_phase": by_phase,
        "seconds": round(seconds, 2),
        "licence_note": "ESConv: academic research use only; read at run time, never stored",
    }
