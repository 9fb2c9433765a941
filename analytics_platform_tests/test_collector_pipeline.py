"""End to end through the front door: events POSTed to a real collector -> landing segments
-> landing sensor -> raw -> staging -> marts -> each tenant's ClickHouse database."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
import requests

from analytics_platform.demo.collector_feed import collector_process
from analytics_platform.partitions import TenantDay, range_tags
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.sensors.landing import LandingCursor, evaluate_landing
from analytics_platform.tenants.keys import create_key
from analytics_platform.tenants.registry import register_tenant, transition
from analytics_platform_tests.events import tracker_event
from analytics_platform_tests.test_landing_sensor import covered
from analytics_platform_tests.test_pipeline import run_pipeline, serving_rows

DAYS = [dt.date(2026, 11, 9), dt.date(2026, 11, 10)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def active_tenants(postgres, new_tenant):
    """Two registered, active tenants, each with a write key: {tenant: secret}."""
    keys = {}
    for _ in range(2):
        tenant = new_tenant("front")
        register_tenant(postgres, tenant, actor="test")
        with postgres.transaction() as conn:
            transition(conn, tenant, "active", allowed_from=("pending",), actor="test")
        keys[tenant] = create_key(postgres, tenant, kind="write", actor="test")[1]
    return keys


def post(url: str, secret: str, events: list[object], *, ndjson: bool = False) -> int:
    """POST a batch; the number of events the collector acknowledged (after fsync)."""
    import json

    headers = {"Authorization": f"Bearer {secret}"}
    if ndjson:
        body = "\n".join(json.dumps(e) for e in events) + "\n"
        answer = requests.post(f"{url}/v1/events", data=body, headers=headers, timeout=30)
    else:
        answer = requests.post(f"{url}/v1/events", json=events, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["accepted"]


@pytest.mark.slow
def test_posted_events_reach_each_tenants_clickhouse_counted_once_with_receive_times(
    active_tenants, postgres, clickhouse, landing_dir, instance, platform_env, tmp_path
):
    (first, first_key), (second, second_key) = active_tenants.items()
    d1, d2 = (day.isoformat() for day in DAYS)
    first_events = [
        tracker_event("a1", "v1", f"{d1}T09:00:00Z"),
        tracker_event("a2", "v1", f"{d1}T09:05:00Z", path="/pricing"),
        tracker_event("a3", "v2", f"{d1}T15:00:00Z", session="s2"),
        tracker_event("a4", "v1", f"{d2}T08:00:00Z"),
        # Parses, so the collector takes it; breaks the contract, so raw does not.
        {"eventId": "a_bad", "eventType": "page_view", "timestamp": f"{d1}T10:00:00Z"},
    ]
    second_events = [
        tracker_event("b1", "w1", f"{d1}T11:00:00Z"),
        tracker_event("b2", "w2", f"{d2}T12:00:00Z"),
        tracker_event("b3", "w2", f"{d2}T12:01:00Z", event_type="signup"),
    ]
    env = {
        **os.environ,
        **platform_env,
        # Only SIGTERM closes the segments here: none is renamed by age during the test.
        "COLLECTOR_SEGMENT_MAX_AGE_SECONDS": "600",
    }
    landing = LandingZoneResource(root=str(landing_dir), settle_seconds=0)
    cursor = LandingCursor()
    before = dt.datetime.now(dt.timezone.utc)
    with collector_process(env, tmp_path / "collector.log", REPO) as collector:
        collector.wait_healthy()
        acked = {
            first: post(collector.url, first_key, first_events)
            # The tracker retries a2 in another request: delivered twice.
            + post(collector.url, first_key, [first_events[1]]),
            second: post(collector.url, second_key, second_events, ndjson=True),
        }
        # Acknowledged, but still open (*.tmp): the sensor takes nothing yet.
        open_tick = evaluate_landing(landing, postgres, set(), cursor, time.time())
        assert "no new landing files" in open_tick.skip_message
        assert len(list(landing_dir.rglob("*.tmp"))) == 4  # one per tenant-day
    after = dt.datetime.now(dt.timezone.utc)
    assert collector.process.returncode == 0  # SIGTERM: stopped cleanly
    assert acked == {first: 6, second: 3}
    assert list(landing_dir.rglob("*.tmp")) == []

    tick = evaluate_landing(landing, postgres, set(), cursor, time.time() + 1)
    (add,) = tick.dynamic_partitions_requests
    assert sorted(add.partition_keys) == sorted([first, second])
    # One run per day, covering both tenants (a range over the partitions it adds).
    assert [covered(r, list(add.partition_keys)) for r in tick.run_requests] == [
        [TenantDay(t, day) for t in add.partition_keys] for day in DAYS
    ]
    instance.add_dynamic_partitions("tenants", list(add.partition_keys))

    # One run for all four tenant-days (a range spans partitions in the order added).
    in_order = instance.get_dynamic_partitions("tenants")
    result = run_pipeline(instance, tags=range_tags(in_order, DAYS))
    assert result.success

    with postgres.connect() as conn:
        raw = conn.execute(
            "SELECT tenant_id, event_id, _source, received_at FROM raw.file_events "
            "WHERE tenant_id = ANY(%s) ORDER BY tenant_id, event_id",
            ([first, second],),
        ).fetchall()
        quarantined = conn.execute(
            "SELECT tenant_id, partition_date, reason, source, raw_text FROM platform.quarantine "
            "WHERE tenant_id = ANY(%s)",
            ([first, second],),
        ).fetchall()
        staged = dict(
            conn.execute(
                "SELECT tenant_id, count(*) FROM staging.stg_events "
                "WHERE tenant_id = ANY(%s) GROUP BY tenant_id",
                ([first, second],),
            ).fetchall()
        )
        retried = conn.execute(
            "SELECT count(*) FROM staging.stg_events WHERE tenant_id = %s AND event_id = 'a2'",
            (first,),
        ).fetchone()[0]

    # raw holds every acknowledged event that keeps the contract, the retry included...
    assert sorted((t, e) for t, e, _, _ in raw) == sorted(
        [(first, e) for e in ("a1", "a2", "a2", "a3", "a4")]
        + [(second, e) for e in ("b1", "b2", "b3")]
    )
    # ...each loaded from a collector segment, with the collector's receive time.
    for tenant, _, source, received_at in raw:
        assert source.startswith(f"{tenant}/") and "/collector-" in source, source
        assert source.endswith(".jsonl")
        assert before - dt.timedelta(seconds=1) <= received_at <= after
    # The contract-breaking one is in quarantine with its reason, from its segment.
    ((tenant, day, reason, source, text),) = quarantined
    assert (tenant, day, reason) == (first, DAYS[0], "missing_field")
    assert "/collector-" in source and '"a_bad"' in text
    # Staging keeps one copy of the event delivered twice.
    assert retried == 1
    assert staged == {first: 4, second: 3}

    # Each tenant's ClickHouse database serves its own events, day by day.
    assert [(day, events) for day, *_, events in serving_rows(clickhouse, first)] == [
        (d1, 3),
        (d2, 1),
    ]
    assert [(day, events) for day, *_, events in serving_rows(clickhouse, second)] == [
        (d1, 1),
        (d2, 2),
    ]
