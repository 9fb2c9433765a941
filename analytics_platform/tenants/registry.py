"""The tenant registry (`platform.tenants`) and its mirror, the `tenants` dynamic partitions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dagster import DagsterInstance

from analytics_platform.partitions import tenants_partitions
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.ids import validate_tenant_id


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    status: str
    created_at: dt.datetime


def register_tenant(
    postgres: PostgresResource,
    instance: DagsterInstance,
    tenant_id: str,
    display_name: str | None = None,
) -> Tenant:
    """Add (or re-activate) a tenant and its dynamic partition, so its runs can start at once."""
    validate_tenant_id(tenant_id)
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        row = conn.execute(
            """
            INSERT INTO platform.tenants (tenant_id, display_name, status)
            VALUES (%s, %s, 'active')
            ON CONFLICT (tenant_id) DO UPDATE
               SET display_name = COALESCE(%s, platform.tenants.display_name),
                   status = 'active',
                   updated_at = now()
            RETURNING tenant_id, display_name, status, created_at
            """,
            (tenant_id, display_name or tenant_id, display_name),
        ).fetchone()
    if not instance.has_dynamic_partition(tenants_partitions.name, tenant_id):
        instance.add_dynamic_partitions(tenants_partitions.name, [tenant_id])
    return Tenant(*row)


def list_tenants(postgres: PostgresResource) -> list[Tenant]:
    postgres.ensure_warehouse()
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT tenant_id, display_name, status, created_at "
            "FROM platform.tenants ORDER BY tenant_id"
        ).fetchall()
    return [Tenant(*row) for row in rows]
