"""Face commands: ``empathic encoders eval face``, ``encoders train face``, ``bench face``, ``look``.

* ``empathic encoders eval face --csv FILE`` — ``path,emotion`` CSV (paths relative to the CSV);
  ``--dataset fer2013`` — FER-2013's test split from the data directory.  Prints one JSON object:
  the generic metrics plus how many images showed a face (``faces``: ok / no_face / error).
  ``--in-frames`` places every crop in a 640x480 frame (random size 100-240 px, random place, noise
  background; :func:`~empathic_agent.perceive.face.face_in_frame`), so the figures cover detection
  and cropping as well as the expression models.
* ``empathic encoders train face`` — train the CNN on FER-2013 and build the shipped ensemble
  (resumable; see :mod:`empathic_agent.training.face`).
* ``empathic bench face`` — latency of detection + expression per 640x480 frame, and of all three
  encoders for one turn (text + speech emotion + face; transcription excluded), as JSON.
* ``empathic look IMAGE...`` — what the face encoder sees in images (box, categories, VAD).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import emit, handled_by, machine_info
from empathic_agent.perceive.face import SAMPLE_IMAGE, sample_frame  # noqa: F401 (re-exported)
from empathic_agent.settings import Settings

__all__ = ["run_eval", "add_train_parser", "run_train", "add_bench_parser", "run_bench", "bench_face",
           "add_look_parser", "run_look", "sample_frame"]

#: Face-stage latency target per 640x480 frame, and all three encoders of a turn (issue 5).
FRAME_TARGET_S = 0.030
TURN_TARGET_S = 0.060


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.encode.face import FaceEncoder
    from empathic_agent.training.evaluate import dataset_eval_set, evaluate, read_eval_csv

    encoder = FaceEncoder.from_settings(settings)
    if args.csv:
        es = read_eval_csv(args.csv, encoder.input_kind)
    elif args.dataset in (None, "fer2013"):
        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        es = dataset_eval_set("fer2013", data_dir, "train" if args.split == "train" else "test")
    else:
        print(f"error: --dataset {args.dataset} is not an image data set; use fer2013 or --csv", file=sys.stderr)
        return 2
    if getattr(args, "in_frames", False):
        # Each crop placed in a 640x480 frame: the detector must find it (a frame without a
        # found face reads as the uninformative reading and mostly counts as wrong).
        import dataclasses

        from empathic_agent.perceive.face import FramedFaces

        backgrounds = None
        if getattr(args, "real_frames", False):
            from empathic_agent.perceive.face import real_backgrounds

            backgrounds = real_backgrounds()
            if not backgrounds:
                print("error: --real-frames needs the photos scikit-learn (the train extra) or gradio ship",
                      file=sys.stderr)
                return 2
        kind = "real-photo" if backgrounds else "noise"
        es = dataclasses.replace(es, name=f"{es.name} in 640x480 frames ({kind} backgrounds)",
                                 inputs=FramedFaces(es.inputs, seed=settings.seed or 0, backgrounds=backgrounds))
    result = evaluate(encoder, es, batch_size=args.batch_size, progress=sys.stderr.isatty())
    counts = encoder.status_counts
    result["faces"] = {"ok": counts["ok"], "no_face": counts["no_face"], "error": counts["error"]}
    result["detector"] = encoder.detector.name
    emit(result, args.out)
    return 0


def add_train_parser(train_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    t = train_subparsers.add_parser(
        "face", parents=[common], help="train the face expression CNN on FER-2013 (~90 min on 2 CPU cores; resumable)",
        description="Train the face expression CNN on FER-2013's train split (a stratified 2,000-image dev "
                    "slice held out to select the epoch and calibrate), then build the model (optionally with other "
                    "runs: --run WORKDIR, trained with another --seed) and report on dev and the test split. "
                    "Re-running resumes from the last epoch. The shipped model is two runs: see its MODEL_CARD.md.")
    t.add_argument("--data-dir", help="shared data directory (default: the data_dir setting)")
    t.add_argument("--work-dir", help="checkpoints (default: <cache_dir>/face-train)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs (default 30)")
    t.add_argument("--restart-lr", type=float, default=None,
                   help="when extending a finished run (--epochs larger than before): warm-restart at this learning rate")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    t.add_argument("--out", help="where the model goes (default: the package's weights/face/)")
    t.add_argument("--finalise-only", action="store_true", help="only rebuild the model from the best checkpoint")
    t.add_argument("--run", action="append", default=[],
                   help="also ship the best checkpoint of this other run's work dir (logits averaged); repeatable")
    t.add_argument("--mini-xception-weight", type=float, default=None,
                   help="the mini-Xception's share of the ensemble (default 0: left out)")
    t.add_argument("--snapshot", action="append", default=[],
                   help="also ship this checkpoint (e.g. an earlier cycle's last.pt; logits averaged); repeatable")
    t.add_argument("--tta", default=None,
                   help='test-time augmentation as JSON, e.g. \'{"flip": true, "shift_px": 2, "scales": [1.0]}\' '
                        "(default: the shipped setting)")
    t.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke runs)")
    return handled_by(t, "empathic_agent.cli.face:run_train")


def run_train(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.training import face as train_face

    argv = []
    for flag, value in (("--data-dir", args.data_dir), ("--work-dir", args.work_dir),
                        ("--epochs", args.epochs), ("--restart-lr", args.restart_lr),
                        ("--threads", args.threads), ("--out", args.out), ("--seed", settings.seed),
                        ("--mini-xception-weight", args.mini_xception_weight), ("--tta", args.tta),
                        ("--limit", args.limit)):
        if value is not None:
            argv += [flag, str(value)]
    for run in args.run:
        argv += ["--run", str(run)]
    for snapshot in args.snapshot:
        argv += ["--snapshot", str(snapshot)]
    if args.finalise_only:
        argv.append("--finalise-only")
    return train_face.main(argv)


def bench_face(settings: Settings, *, image: Any = None, runs: int = 20) -> dict[str, Any]:
    """Per-frame face latency and the three encoders of one turn, medians after warm-up."""
    import numpy as np

    from empathic_agent.encode.face import FaceEncoder
    from empathic_agent.perceive.image import decode_image

    frame_source = "file" if image is not None else "packaged sample photo in a 640x480 frame"
    frame = decode_image(image if image is not None else sample_frame())
    enc = FaceEncoder.from_settings(settings)
    t0 = time.perf_counter()
    enc.load()
    load_s = time.perf_counter() - t0
    first = enc.analyze(frame)
    rows = []
    for _ in range(max(1, runs)):
        a = enc.analyze(frame)
        rows.append(a.timings)
    med = {k: round(statistics.median(r[k] for r in rows if k in r), 5) for k in rows[0]}
    info = enc.info()
    out: dict[str, Any] = {
        "bench": "face", "frame": {"source": frame_source, "size": list(frame.original_size),
                                   "face_found": first.status == "ok", "box": first.box.to_dict() if first.box else None,
                                   "top_category": first.reading.top_category if first.reading else None},
        "detector": enc.detector.name, "members": info["members"],
        "views_per_face": info.get("facenet", {}).get("views_per_face"), "runs": len(rows), "load_s": round(load_s, 3),
        "frame_median_s": med, "frame_total_s_median": med.get("total_s"),
        "frame_target_s": FRAME_TARGET_S, "frame_meets_target": med.get("total_s", 1.0) <= FRAME_TARGET_S,
    }
    # All three encoders of one turn (transcription excluded): text + speech emotion + face.
    turn: dict[str, Any] = {}
    try:
        from empathic_agent.encode import load_encoder

        text = load_encoder("text", settings)
        # As the graph reads it: in its conversation (the turns before it, one more forward pass)
        # when the text encoder reads context.
        message = "I thought I'd be fine, but today everything feels heavy."
        context: Any = None
        if getattr(text, "reads_context", False):
            from empathic_agent.encode.text import TextContext

            context = TextContext(("My dad moved into a care home last month.",
                                   "That's a big change. How have the visits been?",
                                   "Hard. He didn't know who I was on Sunday.",
                                   "I'm so sorry. How are you holding up?"))
            turn["text_reads_context"] = True

        def read_text() -> Any:
            return text.encode(message) if context is None else text.encode_in_context(message, context)

        read_text()
        speech = None
        try:
            from empathic_agent.cli.speech import BENCH_TEXT, synthesise
            from empathic_agent.encode.speech import SpeechEncoder
            from empathic_agent.perceive.audio import decode_audio

            speech = SpeechEncoder.from_settings(settings, persist_baselines=False)
            clip = decode_audio(synthesise(settings, BENCH_TEXT))
            speech.analyze(clip, None, update_baseline=False)
        except (SystemExit, Exception) as exc:  # the voice extra is optional
            turn["speech_skipped"] = str(exc)
        seq, par = [], []
        import concurrent.futures

        pool = concurrent.futures.ThreadPoolExecutor(3)
        for _ in range(max(1, runs // 2)):
            s0 = time.perf_counter()
            read_text()
            s1 = time.perf_counter()
            if speech is not None:
                speech.analyze(clip, None, update_baseline=False)
            s2 = time.perf_counter()
            enc.analyze(frame)
            s3 = time.perf_counter()
            seq.append((s1 - s0, s2 - s1, s3 - s2, s3 - s0))
            p0 = time.perf_counter()
            futs = [pool.submit(read_text),
                    pool.submit(enc.analyze, frame)]
            if speech is not None:
                futs.append(pool.submit(speech.analyze, clip, None, update_baseline=False))
            for f in futs:
                f.result()
            par.append(time.perf_counter() - p0)
        pool.shutdown()
        arr = np.array(seq)
        turn.update({"text_s": round(float(np.median(arr[:, 0])), 5),
                     "speech_emotion_s": round(float(np.median(arr[:, 1])), 5) if speech is not None else None,
                     "face_s": round(float(np.median(arr[:, 2])), 5),
                     "sequential_total_s": round(float(np.median(arr[:, 3])), 5),
                     "parallel_wall_s": round(float(np.median(par)), 5),
                     "text_plus_face_s": round(float(np.median(arr[:, 0] + arr[:, 2])), 5),
                     "target_s": TURN_TARGET_S,
                     "note": "in a voice turn the speech emotion runs in parallel with transcription; "
                             "text and face run after it"})
    except Exception as exc:  # noqa: BLE001 - a missing optional encoder must not lose the frame figures
        turn["error"] = f"{type(exc).__name__}: {exc}"
    out["turn_encoders"] = turn
    out["machine"] = machine_info()
    return out


def add_bench_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    q = bench_subparsers.add_parser("face", parents=[common],
                                    help="face detection + expression latency per 640x480 frame; three encoders per turn")
    q.add_argument("--image", help="image to use (default: the packaged sample photo in a 640x480 frame)")
    q.add_argument("--runs", type=int, default=20, help="measured runs after one warm-up (default 20)")
    q.add_argument("--out", help="also write the JSON to this file")
    return handled_by(q, "empathic_agent.cli.face:run_bench")


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    emit(bench_face(settings, image=Path(args.image) if args.image else None, runs=args.runs), args.out)
    return 0


def add_look_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = subparsers.add_parser("look", parents=[common], help="read the face in images (JSON: box, categories, VAD)")
    p.add_argument("images", nargs="+", help="image files (several = frames of one turn, pooled)")
    p.add_argument("--out", help="also write the JSON to this file")
    return handled_by(p, "empathic_agent.cli.face:run_look")


def run_look(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.perceive.face import FacePerception

    result = FacePerception.from_settings(settings).perceive([Path(p) for p in args.images])
    data = result.to_dict()
    if result.face_reading is not None:
        r = result.face_reading
        data["summary"] = {"top_category": r.top_category, "confidence": round(r.confidence, 3),
                           "valence": round(r.valence, 3), "arousal": round(r.arousal, 3), "dominance": round(r.dominance, 3),
                           "categories": {k: round(v, 3) for k, v in r.category_dict().items()}}
    emit(data, args.out)
    return 0 if not result.errors else 1
