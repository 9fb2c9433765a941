"""Jobs users launch from the UI or the CLI: the data pipeline and the tenant lifecycle."""

import datetime as dt

from dagster import (
    AssetMaterialization,
    AssetSelection,
    Config,
    MetadataValue,
    OpExecutionContext,
    Output,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from analytics_platform.automation import PIPELINE_RUN_TAG
from analytics_platform.checks.freshness import FRESHNESS_CHECKS
from analytics_platform.ingest.reprocess import replay_quarantine
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import CLICKHOUSE_POOL, asset_key
from analytics_platform.tenants import lifecycle
from analytics_platform.tenants.migrations import migrate_tenant
from analytics_platform.tenants.registry import list_tenants

# The main job: landing files -> raw -> staging -> marts -> serving, for the chosen tenant-days.
# The API source has its own job (schedules.py): an unreachable tenant API must not stop
# the modelling of the files that did land.
tenant_day_pipeline = define_asset_job(
    name="tenant_day_pipeline",
    selection=AssetSelection.assets(asset_key("raw_file_events")).downstream() - FRESHNESS_CHECKS,
    description="Load the tenant-days' landing files, then model and serve them.",
    run_tags={PIPELINE_RUN_TAG: "true"},
)

# The layers below raw for the chosen tenant-days, from what raw holds now:
# `replayed_days_sensor` starts it after a quarantine replay, and an operator can launch
# it after changing raw outside the pipeline jobs (a hand-made fix, a partial backfill).
rebuild_tenant_days = define_asset_job(
    name="rebuild_tenant_days",
    selection=(
        AssetSelection.groups("raw").downstream() - AssetSelection.groups("raw") - FRESHNESS_CHECKS
    ),
    description="Rebuild staging, marts and serving for the tenant-days from raw as it is.",
    run_tags={PIPELINE_RUN_TAG: "true"},
)


class TenantConfig(Config):
    tenant_id: str = Field(description="The tenant, e.g. 'acme'.")


class DeprovisionConfig(Config):
    tenant_id: str = Field(description="The tenant whose data is deleted.")
    confirm_tenant_id: str = Field(
        description="Type the tenant id again: deprovisioning deletes all of its data."
    )


def _actor(context: OpExecutionContext) -> str:
    return f"run:{context.run_id}"


@op(pool=CLICKHOUSE_POOL, description="Create and migrate the tenant's ClickHouse database.")
def provision_tenant_op(
    context: OpExecutionContext,
    config: TenantConfig,
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
):
    report = lifecycle.provision_tenant(
        postgres, clickhouse, context.instance, config.tenant_id, actor=_actor(context)
    )
    context.log.info(
        f"tenant {config.tenant_id!r} is active in {report.database}; "
        f"migrations applied now: {report.applied or 'none'}"
    )
    return Output(None, metadata={"database": report.database, "applied": report.applied})


@job(description="Provision a registered (pending) tenant, then activate it.")
def provision_tenant():
    provision_tenant_op()


@op(pool=CLICKHOUSE_POOL, description="Apply pending ClickHouse migrations to every active tenant.")
def migrate_active_tenants(
    context: OpExecutionContext,
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
):
    applied: dict[str, list[int]] = {}
    with clickhouse.session() as session:
        for tenant in list_tenants(postgres, ["active"]):
            report = migrate_tenant(postgres, clickhouse, session, tenant.tenant_id)
            applied[tenant.tenant_id] = report.applied
    context.log.info(f"migrations applied per tenant: {applied}")
    return Output(None, metadata={"applied": MetadataValue.json(applied)})


@job(description="Apply pending ClickHouse migrations to every active tenant (idempotent).")
def migrate_tenants():
    migrate_active_tenants()


@op(pool=CLICKHOUSE_POOL, description="Delete all of a tenant's data; keep its audit trail.")
def deprovision_tenant_op(
    context: OpExecutionContext,
    config: DeprovisionConfig,
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
):
    report = lifecycle.deprovision_tenant(
        postgres,
        clickhouse,
        context.instance,
        config.tenant_id,
        confirm=config.confirm_tenant_id,
        actor=_actor(context),
    )
    context.log.info(f"tenant {report.tenant!r} deprovisioned: dropped {report.database}")
    return Output(None, metadata={"rows_deleted": MetadataValue.json(report.rows_deleted)})


@job(description="Deprovision a tenant: its data in every layer and its ClickHouse database.")
def deprovision_tenant():
    deprovision_tenant_op()


class ReprocessConfig(Config):
    tenant_id: str = Field(description="The tenant whose quarantined landing rows are replayed.")
    start_date: str | None = Field(default=None, description="First partition day (YYYY-MM-DD).")
    end_date: str | None = Field(default=None, description="Last partition day (YYYY-MM-DD).")


@op(description="Move quarantined landing rows that now pass the contract into raw.")
def reprocess_quarantined_rows(
    context: OpExecutionContext,
    config: ReprocessConfig,
    postgres: PostgresResource,
    landing: LandingZoneResource,
):
    def day(value):
        return dt.date.fromisoformat(value) if value else None

    report = replay_quarantine(
        postgres,
        landing,
        config.tenant_id,
        context.run_id,
        start=day(config.start_date),
        end=day(config.end_date),
    )
    # raw_file_events changed for these tenant-days: say so, so the UI shows the layers
    # below as stale and replayed_days_sensor rebuilds them.
    for changed in sorted(report.days):
        context.log_event(
            AssetMaterialization(
                asset_key=asset_key("raw_file_events"),
                partition=TenantDay(config.tenant_id, changed).partition_key,
                description="rows replayed from platform.quarantine",
            )
        )
    context.log.info(
        f"{report.moved} of {report.examined} quarantined rows of {config.tenant_id!r} moved "
        f"to raw; still failing: {dict(report.still_failing) or 'none'}"
    )
    return Output(
        None,
        metadata={
            "examined": report.examined,
            "moved_to_raw": report.moved,
            "still_failing": MetadataValue.json(dict(report.still_failing)),
            "tenant_days": [d.isoformat() for d in sorted(report.days)],
        },
    )


# Tagged as a pipeline run: what it changes is rebuilt by `rebuild_tenant_days` runs
# (replayed_days_sensor), never also by automation.
@job(
    description="Replay a tenant's quarantined landing rows after a contract or setting change.",
    tags={PIPELINE_RUN_TAG: "true"},
)
def reprocess_quarantine():
    reprocess_quarantined_rows()


jobs = [
    tenant_day_pipeline,
    rebuild_tenant_days,
    provision_tenant,
    migrate_tenants,
    deprovision_tenant,
    reprocess_quarantine,
]
