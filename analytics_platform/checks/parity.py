"""Parity: counts that must agree between layers, per tenant-day, each in one query.

Each function returns an `Outcome` (see validation.py): the rules that disagree,
on how many tenant-days, and samples with the expected and actual numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from analytics_platform.checks.slices import slice_table
from analytics_platform.checks.validation import MAX_SAMPLES, Outcome
from analytics_platform.partitions import TenantDay

# Rule -> (expected column, actual column) of the queries below.
STAGING_RULES = {
    "staged_events_match_raw_after_dedup": ("raw_distinct_unstaged_elsewhere", "staged"),
}
MARTS_RULES = {
    "daily_events_match_staged": ("staged_events", "daily_events"),
    # Per site: a visitor of two sites that day is one visitor of each.
    "daily_visitors_match_distinct_staged_visitors": ("staged_visitors", "daily_visitors"),
    "daily_page_views_match_staged": ("staged_page_views", "daily_page_views"),
    "daily_sessions_match_fct_sessions": ("sessions_started", "daily_sessions"),
}
CHANNEL_RULES = {
    "channel_sessions_sum_to_fct_sessions": ("sessions_started", "channel_sessions"),
}

STAGING_PARITY = """
WITH raw AS (
    -- Distinct events the raw tables hold for each tenant-day (both sources).
    SELECT tenant_id, _partition_date AS day, event_id
    FROM raw.file_events JOIN {slices} ON tenant_id = s.tenant AND _partition_date = s.day
    UNION
    SELECT tenant_id, _partition_date, event_id
    FROM raw.api_events JOIN {slices} ON tenant_id = s.tenant AND _partition_date = s.day
),
expected AS (
    -- An event already staged on an earlier day stays there.
    SELECT r.tenant_id, r.day, count(*) AS n
    FROM raw AS r
    WHERE NOT EXISTS (
        SELECT 1 FROM staging.stg_events AS e
        WHERE e.tenant_id = r.tenant_id AND e.event_id = r.event_id AND e.event_date < r.day
    )
    GROUP BY r.tenant_id, r.day
),
staged AS (
    SELECT tenant_id, event_date AS day, count(*) AS n
    FROM staging.stg_events JOIN {slices} ON tenant_id = s.tenant AND event_date = s.day
    GROUP BY tenant_id, event_date
)
SELECT s.tenant, s.day,
       coalesce(expected.n, 0) AS raw_distinct_unstaged_elsewhere,
       coalesce(staged.n, 0) AS staged
FROM {slices}
LEFT JOIN expected ON expected.tenant_id = s.tenant AND expected.day = s.day
LEFT JOIN staged ON staged.tenant_id = s.tenant AND staged.day = s.day
"""

MARTS_PARITY = """
WITH staged AS (
    SELECT tenant_id, event_date AS day, count(*) AS events,
           count(DISTINCT (visitor_id, site_id)) AS visitors,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views
    FROM staging.stg_events JOIN {slices} ON tenant_id = s.tenant AND event_date = s.day
    GROUP BY tenant_id, event_date
),
daily AS (
    -- fct_daily_metrics has a row per site: its tenant-day totals are sums over sites.
    SELECT tenant_id, event_date AS day, sum(events) AS events, sum(visitors) AS visitors,
           sum(page_views) AS page_views, sum(sessions) AS sessions
    FROM marts.fct_daily_metrics JOIN {slices} ON tenant_id = s.tenant AND event_date = s.day
    GROUP BY tenant_id, event_date
),
sessions AS (
    SELECT tenant_id, session_date AS day, count(*) AS n
    FROM marts.fct_sessions JOIN {slices} ON tenant_id = s.tenant AND session_date = s.day
    GROUP BY tenant_id, session_date
)
SELECT s.tenant, s.day,
       coalesce(staged.events, 0) AS staged_events, coalesce(d.events, 0) AS daily_events,
       coalesce(staged.visitors, 0) AS staged_visitors,
       coalesce(d.visitors, 0) AS daily_visitors,
       coalesce(staged.page_views, 0) AS staged_page_views,
       coalesce(d.page_views, 0) AS daily_page_views,
       coalesce(sessions.n, 0) AS sessions_started, coalesce(d.sessions, 0) AS daily_sessions
FROM {slices}
LEFT JOIN staged ON staged.tenant_id = s.tenant AND staged.day = s.day
LEFT JOIN daily AS d ON d.tenant_id = s.tenant AND d.day = s.day
LEFT JOIN sessions ON sessions.tenant_id = s.tenant AND sessions.day = s.day
"""

CHANNEL_PARITY = """
WITH sessions AS (
    SELECT tenant_id, session_date AS day, count(*) AS n
    FROM marts.fct_sessions JOIN {slices} ON tenant_id = s.tenant AND session_date = s.day
    GROUP BY tenant_id, session_date
),
channels AS (
    SELECT tenant_id, event_date AS day, sum(sessions) AS n
    FROM marts.fct_channel_daily JOIN {slices} ON tenant_id = s.tenant AND event_date = s.day
    GROUP BY tenant_id, event_date
)
SELECT s.tenant, s.day,
       coalesce(sessions.n, 0) AS sessions_started, coalesce(channels.n, 0) AS channel_sessions
FROM {slices}
LEFT JOIN sessions ON sessions.tenant_id = s.tenant AND sessions.day = s.day
LEFT JOIN channels ON channels.tenant_id = s.tenant AND channels.day = s.day
"""


def compare(
    conn: psycopg.Connection,
    template: str,
    rules: dict[str, tuple[str, str]],
    slices: Sequence[TenantDay],
) -> Outcome:
    """Run a parity query for the run's tenant-days and report every rule that disagrees."""
    source, params = slice_table(slices)
    query = sql.SQL(template).format(slices=source)
    # The FROM item appears several times; each needs its own two parameters.
    occurrences = template.count("{slices}")
    with conn.cursor() as cur:
        cur.execute(query, params * occurrences)
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    failed: dict[str, int] = {}
    samples: list[dict[str, object]] = []
    for rule, (expected, actual) in rules.items():
        broken = [row for row in rows if row[expected] != row[actual]]
        if broken:
            failed[rule] = len(broken)
            samples += [
                {
                    "rule": rule,
                    "tenant_id": row["tenant"],
                    "day": row["day"].isoformat(),
                    "expected": int(row[expected]),
                    "actual": int(row[actual]),
                }
                for row in broken[:MAX_SAMPLES]
            ]
    return Outcome(rows=len(rows), failed_rows_by_rule=failed, samples=samples[:MAX_SAMPLES])


def staging_parity(conn: psycopg.Connection, slices: Sequence[TenantDay]) -> Outcome:
    return compare(conn, STAGING_PARITY, STAGING_RULES, slices)


def marts_parity(conn: psycopg.Connection, slices: Sequence[TenantDay]) -> Outcome:
    return compare(conn, MARTS_PARITY, MARTS_RULES, slices)


def channel_parity(conn: psycopg.Connection, slices: Sequence[TenantDay]) -> Outcome:
    return compare(conn, CHANNEL_PARITY, CHANNEL_RULES, slices)


INGEST_PARITY = """
SELECT s.tenant, s.day,
       (SELECT count(*) FROM {table} AS r
        WHERE r.tenant_id = s.tenant AND r._partition_date = s.day) AS loaded,
       (SELECT count(*) FROM platform.quarantine AS q
        WHERE q.tenant_id = s.tenant AND q.partition_date = s.day AND q.layer = %s) AS quarantined
FROM {slices}
"""


def ingest_parity(
    conn: psycopg.Connection, table: str, layer: str, rows_read: dict[TenantDay, int]
) -> Outcome:
    """Rows read from the files = rows in raw + rows in quarantine, per tenant-day, as stored."""
    slices = sorted(rows_read)
    source, params = slice_table(slices)
    query = sql.SQL(INGEST_PARITY).format(table=sql.Identifier(*table.split(".")), slices=source)
    rows = conn.execute(query, [layer, *params]).fetchall()
    broken = [
        (tenant, day, rows_read[TenantDay(tenant, day)], loaded, quarantined)
        for tenant, day, loaded, quarantined in rows
        if rows_read[TenantDay(tenant, day)] != loaded + quarantined
    ]
    rule = "rows_read_equal_loaded_plus_quarantined"
    return Outcome(
        rows=len(rows),
        failed_rows_by_rule={rule: len(broken)} if broken else {},
        samples=[
            {
                "rule": rule,
                "tenant_id": tenant,
                "day": day.isoformat(),
                "read": read,
                "loaded": loaded,
                "quarantined": quarantined,
            }
            for tenant, day, read, loaded, quarantined in broken[:MAX_SAMPLES]
        ],
    )
