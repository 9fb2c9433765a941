"""When the layers below raw rebuild by themselves.

Dagster's `eager()` condition only considers the latest daily partition; late
files, replayed quarantine rows and API catch-ups land on older days, so the
platform uses eager without that restriction: a partition is rebuilt when any
upstream partition updated, once none of its upstreams are missing or running
(a raw source never loaded for the day does not count as missing).

Nor does it keep eager's other half, "build partitions that become missing": a
tenant registered while the daemon runs adds a `tenants` partition, so every
day since PLATFORM_START_DATE of every layer becomes missing at once, and eager
would launch a backfill of all of them (4,342 asset-partitions for one tenant on
2026-12-01) with no raw data to build from. Raw data arrives by runs that
already build the layers below; only updates outside such runs need automation.

Its "since the last time it was handled" leaves out Dagster's initial-evaluation reset:
that reset is true for every partition on a condition's first tick, and Dagster keeps
it in the sensor's cursor as the list of every partition key of every asset (400,000
each at 1,000 tenants x 400 days). Writing that cursor and reading it back made the
tick after it take 61.7 s; without the reset it takes 0.82 s
(benchmarks/scale_automation.py). On a first tick nothing is newly updated, so the
reset changed no request.
"""

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

# Runs of the pipeline jobs (tenant_day_pipeline, api_events_pipeline) build every layer
# below raw themselves; their job tags carry this key.
PIPELINE_RUN_TAG = "analytics_platform/pipeline"

# Dagster's any_deps_updated ignores a parent updated by a run that also targets this
# asset only when the run names an asset selection; a run of an asset job (the sensors',
# the schedules', the launchpad's) names none. Without the tag test, an automation tick
# that falls between two steps of a pipeline run rebuilds the marts it is about to build.
#
# The tag test reads the runs of every new materialization of each partition.
# `executed_with_tags` would not do: it reads only the asset's latest materialization, so
# every other tenant-day of a multi-tenant run or a replay counted as changed outside a
# pipeline run and was rebuilt a second time.
updated_outside_pipeline_runs = (
    AutomationCondition.newly_updated()
    & ~AutomationCondition.executed_with_root_target()
    & ~AutomationCondition.all_new_updates_have_run_tags(tag_keys={PIPELINE_RUN_TAG})
).with_label("updated outside a pipeline run")

# since_last_handled() without its initial_evaluation() (see the module docstring).
handled = (AutomationCondition.newly_requested() | AutomationCondition.newly_updated()).with_label(
    "handled"
)

on_upstream_update = (
    AutomationCondition.any_deps_match(
        updated_outside_pipeline_runs | AutomationCondition.will_be_requested()
    )
    .with_label("any_deps_updated")
    .since(handled)
    # Raw sources are alternatives (a tenant may send files, API events or both): one
    # that never loaded a tenant-day does not hold back the layers below it.
    & ~AutomationCondition.any_deps_missing().ignore(AssetSelection.groups("raw"))
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("eager (any day, on upstream updates only)")

# Dagster's default automation sensor starts out stopped, so none of the conditions above
# would run under the daemon until someone switched it on in the UI. This one replaces it
# and is on from the first start. It is evaluated in the daemon (not the code server),
# every 30 s: each tick reads the event log for the partitions that changed since the last.
platform_automation_sensor = AutomationConditionSensorDefinition(
    name="platform_automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Evaluates every asset's and check's automation condition: rebuilds the layers below "
        "a raw tenant-day that changed outside a pipeline run, and runs the hourly checks."
    ),
)
