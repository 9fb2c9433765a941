"""Versioned ClickHouse migrations, applied to each tenant's database and recorded in Postgres.

Migrations are the files `analytics_platform/sql/clickhouse/NNNN_<name>.sql`;
`{database}` in them stands for the tenant's quoted database. Each applied
migration is a row in `platform.schema_versions` (tenant, version, checksum);
a file edited after it was applied is refused, because tenants migrated before
and after the edit would silently differ. Write a new migration instead.

ClickHouse DDL is not transactional: write migrations that can be re-run
(`IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`), so a migration interrupted
half-way can simply be applied again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources as package_files

import psycopg

from analytics_platform.resources.clickhouse import (
    ClickHouseResource,
    ClickHouseSession,
    quote_identifier,
)
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.ids import validate_tenant_id

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def statements(self, database: str) -> list[str]:
        """The file's statements for one tenant database (separated by `;` at a line end)."""
        text = self.sql.replace("{database}", quote_identifier(database))
        return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def available_migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    folder = package_files.files("analytics_platform").joinpath("sql/clickhouse")
    migrations = []
    for entry in folder.iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if entry.name.endswith(".sql") and not match:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_<name>.sql")
        if match:
            migrations.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return migrations


def _refuse_edited(tenant: str, migrations: list[Migration], recorded: dict[int, str]) -> None:
    for migration in migrations:
        if recorded.get(migration.version, migration.checksum) != migration.checksum:
            raise MigrationError(
                f"tenant {tenant!r}: {migration.file_name} changed after it was applied "
                "(its checksum differs from platform.schema_versions). Restore the file "
                "and put the change in a new migration."
            )


@dataclass(frozen=True)
class MigrationReport:
    tenant: str
    database: str
    applied: list[int]
    already_applied: list[int]


def migrate_tenant(
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
    session: ClickHouseSession,
    tenant: str,
    migrations: list[Migration] | None = None,
) -> MigrationReport:
    """Create the tenant's database if needed and apply its pending migrations, in order.

    Holds a per-tenant advisory lock, so two processes never migrate one tenant
    at once; each applied migration is recorded as soon as it succeeded. Expects
    the warehouse schema to exist (PostgresResource.ensure_warehouse).
    """
    validate_tenant_id(tenant)
    migrations = available_migrations() if migrations is None else migrations
    database = clickhouse.database_for(tenant)
    with postgres.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"migrate|{tenant}",))
        try:
            recorded = dict(
                conn.execute(
                    "SELECT version, checksum FROM platform.schema_versions WHERE tenant_id = %s",
                    (tenant,),
                ).fetchall()
            )
            _refuse_edited(tenant, migrations, recorded)
            session.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
            applied = []
            for migration in migrations:
                if migration.version in recorded:
                    continue
                for statement in migration.statements(database):
                    session.command(statement)
                conn.execute(
                    "INSERT INTO platform.schema_versions (tenant_id, version, name, checksum) "
                    "VALUES (%s, %s, %s, %s)",
                    (tenant, migration.version, migration.name, migration.checksum),
                )
                applied.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"migrate|{tenant}",))
    return MigrationReport(tenant, database, applied, sorted(recorded))


def tenants_to_migrate(conn: psycopg.Connection, tenants: Sequence[str]) -> list[str]:
    """Those of `tenants` not recorded with every shipped migration as shipped: one query.

    Serving checks every tenant of its run before loading; at 1,000 tenants one
    query here replaces a connection, a lock and a lookup per tenant. A tenant
    whose record differs in any way (a version missing, a file edited since) is
    returned, so `migrate_tenant` applies what is missing or refuses the edit.
    """
    shipped = {(m.version, m.checksum) for m in available_migrations()}
    recorded: dict[str, set[tuple[int, str]]] = {tenant: set() for tenant in tenants}
    for tenant, version, checksum in conn.execute(
        "SELECT tenant_id, version, checksum FROM platform.schema_versions "
        "WHERE tenant_id = ANY(%s)",
        (list(tenants),),
    ):
        recorded[tenant].add((version, checksum))
    return [tenant for tenant in tenants if not shipped <= recorded[tenant]]


def pending_versions(postgres: PostgresResource, tenant: str) -> list[int]:
    """Versions shipped but not yet applied to the tenant."""
    with postgres.connect() as conn:
        done = {
            row[0]
            for row in conn.execute(
                "SELECT version FROM platform.schema_versions WHERE tenant_id = %s", (tenant,)
            )
        }
    return [m.version for m in available_migrations() if m.version not in done]
