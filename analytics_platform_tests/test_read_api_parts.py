"""The read API's pure parts: cursors, the SQL each endpoint sends, the answer cache, settings."""

from __future__ import annotations

import datetime as dt

import pytest

from analytics_platform.api.cache import ResponseCache
from analytics_platform.api.queries import (
    InvalidCursor,
    SessionFilter,
    SessionPosition,
    daily_metrics_sql,
    decode_cursor,
    encode_cursor,
    sessions_sql,
)
from analytics_platform.settings import (
    SettingsError,
    api_clickhouse_wait_seconds,
    api_response_cache_bytes,
)

FILTERS = SessionFilter(dt.date(2026, 11, 1), dt.date(2026, 11, 30), None, "paid search")


def test_a_cursor_round_trips_and_refuses_tampering_and_other_filters():
    position = SessionPosition("2026-11-02 10:00:00.123", "s_acme_1")
    cursor = encode_cursor(position, FILTERS)
    assert decode_cursor(cursor, FILTERS) == position
    other = SessionFilter(FILTERS.start, FILTERS.end, None, None)
    with pytest.raises(InvalidCursor, match="other filters"):
        decode_cursor(cursor, other)
    for broken in ("", "x", cursor[:-3], "W10", "WyJhIiwgMSwgMl0"):
        with pytest.raises(InvalidCursor):
            decode_cursor(broken, FILTERS)


def test_every_query_names_the_tenants_database_and_quotes_values():
    sql = daily_metrics_sql("tenant_acme", dt.date(2026, 11, 1), dt.date(2026, 11, 2), "a'b")
    assert "FROM `tenant_acme`.`fct_daily_metrics`" in sql
    assert "site_id = 'a\\'b'" in sql
    after = SessionPosition("2026-11-02 10:00:00.123", "x'); DROP TABLE t; --")
    page = sessions_sql("tenant_acme", FILTERS, after, 100)
    assert "FROM `tenant_acme`.`fct_sessions`" in page
    assert "'x\\'); DROP TABLE t; --'" in page
    assert page.endswith("ORDER BY session_start, session_id LIMIT 101")


def test_the_answer_cache_keeps_recent_bodies_within_its_budget():
    cache = ResponseCache(max_bytes=100)
    cache.put("a", b"x" * 20)
    cache.put("b", b"y" * 20)
    assert cache.get("a") == b"x" * 20  # now the most recently used
    for key in "cdef":
        cache.put(key, b"z" * 20)
    assert cache.get("a") is not None and cache.get("b") is None
    cache.put("big", b"w" * 30)  # over a quarter of the budget: not kept
    assert cache.get("big") is None
    assert ResponseCache(0).get("a") is None


def test_api_settings_have_defaults_and_refuse_nonsense():
    assert api_clickhouse_wait_seconds({}) == 1.0
    assert api_clickhouse_wait_seconds({"API_CLICKHOUSE_WAIT_SECONDS": "0.25"}) == 0.25
    assert api_response_cache_bytes({}) == 64 << 20
    assert api_response_cache_bytes({"API_RESPONSE_CACHE_MB": "0"}) == 0
    for bad in ("-1", "x", "61"):
        with pytest.raises(SettingsError, match="API_CLICKHOUSE_WAIT_SECONDS"):
            api_clickhouse_wait_seconds({"API_CLICKHOUSE_WAIT_SECONDS": bad})
    with pytest.raises(SettingsError, match="API_RESPONSE_CACHE_MB"):
        api_response_cache_bytes({"API_RESPONSE_CACHE_MB": "lots"})
