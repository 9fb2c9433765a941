"""Moving a tenant to another shard (another deployment's warehouse and instance), nothing lost.

A shard is a whole deployment (README "Past one deployment"). A tenant moves with
what cannot be rebuilt: its registry row, sites, keys, origins, audit trail,
quarantine, landing log, API watermarks and raw rows, copied with COPY into the
target warehouse in ONE transaction and counted table by table before it commits.
Staging, marts and serving are rebuilt on the target from raw (`rebuild_tenant_days`
over `MoveReport.days`); the target's checks decide afresh, so held slices and
ClickHouse schema versions are not copied.

The source tenant is suspended first (its runs stop; its data is read in one
snapshot) and stays suspended: deprovision it there once the tenant's traffic goes
to the target.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from dagster import DagsterInstance
from psycopg import sql

from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.audit import record_audit
from analytics_platform.tenants.ids import validate_tenant_id
from analytics_platform.tenants.lifecycle import (
    provision_tenant,
    suspend_tenant,
    tenant_tables,
)
from analytics_platform.tenants.registry import TenantStateError, get_tenant
from analytics_platform.tenants.store_binding import warehouse_id

# Rebuilt or decided again on the target, never copied.
NOT_MOVED = (
    "platform.schema_versions",  # the target's ClickHouse database is migrated anew
    "platform.held_slices",  # the target's checks hold what fails there
)
REGISTRY = "platform.tenants"  # first: the other platform tables reference it
RAW_TABLES = ("raw.file_events", "raw.api_events")
MOVED_SCHEMAS = ("platform", "raw")  # staging and marts are rebuilt on the target


@dataclass(frozen=True)
class MoveReport:
    tenant: str
    rows: dict[str, int]  # table -> rows copied (equal in source and target)
    days: tuple[dt.date, dt.date] | None  # the raw days to rebuild on the target
    landing_moved: bool


class MoveRefused(RuntimeError):
    pass


def moved_tables(conn: psycopg.Connection) -> list[str]:
    """Every tenant table that moves, the registry first (others reference it)."""
    tables = tenant_tables(conn, MOVED_SCHEMAS)
    return [REGISTRY, *(t for t in tables if t not in NOT_MOVED and t != REGISTRY)]


def _columns(conn: psycopg.Connection, table: str) -> tuple[list[str], list[str]]:
    """The table's copied columns and its identity columns (the target numbers its own)."""
    schema, name = table.split(".")
    rows = conn.execute(
        "SELECT column_name, is_identity = 'YES' FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, name),
    ).fetchall()
    return [c for c, identity in rows if not identity], [c for c, identity in rows if identity]


def _copy_table(
    source: psycopg.Connection, target: psycopg.Connection, table: str, tenant: str
) -> int:
    """Stream the tenant's rows of `table` from source to target (binary COPY); rows copied."""
    copied_columns, identity = _columns(source, table)
    columns = sql.SQL(", ").join(map(sql.Identifier, copied_columns))
    # Identity order keeps the rows' order (the audit trail reads in that order).
    order = sql.SQL(" ORDER BY {}").format(sql.Identifier(identity[0])) if identity else sql.SQL("")
    name = sql.Identifier(*table.split("."))
    read = sql.SQL("COPY (SELECT {} FROM {} WHERE tenant_id = {}{}) TO STDOUT (FORMAT binary)")
    write = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)")
    with (
        source.cursor().copy(read.format(columns, name, sql.Literal(tenant), order)) as out,
        target.cursor().copy(write.format(name, columns)) as into,
    ):
        for chunk in out:
            into.write(chunk)
    count = sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(name)
    (copied,) = target.execute(count, (tenant,)).fetchone()
    (expected,) = source.execute(count, (tenant,)).fetchone()
    if copied != expected:
        raise MoveRefused(f"{table}: {expected} rows of {tenant!r} in the source, {copied} copied")
    return copied


def schema_gaps(source: psycopg.Connection, target: psycopg.Connection) -> list[str]:
    """What the target warehouse lacks to take the source's tenant rows: each moved table
    missing there, or the columns of it missing there (a target on an older schema, or a
    table only the source has)."""
    gaps = []
    for table in moved_tables(source):
        wanted, _identity = _columns(source, table)
        present = set(_columns(target, table)[0])
        if not present:
            gaps.append(f"{table} (no such table)")
        elif missing := [c for c in wanted if c not in present]:
            gaps.append(f"{table} (columns {', '.join(missing)})")
    return gaps


def _raw_days(conn: psycopg.Connection, tenant: str) -> tuple[dt.date, dt.date] | None:
    first = last = None
    for table in RAW_TABLES:
        low, high = conn.execute(
            sql.SQL(
                "SELECT min(_partition_date), max(_partition_date) FROM {} WHERE tenant_id = %s"
            ).format(sql.Identifier(*table.split("."))),
            (tenant,),
        ).fetchone()
        if low is not None:
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
    return None if first is None else (first, last)


def move_tenant(
    tenant_id: str,
    *,
    source: tuple[PostgresResource, DagsterInstance | None],
    target: tuple[PostgresResource, ClickHouseResource, DagsterInstance],
    landing: tuple[Path, Path] | None = None,
    actor: str,
) -> MoveReport:
    """Copy the tenant from the source shard to the target, then provision it there.

    Refused before anything is written (the source untouched) when the target already
    knows the tenant, lacks a table or column the tenant's rows need, or the two are one
    warehouse. Without the source's instance (a shard of the same
    workspace, whose `tenants_<shard>` partitions only that shard's processes sync)
    the tenant must already be suspended there. `landing` = (source LANDING_DIR,
    target LANDING_DIR): the tenant's folder is moved too, after the rows are committed.
    """
    validate_tenant_id(tenant_id)
    source_pg, source_instance = source
    target_pg, target_clickhouse, target_instance = target
    source_id, target_id = warehouse_id(source_pg), warehouse_id(target_pg)
    if source_id == target_id:
        raise MoveRefused("the source and the target are the same warehouse")
    with target_pg.connect() as conn:
        if conn.execute(
            "SELECT 1 FROM platform.tenants WHERE tenant_id = %s", (tenant_id,)
        ).fetchone():
            raise MoveRefused(f"the target warehouse already has a tenant {tenant_id!r}")
        with source_pg.connect() as source_conn:
            gaps = schema_gaps(source_conn, conn)
    if gaps:
        raise MoveRefused(
            f"the target warehouse cannot take {tenant_id!r}'s rows, it lacks: "
            + "; ".join(gaps)
            + " (migrate it to the source's schema first)"
        )
    status = get_tenant(source_pg, tenant_id).status
    if status == "active" and source_instance is None:
        raise MoveRefused(
            f"tenant {tenant_id!r} is active on its shard: suspend it there first "
            f"(`analytics-platform tenants suspend {tenant_id}` with that shard's settings)"
        )
    if status == "active":
        suspend_tenant(source_pg, source_instance, tenant_id, actor=actor)
    elif status != "suspended":
        raise TenantStateError(f"tenant {tenant_id!r} is neither active nor suspended")

    rows: dict[str, int] = {}
    with psycopg.connect(source_pg.url) as source_conn, target_pg.transaction() as target_conn:
        # One snapshot of the source: a run that was finishing cannot half-appear.
        source_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table in moved_tables(source_conn):
            rows[table] = _copy_table(source_conn, target_conn, table, tenant_id)
        days = _raw_days(source_conn, tenant_id)
        # Pending on the target until provisioning has migrated its ClickHouse database.
        target_conn.execute(
            "UPDATE platform.tenants SET status = 'pending', updated_at = now() "
            "WHERE tenant_id = %s",
            (tenant_id,),
        )
        record_audit(target_conn, tenant_id, "moved_in", actor, {"from_warehouse": source_id})
    with source_pg.transaction() as conn:
        record_audit(conn, tenant_id, "moved_out", actor, {"to_warehouse": target_id})
    provision_tenant(target_pg, target_clickhouse, target_instance, tenant_id, actor=actor)
    moved = False
    if landing is not None and (landing[0] / tenant_id).is_dir():
        landing[1].mkdir(parents=True, exist_ok=True)
        shutil.move(str(landing[0] / tenant_id), str(landing[1] / tenant_id))
        moved = True
    return MoveReport(tenant_id, rows, days, moved)
