"""Raw layer from the tenants' HTTP event APIs: pages -> `raw.api_events`, bad events ->
`platform.quarantine`, progress -> `platform.api_watermarks`.

Each tenant-day loads in one transaction with its quarantine and its watermark, so a
run that fails half-way (retries used up) leaves the day, and its watermark, as they were.
"""

import datetime as dt
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import psycopg
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from analytics_platform.assets.raw import raw_table_schema
from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.ingest.contract import CONTRACT_COLUMNS, ContractViolation, to_canonical
from analytics_platform.ingest.copy_text import quarantine_text
from analytics_platform.ingest.drift import record_new_fields
from analytics_platform.ingest.load import (
    QUARANTINE,
    QUARANTINE_COLUMNS,
    RAW_COLUMNS,
    LoadInvariantError,
)
from analytics_platform.partitions import TenantDay, tenant_day, tenant_days
from analytics_platform.resources.event_api import ApiPage, EventApiClient, EventApiResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.registry import Tenant, TenantNotFound, get_tenant

RAW_API_EVENTS = "raw.api_events"
LAYER = "raw_api_events"
OCCURRED_AT = CONTRACT_COLUMNS.index("occurred_at")
PROPERTIES = CONTRACT_COLUMNS.index("properties")

API_SCHEMA = raw_table_schema(
    tenant="Tenant whose API served the event",
    partition_date="Day the export was asked for",
    source="URL of the page the event came in",
    line="Position of the event in its page",
)


class ApiLoadConfig(Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Ignore the watermarks: read each tenant-day's export from its start and replace "
            "what raw.api_events and the quarantine hold for it."
        ),
    )


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
    quarantined: list[tuple[object, ...]],
) -> Iterator[tuple[object, ...]]:
    """Contract rows of every event in `pages`; the rest goes to `quarantined`."""
    slice_ = report.slice
    window_start, window_end = day_bounds(slice_.date)

    def quarantine(source: str, line: int, violation: ContractViolation, text: str) -> None:
        report.rows_quarantined += 1
        report.reasons[violation.reason.value] += 1
        quarantined.append(
            (
                slice_.tenant,
                slice_.date,
                LAYER,
                source,
                line,
                violation.reason.value,
                violation.detail,
                quarantine_text(text),
                run_id,
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
                    event, tenant=slice_.tenant, window_start=window_start, window_end=window_end
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
    quarantined: list[tuple[object, ...]],
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
    postgres.copy_rows(conn, QUARANTINE, QUARANTINE_COLUMNS, quarantined)


def load_api_day(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    client: EventApiClient,
    slice_: TenantDay,
    run_id: str,
    *,
    full_refresh: bool = False,
) -> DayReport:
    """Read a tenant-day's export into raw.api_events, inside `conn`'s transaction.

    Resumes after the day's watermark when it has a cursor and raw still holds the rows
    it counted; otherwise reads the day from its start and replaces its rows and quarantine.
    Whole-page quarantine records of earlier runs whose page now reads fine are marked
    resolved (`reprocessed_at`). Any EventApiError (a cycle, the page cap, a deadline)
    raises before the caller commits, so the day stays as it was.
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
    quarantined: list[tuple[object, ...]] = []
    rows = _page_rows(pages, report, run_id, quarantined)
    if report.mode == "resume":
        postgres.copy_rows(conn, RAW_API_EVENTS, RAW_COLUMNS, rows)
        report.pages_resolved = _resolve_pages(conn, report, run_id)
        postgres.copy_rows(conn, QUARANTINE, QUARANTINE_COLUMNS, quarantined)
    else:
        _replace_day(postgres, conn, report, rows, quarantined, run_id)
    if report.rows_read != report.rows_loaded + report.rows_quarantined:
        raise LoadInvariantError(
            f"{LAYER} for {slice_}: read {report.rows_read} rows but loaded "
            f"{report.rows_loaded} and quarantined {report.rows_quarantined}"
        )
    _write_watermark(conn, report, rows_before, run_id)
    return report


def _api_tenant(postgres: PostgresResource, tenant_id: str) -> tuple[Tenant | None, str]:
    """The tenant when it has an API, else None and why not."""
    try:
        tenant = get_tenant(postgres, tenant_id)
    except TenantNotFound:
        return None, "not registered in platform.tenants"
    if not tenant.has_api:
        return None, "no API configured (api_base_url is empty)"
    return tenant, ""


@asset(
    partitions_def=tenant_day,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"python", "postgres"},
    owners=["team:data-platform"],
    tags={"layer": "raw"},
    freshness_policy=LAYER_FRESHNESS["raw"],
    metadata={"dagster/table_name": RAW_API_EVENTS, "dagster/column_schema": API_SCHEMA},
    description=(
        "Events from the tenant's HTTP export API (`GET <api_base_url>/events` for the day, "
        "cursor pagination, retries with backoff and `Retry-After`), mapped to the event "
        "contract into `raw.api_events`. Events that break the contract, and pages that are "
        "not valid JSON, go to `platform.quarantine`. Each tenant-day commits with its "
        "watermark (`platform.api_watermarks`): the next run resumes after it. Tenants "
        "without an API are skipped."
    ),
)
def raw_api_events(
    context: AssetExecutionContext,
    config: ApiLoadConfig,
    postgres: PostgresResource,
    event_api: EventApiResource,
) -> MaterializeResult:
    postgres.ensure_warehouse()
    run_id = context.run.run_id
    reports: list[DayReport] = []
    skipped: dict[str, str] = {}
    new_fields: dict[str, list[str]] = {}
    for tenant_id, group in itertools.groupby(
        tenant_days(context.partition_keys), key=lambda s: s.tenant
    ):
        slices = list(group)
        tenant, why_not = _api_tenant(postgres, tenant_id)
        if tenant is None:
            context.log.info(f"tenant {tenant_id!r}: {why_not}; skipping its API events")
            skipped.update({s.partition_key: why_not for s in slices})
            continue
        with event_api.client(tenant) as client:
            for slice_ in slices:
                with postgres.transaction() as conn:
                    report = load_api_day(
                        postgres, conn, client, slice_, run_id, full_refresh=config.full_refresh
                    )
                    seen = ((slice_, page, keys) for page, keys in report.fields.items())
                    for name, fields in record_new_fields(conn, seen).items():
                        new_fields.setdefault(name, []).extend(fields)
                reports.append(report)
                if report.note:
                    context.log.warning(f"{slice_}: {report.note}")
                if report.rows_quarantined:
                    context.log.warning(
                        f"{slice_}: {report.rows_quarantined} of {report.rows_read} API rows "
                        f"quarantined ({dict(report.reasons)}); see platform.quarantine"
                    )
                if report.pages_resolved:
                    context.log.info(
                        f"{slice_}: {report.pages_resolved} page(s) quarantined by an earlier "
                        "run read fine now; marked resolved in platform.quarantine"
                    )
                if not report.complete:
                    context.log.warning(
                        f"{slice_}: a malformed page stopped the export after {report.pages} "
                        "pages; the next run asks for that page again"
                    )
    reasons = sum((r.reasons for r in reports), Counter())
    return MaterializeResult(
        metadata={
            **row_count_metadata({r.slice: r.rows_loaded for r in reports}),
            "pages": sum(r.pages for r in reports),
            "rows_read": sum(r.rows_read for r in reports),
            "rows_loaded": sum(r.rows_loaded for r in reports),
            "rows_quarantined": sum(r.rows_quarantined for r in reports),
            "pages_resolved": sum(r.pages_resolved for r in reports),
            "quarantine_reasons": MetadataValue.json(dict(sorted(reasons.items()))),
            "tenant_days": MetadataValue.json(
                {
                    r.slice.partition_key: {
                        "mode": r.mode,
                        "pages": r.pages,
                        "rows_loaded": r.rows_loaded,
                        "complete": r.complete,
                    }
                    for r in reports
                }
            ),
            "skipped": MetadataValue.json(skipped),
            "new_fields": MetadataValue.json(new_fields),
        }
    )
