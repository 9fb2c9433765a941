"""Sharing one embedded chDB data path between runs and a long-lived reader (the read API).

chDB admits one process per data path, and `ClickHouseResource.session()` takes
an inter-process file lock for it. A run holds the lock for its whole session; the
read API would rather keep its session open between requests (opening one costs
~0.1 s), which would starve every run. So a process that waits for the lock says
so with a *want marker*, a file `<path>.want/<pid>-<random>` it touches while it
waits and deletes once it holds the lock; the read API watches that folder and
hands its session back before its next query (within one query of the wait
starting), and takes the lock again only when nobody else is waiting.

A marker not touched for `STALE_MARKER_SECONDS` belongs to a waiter that died
(SIGKILL, power loss): it is ignored and removed, so it cannot block the API.
Markers carry no pid check, so waiters in other containers sharing the volume
count too.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

STALE_MARKER_SECONDS = 5.0
# How often a waiter retries the lock and touches its marker.
POLL_SECONDS = 0.05


def lock_path(path: Path) -> Path:
    return Path(f"{path}.lock")


def want_folder(path: Path) -> Path:
    return Path(f"{path}.want")


@contextmanager
def want_marker(path: Path) -> Iterator[Path]:
    """A marker saying this process waits for the data path; removed on exit."""
    folder = want_folder(path)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    marker.touch()
    try:
        yield marker
    finally:
        with suppress(FileNotFoundError):
            marker.unlink()


def others_waiting(path: Path, own: Path | None = None) -> bool:
    """Whether a live marker other than `own` is in the data path's want folder.

    Stale markers (a waiter that died) are removed on the way.
    """
    try:
        entries = list(os.scandir(want_folder(path)))
    except FileNotFoundError:
        return False
    now = time.time()
    waiting = False
    for entry in entries:
        if own is not None and entry.path == str(own):
            continue
        try:
            age = now - entry.stat().st_mtime
        except FileNotFoundError:
            continue  # its waiter got the lock meanwhile
        if age > STALE_MARKER_SECONDS:
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
            continue
        waiting = True
    return waiting


def acquire_announced(lock: FileLock, path: Path, timeout: float) -> None:
    """Acquire `lock` within `timeout` s (raises filelock.Timeout), announcing the wait.

    Used by every process that writes or queries the data path for a bounded
    time (runs, `analytics-platform query`): a holder that watches markers (the
    read API) releases the lock after its current query.
    """
    deadline = time.monotonic() + timeout
    with want_marker(path) as marker:
        while True:
            try:
                lock.acquire(timeout=min(POLL_SECONDS * 4, max(deadline - time.monotonic(), 0)))
                return
            except Timeout:
                if time.monotonic() >= deadline:
                    raise
                with suppress(FileNotFoundError):
                    marker.touch()  # still waiting: keep the marker live
