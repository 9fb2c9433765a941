"""`replayed_days_sensor`: after a quarantine replay, rebuild the layers below raw for its days.

A replay (`reprocess_quarantine`) moves rows into raw for any days of a tenant's
history, often a long stretch months back. Left to automation, they would be
rebuilt one run per date; so replay runs carry the pipeline tag (automation
ignores their updates), and when one succeeds this sensor reads which tenant-days
it changed (its raw_file_events materializations) and starts `rebuild_tenant_days`
for them: one run per tenant and stretch of consecutive days, since one ranged run
rebuilds a stretch in one statement per model.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SkipReason,
    run_status_sensor,
)

from analytics_platform.jobs import rebuild_tenant_days, reprocess_quarantine
from analytics_platform.partitions import Rectangle, parse_tenant_day
from analytics_platform.shard import asset_key

REPLAY_OF_TAG = "analytics_platform/replay_of"
RAW_FILE_EVENTS = asset_key("raw_file_events")


def replayed_days(instance: DagsterInstance, run_id: str) -> dict[str, list[dt.date]]:
    """The days of each tenant whose raw rows the run changed, sorted."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    days: dict[str, set[dt.date]] = defaultdict(set)
    for record in records:
        materialization = record.event_log_entry.dagster_event.event_specific_data.materialization
        if materialization.asset_key == RAW_FILE_EVENTS and materialization.partition:
            slice_ = parse_tenant_day(materialization.partition)
            days[slice_.tenant].add(slice_.date)
    return {tenant: sorted(dates) for tenant, dates in sorted(days.items())}


def stretches(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as (first, last) stretches of consecutive days."""
    found: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if found and day == found[-1][1] + dt.timedelta(days=1):
            found[-1] = (found[-1][0], day)
        else:
            found.append((day, day))
    return found


def rebuild_requests(run_id: str, replayed: dict[str, list[dt.date]]) -> list[RunRequest]:
    """One `rebuild_tenant_days` run per tenant and stretch of consecutive replayed days."""
    requests = []
    for tenant, days in replayed.items():
        for first, last in stretches(days):
            rectangle = Rectangle((tenant,), first, last)
            requests.append(
                RunRequest(
                    run_key=f"replay:{run_id}:{tenant}:{first}:{last}",
                    partition_key=rectangle.partition_key(),
                    tags={**rectangle.tags(), "tenant": tenant, REPLAY_OF_TAG: run_id},
                )
            )
    return requests


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[reprocess_quarantine],
    request_job=rebuild_tenant_days,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description=(
        "After a successful `reprocess_quarantine` run, starts `rebuild_tenant_days` for "
        "every tenant-day whose raw rows it changed, however old."
    ),
)
def replayed_days_sensor(context: RunStatusSensorContext):
    run_id = context.dagster_run.run_id
    requests = rebuild_requests(run_id, replayed_days(context.instance, run_id))
    return requests or SkipReason(f"replay {run_id} moved no rows into raw")
