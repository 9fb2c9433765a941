"""Jobs users launch from the UI or the CLI: the data pipeline and the tenant lifecycle."""

from dagster import (
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

from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants import lifecycle
from analytics_platform.tenants.migrations import migrate_tenant
from analytics_platform.tenants.registry import list_tenants

# The main job: every layer, raw -> staging -> marts -> serving, for the chosen tenant-days.
tenant_day_pipeline = define_asset_job(
    name="tenant_day_pipeline",
    selection=AssetSelection.all(),
    description="Load, model and serve the selected tenant-days end to end.",
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


@op(pool="clickhouse", description="Create and migrate the tenant's ClickHouse database.")
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


@op(pool="clickhouse", description="Apply pending ClickHouse migrations to every active tenant.")
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


@op(pool="clickhouse", description="Delete all of a tenant's data; keep its audit trail.")
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


jobs = [tenant_day_pipeline, provision_tenant, migrate_tenants, deprovision_tenant]
