"""Postgres warehouse access: streamed COPY and atomic replacement of tenant-day slices."""

from __future__ import annotations

import datetime as dt
import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import resources as package_files

import psycopg
from dagster import ConfigurableResource
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field

from analytics_platform.tenants.ids import validate_tenant_id

# Key of the advisory lock that orders warehouse DDL against writes (any 64-bit constant).
DDL_LOCK = 0x616E616C79746963
# Warehouse URLs this process has seen at the current version: no query needed again.
_migrated_urls: set[str] = set()


@cache
def warehouse_ddl() -> str:
    return package_files.files("analytics_platform").joinpath("sql/warehouse.sql").read_text()


def warehouse_checksum() -> str:
    """The warehouse schema version: a digest of the DDL file."""
    return hashlib.sha256(warehouse_ddl().encode()).hexdigest()


def qualified(table: str) -> sql.Composable:
    """`'raw.file_events'` -> a safely quoted identifier."""
    return sql.Identifier(*table.split("."))


class PostgresResource(ConfigurableResource):
    """The warehouse Postgres (schemas platform, raw, staging, marts)."""

    url: str = Field(description="libpq connection URL of the warehouse database (DATABASE_URL).")

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        return psycopg.connect(
            self.url, autocommit=autocommit, application_name="analytics-platform"
        )

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection whose work commits together, or not at all.

        It holds the warehouse DDL lock in shared mode, so a migration (which takes
        it exclusively) never interleaves with a write and the two cannot deadlock.
        """
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (DDL_LOCK,))
            yield conn

    def ensure_warehouse(self) -> None:
        """Make sure the warehouse has this code's schemas and tables.

        Cheap when it does (one SELECT, then nothing for the rest of the process):
        runs and sensors call it, and must never run DDL against a migrated
        warehouse, since DDL inside concurrent runs deadlocks with their loads.
        Start-up (`analytics-platform migrate`, `dev`, `demo`, `tenants add`)
        migrates before the first run.
        """
        if self.url in _migrated_urls:
            return
        try:
            with self.connect(autocommit=True) as conn:
                current = conn.execute(
                    "SELECT 1 FROM platform.warehouse_version WHERE checksum = %s",
                    (warehouse_checksum(),),
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            current = None
        if current is None:
            self.migrate_warehouse()
        _migrated_urls.add(self.url)

    def migrate_warehouse(self) -> bool:
        """Apply `sql/warehouse.sql` unless this version is recorded; True when applied.

        Idempotent and safe to race: migrators queue on the exclusive DDL lock, and
        writers (see `transaction`) wait for it instead of deadlocking with it.
        """
        checksum = warehouse_checksum()
        with self.connect() as conn, conn.transaction():
            # A writer of this process waiting on us would hang rather than deadlock: fail.
            conn.execute("SET LOCAL lock_timeout = '120s'")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            conn.execute(
                "CREATE SCHEMA IF NOT EXISTS platform; "
                "CREATE TABLE IF NOT EXISTS platform.warehouse_version ("
                " checksum text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            if conn.execute(
                "SELECT 1 FROM platform.warehouse_version WHERE checksum = %s", (checksum,)
            ).fetchone():
                return False
            conn.execute(warehouse_ddl())
            conn.execute(
                "INSERT INTO platform.warehouse_version (checksum) VALUES (%s)", (checksum,)
            )
        _migrated_urls.add(self.url)
        return True

    def copy_rows(
        self,
        conn: psycopg.Connection,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
    ) -> int:
        """Stream rows into `table` with COPY; returns the number of rows written."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        written = 0
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
        return written

    def replace_slice(
        self,
        table: str,
        tenant: str,
        dates: Sequence[dt.date],
        rows: Iterable[Sequence[object]],
        columns: Sequence[str],
        *,
        date_column: str = "_partition_date",
        scope: Mapping[str, object] | None = None,
        conn: psycopg.Connection | None = None,
    ) -> int:
        """Replace a tenant's rows for `dates` with `rows`: delete and COPY in one transaction.

        A reader sees the old slice or the new one, never half. Pass `conn` to make
        the replacement part of a larger transaction (it then commits with it);
        `scope` narrows the slice further by column equality.
        """
        validate_tenant_id(tenant)
        if conn is None:
            with self.transaction() as own:
                return self.replace_slice(
                    table,
                    tenant,
                    dates,
                    rows,
                    columns,
                    date_column=date_column,
                    scope=scope,
                    conn=own,
                )
        self.delete_slice(conn, table, tenant, dates, date_column=date_column, scope=scope)
        return self.copy_rows(conn, table, columns, rows)

    def delete_slice(
        self,
        conn: psycopg.Connection,
        table: str,
        tenant: str,
        dates: Sequence[dt.date],
        *,
        date_column: str = "_partition_date",
        scope: Mapping[str, object] | None = None,
    ) -> None:
        """Lock a tenant's slice of `table` for `dates` until `conn` commits, and empty it."""
        validate_tenant_id(tenant)
        for day in sorted(set(dates)):
            # Two runs rebuilding the same slice would otherwise both load it.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{table}|{tenant}|{day}",))
        scope = dict(scope or {})
        conditions = [
            sql.SQL("tenant_id = %s"),
            sql.SQL("{} = ANY(%s)").format(sql.Identifier(date_column)),
            *(sql.SQL("{} = %s").format(sql.Identifier(column)) for column in scope),
        ]
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(
                qualified(table), sql.SQL(" AND ").join(conditions)
            ),
            (tenant, list(dates), *scope.values()),
        )

    def copy_blocks(
        self,
        conn: psycopg.Connection,
        table: str,
        columns: Sequence[str],
        blocks: Iterable[bytes],
        *,
        queue_blocks: int = 4,
    ) -> None:
        """Stream blocks of COPY text rows (see ingest/copy_text.py) into `table`.

        `blocks` is consumed in the calling thread while another thread sends the
        previous blocks, so producing rows and Postgres loading them overlap; at
        most `queue_blocks` blocks wait in between.
        """
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_blocks)
        failed: list[BaseException] = []
        with conn.cursor() as cur, cur.copy(statement) as copy:

            def send() -> None:
                try:
                    while (block := pending.get()) is not None:
                        copy.write(block)
                except BaseException as err:
                    failed.append(err)
                    while pending.get() is not None:
                        pass  # unblock the producer; it stops at its next block

            sender = threading.Thread(target=send, name="copy-sender", daemon=True)
            sender.start()
            try:
                for block in blocks:
                    if failed:
                        break
                    pending.put(block)
            finally:
                pending.put(None)
                sender.join()
            if failed:
                raise failed[0]

    def libpq_env(self) -> dict[str, str]:
        """The connection as PG* environment variables, for tools such as dbt."""
        params = conninfo_to_dict(self.url)
        names = {
            "host": "PGHOST",
            "port": "PGPORT",
            "user": "PGUSER",
            "password": "PGPASSWORD",
            "dbname": "PGDATABASE",
        }
        env = {names[k]: str(v) for k, v in params.items() if k in names and v is not None}
        env.setdefault("PGHOST", "127.0.0.1")
        env.setdefault("PGPORT", "5432")
        env.setdefault("PGUSER", "postgres")
        env.setdefault("PGPASSWORD", "")
        return env
