"""Voice commands: speak a text with an emotional register, the round-trip check, the TTS benchmark.

Pieces for the ``empathic`` command line (each ``add_*`` adds a parser, each ``run*`` runs it and
returns the exit code):

* ``empathic speak "text" --valence V --arousal A --dominance D [--pace P] [--voice NAME] --out FILE.wav``
  — synthesise the text with the prosody of that target VAD, write a WAV, print a JSON summary
  (:func:`add_parser`, :func:`run`);
* ``empathic speak --roundtrip [--voices a,b] [--transcribe] [--json]`` — synthesise fixed
  sentences at low/high arousal and negative/positive valence per voice, measure F0, rate and
  energy, read them back with the speech encoder, print the table (exit code 1 if an ordering
  does not hold);
* ``empathic bench tts [--voices a,b] [--runs N]`` — per voice: load time, real-time factor, and
  time from the first complete sentence of a streamed reply to its first audio (JSON;
  :func:`add_bench_parser`, :func:`run_bench`, :func:`bench_tts`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Final

from empathic_agent.cli._common import emit, handled_by, machine_info
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run", "add_bench_parser", "run_bench", "bench_tts", "BENCH_REPLY"]

#: The benchmark's reply: three sentences of the length the agent produces (~1-3 sentences).
BENCH_REPLY: Final[str] = ("I'm really sorry you're going through this. It sounds exhausting to carry all of "
                           "that on your own. Would it help to talk about what happened today?")
#: Words per second of the simulated LLM stream (the embedded model makes ~10-20 tokens/s).
BENCH_WORDS_PER_S: Final[float] = 15.0


def _voice_list(settings: Settings, value: str | None) -> list[str]:
    from empathic_agent.speak.tts import available_voices

    if not value:
        return available_voices()
    return [v.strip() for v in value.split(",") if v.strip()]


# ---------------------------------------------------------------------------------------------
# speak


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``empathic speak``."""
    p = subparsers.add_parser(
        "speak", parents=[common_parent],
        help="speak a text with an emotional register (WAV), or --roundtrip",
        description="Synthesise TEXT so that its prosody follows a target emotion (valence, arousal, "
                    "dominance in [-1, 1]) and write it to a WAV file; or, with --roundtrip, check every "
                    "voice: synthesise low/high arousal and negative/positive valence, measure pitch, rate "
                    "and energy, and read the audio back with the speech emotion encoder.")
    p.add_argument("text", nargs="?",
                   help="what to say (markdown, emoji, numbers are made speakable; '-' = stdin)")
    p.add_argument("--valence", type=float, default=0.0, help="target valence in [-1, 1] (default 0)")
    p.add_argument("--arousal", type=float, default=0.0, help="target arousal in [-1, 1] (default 0)")
    p.add_argument("--dominance", type=float, default=0.0, help="target dominance in [-1, 1] (default 0)")
    p.add_argument("--pace", type=float, default=None, help="extra speaking-rate factor (e.g. 0.9 = slower)")
    p.add_argument("--voice", default=None,
                   help="voice profile name (piper-joe-medium, espeak-ng), a profile .toml or a Piper .onnx "
                        "(default: EMPATHIC_TTS_VOICE or piper-joe-medium)")
    p.add_argument("--out", help="WAV file to write (speak); JSON file to also write (--roundtrip)")
    p.add_argument("--roundtrip", action="store_true", help="run the round-trip check instead of speaking")
    p.add_argument("--voices", help="--roundtrip: comma-separated voices (default: all)")
    p.add_argument("--transcribe", action="store_true",
                   help="--roundtrip: also transcribe every clip with Whisper (word error rate)")
    p.add_argument("--json", action="store_true", help="--roundtrip: print JSON instead of a table")
    return handled_by(p, "empathic_agent.cli.speak:run")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "roundtrip", False):
        return _run_roundtrip(settings, args)
    from empathic_agent.speak.prosody import prosody_for
    from empathic_agent.speak.tts import load_tts

    text = args.text
    if text == "-":
        text = sys.stdin.read()
    if not text:
        print("error: give the TEXT to speak (or --roundtrip)", file=sys.stderr)
        return 2
    if not args.out:
        print("error: --out FILE.wav is required (there is no audio device here)", file=sys.stderr)
        return 2
    for name in ("valence", "arousal", "dominance"):
        value = getattr(args, name)
        if not -1.0 <= value <= 1.0:
            print(f"error: --{name} must be in [-1, 1], got {value}", file=sys.stderr)
            return 2
    tts = load_tts(args.voice or settings.tts_voice, settings)
    try:
        prosody = prosody_for((args.valence, args.arousal, args.dominance), tts.profile, pace=args.pace)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    audio = tts.synthesize(text, prosody)
    if audio.empty:
        print("error: nothing to say: the text has no speakable words", file=sys.stderr)
        return 2
    path = audio.write_wav(args.out)
    summary = audio.to_dict()
    summary.update({"file": str(path), "target": {"valence": args.valence, "arousal": args.arousal,
                                                 "dominance": args.dominance}, "backend": tts.name})
    emit(summary)
    return 0


def _run_roundtrip(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.speak.roundtrip import run_roundtrip

    result = run_roundtrip(_voice_list(settings, getattr(args, "voices", None)), settings,
                           transcribe=getattr(args, "transcribe", False))
    if getattr(args, "json", False):
        emit(result.to_dict(), getattr(args, "out", None))
    else:
        print(result.table())
        if getattr(args, "out", None):
            Path(args.out).write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return 0 if result.ok else 1


# ---------------------------------------------------------------------------------------------
# bench


def add_bench_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``empathic bench tts`` (add to the ``bench`` command's sub-parsers)."""
    q = bench_subparsers.add_parser("tts", parents=[common],
                                    help="TTS load time, real-time factor, first audio of a streamed "
                                         "reply (JSON)")
    q.add_argument("--voices", help="comma-separated voices (default: all)")
    q.add_argument("--runs", type=int, default=5, help="measured runs after one warm-up (default 5)")
    q.add_argument("--out", help="also write the JSON to this file")
    return handled_by(q, "empathic_agent.cli.speak:run_bench")


async def _llm_like(text: str, words_per_s: float) -> AsyncIterator[str]:
    """``text`` word by word at an LLM's pace."""
    words = text.split(" ")
    for i, word in enumerate(words):
        await asyncio.sleep(1.0 / words_per_s)
        yield word if i == 0 else " " + word


async def _stream_once(tts: Any, prosody: Any) -> dict[str, Any]:
    from empathic_agent.speak.stream import SpeechFailure, StreamStats, speak_stream

    stats = StreamStats()
    failures = []
    async for item in speak_stream(tts, _llm_like(BENCH_REPLY, BENCH_WORDS_PER_S), prosody, stats=stats):
        if isinstance(item, SpeechFailure):
            failures.append(item.error)
    return {"stats": stats, "failures": failures}


def bench_tts(settings: Settings, voices: list[str] | None = None, *, runs: int = 5) -> dict[str, Any]:
    """Per voice: ``load_s``, the cold first synthesis, the real-time factor of a sentence (median
    over runs, neutral and an aroused register), and in a streamed reply (a simulated LLM at
    :data:`BENCH_WORDS_PER_S` words/s) the time from the first complete sentence to its audio."""
    from empathic_agent.speak.prosody import prosody_for
    from empathic_agent.speak.text import split_sentences
    from empathic_agent.speak.tts import load_tts

    runs = max(1, runs)
    first_sentence = split_sentences(BENCH_REPLY)[0]
    out: dict[str, Any] = {}
    for voice in voices or _voice_list(settings, None):
        entry: dict[str, Any] = {}
        try:
            tts = load_tts(voice, settings)
            t0 = time.perf_counter()
            tts.load()
            entry["load_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            tts.synthesize(first_sentence)
            entry["first_synthesis_s"] = round(time.perf_counter() - t0, 3)
            for label, vad in (("neutral", (0.0, 0.0, 0.0)), ("aroused", (0.3, 0.6, 0.0)),
                               ("calm", (0.3, -0.6, 0.0))):
                prosody = prosody_for(vad, tts.profile)
                rtf, synth = [], []
                for _ in range(runs):
                    audio = tts.synthesize(BENCH_REPLY, prosody)
                    rtf.append(audio.timings["rtf"])
                    synth.append(audio.timings["total_s"])
                entry[f"rtf_{label}_median"] = round(statistics.median(rtf), 4)
                entry[f"synth_s_{label}_median"] = round(statistics.median(synth), 3)
                entry["reply_audio_s"] = round(audio.duration_s, 2)
            prosody = prosody_for((0.3, -0.3, 0.0), tts.profile)
            asyncio.run(_stream_once(tts, prosody))  # warm-up
            latency, first_audio, failures = [], [], []
            for _ in range(runs):
                r = asyncio.run(_stream_once(tts, prosody))
                st = r["stats"]
                failures += r["failures"]
                if st.first_audio_latency_s is not None:
                    latency.append(st.first_audio_latency_s)
                    first_audio.append(st.first_audio_s)
            med = lambda xs: round(statistics.median(xs), 3) if xs else None  # noqa: E731
            entry["stream_first_audio_latency_s_median"] = med(latency)
            entry["stream_first_audio_latency_s_max"] = round(max(latency), 3) if latency else None
            entry["stream_time_to_first_audio_s_median"] = med(first_audio)
            entry["stream_failures"] = failures
            entry["info"] = {k: v for k, v in tts.info().items() if k in ("backend", "model", "licence")}
        except Exception as exc:  # report per voice, go on
            entry["error"] = f"{type(exc).__name__}: {exc}"
        out[voice] = entry
    return {"bench": "tts", "runs": runs, "reply": BENCH_REPLY, "stream_words_per_s": BENCH_WORDS_PER_S,
            "voices": out,
            "machine": machine_info()}


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    result = bench_tts(settings, _voice_list(settings, getattr(args, "voices", None)), runs=args.runs)
    emit(result, getattr(args, "out", None))
    return 0 if not any("error" in v for v in result["voices"].values()) else 1
