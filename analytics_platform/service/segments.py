"""Durable landing segments: how the collector puts acknowledged events on disk.

Events go to `LANDING_DIR/<tenant>/<YYYY-MM-DD>/collector-<instance>-<n>.jsonl`, first
under that name plus `.tmp` (which the landing sensor never lists), renamed when the
segment is closed by age or size, so the sensor only ever sees complete files.

One writer thread owns every file. Requests queue their bytes; the thread writes all
that is queued (each request's lines for a segment in one write, so a kill never splits
a line of an acknowledged request), then syncs every segment written once, then answers
all of them: concurrent requests share one fsync (group commit). A request is answered
"written" only after its segments and the folders that name them are synced.

Several collectors may share one landing zone: the instance id (host, pid, start time,
random) is in every name, and each collector holds an `flock` on its journal
`LANDING_DIR/.collectors/<instance>.lock`, which lists the segments it opened. A journal
nobody holds belongs to a dead collector: `recover_abandoned` closes that collector's
segments (cutting a torn last line, which was never acknowledged) and removes it
(recovery.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from analytics_platform.service.landing_io import JOURNALS, TMP_SUFFIX, fsync_dir, write_all
from analytics_platform.tenants.ids import is_valid_tenant_id

log = logging.getLogger(__name__)

_MAX_BATCH = 4096  # requests written per group commit, so one answer never waits on all
# Events spread over many days open a segment per day: past this many open files the
# oldest is closed early, so a backfill of old events cannot exhaust file descriptors.
MAX_OPEN_SEGMENTS = 256


class LandingUnavailable(Exception):
    """The landing zone could not take a request's events; nothing of it is acknowledged."""


def instance_id(now: dt.datetime | None = None) -> str:
    """A name no other collector process uses: host, pid, start time and random bits."""
    host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()).strip("-")[:32] or "host"
    started = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{host}-{os.getpid()}-{started}-{secrets.token_hex(3)}"


@dataclass(eq=False)  # hashed by identity: one object per open file
class _Segment:
    folder: Path
    name: str  # the final name; the file is `name + .tmp` until sealed
    fd: int
    opened_at: float
    size: int = 0
    durable_size: int = 0  # bytes known synced
    folder_synced: bool = False
    identity: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file
    checked_round: int = -1

    @property
    def tmp_path(self) -> Path:
        return self.folder / (self.name + TMP_SUFFIX)


@dataclass
class WriteRequest:
    """One HTTP request's lines: day (YYYY-MM-DD) -> newline-terminated JSON lines."""

    tenant: str
    lines_by_day: Mapping[str, bytes]
    done: Callable[[LandingUnavailable | None], None] = field(default=lambda _err: None)


_STOP = object()


class SegmentWriter:
    """Writes requests' lines into segments and says when each request is on disk.

    `commit` is the synchronous core (tests call it directly); `start` runs it in a
    thread fed by `submit`, and `close` seals every segment and releases the journal.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_age_seconds: float,
        max_bytes: int,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.root = root
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self.instance = instance or instance_id()
        self._clock = clock
        self._open: dict[tuple[str, str], _Segment] = {}
        self._unsealed: list[_Segment] = []  # segments whose closing failed; retried
        self._dirty_folders: set[Path] = set()
        self._sequence = 0
        self._round = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False
        journals = root / JOURNALS
        journals.mkdir(parents=True, exist_ok=True)
        self.journal = journals / f"{self.instance}.lock"
        self._journal_fd = os.open(
            self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        fcntl.flock(self._journal_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fsync_dir(journals)

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="segment-writer", daemon=True)
        self._thread.start()

    def submit(self, request: WriteRequest) -> None:
        """Queue a request; `request.done` is called from the writer thread."""
        if self._closing:
            request.done(LandingUnavailable("the collector is shutting down"))
        else:
            self._queue.put(request)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, seal every segment, release the journal."""
        self._closing = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        else:
            self.seal_all()
        if not self._open and not self._unsealed:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
        # Left in place when a segment could not be sealed: the next collector's recovery
        # finds it through the journal, which is free once this process ends.
        os.close(self._journal_fd)

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self._seconds_to_next_seal())
            except queue.Empty:
                self.seal_due()
                continue
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            requests = [item for item in batch if item is not _STOP]
            self._answer(requests)
            self._guarded(self.seal_due)
        self._guarded(self.seal_all)
        self._refuse_leftovers()

    def _refuse_leftovers(self) -> None:
        """Answer what was queued after the stop (nothing, when the server drained first)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                item.done(LandingUnavailable("the collector is shutting down"))

    def _answer(self, requests: list[WriteRequest]) -> None:
        """Commit and answer every request, whatever fails: a request never waits forever."""
        try:
            errors = self.commit(requests)
        except Exception as err:  # a bug must refuse requests, not stop the thread
            log.exception("segment writer: commit failed")
            errors = [LandingUnavailable(f"the collector failed to write: {err}")] * len(requests)
        for request, error in zip(requests, errors, strict=True):
            try:
                request.done(error)
            except Exception:  # e.g. the event loop already closed at shutdown
                log.exception("segment writer: could not answer a request")

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:
            log.exception("segment writer: closing segments failed; retried next tick")

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs (it does between `start` and `close`)."""
        return self._thread is not None and self._thread.is_alive()

    def _seconds_to_next_seal(self) -> float | None:
        if not self._open and not self._unsealed:
            return None
        if self._unsealed:
            return self.max_age_seconds
        oldest = min(segment.opened_at for segment in self._open.values())
        return max(0.0, oldest + self.max_age_seconds - self._clock())

    # ------------------------------------------------------------------ the core

    def commit(self, requests: list[WriteRequest]) -> list[LandingUnavailable | None]:
        """Write each request's lines, sync everything written once; per request, None
        when its lines are on disk, else why not (its lines were taken back out)."""
        self._round += 1
        errors: list[LandingUnavailable | None] = [None] * len(requests)
        touched: list[list[_Segment]] = [[] for _ in requests]
        for index, request in enumerate(requests):
            try:
                touched[index] = self._write(request)
            except (OSError, ValueError) as err:
                errors[index] = LandingUnavailable(f"writing {request.tenant}'s events: {err}")
        failed = self._sync({segment for segments in touched for segment in segments})
        for index, segments in enumerate(touched):
            bad = [s for s in segments if s in failed or not s.folder_synced]
            if bad and errors[index] is None:
                errors[index] = LandingUnavailable(f"syncing {bad[0].tmp_path}: {failed[bad[0]]}")
        return errors

    def _write(self, request: WriteRequest) -> list[_Segment]:
        written: list[tuple[_Segment, int]] = []
        try:
            for day, lines in request.lines_by_day.items():
                segment = self._segment(request.tenant, day)
                written.append((segment, segment.size))
                write_all(segment.fd, lines, segment.size)
                segment.size += len(lines)
        except OSError:
            for segment, size in written:
                self._take_back(segment, size)
            raise
        return [segment for segment, _size in written]

    def _take_back(self, segment: _Segment, size: int) -> None:
        """Cut a failed request's bytes off a segment; retire the segment if that fails."""
        try:
            os.ftruncate(segment.fd, size)
            segment.size = size
        except OSError:
            self._retire(segment)

    def _sync(self, segments: set[_Segment]) -> dict[_Segment, OSError]:
        failed: dict[_Segment, OSError] = {}
        for segment in segments:
            try:
                os.fdatasync(segment.fd)
                segment.durable_size = segment.size
            except OSError as err:
                failed[segment] = err
        failed_folders: dict[Path, OSError] = {}
        for folder in sorted(self._dirty_folders):
            try:
                fsync_dir(folder)
                self._dirty_folders.discard(folder)
            except OSError as err:
                failed_folders[folder] = err
        for segment in segments:
            if segment.folder_synced or segment in failed:
                continue
            # Durable once its folder, the tenant's and the root all name what they hold.
            chain = (segment.folder, segment.folder.parent, self.root)
            error = next((failed_folders[f] for f in chain if f in failed_folders), None)
            if error is not None:
                failed[segment] = error
            elif not any(f in self._dirty_folders for f in chain):
                segment.folder_synced = True
        for segment in failed:
            # Whatever the page cache holds after a failed fsync is unknown: keep only
            # what was synced before, in a segment that takes nothing more.
            self._take_back(segment, segment.durable_size)
            self._retire(segment)
        return failed

    def _segment(self, tenant: str, day: str) -> _Segment:
        segment = self._open.get((tenant, day))
        if segment is not None and self._still_in_place(segment):
            return segment
        if not is_valid_tenant_id(tenant) or dt.date.fromisoformat(day).isoformat() != day:
            raise ValueError(f"not a landing folder: {tenant!r}/{day!r}")
        if len(self._open) >= MAX_OPEN_SEGMENTS:
            self._retire(min(self._open.values(), key=lambda s: s.opened_at))
        folder = self.root / tenant / day
        for path in (self.root / tenant, folder):
            try:
                os.mkdir(path)
                self._dirty_folders.add(path.parent)
            except FileExistsError:
                if not path.is_dir() or path.is_symlink():
                    raise NotADirectoryError(f"{path} is not a folder") from None
        self._sequence += 1
        name = f"collector-{self.instance}-{self._sequence:06d}.jsonl"
        # Journaled (and synced) before the file exists, so recovery always finds it.
        os.write(self._journal_fd, f"{tenant}/{day}/{name}{TMP_SUFFIX}\n".encode())
        os.fdatasync(self._journal_fd)
        fd = os.open(
            folder / (name + TMP_SUFFIX),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o644,
        )
        self._dirty_folders.add(folder)
        info = os.fstat(fd)
        segment = _Segment(folder, name, fd, self._clock(), identity=(info.st_dev, info.st_ino))
        segment.checked_round = self._round
        self._open[(tenant, day)] = segment
        return segment

    def _still_in_place(self, segment: _Segment) -> bool:
        """Whether the open file is still at its path in the zone (checked once a round):
        a zone moved or replaced under the collector must not take events unseen."""
        if segment.checked_round == self._round:
            return True
        try:
            info = os.stat(segment.tmp_path, follow_symlinks=False)
            in_place = (info.st_dev, info.st_ino) == segment.identity
        except OSError:
            in_place = False
        if in_place:
            segment.checked_round = self._round
        else:
            self._retire(segment)  # sealed where it is once its folder is back
        return in_place

    # ------------------------------------------------------------------ closing

    def _retire(self, segment: _Segment) -> None:
        """Take a segment out of use; it is sealed now if possible, else retried later."""
        for key, open_segment in list(self._open.items()):
            if open_segment is segment:
                del self._open[key]
        if segment not in self._unsealed:
            self._unsealed.append(segment)

    def seal_due(self) -> None:
        """Seal the segments past their age or size, and retry those that failed to seal."""
        now = self._clock()
        for segment in list(self._open.values()):
            if segment.size >= self.max_bytes or now - segment.opened_at >= self.max_age_seconds:
                self._retire(segment)
        self._seal_unsealed()

    def seal_all(self) -> None:
        for segment in list(self._open.values()):
            self._retire(segment)
        self._seal_unsealed()

    def _seal_unsealed(self) -> None:
        for segment in list(self._unsealed):
            try:
                self._seal(segment)
                self._unsealed.remove(segment)
            except OSError:
                continue  # retried at the next tick, and by recovery if this process dies

    def _seal(self, segment: _Segment) -> None:
        if segment.fd >= 0:
            os.ftruncate(segment.fd, segment.durable_size)
            os.fdatasync(segment.fd)
            os.close(segment.fd)
            segment.fd = -1
        tmp = segment.tmp_path
        if segment.durable_size == 0:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        else:
            os.rename(tmp, segment.folder / segment.name)
        fsync_dir(segment.folder)

    @property
    def open_segments(self) -> int:
        return len(self._open)
