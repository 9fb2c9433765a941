"""Reading landing files line by line, whatever their format, without loading them whole.

Layout: `<LANDING_DIR>/<tenant>/<YYYY-MM-DD>/<name>.{jsonl,ndjson,csv}[.gz]`.
Files still being written should be named `*.tmp` (or start with '.') and
renamed when complete; such files are ignored. Which entries may be opened at
all (no symlinks, no FIFOs) is landing_tree.py's business.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from analytics_platform.ingest.bounded import oversized_violation
from analytics_platform.ingest.contract import ContractViolation, Reason

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)


def is_landing_name(name: str) -> bool:
    """Whether a file of this name is loaded (not a dotfile, a known extension)."""
    return not name.startswith(".") and name.lower().removesuffix(".gz").endswith(
        JSON_SUFFIXES + CSV_SUFFIXES
    )


def is_landing_file(path: Path) -> bool:
    """A regular file (a symlink never is) with a landing name."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISREG(mode) and is_landing_name(path.name)


@dataclass(frozen=True)
class SourceLine:
    """One physical line of a landing file: its record, or why it has none."""

    line_number: int
    text: str
    record: dict | None
    violation: ContractViolation | None


def open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the line ending), a UTF-8 BOM on line 1 removed.

    The reference reader, for tests and trusted files: it holds whole lines and
    follows links. Landing files are read through `LandingZoneResource.open_file`
    and bounded.py instead.
    """
    with open_binary(path) as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.startswith(b"\xef\xbb\xbf") and number == 1:
                raw = raw[3:]
            yield number, raw.rstrip(b"\r\n")


def decode_line(payload: bytes, max_line_bytes: int) -> tuple[str, ContractViolation | None]:
    """A line's text, and why it cannot be read if it cannot (too long, not UTF-8)."""
    if len(payload) > max_line_bytes:
        digest = hashlib.sha256(payload).hexdigest()
        return oversized_violation(payload, len(payload), digest, max_line_bytes)
    try:
        return payload.decode("utf-8"), None
    except UnicodeDecodeError as err:
        text = payload.decode("utf-8", errors="backslashreplace")
        return text, ContractViolation(Reason.UNDECODABLE_BYTES, f"not UTF-8 at byte {err.start}")


def _decoded_lines(
    path: Path, max_line_bytes: int
) -> Iterator[tuple[int, str, ContractViolation | None]]:
    for number, payload in raw_lines(path):
        yield number, *decode_line(payload, max_line_bytes)


def json_line(number: int, text: str, violation: ContractViolation | None) -> SourceLine | None:
    """One decoded JSON line as a SourceLine; None for a blank line (it carries no event)."""
    if violation is not None:
        return SourceLine(number, text, None, violation)
    if not text.strip():
        return None
    try:
        return SourceLine(number, text, json.loads(text), None)
    except json.JSONDecodeError as err:
        return SourceLine(
            number,
            text,
            None,
            ContractViolation(Reason.INVALID_JSON, f"{err.msg} at column {err.colno}"),
        )


def _json_lines(path: Path, max_line_bytes: int) -> Iterator[SourceLine]:
    for number, text, violation in _decoded_lines(path, max_line_bytes):
        line = json_line(number, text, violation)
        if line is not None:
            yield line


class CsvLines:
    """CSV lines one at a time: the first non-blank line is the header.

    Each physical line is parsed on its own, as `csv.reader([text])` would (a
    quoted field never continues on the next line); one reader is reused.
    """

    def __init__(self, header: list[str] | None = None) -> None:
        self.header = header
        self._next_text: str | None = None
        self._reader = csv.reader(self)

    def __iter__(self) -> CsvLines:
        return self

    def __next__(self) -> str:
        # The reader's input: the current line once, then the end of input.
        text, self._next_text = self._next_text, None
        if text is None:
            raise StopIteration
        return text

    def fields(self, text: str) -> list[str]:
        self._next_text = text
        try:
            return next(self._reader)
        finally:
            self._next_text = None

    def line(
        self, number: int, text: str, violation: ContractViolation | None
    ) -> SourceLine | None:
        """A SourceLine, or None for a blank line and for the header."""
        if violation is not None:
            return SourceLine(number, text, None, violation)
        if not text.strip():
            return None
        try:
            fields = self.fields(text)
        except csv.Error as err:  # e.g. a carriage return inside an unquoted field
            return SourceLine(
                number, text, None, ContractViolation(Reason.WRONG_TYPE, f"not a CSV row: {err}")
            )
        if self.header is None:
            self.header = [name.strip() for name in fields]
            return None
        if len(fields) != len(self.header):
            return SourceLine(
                number,
                text,
                None,
                ContractViolation(
                    Reason.WRONG_TYPE,
                    f"row has {len(fields)} fields, header has {len(self.header)}",
                ),
            )
        record = {
            name: value for name, value in zip(self.header, fields, strict=True) if value != ""
        }
        return SourceLine(number, text, record, None)


def _csv_lines(path: Path, max_line_bytes: int) -> Iterator[SourceLine]:
    reader = CsvLines()
    for number, text, violation in _decoded_lines(path, max_line_bytes):
        line = reader.line(number, text, violation)
        if line is not None:
            yield line


def is_csv(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(CSV_SUFFIXES)


def read_landing_file(path: Path, *, max_line_bytes: int) -> Iterator[SourceLine]:
    """Stream a landing file's lines (CSV: every line after the header)."""
    reader = _csv_lines if is_csv(path) else _json_lines
    return reader(path, max_line_bytes)
