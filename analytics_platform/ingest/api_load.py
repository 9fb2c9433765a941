"""Loading a tenant-day of a tenant's HTTP event API: pages -> `raw.api_events`, bad events
-> `platform.quarantine`, progress -> `platform.api_watermarks`.

Each tenant-day loads in one transaction with its quarantine and its watermark, so a
run that fails half-way (retries used up) leaves the day, and its watermark, as they were.
The asset (assets/api.py) only groups the run's tenant-days and reports.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import psycopg

from analytics_platform.ingest.contract import CONTRACT_COLUMNS, ContractViolation, to_canonical
from analytics_platform.ingest.load import RAW_COLUMNS, LoadInvariantError
from analytics_platform.ingest.quarantine import QuarantineRecord, write_quarantine
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.event_api import ApiPage, EventApiClient
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.registry import Tenant, TenantNotFound, get_tenant

RAW_API_EVENTS = "raw.api_events"
LAYER = "raw_api_events"
OCCURRED_AT = CONTRACT_COLUMNS.index("occurred_at")
PROPERTIES = CONTRACT_COLUMNS.index("properties")


@dataclass
class DayReport:
    """What one tenant-day's load did."""

    slice: TenantDay
    mode: str  # "replace" (from the start of the day) or "resume" (after the watermark)
    note: str = ""
    pages: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    fields: dict[str, set[str]] = field(default_factory=dict)  # page -> keys of its properties
    complete: bool = True
    fine_pages: set[str] = field(default_factory=set)  # URLs of the pages read without fault
    pages_resolved: int = 0  # earlier page quarantine records this run fetched fine
    resume_cursor: str | None = None
    last_event_at: dt.datetime | None = None


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def _page_rows(
    pages: Iterable[ApiPage],
    report: DayReport,
    run_id: str,
    quarantined: list[QuarantineRecord],
    sites: frozenset[str] | None,
) -> Iterator[tuple[object, ...]]:
    """Contract rows of every event in `pages`; the rest goes to `quarantined`."""
    slice_ = report.slice
    window_start, window_end = day_bounds(slice_.date)

    def quarantine(source: str, line: int, violation: ContractViolation, text: str) -> None:
        report.rows_quarantined += 1
        report.reasons[violation.reason.value] += 1
        quarantined.append(
            QuarantineRecord.of(
                violation,
                tenant_id=slice_.tenant,
                partition_date=slice_.date,
                layer=LAYER,
                source=source,
                source_line=line,
                raw_text=text,
                run_id=run_id,
            )
        )

    for page in pages:
        report.pages += 1
        if page.violation is not None:
            # Line 0 stands for the whole page; the next run asks for this page again.
            report.rows_read += 1
            report.complete = False
            quarantine(page.source, 0, page.violation, page.text)
            return
        report.fine_pages.add(page.source)
        for line, event in enumerate(page.events, start=1):
            report.rows_read += 1
            try:
                values = to_canonical(
                    event,
                    tenant=slice_.tenant,
                    window_start=window_start,
                    window_end=window_end,
                    sites=sites,
                )
            except ContractViolation as err:
                quarantine(page.source, line, err, json.dumps(event, default=str))
                continue
            report.rows_loaded += 1
            report.fields.setdefault(page.source, set()).update(json.loads(values[PROPERTIES]))
            occurred_at = values[OCCURRED_AT]
            if report.last_event_at is None or occurred_at > report.last_event_at:
                report.last_event_at = occurred_at
            yield (*values, slice_.date, page.source, line, run_id)
        report.resume_cursor = page.next_cursor


def _watermark(conn: psycopg.Connection, slice_: TenantDay) -> tuple | None:
    return conn.execute(
        "SELECT resume_cursor, last_event_at, rows_loaded FROM platform.api_watermarks "
        "WHERE tenant_id = %s AND partition_date = %s FOR UPDATE",
        (slice_.tenant, slice_.date),
    ).fetchone()


def _write_watermark(
    conn: psycopg.Connection, report: DayReport, rows_before: int, run_id: str
) -> None:
    conn.execute(
        """
        INSERT INTO platform.api_watermarks (tenant_id, partition_date, resume_cursor,
            last_event_at, complete, pages, rows_loaded, run_id)
        VALUES (%(tenant)s, %(day)s, %(cursor)s, %(last)s, %(complete)s, %(pages)s,
            %(rows)s, %(run_id)s)
        ON CONFLICT (tenant_id, partition_date) DO UPDATE SET
            resume_cursor = excluded.resume_cursor,
            last_event_at = excluded.last_event_at,
            complete = excluded.complete,
            pages = excluded.pages,
            rows_loaded = excluded.rows_loaded,
            run_id = excluded.run_id,
            updated_at = now()
        """,
        {
            "tenant": report.slice.tenant,
            "day": report.slice.date,
            "cursor": report.resume_cursor,
            "last": report.last_event_at,
            "complete": report.complete,
            "pages": report.pages,
            "rows": rows_before + report.rows_loaded,
            "run_id": run_id,
        },
    )


def _resolve_pages(conn: psycopg.Connection, report: DayReport, run_id: str) -> int:
    """Mark the day's open whole-page quarantine records whose page this run read fine."""
    if not report.fine_pages:
        return 0
    return conn.execute(
        "UPDATE platform.quarantine SET reprocessed_at = now(), "
        "detail = detail || %s WHERE tenant_id = %s AND partition_date = %s AND layer = %s "
        "AND source_line = 0 AND reprocessed_at IS NULL AND source = ANY(%s)",
        (
            f" [resolved: run {run_id} read the page fine]",
            report.slice.tenant,
            report.slice.date,
            LAYER,
            sorted(report.fine_pages),
        ),
    ).rowcount


def _replace_day(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    report: DayReport,
    rows: Iterable[tuple[object, ...]],
    quarantined: list[QuarantineRecord],
    run_id: str,
) -> None:
    """Replace the day's raw rows and open quarantine records; resolved records stay as history."""
    slice_ = report.slice
    postgres.delete_slice(conn, RAW_API_EVENTS, slice_.tenant, [slice_.date])
    postgres.copy_rows(conn, RAW_API_EVENTS, RAW_COLUMNS, rows)  # fills `quarantined`
    report.pages_resolved = _resolve_pages(conn, report, run_id)
    conn.execute(
        "DELETE FROM platform.quarantine WHERE tenant_id = %s AND partition_date = %s "
        "AND layer = %s AND reprocessed_at IS NULL",
        (slice_.tenant, slice_.date, LAYER),
    )
    write_quarantine(postgres, conn, quarantined)


def load_api_day(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    client: EventApiClient,
    slice_: TenantDay,
    run_id: str,
    *,
    full_refresh: bool = False,
    sites: frozenset[str] | None = None,
) -> DayReport:
    """Read a tenant-day's export into raw.api_events, inside `conn`'s transaction.

    Resumes after the day's watermark when it has a cursor and raw still holds the rows
    it counted; otherwise reads the day from its start and replaces its rows and quarantine.
    Whole-page quarantine records of earlier runs whose page now reads fine are marked
    resolved (`reprocessed_at`). `sites`: the tenant's sites (`tenant_sites`; None: its
    default site only), read once per run by the caller. Any EventApiError (a cycle,
    the page cap, a deadline) raises before the caller commits, so the day stays as it was.
    """
    # The same lock replace_slice takes: concurrent loads of the day queue here.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))",
        (f"{RAW_API_EVENTS}|{slice_.tenant}|{slice_.date}",),
    )
    watermark = None if full_refresh else _watermark(conn, slice_)
    report = DayReport(slice=slice_, mode="replace")
    rows_before = 0
    if watermark is not None and watermark[0] is not None:
        held = conn.execute(
            "SELECT count(*) FROM raw.api_events WHERE tenant_id = %s AND _partition_date = %s",
            (slice_.tenant, slice_.date),
        ).fetchone()[0]
        if held == watermark[2]:
            report.mode, rows_before = "resume", held
            report.resume_cursor = watermark[0]
            report.last_event_at = watermark[1]
        else:
            report.note = (
                f"raw.api_events holds {held} rows for the day but its watermark counted "
                f"{watermark[2]} (retention or deprovisioning?): reloading the whole day"
            )
    start, end = day_bounds(slice_.date)
    pages = client.export(start, end, cursor=report.resume_cursor)
    quarantined: list[QuarantineRecord] = []
    rows = _page_rows(pages, report, run_id, quarantined, sites)
    if report.mode == "resume":
        postgres.copy_rows(conn, RAW_API_EVENTS, RAW_COLUMNS, rows)
        report.pages_resolved = _resolve_pages(conn, report, run_id)
        write_quarantine(postgres, conn, quarantined)
    else:
        _replace_day(postgres, conn, report, rows, quarantined, run_id)
    if report.rows_read != report.rows_loaded + report.rows_quarantined:
        raise LoadInvariantError(
            f"{LAYER} for {slice_}: read {report.rows_read} rows but loaded "
            f"{report.rows_loaded} and quarantined {report.rows_quarantined}"
        )
    _write_watermark(conn, report, rows_before, run_id)
    return report


def api_tenant(postgres: PostgresResource, tenant_id: str) -> tuple[Tenant | None, str]:
    """The tenant when it has an API, else None and why not."""
    try:
        tenant = get_tenant(postgres, tenant_id)
    except TenantNotFound:
        return None, "not registered in platform.tenants"
    if not tenant.has_api:
        return None, "no API configured (api_base_url is empty)"
    return tenant, ""
