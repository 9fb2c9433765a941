"""ClickHouse serving: one interface over a server (clickhouse-connect) or embedded chDB.

`CLICKHOUSE_URL` picks the backend: `http(s)://user:password@host:8123` for a
server, `chdb:///absolute/path` for the in-process engine. chDB admits one
process per data path, so every embedded session holds an inter-process file
lock; a second process waits for it and fails with a clear message after
`lock_timeout_seconds`.
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

from analytics_platform.settings import CHDB_SCHEME
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
    database_prefix: str = Field(default="tenant_", description="Tenant database = prefix + id.")
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
        lock = FileLock(str(path) + ".lock")
        try:
            lock.acquire(timeout=self.lock_timeout_seconds)
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
        """Make `table`'s `dates` partitions hold exactly `frame`, each swapped atomically.

        Serving tables are `PARTITION BY <date_column>`; the rows are loaded into a
        scratch copy and moved with REPLACE PARTITION (a day with no rows is
        dropped), so readers never see a half-loaded day and running it twice
        changes nothing.
        """
        with self._loaded_scratch(session, tenant, table, frame) as (target, scratch):
            days_with_rows = (
                set(pd.to_datetime(frame[date_column]).dt.date) if len(frame) else set()
            )
            # One ALTER with an action per day: each partition still swaps atomically,
            # and a 90-day backfill costs one statement instead of 90.
            actions = [
                f"REPLACE PARTITION ID '{day:%Y%m%d}' FROM {scratch}"
                if day in days_with_rows
                else f"DROP PARTITION ID '{day:%Y%m%d}'"
                for day in sorted(set(dates))
            ]
            if actions:
                session.command(f"ALTER TABLE {target} {', '.join(actions)}")
        return len(frame)

    def replace_table(
        self, session: ClickHouseSession, tenant: str, table: str, frame: pd.DataFrame
    ) -> int:
        """Make the tenant's `table` hold exactly `frame`, swapped in with EXCHANGE TABLES."""
        with self._loaded_scratch(session, tenant, table, frame) as (target, scratch):
            session.command(f"EXCHANGE TABLES {scratch} AND {target}")
        return len(frame)

    @contextmanager
    def _loaded_scratch(
        self, session: ClickHouseSession, tenant: str, table: str, frame: pd.DataFrame
    ) -> Iterator[tuple[str, str]]:
        """(target, scratch): an empty copy of the tenant's table holding `frame`, dropped after."""
        database = self.database_for(tenant)
        target = f"{quote_identifier(database)}.{quote_identifier(table)}"
        scratch_name = f"_load_{table}_{uuid.uuid4().hex[:12]}"
        scratch = f"{quote_identifier(database)}.{quote_identifier(scratch_name)}"
        session.command(f"CREATE TABLE {scratch} AS {target}")
        try:
            if len(frame):
                session.insert_df(database, scratch_name, frame)
            yield target, scratch
        finally:
            session.command(f"DROP TABLE IF EXISTS {scratch}")
