"""The landing zone as a jail: what may be listed and opened under LANDING_DIR, and what is refused.

Nothing outside the root is ever opened. Every entry is judged by `lstat`, never
by what it points at: a symlink (a file, a day folder or a tenant folder) is
refused with reason `symlink`, a FIFO, socket or device with
`not_a_regular_file`, and neither is ever read. Files are opened one path
component at a time with `O_NOFOLLOW` (folders also with `O_DIRECTORY`), so a
folder swapped for a symlink between listing and opening is refused too; and
with `O_NONBLOCK`, so a FIFO that appeared there cannot hang the reader.

Day folders are `YYYY-MM-DD` exactly (a real calendar date): `date.fromisoformat`
alone also takes `2026-W47-5` or `20261120`, which no run would ever read.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from analytics_platform.ingest.files import is_landing_name

DAY_FOLDER = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

REFUSAL_DETAIL = {
    "symlink": (
        "a symbolic link in the landing zone; links are never followed: put the file "
        "itself under LANDING_DIR/<tenant>/<YYYY-MM-DD>/"
    ),
    "not_a_regular_file": (
        "a FIFO, socket or device in the landing zone; only regular files are read"
    ),
}


def parse_day_folder(name: str) -> dt.date | None:
    """The day a folder name stands for, if it is exactly `YYYY-MM-DD` and a real date."""
    if DAY_FOLDER.fullmatch(name) is None:
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:  # 2026-02-30
        return None


class RefusedPathError(OSError):
    """A landing path that is not a real folder or regular file inside the zone."""

    def __init__(self, relative: str, reason: str):
        super().__init__(f"{relative}: {reason} ({REFUSAL_DETAIL[reason]})")
        self.relative = relative
        self.reason = reason


class _InZone:
    """A path relative to LANDING_DIR: `<tenant>[/<day>[/<file>]]`."""

    relative: str

    @property
    def tenant_folder(self) -> str:
        return self.relative.split("/", 1)[0]

    @property
    def day_folder(self) -> str | None:
        parts = self.relative.split("/")
        return parts[1] if len(parts) > 1 else None


@dataclass(frozen=True)
class Refusal(_InZone):
    """A path under LANDING_DIR that is never read, and why (a key of REFUSAL_DETAIL)."""

    relative: str
    reason: str

    @property
    def day(self) -> dt.date | None:
        return parse_day_folder(self.day_folder) if self.day_folder else None


@dataclass(frozen=True)
class LandingEntry(_InZone):
    """A regular file with a landing name, as `lstat` saw it.

    `ctime_ns` is when the file last changed in any way (written, renamed, touched): the
    kernel sets it, so unlike the mtime no producer can carry an old one in (`mv`,
    `cp -p` and `rsync -t` keep an old mtime)."""

    path: Path
    relative: str
    size: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True)
class Folder(_InZone):
    """A real folder at `<tenant>` or `<tenant>/<day>` (any names: the caller judges them).

    Its `ctime_ns` moves whenever an entry is created, renamed in or out, or removed (or
    its mtime is set); its `mtime_ns` is when that last happened, unless set back."""

    relative: str
    ctime_ns: int
    mtime_ns: int


def _refusal_reason(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "not_a_regular_file"


def _ignored(name: str) -> bool:
    """Dotfiles and `*.tmp` (still being written): never listed, never refused."""
    return name.startswith(".") or name.lower().endswith(".tmp")


@dataclass
class LandingScan:
    """What a listing found: the landing files, and the refused paths (sorted by path)."""

    files: list[LandingEntry]
    refused: list[Refusal]


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _scan_files(root: Path, relative_folder: str, scan: LandingScan) -> None:
    for entry in _entries(root / relative_folder):
        if _ignored(entry.name):
            continue
        relative = f"{relative_folder}/{entry.name}"
        info = entry.stat(follow_symlinks=False)
        reason = _refusal_reason(info.st_mode)
        if reason is not None:
            scan.refused.append(Refusal(relative, reason))
        elif stat.S_ISREG(info.st_mode) and is_landing_name(entry.name):
            scan.files.append(
                LandingEntry(
                    Path(entry.path), relative, info.st_size, info.st_mtime_ns, info.st_ctime_ns
                )
            )


def _scan_folders(root: Path, relative_parent: str | None, refused: list[Refusal]) -> list[Folder]:
    """The real sub-folders of a folder, in no particular order; symlinks and the like
    refused. One `lstat` per folder: at 400,000 day folders this is a tick's main cost."""
    folders = []
    prefix = f"{relative_parent}/" if relative_parent else ""
    try:
        listing = os.scandir(root / relative_parent if relative_parent else root)
    except (FileNotFoundError, NotADirectoryError):
        return folders
    with listing:
        for entry in listing:
            name = entry.name
            if name[0] == "." or name[-4:].lower() == ".tmp":  # _ignored, inlined: per folder
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                folders.append(Folder(prefix + name, info.st_ctime_ns, info.st_mtime_ns))
            elif (reason := _refusal_reason(info.st_mode)) is not None:
                refused.append(Refusal(prefix + name, reason))
    return folders


def scan_landing(root: Path) -> LandingScan:
    """Every landing file at `<root>/<tenant>/<day>/<file>` (any folder names: the caller
    judges them), and every symlink or special file met on the way, never followed."""
    scan = LandingScan([], [])
    for tenant in _scan_folders(root, None, scan.refused):
        for day in _scan_folders(root, tenant.relative, scan.refused):
            _scan_files(root, day.relative, scan)
    scan.refused.sort(key=lambda r: r.relative)
    return scan


@dataclass
class FolderListing:
    """Every day folder (`<tenant>/<day>`), and the refused tenant and day entries."""

    folders: list[Folder]
    refused: list[Refusal]

    @cached_property
    def paths(self) -> set[str]:
        return {folder.relative for folder in self.folders}


def list_day_folders(root: Path) -> FolderListing:
    """The day folders under `root` with their ctimes, without opening any of them: one
    listing per tenant folder, so a tick costs one `lstat` per day folder, not per file."""
    listing = FolderListing([], [])
    for tenant in _scan_folders(root, None, listing.refused):
        listing.folders += _scan_folders(root, tenant.relative, listing.refused)
    return listing


def scan_folder(root: Path, relative_folder: str) -> LandingScan:
    """The landing files of one listed day folder (any name), and what was refused in it."""
    scan = LandingScan([], [])
    _scan_files(root, relative_folder, scan)
    return scan


def scan_day_folder(root: Path, tenant: str, day: dt.date) -> LandingScan:
    """The landing files of one tenant-day in name order, and what was refused there
    (the tenant or day folder itself, when it is a symlink)."""
    scan = LandingScan([], [])
    relative = tenant
    for part in (tenant, day.isoformat()):
        try:
            info = os.lstat(root / relative)
        except FileNotFoundError:
            return scan
        reason = _refusal_reason(info.st_mode)
        if reason is not None:
            scan.refused.append(Refusal(relative, reason))
            return scan
        if not stat.S_ISDIR(info.st_mode):
            return scan
        if part == tenant:
            relative = f"{tenant}/{day.isoformat()}"
    _scan_files(root, relative, scan)
    return scan


def open_in_zone(root: Path, relative: str) -> BinaryIO:
    """A landing file opened for reading, each path component without following a link.

    Raises RefusedPathError when a component is a symlink or the file is not regular.
    """
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a path inside the landing zone: {relative!r}")
    folder = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root itself may be a link
    try:
        for depth, part in enumerate(parts[:-1], start=1):
            inner = _open_at(folder, part, _DIR_FLAGS, "/".join(parts[:depth]))
            os.close(folder)
            folder = inner
        # Judged before opening too: opening a device can have effects of its own.
        mode = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise RefusedPathError(relative, _refusal_reason(mode) or "not_a_regular_file")
        fd = _open_at(folder, parts[-1], _FILE_FLAGS, relative)
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat above
        os.close(fd)
        raise RefusedPathError(relative, "not_a_regular_file")
    return os.fdopen(fd, "rb")


def _open_at(folder: int, name: str, flags: int, relative: str) -> int:
    try:
        return os.open(name, flags, dir_fd=folder)
    except OSError as err:
        # O_NOFOLLOW on a link fails with ELOOP (ENOTDIR with O_DIRECTORY): say which.
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
            reason = _refusal_reason(mode)
            if reason is not None:
                raise RefusedPathError(relative, reason) from err
        raise
