"""Failure isolation: one tenant's bad slice never stops another tenant, nor its own other days.

Two mechanisms, both exercised here on real Postgres, dbt and chDB:
- every check (Pandera and dbt tests) judges the run's own tenant-days only;
- a run over several tenant-days that fails a blocking check is re-requested in
  halves by the `split_failed_runs` sensor until the bad slice fails alone.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    materialize,
)

from analytics_platform.partitions import Rectangle, TenantDay, range_tags, tenants_partitions
from analytics_platform.sensors.split_failed_runs import SPLIT_OF_TAG, evaluate_failed_runs
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_pipeline import ALL_ASSETS, run_pipeline

DAY = dt.date(2026, 10, 14)
# The refund rule of staging, a dbt test (stg_events.yml).
STAGING_REVENUE = AssetCheckKey.from_user_string("stg_events:within_range_stg_events_revenue__0")


def land_day(landing_dir, tenant: str, day: dt.date, visitors: int = 3) -> None:
    events = [
        tracker_event(f"{tenant}-{day}-{i}", f"v{i}", f"{day}T10:0{i}:00Z", session=f"s{i}")
        for i in range(visitors)
    ]
    write_lines(day_file(landing_dir, tenant, day), events)


def poison_day(postgres, tenant: str, day: dt.date) -> None:
    """A raw API event the file pipeline never rewrites, which staging's check refuses."""
    with postgres.transaction() as conn:
        conn.execute(
            "INSERT INTO raw.api_events (event_id, tenant_id, event_type, occurred_at, visitor_id,"
            " revenue, _partition_date, _source, _source_line) "
            "VALUES ('poison', %s, 'purchase', %s, 'vp', -5, %s, 'test://poison', 1)",
            (tenant, dt.datetime.combine(day, dt.time(9), dt.timezone.utc), day),
        )


def staged_days(postgres, tenant: str) -> list[dt.date]:
    with postgres.connect() as conn:
        if conn.execute("SELECT to_regclass('marts.fct_daily_metrics')").fetchone()[0] is None:
            return []  # no marts run has happened yet in this session
        rows = conn.execute(
            "SELECT DISTINCT event_date FROM marts.fct_daily_metrics WHERE tenant_id = %s "
            "ORDER BY 1",
            (tenant,),
        ).fetchall()
    return [row[0] for row in rows]


def check_passed(result, key: AssetCheckKey) -> bool:
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == key]
    assert evaluations, f"{key.to_user_string()} did not run"
    return all(e.passed for e in evaluations)


@pytest.fixture
def registered(instance: DagsterInstance, new_tenant):
    def register(count: int) -> list[str]:
        tenants = [new_tenant("iso") for _ in range(count)]
        instance.add_dynamic_partitions(tenants_partitions.name, tenants)
        return tenants

    return register


def test_a_dbt_test_judges_only_the_runs_tenant_days(
    platform_env, postgres, landing_dir, instance, registered
):
    bad, good = registered(2)
    land_day(landing_dir, bad, DAY)
    assert run_pipeline(instance, partition_key=TenantDay(bad, DAY).partition_key).success
    # Two sessions of `bad` with one id, on a day no later run rebuilds: the table now
    # breaks fct_sessions' unique (tenant_id, session_id) test, in `bad`'s old slice only.
    old_day = DAY - dt.timedelta(days=20)
    with postgres.transaction() as conn:
        for _ in range(2):
            conn.execute(
                "INSERT INTO marts.fct_sessions SELECT * FROM marts.fct_sessions "
                "WHERE tenant_id = %s AND session_date = %s LIMIT 1",
                (bad, DAY),
            )
        conn.execute(
            "UPDATE marts.fct_sessions SET session_date = %s, session_id = 'dup' "
            "WHERE ctid IN (SELECT ctid FROM marts.fct_sessions "
            "WHERE tenant_id = %s AND session_date = %s LIMIT 2)",
            (old_day, bad, DAY),
        )
    marts = next(a for a in ALL_ASSETS if AssetKey("fct_sessions") in getattr(a, "keys", ()))
    unique_sessions = next(
        key
        for key in marts.check_keys
        if key.asset_key == AssetKey("fct_sessions") and key.name.startswith("unique_combination")
    )
    land_day(landing_dir, good, DAY)
    result = run_pipeline(instance, partition_key=TenantDay(good, DAY).partition_key)
    assert result.success, "a tenant's run failed on another tenant's duplicate"
    assert check_passed(result, unique_sessions)
    # The bad slice is still there and still fails whoever judges it.
    with postgres.connect() as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM marts.fct_sessions WHERE tenant_id = %s AND session_id = 'dup'",
            (bad,),
        ).fetchone()[0]
    assert duplicates == 2


def test_a_bad_day_fails_alone_and_its_neighbours_build(
    platform_env, postgres, landing_dir, instance, registered
):
    (tenant,) = registered(1)
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    for day in days:
        land_day(landing_dir, tenant, day)
    poison_day(postgres, tenant, days[1])
    bad = run_pipeline(
        instance, partition_key=TenantDay(tenant, days[1]).partition_key, raise_on_error=False
    )
    assert not bad.success
    assert not check_passed(bad, STAGING_REVENUE)
    for day in (days[0], days[2]):  # each rebuilds the bad day as its neighbour
        result = run_pipeline(instance, partition_key=TenantDay(tenant, day).partition_key)
        assert result.success, f"{day} was blocked by its bad neighbour {days[1]}"
    assert staged_days(postgres, tenant) == [days[0], days[2]]


def run_request(requests: list[RunRequest], instance, resources):
    """Execute a sensor's run request in-process, as the daemon would launch it."""
    (request,) = requests
    return materialize(
        ALL_ASSETS,
        selection=request.asset_selection,
        partition_key=request.partition_key,
        tags=request.tags,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )


def test_a_failed_run_over_several_tenants_is_split_until_the_bad_one_fails_alone(
    platform_env, postgres, landing_dir, instance, registered, resources
):
    tenants = registered(3)
    bad = tenants[1]
    for tenant in tenants:
        land_day(landing_dir, tenant, DAY)
    poison_day(postgres, bad, DAY)
    first = run_pipeline(instance, tags=range_tags(tenants, [DAY]), raise_on_error=False)
    assert not first.success
    assert all(staged_days(postgres, t) == [] for t in tenants)

    halves, cursor, split = evaluate_failed_runs(instance, None)
    assert split == [first.run_id]
    assert [r.tags[SPLIT_OF_TAG] for r in halves] == [first.run_id] * 2
    assert {r.run_key for r in halves} == {f"split:{first.run_id}:0", f"split:{first.run_id}:1"}
    # Halves by tenant: [t0] alone (a plain partition) and [t1, t2] (a range).
    assert halves[0].partition_key == TenantDay(tenants[0], DAY).partition_key
    assert halves[1].tags["dagster/asset_partition_range_start"] == (
        TenantDay(tenants[1], DAY).partition_key
    )
    # The same assets and checks as the failed run, never more.
    assert STAGING_REVENUE in set(halves[1].asset_check_keys)

    runs = [run_request([r], instance, resources) for r in halves]
    assert runs[0].success and not runs[1].success
    # The sensor already looked at the first failure; the failed half is split in turn.
    again, cursor, _ = evaluate_failed_runs(instance, cursor)
    assert {r.partition_key for r in again} == {
        TenantDay(bad, DAY).partition_key,
        TenantDay(tenants[2], DAY).partition_key,
    }
    last = {r.partition_key: run_request([r], instance, resources) for r in again}
    assert last[TenantDay(tenants[2], DAY).partition_key].success
    assert not last[TenantDay(bad, DAY).partition_key].success
    # A single tenant-day is never split further.
    final, _, _ = evaluate_failed_runs(instance, cursor)
    assert final == []
    assert [t for t in tenants if staged_days(postgres, t) == [DAY]] == [tenants[0], tenants[2]]


def test_a_landing_run_of_several_tenants_loads_each_and_a_bad_one_ends_alone(
    platform_env, postgres, landing_dir, instance, registered, resources
):
    """The landing sensor starts one run for a day's files of several tenants: raw loads
    every tenant's rows and quarantines a bad line under its own tenant; a tenant whose
    data fails a check fails that run, and the split sensor's halves build all the others."""
    from analytics_platform_tests.test_landing_sensor import Harness, covered, requests

    tenants = registered(3)
    with postgres.transaction() as conn:
        for tenant in tenants:
            conn.execute(
                "INSERT INTO platform.tenants (tenant_id, display_name, status) "
                "VALUES (%s, %s, 'active')",
                (tenant, tenant),
            )
    for tenant in tenants:
        land_day(landing_dir, tenant, DAY)
    write_lines(day_file(landing_dir, tenants[2], DAY, "broken.jsonl"), ["{not json"])
    bad = tenants[1]
    poison_day(postgres, bad, DAY)
    harness = Harness(landing_dir, postgres)
    harness.partitions = instance.get_dynamic_partitions(tenants_partitions.name)
    (request,) = requests(harness.tick())
    assert covered(request, tenants) == [TenantDay(t, DAY) for t in tenants]

    first = run_request([request], instance, resources)
    assert not first.success and not check_passed(first, STAGING_REVENUE)
    with postgres.connect() as conn:
        loaded = conn.execute(
            "SELECT tenant_id, count(*) FROM raw.file_events WHERE tenant_id = ANY(%s) "
            "GROUP BY 1 ORDER BY 1",
            (tenants,),
        ).fetchall()
        records = conn.execute(
            "SELECT tenant_id, partition_date, source, reason FROM platform.quarantine "
            "WHERE layer = 'raw_file_events' AND tenant_id = ANY(%s)",
            (tenants,),
        ).fetchall()
    assert loaded == sorted((t, 3) for t in tenants)
    assert records == [(tenants[2], DAY, f"{tenants[2]}/{DAY}/broken.jsonl", "invalid_json")]

    cursor = None
    for _ in range(3):  # halves, then quarters: log2(3) rounds at most
        halves, cursor, _ = evaluate_failed_runs(instance, cursor)
        for half in halves:
            run_request([half], instance, resources)
    assert evaluate_failed_runs(instance, cursor)[0] == []
    assert [t for t in tenants if staged_days(postgres, t) == [DAY]] == [tenants[0], tenants[2]]
    assert staged_days(postgres, bad) == []


def test_a_run_is_halved_by_tenant_first_then_by_day():
    d = dt.date(2026, 3, 1)
    rect = Rectangle(("a1", "b2", "c3"), d, d + dt.timedelta(days=4))
    assert [h.tenants for h in rect.halves()] == [("a1",), ("b2", "c3")]
    one = Rectangle(("a1",), d, d + dt.timedelta(days=4))
    assert [(h.start, h.end) for h in one.halves()] == [
        (d, d + dt.timedelta(days=1)),
        (d + dt.timedelta(days=2), d + dt.timedelta(days=4)),
    ]
    covered = {
        (t, h.start + dt.timedelta(days=i))
        for h in one.halves()
        for t in h.tenants
        for i in range((h.end - h.start).days + 1)
    }
    assert len(covered) == one.size


def test_the_split_sensor_runs_by_default():
    from analytics_platform.definitions import defs

    sensor = defs.resolve_sensor_def("split_failed_runs")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
