"""Want markers, the hand-over of the embedded data path between runs and the read API.

Real files and real chDB: the read API's reader holds the data path between
requests and lets a run (a `ClickHouseResource.session()`) in within one query.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from analytics_platform.api.reader import ClickHouseBusy, EmbeddedReader
from analytics_platform.resources.chdb_handoff import (
    STALE_MARKER_SECONDS,
    acquire_announced,
    lock_path,
    others_waiting,
    want_folder,
    want_marker,
)
from analytics_platform.resources.clickhouse import ClickHouseResource


def test_a_live_marker_is_seen_its_own_is_not_and_a_stale_one_is_removed(tmp_path: Path):
    path = tmp_path / "clickhouse"
    assert not others_waiting(path)
    with want_marker(path) as own:
        assert not others_waiting(path, own=own)
        assert others_waiting(path)
    stale = want_folder(path) / "4242-deadwaiter"
    stale.touch()
    old = time.time() - STALE_MARKER_SECONDS - 1
    os.utime(stale, (old, old))
    assert not others_waiting(path)
    assert not stale.exists()  # a waiter that died blocks nobody


def test_acquiring_announces_the_wait_and_leaves_no_marker(tmp_path: Path):
    path = tmp_path / "clickhouse"
    holder = FileLock(str(lock_path(path)), thread_local=False)
    holder.acquire()
    seen = []
    waiter = FileLock(str(lock_path(path)), thread_local=False)
    thread = threading.Thread(target=acquire_announced, args=(waiter, path, 10))
    thread.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        seen.append(True) if others_waiting(path) else time.sleep(0.01)
    holder.release()
    thread.join(timeout=10)
    assert seen and waiter.is_locked
    assert list(want_folder(path).iterdir()) == []
    waiter.release()


def test_a_run_gets_the_data_path_from_an_idle_reader_and_the_reader_waits_bounded(
    clickhouse_url: str,
):
    # The session's data path: a process's chDB is best kept on one path.
    path = Path(clickhouse_url.removeprefix("chdb://"))
    reader = EmbeddedReader(path, wait_seconds=0.3)
    try:
        with reader.reading() as session:
            assert session.query_df("SELECT 1 AS one")["one"].tolist() == [1]
        run = ClickHouseResource(url=clickhouse_url, lock_timeout_seconds=10)
        asked = time.monotonic()
        with run.session() as session:
            handed_over = time.monotonic() - asked
            session.command("CREATE DATABASE IF NOT EXISTS handed")
            started = time.monotonic()
            with pytest.raises(ClickHouseBusy), reader.reading():
                pass
            waited = time.monotonic() - started
        assert handed_over < 1.0, f"the run waited {handed_over:.2f} s for an idle reader"
        assert 0.3 <= waited < 1.0
        with reader.reading() as session:  # the run is done: the reader takes it back
            found = session.query_df(
                "SELECT count() AS n FROM system.databases WHERE name = 'handed'"
            )
            assert found["n"].tolist() == [1]
    finally:
        reader.close()
