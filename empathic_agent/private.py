"""Files that hold people's data are private to the server's account: directories 0700, files 0600.

SQLite creates its ``-wal``/``-shm`` files with the permissions of the database file, so making the
database 0600 right after it is opened covers them; Chroma and the voice-baseline store write new
files later, which stay unreadable to others because their directory is 0700.  The long-running
entry points (``empathic serve``, the web UI) also set the umask to 077.  On file systems without
POSIX permissions the calls are no-ops.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["private_dir", "private_file", "private_tree", "private_umask"]

log = logging.getLogger(__name__)


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) if missing and make it 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _chmod(path, 0o700)
    return path


def private_file(path: str | Path) -> None:
    """Make ``path`` and its SQLite companions (``-wal``, ``-shm``, ``-journal``) 0600."""
    path = Path(path)
    for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        if p.exists():
            _chmod(p, 0o600)


def private_tree(root: str | Path) -> None:
    """Make every directory under ``root`` 0700 and every file 0600 (existing stores from before
    this rule included)."""
    root = Path(root)
    if not root.is_dir():
        return
    _chmod(root, 0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            _chmod(Path(dirpath) / d, 0o700)
        for f in filenames:
            _chmod(Path(dirpath) / f, 0o600)


def private_umask() -> None:
    """New files of this process are private (for servers that hold people's data)."""
    os.umask(0o077)


def _chmod(path: Path, mode: int) -> None:
    try:
        if (path.stat().st_mode & 0o777) != mode:
            path.chmod(mode)
    except OSError as exc:  # not ours, or no POSIX permissions here: the data is still written
        log.debug("cannot chmod %s to %o: %s", path, mode, exc)
