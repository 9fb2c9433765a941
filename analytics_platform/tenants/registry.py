"""The tenant registry (`platform.tenants`), its audit trail, and its mirror in Dagster.

Lifecycle: `pending` (registered, ClickHouse not provisioned yet) -> `active`
<-> `suspended` -> `deprovisioned`. Every change writes a `platform.tenant_audit`
row that outlives the tenant. The `tenants` dynamic partitions mirror the
tenants whose data exists: `active` and `suspended` ones (a suspended tenant's
partitions and history stay visible; only automation skips it). Only a
deprovisioned tenant loses its partition, and only when the instance mirrors
this warehouse (`store_binding`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from dagster import DagsterInstance

from analytics_platform.partitions import tenants_partitions
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.audit import record_audit
from analytics_platform.tenants.errors import TenantNotFound, TenantStateError, not_registered
from analytics_platform.tenants.ids import validate_tenant_id
from analytics_platform.tenants.sites import (
    add_default_site,
    claim_sites,
    refuse_tenant_id_taken_as_site,
    validate_site_ids,
)
from analytics_platform.tenants.store_binding import check_store_binding

STATUSES = ("pending", "active", "suspended", "deprovisioned")
PARTITIONED_STATUSES = frozenset({"active", "suspended"})
COLUMNS = (
    "tenant_id, display_name, status, api_base_url, api_token_env, retention_days, "
    "created_at, updated_at"
)


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    status: str
    api_base_url: str | None
    api_token_env: str | None
    retention_days: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def has_api(self) -> bool:
        return self.api_base_url is not None

    @property
    def runs_automatically(self) -> bool:
        """Sensors and schedules start runs only for active tenants."""
        return self.status == "active"


def register_tenant(
    postgres: PostgresResource,
    tenant_id: str,
    display_name: str | None = None,
    *,
    api_base_url: str | None = None,
    api_token_env: str | None = None,
    retention_days: int | None = None,
    sites: Iterable[str] = (),
    actor: str = "unknown",
) -> Tenant:
    """Add a tenant as `pending`, or update the settings of one already registered.

    A deprovisioned id registered again starts over as `pending`. Settings left
    as None keep their current value. The tenant gets its default site (its own
    id) and `sites`, in the same transaction; an id that is already another
    tenant's site, or a site another tenant owns, is refused before anything
    is written (SiteRefused).
    """
    validate_tenant_id(tenant_id)
    wanted_sites = validate_site_ids(sites)
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        refuse_tenant_id_taken_as_site(conn, tenant_id, wanted_sites)
        existing = conn.execute(
            "SELECT status FROM platform.tenants WHERE tenant_id = %s FOR UPDATE", (tenant_id,)
        ).fetchone()
        row = conn.execute(
            f"""
            INSERT INTO platform.tenants
                (tenant_id, display_name, status, api_base_url, api_token_env, retention_days)
            VALUES (%(id)s, coalesce(%(name)s, %(id)s), 'pending', %(url)s, %(token_env)s,
                    coalesce(%(retention)s, 400))
            ON CONFLICT (tenant_id) DO UPDATE SET
                display_name = coalesce(%(name)s, platform.tenants.display_name),
                status = CASE WHEN platform.tenants.status = 'deprovisioned' THEN 'pending'
                              ELSE platform.tenants.status END,
                api_base_url = coalesce(%(url)s, platform.tenants.api_base_url),
                api_token_env = coalesce(%(token_env)s, platform.tenants.api_token_env),
                retention_days = coalesce(%(retention)s, platform.tenants.retention_days),
                updated_at = now()
            RETURNING {COLUMNS}
            """,
            {
                "id": tenant_id,
                "name": display_name,
                "url": api_base_url,
                "token_env": api_token_env,
                "retention": retention_days,
            },
        ).fetchone()
        action = "registered" if existing is None or existing[0] == "deprovisioned" else "updated"
        add_default_site(conn, tenant_id)
        settings = {
            "display_name": display_name,
            "api_base_url": api_base_url,
            "api_token_env": api_token_env,
            "retention_days": retention_days,
        }
        record_audit(
            conn, tenant_id, action, actor, {k: v for k, v in settings.items() if v is not None}
        )
        claim_sites(conn, tenant_id, wanted_sites, actor=actor)
    return Tenant(*row)


def get_tenant(postgres: PostgresResource, tenant_id: str) -> Tenant:
    validate_tenant_id(tenant_id)
    postgres.ensure_warehouse()
    with postgres.connect() as conn:
        row = conn.execute(
            f"SELECT {COLUMNS} FROM platform.tenants WHERE tenant_id = %s", (tenant_id,)
        ).fetchone()
    if row is None:
        raise not_registered(tenant_id)
    return Tenant(*row)


def list_tenants(postgres: PostgresResource, statuses: Iterable[str] | None = None) -> list[Tenant]:
    """Registered tenants (optionally only those in `statuses`), by id."""
    postgres.ensure_warehouse()
    wanted = list(statuses) if statuses is not None else list(STATUSES)
    with postgres.connect() as conn:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM platform.tenants WHERE status = ANY(%s) ORDER BY tenant_id",
            (wanted,),
        ).fetchall()
    return [Tenant(*row) for row in rows]


def transition(
    conn: psycopg.Connection,
    tenant_id: str,
    to: str,
    *,
    allowed_from: Iterable[str],
    actor: str,
    detail: Mapping[str, object] | None = None,
) -> Tenant:
    """Move a tenant to status `to` (in `conn`'s transaction) and audit it, or refuse."""
    validate_tenant_id(tenant_id)
    allowed = list(allowed_from)
    row = conn.execute(
        f"UPDATE platform.tenants SET status = %s, updated_at = now() "
        f"WHERE tenant_id = %s AND status = ANY(%s) RETURNING {COLUMNS}",
        (to, tenant_id, allowed),
    ).fetchone()
    if row is None:
        current = conn.execute(
            "SELECT status FROM platform.tenants WHERE tenant_id = %s", (tenant_id,)
        ).fetchone()
        if current is None:
            raise TenantNotFound(f"tenant {tenant_id!r} is not registered")
        raise TenantStateError(
            f"tenant {tenant_id!r} is {current[0]}; it can become {to} only from "
            f"{' or '.join(allowed)}"
        )
    record_audit(conn, tenant_id, to, actor, detail)
    return Tenant(*row)


@dataclass(frozen=True)
class PartitionSync:
    """What the `tenants` dynamic partitions need to mirror the registry."""

    add: list[str]
    remove: list[str]
    # Partitions of tenants this registry does not know: kept (never deleted), reported.
    unregistered: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def partition_sync(postgres: PostgresResource, instance: DagsterInstance) -> PartitionSync:
    """Partitions to add (active/suspended tenants lacking one) and to remove (deprovisioned).

    Raises StoreMismatch when the instance mirrors another warehouse. A partition is only
    ever removed because the registry says its tenant was deprovisioned: a tenant missing
    from the registry, or pending, keeps its partition.
    """
    check_store_binding(postgres, instance)
    statuses = {t.tenant_id: t.status for t in list_tenants(postgres)}
    present = set(instance.get_dynamic_partitions(tenants_partitions.name))
    wanted = {tenant for tenant, status in statuses.items() if status in PARTITIONED_STATUSES}
    return PartitionSync(
        add=sorted(wanted - present),
        remove=sorted(t for t in present if statuses.get(t) == "deprovisioned"),
        unregistered=sorted(present - statuses.keys()),
    )


def sync_tenant_partitions(postgres: PostgresResource, instance: DagsterInstance) -> PartitionSync:
    """Bring the `tenants` partitions in line with the registry (see partition_sync)."""
    sync = partition_sync(postgres, instance)
    if sync.add:
        instance.add_dynamic_partitions(tenants_partitions.name, sync.add)
    for tenant_id in sync.remove:
        instance.delete_dynamic_partition(tenants_partitions.name, tenant_id)
    return sync
