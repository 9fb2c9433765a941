"""The one `Definitions` of the analytics_platform code location."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, in_process_executor

from analytics_platform.assets.api import raw_api_events
from analytics_platform.assets.dbt import dbt_layers
from analytics_platform.assets.raw import raw_file_events
from analytics_platform.assets.serving import serving_assets
from analytics_platform.automation import platform_automation_sensor
from analytics_platform.checks.freshness import (
    every_active_tenant_fresh,
    tenant_freshness_job,
)
from analytics_platform.checks.layers import layer_check_defs
from analytics_platform.dbt_project import dbt_resource
from analytics_platform.jobs import jobs
from analytics_platform.resources.alerts import AlertWebhookResource
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.event_api import EventApiResource
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.retention import raw_retention, raw_retention_schedule
from analytics_platform.schedules import schedules as api_schedules
from analytics_platform.sensors.alerts import run_failure_alert
from analytics_platform.sensors.landing import landing_file_sensor
from analytics_platform.sensors.replayed_days import replayed_days_sensor
from analytics_platform.sensors.split_failed_runs import split_failed_runs
from analytics_platform.sensors.tenant_registry import tenant_registry_sensor
from analytics_platform.settings import landing_timestamp_tolerance_minutes

assets = [raw_file_events, raw_api_events, *dbt_layers, *serving_assets]


def platform_resources() -> dict[str, object]:
    """Resources configured from the environment (see analytics_platform/settings.py)."""
    # ALERT_WEBHOOK_URL is optional (unset: alerts are only logged), but an EnvVar must
    # exist wherever the resource is used, e.g. `dagster asset materialize --select '*'`.
    os.environ.setdefault("ALERT_WEBHOOK_URL", "")
    return {
        "postgres": PostgresResource(url=EnvVar("DATABASE_URL")),
        "clickhouse": ClickHouseResource(url=EnvVar("CLICKHOUSE_URL")),
        "landing": LandingZoneResource(
            root=EnvVar("LANDING_DIR"),
            timestamp_tolerance_minutes=landing_timestamp_tolerance_minutes(),
        ),
        "dbt": dbt_resource(),
        "alerts": AlertWebhookResource(url=EnvVar("ALERT_WEBHOOK_URL")),
        "event_api": EventApiResource(),
    }


sensors = [
    tenant_registry_sensor,
    landing_file_sensor,
    replayed_days_sensor,
    run_failure_alert,
    platform_automation_sensor,
    split_failed_runs,
]

schedules = [raw_retention_schedule, *api_schedules]

defs = Definitions(
    assets=assets,
    # Every step of a run in the run's own process: a fresh process per step costs an
    # import of the code location (about 5 s on 2 cores), most of a small run's time.
    # Pools still apply; a run's steps are a chain, so little parallelism is lost.
    executor=in_process_executor,
    asset_checks=[*layer_check_defs, every_active_tenant_fresh],
    jobs=[*jobs, raw_retention, tenant_freshness_job],
    sensors=sensors,
    schedules=schedules,
    resources=platform_resources(),
)
