"""``empathic`` command line: chat, models, bench, llm-server.

Every command takes the common settings flags (``--backend``, ``--model``, ``--base-url``, ...);
they override ``EMPATHIC_*`` environment variables, which override defaults — all resolved in
:meth:`Settings.from_env`, the one place settings are read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any, Sequence

from empathic_agent.errors import EmpathicError
from empathic_agent.settings import LLM_BACKENDS, Settings

__all__ = ["main", "build_parser"]

# Flags that map 1:1 to Settings fields: flag -> (field, type, help).
_SETTINGS_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--backend": ("llm_backend", str, f"LLM backend: {', '.join(LLM_BACKENDS)}"),
    "--model": ("llm_model", str, "embedded LLM: registry name, local directory/GGUF file, or hub id"),
    "--base-url": ("openai_base_url", str, "OpenAI-compatible server URL (vLLM), e.g. http://127.0.0.1:8000/v1"),
    "--server-model": ("openai_model", str, "model name to request from the server (default: first listed)"),
    "--api-key": ("openai_api_key", str, "API key of the server"),
    "--max-new-tokens": ("max_new_tokens", int, "generation limit per reply"),
    "--temperature": ("temperature", float, "sampling temperature (0 = greedy)"),
    "--seed": ("seed", int, "sampling seed for reproducible replies"),
    "--timeout": ("llm_timeout_s", float, "seconds to wait for the LLM"),
    "--cache-dir": ("cache_dir", str, "where prepared models are cached"),
    "--memory-dir": ("memory_dir", str, "where user data (conversations) is stored"),
}


def _settings_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("settings (override EMPATHIC_* environment variables)")
    for flag, (field, tp, help_) in _SETTINGS_FLAGS.items():
        g.add_argument(flag, dest=f"setting_{field}", type=tp, default=None, help=help_)
    g.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_")}
    return Settings.from_env(**overrides)


def build_parser() -> argparse.ArgumentParser:
    common = _settings_parent()
    parser = argparse.ArgumentParser(prog="empathic", description="Empathic Agent command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("chat", parents=[common], help="chat in the terminal (streaming)",
                       description="Chat with the agent in the terminal. The conversation is saved and "
                                   "resumes when you use the same --user and --session again. "
                                   "Type /help inside the chat for commands.")
    p.add_argument("--user", default="local", help="user id (default: local)")
    p.add_argument("--session", default="default", help="session id (default: default)")
    p.add_argument("--message", "-m", action="append", help="send this message and exit (repeatable)")
    p.add_argument("--audio", action="append",
                   help="send this audio file as a spoken turn (wav/flac/ogg/webm/mp3; repeatable) and exit")
    p.add_argument("--image", action="append",
                   help="send this image (jpeg/png/webp) with every turn, as the person's face; repeatable "
                        "(several = frames of one moment)")
    p.add_argument("--speak-dir", help="speak every reply (emotional TTS) and save it as a WAV file in this folder")
    p.add_argument("--show-perception", action="store_true",
                   help="after each reply, show how the agent read your emotional state")

    p = sub.add_parser("models", help="list or prepare the models of every role")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", parents=[common], help="every model role with its source, path and status")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = msub.add_parser("prepare", parents=[common], help="prepare models into the cache (idempotent)")
    q.add_argument("roles", nargs="*", help="roles to prepare (default: all)")
    q.add_argument("--verify", action="store_true", help="also verify checksums of prepared files")
    q.add_argument("--llm", dest="prepare_llm", metavar="NAME", default=None,
                   help="prepare this LLM (a registry name: see `empathic models list`) instead of the "
                        "configured one; alone, prepares only the LLM")

    p = sub.add_parser("bench", help="benchmarks (JSON output)")
    bsub = p.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    q = bsub.add_parser("llm", parents=[common], help="LLM load time, time to first token, tokens/s")
    q.add_argument("--backends", default="transformers",
                   help="comma-separated: transformers, openai (default: transformers)")
    q.add_argument("--serve-local", action="store_true",
                   help="for openai: start a local OpenAI-compatible server (transformers serve) to measure")
    q.add_argument("--runs", type=int, default=5, help="measured runs after one warm-up (default 5)")
    q.add_argument("--out", help="also write the JSON to this file")
    q = bsub.add_parser("encoders", parents=[common], help="text encoder latency per utterance (JSON)")
    q.add_argument("--runs", type=int, default=10, help="rounds of 10 encodes after warm-up (default 10)")
    from empathic_agent.cli import speech as speech_cli

    speech_cli.add_bench_parser(bsub, common)
    from empathic_agent.cli import face as face_cli

    face_cli.add_bench_parser(bsub, common)
    face_cli.add_look_parser(sub, common)
    from empathic_agent.cli import speak as speak_cli

    speak_cli.add_parser(sub, common)
    speak_cli.add_bench_parser(bsub, common)
    from empathic_agent.cli import bench_turn

    bench_turn.add_parser(bsub, common)
    from empathic_agent.ui import bench as bench_ui

    bench_ui.add_parser(bsub, common)
    from empathic_agent.api import bench as bench_api

    bench_api.add_parser(bsub, common)
    from empathic_agent.cli.plan import add_parsers as add_plan_parsers

    add_plan_parsers(sub, common)
    speech_cli.add_transcribe_parser(sub, common)
    speech_cli.add_baseline_parser(sub, common)

    from empathic_agent.cli.encoders import add_parser as add_encoders_parser

    add_encoders_parser(sub, common)

    from empathic_agent.cli.memory import add_parser as add_memory_parser

    add_memory_parser(sub, common)

    from empathic_agent.cli import safety as safety_cli

    safety_cli.add_parser(sub, common)
    from empathic_agent.cli import evals as evals_cli

    evals_cli.add_parser(sub, common)
    from empathic_agent.cli import judge as judge_cli

    judge_cli.add_parser(sub, common)
    from empathic_agent.cli import train as train_cli

    train_cli.add_parser(sub, common)
    from empathic_agent.cli import api as api_cli

    api_cli.add_parsers(sub, common)
    p = sub.add_parser("ui", parents=[common], help="start the web UI (the same as python app.py)")
    from empathic_agent.ui.options import add_ui_arguments

    add_ui_arguments(p)
    p = sub.add_parser("llm-server", parents=[common],
                       help="serve the embedded model over an OpenAI-compatible API (for testing the vLLM path)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        settings = settings_from_args(args)
        if args.command == "chat":
            from empathic_agent.cli.chat import run_chat

            return asyncio.run(run_chat(settings, user=args.user, session=args.session, messages=args.message,
                                     show_perception=args.show_perception, audio=args.audio,
                                     images=args.image, speak_dir=args.speak_dir))
        if args.command == "models":
            from empathic_agent.cli.models import run_models

            return run_models(settings, args)
        if args.command == "bench" and args.bench_command == "face":
            from empathic_agent.cli.face import run_bench as run_face_bench

            return run_face_bench(settings, args)
        if args.command == "bench" and args.bench_command == "turn":
            from empathic_agent.cli.bench_turn import run as run_turn_bench

            return run_turn_bench(settings, args)
        if args.command == "bench" and args.bench_command == "api":
            from empathic_agent.api import bench as bench_api

            return bench_api.run(settings, args)
        if args.command == "bench" and args.bench_command == "ui":
            from empathic_agent.ui import bench as bench_ui

            return bench_ui.run(args)
        if args.command == "bench" and args.bench_command == "tts":
            from empathic_agent.cli.speak import run_bench as run_tts_bench

            return run_tts_bench(settings, args)
        if args.command == "speak":
            from empathic_agent.cli.speak import run as run_speak

            return run_speak(settings, args)
        if args.command == "plan":
            from empathic_agent.cli.plan import run_plan

            return run_plan(settings, args)
        if args.command == "persona":
            from empathic_agent.cli.plan import run_persona

            return run_persona(settings, args)
        if args.command == "look":
            from empathic_agent.cli.face import run_look

            return run_look(settings, args)
        if args.command == "bench" and args.bench_command == "speech":
            from empathic_agent.cli.speech import run_bench as run_speech_bench

            return run_speech_bench(settings, args)
        if args.command == "transcribe":
            from empathic_agent.cli.speech import run_transcribe

            return run_transcribe(settings, args)
        if args.command == "voice-baseline":
            from empathic_agent.cli.speech import run_baseline

            return run_baseline(settings, args)
        if args.command == "bench":
            from empathic_agent.cli.bench import run_bench

            return run_bench(settings, args)
        if args.command == "encoders":
            from empathic_agent.cli.encoders import run as run_encoders

            return run_encoders(settings, args)
        if args.command == "memory":
            from empathic_agent.cli.memory import run as run_memory

            return run_memory(settings, args)
        if args.command == "serve":
            from empathic_agent.cli.api import run_serve

            return run_serve(settings, args)
        if args.command == "api-key":
            from empathic_agent.cli.api import run_api_key

            return run_api_key(settings, args)
        if args.command == "safety":
            from empathic_agent.cli import safety as safety_cli

            return safety_cli.run(settings, args)
        if args.command == "eval":
            from empathic_agent.cli import evals as evals_cli

            return evals_cli.run(settings, args)
        if args.command == "train":
            from empathic_agent.cli import train as train_cli

            return train_cli.run(settings, args)
        if args.command == "judge":
            from empathic_agent.cli import judge as judge_cli

            return judge_cli.run(settings, args)
        if args.command == "ui":
            from empathic_agent.ui.web import launch

            launch(settings, host=args.host, port=args.port, auth=args.auth, warm_up=not args.no_warm_up)
            return 0
        if args.command == "llm-server":
            from empathic_agent.cli.models import run_llm_server

            return run_llm_server(settings, host=args.host, port=args.port)
    except EmpathicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
