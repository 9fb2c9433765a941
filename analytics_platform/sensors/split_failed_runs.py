"""`split_failed_runs`: a run that failed on bad data is retried in halves.

Dagster records a step's outcome for every partition of its run, and dbt builds
all of a run's tenant-days in one invocation, so in a run covering several
tenant-days one bad slice fails them all. Runs covering several tenant-days are
common: Dagster's single-run policy groups what automation and UI backfills
request by date, so one run holds every tenant that updated that day.

This sensor isolates the bad slice the Dagster way, with more runs rather than
partial results: a failed run that covered several tenant-days and recorded a
failed blocking check (a Pandera check or a dbt test) is re-requested as two
runs, each covering half of its tenants (or, for one tenant, half of its days),
with the same assets and checks. Halves that fail are split again, so after at
most log2(tenant-days) rounds every good slice is built and the bad one fails
alone, in a run that names it. A run that failed for another reason (a killed
worker, a database down) is left to Dagster's run retries.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from analytics_platform.partitions import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    Rectangle,
    parse_tenant_day,
    tenants_partitions,
)

SPLIT_OF_TAG = "analytics_platform/split_of"
# Failed runs looked at per tick; the rest wait for the next tick.
RUNS_PER_TICK = 50


def run_rectangle(run: DagsterRun, registered: Sequence[str]) -> Rectangle | None:
    """The rectangle of a ranged run, from its range tags (None: not a ranged run)."""
    start_key = run.tags.get(ASSET_PARTITION_RANGE_START_TAG)
    end_key = run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not start_key or not end_key:
        return None
    first, last = parse_tenant_day(start_key), parse_tenant_day(end_key)
    if first.tenant not in registered or last.tenant not in registered:
        return None  # a tenant was deprovisioned since: nothing sensible to retry
    tenants = registered[registered.index(first.tenant) : registered.index(last.tenant) + 1]
    return Rectangle(tuple(tenants), first.date, last.date)


def failed_on_data(instance: DagsterInstance, run_id: str) -> list[str]:
    """The blocking checks (Pandera or dbt tests) that failed in the run, as `asset:check`."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            failed.append(evaluation.asset_check_key.to_user_string())
    return sorted(set(failed))


def planned_selection(
    instance: DagsterInstance, run_id: str
) -> tuple[list[AssetKey], list[AssetCheckKey]]:
    """The assets and checks the run set out to build, from its planning events."""
    planned = instance.get_records_for_run(
        run_id,
        of_type={
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        },
    ).records
    assets: set[AssetKey] = set()
    checks: set[AssetCheckKey] = set()
    for record in planned:
        event = record.event_log_entry.dagster_event
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            assets.add(event.event_specific_data.asset_key)
        else:
            checks.add(event.event_specific_data.asset_check_key)
    return sorted(assets, key=str), sorted(checks, key=str)


def split_requests(
    instance: DagsterInstance, run: DagsterRun, registered: Sequence[str]
) -> list[RunRequest]:
    """The runs that retry `run` in halves, or none when it should not be split."""
    rectangle = run_rectangle(run, registered)
    if rectangle is None or rectangle.size < 2:
        return []
    failed = failed_on_data(instance, run.run_id)
    if not failed:
        return []
    assets, checks = planned_selection(instance, run.run_id)
    if not assets:
        return []
    kept = {k: v for k, v in run.tags.items() if not k.startswith("dagster/")}
    requests = []
    for index, half in enumerate(rectangle.halves()):
        requests.append(
            RunRequest(
                run_key=f"split:{run.run_id}:{index}",
                asset_selection=assets,
                asset_check_keys=checks,
                partition_key=half.partition_key(),
                tags={
                    **kept,
                    **half.tags(),
                    SPLIT_OF_TAG: run.run_id,
                    "analytics_platform/failed_checks": ",".join(failed)[:200],
                },
            )
        )
    return requests


def evaluate_failed_runs(
    instance: DagsterInstance, cursor: str | None
) -> tuple[list[RunRequest], str | None, list[str]]:
    """Run requests for the failed runs since `cursor`; the new cursor; what was split."""
    after = None
    if cursor:
        after = dt.datetime.fromtimestamp(json.loads(cursor)["updated_after"], dt.timezone.utc)
    records = instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.FAILURE], updated_after=after),
        limit=RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    registered = instance.get_dynamic_partitions(tenants_partitions.name)
    requests: list[RunRequest] = []
    split: list[str] = []
    for record in records:
        halves = split_requests(instance, record.dagster_run, registered)
        if halves:
            split.append(record.dagster_run.run_id)
            requests += halves
    if records:
        cursor = json.dumps({"updated_after": records[-1].update_timestamp.timestamp()})
    return requests, cursor, split


@sensor(
    name="split_failed_runs",
    target=AssetSelection.all(),
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Retries a run that failed a blocking check over several tenant-days as two runs "
        "of half its tenants (or days each), until the bad tenant-day fails alone and "
        "every other one is built."
    ),
)
def split_failed_runs(context: SensorEvaluationContext):
    requests, cursor, split = evaluate_failed_runs(context.instance, context.cursor)
    if not requests:
        if cursor is not None:
            context.update_cursor(cursor)
        return SkipReason("no failed multi-slice run to split")
    context.log.info(f"splitting failed runs {', '.join(split)}")
    return SensorResult(run_requests=requests, cursor=cursor)
