"""Postgres warehouse access: streamed COPY and atomic replacement of tenant-day slices."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources as package_files

import psycopg
from dagster import ConfigurableResource
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field

from analytics_platform.tenants.ids import validate_tenant_id


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
        """A connection whose work commits together, or not at all."""
        with self.connect() as conn, conn.transaction():
            yield conn

    def ensure_warehouse(self) -> None:
        """Create the platform's schemas and tables if they are missing (idempotent)."""
        ddl = package_files.files("analytics_platform").joinpath("sql/warehouse.sql").read_text()
        with self.transaction() as conn:
            # Concurrent CREATE ... IF NOT EXISTS can still collide; serialize them.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('analytics_platform.ddl'))")
            conn.execute(ddl)

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
