"""Terminal chat: streams the reply as it is generated; the conversation persists across runs."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
from typing import Any, Sequence

from empathic_agent.agent import Agent, TextChunk, TurnResult, thread_id
from empathic_agent.cli._common import handled_by
from empathic_agent.errors import InputError
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run", "run_chat"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """``empathic chat``."""
    p = subparsers.add_parser("chat", parents=[common], help="chat in the terminal (streaming)",
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
    handled_by(p, "empathic_agent.cli.chat:run")


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(run_chat(settings, user=args.user, session=args.session, messages=args.message,
                                show_perception=args.show_perception, audio=args.audio, images=args.image,
                                speak_dir=args.speak_dir))

HELP = """commands:
  /history   show the conversation so far
  /help      this help
  /quit      leave (also Ctrl-D)"""


def _stdin_lines() -> io.TextIOBase:
    # Invalid UTF-8 on stdin must not crash the chat: undecodable bytes become U+FFFD.
    if hasattr(sys.stdin, "buffer"):
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    return sys.stdin  # pragma: no cover


async def run_chat(settings: Settings, *, user: str, session: str,
                   messages: Sequence[str] | None = None, show_perception: bool = False,
                   audio: Sequence[str] | None = None, images: Sequence[str] | None = None,
                   speak_dir: str | None = None) -> int:
    thread_id(user, session)  # validate ids before loading anything
    # Model-loading progress bars (transformers/hub) would interleave with the streamed reply.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    out = sys.stdout
    interactive = messages is None and audio is None and sys.stdin.isatty()
    if speak_dir:
        import dataclasses

        settings = dataclasses.replace(settings, speak_replies=True)
        os.makedirs(speak_dir, exist_ok=True)
    async with await Agent.open(settings) as agent:
        if interactive:
            backend = settings.llm_backend if not settings.uses_remote_llm else f"{settings.llm_backend} @ {settings.openai_base_url}"
            print(f"Empathic Agent — user {user!r}, session {session!r}, LLM {backend}. /help for commands.",
                  file=out)
            past = await agent.history(user, session)
            if past:
                print(f"(resuming: {len(past)} earlier messages; /history shows them)", file=out)
        for path in audio or []:
            await _spoken_turn(agent, user, session, path, show_perception, out, images, speak_dir)
        if audio and messages is None:
            return 0
        source = list(messages) if messages is not None else None
        stdin = _stdin_lines() if source is None else None
        while True:
            if source is not None:
                if not source:
                    break
                line = source.pop(0)
            else:
                if interactive:
                    print("\nyou> ", end="", file=out, flush=True)
                raw = stdin.readline() if stdin else ""
                if raw == "":
                    break
                line = raw.rstrip("\n")
            cmd = line.strip()
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/help":
                print(HELP, file=out)
                continue
            if cmd == "/history":
                for m in await agent.history(user, session):
                    print(f"{'you' if m.role == 'user' else 'agent'}: {m.content}", file=out)
                continue
            if not cmd and source is None:
                continue  # an empty line at the prompt is not a message
            try:
                print("agent> ", end="", file=out, flush=True)
                await _render(agent.stream(user, session, text=line, image=_frames(images)), show_perception, out,
                              speak_dir)
            except InputError as exc:
                print(f"\n[not sent: {exc}]", file=out, flush=True)
    return 0


async def _render(events, show_perception: bool, out, speak_dir: str | None = None) -> None:
    async for event in events:
        if isinstance(event, TextChunk):
            print(event.text, end="", file=out, flush=True)
        elif isinstance(event, TurnResult):
            print(file=out, flush=True)
            if event.heard:
                print(f"  (heard: {event.user_text})", file=out, flush=True)
            if speak_dir and event.audio is not None:  # --speak-dir: save the spoken reply
                path = os.path.join(speak_dir, f"{event.turn_id}.wav")
                event.audio.write_wav(path)
                print(f"  (spoken: {path}, {event.audio.duration_s:.1f} s)", file=out, flush=True)
            if show_perception and event.register:
                reg = event.register
                print(f"  (planned: {reg['strategy']}; tone {', '.join(reg['tone'])}; pace {reg['pace']})",
                      file=out, flush=True)
            if show_perception and event.seen:
                faces = event.seen.get("faces_seen", 0)
                print(f"  (seen: {event.seen.get('frames', 0)} image(s), face in {faces})", file=out, flush=True)
            if show_perception and event.perception:
                print(f"  (perceived: {event.perception})", file=out, flush=True)
            for err in event.degraded:
                print(f"[{err['step']} degraded: {err['message']}]", file=sys.stderr, flush=True)


def _frames(images: Sequence[str] | None) -> list[str] | None:
    """The ``--image`` files, sent with every turn as that turn's camera frames."""
    return list(images) if images else None


async def _spoken_turn(agent: Agent, user: str, session: str, path: str, show_perception: bool, out,
                       images: Sequence[str] | None = None, speak_dir: str | None = None) -> None:
    """One turn from an audio file; what was heard is shown after the reply."""
    print(f"you> [voice: {path}]", file=out, flush=True)
    try:
        print("agent> ", end="", file=out, flush=True)
        await _render(agent.stream(user, session, audio=path, image=_frames(images)), show_perception, out, speak_dir)
    except InputError as exc:
        print(f"\n[not sent: {exc}]", file=out, flush=True)
