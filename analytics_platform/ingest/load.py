"""Loading a tenant-day's landing files into `raw.file_events`, quarantining bad rows.

Files stream through COPY; nothing is held whole in memory except the
quarantined rows of the slice. Per file: rows read = rows loaded + rows
quarantined, checked before the transaction commits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from analytics_platform.ingest.contract import CONTRACT_COLUMNS, ContractViolation, to_canonical
from analytics_platform.ingest.files import read_landing_file
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


def _file_rows(
    path: Path,
    report: FileReport,
    slice_: TenantDay,
    landing: LandingZoneResource,
    run_id: str,
    quarantined: list[tuple[object, ...]],
) -> Iterator[tuple[object, ...]]:
    window_start, window_end = landing.window(slice_.date)
    lineage = (slice_.date, report.source)
    for line in read_landing_file(path, max_line_bytes=landing.max_line_bytes):
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
                yield (*values, *lineage, line.line_number, run_id)
                continue
        report.rows_quarantined += 1
        report.reasons[violation.reason.value] += 1
        quarantined.append(
            (
                slice_.tenant,
                slice_.date,
                LAYER,
                report.source,
                line.line_number,
                violation.reason.value,
                violation.detail,
                line.text,
                run_id,
            )
        )


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
    quarantined: list[tuple[object, ...]] = []

    def all_rows() -> Iterator[tuple[object, ...]]:
        for path, report in zip(files, reports, strict=True):
            try:
                yield from _file_rows(path, report, slice_, landing, run_id, quarantined)
            except OSError as err:
                raise OSError(
                    f"cannot read landing file {report.source} (line {report.rows_read + 1}) "
                    f"for {slice_}: {err}; fix or remove the file and re-materialize "
                    f"partition {slice_.partition_key}"
                ) from err

    replace_raw_slice(postgres, conn, RAW_FILE_EVENTS, LAYER, slice_, all_rows(), quarantined)
    for report in reports:
        if not report.balanced:
            raise LoadInvariantError(
                f"{report.source} for {slice_}: read {report.rows_read} rows but loaded "
                f"{report.rows_loaded} and quarantined {report.rows_quarantined}"
            )
    return SliceReport(slice=slice_, files=reports)
