"""Speech commands: transcribe a file, evaluate/train the speech encoder, benchmark, voice baselines.

Pieces for the ``empathic`` command line (each ``add_*`` adds arguments/sub-commands, each
``run_*`` runs one and returns the exit code; every result is printed as JSON):

* ``empathic transcribe FILE [--user U] [--language L] [--no-update]`` — transcript + speech
  reading of an audio file (:func:`add_transcribe_parser`, :func:`run_transcribe`);
* ``empathic encoders eval speech --csv FILE`` — the generic evaluation, plus the speaker
  baseline when the CSV has a ``speaker`` (or ``actor``) column: each clip is read against a
  baseline of the same speaker's *other* clips (:func:`run_eval`); ``--dataset ravdess`` evaluates
  the committed heads' held-out RAVDESS actors;
* ``empathic encoders train speech`` — :mod:`empathic_agent.training.speech`
  (:func:`add_train_parser`, :func:`run_train`);
* ``empathic bench speech`` — transcription + speech emotion latency of a ~5-s utterance
  (:func:`add_bench_parser`, :func:`run_bench`, :func:`bench_speech`);
* ``empathic voice-baseline show|export|delete --user U`` — a user's stored voice baseline
  (:func:`add_baseline_parser`, :func:`run_baseline`).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Final

from empathic_agent.cli._common import emit, handled_by, machine_info
from empathic_agent.settings import Settings

__all__ = [
    "add_transcribe_parser",
    "run_transcribe",
    "add_eval_arguments",
    "run_eval",
    "eval_speech_csv",
    "add_train_parser",
    "run_train",
    "add_bench_parser",
    "run_bench",
    "bench_speech",
    "add_baseline_parser",
    "run_baseline",
    "BENCH_TEXT",
    "synthesise",
]

#: Sentence of the benchmark utterance (Piper en_US-joe-medium speaks it in ~5 s).
BENCH_TEXT: Final[str] = ("I have been feeling a little overwhelmed at work lately, "
                          "and I honestly do not know how to talk about it.")
#: Latency target of the issue: transcription + speech emotion of a 5-s utterance (seconds).
BENCH_TARGET_S: Final[float] = 1.5
#: Column names that identify the speaker of a row in an evaluation CSV.
SPEAKER_COLUMNS: Final[tuple[str, ...]] = ("speaker", "actor")


# ---------------------------------------------------------------------------------------------
# transcribe


def add_transcribe_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``empathic transcribe FILE``."""
    p = subparsers.add_parser("transcribe", parents=[common],
                              help="transcribe an audio file and read its emotion (JSON)",
                              description="Decode an audio file (wav, flac, ogg/opus, webm, mp3), transcribe "
                                          "it with Whisper and read how it was said with the speech emotion "
                                          "encoder; print JSON (transcript, speech reading, clip info, timings). "
                                          "With --user, the user's voice baseline is used and updated.")
    p.add_argument("file", help="audio file")
    p.add_argument("--user", help="user id whose voice baseline to use/update (default: none, cold start)")
    p.add_argument("--language", help="language code (default: detect)")
    p.add_argument("--no-update", action="store_true", help="do not add this clip to the user's baseline")
    p.add_argument("--out", help="also write the JSON to this file")
    return handled_by(p, "empathic_agent.cli.speech:run_transcribe")


def run_transcribe(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.perceive.speech import SpeechPerception

    path = Path(args.file)
    if not path.is_file():
        print(f"error: audio file not found: {path}", file=sys.stderr)
        return 2
    perception = SpeechPerception.from_settings(settings)
    result = perception.perceive(path, args.user, language=args.language, update_baseline=not args.no_update)
    emit(result.to_dict(), getattr(args, "out", None))
    return 0 if not any(e.startswith("audio:") for e in result.errors) else 2


# ---------------------------------------------------------------------------------------------
# eval


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Speech options of ``empathic encoders eval`` (harmless for other modalities)."""
    parser.add_argument("--speaker-baseline", choices=["auto", "off"], default="auto",
                        help="speech: read each clip against a baseline of the same speaker's other clips "
                             "when the CSV has a 'speaker' or 'actor' column (default auto)")
    parser.add_argument("--baseline-size", type=int, default=None,
                        help="speech: baseline of this many random other clips per speaker (default: all)")
    return parser


def _speaker_column(csv_path: Path) -> tuple[str | None, list[str] | None]:
    """(column name, one speaker per row) of an evaluation CSV, or (None, None)."""
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None) or []
        cols = {h.strip().lower(): i for i, h in enumerate(header)}
        name = next((c for c in SPEAKER_COLUMNS if c in cols), None)
        if name is None:
            return None, None
        i = cols[name]
        return name, [(row[i].strip() if i < len(row) else "") for row in reader]


def eval_speech_csv(encoder: Any, csv_path: Path | str, *, speaker_baseline: bool = True,
                    baseline_size: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Metrics of the speech encoder on a ``path,emotion[,speaker]`` CSV (paths relative to it).

    The top-level metrics are the "with speaker baseline" mode when the CSV has a ``speaker`` (or
    ``actor``) column and ``speaker_baseline`` is on — each clip read against a baseline of the
    same speaker's *other* clips — else cold start.  ``cold_start`` always holds the cold
    figures; ``speaker_baseline`` says what was applied.  Features are extracted once for both.
    """
    from empathic_agent.encode.base import INPUT_PATH
    from empathic_agent.training.evaluate import evaluate_readings, read_eval_csv

    csv_path = Path(csv_path)
    es = read_eval_csv(csv_path, INPUT_PATH)
    column, speakers = _speaker_column(csv_path)
    use = column is not None and speaker_baseline
    t0 = time.perf_counter()
    both = encoder.read_with_speakers(es.inputs, speakers if use else [f"row{i}" for i in range(len(es))],
                                      baseline_size=baseline_size, progress=progress)
    seconds = time.perf_counter() - t0
    cold = evaluate_readings(es, both["cold_start"])
    info: dict[str, Any] = {"applied": use, "column": column}
    if not use:
        result = cold
        info["reason"] = "no speaker/actor column" if column is None else "disabled"
    else:
        assert speakers is not None
        result = evaluate_readings(es, both["with_baseline"])
        counts: dict[str, int] = {}
        for s in speakers:
            counts[s] = counts.get(s, 0) + 1
        minimum = encoder.info().get("min_baseline_clips") or 0
        info.update({"speakers": len(counts),
                     "baseline": "all other clips of the speaker" if baseline_size is None
                     else f"{baseline_size} random other clips of the speaker",
                     "min_baseline_clips": minimum,
                     "rows_read_with_baseline": int(sum(both["adapted"])),
                     "speakers_below_minimum": sorted(s for s, n in counts.items() if n - 1 < minimum)})
    result["mode"] = "with_speaker_baseline" if use else "cold_start"
    result["speaker_baseline"] = info
    result["cold_start"] = {k: cold[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class_f1",
                                                 "mean_confidence") if k in cold}
    result["encoder"] = encoder.info()
    result["seconds"] = round(seconds, 3)
    result["ms_per_item"] = round(1000 * seconds / max(1, len(es)), 3)
    return result


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    """``empathic encoders eval speech --csv FILE`` (or ``--dataset ravdess``: held-out actors)."""
    import tempfile

    from empathic_agent.encode.speech import SpeechEncoder

    encoder = SpeechEncoder.from_settings(settings, persist_baselines=False)
    progress = sys.stderr.isatty()
    mode = getattr(args, "speaker_baseline", "auto")
    size = getattr(args, "baseline_size", None)
    out = getattr(args, "out", None)
    if getattr(args, "csv", None):
        emit(eval_speech_csv(encoder, args.csv, speaker_baseline=mode != "off", baseline_size=size,
                              progress=progress), out)
        return 0
    if getattr(args, "dataset", None) != "ravdess":
        print("error: for speech use --csv FILE or --dataset ravdess", file=sys.stderr)
        return 2
    from empathic_agent.training.speech import load_ravdess, write_eval_csv

    encoder.load()
    assert encoder.head is not None
    actors = encoder.head.config["training"]["test_actors"]
    data_dir = Path(args.data_dir) if getattr(args, "data_dir", None) else settings.data_dir
    items = [it for it in load_ravdess(data_dir) if it.actor in actors]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_eval_csv(items, Path(tmp) / "ravdess_test.csv")
        result = eval_speech_csv(encoder, path, speaker_baseline=mode != "off", baseline_size=size,
                                 progress=progress)
    result["dataset"] = f"ravdess held-out actors {actors}"
    emit(result, out)
    return 0


# ---------------------------------------------------------------------------------------------
# train


def add_train_parser(train_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``empathic encoders train speech`` (add to the ``train`` action's sub-parsers)."""
    from empathic_agent.training.speech import build_parser

    t = train_subparsers.add_parser(
        "speech", parents=[common], help="train the speech encoder's heads on RAVDESS (≈10 min on 2 CPU cores)",
        description="Train the speech emotion heads (cold start and speaker-adapted) on RAVDESS with actor-"
                    "disjoint splits: features are cached, the configuration is chosen by cross-validation "
                    "over actor folds, and the held-out actors are evaluated once.")
    build_parser(t)
    return handled_by(t, "empathic_agent.cli.speech:run_train")


def run_train(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training.speech import run

    return run(args, settings)


# ---------------------------------------------------------------------------------------------
# bench


def add_bench_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``empathic bench speech`` (add to the ``bench`` command's sub-parsers)."""
    q = bench_subparsers.add_parser("speech", parents=[common],
                                    help="transcription + speech emotion latency of a ~5-s utterance")
    q.add_argument("--audio", help="audio file to use (default: a sentence synthesised with Piper)")
    q.add_argument("--runs", type=int, default=5, help="measured runs after one warm-up (default 5)")
    q.add_argument("--out", help="also write the JSON to this file")
    return handled_by(q, "empathic_agent.cli.speech:run_bench")


def synthesise(settings: Settings, text: str) -> tuple[int, Any]:
    """(sample_rate, float32 samples) of ``text`` spoken by the packaged Piper voice."""
    import numpy as np

    from empathic_agent.models import resolve_model

    try:
        from piper import PiperVoice
    except ImportError as exc:
        raise SystemExit("error: the benchmark synthesises its utterance with piper-tts "
                         "(pip install 'empathic-agent[voice]') or pass --audio FILE") from exc
    voice_model = resolve_model("tts", settings.tts_voice, settings.cache_dir)
    voice = PiperVoice.load(voice_model.location, config_path=voice_model.files.get("config"))
    chunks = list(voice.synthesize(text))
    return int(chunks[0].sample_rate), np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)


def bench_speech(settings: Settings, *, audio: Any = None, runs: int = 5) -> dict[str, Any]:
    """Latency of :meth:`SpeechPerception.perceive` (decode + transcription + speech emotion)."""
    from empathic_agent.perceive.audio import decode_audio
    from empathic_agent.perceive.speech import SpeechPerception

    source = "file"
    if audio is None:
        audio = synthesise(settings, BENCH_TEXT)
        source = "piper en_US-joe-medium"
    clip = decode_audio(audio)
    perception = SpeechPerception.from_settings(settings, persist_baselines=False)
    t0 = time.perf_counter()
    perception.load()
    load_s = time.perf_counter() - t0
    first = perception.perceive(clip, None)  # warm-up
    rows = []
    for _ in range(max(1, runs)):
        r = perception.perceive(clip, None)
        rows.append(r.timings)
    keys = sorted({k for row in rows for k in row})
    median = {k: round(statistics.median(row.get(k, 0.0) for row in rows), 4) for k in keys}
    worst = {k: round(max(row.get(k, 0.0) for row in rows), 4) for k in ("total_s", "stt_s", "emotion_s")}
    total = median["total_s"]
    return {
        "bench": "speech", "audio": {"source": source, "seconds": round(clip.duration_s, 2),
                                     "transcript": first.text, "speech_reading": first.speech_reading.top_category
                                     if first.speech_reading else None},
        "runs": len(rows), "load_s": round(load_s, 3),
        "median_s": median, "max_s": worst,
        "stt_s_median": median.get("stt_s"), "emotion_s_median": median.get("emotion_s"),
        "total_s_median": total, "target_total_s": BENCH_TARGET_S, "meets_target": total <= BENCH_TARGET_S,
        "machine": machine_info(),
        "errors": list(first.errors),
    }


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    audio = Path(args.audio) if getattr(args, "audio", None) else None
    emit(bench_speech(settings, audio=audio, runs=args.runs), getattr(args, "out", None))
    return 0


# ---------------------------------------------------------------------------------------------
# voice baselines (users' data rights)


def add_baseline_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``empathic voice-baseline show|export|delete --user U``."""
    p = subparsers.add_parser("voice-baseline", help="a user's stored voice baseline (show, export, delete)")
    sub = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    for name, help_ in (("show", "clip count and update time"), ("export", "the stored statistics as JSON"),
                        ("delete", "erase the user's voice baseline")):
        q = sub.add_parser(name, parents=[common], help=help_)
        q.add_argument("--user", required=True, help="user id")
    return handled_by(p, "empathic_agent.cli.speech:run_baseline")


def run_baseline(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.memory.voice_baselines import VoiceBaselineStore

    store = VoiceBaselineStore.from_settings(settings)
    if args.baseline_command == "delete":
        emit({"user": args.user, "deleted": store.delete(args.user)})
        return 0
    data = store.export(args.user)
    if data is None:
        emit({"user": args.user, "baseline": None})
        return 0
    if args.baseline_command == "show":
        data = {k: v for k, v in data.items() if k not in ("mean", "variance", "feature_names")}
    emit(data)
    return 0
