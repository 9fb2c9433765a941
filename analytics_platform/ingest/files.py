"""Reading landing files line by line, whatever their format, without loading them whole.

Layout: `<LANDING_DIR>/<tenant>/<YYYY-MM-DD>/<name>.{jsonl,ndjson,csv}[.gz]`.
Files still being written should be named `*.tmp` (or start with '.') and
renamed when complete; such files are ignored.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from analytics_platform.ingest.contract import ContractViolation, Reason

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)


def is_landing_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return (
        path.is_file()
        and not path.name.startswith(".")
        and name.endswith(JSON_SUFFIXES + CSV_SUFFIXES)
    )


@dataclass(frozen=True)
class SourceLine:
    """One physical line of a landing file: its record, or why it has none."""

    line_number: int
    text: str
    record: dict | None
    violation: ContractViolation | None


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _decoded_lines(
    path: Path, max_line_bytes: int
) -> Iterator[tuple[int, str, ContractViolation | None]]:
    with _open_binary(path) as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.startswith(b"\xef\xbb\xbf") and number == 1:
                raw = raw[3:]
            payload = raw.rstrip(b"\r\n")
            if len(payload) > max_line_bytes:
                text = payload.decode("utf-8", errors="backslashreplace")
                yield (
                    number,
                    text,
                    ContractViolation(
                        Reason.OVERSIZED_LINE,
                        f"line is {len(payload)} bytes, limit {max_line_bytes}",
                    ),
                )
                continue
            try:
                yield number, payload.decode("utf-8"), None
            except UnicodeDecodeError as err:
                text = payload.decode("utf-8", errors="backslashreplace")
                yield (
                    number,
                    text,
                    ContractViolation(Reason.UNDECODABLE_BYTES, f"not UTF-8 at byte {err.start}"),
                )


def _json_lines(path: Path, max_line_bytes: int) -> Iterator[SourceLine]:
    for number, text, violation in _decoded_lines(path, max_line_bytes):
        if violation is not None:
            yield SourceLine(number, text, None, violation)
            continue
        if not text.strip():
            continue  # a blank line carries no event
        try:
            yield SourceLine(number, text, json.loads(text), None)
        except json.JSONDecodeError as err:
            yield SourceLine(
                number,
                text,
                None,
                ContractViolation(Reason.INVALID_JSON, f"{err.msg} at column {err.colno}"),
            )


def _csv_lines(path: Path, max_line_bytes: int) -> Iterator[SourceLine]:
    header: list[str] | None = None
    for number, text, violation in _decoded_lines(path, max_line_bytes):
        if violation is not None:
            yield SourceLine(number, text, None, violation)
            continue
        if not text.strip():
            continue
        fields = next(csv.reader([text]))
        if header is None:
            header = [name.strip() for name in fields]
            continue
        if len(fields) != len(header):
            yield SourceLine(
                number,
                text,
                None,
                ContractViolation(
                    Reason.WRONG_TYPE, f"row has {len(fields)} fields, header has {len(header)}"
                ),
            )
            continue
        record = {name: value for name, value in zip(header, fields, strict=True) if value != ""}
        yield SourceLine(number, text, record, None)


def read_landing_file(path: Path, *, max_line_bytes: int) -> Iterator[SourceLine]:
    """Stream a landing file's lines (CSV: every line after the header)."""
    name = path.name.lower().removesuffix(".gz")
    reader = _csv_lines if name.endswith(CSV_SUFFIXES) else _json_lines
    return reader(path, max_line_bytes)
