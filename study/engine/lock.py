"""One launcher per study: an exclusive lock file beside the study directory.

    with StudyLock.acquire(storage_path, name):   # raises StudyLockedError if another holds it
        ...run the study...

The lock is `<storage>/.<name>.lock`, held with `fcntl.flock` on an open descriptor for as long as
the launcher lives. The kernel drops a flock when its process dies, SIGKILL included, so a stale
file left by a crashed launcher is simply locked again by the next one (no guessing from PIDs);
the PID, host and start time written into the file only tell the refused launcher whom it waits
for. The file sits beside, not inside, the study directory so that a refused launcher writes
nothing and "an existing study directory" keeps meaning a study.

Object stores (s3://, gs://; file:// too) have no flock and pyarrow writes no object conditionally,
so `UriStudyLock` is a lease: the object `<storage>/.<name>.lock` names its holder and a heartbeat the
holder rewrites every HEARTBEAT_S. A launcher refuses while that heartbeat is younger than STALE_S
(a lock that exists but does not parse, caught mid-rewrite or left half written, is read again for
SETTLE_S, then judged by its modification time), else writes its own id, waits SETTLE_S and reads the
object back: if another launcher wrote after it, it refuses (the last writer wins). Its limits
(docs/cluster.md): two launchers whose check and write fall within SETTLE_S of each other on a store
slower than that could both proceed, and a launcher killed with SIGKILL blocks its study for STALE_S.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import posixpath
import socket
import threading
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs

HEARTBEAT_S = 30.0  # the holder of a URI lock rewrites it this often
STALE_S = 120.0  # a URI lock whose heartbeat is older than this is taken over (its launcher died)
SETTLE_S = 2.0  # between writing a URI lock and reading it back


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


class UriStudyLock:
    """The study lock on URI storage (see the module docstring): acquire, heartbeat, release."""

    def __init__(self, fs: pafs.FileSystem, path: str, record: dict, heartbeat_s: float):
        self.fs, self.path, self.record = fs, path, record
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_s,), daemon=True)
        self._beat.start()

    @classmethod
    def acquire(cls, storage_uri: str, name: str, *, heartbeat_s: float = HEARTBEAT_S,
                stale_s: float = STALE_S, settle_s: float = SETTLE_S) -> UriStudyLock:
        fs, root = pafs.FileSystem.from_uri(storage_uri)
        path = posixpath.join(root, f".{name}.lock")
        where = f"{storage_uri.rstrip('/')}/.{name}.lock"
        if (held := _live_holder(fs, path, stale_s, settle_s)) is not None:
            raise StudyLockedError(_uri_message(where, name, held))
        record = {"id": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        fs.create_dir(root, recursive=True)
        _write(fs, path, record)
        time.sleep(settle_s)
        now = _read(fs, path)
        if now is None or now.get("id") != record["id"]:
            raise StudyLockedError(_uri_message(where, name, now or {}))
        return cls(fs, path, record, heartbeat_s)

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            _write(self.fs, self.path, self.record)

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._beat.join()
        now = _read(self.fs, self.path)
        if now is not None and now.get("id") == self.record["id"]:
            self.fs.delete_file(self.path)

    def __enter__(self) -> UriStudyLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _write(fs: pafs.FileSystem, path: str, record: dict) -> None:
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({**record, "beat": time.time()}).encode())


def _read(fs: pafs.FileSystem, path: str) -> dict | None:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):  # missing (FileNotFoundError is an OSError) or half written
        return None


def _live_holder(fs: pafs.FileSystem, path: str, stale_s: float, settle_s: float) -> dict | None:
    """The record of the live launcher holding the URI lock at `path` ({} when it holds a lock that does
    not parse), or None when the lock is free: missing, or its heartbeat older than `stale_s`. A lock
    that exists but does not parse is not free: on a local or NFS file:// store the holder's heartbeat
    truncates the file before it writes it, so a read can meet it empty or half written. Such a lock is
    read again for up to `settle_s`; if it still does not parse (its writer was killed mid-write), the
    object's modification time stands in for the heartbeat."""
    deadline = time.monotonic() + settle_s
    while True:
        held = _read(fs, path)
        if held is not None:
            return held if time.time() - float(held.get("beat", 0)) < stale_s else None
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        if time.monotonic() >= deadline:
            mtime = info.mtime  # a datetime, or None where the store keeps none: then it counts as fresh
            return {} if mtime is None or time.time() - mtime.timestamp() < stale_s else None
        time.sleep(min(0.05, settle_s))


def _uri_message(where: str, name: str, who: dict) -> str:
    by = f"launcher PID {who.get('pid')} on {who.get('host')}, started {who.get('started')}" if who else \
        "another launcher"
    return (f"--name {name}: study {name} is being run right now by {by} (its lock {where} is fresh); wait "
            f"for it to finish or stop it (a killed launcher's lock goes stale after {STALE_S:.0f} s), or "
            "choose another --name. Two launchers on one study would corrupt it.")
