"""New raw data for any tenant-day rebuilds that day's staging, marts and serving by itself."""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    evaluate_automation_conditions,
    job,
    op,
    serialize_value,
)

from analytics_platform.automation import PIPELINE_RUN_TAG
from analytics_platform.definitions import defs

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


def test_raw_updates_request_every_layer_below_for_that_partition_only():
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme", "globex"])
        quiet = evaluate_automation_conditions(defs=defs, instance=instance)
        assert quiet.total_requested == 0  # nothing loaded, nothing to build

        # An old day (not the latest partition): late files and replays land there too.
        key = "2026-03-04|acme"
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="raw_file_events", partition=key)
        )
        woken = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        for name in DOWNSTREAM:
            assert woken.get_requested_partitions(AssetKey(name)) == {key}, name
        assert woken.get_requested_partitions(AssetKey("raw_file_events")) == set()

        again = evaluate_automation_conditions(defs=defs, instance=instance, cursor=woken.cursor)
        assert again.total_requested == 0  # handled once, not on every tick


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


def test_the_automation_cursor_stays_small_as_tenants_and_days_grow():
    """No condition keeps a subset of every partition in the cursor (Dagster's
    initial-evaluation reset does: 400,000 keys per asset at 1,000 tenants x 400 days)."""
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", [f"t{i:03d}" for i in range(50)])
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        # With since_last_handled() it was 4.2 MB here (50 tenants x every day since
        # PLATFORM_START_DATE x 13 assets); now 84 kB, the same at 100 tenants.
        assert len(serialize_value(first.cursor)) < 200_000


@op
def report_raw_days(context) -> None:
    """Raw rows of several tenant-days changed by one run, as a quarantine replay does."""
    for key in context.op_config["partitions"]:
        context.log_event(AssetMaterialization(asset_key="raw_file_events", partition=key))


@job
def raw_changing_job():
    report_raw_days()


def run_changing_raw(instance, partitions: list[str], tags: dict[str, str]) -> None:
    config = {"ops": {"report_raw_days": {"config": {"partitions": partitions}}}}
    assert raw_changing_job.execute_in_process(
        run_config=config, instance=instance, tags=tags
    ).success


def test_a_pipeline_run_that_changed_several_tenant_days_wakes_automation_for_none():
    """Every partition's own run decides, not only the asset's latest materialization
    (Dagster's executed_with_tags reads that one alone: the other tenant-days of a
    multi-tenant pipeline run or a replay used to be rebuilt a second time)."""
    changed = ["2026-03-04|acme", "2026-03-04|globex", "2026-03-05|acme"]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme", "globex"])
        # A deployment's event log is never empty: a tick's window starts at its newest event.
        run_changing_raw(instance, ["2026-03-01|acme"], {PIPELINE_RUN_TAG: "true"})
        quiet = evaluate_automation_conditions(defs=defs, instance=instance)
        run_changing_raw(instance, changed, {PIPELINE_RUN_TAG: "true"})
        after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert after.total_requested == 0

        # The same changes from an untagged run (a hand-made fix) rebuild all three.
        run_changing_raw(instance, changed, {})
        woken = evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
        assert woken.get_requested_partitions(AssetKey("stg_events")) == set(changed)


def test_a_partition_changed_by_both_kinds_of_run_since_the_last_tick_is_rebuilt():
    """A pipeline run does not hide an outside change made to the same tenant-day."""
    key = "2026-03-04|acme"
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        run_changing_raw(instance, ["2026-03-01|acme"], {PIPELINE_RUN_TAG: "true"})
        quiet = evaluate_automation_conditions(defs=defs, instance=instance)
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="raw_file_events", partition=key)
        )
        run_changing_raw(instance, [key], {PIPELINE_RUN_TAG: "true"})
        woken = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert woken.get_requested_partitions(AssetKey("stg_events")) == {key}
