"""raw_api_events against a real HTTP server on 127.0.0.1, real Postgres and real dbt."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    build_schedule_context,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
    serialize_value,
)

from analytics_platform.assets.api import raw_api_events
from analytics_platform.assets.dbt import dbt_layers
from analytics_platform.assets.raw import raw_file_events
from analytics_platform.assets.serving import serving_assets
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.event_api import EventApiResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.schedules import api_events_schedule
from analytics_platform.tenants.registry import register_tenant, transition
from analytics_platform_tests.events import day_file, tracker_event, write_lines

DAY = dt.date(2026, 11, 2)


@dataclass
class Reply:
    """A one-shot answer; status None serves the normal page (after `delay`)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Drip = b"{}"
    delay: float = 0.0


@dataclass
class Drip:
    """A body sent one byte every `interval` seconds (a stalling server)."""

    body: bytes
    interval: float = 1.0


@dataclass
class Seen:
    at: float
    path: str
    params: dict[str, str]
    authorization: str | None

    @property
    def cursor(self) -> str | None:
        return self.params.get("cursor")


class FakeEventApi:
    """A tenant's export API: the cursor is the offset into the day's events."""

    def __init__(self, token: str):
        self.token = token
        self.base_url = ""
        self.events: dict[str, list[object]] = {}  # day (ISO) -> events, in export order
        self.replies: deque[Reply] = deque()  # served first, one per request, whatever the cursor
        self.bodies: dict[str | None, bytes] = {}  # cursor -> body served instead of the page
        self.failing: set[str | None] = set()  # cursors answered 500 every time
        # Answers every authorized request when set: params -> (status, headers, body).
        self.script: Callable[[dict[str, str]], tuple[int, dict, bytes]] | None = None
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def answer(self, path: str, params: dict[str, str], authorization: str | None):
        with self.lock:
            self.seen.append(Seen(time.monotonic(), path, params, authorization))
            reply = self.replies.popleft() if self.replies else Reply()
        if path != "/v1/events":
            return 404, {}, b'{"error": "not found"}', 0.0
        if authorization != f"Bearer {self.token}":
            return 401, {}, b'{"error": "unauthorized"}', 0.0
        if reply.status is not None:
            return reply.status, reply.headers, reply.body, reply.delay
        if self.script is not None:
            return (*self.script(params), reply.delay)
        cursor = params.get("cursor")
        if cursor in self.failing:
            return 500, {}, b'{"error": "boom"}', 0.0
        if cursor in self.bodies:
            return 200, {}, self.bodies[cursor], reply.delay
        day_events = self.events.get(params["start"][:10], [])
        offset = int(cursor or 0)
        page = day_events[offset : offset + int(params["limit"])]
        end = offset + len(page)
        body = {"events": page, "next_cursor": str(end), "has_more": end < len(day_events)}
        return 200, {}, json.dumps(body).encode(), reply.delay

    def requests_for(self, day: dt.date) -> list[Seen]:
        return [s for s in self.seen if s.params.get("start", "").startswith(day.isoformat())]


def handler_for(api: FakeEventApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, headers, body, delay = api.answer(
                url.path, dict(parse_qsl(url.query)), self.headers.get("Authorization")
            )
            time.sleep(delay)
            drip = body if isinstance(body, Drip) else None
            body = drip.body if drip else body
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if drip is None:
                    self.wfile.write(body)
                for byte in body if drip else b"":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(drip.interval)
            except OSError:
                pass  # the client gave up waiting (read timeout, deadline)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def event_api_server() -> Iterator[FakeEventApi]:
    api = FakeEventApi(token=f"tok-{uuid.uuid4().hex}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield api
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def token_env_for(tenant: str) -> str:
    return f"API_TOKEN_{tenant.upper()}"


@pytest.fixture
def api_tenant(new_tenant, postgres, event_api_server, monkeypatch, instance) -> str:
    """A registered tenant whose API is the fake server, its token in the environment."""
    tenant = new_tenant("api")
    register_tenant(
        postgres,
        tenant,
        api_base_url=event_api_server.base_url,
        api_token_env=token_env_for(tenant),
        actor="test",
    )
    monkeypatch.setenv(token_env_for(tenant), event_api_server.token)
    instance.add_dynamic_partitions("tenants", [tenant])
    return tenant


def event_api(**overrides) -> EventApiResource:
    """Small pages and tiny backoff, so retries are visible and fast."""
    settings = {
        "connect_timeout_seconds": 2.0,
        "read_timeout_seconds": 10.0,
        "retries": 3,
        "backoff_seconds": 0.01,
        "backoff_jitter_seconds": 0.01,
        "requests_per_second": 1000.0,
        "page_size": 2,
    }
    return EventApiResource(**{**settings, **overrides})


def load(tenant, resources, instance, api=None, *, day=DAY, full_refresh=False, ok=True):
    result = materialize(
        [raw_api_events],
        partition_key=TenantDay(tenant, day).partition_key,
        resources={"postgres": resources["postgres"], "event_api": api or event_api()},
        instance=instance,
        run_config={"ops": {"raw_api_events": {"config": {"full_refresh": full_refresh}}}},
        raise_on_error=False,
    )
    assert result.success is ok, result.get_step_failure_events()
    return result


def metadata(result) -> dict:
    materialization = result.asset_materializations_for_node("raw_api_events")[0]
    return {name: value.value for name, value in materialization.metadata.items()}


def failure_message(result) -> str:
    error = result.get_step_failure_events()[0].event_specific_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def raw_rows(postgres: PostgresResource, tenant: str) -> list[tuple]:
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT event_id, visitor_id, occurred_at, _partition_date, _source, _source_line, "
            "_run_id, _ingested_at FROM raw.api_events WHERE tenant_id = %s "
            "ORDER BY occurred_at, event_id",
            (tenant,),
        ).fetchall()


def watermark(postgres: PostgresResource, tenant: str, day: dt.date = DAY) -> tuple | None:
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT resume_cursor, last_event_at, complete, pages, rows_loaded, run_id, "
            "updated_at FROM platform.api_watermarks WHERE tenant_id = %s AND partition_date = %s",
            (tenant, day),
        ).fetchone()


def quarantine_rows(postgres: PostgresResource, tenant: str) -> list[tuple]:
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT source, source_line, reason, detail, raw_text FROM platform.quarantine "
            "WHERE tenant_id = %s AND layer = 'raw_api_events' ORDER BY quarantine_id",
            (tenant,),
        ).fetchall()


def events(count: int, day: dt.date = DAY, start: int = 0) -> list[dict]:
    return [
        tracker_event(f"e{i}", f"v{i % 2}", f"{day}T10:{i:02d}:00Z")
        for i in range(start, start + count)
    ]


def test_pagination_loads_every_event_the_api_served(
    api_tenant, event_api_server, postgres, resources, instance
):
    served = events(4)
    # The contract's snake_case spelling is accepted from the API too.
    served.append(
        {
            "event_id": "e4",
            "event_type": "signup",
            "visitor_id": "v9",
            "occurred_at": f"{DAY}T11:00",
        }
    )
    event_api_server.events[DAY.isoformat()] = served

    result = load(api_tenant, resources, instance)

    meta = metadata(result)
    assert (meta["pages"], meta["rows_read"], meta["rows_loaded"]) == (3, 5, 5)
    assert meta["rows_quarantined"] == 0
    rows = raw_rows(postgres, api_tenant)
    assert [r[0] for r in rows] == ["e0", "e1", "e2", "e3", "e4"]
    assert {r[3] for r in rows} == {DAY}
    # Lineage: the page URL (cursor included) and the event's position in the page.
    assert [
        (urlsplit(r[4]).path, dict(parse_qsl(urlsplit(r[4]).query)).get("cursor"), r[5])
        for r in rows
    ] == [
        ("/v1/events", None, 1),
        ("/v1/events", None, 2),
        ("/v1/events", "2", 1),
        ("/v1/events", "2", 2),
        ("/v1/events", "4", 1),
    ]
    seen = event_api_server.seen
    assert [s.cursor for s in seen] == [None, "2", "4"]
    assert {s.authorization for s in seen} == {f"Bearer {event_api_server.token}"}
    assert {(s.params["start"], s.params["end"]) for s in seen} == {
        ("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z")
    }
    cursor, last_event_at, complete, pages, rows_loaded, run_id, _ = watermark(postgres, api_tenant)
    assert (cursor, complete, pages, rows_loaded, run_id) == ("5", True, 3, 5, result.run_id)
    assert last_event_at == dt.datetime(2026, 11, 2, 11, 0, tzinfo=dt.timezone.utc)


def test_a_later_run_resumes_after_the_watermark_and_full_refresh_starts_over(
    api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(3)
    first = load(api_tenant, resources, instance)
    # Late events arrive after the first run.
    event_api_server.events[DAY.isoformat()] += events(2, start=3)
    event_api_server.seen.clear()

    second = load(api_tenant, resources, instance)

    assert [s.cursor for s in event_api_server.seen] == ["3"]  # only what came since
    assert metadata(second)["rows_loaded"] == 2
    rows = raw_rows(postgres, api_tenant)
    assert [(r[0], r[6]) for r in rows] == [
        ("e0", first.run_id),
        ("e1", first.run_id),
        ("e2", first.run_id),
        ("e3", second.run_id),
        ("e4", second.run_id),
    ]
    cursor, *_, rows_loaded, _, _ = watermark(postgres, api_tenant)
    assert (cursor, rows_loaded) == ("5", 5)

    event_api_server.seen.clear()
    third = load(api_tenant, resources, instance, full_refresh=True)
    assert [s.cursor for s in event_api_server.seen] == [None, "2", "4"]
    assert [(r[0], r[6]) for r in raw_rows(postgres, api_tenant)] == [
        (f"e{i}", third.run_id) for i in range(5)
    ]


def test_deleted_rows_make_the_next_run_reload_the_whole_day(
    api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(3)
    load(api_tenant, resources, instance)
    with postgres.transaction() as conn:  # as retention or deprovisioning would
        conn.execute("DELETE FROM raw.api_events WHERE tenant_id = %s", (api_tenant,))
    event_api_server.seen.clear()

    load(api_tenant, resources, instance)

    assert event_api_server.seen[0].cursor is None
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1", "e2"]


def test_retries_after_500_and_honours_retry_after_on_429(
    api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(3)
    event_api_server.replies.extend(
        [
            Reply(500, body=b'{"error": "boom"}'),
            Reply(502, body=b"bad gateway"),
            Reply(),  # the first page
            Reply(429, headers={"Retry-After": "1"}, body=b'{"error": "slow down"}'),
        ]
    )

    load(api_tenant, resources, instance)

    seen = event_api_server.seen
    assert [s.cursor for s in seen] == [None, None, None, "2", "2"]
    # Retry-After: 1; without it a first retry would not wait at all (urllib3 backoff).
    assert seen[4].at - seen[3].at >= 1.0
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1", "e2"]


def test_a_read_timeout_is_retried(api_tenant, event_api_server, postgres, resources, instance):
    event_api_server.events[DAY.isoformat()] = events(2)
    event_api_server.replies.append(Reply(delay=5.0))

    load(api_tenant, resources, instance, event_api(read_timeout_seconds=1.0))

    seen = event_api_server.seen
    assert [s.cursor for s in seen] == [None, None]
    assert seen[1].at - seen[0].at < 4.0  # it gave up on the 5 s answer and asked again
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1"]


def test_requests_to_one_tenant_respect_the_rate_limit(
    api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(4)

    load(api_tenant, resources, instance, event_api(requests_per_second=5.0, page_size=1))

    seen = event_api_server.seen
    assert len(seen) == 4
    assert seen[-1].at - seen[0].at >= 3 * 0.2 - 0.05


def test_malformed_events_and_pages_are_quarantined_and_the_rest_loads(
    api_tenant, event_api_server, postgres, resources, instance
):
    good = events(3)
    no_visitor = {"eventId": "bad1", "eventType": "page_view", "timestamp": f"{DAY}T10:30:00Z"}
    next_day = tracker_event("bad2", "v1", f"{DAY + dt.timedelta(days=1)}T00:00:01Z")
    event_api_server.events[DAY.isoformat()] = [good[0], no_visitor, good[1], next_day, good[2]]
    broken = b'{"events": [{"eventId": "e9", "eventType": '
    event_api_server.bodies["4"] = broken

    result = load(api_tenant, resources, instance)

    meta = metadata(result)
    assert (meta["rows_read"], meta["rows_loaded"], meta["rows_quarantined"]) == (5, 2, 3)
    assert meta["quarantine_reasons"] == {
        "invalid_json": 1,
        "missing_field": 1,
        "out_of_window": 1,
    }
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1"]
    quarantined = [
        (dict(parse_qsl(urlsplit(source).query)).get("cursor"), line, reason, text)
        for source, line, reason, _, text in quarantine_rows(postgres, api_tenant)
    ]
    assert quarantined == [
        (None, 2, "missing_field", json.dumps(no_visitor)),
        ("2", 2, "out_of_window", json.dumps(next_day)),
        ("4", 0, "invalid_json", broken.decode()),  # line 0: the whole page
    ]
    cursor, _, complete, *_ = watermark(postgres, api_tenant)
    assert (cursor, complete) == ("4", False)

    # Once the API serves the page properly, the next run asks for it again and completes.
    del event_api_server.bodies["4"]
    event_api_server.seen.clear()
    load(api_tenant, resources, instance)
    assert [s.cursor for s in event_api_server.seen] == ["4"]
    assert [r[0] for r in raw_rows(postgres, api_tenant)] == ["e0", "e1", "e2"]
    cursor, _, complete, *_ = watermark(postgres, api_tenant)
    assert (cursor, complete) == ("5", True)


def test_an_events_receive_time_loads_into_its_column_and_a_bad_one_is_quarantined(
    api_tenant, event_api_server, postgres, resources, instance
):
    late = f"{DAY + dt.timedelta(days=3)}T08:00:00.125Z"  # received days later: no window
    stamped = [
        tracker_event("r1", "v1", f"{DAY}T10:00:00Z", receivedAt=late),
        tracker_event("r2", "v1", f"{DAY}T10:01:00Z", received_at=f"{DAY}T10:01:02Z"),
        tracker_event("r3", "v1", f"{DAY}T10:02:00Z", receivedAt="2026-02-30T00:00:00Z"),
        tracker_event("r4", "v1", f"{DAY}T10:03:00Z"),
    ]
    event_api_server.events[DAY.isoformat()] = stamped
    meta = metadata(load(api_tenant, resources, instance))
    assert (meta["rows_loaded"], meta["quarantine_reasons"]) == (3, {"bad_timestamp": 1})
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT event_id, received_at, properties FROM raw.api_events "
            "WHERE tenant_id = %s ORDER BY event_id",
            (api_tenant,),
        ).fetchall()
    utc = dt.timezone.utc
    assert rows == [
        ("r1", dt.datetime(2026, 11, 5, 8, 0, 0, 125000, tzinfo=utc), {}),
        ("r2", dt.datetime(2026, 11, 2, 10, 1, 2, tzinfo=utc), {}),
        ("r4", None, {}),
    ]
    ((_, line, reason, detail, _),) = quarantine_rows(postgres, api_tenant)
    # r3 is the first event of the second page (two a page).
    assert (line, reason) == (1, "bad_timestamp") and detail.startswith("received_at ")


@pytest.mark.parametrize("full_refresh", [True, False], ids=["full_refresh", "resume"])
def test_a_run_that_runs_out_of_retries_leaves_the_partition_and_watermark_as_they_were(
    full_refresh, api_tenant, event_api_server, postgres, resources, instance
):
    event_api_server.events[DAY.isoformat()] = events(5)
    event_api_server.events[DAY.isoformat()][3] = {"eventId": "bad"}  # one quarantined row
    load(api_tenant, resources, instance)
    before = (
        raw_rows(postgres, api_tenant),
        quarantine_rows(postgres, api_tenant),
        watermark(postgres, api_tenant),
    )
    assert len(before[0]) == 4 and len(before[1]) == 1
    if full_refresh:
        failing = "2"  # the first page is written before the second one fails
    else:
        event_api_server.events[DAY.isoformat()] += events(4, start=5)
        failing = "7"  # the page at 5 is written before the next one fails
    event_api_server.failing.add(failing)
    event_api_server.seen.clear()

    result = load(api_tenant, resources, instance, full_refresh=full_refresh, ok=False)

    assert [s.cursor for s in event_api_server.seen].count(failing) == 4  # 1 try + 3 retries
    assert f"tenant {api_tenant!r}" in failure_message(result)
    assert "HTTP 500" in failure_message(result)
    after = (
        raw_rows(postgres, api_tenant),
        quarantine_rows(postgres, api_tenant),
        watermark(postgres, api_tenant),
    )
    assert after == before


def test_the_token_never_reaches_metadata_logs_or_errors(
    api_tenant, event_api_server, postgres, resources, instance, monkeypatch
):
    event_api_server.events[DAY.isoformat()] = [*events(2), {"eventId": "bad"}]
    event_api_server.replies.append(Reply(503, headers={"Retry-After": "0"}))
    ok = load(api_tenant, resources, instance)
    assert event_api_server.seen[-1].authorization == f"Bearer {event_api_server.token}"

    wrong = f"wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv(token_env_for(api_tenant), wrong)
    refused = load(api_tenant, resources, instance, ok=False)
    assert event_api_server.seen[-1].authorization == f"Bearer {wrong}"
    message = failure_message(refused)
    assert "HTTP 401" in message and token_env_for(api_tenant) in message

    for secret in (event_api_server.token, wrong):
        for run in (ok, refused):
            for entry in instance.all_logs(run.run_id):
                assert secret not in serialize_value(entry)
        stored = raw_rows(postgres, api_tenant) + quarantine_rows(postgres, api_tenant)
        assert secret not in repr(stored)


def test_an_unset_token_variable_is_named_in_the_error(
    api_tenant, event_api_server, resources, instance, monkeypatch
):
    monkeypatch.delenv(token_env_for(api_tenant))

    result = load(api_tenant, resources, instance, ok=False)

    assert f"environment variable {token_env_for(api_tenant)}" in failure_message(result)
    assert event_api_server.seen == []


def test_a_tenant_without_an_api_is_skipped(new_tenant, postgres, resources, instance):
    tenant = new_tenant("files")
    register_tenant(postgres, tenant, actor="test")
    instance.add_dynamic_partitions("tenants", [tenant])

    result = load(tenant, resources, instance)

    meta = metadata(result)
    key = TenantDay(tenant, DAY).partition_key
    assert meta["skipped"] == {key: "no API configured (api_base_url is empty)"}
    assert (meta["pages"], meta["rows_read"], meta["rows_loaded"]) == (0, 0, 0)
    assert raw_rows(postgres, tenant) == []
    assert watermark(postgres, tenant) is None
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"tenant {tenant!r}: no API configured" in m for m in logged)


def test_the_schedule_requests_yesterday_for_active_tenants_with_an_api(new_tenant, postgres):
    url = "http://127.0.0.1:9/v1"
    wanted = {
        "active_api": dict(api_base_url=url, api_token_env="SOME_TOKEN"),
        "active_files": {},
        "suspended_api": dict(api_base_url=url),
        "pending_api": dict(api_base_url=url),
    }
    ids = {label: new_tenant(label.split("_")[0]) for label in wanted}
    for label, settings in wanted.items():
        register_tenant(postgres, ids[label], actor="test", **settings)
    with postgres.transaction() as conn:
        for label in ("active_api", "active_files", "suspended_api"):
            transition(conn, ids[label], "active", allowed_from=("pending",), actor="test")
        transition(conn, ids["suspended_api"], "suspended", allowed_from=("active",), actor="t")
    # A schedule context needs a persistent instance (it reopens it from its ref).
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", list(ids.values()))
        # Closing the context closes the instance it reopened (which would otherwise stay
        # registered as the current one for the rest of the session).
        with build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 3, 1, 0, tzinfo=dt.timezone.utc),
            resources={"postgres": postgres},
        ) as context:
            requests = api_events_schedule(context)

    mine = [r for r in requests if r.tags["tenant"] in ids.values()]
    assert [(r.partition_key, r.run_key) for r in mine] == [
        (f"2026-11-02|{ids['active_api']}", f"api:{ids['active_api']}:2026-11-02")
    ]
    assert api_events_schedule.cron_schedule == "0 1 * * *"
    assert api_events_schedule.execution_timezone == "UTC"
    assert api_events_schedule.job.name == "api_events_pipeline"


def test_an_api_event_reaches_staging(
    api_tenant, event_api_server, landing_dir: Path, postgres, resources, instance
):
    write_lines(
        day_file(landing_dir, api_tenant, DAY),
        [
            tracker_event("f1", "v1", f"{DAY}T09:00:00Z"),
            tracker_event("dup", "v1", f"{DAY}T09:05:00Z"),
        ],
    )
    event_api_server.events[DAY.isoformat()] = [
        tracker_event("dup", "v1", f"{DAY}T09:05:00Z"),
        tracker_event("a1", "v2", f"{DAY}T12:00:00Z", event_type="signup"),
    ]

    result = materialize(
        [raw_file_events, raw_api_events, *dbt_layers, *serving_assets],
        selection=AssetSelection.assets("raw_file_events", "raw_api_events", "stg_events"),
        partition_key=TenantDay(api_tenant, DAY).partition_key,
        resources={**resources, "event_api": event_api()},
        instance=instance,
    )

    assert result.success
    with postgres.connect() as conn:
        staged = conn.execute(
            "SELECT event_id, event_type, event_date, source_file, source_line "
            "FROM staging.stg_events WHERE tenant_id = %s ORDER BY event_id",
            (api_tenant,),
        ).fetchall()
    assert [row[0] for row in staged] == ["a1", "dup", "f1"]  # the duplicate kept once
    a1 = staged[0]
    assert (a1[1], a1[2], a1[4]) == ("signup", DAY, 2)
    assert a1[3].startswith(f"{event_api_server.base_url}/events?")


def test_an_api_load_alone_rebuilds_the_layers_below():
    from analytics_platform.definitions import defs

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        quiet = evaluate_automation_conditions(defs=defs, instance=instance)
        key = "2026-03-04|acme"
        # raw_file_events was never loaded for this day: that must not hold staging back.
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="raw_api_events", partition=key)
        )
        woken = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert woken.get_requested_partitions(AssetKey("stg_events")) == {key}
        assert woken.get_requested_partitions(AssetKey("serving_daily_metrics")) == {key}
