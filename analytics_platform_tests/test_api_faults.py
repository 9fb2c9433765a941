"""A hostile tenant API (a real HTTP server on 127.0.0.1) against raw_api_events and real
Postgres: every paging and request loop ends, within bounds, and the day is never loaded
twice nor left half-replaced."""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import json
import time
import uuid

import pytest

from analytics_platform.partitions import TenantDay
from analytics_platform.resources.bounded_http import backoff_delay, retry_after_seconds
from analytics_platform.resources.event_api import EventApiError
from analytics_platform.tenants.registry import get_tenant
from analytics_platform_tests import test_api
from analytics_platform_tests.test_api import (
    DAY,
    Drip,
    Reply,
    event_api,
    events,
    failure_message,
    load,
    metadata,
    quarantine_rows,
    raw_rows,
    token_env_for,
    watermark,
)

# The fake API server and its tenant, shared with test_api.py.
event_api_server = test_api.event_api_server
api_tenant = test_api.api_tenant


def page(events_: list[dict], next_cursor: str | None, has_more: bool) -> tuple[int, dict, bytes]:
    body = {"events": events_, "next_cursor": next_cursor, "has_more": has_more}
    return 200, {}, json.dumps(body).encode()


def day_state(postgres, tenant: str) -> tuple:
    """What a user would compare before and after a failed run: rows, quarantine, watermark."""
    return (
        raw_rows(postgres, tenant),
        quarantine_rows(postgres, tenant),
        watermark(postgres, tenant),
    )


def assert_no_duplicates(postgres, tenant: str) -> None:
    with postgres.connect() as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM raw.api_events "
            "WHERE tenant_id = %s AND _partition_date = %s",
            (tenant, DAY),
        ).fetchone()
    assert rows == distinct


def assert_balanced(result) -> None:
    meta = metadata(result)
    assert meta["rows_read"] == meta["rows_loaded"] + meta["rows_quarantined"]


def assert_names_the_day(message: str, tenant: str, cursor: str | None) -> None:
    assert f"tenant {tenant!r}" in message
    assert f"day {DAY}" in message
    assert f"cursor {cursor!r}" in message


@pytest.fixture
def loaded_day(api_tenant, event_api_server, postgres, resources, instance) -> tuple:
    """The day loaded once from a well-behaved API; returns its state."""
    event_api_server.events[DAY.isoformat()] = events(3)
    load(api_tenant, resources, instance)
    event_api_server.seen.clear()
    state = day_state(postgres, api_tenant)
    assert len(state[0]) == 3
    return state


def test_a_cursor_cycle_stops_the_day_and_keeps_the_previous_slice(
    api_tenant, event_api_server, loaded_day, postgres, resources, instance
):
    cycle = {None: ("A", events(2)), "A": ("B", events(1, start=2)), "B": ("A", events(1))}

    def script(params):
        next_cursor, served = cycle[params.get("cursor")]
        return page(served, next_cursor, True)

    event_api_server.script = script

    result = load(api_tenant, resources, instance, full_refresh=True, ok=False)

    assert [s.cursor for s in event_api_server.seen] == [None, "A", "B"]
    message = failure_message(result)
    assert_names_the_day(message, api_tenant, "B")
    assert "next_cursor 'A'" in message and "already sent" in message
    assert day_state(postgres, api_tenant) == loaded_day
    assert_no_duplicates(postgres, api_tenant)


def test_a_fresh_cursor_on_every_page_hits_the_page_cap(
    api_tenant, event_api_server, loaded_day, postgres, resources, instance
):
    event_api_server.script = lambda params: page(events(3), uuid.uuid4().hex, True)

    result = load(api_tenant, resources, instance, event_api(max_pages=5), ok=False)

    seen = event_api_server.seen
    assert len(seen) == 5
    message = failure_message(result)
    assert_names_the_day(message, api_tenant, seen[-1].cursor)
    assert "max_pages (5)" in message
    assert day_state(postgres, api_tenant) == loaded_day
    assert_no_duplicates(postgres, api_tenant)


def test_a_dripping_server_is_cut_off_at_the_request_deadline(
    api_tenant, event_api_server, loaded_day, postgres, resources, instance
):
    body = json.dumps({"events": events(3), "next_cursor": None, "has_more": False}).encode()
    assert len(body) > 60  # at one byte a second, far longer than the deadline
    deadline = 2.0
    api = event_api(request_deadline_seconds=deadline, read_timeout_seconds=10.0)

    # The client alone, timed: one request, given up within the deadline plus slack.
    event_api_server.replies.append(Reply(200, body=Drip(body, interval=1.0)))
    with api.client(get_tenant(postgres, api_tenant)) as client:
        started = time.monotonic()
        with pytest.raises(EventApiError, match="request_deadline_seconds") as raised:
            list(client.export(*_day_bounds()))
        elapsed = time.monotonic() - started
    assert deadline <= elapsed < deadline + 1.5
    assert_names_the_day(str(raised.value), api_tenant, None)
    assert len(event_api_server.seen) == 1  # a stall is not retried

    # The same through a run: it fails and the day stays as it was.
    event_api_server.seen.clear()
    event_api_server.replies.append(Reply(200, body=Drip(body, interval=1.0)))
    result = load(api_tenant, resources, instance, api, full_refresh=True, ok=False)
    assert "request_deadline_seconds (2 s)" in failure_message(result)
    assert len(event_api_server.seen) == 1
    assert day_state(postgres, api_tenant) == loaded_day


def _day_bounds() -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def test_a_page_over_max_page_bytes_fails_the_day(
    api_tenant, event_api_server, loaded_day, postgres, resources, instance
):
    result = load(
        api_tenant, resources, instance, event_api(max_page_bytes=100), full_refresh=True, ok=False
    )

    assert "longer than 100 bytes (max_page_bytes)" in failure_message(result)
    assert len(event_api_server.seen) == 1
    assert day_state(postgres, api_tenant) == loaded_day


def test_flapping_5xx_are_retried_with_backoff_and_the_day_loads_once(
    api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(5)
    flap = [Reply(500), Reply(), Reply(503), Reply(502), Reply(), Reply(504), Reply()]
    event_api_server.replies.extend(flap)

    result = load(api_tenant, resources, instance)

    assert [s.cursor for s in event_api_server.seen] == [None, None, "2", "2", "2", "4", "4"]
    assert metadata(result)["rows_loaded"] == 5
    assert_balanced(result)
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == [f"e{i}" for i in range(5)]
    assert_no_duplicates(postgres, api_tenant)


def test_a_5xx_that_never_ends_uses_its_retries_and_names_the_day(
    api_tenant, event_api_server, loaded_day, postgres, resources, instance
):
    event_api_server.script = lambda params: (503, {}, b"down")
    api = event_api(retries=3, backoff_seconds=0.2, backoff_jitter_seconds=0.0)

    result = load(api_tenant, resources, instance, api, full_refresh=True, ok=False)

    seen = event_api_server.seen
    assert len(seen) == 4  # one try and three retries, no more
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(seen)]
    assert gaps[1] >= 0.4 - 0.05 and gaps[2] >= 0.8 - 0.05  # backoff 0, 0.4, 0.8 s
    message = failure_message(result)
    assert_names_the_day(message, api_tenant, None)
    assert "after 3 retries: HTTP 503" in message
    assert day_state(postgres, api_tenant) == loaded_day


def test_401_fails_at_once_naming_the_token_variable(
    api_tenant, event_api_server, loaded_day, postgres, resources, instance, monkeypatch
):
    monkeypatch.setenv(token_env_for(api_tenant), "not-the-token")

    result = load(api_tenant, resources, instance, full_refresh=True, ok=False)

    assert len(event_api_server.seen) == 1  # no retry storm
    message = failure_message(result)
    assert_names_the_day(message, api_tenant, None)
    assert "HTTP 401" in message and f"${token_env_for(api_tenant)}" in message
    assert "not-the-token" not in message
    assert day_state(postgres, api_tenant) == loaded_day


@pytest.mark.parametrize("form", ["seconds", "http_date"])
def test_a_huge_retry_after_fails_naming_it_instead_of_sleeping(
    form, api_tenant, event_api_server, loaded_day, postgres, resources, instance
):
    later = time.time() + 86_400
    value = "86400" if form == "seconds" else email.utils.formatdate(later, usegmt=True)
    event_api_server.script = lambda params: (429, {"Retry-After": value}, b"slow down")

    started = time.monotonic()
    result = load(api_tenant, resources, instance, event_api(retry_after_max_seconds=5), ok=False)

    assert time.monotonic() - started < 30  # no sleep of a day, nor of the 5 s cap
    assert len(event_api_server.seen) == 1
    message = failure_message(result)
    assert_names_the_day(message, api_tenant, "3")  # resumed after the watermark
    assert f"Retry-After {value!r}" in message and "retry_after_max_seconds (5 s)" in message
    assert day_state(postgres, api_tenant) == loaded_day


def open_quarantine(postgres, tenant: str) -> list[tuple]:
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT source_line, reason, reprocessed_at IS NOT NULL, detail "
            "FROM platform.quarantine WHERE tenant_id = %s AND layer = 'raw_api_events' "
            "ORDER BY quarantine_id",
            (tenant,),
        ).fetchall()


@pytest.mark.parametrize("bad_cursor", ["2", None], ids=["second_page_resume", "first_page"])
def test_an_invalid_json_page_fixed_later_is_marked_resolved(
    bad_cursor, api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(3)
    event_api_server.bodies[bad_cursor] = b'{"events": [{"eventId": '

    first = load(api_tenant, resources, instance)

    assert_balanced(first)
    assert metadata(first)["quarantine_reasons"] == {"invalid_json": 1}
    assert [
        (line, reason, done) for line, reason, done, _ in open_quarantine(postgres, api_tenant)
    ] == [(0, "invalid_json", False)]

    del event_api_server.bodies[bad_cursor]
    second = load(api_tenant, resources, instance)

    assert_balanced(second)
    assert metadata(second)["pages_resolved"] == 1
    ((line, reason, done, detail),) = open_quarantine(postgres, api_tenant)
    assert (line, reason, done) == (0, "invalid_json", True)
    assert f"resolved: run {second.run_id}" in detail
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1", "e2"]
    assert_no_duplicates(postgres, api_tenant)
    assert watermark(postgres, api_tenant)[2] is True  # complete


@pytest.mark.parametrize(
    "body",
    [b'{"data": []}', b"[1, 2]", b'{"events": [], "next_cursor": "x", "has_more": "yes"}'],
    ids=["no_events_list", "not_an_object", "has_more_not_boolean"],
)
def test_a_json_page_of_the_wrong_shape_is_quarantined_whole(
    body, api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(3)
    event_api_server.bodies["2"] = body

    result = load(api_tenant, resources, instance)

    assert_balanced(result)
    assert metadata(result)["quarantine_reasons"] == {"wrong_type": 1}
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1"]
    ((source, line, reason, _, text),) = quarantine_rows(postgres, api_tenant)
    assert (line, reason, text) == (0, "wrong_type", body.decode())
    assert "cursor=2" in source
    assert watermark(postgres, api_tenant)[2] is False  # the next run asks for it again
    assert TenantDay(api_tenant, DAY).partition_key in metadata(result)["tenant_days"]


def test_backoff_and_retry_after_rules():
    assert backoff_delay(1, 1.0, 0.0, 60.0) == 0.0
    assert [backoff_delay(n, 1.0, 0.0, 60.0) for n in (2, 3, 4)] == [2.0, 4.0, 8.0]
    assert backoff_delay(10, 1.0, 0.0, 60.0) == 60.0
    assert 2.0 <= backoff_delay(2, 1.0, 1.0, 60.0) <= 3.0
    now = 1_000_000_000.0
    assert retry_after_seconds(" 120 ") == 120.0
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
