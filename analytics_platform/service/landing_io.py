"""The few file operations the collector's durability rests on, each in one place."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

JOURNALS = ".collectors"  # LANDING_DIR/.collectors/<instance>.lock: a dotfolder, never listed
TMP_SUFFIX = ".tmp"  # an open segment: the landing sensor never lists *.tmp


def fsync_dir(path: Path) -> None:
    """Sync a folder, so the names it holds (a new file, a rename) survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def probe_landing(root: Path) -> None:
    """Create, sync and remove a dotfile in the landing zone; raises OSError if it cannot."""
    probe = root / f".health-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b"probe\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()


def write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until every byte is written (a regular file may take fewer at once)."""
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        if count == 0:
            raise OSError("the landing zone took no bytes (disk full?)")
        view = view[count:]
        offset += count
