"""A single-run backfill: one dbt invocation for many tenant-days, same marts as per-partition."""

from __future__ import annotations

import datetime as dt
import gzip

from dagster import DagsterEventType

from analytics_platform.demo.generator import generate_landing
from analytics_platform.partitions import range_tags
from analytics_platform_tests.test_pipeline import run_pipeline

START = dt.date(2026, 9, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(30)]


def marts_by_day(postgres, tenant, days):
    """Sessions and daily metrics of the tenant on `days`, tenant and ids left out."""
    with postgres.connect() as conn:
        sessions = conn.execute(
            "SELECT session_date, visitor_id, session_start, session_end, page_views, events, "
            "channel, converted, revenue FROM marts.fct_sessions WHERE tenant_id = %s "
            "AND session_date = ANY(%s) ORDER BY session_start, visitor_id",
            (tenant, days),
        ).fetchall()
        daily = conn.execute(
            # Each tenant's events name no site, so its site is its own id: left out too.
            "SELECT to_jsonb(m) - 'tenant_id' - 'site_id' FROM marts.fct_daily_metrics m "
            "WHERE tenant_id = %s AND event_date = ANY(%s) ORDER BY event_date",
            (tenant, days),
        ).fetchall()
    return sessions, daily


def copy_tenant_files(landing_dir, source: str, target: str, days) -> None:
    """The same events under another tenant: files copied with the tenant id rewritten."""
    for day in days:
        for path in (landing_dir / source / day.isoformat()).iterdir():
            data = path.read_bytes()
            gz = path.name.endswith(".gz")
            text = (gzip.decompress(data) if gz else data).replace(source.encode(), target.encode())
            out = landing_dir / target / day.isoformat() / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(gzip.compress(text, mtime=0) if gz else text)


def test_one_run_for_three_tenants_by_thirty_days_runs_dbt_once_per_layer_and_matches_per_partition(
    platform_env, landing_dir, postgres, instance, new_tenant
):
    tenants = [new_tenant("bf") for _ in range(3)]
    generated = generate_landing(landing_dir, tenants, DAYS, events_per_day=15)
    instance.add_dynamic_partitions("tenants", tenants)

    result = run_pipeline(instance, tags=range_tags(tenants, DAYS))
    assert result.success
    dbt_commands = [
        event
        for event in instance.all_logs(result.run_id)
        if event.user_message.startswith("Running dbt command")
    ]
    assert len(dbt_commands) == 2  # one per layer (staging, marts), not 2 x 90
    dbt_steps = [
        e.step_key
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_START and e.step_key.startswith("analytics_dbt_")
    ]
    assert sorted(dbt_steps) == ["analytics_dbt_marts", "analytics_dbt_staging"]
    for tenant in tenants:
        totals = generated.totals(tenant)
        sessions, daily = marts_by_day(postgres, tenant, DAYS)
        assert len(sessions) == totals["sessions"]
        assert sum(row[4] for row in sessions) == totals["page_views"]
        assert len(daily) == len(DAYS)

    # The same events for a fourth tenant, built one partition (one run) at a time.
    first = tenants[0]
    per_partition = new_tenant("bf")
    some_days = DAYS[:2]  # across a midnight: enough to compare, and each run costs ~15 s
    copy_tenant_files(landing_dir, first, per_partition, some_days)
    instance.add_dynamic_partitions("tenants", [per_partition])
    for day in some_days:
        assert run_pipeline(instance, partition_key=f"{day}|{per_partition}").success

    sessions, daily = marts_by_day(postgres, per_partition, some_days)
    expected_sessions, expected_daily = marts_by_day(postgres, first, some_days)
    # Visitor ids embed the tenant id: compare them with it renamed back.
    assert [(r[0], r[1].replace(per_partition, first), *r[2:]) for r in sessions] == [
        tuple(r) for r in expected_sessions
    ]
    assert daily == expected_daily
