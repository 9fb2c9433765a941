"""New raw data for a tenant-day of the newest days rebuilds its staging, marts and serving."""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    evaluate_automation_conditions,
)

from analytics_platform.definitions import defs
from analytics_platform.settings import automation_window_days

DOWNSTREAM = [
    "stg_events",
    "fct_sessions",
    "fct_daily_metrics",
    "fct_channel_daily",
    "dim_visitors",
    "serving_daily_metrics",
    "serving_sessions",
    "serving_channel_daily",
    "fct_funnel_daily",
    "serving_funnel_daily",
    "serving_visitors",
]


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def test_raw_updates_request_every_layer_below_for_that_partition_only():
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme", "globex"])
        quiet = evaluate_automation_conditions(defs=defs, instance=instance)
        assert quiet.total_requested == 0  # nothing loaded, nothing to build

        # A day inside the window but not the latest partition: late files land there too.
        key = f"{today() - dt.timedelta(days=automation_window_days())}|acme"
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="raw_file_events", partition=key)
        )
        woken = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        for name in DOWNSTREAM:
            assert woken.get_requested_partitions(AssetKey(name)) == {key}, name
        assert woken.get_requested_partitions(AssetKey("raw_file_events")) == set()

        again = evaluate_automation_conditions(defs=defs, instance=instance, cursor=woken.cursor)
        assert again.total_requested == 0  # handled once, not on every tick


def test_automation_leaves_days_older_than_its_window_to_the_runs_that_change_them():
    """A tick evaluates tenants x window partitions; older days are rebuilt by runs
    (rebuild_tenant_days, test_reprocess.py), never by automation."""
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        oldest_in = today() - dt.timedelta(days=automation_window_days())
        outside = oldest_in - dt.timedelta(days=1)
        for day in (outside, oldest_in):
            instance.report_runless_asset_event(
                AssetMaterialization(asset_key="raw_file_events", partition=f"{day}|acme")
            )
        woken = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert woken.get_requested_partitions(AssetKey("stg_events")) == {f"{oldest_in}|acme"}


def requested(result, key) -> int:
    """How many times the evaluation requested `key` (a check counts once, unpartitioned)."""
    return sum(r.true_subset.size for r in result.results if r.key == key)


def test_the_tenant_freshness_check_runs_hourly_and_never_rides_along_with_staging():
    fresh = AssetCheckKey(AssetKey("stg_events"), "every_active_tenant_fresh")
    start = dt.datetime(2026, 11, 20, 10, 20, tzinfo=dt.timezone.utc)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        first = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=start)
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="stg_events", partition="2026-11-19|acme")
        )
        before_tick = evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=start + dt.timedelta(minutes=30),
        )
        assert requested(before_tick, fresh) == 0  # staging updated; no tick yet
        after_tick = evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            cursor=before_tick.cursor,
            evaluation_time=start + dt.timedelta(minutes=56),  # 11:16, past 11:15
        )
        assert requested(after_tick, fresh) == 1


def test_a_tenant_registered_later_starts_no_backfill_of_its_empty_history():
    """A new tenant adds a partition for every day since PLATFORM_START_DATE: none has data."""
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        instance.add_dynamic_partitions("tenants", ["globex"])
        later = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert later.total_requested == 0
