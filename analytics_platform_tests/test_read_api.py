"""The read API as a client sees it: a real `analytics-platform api` over pipeline-built data.

Two tenants' days are built by the real pipeline (Postgres, dbt, chDB); the API
process shares the chDB data path with this test process, whose pipeline runs and
sessions go through the want-marker hand-over. Every endpoint's numbers are
compared with the warehouse marts, every endpoint is tried across tenants and
with a write key, and schemathesis sends requests generated from /openapi.json.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import DagsterInstance

from analytics_platform.demo.generator import generate_landing
from analytics_platform.partitions import TenantDay, range_tags
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.keys import create_key
from analytics_platform.tenants.registry import register_tenant
from analytics_platform_tests.api_server import RunningApi, start_api
from analytics_platform_tests.test_pipeline import run_pipeline

pytestmark = pytest.mark.slow  # pipeline runs and an API process

START = dt.date(2026, 10, 5)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]
NEW_DAY = START + dt.timedelta(days=3)
RANGE = f"from={DAYS[0]}&to={NEW_DAY}"
WAIT_SECONDS = 0.5
# Enough visitors for the experiment's variants to differ (a p-value, not NULL).
EVENTS_PER_DAY = 120
ENDPOINTS = [
    f"/v1/metrics/daily?{RANGE}",
    f"/v1/channels?{RANGE}",
    f"/v1/funnels?{RANGE}",
    "/v1/experiments",
    f"/v1/sessions?{RANGE}",
]


class Stack:
    """The module's stores, tenants, keys and API process."""

    def __init__(self, postgres, clickhouse, instance, landing, api, tenants, keys):
        self.postgres: PostgresResource = postgres
        self.clickhouse: ClickHouseResource = clickhouse
        self.instance: DagsterInstance = instance
        self.landing: Path = landing
        self.api: RunningApi = api
        self.tenants: tuple[str, str] = tenants
        self.keys: dict[tuple[str, str], str] = keys  # (tenant, kind) -> secret

    def read(self, tenant: str, path: str, **headers: str):
        return self.api.get(path, self.keys[(tenant, "read")], **headers)

    def marts(self, sql: str, tenant: str) -> list[tuple]:
        with self.postgres.connect() as conn:
            return conn.execute(sql, (tenant,)).fetchall()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, warehouse_url: str, clickhouse_url: str) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("read_api")
    landing = work / "landing"
    tenants = (f"ra_{uuid.uuid4().hex[:6]}", f"rb_{uuid.uuid4().hex[:6]}")
    postgres = PostgresResource(url=warehouse_url)
    clickhouse = ClickHouseResource(url=clickhouse_url, lock_timeout_seconds=60)
    env = {
        "DATABASE_URL": warehouse_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(landing),
    }
    with pytest.MonkeyPatch.context() as patch, DagsterInstance.ephemeral() as instance:
        for name, value in env.items():
            patch.setenv(name, value)
        generate_landing(landing, tenants, DAYS, events_per_day=EVENTS_PER_DAY)
        for tenant in tenants:
            register_tenant(postgres, tenant, actor="test")
        instance.add_dynamic_partitions("tenants", list(tenants))
        assert run_pipeline(instance, tags=range_tags(list(tenants), DAYS)).success
        keys = {
            (tenant, kind): create_key(postgres, tenant, kind, actor="test")[1]
            for tenant in tenants
            for kind in ("read", "write")
        }
        api_env = {
            **os.environ,
            **env,
            "PLATFORM_HOME": str(work / "home"),
            "API_CLICKHOUSE_WAIT_SECONDS": str(WAIT_SECONDS),
            "KEY_CACHE_SECONDS": "0",
        }
        api = start_api(api_env, work / "api.log")
        try:
            yield Stack(postgres, clickhouse, instance, landing, api, tenants, keys)
        finally:
            assert api.stop() == 0


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def same_rows(api_rows: list[dict], mart_rows: list[tuple], columns: list[str]) -> None:
    """Every API row equals its mart row, column by column (numbers within float rounding)."""
    assert len(api_rows) == len(mart_rows)
    assert mart_rows, "nothing to compare: the pipeline built no rows"
    for got, want in zip(api_rows, mart_rows, strict=True):
        for column, value in zip(columns, want, strict=True):
            if isinstance(value, (float, Decimal)) or isinstance(got[column], float):
                assert close(got[column], value), (column, got[column], value)
            elif isinstance(value, dt.datetime):
                assert dt.datetime.fromisoformat(got[column]) == value, column
            elif isinstance(value, dt.date):
                assert got[column] == value.isoformat(), column
            else:
                assert got[column] == value, (column, got[column], value)


def all_sessions(stack: Stack, tenant: str, query: str, limit: int = 50) -> list[dict]:
    rows, cursor = [], None
    for _page in range(1000):
        page = stack.read(
            tenant, f"/v1/sessions?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        )
        assert page.status_code == 200, page.text
        rows += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("more than 1000 pages")


DAILY = (
    "event_date, site_id, visitors, new_visitors, returning_visitors, identified_users, "
    "sessions, page_views, events, bounce_rate, average_session_seconds, conversions, "
    "conversion_rate, revenue"
)
CHANNELS = "event_date, channel, sessions, visitors, conversions, conversion_rate, revenue"
FUNNEL = (
    "event_date, step_number, step_name, sessions, visitors, conversion_from_previous, "
    "conversion_from_first"
)
EXPERIMENTS = (
    "experiment_id, variant, is_control, exposed_visitors, converters, conversion_rate, "
    "switched_visitors, first_exposed_at, uplift, z_score, p_value"
)
SESSIONS = (
    "session_id, session_date, visitor_id, session_start, page_views, events, channel, revenue"
)
VISITOR = (
    "visitor_id, first_seen_at, last_seen_at, first_touch_channel, sessions, revenue, "
    "latest_user_id"
)


def test_every_endpoint_answers_the_marts_numbers_for_each_tenant(stack: Stack):
    cases = [
        (f"/v1/metrics/daily?{RANGE}", DAILY, "fct_daily_metrics", "event_date, site_id"),
        (f"/v1/channels?{RANGE}", CHANNELS, "fct_channel_daily", "event_date, channel"),
        (f"/v1/funnels?{RANGE}", FUNNEL, "fct_funnel_daily", "event_date, step_number"),
        ("/v1/experiments", EXPERIMENTS, "fct_experiment_results", "experiment_id, variant"),
    ]
    for tenant in stack.tenants:
        for path, columns, mart, order in cases:
            answer = stack.read(tenant, path)
            assert answer.status_code == 200, (path, answer.text)
            where = (
                ""
                if mart == "fct_experiment_results"
                else f" AND {order.split(',')[0]} BETWEEN '{DAYS[0]}' AND '{NEW_DAY}'"
            )
            want = stack.marts(
                f"SELECT {columns} FROM marts.{mart} WHERE tenant_id = %s{where} ORDER BY {order}",
                tenant,
            )
            same_rows(answer.json()["data"], want, [c.strip() for c in columns.split(",")])
        experiments = stack.read(tenant, "/v1/experiments").json()["data"]
        assert any(row["p_value"] is not None for row in experiments)

        sessions = all_sessions(stack, tenant, RANGE, limit=37)
        want = stack.marts(
            f"SELECT {SESSIONS} FROM marts.fct_sessions WHERE tenant_id = %s "
            f"AND session_date BETWEEN '{DAYS[0]}' AND '{NEW_DAY}' "
            "ORDER BY session_start, session_id",
            tenant,
        )
        same_rows(sessions, want, [c.strip() for c in SESSIONS.split(",")])

        (visitor_id,) = stack.marts(
            "SELECT visitor_id FROM marts.dim_visitors WHERE tenant_id = %s "
            "ORDER BY sessions DESC, visitor_id LIMIT 1",
            tenant,
        )[0]
        one = stack.read(tenant, f"/v1/visitors/{visitor_id}")
        assert one.status_code == 200, one.text
        want = stack.marts(
            f"SELECT {VISITOR} FROM marts.dim_visitors "
            f"WHERE tenant_id = %s AND visitor_id = '{visitor_id}'",
            tenant,
        )
        same_rows([one.json()["data"]], want, [c.strip() for c in VISITOR.split(",")])

    # The site filter: every row is the tenant's default site; another site has none.
    ours, _ = stack.tenants
    by_site = stack.read(ours, f"/v1/metrics/daily?{RANGE}&site={ours}").json()["data"]
    assert len(by_site) == len(DAYS) and {r["site_id"] for r in by_site} == {ours}
    assert stack.read(ours, f"/v1/metrics/daily?{RANGE}&site=elsewhere").json()["data"] == []


def test_a_key_reads_its_own_tenant_only_and_a_write_key_reads_nothing(stack: Stack):
    ours, theirs = stack.tenants
    their_visitor = stack.marts(
        "SELECT visitor_id FROM marts.dim_visitors WHERE tenant_id = %s LIMIT 1", theirs
    )[0][0]
    for path in [*ENDPOINTS, f"/v1/visitors/{their_visitor}"]:
        mine = stack.read(ours, path)
        text = mine.text
        assert theirs not in text, path  # visitor and session ids embed the tenant id
        if "visitors/" in path:
            assert mine.status_code == 404 and mine.json()["error"]["code"] == "not_found"
        else:
            assert mine.status_code == 200 and mine.json()["data"], path
        # No parameter can name the other tenant: unknown ones are refused, by name.
        sep = "&" if "?" in path else "?"
        for name in ("tenant", "tenant_id", "database"):
            named = stack.read(ours, f"{path}{sep}{name}={theirs}")
            assert named.status_code == 400, (path, named.text)
            assert named.json()["error"] == {
                "code": "invalid_parameter",
                "parameter": name,
                "message": named.json()["error"]["message"],
            }
        write = stack.api.get(path, stack.keys[(ours, "write")])
        assert write.status_code == 403 and write.json()["error"]["code"] == "wrong_key_kind"
        assert theirs not in write.text and "visitor" not in write.text
        nokey = stack.api.get(path)
        assert nokey.status_code == 401 and nokey.json()["error"]["code"] == "missing_key"
        basic = stack.api.get(path, Authorization="Basic abc")
        assert basic.json()["error"]["code"] == "invalid_authorization"
        forged = stack.api.get(path, "apk_r_" + "A" * 43)
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_key"


def test_bad_parameters_get_a_400_naming_them(stack: Stack):
    ours, _ = stack.tenants
    cases = {
        "/v1/metrics/daily?from=yesterday&to=2026-10-06": "from",
        "/v1/metrics/daily?from=2026-10-06": "to",
        "/v1/metrics/daily?from=2026-10-06&to=2026-10-05": "to",
        "/v1/metrics/daily?from=2024-01-01&to=2026-10-05": "to",
        "/v1/metrics/daily?from=2026-10-05&to=2026-10-06&site=no%20spaces": "site",
        "/v1/channels?from=2026-10-05&to=2026-10-06&channel=%27%3B%20DROP": "channel",
        f"/v1/sessions?{RANGE}&limit=0": "limit",
        f"/v1/sessions?{RANGE}&limit=5000": "limit",
        f"/v1/sessions?{RANGE}&cursor=not-a-cursor": "cursor",
        "/v1/experiments?experiment_id=%27": "experiment_id",
    }
    for path, parameter in cases.items():
        answer = stack.read(ours, path)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["code"] == "invalid_parameter"
        assert answer.json()["error"]["parameter"] == parameter, path
    # A cursor is bound to its filters.
    first = stack.read(ours, f"/v1/sessions?{RANGE}&limit=2").json()["next_cursor"]
    other = stack.read(ours, f"/v1/sessions?from={DAYS[0]}&to={DAYS[1]}&limit=2&cursor={first}")
    assert other.status_code == 400 and other.json()["error"]["parameter"] == "cursor"
    assert stack.read(ours, "/v1/nowhere").json()["error"]["code"] == "not_found"


def test_an_unchanged_answer_is_304_on_its_etag(stack: Stack):
    ours, _ = stack.tenants
    for path in ENDPOINTS:
        first = stack.read(ours, path)
        etag = first.headers["ETag"]
        assert first.headers["Last-Modified"].endswith("GMT")
        again = stack.read(ours, path, If_None_Match=etag)
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        # Another tenant's or another query's answer is another representation.
        assert stack.read(stack.tenants[1], path).headers["ETag"] != etag
        assert stack.read(ours, path, If_None_Match='"stale"').status_code == 200


def test_pages_neither_skip_nor_repeat_while_a_new_day_is_served(stack: Stack):
    """Two pages read, then the next day is built and served (its run also re-serves the
    day before, a day the pages already crossed), then the rest: every session of the
    range comes exactly once, in order, the new day's included."""
    ours, _ = stack.tenants
    query = f"{RANGE}&limit=10"
    seen, cursor = [], None
    for _ in range(2):
        page = stack.read(ours, f"/v1/sessions?{query}" + (f"&cursor={cursor}" if cursor else ""))
        seen += page.json()["data"]
        cursor = page.json()["next_cursor"]
    etag_before = stack.read(ours, f"/v1/sessions?{query}").headers["ETag"]

    generate_landing(stack.landing, [ours], [*DAYS, NEW_DAY], events_per_day=EVENTS_PER_DAY)
    started = time.monotonic()
    result = run_pipeline(stack.instance, partition_key=TenantDay(ours, NEW_DAY).partition_key)
    assert result.success
    assert time.monotonic() - started < 120

    for _page in range(100):
        page = stack.read(ours, f"/v1/sessions?{query}&cursor={cursor}")
        assert page.status_code == 200, page.text
        seen += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    keys = [(row["session_start"], row["session_id"]) for row in seen]
    assert len(set(keys)) == len(keys), "a session came twice"
    assert keys == sorted(keys)
    want = stack.marts(
        "SELECT session_id FROM marts.fct_sessions WHERE tenant_id = %s "
        f"AND session_date BETWEEN '{DAYS[0]}' AND '{NEW_DAY}'",
        ours,
    )
    assert sorted(row["session_id"] for row in seen) == sorted(r[0] for r in want)
    assert any(row["session_date"] == NEW_DAY.isoformat() for row in seen)
    # The served table changed, so the first page's ETag did too.
    assert stack.read(ours, f"/v1/sessions?{query}").headers["ETag"] != etag_before


def test_while_a_run_holds_chdb_the_api_hands_over_and_answers_503_busy(stack: Stack):
    ours, _ = stack.tenants
    path = f"/v1/metrics/daily?{RANGE}"
    assert stack.read(ours, path).status_code == 200  # the API holds the data path now
    asked = time.monotonic()
    with stack.clickhouse.session() as session:
        handed_over = time.monotonic() - asked
        started = time.monotonic()
        busy = stack.read(ours, path)
        waited = time.monotonic() - started
        session.query_df("SELECT 1")  # the run's session works while the API waits
    assert handed_over < 2.0, f"the run waited {handed_over:.2f} s for the API"
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "clickhouse_busy"
    assert int(busy.headers["Retry-After"]) >= 1
    assert WAIT_SECONDS <= waited < WAIT_SECONDS + 1.5
    assert stack.read(ours, path).status_code == 200


def test_requests_generated_from_the_openapi_document_never_get_a_5xx(stack: Stack):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error, response_schema_conformance

    ours, _ = stack.tenants
    schema = schemathesis.openapi.from_url(f"{stack.api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/metrics/daily",
        "/v1/channels",
        "/v1/funnels",
        "/v1/experiments",
        "/v1/sessions",
        "/v1/visitors/{visitor_id}",
    }
    headers = {"Authorization": f"Bearer {stack.keys[(ours, 'read')]}"}
    for operation in operations:

        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def never_fails(case):
            case.call_and_validate(
                base_url=stack.api.url,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
            )

        never_fails()


def test_the_server_reader_answers_as_the_embedded_one(stack: Stack):
    """The server path (clickhouse-connect) sends the same SQL: its answers and ETags equal
    the embedded API's. clickhouse-connect's chDB interface stands in for a server (the
    same client calls, no HTTP); per-query readonly=1 is left out, as in test_query."""
    import threading

    import clickhouse_connect
    import requests
    import uvicorn
    from filelock import FileLock

    from analytics_platform.api.app import create_app
    from analytics_platform.api.reader import ServerReader
    from analytics_platform.process_groups import free_port
    from analytics_platform.resources.chdb_handoff import acquire_announced, lock_path
    from analytics_platform.tenants.keys import KeyAuthenticator

    ours, _ = stack.tenants
    visitor = stack.marts("SELECT visitor_id FROM marts.dim_visitors WHERE tenant_id = %s", ours)
    paths = [*ENDPOINTS, f"/v1/sessions?{RANGE}&limit=5", f"/v1/visitors/{visitor[0][0]}"]
    embedded = {path: stack.read(ours, path) for path in paths}

    path = Path(stack.clickhouse.url.removeprefix("chdb://"))
    lock = FileLock(str(lock_path(path)))
    acquire_announced(lock, path, 30)  # the API hands the data path over
    client = clickhouse_connect.get_client(dsn=stack.clickhouse.url)
    auth = KeyAuthenticator(stack.postgres)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServerReader("chdb", client=client, settings={}), auth),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        headers = {"Authorization": f"Bearer {stack.keys[(ours, 'read')]}"}
        for path_, want in embedded.items():
            got = requests.get(f"http://127.0.0.1:{port}{path_}", headers=headers, timeout=30)
            assert got.status_code == want.status_code == 200, (path_, got.text)
            assert got.json() == want.json(), path_
            assert got.headers["ETag"] == want.headers["ETag"], path_
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        client.close()
        auth.close()
        lock.release()
