"""ClickHouse serving: one interface over a server (clickhouse-connect) or embedded chDB.

`CLICKHOUSE_URL` picks the backend: `http(s)://user:password@host:8123` for a
server, `chdb:///absolute/path` for the in-process engine. chDB admits one
process per data path, so every embedded session holds an inter-process file
lock; a second process waits for it and fails with a clear message after
`lock_timeout_seconds`. While it waits it leaves a want marker (`chdb_handoff`),
so the read API, which keeps its session between requests, hands it over.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pandas as pd
from dagster import ConfigurableResource
from filelock import FileLock, Timeout
from pydantic import Field

from analytics_platform.resources.chdb_handoff import acquire_announced, lock_path
from analytics_platform.settings import CHDB_SCHEME
from analytics_platform.shard import SCRATCH_DATABASE, TENANT_DATABASE_PREFIX
from analytics_platform.tenants.ids import validate_tenant_id


class ClickHouseLockTimeout(RuntimeError):
    pass


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class ClickHouseSession(Protocol):
    def command(self, statement: str) -> None: ...

    def query_df(self, query: str) -> pd.DataFrame: ...

    def insert_df(self, database: str, table: str, frame: pd.DataFrame) -> None: ...


class _ChdbSession:
    def __init__(self, path: Path):
        from chdb import session as chdb_session

        self._session = chdb_session.Session(str(path))

    def command(self, statement: str) -> None:
        self._session.query(statement)

    def query_df(self, query: str) -> pd.DataFrame:
        return self._session.query(query, "DataFrame")

    def insert_df(self, database: str, table: str, frame: pd.DataFrame) -> None:
        columns = ", ".join(quote_identifier(c) for c in frame.columns)
        # chDB's Python() table function reads the DataFrame bound to this local name.
        rows = frame  # noqa: F841
        self._session.query(
            f"INSERT INTO {quote_identifier(database)}.{quote_identifier(table)} ({columns}) "
            f"SELECT {columns} FROM Python(rows)"
        )

    def close(self) -> None:
        self._session.close()


class _ServerSession:
    def __init__(self, url: str):
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)

    def command(self, statement: str) -> None:
        self._client.command(statement)

    def query_df(self, query: str) -> pd.DataFrame:
        return self._client.query_df(query)

    def insert_df(self, database: str, table: str, frame: pd.DataFrame) -> None:
        self._client.insert_df(table=table, df=frame, database=database)

    def close(self) -> None:
        self._client.close()


class ClickHouseResource(ConfigurableResource):
    """Per-tenant ClickHouse databases for serving marts."""

    url: str = Field(
        description="CLICKHOUSE_URL: http(s)://... for a server, chdb:///path for chDB."
    )
    # The shard's own names (PLATFORM_SHARD), so shards can share a ClickHouse server.
    database_prefix: str = Field(
        default=TENANT_DATABASE_PREFIX, description="Tenant database = prefix + id."
    )
    scratch_database: str = Field(
        default=SCRATCH_DATABASE,
        description="Where rows wait on their way into a tenant's table (no tenant reads it).",
    )
    lock_timeout_seconds: float = Field(
        default=600.0, description="How long to wait for another process using embedded chDB."
    )

    @property
    def is_embedded(self) -> bool:
        return self.url.startswith(CHDB_SCHEME)

    def database_for(self, tenant: str) -> str:
        return f"{self.database_prefix}{validate_tenant_id(tenant)}"

    @contextmanager
    def session(self) -> Iterator[ClickHouseSession]:
        """A session; for chDB it holds the data path's inter-process lock until closed."""
        if not self.is_embedded:
            server = _ServerSession(self.url)
            try:
                yield server
            finally:
                server.close()
            return
        path = Path(self.url.removeprefix(CHDB_SCHEME))
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path(path)))
        try:
            acquire_announced(lock, path, self.lock_timeout_seconds)
        except Timeout as err:
            raise ClickHouseLockTimeout(
                f"embedded ClickHouse (chDB) at {path} stayed busy for "
                f"{self.lock_timeout_seconds:.0f}s: another process holds {lock.lock_file}. "
                "chDB admits one process per data path; wait for the other run to finish, "
                "or set CLICKHOUSE_URL to a ClickHouse server for concurrent access."
            ) from err
        try:
            embedded = _ChdbSession(path)
            try:
                yield embedded
            finally:
                embedded.close()
        finally:
            lock.release()

    def replace_partitions(
        self,
        session: ClickHouseSession,
        tenant: str,
        table: str,
        frame: pd.DataFrame,
        dates: Sequence[dt.date],
        *,
        date_column: str = "event_date",
    ) -> int:
        """One tenant's `replace_partitions` (see ScratchTable); for many, use `scratch`."""
        with self.scratch(session, table, like_tenant=tenant) as scratch:
            return scratch.replace_partitions(tenant, frame, dates, date_column=date_column)

    def replace_table(
        self, session: ClickHouseSession, tenant: str, table: str, frame: pd.DataFrame
    ) -> int:
        """One tenant's `replace_table` (see ScratchTable); for many, use `scratch`."""
        with self.scratch(session, table, like_tenant=tenant) as scratch:
            return scratch.replace_table(tenant, frame)

    @contextmanager
    def scratch(
        self, session: ClickHouseSession, table: str, *, like_tenant: str
    ) -> Iterator[ScratchTable]:
        """An empty copy of `like_tenant`'s `table` that every tenant's rows pass through.

        It lives in `scratch_database`, never in a tenant's database, so a tenant's
        reader never sees it, nor another tenant's rows passing through it, and it
        is dropped afterwards. Every tenant's table has the same structure
        (migrations run before serving), so one copy serves them all.
        """
        scratch = ScratchTable(self, session, table, f"_load_{table}_{uuid.uuid4().hex[:12]}")
        session.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.scratch_database)}")
        session.command(f"CREATE TABLE {scratch.qualified} AS {scratch.target(like_tenant)}")
        try:
            yield scratch
        finally:
            session.command(f"DROP TABLE IF EXISTS {scratch.qualified}")


class ScratchTable:
    """Rows go into the scratch, move into a tenant's table atomically, and the scratch empties.

    Per tenant that is an INSERT, one ALTER and a TRUNCATE (one ALTER alone when
    the tenant has no rows), against four statements with a scratch table per
    tenant: at 1,000 tenants x 6 served tables, 12,000 DDL statements fewer a run.
    """

    def __init__(
        self, clickhouse: ClickHouseResource, session: ClickHouseSession, table: str, name: str
    ):
        self._clickhouse = clickhouse
        self._session = session
        self._table = table
        self._name = name
        self.qualified = f"{quote_identifier(clickhouse.scratch_database)}.{quote_identifier(name)}"

    def target(self, tenant: str) -> str:
        """The tenant's table, quoted."""
        database = self._clickhouse.database_for(tenant)
        return f"{quote_identifier(database)}.{quote_identifier(self._table)}"

    def replace_partitions(
        self,
        tenant: str,
        frame: pd.DataFrame,
        dates: Sequence[dt.date],
        *,
        date_column: str = "event_date",
    ) -> int:
        """Make the tenant's `dates` partitions hold exactly `frame`, each swapped atomically.

        Serving tables are `PARTITION BY <date_column>`; the rows are loaded into the
        scratch and copied over with REPLACE PARTITION (a day with no rows is
        dropped), so readers never see a half-loaded day and running it twice
        changes nothing. One ALTER with an action per day: each partition still
        swaps atomically, and a 90-day backfill costs one statement instead of 90.
        """
        days_with_rows = set(pd.to_datetime(frame[date_column]).dt.date) if len(frame) else set()
        actions = [
            f"REPLACE PARTITION ID '{day:%Y%m%d}' FROM {self.qualified}"
            if day in days_with_rows
            else f"DROP PARTITION ID '{day:%Y%m%d}'"
            for day in sorted(set(dates))
        ]
        self._swap(tenant, frame, actions)
        return len(frame)

    def replace_table(self, tenant: str, frame: pd.DataFrame) -> int:
        """Make the tenant's (unpartitioned) table hold exactly `frame`, swapped atomically."""
        # An unpartitioned MergeTree holds one partition, ID 'all'.
        action = (
            f"REPLACE PARTITION ID 'all' FROM {self.qualified}"
            if len(frame)
            else "DROP PARTITION ID 'all'"
        )
        self._swap(tenant, frame, [action])
        return len(frame)

    def _swap(self, tenant: str, frame: pd.DataFrame, actions: list[str]) -> None:
        if not actions:
            return
        if len(frame):
            self._session.insert_df(self._clickhouse.scratch_database, self._name, frame)
        try:
            self._session.command(f"ALTER TABLE {self.target(tenant)} {', '.join(actions)}")
        finally:
            if len(frame):
                self._session.command(f"TRUNCATE TABLE {self.qualified}")
