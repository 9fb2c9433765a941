"""When the layers below raw rebuild by themselves.

Dagster's `eager()` condition only considers the latest daily partition; late
files, replayed quarantine rows and API catch-ups land on older days, so the
platform uses eager without that restriction: a partition is rebuilt when any
upstream partition updated, once none of its upstreams are missing or running.
"""

from dagster import AutomationCondition

on_upstream_update = (
    AutomationCondition.eager()
    .without(AutomationCondition.in_latest_time_window())
    .with_label("eager (any day)")
)
