"""When the layers below raw rebuild by themselves.

Dagster's `eager()` condition only considers the latest daily partition; late
files, replayed quarantine rows and API catch-ups land on older days, so the
platform uses eager without that restriction: a partition is rebuilt when any
upstream partition updated, once none of its upstreams are missing or running
(a raw source never loaded for the day does not count as missing).
"""

from dagster import AssetSelection, AutomationCondition

on_upstream_update = (
    AutomationCondition.eager()
    .without(AutomationCondition.in_latest_time_window())
    # Raw sources are alternatives (a tenant may send files, API events or both): one
    # that never loaded a tenant-day does not hold back the layers below it.
    .replace(
        "any_deps_missing",
        AutomationCondition.any_deps_missing().ignore(AssetSelection.groups("raw")),
    )
    .with_label("eager (any day)")
)
