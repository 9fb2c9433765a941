"""Replaying quarantined landing rows after the contract or a setting changed.

Each unreplayed quarantine row of the tenant is parsed again from its original
text (a CSV row with its file's header) and checked against the contract as it
is now. Rows that pass are copied into `raw.file_events` with their original
file and line, and marked `reprocessed_at` in the same transaction, so a row
is never loaded twice. Rows that still fail stay in quarantine untouched.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from analytics_platform.ingest.bounded import CORRUPT_STREAM_ERRORS, FileFaultError, read_line
from analytics_platform.ingest.contract import ContractViolation, to_canonical
from analytics_platform.ingest.load import LAYER, RAW_COLUMNS, RAW_FILE_EVENTS
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.ids import validate_tenant_id
from analytics_platform.tenants.sites import tenant_sites


@dataclass
class ReprocessReport:
    tenant: str
    examined: int = 0
    moved: int = 0
    still_failing: Counter[str] = field(default_factory=Counter)
    days: set[dt.date] = field(default_factory=set)


def _csv_header(landing: LandingZoneResource, source: str) -> list[str] | None:
    """The header of a CSV landing file, if the file is still there (and inside the zone)."""
    try:
        with landing.open_file(Path(landing.root) / source) as stream:
            first = read_line(stream, 1, landing.max_line_bytes)
    except (OSError, FileFaultError, *CORRUPT_STREAM_ERRORS):  # gone, refused or broken
        return None
    if not isinstance(first, bytes):
        return None
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([text]))] if text else None


def _record(text: str, source: str, header: list[str] | None) -> object:
    """The record a quarantined line holds, parsed the way its file's format is."""
    if source.lower().removesuffix(".gz").endswith(".csv"):
        if header is None:
            raise ValueError("the CSV file is gone, so its header is unknown")
        fields = next(csv.reader([text]))
        if len(fields) != len(header):
            raise ValueError("the row still has the wrong number of fields")
        return {name: value for name, value in zip(header, fields, strict=True) if value != ""}
    return json.loads(text)


def replay_quarantine(
    postgres: PostgresResource,
    landing: LandingZoneResource,
    tenant: str,
    run_id: str,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> ReprocessReport:
    """Move the tenant's quarantined landing rows that now pass into raw; see module doc."""
    validate_tenant_id(tenant)
    report = ReprocessReport(tenant)
    headers: dict[str, list[str] | None] = {}
    sites = tenant_sites(postgres, tenant)  # as they are now: a site added since counts
    with postgres.transaction() as conn:
        rows = conn.execute(
            "SELECT quarantine_id, partition_date, source, source_line, raw_text "
            "FROM platform.quarantine WHERE tenant_id = %s AND layer = %s "
            "AND reprocessed_at IS NULL AND partition_date IS NOT NULL "
            # Not whole lines: files quarantined whole, and lines kept as a prefix only.
            "AND source_line > 0 AND reason <> 'oversized_line' "
            "AND partition_date BETWEEN coalesce(%s, '-infinity'::date) "
            "AND coalesce(%s, 'infinity'::date) "
            "ORDER BY partition_date, source, source_line FOR UPDATE SKIP LOCKED",
            (tenant, LAYER, start, end),
        ).fetchall()
        moved_ids, loaded = [], []
        for quarantine_id, day, source, line, text in rows:
            report.examined += 1
            if source not in headers:
                headers[source] = _csv_header(landing, source)
            window_start, window_end = landing.window(day)
            try:
                record = _record(text, source, headers[source])
                values = to_canonical(
                    record,
                    tenant=tenant,
                    window_start=window_start,
                    window_end=window_end,
                    sites=sites,
                )
            except ContractViolation as err:
                report.still_failing[err.reason.value] += 1
                continue
            except ValueError:  # not JSON / not a CSV row of its file: nothing new to say
                report.still_failing["unparseable"] += 1
                continue
            loaded.append((*values, day, source, line, run_id))
            moved_ids.append(quarantine_id)
            report.days.add(day)
        if loaded:
            # Belt and braces: a row already in raw for the same file line is replaced.
            conn.execute(
                f"DELETE FROM {RAW_FILE_EVENTS} WHERE tenant_id = %s "
                "AND (_partition_date, _source, _source_line) IN "
                "(SELECT * FROM unnest(%s::date[], %s::text[], %s::int[]))",
                (tenant, [r[-4] for r in loaded], [r[-3] for r in loaded], [r[-2] for r in loaded]),
            )
            postgres.copy_rows(conn, RAW_FILE_EVENTS, RAW_COLUMNS, loaded)
            conn.execute(
                "UPDATE platform.quarantine SET reprocessed_at = now(), "
                "detail = detail || %s WHERE quarantine_id = ANY(%s)",
                (f" [reprocessed into raw by run {run_id}]", moved_ids),
            )
        report.moved = len(loaded)
    return report
