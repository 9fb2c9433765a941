"""Loading a tenant-day's landing files into `raw.file_events`, quarantining bad rows.

Files stream through COPY in blocks of text rows, parsed in the calling thread
while another thread sends the previous blocks; nothing is held whole in
memory (quarantined rows spill to a temporary file past a few MB). Per file:
rows read = rows loaded + rows quarantined, checked before the transaction commits.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg

from analytics_platform.ingest.contract import (
    CONTRACT_COLUMNS,
    MAX_TEXT_CHARS,
    ContractViolation,
    to_canonical,
)
from analytics_platform.ingest.copy_text import copy_field, copy_line
from analytics_platform.ingest.encode import RowEncoder
from analytics_platform.ingest.files import CsvLines, decode_line, is_csv, json_line, raw_lines
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource

RAW_FILE_EVENTS = "raw.file_events"
RAW_COLUMNS = (*CONTRACT_COLUMNS, "_partition_date", "_source", "_source_line", "_run_id")
QUARANTINE = "platform.quarantine"
QUARANTINE_COLUMNS = (
    "tenant_id",
    "partition_date",
    "layer",
    "source",
    "source_line",
    "reason",
    "detail",
    "raw_text",
    "run_id",
)
LAYER = "raw_file_events"
CHUNK_ROWS = 2000  # rows per COPY block: about 0.7 MB of tracker events


class LoadInvariantError(RuntimeError):
    pass


@dataclass
class FileReport:
    """What happened to one landing file."""

    source: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined


@dataclass
class SliceReport:
    slice: TenantDay
    files: list[FileReport]

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def reasons(self) -> Counter[str]:
        return sum((f.reasons for f in self.files), Counter())


class QuarantineSpool:
    """A slice's quarantine rows as COPY text: in memory up to `max_memory` bytes, then on disk.

    Quarantined rows are normally few, but a wholly broken file must not hold
    them all in memory; they are COPYed after the raw rows, in the same transaction.
    """

    def __init__(self, max_memory: int = 8 << 20):
        self._file = tempfile.SpooledTemporaryFile(max_size=max_memory, mode="w+b")  # noqa: SIM115 closed by close()
        self.rows = 0

    def append(self, row: tuple[object, ...]) -> None:
        self._file.write(copy_line(row).encode("utf-8"))
        self.rows += 1

    def blocks(self, size: int = 1 << 20) -> Iterator[bytes]:
        self._file.seek(0)
        while block := self._file.read(size):
            yield block

    def close(self) -> None:
        self._file.close()


def _file_lines(
    path: Path,
    report: FileReport,
    slice_: TenantDay,
    landing: LandingZoneResource,
    run_id: str,
    quarantine: QuarantineSpool,
) -> Iterator[list[str]]:
    """The file's loadable rows as COPY text lines, in chunks; its bad rows go to `quarantine`.

    Plain records take `RowEncoder`'s fast path; every other line takes the
    reference path (`read_landing_file`'s per-line readers and `to_canonical`),
    which also decides every quarantine reason.
    """
    window_start, window_end = landing.window(slice_.date)
    encoder = RowEncoder(slice_.tenant, window_start, window_end)
    lineage = (slice_.date, report.source)
    middle = f"\t{copy_field(slice_.date)}\t{copy_field(report.source)}\t"
    tail = f"\t{copy_field(run_id)}\n"
    max_line_bytes = landing.max_line_bytes
    csv_lines = CsvLines() if is_csv(path) else None
    chunk: list[str] = []
    for number, payload in raw_lines(path):
        fields = None
        if len(payload) <= max_line_bytes:
            short = len(payload) <= MAX_TEXT_CHARS
            if csv_lines is None:
                try:
                    record = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    pass
                else:
                    fields = encoder.encode(record, needs_escape=b"\\" in payload, short=short)
            elif csv_lines.header is not None:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    if text and not text.isspace():
                        values = csv_lines.fields(text)
                        if len(values) == len(csv_lines.header):
                            fields = encoder.encode_csv(
                                csv_lines.header,
                                values,
                                needs_escape="\\" in text or "\t" in text or "\r" in text,
                                short=short,
                            )
        if fields is not None:
            report.rows_read += 1
            report.rows_loaded += 1
            chunk.append(f"{fields}{middle}{number}{tail}")
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
            continue

        # The reference path.
        text, violation = decode_line(payload, max_line_bytes)
        if csv_lines is None:
            line = json_line(number, text, violation)
        else:
            line = csv_lines.line(number, text, violation)
        if line is None:
            continue  # a blank line, or the CSV header
        report.rows_read += 1
        violation = line.violation
        if violation is None:
            try:
                values = to_canonical(
                    line.record,
                    tenant=slice_.tenant,
                    window_start=window_start,
                    window_end=window_end,
                )
            except ContractViolation as err:
                violation = err
            else:
                report.rows_loaded += 1
                chunk.append(copy_line((*values, *lineage, number, run_id)))
                continue
        report.rows_quarantined += 1
        report.reasons[violation.reason.value] += 1
        quarantine.append(
            (
                slice_.tenant,
                slice_.date,
                LAYER,
                report.source,
                number,
                violation.reason.value,
                violation.detail,
                line.text,
                run_id,
            )
        )
    if chunk:
        yield chunk


def replace_raw_slice(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    table: str,
    layer: str,
    slice_: TenantDay,
    rows: Iterable[tuple[object, ...]],
    quarantined: list[tuple[object, ...]],
) -> None:
    """Replace a tenant-day's raw rows and its quarantine records of `layer`, in `conn`.

    `rows` is consumed first: it fills `quarantined` as it goes.
    """
    postgres.replace_slice(table, slice_.tenant, [slice_.date], rows, RAW_COLUMNS, conn=conn)
    postgres.replace_slice(
        QUARANTINE,
        slice_.tenant,
        [slice_.date],
        quarantined,
        QUARANTINE_COLUMNS,
        date_column="partition_date",
        scope={"layer": layer},
        conn=conn,
    )


def load_tenant_day(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    landing: LandingZoneResource,
    slice_: TenantDay,
    run_id: str,
) -> SliceReport:
    """Replace the tenant-day's raw rows and quarantine records with what its files hold now.

    Runs inside `conn`'s transaction: the caller commits raw rows and their
    quarantine together.
    """
    files = landing.files_for(slice_)
    reports = [FileReport(source=landing.relative(path)) for path in files]
    quarantine = QuarantineSpool()

    def all_blocks() -> Iterator[bytes]:
        for path, report in zip(files, reports, strict=True):
            try:
                for chunk in _file_lines(path, report, slice_, landing, run_id, quarantine):
                    yield "".join(chunk).encode("utf-8")
            except OSError as err:
                raise OSError(
                    f"cannot read landing file {report.source} (line {report.rows_read + 1}) "
                    f"for {slice_}: {err}; fix or remove the file and re-materialize "
                    f"partition {slice_.partition_key}"
                ) from err

    try:
        # As replace_raw_slice does: the raw rows first, then the quarantine they filled.
        postgres.delete_slice(conn, RAW_FILE_EVENTS, slice_.tenant, [slice_.date])
        postgres.copy_blocks(conn, RAW_FILE_EVENTS, RAW_COLUMNS, all_blocks())
        postgres.delete_slice(
            conn,
            QUARANTINE,
            slice_.tenant,
            [slice_.date],
            date_column="partition_date",
            scope={"layer": LAYER},
        )
        postgres.copy_blocks(conn, QUARANTINE, QUARANTINE_COLUMNS, quarantine.blocks())
    finally:
        quarantine.close()
    for report in reports:
        if not report.balanced:
            raise LoadInvariantError(
                f"{report.source} for {slice_}: read {report.rows_read} rows but loaded "
                f"{report.rows_loaded} and quarantined {report.rows_quarantined}"
            )
    return SliceReport(slice=slice_, files=reports)
