"""Provisioning, suspension and deprovisioning: the registry, ClickHouse and Dagster together.

Used by the CLI (immediately, in-process) and by the Dagster jobs in
`analytics_platform/jobs.py` (from the UI, the sensor or a schedule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from dagster import DagsterInstance
from psycopg import sql

from analytics_platform.resources.clickhouse import ClickHouseResource, quote_identifier
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.ids import validate_tenant_id
from analytics_platform.tenants.keys import revoke_keys
from analytics_platform.tenants.migrations import MigrationReport, migrate_tenant
from analytics_platform.tenants.registry import (
    Tenant,
    TenantStateError,
    get_tenant,
    sync_tenant_partitions,
    transition,
)
from analytics_platform.tenants.store_binding import check_store_binding

# Every table in these schemas with a tenant_id column is cleared on deprovisioning, so a
# new model or platform table cannot be forgotten; only the registry, the audit and the
# API keys stay (the keys revoked, so the audit's key ids keep their meaning).
TENANT_SCHEMAS = ("raw", "staging", "marts", "platform")
KEPT_TABLES = ("platform.tenants", "platform.tenant_audit", "platform.tenant_keys")


def tenant_tables(conn: psycopg.Connection, schemas: Sequence[str] = TENANT_SCHEMAS) -> list[str]:
    """Every table in `schemas` with a tenant_id column, as `schema.table`, sorted."""
    rows = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.columns "
        "JOIN information_schema.tables USING (table_schema, table_name) "
        "WHERE column_name = 'tenant_id' AND table_type = 'BASE TABLE' "
        "AND table_schema = ANY(%s) ORDER BY 1",
        (list(schemas),),
    ).fetchall()
    return [table for (table,) in rows]


def _migrate_and_activate(
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
    instance: DagsterInstance,
    tenant_id: str,
    allowed_from: tuple[str, ...],
    actor: str,
) -> MigrationReport:
    """Bring the tenant's ClickHouse database up to date, then (only then) mark it active."""
    with clickhouse.session() as session:
        report = migrate_tenant(postgres, clickhouse, session, tenant_id)
    with postgres.transaction() as conn:
        transition(
            conn,
            tenant_id,
            "active",
            allowed_from=allowed_from,
            actor=actor,
            detail={"database": report.database, "migrations_applied": report.applied},
        )
    sync_tenant_partitions(postgres, instance)
    return report


def provision_tenant(
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
    instance: DagsterInstance,
    tenant_id: str,
    *,
    actor: str,
) -> MigrationReport:
    """Create the tenant's ClickHouse database and migrate it; then, and only then, activate.

    Safe to repeat: an active tenant just gets any pending migrations. Like every
    change here, refused before it starts when the instance mirrors another warehouse.
    """
    check_store_binding(postgres, instance)
    tenant = get_tenant(postgres, tenant_id)
    if tenant.status not in ("pending", "active"):
        raise TenantStateError(
            f"tenant {tenant_id!r} is {tenant.status}: only pending or active tenants are "
            "provisioned (resume a suspended tenant; register a deprovisioned one again)"
        )
    return _migrate_and_activate(
        postgres, clickhouse, instance, tenant_id, ("pending", "active"), actor
    )


def suspend_tenant(
    postgres: PostgresResource, instance: DagsterInstance, tenant_id: str, *, actor: str
) -> Tenant:
    """Stop automation for the tenant; its data and partitions stay."""
    check_store_binding(postgres, instance)
    with postgres.transaction() as conn:
        tenant = transition(conn, tenant_id, "suspended", allowed_from=("active",), actor=actor)
    sync_tenant_partitions(postgres, instance)
    return tenant


def resume_tenant(
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
    instance: DagsterInstance,
    tenant_id: str,
    *,
    actor: str,
) -> MigrationReport:
    """Re-activate a suspended tenant, catching up on migrations it missed while suspended."""
    check_store_binding(postgres, instance)
    tenant = get_tenant(postgres, tenant_id)
    if tenant.status != "suspended":
        raise TenantStateError(f"tenant {tenant_id!r} is {tenant.status}, not suspended")
    return _migrate_and_activate(postgres, clickhouse, instance, tenant_id, ("suspended",), actor)


@dataclass(frozen=True)
class DeprovisionReport:
    tenant: str
    database: str
    rows_deleted: dict[str, int]


class ConfirmationMismatch(ValueError):
    pass


def deprovision_tenant(
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
    instance: DagsterInstance,
    tenant_id: str,
    *,
    confirm: str,
    actor: str,
) -> DeprovisionReport:
    """Delete every trace of a tenant's data; keep its registry row and audit trail.

    Refuses unless `confirm` repeats the tenant id. Rows go first (one
    transaction, which also revokes the tenant's API keys), then the ClickHouse
    database, then the Dagster partitions.
    """
    validate_tenant_id(tenant_id)
    if confirm != tenant_id:
        raise ConfirmationMismatch(
            f"deprovisioning deletes all data of tenant {tenant_id!r}; confirm by repeating "
            f"the tenant id exactly (got {confirm!r})"
        )
    check_store_binding(postgres, instance)
    tenant = get_tenant(postgres, tenant_id)
    if tenant.status == "deprovisioned":
        raise TenantStateError(f"tenant {tenant_id!r} is already deprovisioned")
    database = clickhouse.database_for(tenant_id)
    deleted: dict[str, int] = {}
    with postgres.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate|{tenant_id}",))
        for table in [t for t in tenant_tables(conn) if t not in KEPT_TABLES]:
            cursor = conn.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(
                    sql.Identifier(*table.split("."))
                ),
                (tenant_id,),
            )
            deleted[table] = cursor.rowcount
        revoked = revoke_keys(conn, tenant_id, actor, reason="deprovisioned")
        transition(
            conn,
            tenant_id,
            "deprovisioned",
            allowed_from=("pending", "active", "suspended"),
            actor=actor,
            detail={
                "database_dropped": database,
                "rows_deleted": deleted,
                "keys_revoked": [key.key_id for key in revoked],
            },
        )
        # Dropped inside the transaction's lifetime: if the drop fails, the rows stay too.
        with clickhouse.session() as session:
            session.command(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
    sync_tenant_partitions(postgres, instance)
    return DeprovisionReport(tenant_id, database, deleted)


def audit_trail(postgres: PostgresResource, tenant_id: str) -> list[tuple[str, str, dict]]:
    """(action, actor, detail) for every lifecycle change of the tenant, oldest first."""
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT action, actor, detail FROM platform.tenant_audit WHERE tenant_id = %s "
            "ORDER BY audit_id",
            (tenant_id,),
        ).fetchall()
