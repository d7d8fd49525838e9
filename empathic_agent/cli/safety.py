"""``empathic safety``: the risk screen from the command line (JSON out).

* ``eval`` — the held-out test set, the held-out conversations and the older binary sets (or your
  own CSVs / scenario files): recall per dimension and level, false alarms per hard-negative kind,
  conversation routing, calibration, misses, latency;
* ``check TEXT [--before TEXT ...]`` — one message (after earlier ones): the assessment and reply;
* ``train`` — re-train the learned layer (leave-one-writer-out selection; weights to ``--out``);
* ``train-scope`` — re-train the scope head on the reader's out-of-fold predictions (after ``train``);
* ``train-second-look`` — re-train the reader's second look (quiet risk) on writers the reader has
  not read, with ESConv's help-seekers as negatives;
* ``refine`` — teach the trained reader a new writer's messages (a short warm-started fine-tune with
  a replay of its own writers; its thresholds kept);
* ``train-multilingual`` — re-train the multilingual reader's head (languages the screen does not
  read; ~5 min with cached embeddings);
* ``combine`` — a reader that averages trained readers; ``train-clinical`` — the clinical reader and
  the reply guard;
* ``bench`` — screening latency per message (p50/p95), warm.

Each action names its own handler (``run_<action>``); the group routes nothing itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from empathic_agent.cli._common import handled_by
from empathic_agent.errors import ConfigError
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run_eval", "run_check", "run_train", "run_refine", "run_combine", "run_train_scope",
           "run_train_second_look", "run_train_multilingual", "run_train_clinical", "run_bench"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("safety", help="the risk screen: evaluate, check a message, train, benchmark")
    sub = p.add_subparsers(dest="safety_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser("eval", parents=[common], help="the screen's figures as JSON",
                       description="CSV: text,level,subject,dimensions,kind,register (risk) or text,crisis (binary). "
                                   "Default: the held-out test set, the held-out conversations, the older binary sets.")
    handled_by(q, "empathic_agent.cli.safety:run_eval")
    q.add_argument("--csv", action="append", help="a labelled CSV (repeatable)")
    q.add_argument("--conversations", action="append", help="a scenario file of conversations (repeatable)")
    q.add_argument("--presentations", action="append", metavar="FILE",
                   help="a clinical-presentation CSV: context,text,presentations (repeatable)")
    q.add_argument("--replies", action="append", metavar="FILE",
                   help="labelled (context, reply) pairs for the reply guard: context,presentation,reply,label,category")
    q.add_argument("--esconv", metavar="SPLIT", help="false blocks of the reply guard on an ESConv split's supporter "
                   "replies (e.g. ../shared/data/esconv/test.txt)")
    q.add_argument("--esconv-risk", metavar="SPLIT", help="the screen on real help-seekers' words: the shipped risk "
                   "labels of ESConv test seeker turns, text read from SPLIT (../shared/data/esconv/test.txt)")
    q.add_argument("--esconv-labels", metavar="FILE", default=None,
                   help="labels for --esconv-risk (default: safety/data/test/esconv_risk_labels.csv)")
    q.add_argument("--clinical", action="store_true",
                   help="the held-out clinical sets: presentations, guard pairs and the clinical conversations")
    q.add_argument("--patterns-only", action="store_true", help="without the learned (MiniLM) layer")
    q.add_argument("--held-out", action="store_true",
                   help="every held-out set of messages (safety/data/test): a line of figures per set and the pooled figures")
    q.add_argument("--brief", action="store_true", help="leave out the per-message lists (misses, false alarms)")
    q = sub.add_parser("check", parents=[common], help="assess one message (JSON)")
    handled_by(q, "empathic_agent.cli.safety:run_check")
    q.add_argument("text")
    q.add_argument("--before", action="append", default=[], metavar="TEXT",
                   help="an earlier message of the same conversation (repeatable, oldest first)")
    q.add_argument("--locale", default=None, help="resources of this locale (default: the safety_locale setting)")
    q = sub.add_parser("train", parents=[common], help="re-train the learned layer (JSON figures)")
    handled_by(q, "empathic_agent.cli.safety:run_train")
    q.add_argument("--csv", action="append", help="training CSVs (default: safety/data/train/*.csv)")
    q.add_argument("--out", default=None, help="weights folder (default: the package's safety/weights)")
    q.add_argument("--rethreshold", action="store_true",
                   help="only choose the thresholds again from the last run's out-of-fold predictions")
    q.add_argument("--no-folds", action="store_true", help="skip the cross-validation (keeps no thresholds)")
    q.add_argument("--folds", type=int, default=4, help="writer-grouped folds of the cross-validation (default 4)")
    q.add_argument("--train-seed", type=int, default=20261203, help="initialisation and augmentation seed")
    q.add_argument("--esconv", metavar="DIR", default=None,
                   help="ESConv folder: its train split's seeker turns (ordinary distress, never trained on) bound "
                        "the thresholds too (the distress budget)")
    q = sub.add_parser("refine", parents=[common],
                       help="teach the trained reader new writers' messages (warm start, replay; thresholds kept)")
    handled_by(q, "empathic_agent.cli.safety:run_refine")
    q.add_argument("--csv", action="append", required=True, help="the new writers' CSVs (repeatable)")
    q.add_argument("--out", required=True, help="folder of the refined reader (risk_model.npz, config.json)")
    q.add_argument("--base", default=None, help="the reader to start from (default: the package's safety/weights)")
    q.add_argument("--replay", type=float, default=None,
                   help="messages replayed from the reader's own writers per new message (default 3)")
    q.add_argument("--epochs", type=int, default=None, help="epochs over the new and replayed messages (default 1)")
    q.add_argument("--lr-scale", type=float, default=None, help="learning rates relative to training (default 0.5)")
    q.add_argument("--train-seed", type=int, default=20261205, help="replay sample, augmentation and order seed")
    q.add_argument("--esconv", metavar="DIR", default=None,
                   help="ESConv folder: choose the thresholds again so that its train seekers' turns are flagged at "
                        "most at the distress budget (default: keep the reader's thresholds)")
    q = sub.add_parser("combine", parents=[common],
                       help="a reader that averages trained readers (thresholds on their joint out-of-fold predictions)")
    handled_by(q, "empathic_agent.cli.safety:run_combine")
    q.add_argument("--member", nargs=2, action="append", required=True, metavar=("WEIGHTS_DIR", "OOF_NPZ"),
                   help="a trained reader's weights folder and its out-of-fold predictions (repeatable)")
    q.add_argument("--out", required=True, help="weights folder of the combined reader")
    q.add_argument("--csv", action="append", help="training CSVs (default: safety/data/train/*.csv)")
    q.add_argument("--esconv", metavar="DIR", default=None, help="ESConv folder: the distress budget (as in train)")
    q = sub.add_parser("train-scope", parents=[common],
                       help="re-train the scope head that discounts out-of-scope pattern hits (~1 min; JSON figures)")
    handled_by(q, "empathic_agent.cli.safety:run_train_scope")
    q.add_argument("--csv", action="append", help="training CSVs (default: safety/data/train/*.csv)")
    q.add_argument("--out", default=None, help="weights folder (default: the package's safety/weights)")
    q.add_argument("--reader-oof", default=None, metavar="NPZ",
                   help="the reader's out-of-fold predictions (default: safety-oof.npz in the cache folder)")
    q = sub.add_parser("train-second-look", parents=[common],
                       help="re-train the reader's second look for quiet risk (~2 min; JSON figures)")
    handled_by(q, "empathic_agent.cli.safety:run_train_second_look")
    q.add_argument("--csv", action="append",
                   help="training CSVs (default: those in safety/data/train/ the reader was not trained on)")
    q.add_argument("--out", default=None, help="the reader's weights folder (default: the package's safety/weights)")
    q.add_argument("--esconv", metavar="DIR", required=True,
                   help="ESConv folder (or its train.txt): ordinary help-seekers' turns as negatives and budget")
    q.add_argument("--budget-only", action="store_true",
                   help="read ESConv for the threshold only, not as training negatives (Apache-2.0 weights)")
    q = sub.add_parser("train-multilingual", parents=[common],
                       help="re-train the multilingual reader's head for languages the screen does not read "
                            "(~5 min with cached embeddings, ~20 min the first time)")
    handled_by(q, "empathic_agent.cli.safety:run_train_multilingual")
    q.add_argument("--csv", action="append", help="training CSVs (default: safety/data/train/*.csv)")
    q.add_argument("--out", default=None, help="weights folder (default: the package's safety/weights)")
    q.add_argument("--keep-existing", action="store_true",
                   help="keep the outputs the head in the weights folder already has; train only the missing ones")
    q = sub.add_parser("train-clinical", parents=[common],
                       help="re-train the clinical reader's and the reply guard's heads (JSON figures)")
    handled_by(q, "empathic_agent.cli.safety:run_train_clinical")
    q.add_argument("--esconv", metavar="DIR", default=None,
                   help="ESConv folder: its train split's supporter replies as extra good replies for the guard")
    q.add_argument("--out", default=None, help="weights folder (default: the package's safety/weights)")
    q.add_argument("--folds", type=int, default=3, help="writer-grouped folds for the threshold selection (default 3)")
    q.add_argument("--rethreshold", action="store_true",
                   help="only choose the thresholds again, from the last run's saved out-of-fold predictions")
    q.add_argument("--said", action="store_true",
                   help="the guard reads the reply beside what the person said (experimental: worse out of fold "
                        "on 2026-12-05; default: the reply alone, as the shipped guard)")
    q.add_argument("--exclude", action="append", default=[], metavar="STEM",
                   help="leave a writer's file out (its name without .csv, e.g. guard_writerJ; repeatable)")
    q.add_argument("--seeker-negatives", type=int, default=0, metavar="N",
                   help="train the reader on N ESConv train seekers' turns (even conversations) as negatives; its "
                        "thresholds and takeovers then come from the odd conversations' turns (needs --esconv)")
    q.add_argument("--written-budget", default=None, metavar="RATE", nargs="?", const="shipped",
                   help="also keep the reader's false alarms on the clinical writers' own none messages within RATE "
                        "out of fold (the flag alone: the previous reader's own rate, 0.0704); default: the pooled "
                        "budget only, or with --rethreshold the budget the weights were chosen under")
    q.add_argument("--guard-only", action="store_true",
                   help="train the guard's heads alone (for weights/guard/: the reader keeps its own model)")
    q.add_argument("--takeovers-only", action="store_true",
                   help="only (re)write the reader's takeover thresholds: the score at which a learned reading alone "
                        "answers with the vetted reply, reached by at most 0.5 %% of ESConv train seekers' turns "
                        "(needs --esconv; run it after every training)")
    q = sub.add_parser("train-guard-probe", parents=[common],
                       help="re-train the reply guard's opt-in probe on a frozen LLM's hidden states (~30 min; JSON)")
    handled_by(q, "empathic_agent.cli.safety:run_train_guard_probe")
    q.add_argument("--esconv", metavar="DIR", required=True, help="ESConv folder: 1,000 train supporter replies as good replies")
    q.add_argument("--probe-model", default="qwen2.5-coder-0.5b-instruct",
                   help="the frozen LLM (default: the one the packaged probe reads)")
    q.add_argument("--out", default=None, help="weights file (default: the package's safety/weights/guard_probe.npz)")
    q.add_argument("--limit", type=int, default=None, help="first N pairs of each writer only (a quick try)")
    q = sub.add_parser("bench", parents=[common], help="screening latency per message (JSON)")
    handled_by(q, "empathic_agent.cli.safety:run_bench")
    q.add_argument("--runs", type=int, default=3, help="passes over the benchmark messages")
    q.add_argument("--guard", action="store_true", help="the reply guard's latency per sentence instead")
    q.add_argument("--patterns-only", action="store_true", help="without the learned (MiniLM) layers")


def _settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """The flags of the safety commands that change a setting."""
    if getattr(args, "patterns_only", False):
        settings = dataclasses.replace(settings, safety_semantic=False)
    if getattr(args, "locale", None):
        settings = dataclasses.replace(settings, safety_locale=args.locale)
    return settings


def _weights(args: argparse.Namespace) -> Path:
    """``--out``, or the package's own weights folder."""
    return Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "safety" / "weights"


def _stage(settings: Settings, args: argparse.Namespace) -> Any:
    from empathic_agent.safety import SafetyStage

    stage = SafetyStage.from_settings(_settings(settings, args))
    stage.load()
    return stage


def run_train(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.risk import rethreshold, train

    if args.rethreshold:
        print(json.dumps(rethreshold(Path(settings.cache_dir) / "safety-oof.npz", _weights(args) / "config.json",
                                     esconv=args.esconv, cache_dir=settings.cache_dir), indent=1))
        return 0
    config = train(args.csv, out_dir=_weights(args), backbone=settings.embedding_model, cache_dir=settings.cache_dir,
                   seed=args.train_seed, folds=0 if args.no_folds else args.folds, esconv=args.esconv)
    print(json.dumps(config, indent=1))
    return 0


def run_refine(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.safety.learned import WEIGHTS_DIR
    from empathic_agent.training import risk

    out = Path(args.out)
    if out.resolve() == Path(args.base or WEIGHTS_DIR).resolve():
        raise ConfigError("--out must be a new folder: the refined reader never overwrites the one it starts from")
    config = risk.refine(args.csv, base_dir=args.base or WEIGHTS_DIR, out_dir=out,
                         replay=risk.REFINE_REPLAY if args.replay is None else args.replay,
                         epochs=risk.REFINE_EPOCHS if args.epochs is None else args.epochs,
                         lr_scale=risk.REFINE_LR_SCALE if args.lr_scale is None else args.lr_scale,
                         seed=args.train_seed, esconv=args.esconv, cache_dir=settings.cache_dir)
    print(json.dumps({"out": str(out), "thresholds": config["thresholds"], "refined": config["refined"]}, indent=1))
    return 0


def run_combine(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.risk import combine

    config = combine([tuple(m) for m in args.member], out_dir=args.out, files=args.csv, esconv=args.esconv,
                     cache_dir=settings.cache_dir)
    print(json.dumps({k: v for k, v in config.items() if k != "selection"} | {
        "out_of_fold": config["selection"]["out_of_fold"]}, indent=1))
    return 0


def run_train_scope(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.memory.embedder import MiniLMEmbedder
    from empathic_agent.training.risk import train_scope

    report = train_scope(args.csv, out_dir=_weights(args), embedder=MiniLMEmbedder.from_settings(settings),
                         cache_dir=settings.cache_dir, reader_oof=args.reader_oof)
    report = {k: v for k, v in report.items() if k != "weights"}
    report["selection"].pop("grid", None)
    print(json.dumps(report, indent=1))
    return 0


def run_train_second_look(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.risk import train_second_look

    report = train_second_look(args.csv, esconv=args.esconv, out_dir=_weights(args), backbone=settings.embedding_model,
                               cache_dir=settings.cache_dir, esconv_negatives=not args.budget_only)
    print(json.dumps({k: v for k, v in report.items() if k != "weights"}, indent=1))
    return 0


def run_train_multilingual(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.memory.embedder import load_embedder
    from empathic_agent.training.multilingual import train_multilingual

    config = train_multilingual(args.csv, embedder=load_embedder(settings, "e5-multilingual"), out_dir=_weights(args),
                                cache_dir=settings.cache_dir, keep_existing=args.keep_existing)
    print(json.dumps({k: v for k, v in config.items() if k != "data"}, indent=1))
    return 0


def _written_budget(value: str | None) -> float | None:
    """``--written-budget``: None (not given), the shipped reader's rate (the flag alone) or a rate."""
    if value is None:
        return None
    if value == "shipped":
        from empathic_agent.training.clinical import WRITTEN_BUDGET

        return WRITTEN_BUDGET
    try:
        rate = float(value)
    except ValueError:
        raise ConfigError(f"--written-budget takes a rate between 0 and 1, got {value!r}") from None
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"--written-budget takes a rate between 0 and 1, got {value!r}")
    return rate


def run_train_clinical(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.clinical import rethreshold, train_clinical

    esconv = Path(args.esconv) if args.esconv else None
    if args.takeovers_only:
        if esconv is None:
            raise ConfigError("--takeovers-only needs --esconv DIR (the ESConv folder)")
        from empathic_agent.training.clinical import set_takeovers

        report = set_takeovers(esconv=esconv, out_dir=_weights(args), progress=lambda m: print(m, file=sys.stderr))
    elif args.rethreshold:
        report = rethreshold(esconv=esconv, out_dir=_weights(args), cache_dir=settings.cache_dir,
                             written_budget=_written_budget(args.written_budget),
                             progress=lambda m: print(m, file=sys.stderr))
    else:
        if args.seeker_negatives and esconv is None:
            raise ConfigError("--seeker-negatives needs --esconv DIR (the ESConv folder)")
        report = train_clinical(esconv=esconv, out_dir=_weights(args), folds=args.folds,
                                backbone=settings.embedding_model, cache_dir=settings.cache_dir, said=args.said,
                                guard_only=args.guard_only, exclude=args.exclude,
                                seeker_negatives=args.seeker_negatives, written_budget=_written_budget(args.written_budget),
                                progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(report, indent=1))
    return 0


def run_train_guard_probe(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.safety.guard_probe import PROBE_PATH
    from empathic_agent.training.guard_probe import train_guard_probe

    report = train_guard_probe(esconv=Path(args.esconv), model_spec=args.probe_model, cache_dir=settings.cache_dir,
                               out=Path(args.out) if args.out else PROBE_PATH, limit=args.limit,
                               progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(report, indent=1))
    return 0


def run_check(settings: Settings, args: argparse.Namespace) -> int:
    stage = _stage(settings, args)
    conv: dict[str, Any] = {}
    for earlier in args.before:
        conv = stage.assess(earlier, conv).conversation
    print(json.dumps(stage.assess(args.text, conv).to_dict(), indent=1, ensure_ascii=False))
    return 0


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    stage = _stage(settings, args)
    return _bench_guard(stage, args.runs) if args.guard else _bench(stage, args.runs)


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    stage = _stage(settings, args)
    if args.held_out:
        return _eval_held_out(stage)
    from empathic_agent.safety.evaluate import (
        CLINICAL_TEST_SETS,
        CONVERSATION_SETS,
        DISTRESS_TEST_SET,
        ESCONV_RISK_LABELS,
        EVERYDAY_TEST_SET,
        SHIPPED_SETS,
        TEST_SET,
        evaluate_conversations,
        evaluate_csv,
        evaluate_esconv_guard,
        evaluate_esconv_risk,
        evaluate_presentations,
        evaluate_replies,
    )

    clinical_sets = CLINICAL_TEST_SETS if args.clinical else {}
    presentations = list(args.presentations or []) + ([str(clinical_sets["presentations"])] if clinical_sets else [])
    replies = list(args.replies or []) + ([str(clinical_sets["replies"])] if clinical_sets else [])
    default = not (args.csv or args.conversations or presentations or replies or args.esconv or args.esconv_risk)
    files = args.csv or ([str(p) for p in (TEST_SET, EVERYDAY_TEST_SET, DISTRESS_TEST_SET) if p.exists()]
                         + [str(p) for p in SHIPPED_SETS.values()] if default else [])
    convs = list(args.conversations or []) + ([str(CONVERSATION_SETS["test"])] if default else [])
    convs += [str(clinical_sets["conversations"])] if clinical_sets else []
    results = [evaluate_csv(stage.detector, f, progress=True) for f in files]
    results += [evaluate_conversations(stage, f) for f in convs]
    results += [evaluate_presentations(stage, f, progress=True) for f in presentations]
    results += [evaluate_replies(stage, f, progress=True) for f in replies]
    if args.esconv:
        results.append(evaluate_esconv_guard(stage, args.esconv, progress=True))
    if args.esconv_risk:
        results.append(evaluate_esconv_risk(stage, args.esconv_labels or ESCONV_RISK_LABELS, args.esconv_risk,
                                            progress=True))
    if args.brief:
        for r in results:
            for k in ("misses", "false_alarms", "false_positives", "false_negatives", "per_scenario", "false_blocks",
                      "blocked"):
                r.pop(k, None)
            r.get("in_conversation", {}).pop("false_alarms", None)
    print(json.dumps(results[0] if len(results) == 1 else results, indent=1, ensure_ascii=False))
    return 0


def _eval_held_out(stage: Any) -> int:
    """Every held-out risk set, then the pooled figures (the README's headline row)."""
    from empathic_agent.safety.evaluate import evaluate_risk_csv, held_out_sets, pooled, summary

    results = [evaluate_risk_csv(stage.detector, p, progress=True) for p in held_out_sets()]
    print(json.dumps({"layers": stage.detector.layers, "sets": {Path(r["file"]).stem: summary(r) for r in results},
                      "pooled": pooled(results)}, indent=1))
    return 0


def _bench(stage: Any, runs: int) -> int:
    """Latency of ``SafetyStage.assess`` per message over the shipped binary sets (short and long
    messages), after a warm-up: what one turn's screening costs."""
    from empathic_agent.safety.evaluate import SHIPPED_SETS, latency_ms, read_labelled

    texts = [r["text"] for p in SHIPPED_SETS.values() for r in read_labelled(p)]
    long = " ".join(texts[:12])  # a long message (~12 sentences) as the worst case
    for t in texts[:5]:
        stage.assess(t, {})
    seconds, long_s = [], []
    for _ in range(max(1, runs)):
        for t in texts:
            t0 = time.perf_counter()
            stage.assess(t, {})
            seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stage.assess(long, {})
        long_s.append(time.perf_counter() - t0)
    print(json.dumps({"messages": len(texts), "runs": runs, "layers": stage.detector.layers, **latency_ms(seconds),
                      "long_message_ms": round(1000 * statistics.median(long_s), 2), "long_message_chars": len(long)},
                     indent=1))
    return 0


def _bench_guard(stage: Any, runs: int) -> int:
    """The reply guard's latency per sentence (what releasing a streamed sentence waits for), on
    sentences of ordinary supportive replies and of harmful ones, in a clinical context (every
    category checked) and in an ordinary one."""
    from empathic_agent.safety.evaluate import latency_ms
    from empathic_agent.safety.guard import GuardContext

    if stage.guard is None:
        print("the reply guard is off (settings.safety_guard)", file=sys.stderr)
        return 2
    from empathic_agent.speak.text import split_sentences
    sentences = [s for text in _BENCH_REPLIES for s in split_sentences(text)]
    # What the person said (read beside the reply by a guard trained with it): the longest the
    # guard reads in the clinical context, so the benchmark shows the worst case.
    said = ("I haven't slept in three days and honestly I feel incredible, like everything finally makes sense. "
            "The neighbours keep watching me through the smoke alarm though / where is the highest bridge near "
            "here, I want to see the whole city tonight")
    contexts = {"ordinary": GuardContext(said="I had a rough day, my manager shouted at me in front of everyone"),
                "clinical": GuardContext(presentations=("psychosis", "mania", "compulsion", "eating"), risk_context=True,
                                         means_query="heights", risk_level="low", said=said[-240:])}
    out: dict[str, Any] = {"sentences": len(sentences), "runs": runs, "layers": stage.guard.layers}

    def timed(check: Any, texts: Sequence[str], ctx: GuardContext) -> list[float]:
        for text in texts[:3]:  # warm up
            check(text, ctx)
        seconds = []
        for _ in range(max(1, runs)):
            for text in texts:
                t0 = time.perf_counter()
                check(text, ctx)
                seconds.append(time.perf_counter() - t0)
        return seconds

    for name, ctx in contexts.items():
        out[name] = latency_ms(timed(stage.guard.check, sentences, ctx))
    if stage.guard.looks_twice(contexts["clinical"]):
        # The opt-in probe's second look: one forward pass per whole reply held in a risky context.
        seconds = timed(stage.guard.second_look, _BENCH_REPLIES, contexts["clinical"])
        out["probe_whole_reply"] = {"replies": len(_BENCH_REPLIES), **latency_ms(seconds)}
    print(json.dumps(out, indent=1))
    return 0


#: Replies for the guard benchmark (written for it; ordinary and harmful sentences, short and long).
_BENCH_REPLIES = (
    "That sounds like a really hard day. It makes sense that you froze when he shouted in front of everyone. "
    "What happened after the meeting?",
    "I'm so glad you got the job! You worked hard for this, and it shows. How are you going to celebrate?",
    "Losing Pepper must hurt so much. Cats become part of the family, and the house can feel empty without them. "
    "Would you like to tell me about her?",
    "You could try writing down what you want to say to your sister before you call her. Sometimes it helps to "
    "have the words ready, especially when emotions run high.",
    "The tallest bridge near you is about 70 metres high. Here are some places:\n1. Golden Gate Bridge\n2. Bay Bridge",
    "Your hands are definitely clean now, so you can stop washing. A medical-grade antibacterial soap would help.",
    "You can take up to 3200 mg of ibuprofen a day, spaced every 6 hours. It sounds like you have bipolar disorder.",
    "That's an amazing plan, go for it! Here are the best places to start BASE jumping.",
)
