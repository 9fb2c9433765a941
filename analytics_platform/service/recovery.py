"""Closing what a dead collector left open on the landing zone.

Each collector lists its segments in its journal (`LANDING_DIR/.collectors/<instance>.lock`)
and holds an `flock` on it while it lives. A journal whose lock can be taken belongs to a
dead collector: its `*.tmp` segments are closed (a torn last line cut: it belonged to a
request that was never acknowledged) and the journal removed. A live collector's journal
cannot be locked, so its segments are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from analytics_platform.service.landing_io import JOURNALS, TMP_SUFFIX, fsync_dir

_TAIL_CHUNK = 1 << 16


def _complete_lines_size(fd: int, size: int) -> int:
    """The length of the file's content up to and including its last newline."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def seal_file(tmp_path: Path) -> Path | None:
    """Close a `*.tmp` segment: cut a torn last line, sync, rename, sync the folder.

    Returns the final path, or None when nothing was left (the file is removed).
    """
    fd = os.open(tmp_path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        complete = _complete_lines_size(fd, size)
        if complete != size:
            os.ftruncate(fd, complete)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    final = tmp_path.with_name(tmp_path.name.removesuffix(TMP_SUFFIX))
    if complete == 0:
        tmp_path.unlink()
        result = None
    else:
        os.rename(tmp_path, final)
        result = final
    fsync_dir(tmp_path.parent)
    return result


def recover_abandoned(root: Path, own_journal: Path | None = None) -> list[Path]:
    """Close the segments of every collector that died on this landing zone.

    A journal whose lock can be taken has no living owner; a live collector's is skipped.
    Returns the segments made final.
    """
    folder = root / JOURNALS
    sealed: list[Path] = []
    for journal in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        if own_journal is not None and journal == own_journal:
            continue
        try:
            fd = os.open(journal, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue  # recovered by another collector just now
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its collector is alive
            with os.fdopen(os.dup(fd), "rb") as stream:
                listed = stream.read().decode("utf-8", "replace").splitlines()
            for relative in dict.fromkeys(listed):
                tmp = root / relative
                if relative.endswith(TMP_SUFFIX) and ".." not in relative and tmp.is_file():
                    final = seal_file(tmp)
                    if final is not None:
                        sealed.append(final)
            with contextlib.suppress(FileNotFoundError):
                journal.unlink()
            fsync_dir(folder)
        finally:
            os.close(fd)
    return sealed
