"""The URI study lock's reading of a lock object it cannot parse (study/engine/lock.py): no Ray."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from study.engine.lock import STALE_S, StudyLockedError, UriStudyLock


def test_a_uri_lock_met_half_written_is_held_not_free(tmp_path):
    # a file:// holder's heartbeat truncates the lock before writing it: a launcher that reads it in
    # between must not take the study (the old reader counted it as no lock and took it)
    lock_file = tmp_path / ".s.lock"
    lock_file.write_text('{"id": "holder", "pid": 7, "host": "node-a", "be')
    with pytest.raises(StudyLockedError, match="is being run right now by another launcher"):
        UriStudyLock.acquire(tmp_path.as_uri(), "s", settle_s=0.05)
    assert lock_file.read_text().startswith('{"id": "holder"')  # nothing of the refused launcher's


def test_a_uri_lock_rewritten_while_read_is_judged_on_its_whole_record(tmp_path):
    lock_file = tmp_path / ".s.lock"
    lock_file.write_text("")  # met truncated; the holder's write lands 0.1 s later

    def finish_write():
        time.sleep(0.1)
        lock_file.write_text(json.dumps({"id": "holder", "pid": 7, "host": "node-a", "beat": time.time()}))

    writer = threading.Thread(target=finish_write)
    writer.start()
    try:
        with pytest.raises(StudyLockedError, match="launcher PID 7 on node-a"):
            UriStudyLock.acquire(tmp_path.as_uri(), "s", settle_s=5.0)
    finally:
        writer.join()


def test_a_half_written_uri_lock_left_long_ago_is_taken_over(tmp_path):
    lock_file = tmp_path / ".s.lock"
    lock_file.write_text('{"id": "dead", "pi')  # its launcher was killed mid-write
    old = time.time() - STALE_S - 60
    os.utime(lock_file, (old, old))
    lock = UriStudyLock.acquire(tmp_path.as_uri(), "s", settle_s=0.05)
    try:
        assert json.loads(lock_file.read_text())["id"] == lock.record["id"]
    finally:
        lock.release()
    assert not lock_file.exists()


def test_a_missing_uri_lock_is_free_without_waiting(tmp_path):
    start = time.monotonic()
    UriStudyLock.acquire(tmp_path.as_uri(), "s", settle_s=0.05).release()
    assert time.monotonic() - start < 5.0 and not (tmp_path / ".s.lock").exists()
