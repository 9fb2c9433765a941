"""New raw data for any tenant-day rebuilds that day's staging, marts and serving by itself."""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    evaluate_automation_conditions,
)

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
