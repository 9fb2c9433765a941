"""Loading a tenant-day's landing files into `raw.file_events`, quarantining bad rows.

Files stream through COPY in blocks of text rows (convert.py): converted in the
calling thread (CSV blocks column by column, csv_columns.py), or for large JSON
lines files by worker processes, while another thread sends the previous
blocks. Nothing is held whole in memory (a bounded number of blocks is in
flight, no line is held past `max_line_bytes`, bounded.py; quarantined rows
spill to a temporary file past a few MB). Per file: rows read = rows loaded +
rows quarantined, checked before the transaction commits.

Each file is COPYed inside a savepoint: a file that breaks off (a truncated or
corrupt .gz, a gzip bomb) leaves none of its rows, is quarantined as one record
(source_line 0, reason `corrupt_file` or `decompression_limit`), and the
tenant-day's other files load. Symlinks and special files in the day folder
are never opened; they are recorded once (refusals.py).
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg

from analytics_platform.ingest.bounded import (
    BLOCK_BYTES,  # a module global here, so a test may shrink it
    CORRUPT_STREAM_ERRORS,
    FileFaultError,
    LongLine,
    corrupt_file,
    line_blocks,
    read_line,
)
from analytics_platform.ingest.contract import CONTRACT_COLUMNS
from analytics_platform.ingest.convert import (
    BOM,
    LAYER,
    Converted,
    Converter,
    FileJob,
)
from analytics_platform.ingest.convert_worker import WorkerPool
from analytics_platform.ingest.files import is_csv
from analytics_platform.ingest.landing_tree import Refusal, RefusedPathError
from analytics_platform.ingest.quarantine import (
    QUARANTINE,
    QuarantineRecord,
    QuarantineSpool,
    write_quarantine,
)
from analytics_platform.ingest.refusals import record_refusals
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.sites import tenant_sites

RAW_FILE_EVENTS = "raw.file_events"
RAW_COLUMNS = (*CONTRACT_COLUMNS, "_partition_date", "_source", "_source_line", "_run_id")
PARALLEL_MIN_BYTES = 16 << 20  # smaller files are converted in this thread


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
    fields: set[str] = field(default_factory=set)  # keys in the loaded rows' properties
    lines_seen: int = 0  # physical lines read so far
    fault: str | None = None  # why the file was quarantined whole (then no row counts)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined

    def quarantine_whole(self, reason: str) -> None:
        """The file broke off: none of its rows counts, it is one quarantine record."""
        self.fault = reason
        self.rows_read = self.rows_loaded = self.rows_quarantined = 0
        self.reasons = Counter({reason: 1})
        self.fields = set()


@dataclass
class SliceReport:
    slice: TenantDay
    files: list[FileReport]
    refused: list[Refusal] = field(default_factory=list)  # symlinks etc., never opened

    @property
    def files_quarantined(self) -> int:
        """Files quarantined whole: one record each, beside the rows read."""
        return sum(f.fault is not None for f in self.files)

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


def _file_blocks(
    stream: BinaryIO,
    report: FileReport,
    job: FileJob,
    quarantine: QuarantineSpool,
    pool: WorkerPool | None,
) -> Iterator[bytes]:
    """The file's loadable rows as blocks of COPY text; its bad rows go to `quarantine`.

    With a `pool`, blocks of whole lines are converted by its worker processes (one
    block in hand each) and taken back in file order; else, and for CSV files read
    column by column, in this thread. Lines too long to hold are quarantined here
    (bounded.py), whichever converts the blocks.
    """

    def take(converted: Converted) -> bytes:
        report.rows_read += converted.rows_read
        report.rows_loaded += converted.rows_loaded
        report.rows_quarantined += len(converted.quarantined)
        report.reasons.update(converted.reasons)
        report.fields |= converted.fields
        for row in converted.quarantined:
            quarantine.append(row)
        return converted.text

    converter = Converter(job)
    number = 0
    if job.csv:  # up to the header here: every block after it needs the header
        while converter.csv_lines.header is None:
            line = read_line(stream, number + 1, job.max_line_bytes)
            if line is None:
                break
            number = report.lines_seen = number + 1
            if isinstance(line, LongLine):
                take(converter.long_line(line))
                continue
            if number == 1 and line.startswith(BOM):
                line = line[3:]
            yield take(converter.convert([(number, line.rstrip(b"\r\n"))]))
    pieces = _counted(line_blocks(stream, number + 1, job.max_line_bytes, BLOCK_BYTES), report)
    # A CSV file read column by column (Arrow) is cheapest in this thread: no
    # pickling, no worker start-up, and the memory of one process.
    if pool is None or converter.csv_columns() is not None:
        for piece in pieces:
            if isinstance(piece, LongLine):
                take(converter.long_line(piece))
            else:
                yield take(converter.convert_block(*piece))
        return
    header = converter.csv_lines.header if job.csv else None
    idle, busy = list(range(pool.processes)), deque()
    try:
        for piece in pieces:
            if isinstance(piece, LongLine):
                take(converter.long_line(piece))
                continue
            if idle:
                worker = idle.pop()
                pool.send(worker, job, header, *piece)
                busy.append(worker)
                continue
            worker = busy.popleft()  # the oldest block: results come back in file order
            converted = pool.receive(worker)
            pool.send(worker, job, header, *piece)
            busy.append(worker)
            yield take(converted)
        while busy:
            yield take(pool.receive(busy.popleft()))
    finally:
        while busy:  # the file broke off: the workers' replies are read, then dropped
            pool.receive(busy.popleft())


def _counted(
    pieces: Iterator[tuple[int, bytes] | LongLine], report: FileReport
) -> Iterator[tuple[int, bytes] | LongLine]:
    """`pieces`, noting in `report.lines_seen` the last line read so far."""
    for piece in pieces:
        if isinstance(piece, LongLine):
            report.lines_seen = piece.number
        else:
            first, block = piece
            report.lines_seen = first + block.count(b"\n") - block.endswith(b"\n")
        yield piece


def _parse_processes(landing: LandingZoneResource, files: list[Path]) -> int:
    """Worker processes for this slice: none unless a file is large and cores are spare."""
    if not any(path.lstat().st_size >= PARALLEL_MIN_BYTES for path in files):
        return 0
    wanted = landing.parse_processes or min(os.cpu_count() or 1, 4)
    return wanted if wanted > 1 else 0


def load_tenant_day(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    landing: LandingZoneResource,
    slice_: TenantDay,
    run_id: str,
    sites: frozenset[str] | None = None,
) -> SliceReport:
    """Replace the tenant-day's raw rows and quarantine records with what its files hold now.

    Runs inside `conn`'s transaction: the caller commits raw rows and their
    quarantine together. Refused paths are recorded at once, on a connection of their
    own (refusals.py). `sites`: the tenant's sites (`tenant_sites`), read here if not
    given; a run loading many days of a tenant reads them once and passes them.
    """
    if sites is None:
        sites = tenant_sites(postgres, slice_.tenant)
    scan = landing.scan(slice_)
    record_refusals(postgres, scan.refused)
    files = [entry.path for entry in scan.files]
    reports = [FileReport(source=landing.relative(path)) for path in files]
    quarantine = QuarantineSpool()
    window_start, window_end = landing.window(slice_.date)
    processes = _parse_processes(landing, files)
    pool = WorkerPool(processes) if processes else None

    def file_blocks(path: Path, report: FileReport) -> Iterator[bytes]:
        job = FileJob(
            tenant=slice_.tenant,
            day=slice_.date,
            window_start=window_start,
            window_end=window_end,
            source=report.source,
            run_id=run_id,
            max_line_bytes=landing.max_line_bytes,
            csv=is_csv(path),
            sites=sites,
        )
        large = pool is not None and path.lstat().st_size >= PARALLEL_MIN_BYTES
        try:
            with landing.open_file(path) as stream:
                yield from _file_blocks(stream, report, job, quarantine, pool if large else None)
        except RefusedPathError as err:  # swapped for a link since the listing
            raise FileFaultError(err.reason, str(err)) from err
        except CORRUPT_STREAM_ERRORS as err:
            raise corrupt_file(err, report.lines_seen) from err
        except OSError as err:
            raise OSError(
                f"cannot read landing file {report.source} (line {report.lines_seen + 1}) "
                f"for {slice_}: {err}; fix or remove the file and re-materialize "
                f"partition {slice_.partition_key}"
            ) from err

    try:
        postgres.delete_slice(conn, RAW_FILE_EVENTS, slice_.tenant, [slice_.date])
        for path, report in zip(files, reports, strict=True):
            mark = quarantine.mark()
            try:
                with conn.transaction():  # a savepoint: a file that breaks off leaves no row
                    postgres.copy_blocks(
                        conn, RAW_FILE_EVENTS, RAW_COLUMNS, file_blocks(path, report)
                    )
            except FileFaultError as fault:
                quarantine.rewind(mark)
                report.quarantine_whole(fault.reason)
                quarantine.append(
                    QuarantineRecord(
                        slice_.tenant,
                        slice_.date,
                        LAYER,
                        report.source,
                        0,
                        fault.reason,
                        fault.detail,
                        "",
                        run_id,
                    )
                )
        # As replace_raw_slice does: the raw rows first, then the quarantine they filled.
        postgres.delete_slice(
            conn,
            QUARANTINE,
            slice_.tenant,
            [slice_.date],
            date_column="partition_date",
            scope={"layer": LAYER},
        )
        write_quarantine(postgres, conn, quarantine.records())
    finally:
        quarantine.close()
        if pool is not None:
            pool.close()
    for report in reports:
        if not report.balanced:
            raise LoadInvariantError(
                f"{report.source} for {slice_}: read {report.rows_read} rows but loaded "
                f"{report.rows_loaded} and quarantined {report.rows_quarantined}"
            )
    return SliceReport(slice=slice_, files=reports, refused=scan.refused)
