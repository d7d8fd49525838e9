"""``empathic memory``: list, delete, delete-user, export, eval, bench.

Data-rights commands (list, delete, delete-user, export) never load the embedding model.
:func:`export_user_data` and :func:`delete_user_data` are the one place that gathers / erases
*everything* held about a person: each returns a dict with one section per kind of data
(``"memories"``, ``"conversations"`` and ``"voice_baseline"``).

The embedded store allows one process per directory: stop a running agent (or use
``memory_backend=http``) before deleting from the command line.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from empathic_agent.cli._common import handled_by
from empathic_agent.graph.conversations import delete_conversations, export_conversations
from empathic_agent.settings import Settings

__all__ = ["add_parser", "run_list", "run_delete", "run_delete_user", "run_export", "run_eval", "run_bench", "export_user_data",
           "delete_user_data"]


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    """Register ``empathic memory ...`` on the top-level sub-parsers."""
    p = subparsers.add_parser("memory", help="list, export or delete a person's memories; memory eval/bench",
                              description="Long-term memory of each person (Chroma). The store is "
                                          "EMPATHIC_MEMORY_BACKEND=embedded (default, under --memory-dir) or "
                                          "http (EMPATHIC_CHROMA_HOST / EMPATHIC_CHROMA_PORT).")
    msub = p.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    q = msub.add_parser("list", parents=[common_parent], help="a person's memories, oldest first")
    handled_by(q, "empathic_agent.cli.memory:run_list")
    q.add_argument("--user", required=True, help="user id")
    q.add_argument("--kind", choices=("episode", "fact", "preference"), help="only this kind")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")

    q = msub.add_parser("delete", parents=[common_parent], help="delete one memory of a person")
    handled_by(q, "empathic_agent.cli.memory:run_delete")
    q.add_argument("--user", required=True, help="user id")
    q.add_argument("--id", required=True, dest="memory_id", help="memory id (see memory list)")

    q = msub.add_parser("delete-user", parents=[common_parent], help="delete everything held about a person")
    handled_by(q, "empathic_agent.cli.memory:run_delete_user")
    q.add_argument("--user", required=True, help="user id")

    q = msub.add_parser("export", parents=[common_parent], help="export everything held about a person as JSON")
    handled_by(q, "empathic_agent.cli.memory:run_export")
    q.add_argument("--user", required=True, help="user id")
    q.add_argument("--out", help="write to this file (default: stdout)")
    q.add_argument("--embeddings", action="store_true", help="include the embedding vectors")

    q = msub.add_parser("eval", parents=[common_parent],
                        help="retrieval benchmark per strategy on EmoBank/GoEmotions (JSON)")
    handled_by(q, "empathic_agent.cli.memory:run_eval")
    q.add_argument("--data-dir", help="data sets directory (default: settings data_dir, ../shared/data)")
    q.add_argument("--datasets", default="emobank,goemotions", help="comma-separated: emobank, goemotions")
    q.add_argument("--memories", type=int, default=2000, help="memories per data set (default 2000)")
    q.add_argument("--queries", type=int, default=300, help="queries per data set (default 300)")
    q.add_argument("--split", choices=("test", "dev"), default="test",
                   help="query split: test for reporting, dev for tuning (default test)")
    q.add_argument("--out", help="also write the JSON to this file")

    q = msub.add_parser("bench", parents=[common_parent],
                        help="recall latency p50/p95 and insert throughput at 1k/10k(/100k) memories (JSON)")
    handled_by(q, "empathic_agent.cli.memory:run_bench")
    q.add_argument("--full", action="store_true", help="also run 100k memories (a few minutes)")
    q.add_argument("--sizes", help="comma-separated store sizes, e.g. 1000,10000 (overrides --full)")
    q.add_argument("--per-user", type=int, default=100, help="memories per user (default 100)")
    q.add_argument("--heavy-user", type=int, default=0, help="add one user with this many memories")
    q.add_argument("--queries", type=int, default=200, help="recalls per strategy and size (default 200)")
    q.add_argument("--no-embedding", action="store_true", help="skip the query-embedding measurement")
    q.add_argument("--out", help="also write the JSON to this file")


# ------------------------------------------------------------------------------------------------
def _service(settings: Settings) -> Any:
    from empathic_agent.memory import MemoryService

    return MemoryService.from_settings(settings)


def export_user_data(settings: Settings, user_id: str, *, include_embeddings: bool = False) -> dict[str, Any]:
    """Everything held about ``user_id``, one section per kind of data."""
    from empathic_agent.memory.record import validate_user_id

    validate_user_id(user_id)
    memory = _service(settings)
    try:
        memories = memory.export_user(user_id, include_embeddings=include_embeddings)
    finally:
        memory.close()
    return {
        "format": "empathic-agent/user-export",
        "version": 1,
        "user_id": user_id,
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "memories": memories,
        "conversations": export_conversations(settings.checkpoint_path, user_id),
        "voice_baseline": _voice_baselines(settings).export(user_id),
    }


def delete_user_data(settings: Settings, user_id: str) -> dict[str, Any]:
    """Erase everything held about ``user_id``; returns what was deleted per section."""
    from empathic_agent.memory.record import validate_user_id

    validate_user_id(user_id)
    memory = _service(settings)
    try:
        deleted_memories = memory.delete_user(user_id)
    finally:
        memory.close()
    deleted_sessions = delete_conversations(settings.checkpoint_path, user_id)
    deleted_voice = _voice_baselines(settings).delete(user_id)
    return {"user_id": user_id, "memories": deleted_memories, "conversations": deleted_sessions,
            "voice_baseline": deleted_voice}


def _voice_baselines(settings: Settings) -> Any:
    # The speaker-normalisation baseline of a person's voice is their data too (no model loads).
    from empathic_agent.memory.voice_baselines import VoiceBaselineStore

    return VoiceBaselineStore.from_settings(settings)


def _print_table(records: list[Any]) -> None:
    if not records:
        print("(no memories)")
        return
    print(f"{'ID':<37} {'KIND':<10} {'CREATED (UTC)':<20} {'FEELING':<9} {'SAL':>4}  TEXT")
    for r in records:
        created = _dt.datetime.fromtimestamp(r.created_at, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        text = " ".join(r.text.split())
        text = text if len(text) <= 70 else text[:69] + "…"
        print(f"{r.id:<37} {r.kind:<10} {created:<20} {r.top_category:<9} {r.salience:>4.2f}  {text}")


def _write_json(data: Any, out: str | None) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Exports hold personal data: readable by the owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        print(f"wrote {path}", file=sys.stderr)
    else:
        print(text)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    memory = _service(settings)
    try:
        records = memory.list_memories(args.user, kind=args.kind)
    finally:
        memory.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=1, ensure_ascii=False))
    else:
        _print_table(records)
    return 0


def run_delete(settings: Settings, args: argparse.Namespace) -> int:
    memory = _service(settings)
    try:
        found = memory.delete_memory(args.user, args.memory_id)
    finally:
        memory.close()
    if not found:
        print(f"no memory {args.memory_id} for user {args.user}", file=sys.stderr)
        return 1
    print(f"deleted memory {args.memory_id} of user {args.user}")
    return 0


def run_delete_user(settings: Settings, args: argparse.Namespace) -> int:
    summary = delete_user_data(settings, args.user)
    parts = ", ".join(f"{v} {k}" for k, v in summary.items() if k != "user_id")
    print(f"deleted everything held about user {args.user}: {parts}")
    return 0


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    _write_json(export_user_data(settings, args.user, include_embeddings=args.embeddings), args.out)
    return 0


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.memory.evaluate import evaluate_retrieval

    report = evaluate_retrieval(
        settings, data_dir=args.data_dir,
        datasets=[d.strip() for d in args.datasets.split(",") if d.strip()],
        n_memories=args.memories, n_queries=args.queries, query_split=args.split,
        seed=settings.seed if settings.seed is not None else 0,
        progress=(lambda m: print(m, file=sys.stderr)) if getattr(args, "verbose", False) else None)
    _write_json(report, None)
    if args.out:
        _write_json(report, args.out)
    return 0


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    from empathic_agent.memory.bench import DEFAULT_SIZES, FULL_SIZES, bench_memory

    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    else:
        sizes = FULL_SIZES if args.full else DEFAULT_SIZES
    report = bench_memory(settings, sizes=sizes, per_user=args.per_user, heavy_user=args.heavy_user,
                          queries=args.queries, measure_embedding=not args.no_embedding,
                          progress=(lambda m: print(m, file=sys.stderr)) if getattr(args, "verbose", False) else None)
    _write_json(report, None)
    if args.out:
        _write_json(report, args.out)
    return 0

