"""The SQL of each read endpoint: pure functions of the tenant's database and checked parameters.

The same text goes to embedded chDB and to a ClickHouse server. Every table is
qualified with the database of the key's tenant (`database_for`), which no
request parameter can name; values enter as quoted literals after the app has
validated them (dates, ids matching their patterns), never as SQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from analytics_platform.explore.sql_guard import sql_string
from analytics_platform.resources.clickhouse import quote_identifier

DAILY_COLUMNS = (
    "event_date, site_id, visitors, new_visitors, returning_visitors, identified_users, "
    "sessions, page_views, events, bounce_rate, average_session_seconds, conversions, "
    "conversion_rate, revenue"
)
CHANNEL_COLUMNS = "event_date, channel, sessions, visitors, conversions, conversion_rate, revenue"
FUNNEL_COLUMNS = (
    "event_date, step_number, step_name, sessions, visitors, conversion_from_previous, "
    "conversion_from_first"
)
EXPERIMENT_COLUMNS = (
    "experiment_id, variant, is_control, exposed_visitors, converters, conversion_rate, "
    "switched_visitors, first_exposed_at, uplift, z_score, p_value"
)
SESSION_COLUMNS = (
    "session_id, session_date, site_id, visitor_id, user_id, session_start, session_end, "
    "duration_seconds, page_views, events, landing_path, exit_path, referrer, utm_source, "
    "utm_medium, utm_campaign, channel, is_bounce, converted, revenue"
)
VISITOR_COLUMNS = (
    "visitor_id, first_seen_at, last_seen_at, first_touch_channel, first_touch_utm_source, "
    "first_touch_utm_medium, first_touch_utm_campaign, sessions, revenue, latest_user_id"
)


def table(database: str, name: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(name)}"


def _day(value: dt.date) -> str:
    return sql_string(value.isoformat())


def _and(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "1"


def table_uuid_sql(database: str, name: str) -> str:
    """The table's uuid (no row: the table does not exist); a recreated table is a new one."""
    return (
        "SELECT toString(uuid) AS table_uuid FROM system.tables "
        f"WHERE database = {sql_string(database)} AND name = {sql_string(name)}"
    )


def fingerprint_sql(database: str, name: str) -> str:
    """What identifies the table's served contents, with its uuid: a digest of its active
    parts (every swap and merge writes new ones) and when the newest was written.
    Metadata only: no column is read. Two queries, not one with a scalar subquery on
    system.tables, which costs ten times more."""
    return (
        "SELECT toString(groupBitXor(cityHash64(name))) AS parts, count() AS part_count, "
        "toString(toTimeZone(max(modification_time), 'UTC')) AS modified FROM system.parts "
        f"WHERE database = {sql_string(database)} AND table = {sql_string(name)} AND active"
    )


def daily_metrics_sql(database: str, start: dt.date, end: dt.date, site: str | None) -> str:
    conditions = [f"event_date BETWEEN {_day(start)} AND {_day(end)}"]
    if site is not None:
        conditions.append(f"site_id = {sql_string(site)}")
    return (
        f"SELECT {DAILY_COLUMNS} FROM {table(database, 'fct_daily_metrics')} "
        f"WHERE {_and(conditions)} ORDER BY event_date, site_id"
    )


def channels_sql(database: str, start: dt.date, end: dt.date, channel: str | None) -> str:
    conditions = [f"event_date BETWEEN {_day(start)} AND {_day(end)}"]
    if channel is not None:
        conditions.append(f"channel = {sql_string(channel)}")
    return (
        f"SELECT {CHANNEL_COLUMNS} FROM {table(database, 'fct_channel_daily')} "
        f"WHERE {_and(conditions)} ORDER BY event_date, channel"
    )


def funnels_sql(database: str, start: dt.date, end: dt.date) -> str:
    return (
        f"SELECT {FUNNEL_COLUMNS} FROM {table(database, 'fct_funnel_daily')} "
        f"WHERE event_date BETWEEN {_day(start)} AND {_day(end)} ORDER BY event_date, step_number"
    )


def experiments_sql(database: str, experiment_id: str | None) -> str:
    where = "1" if experiment_id is None else f"experiment_id = {sql_string(experiment_id)}"
    return (
        f"SELECT {EXPERIMENT_COLUMNS} FROM {table(database, 'fct_experiment_results')} "
        f"WHERE {where} ORDER BY experiment_id, variant"
    )


def visitor_sql(database: str, visitor_id: str) -> str:
    return (
        f"SELECT {VISITOR_COLUMNS} FROM {table(database, 'dim_visitors')} "
        f"WHERE visitor_id = {sql_string(visitor_id)} LIMIT 1"
    )


@dataclass(frozen=True)
class SessionFilter:
    start: dt.date
    end: dt.date
    site: str | None
    channel: str | None

    def digest(self) -> str:
        """Binds a cursor to the filters it was made with."""
        text = json.dumps([str(self.start), str(self.end), self.site, self.channel])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SessionPosition:
    """The last row of a page: the next page starts strictly after it."""

    session_start: str  # 'YYYY-MM-DD HH:MM:SS.fff' (UTC), as the column holds it
    session_id: str


class InvalidCursor(ValueError):
    pass


def encode_cursor(position: SessionPosition, filters: SessionFilter) -> str:
    """Opaque to clients: url-safe base64 of the position and the filters' digest."""
    raw = json.dumps([position.session_start, position.session_id, filters.digest()])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, filters: SessionFilter) -> SessionPosition:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        start, session_id, digest = json.loads(base64.urlsafe_b64decode(padded.encode()))
        dt.datetime.strptime(start, "%Y-%m-%d %H:%M:%S.%f")
        if not isinstance(session_id, str) or len(session_id) > 512:
            raise ValueError(session_id)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise InvalidCursor("the cursor is not one this API returned") from err
    if digest != filters.digest():
        raise InvalidCursor(
            "the cursor belongs to other filters: send the same from, to, site and channel "
            "as the request that returned it"
        )
    return SessionPosition(start, session_id)


def sessions_sql(
    database: str, filters: SessionFilter, after: SessionPosition | None, limit: int
) -> str:
    """One page in (session_start, session_id) order, `limit + 1` rows to tell if more follow.

    Keyset pagination: the next page starts after the last row's key, so rows
    served between two pages (a new day, a day served again) can neither push a
    row onto two pages nor between them.
    """
    conditions = [f"session_date BETWEEN {_day(filters.start)} AND {_day(filters.end)}"]
    if filters.site is not None:
        conditions.append(f"site_id = {sql_string(filters.site)}")
    if filters.channel is not None:
        conditions.append(f"channel = {sql_string(filters.channel)}")
    if after is not None:
        conditions.append(
            f"(session_start, session_id) > (toDateTime64({sql_string(after.session_start)}, 3, "
            f"'UTC'), {sql_string(after.session_id)})"
        )
    return (
        f"SELECT {SESSION_COLUMNS} FROM {table(database, 'fct_sessions')} "
        f"WHERE {_and(conditions)} ORDER BY session_start, session_id LIMIT {int(limit) + 1}"
    )
