"""``empathic encoders eval|train|list``: evaluate and train the emotion encoders.

* ``empathic encoders eval MODALITY --csv FILE`` — the generic evaluation of any encoder on any CSV
  of the documented form (see `empathic_agent.training.evaluate`), printed as one JSON object;
* ``empathic encoders eval text --dataset emobank|goemotions|all`` — the test splits from the data
  directory (``--data-dir``), with lexicon baselines beside the model;
* ``empathic encoders eval face --csv FILE | --dataset fer2013`` — images (``path,emotion``);
* ``empathic encoders train text [--data-dir DIR] [--epochs N] ...`` — train the text encoder
  (``train speech``, ``train face`` likewise);
* ``empathic encoders list`` — the modalities that have an encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import emit, handled_by
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run_list", "run_eval", "run_train_text"]


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``encoders`` command (and its actions) to the top-level subparsers."""
    p = subparsers.add_parser("encoders", help="evaluate or train the emotion encoders (JSON output)")
    sub = p.add_subparsers(dest="encoders_command", metavar="ACTION", required=True)

    q = sub.add_parser("list", parents=[common_parent], help="modalities that have an encoder")
    q.add_argument("--json", action="store_true", help="print JSON")
    handled_by(q, "empathic_agent.cli.encoders:run_list")

    q = sub.add_parser("eval", parents=[common_parent], help="evaluate an encoder on a CSV or a data set's test split",
                       description="Evaluate an encoder and print one JSON object with n, accuracy, macro_f1, "
                                   "weighted_f1, per_class_f1, confusion_matrix and pearson_valence/arousal/"
                                   "dominance (when the data has VAD labels). A CSV needs a 'text' column (or "
                                   "'path', relative to the CSV's folder, for audio/image encoders) and an "
                                   "'emotion' column (neutral, joy, sadness, anger, fear, surprise, disgust) "
                                   "and/or 'valence,arousal,dominance' columns in [-1, 1].")
    q.add_argument("modality", help="encoder modality, e.g. text")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="CSV file to evaluate on")
    src.add_argument("--dataset", choices=["emobank", "goemotions", "ed", "esconv", "all", "ravdess", "fer2013"],
                     help="test split of a known data set (text: emobank, goemotions, and the conversational "
                          "ed (EmpatheticDialogues) and esconv, read with their context; all = the four; "
                          "speech: ravdess; face: fer2013)")
    q.add_argument("--data-dir", help="shared data directory (default: the data_dir setting)")
    q.add_argument("--split", default="test", choices=["train", "dev", "test"],
                   help="data set split for --dataset (default: test)")
    q.add_argument("--weights", help="text encoder weights folder (default: the packaged weights)")
    q.add_argument("--no-baselines", action="store_true", help="skip the lexicon baselines (VADER, NRC EmoLex)")
    q.add_argument("--batch-size", type=int, default=64, help="inputs per encode_batch call (default 64)")
    q.add_argument("--out", help="also write the JSON to this file")
    q.add_argument("--reliability", metavar="PNG",
                   help="text: also draw the reliability diagram of every evaluated set into this PNG")
    q.add_argument("--in-frames", action="store_true",
                   help="face: place each crop in a 640x480 frame (random size and place, seeded by --seed), so "
                        "face detection and cropping are measured too")
    q.add_argument("--real-frames", action="store_true",
                   help="face, with --in-frames: realistic frames instead of noise — real photographs as "
                        "backgrounds, faces 60-240 px, uneven lighting, a third partly covered")
    from empathic_agent.cli.speech import add_eval_arguments

    add_eval_arguments(q)
    handled_by(q, "empathic_agent.cli.encoders:run_eval")

    q = sub.add_parser("train", help="train an encoder's heads (text, speech)")
    tsub = q.add_subparsers(dest="train_modality", metavar="MODALITY", required=True)
    t = tsub.add_parser("text", parents=[common_parent],
                        help="train the text encoder on EmoBank + GoEmotions (≈20 min on 2 CPU cores)",
                        description="Train the text encoder (LoRA on MiniLM's top layers + VAD and category "
                                    "heads) on EmoBank and GoEmotions-Ekman: train split to train, dev to "
                                    "select and calibrate, test to report. --seed is the training seed "
                                    "(default 13). A rerun resumes from the last checkpoint.")
    from empathic_agent.training.text import add_train_arguments

    add_train_arguments(t, include_seed=False)  # --seed comes from the common settings flags
    handled_by(t, "empathic_agent.cli.encoders:run_train_text")
    t = tsub.add_parser("text-context", parents=[common_parent],
                        help="train the text encoder's context head on conversational data (≈10 min)",
                        description="Train the context head of the text encoder (reads a message with the turns "
                                    "before it and the dialogue state) on EmpatheticDialogues, ESConv seeker turns "
                                    "(weak labels) and GoEmotions with random contexts, on top of the utterance "
                                    "encoder in --weights (default: the packaged one); select and calibrate on our "
                                    "dev split. Writes a complete weights folder to --out.")
    t.add_argument("--data-dir", help="shared data directory (default: the data_dir setting)")
    t.add_argument("--weights", help="utterance encoder weights folder (default: the packaged weights)")
    t.add_argument("--out", required=True, help="folder to write the weights with the context head to")
    t.add_argument("--work-dir", help="feature cache (default: <cache_dir>/train/text-context)")
    t.add_argument("--epochs", type=int, default=12, help="training epochs; the best on dev is kept (default 12)")
    handled_by(t, "empathic_agent.cli.encoders:run_train_text_context")
    from empathic_agent.cli.speech import add_train_parser

    add_train_parser(tsub, common_parent)
    from empathic_agent.cli.face import add_train_parser as add_face_train_parser

    add_face_train_parser(tsub, common_parent)
    return p


def _encoder(settings: Settings, modality: str, weights: str | None) -> Any:
    from empathic_agent.encode import load_encoder

    if weights:
        if modality != "text":
            raise SystemExit("error: --weights applies to the text encoder only")
        from empathic_agent.encode.text import TextEncoder

        return TextEncoder(weights, cache_dir=settings.cache_dir)
    return load_encoder(modality, settings)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """``empathic encoders list``."""
    from empathic_agent.encode import available_encoders

    names = available_encoders()
    print(json.dumps(names) if args.json else "\n".join(names))
    return 0


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    """``empathic encoders eval MODALITY``: speech and face have their own evaluation."""
    from empathic_agent.training.evaluate import dataset_eval_set, evaluate, lexicon_baselines, read_eval_csv

    if args.modality == "speech":
        from empathic_agent.cli.speech import run_eval

        return run_eval(settings, args)
    if args.modality == "face":
        from empathic_agent.cli.face import run_eval as run_face_eval

        return run_face_eval(settings, args)

    encoder = _encoder(settings, args.modality, args.weights)
    progress = sys.stderr.isatty()
    if args.csv:
        es = read_eval_csv(args.csv, encoder.input_kind)
        result = evaluate(encoder, es, batch_size=args.batch_size, progress=progress)
        if not args.no_baselines and es.input_kind == "text":
            result["baselines"] = lexicon_baselines(es)
        _reliability(args, {Path(args.csv).name: result})
        emit(result, args.out)
        return 0
    if args.modality != "text":
        print(f"error: --dataset evaluates the text encoder; for {args.modality!r} use --csv", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    names = ["emobank", "goemotions", "ed", "esconv"] if args.dataset == "all" else [args.dataset]
    results: dict[str, Any] = {}
    for name in names:
        es = dataset_eval_set(name, data_dir, args.split)
        res = evaluate(encoder, es, batch_size=args.batch_size, progress=progress)
        if not args.no_baselines:
            res["baselines"] = lexicon_baselines(es)
        results[name] = res
    _reliability(args, results)
    emit(results[names[0]] if len(names) == 1 else results, args.out)
    return 0


def _reliability(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if getattr(args, "reliability", None):
        from empathic_agent.training.evaluate import write_reliability_png

        panels = dict(results)
        for name, r in results.items():  # the utterance-only reading of a conversational set, beside it
            if isinstance(r, dict) and isinstance(r.get("utterance_only"), dict):
                panels[f"{name} (utterance only)"] = r["utterance_only"]
        print(f"reliability diagram: {write_reliability_png(panels, args.reliability)}", file=sys.stderr)


def run_train_text_context(settings: Settings, args: argparse.Namespace) -> int:
    """``empathic encoders train text-context``."""
    from empathic_agent.training.text_context import train

    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    work_dir = Path(args.work_dir) if args.work_dir else Path(settings.cache_dir) / "train" / "text-context"
    record = train(data_dir, args.out, weights_dir=args.weights, cache_dir=settings.cache_dir, work_dir=work_dir,
                   seed=settings.seed if settings.seed is not None else 13, epochs=args.epochs,
                   progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: record[k] for k in ("rows", "dev", "seconds")}, indent=1))
    return 0


def run_train_text(settings: Settings, args: argparse.Namespace) -> int:
    """``empathic encoders train text`` (``speech`` and ``face`` run in their own modules)."""
    from empathic_agent.training.text import config_from_args, summary, train

    cfg = config_from_args(args, data_dir=settings.data_dir, cache_dir=settings.cache_dir)
    record = train(cfg)
    print(json.dumps(summary(record), indent=1))
    return 0

