"""The collector over HTTP: one real `analytics-platform collector` for the module.

Each test uses tenants of its own, so the shared server's per-tenant rate limit and
segments never mix tests. The server closes segments after 0.3 s (or 64 KiB), so a
test sees its events in `*.jsonl` files quickly. Crashes, SIGTERM, several collectors
and an unwritable landing zone are in test_collector_processes.py.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from analytics_platform.ingest.load import load_tenant_day
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.keys import create_key, list_keys, revoke_key
from analytics_platform.tenants.origins import add_origins
from analytics_platform.tenants.registry import register_tenant, transition
from analytics_platform_tests.cli_harness import cli_environment
from analytics_platform_tests.collector_server import (
    RunningCollector,
    landed_lines,
    start_collector,
    wait_for,
)

pytestmark = pytest.mark.slow

SETTINGS = {
    "KEY_CACHE_SECONDS": "0",  # a revocation is seen by the next request
    "COLLECTOR_SEGMENT_MAX_AGE_SECONDS": "0.3",
    "COLLECTOR_SEGMENT_MAX_BYTES": str(64 << 10),
    "COLLECTOR_MAX_BODY_BYTES": str(256 << 10),
    "COLLECTOR_MAX_EVENTS_PER_REQUEST": "500",
    "COLLECTOR_RATE_EVENTS_PER_SECOND": "50",
    "COLLECTOR_RATE_BURST_EVENTS": "1000",
}
ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("collector") / "landing"
    root.mkdir()
    return root


@pytest.fixture(scope="module")
def collector(
    tmp_path_factory: pytest.TempPathFactory,
    warehouse_url: str,
    dagster_storage_url: str,
    clickhouse_url: str,
    landing: Path,
):
    home = tmp_path_factory.mktemp("collector-home")
    env = cli_environment(home, warehouse_url, dagster_storage_url, clickhouse_url, landing)
    running = start_collector(env, home / "collector.log", SETTINGS)
    yield running
    assert running.stop() == 0


@pytest.fixture
def tenant_key(postgres: PostgresResource, new_tenant: Callable[[str], str]):
    """Makes a registered tenant and a write key for it: (tenant, secret)."""

    def make(label: str = "col") -> tuple[str, str]:
        tenant = new_tenant(label)
        register_tenant(postgres, tenant, actor="test")
        _record, secret = create_key(postgres, tenant, kind="write", actor="test")
        return tenant, secret

    return make


def event(tenant: str, day: str = "2026-11-02", **fields) -> dict:
    return {
        "eventId": uuid.uuid4().hex,
        "eventType": "page_view",
        "visitorId": "v-1",
        "sessionId": "s-1",
        "timestamp": f"{day}T10:00:00Z",
        "url": "https://shop.example/",
        "path": "/",
        **fields,
    }


def landed_events(landing: Path, tenant: str, count: int) -> list[dict]:
    """The tenant's landed events once `count` of them are in closed segments."""
    found = wait_for(
        lambda: (lambda got: got if len(got) >= count else None)(
            [json.loads(line) for _path, line in landed_lines(landing, tenant)]
        ),
        what=f"{count} landed events of {tenant}",
    )
    assert len(found) == count, f"more events landed than sent: {found}"
    return found


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# --------------------------------------------------------------------------- accepting


def test_a_batch_lands_by_day_with_receive_time_and_no_key(
    collector: RunningCollector, landing: Path, tenant_key
):
    tenant, key = tenant_key()
    events = [event(tenant, "2026-11-02"), event(tenant, "2026-11-03"), event(tenant, "2026-11-03")]
    before = dt.datetime.now(dt.timezone.utc)
    response = collector.post_events(events, key)
    assert (response.status_code, response.json()) == (202, {"accepted": 3})
    assert response.headers["content-type"] == "application/json"

    landed = landed_events(landing, tenant, 3)
    assert sorted(p.parent.name for p, _ in landed_lines(landing, tenant)) == [
        "2026-11-02",
        "2026-11-03",
        "2026-11-03",
    ]
    assert {e["eventId"] for e in landed} == {e["eventId"] for e in events}
    for landed_event in landed:
        received = dt.datetime.fromisoformat(landed_event.pop("receivedAt").replace("Z", "+00:00"))
        assert before - dt.timedelta(seconds=1) <= received <= dt.datetime.now(dt.timezone.utc)
    assert sorted(landed, key=lambda e: e["eventId"]) == sorted(events, key=lambda e: e["eventId"])


def test_beacons_carry_the_key_in_the_body_and_it_never_lands(
    collector: RunningCollector, landing: Path, tenant_key
):
    tenant, key = tenant_key()
    envelope = {"writeKey": key, "events": [event(tenant), event(tenant)]}
    response = collector.post("/v1/events", json.dumps(envelope), Content_Type="text/plain")
    assert (response.status_code, response.json()) == (202, {"accepted": 2})
    tracker = event(tenant, siteId=tenant, attribution={"utmParams": {"utm_source": "news"}})
    # navigator.sendBeacon: text/plain, the key inside the one event
    response = collector.post(
        "/collect", json.dumps({**tracker, "writeKey": key}), Content_Type="text/plain"
    )
    assert (response.status_code, response.json()) == (202, {"accepted": 1})
    ndjson = "\n".join(json.dumps({**event(tenant), "writeKey": key}) for _ in range(2))
    assert collector.post("/v1/events", ndjson, Content_Type="application/x-ndjson").ok

    landed = landed_events(landing, tenant, 5)
    assert all("writeKey" not in e for e in landed)
    assert not any(key.encode() in line for _p, line in landed_lines(landing, tenant))
    collected = next(e for e in landed if e["eventId"] == tracker["eventId"])
    assert collected["attribution"] == {"utmParams": {"utm_source": "news"}}


def test_gzip_bodies_are_accepted(collector: RunningCollector, landing: Path, tenant_key):
    tenant, key = tenant_key()
    body = gzip.compress(json.dumps([event(tenant) for _ in range(3)]).encode())
    response = collector.post(
        "/v1/events", body, Authorization=f"Bearer {key}", Content_Encoding="gzip"
    )
    assert (response.status_code, response.json()) == (202, {"accepted": 3})
    landed_events(landing, tenant, 3)


def test_segments_close_by_size(collector: RunningCollector, landing: Path, tenant_key):
    tenant, key = tenant_key()
    padding = "p" * 1000
    sent = []
    for _ in range(3):  # ~100 KiB for one day: past the 64 KiB segment size
        batch = [event(tenant, pad=padding) for _ in range(35)]
        assert collector.post_events(batch, key).status_code == 202
        sent += [e["eventId"] for e in batch]
    landed = landed_events(landing, tenant, len(sent))
    assert sorted(e["eventId"] for e in landed) == sorted(sent)
    segments = {path for path, _line in landed_lines(landing, tenant)}
    assert len(segments) >= 2
    assert all(path.stat().st_size <= (64 << 10) + 40 * 1100 for path in segments)


# --------------------------------------------------------------------------- keys


def test_missing_unknown_revoked_and_suspended_keys_are_refused(
    collector: RunningCollector, landing: Path, postgres: PostgresResource, tenant_key
):
    tenant, key = tenant_key()
    assert error_of(collector.post_events([event(tenant)], None)) == (401, "missing_key")
    unknown = collector.post_events([event(tenant)], key[:-4] + "AAAA")
    assert error_of(unknown) == (401, "invalid_key")
    basic = collector.post("/v1/events", "[{}]", Authorization="Basic dXNlcjpwYXNz")
    assert error_of(basic) == (401, "invalid_authorization")
    _read, read_key = create_key(postgres, tenant, kind="read", actor="test")
    assert error_of(collector.post_events([event(tenant)], read_key)) == (403, "wrong_key_kind")

    assert collector.post_events([event(tenant)], key).status_code == 202
    (record,) = [k for k in list_keys(postgres, tenant) if k.kind == "write"]
    revoke_key(postgres, tenant, record.key_id, actor="test")
    assert error_of(collector.post_events([event(tenant)], key)) == (401, "key_revoked")

    suspended, suspended_key = tenant_key()
    with postgres.transaction() as conn:
        transition(conn, suspended, "suspended", allowed_from=("pending",), actor="test")
    refused = collector.post_events([event(suspended)], suspended_key)
    assert error_of(refused) == (403, "tenant_suspended")
    assert suspended not in refused.text, "an answer never names a tenant"

    landed_events(landing, tenant, 1)  # only the one accepted before the revocation
    assert not (landing / suspended).exists()


# --------------------------------------------------------------------------- bad requests

BOMB = gzip.compress(b"[" + b" " * (64 << 20) + b"]", mtime=0)


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "names"),
    [
        (b'{"eventId":"a"}\n{"eventId":\n', {}, 400, "invalid_json", "line 2"),
        (b'[{"eventId":"a"}, "b"]', {}, 400, "not_an_object", "event 1"),
        (b"[]", {}, 400, "empty_batch", ""),
        (b"  \n", {}, 400, "empty_batch", ""),
        (b"[" + b"{}," * 500 + b"{}]", {}, 413, "too_many_events", "501 events"),
        (b'[{"pad":"' + b"x" * (300 << 10) + b'"}]', {}, 413, "body_too_large", ""),
        (BOMB, {"Content-Encoding": "gzip"}, 413, "body_too_large", ""),
        (b"[{}]", {"Content-Encoding": "br"}, 415, "unsupported_encoding", "br"),
        (b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "unsupported_media_type", "x-www-form-urlencoded"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_naming_the_problem_and_write_nothing(
    collector: RunningCollector, landing: Path, tenant_key, body, headers, status, code, names
):
    tenant, key = tenant_key()
    response = collector.post("/v1/events", body, Authorization=f"Bearer {key}", **{
        name.replace("-", "_"): value for name, value in headers.items()
    })  # fmt: skip
    assert error_of(response) == (status, code), response.text
    assert names in response.json()["error"]["message"]
    assert not (landing / tenant).exists()


def test_collect_refuses_a_batch(collector: RunningCollector, tenant_key):
    tenant, key = tenant_key()
    response = collector.post(
        "/collect", json.dumps([event(tenant)]), Authorization=f"Bearer {key}"
    )
    assert error_of(response) == (400, "not_an_object")


def test_unknown_paths_answer_json(collector: RunningCollector):
    import requests

    response = requests.get(f"{collector.url}/v1/nothing", timeout=10)
    assert error_of(response) == (404, "not_found")


# --------------------------------------------------------------------------- limits


def test_a_tenants_flood_gets_429_and_others_are_served(
    collector: RunningCollector, landing: Path, tenant_key
):
    flood, flood_key = tenant_key("flood")
    calm, calm_key = tenant_key("calm")
    for _ in range(2):  # the burst: 1000 events
        assert collector.post_events([event(flood) for _ in range(500)], flood_key).ok
    time.sleep(0.1)  # a few tokens back: the next request is read, and refused for its size
    refused = collector.post_events([event(flood) for _ in range(100)], flood_key)
    assert error_of(refused) == (429, "rate_limited")
    # 100 events at 50/s are at most 2 s away, and fit once the answer's wait is over.
    wait = int(refused.headers["Retry-After"])
    assert wait <= 2
    assert collector.post_events([event(calm)], calm_key).status_code == 202
    time.sleep(wait)
    assert collector.post_events([event(flood) for _ in range(100)], flood_key).ok
    landed_events(landing, flood, 1100)
    landed_events(landing, calm, 1)


# --------------------------------------------------------------------------- CORS


def test_cors_follows_the_tenants_allowed_origins(
    collector: RunningCollector, landing: Path, postgres: PostgresResource, tenant_key
):
    import requests

    tenant, key = tenant_key()
    origin = f"https://{tenant.replace('_', '-')}.example"
    add_origins(postgres, tenant, [origin], actor="test")
    preflight = requests.options(
        f"{collector.url}/v1/events",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    denied = requests.options(
        f"{collector.url}/collect", headers={"Origin": "https://elsewhere.example"}, timeout=10
    )
    assert error_of(denied) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in denied.headers

    allowed = collector.post_events([event(tenant)], key, Origin=origin)
    assert allowed.status_code == 202
    assert allowed.headers["Access-Control-Allow-Origin"] == origin
    assert allowed.headers["Vary"] == "Origin"
    # Another tenant's origin is not this tenant's: refused, nothing written.
    other, other_key = tenant_key()
    refused = collector.post_events([event(other)], other_key, Origin=origin)
    assert error_of(refused) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in refused.headers
    landed_events(landing, tenant, 1)
    assert not (landing / other).exists()


def test_health_is_ok_on_a_writable_zone(collector: RunningCollector, landing: Path):
    import requests

    response = requests.get(f"{collector.url}/health", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert not [p for p in landing.iterdir() if p.name.startswith(".health")]


# --------------------------------------------------------------------------- loading


def test_landed_segments_load_through_the_file_loader_with_received_at(
    collector: RunningCollector, landing: Path, postgres: PostgresResource, tenant_key
):
    tenant, key = tenant_key()
    good = [event(tenant, "2026-11-02") for _ in range(3)]
    broken = event(tenant, "2026-11-02", eventType="Not Snake")
    assert collector.post_events([*good, broken], key).status_code == 202
    landed_events(landing, tenant, 4)
    resource = LandingZoneResource(root=str(landing))
    with postgres.transaction() as conn:
        report = load_tenant_day(
            postgres, conn, resource, TenantDay(tenant, dt.date(2026, 11, 2)), "r"
        )
    assert (report.rows_loaded, report.rows_quarantined) == (3, 1)
    assert report.reasons == {"wrong_type": 1}
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT event_id, received_at FROM raw.file_events WHERE tenant_id = %s", (tenant,)
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(e["eventId"] for e in good)
    assert all(r[1] is not None for r in rows)
