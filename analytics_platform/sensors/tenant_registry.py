"""`tenant_registry_sensor`: keeps Dagster in step with registry changes made outside the CLI.

The CLI updates the `tenants` partitions itself; a tenant inserted or changed
by SQL (or another service) is picked up here: partitions are added for
active/suspended tenants and removed for deprovisioned ones (a partition whose
tenant the registry does not know is kept), and each pending tenant gets one
provisioning run. A tick whose warehouse is not the one the instance mirrors
fails with StoreMismatch and changes nothing.
"""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from analytics_platform.jobs import provision_tenant
from analytics_platform.partitions import tenants_partitions
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.registry import list_tenants, partition_sync


@sensor(
    job=provision_tenant,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Mirror platform.tenants into the `tenants` partitions; provision pending tenants.",
)
def tenant_registry_sensor(context: SensorEvaluationContext, postgres: PostgresResource):
    sync = partition_sync(postgres, context.instance)
    requests = []
    if sync.add:
        requests.append(tenants_partitions.build_add_request(sync.add))
    if sync.remove:
        requests.append(tenants_partitions.build_delete_request(sync.remove))
    # One run per registration: re-registering a tenant (new updated_at) provisions again.
    runs = [
        RunRequest(
            run_key=f"provision:{t.tenant_id}:{t.updated_at.isoformat()}",
            run_config={"ops": {"provision_tenant_op": {"config": {"tenant_id": t.tenant_id}}}},
            tags={"tenant": t.tenant_id},
        )
        for t in list_tenants(postgres, ["pending"])
    ]
    if not requests and not runs:
        kept = (
            f"; kept {len(sync.unregistered)} partitions of unregistered tenants "
            f"({', '.join(sync.unregistered[:5])})"
            if sync.unregistered
            else ""
        )
        return SkipReason(f"the tenants partitions match the registry; no tenant is pending{kept}")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=requests)
