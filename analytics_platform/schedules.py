"""Schedules that pull data: each tenant's HTTP event API, daily for the day before."""

import datetime as dt

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from analytics_platform.automation import PIPELINE_RUN_TAG
from analytics_platform.checks.freshness import FRESHNESS_CHECKS
from analytics_platform.partitions import PLATFORM_START_DATE, TenantDay, tenants_partitions
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import asset_key
from analytics_platform.tenants.registry import Tenant, list_tenants

# The API load and every layer below it, so yesterday's API events reach serving in one run.
api_events_pipeline = define_asset_job(
    name="api_events_pipeline",
    selection=AssetSelection.assets(asset_key("raw_api_events")).downstream() - FRESHNESS_CHECKS,
    description="Read the tenant-days' HTTP API exports, then model and serve them.",
    run_tags={PIPELINE_RUN_TAG: "true"},
)


def api_run_requests(
    tenants: list[Tenant], partitioned: set[str], day: dt.date
) -> tuple[list[RunRequest], list[str]]:
    """One run per active tenant with an API (and a partition) for `day`; and who was left out."""
    runs, left_out = [], []
    for tenant in tenants:
        if not (tenant.runs_automatically and tenant.has_api):
            continue
        if tenant.tenant_id not in partitioned:
            left_out.append(tenant.tenant_id)
            continue
        slice_ = TenantDay(tenant.tenant_id, day)
        runs.append(
            RunRequest(
                run_key=f"api:{tenant.tenant_id}:{day.isoformat()}",
                partition_key=slice_.partition_key,
                tags={"tenant": tenant.tenant_id},
            )
        )
    return runs, left_out


@schedule(
    job=api_events_pipeline,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        "Daily at 01:00 UTC: for every active tenant with an API, load yesterday's events "
        "from its export API and rebuild the layers below."
    ),
)
def api_events_schedule(context: ScheduleEvaluationContext, postgres: PostgresResource):
    day = context.scheduled_execution_time.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
    if day < dt.date.fromisoformat(PLATFORM_START_DATE):
        return SkipReason(f"{day} is before PLATFORM_START_DATE {PLATFORM_START_DATE}")
    partitioned = set(context.instance.get_dynamic_partitions(tenants_partitions.name))
    runs, left_out = api_run_requests(list_tenants(postgres, ["active"]), partitioned, day)
    if left_out:
        # tenant_registry_sensor adds missing partitions within a minute or so.
        context.log.warning(
            f"no tenants partition yet for {', '.join(left_out)}: no API run for {day}; "
            "materialize raw_api_events for that day once the partition exists"
        )
    return runs or SkipReason(f"no active tenant with an API for {day}")


schedules = [api_events_schedule]
