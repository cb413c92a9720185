"""One launcher per study: an exclusive lock file beside the study directory.

    with StudyLock.acquire(storage_path, name):   # raises StudyLockedError if another holds it
        ...run the study...

The lock is `<storage>/.<name>.lock`, held with `fcntl.flock` on an open descriptor for as long as
the launcher lives. The kernel drops a flock when its process dies, SIGKILL included, so a stale
file left by a crashed launcher is simply locked again by the next one (no guessing from PIDs);
the PID, host and start time written into the file only tell the refused launcher whom it waits
for. The file sits beside, not inside, the study directory so that a refused launcher writes
nothing and "an existing study directory" keeps meaning a study. Local paths only: object stores
(s3://, gs://) have no locks, and a study on them is not guarded.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path


class StudyLockedError(RuntimeError):
    """Another live launcher holds the study's lock; the message names it."""


def lock_path(storage_path: str | os.PathLike, name: str) -> Path:
    return Path(storage_path) / f".{name}.lock"


class StudyLock:
    """An acquired study lock; `release()` (or leaving the `with` block) frees and removes it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, storage_path: str | os.PathLike, name: str) -> StudyLock:
        path = lock_path(storage_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise StudyLockedError(_held_message(path, name)) from None
            # the holder before us may have removed the file between our open and our flock: then we
            # locked an unlinked inode, and must lock the file that is at the path now
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # unlink while still holding the lock, so nobody locks the file we are about to free
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: Path) -> dict | None:
    """What the lock file says about its holder (None if unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _held_message(path: Path, name: str) -> str:
    who = holder(path) or {}
    by = (f"launcher PID {who.get('pid')} on {who.get('host')}, started {who.get('started')}"
          if who else "another launcher")
    return (f"--name {name}: study {name} is being run right now by {by} (it holds {path}); wait for it to "
            "finish or stop it, or choose another --name. Two launchers on one study would corrupt it.")
