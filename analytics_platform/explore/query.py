"""`analytics-platform query TENANT SQL`: read-only SQL against one tenant's ClickHouse database.

With embedded chDB a person otherwise has no way to look at the served data
short of writing Python. Three walls keep the query inside the tenant:

1. ClickHouse parses the text once (`formatQuery`): a second statement is a
   syntax error, comments disappear, and only that canonical text runs.
2. `sql_guard` reads ClickHouse's syntax tree, then its analyzed tree, and
   refuses writes, other databases, outside-reaching table functions, dictGet
   and the like.
3. The session runs with `readonly=1` (chDB: `SET` before the query; server:
   a setting on every request), so the engine itself refuses writes and any
   attempt to change settings (`SETTINGS readonly=0`).

The tenant's database is the default database, so `fct_sessions` means
`tenant_<id>.fct_sessions`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from analytics_platform.explore.sql_guard import (
    QueryRefused,
    check_ast,
    check_query_tree,
    parse_ast,
    sql_string,
    statement_kind,
)
from analytics_platform.redaction import redact
from analytics_platform.resources.clickhouse import ClickHouseResource, quote_identifier

DEFAULT_MAX_ROWS = 10_000


class QueryFailed(RuntimeError):
    """ClickHouse refused or failed the query; the message carries its reason."""


class TenantDatabaseMissing(LookupError):
    pass


class Reader(Protocol):
    def query_df(self, query: str) -> pd.DataFrame: ...

    def explain(self, query: str) -> list[str]:
        """The lines an EXPLAIN statement prints, exactly as sent (nothing appended)."""
        ...


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def read_only_settings(max_rows: int | None = None) -> dict[str, Any]:
    """Settings of a query: read only and, given `max_rows`, a cap on the rows sent back.

    The cap stops at a block boundary (`break`), so more rows may arrive; the
    checks' own queries run without it, so their printouts are never cut short.
    """
    if max_rows is None:
        return {"readonly": 1}
    return {"readonly": 1, "max_result_rows": max_rows + 1, "result_overflow_mode": "break"}


def embedded_session_statements(database: str, max_rows: int | None = None) -> list[str]:
    """What a chDB session runs before the query: the settings (readonly last), then USE."""
    settings = read_only_settings(max_rows)
    readonly = settings.pop("readonly")
    statements = [f"SET {name} = {value!r}" for name, value in settings.items()]
    # readonly=1 forbids every later SET, so it comes last; USE is still allowed.
    return [*statements, f"SET readonly = {readonly}", f"USE {quote_identifier(database)}"]


class _EmbeddedReader:
    def __init__(self, session: Any):
        self._session = session

    def query_df(self, query: str) -> pd.DataFrame:
        return self._session.query_df(query)

    def explain(self, query: str) -> list[str]:
        return self._session.query_df(query)["explain"].tolist()


class ServerReader:
    """A clickhouse-connect client on the tenant's database, sending the settings per query.

    `query_df` appends `FORMAT Native` to the text, and in an EXPLAIN that clause
    would become part of the explained query, so `explain` sends the text as it
    is and reads the server's default TabSeparated output, one line per row.
    """

    def __init__(self, client: Any, settings: dict[str, Any]):
        self._client = client
        self._settings = settings

    def query_df(self, query: str) -> pd.DataFrame:
        return self._client.query_df(query, settings=self._settings)

    def explain(self, query: str) -> list[str]:
        return self._client.raw_query(query, settings=self._settings).decode().splitlines()


def _tenant_tables(session: Any, database: str) -> pd.DataFrame:
    return session.query_df(
        f"SELECT name FROM system.tables WHERE database = {sql_string(database)} ORDER BY name"
    )


def _require_database(session: Any, tenant: str, database: str) -> None:
    found = session.query_df(
        f"SELECT count() AS n FROM system.databases WHERE name = {sql_string(database)}"
    )
    if int(found["n"].iloc[0]) == 0:
        raise TenantDatabaseMissing(
            f"tenant {tenant} has no ClickHouse database {database}: register it with "
            f"`analytics-platform tenants add {tenant}` (or check CLICKHOUSE_URL)"
        )


@contextmanager
def tenant_reader(
    clickhouse: ClickHouseResource, tenant: str, *, max_rows: int | None = None
) -> Iterator[Reader]:
    """A read-only session whose default database is the tenant's.

    Embedded: a session of `clickhouse.session()`, so it takes chDB's file lock
    like every other user of the data path; its settings end with the session.
    """
    database = clickhouse.database_for(tenant)
    if clickhouse.is_embedded:
        with clickhouse.session() as session:
            _require_database(session, tenant, database)
            for statement in embedded_session_statements(database, max_rows):
                session.command(statement)
            yield _EmbeddedReader(session)
        return
    import clickhouse_connect

    try:
        client = clickhouse_connect.get_client(dsn=clickhouse.url, database=database)
    except Exception as err:  # clickhouse-connect's own errors, raised while connecting
        raise QueryFailed(
            f"could not reach the ClickHouse server at {redact(clickhouse.url)} "
            f"(CLICKHOUSE_URL) as database {database}: is it up, and was the tenant added "
            f"(`analytics-platform tenants add {tenant}`)? {err}"
        ) from err
    try:
        reader = ServerReader(client, read_only_settings(max_rows))
        _require_database(reader, tenant, database)
        yield reader
    finally:
        client.close()


def _ask(reader: Reader, query: str) -> pd.DataFrame:
    try:
        return reader.query_df(query)
    except QueryRefused:
        raise
    except Exception as err:  # chDB and clickhouse-connect raise their own error types
        raise QueryFailed(f"ClickHouse refused the query: {str(err).strip()}") from err


def _explain(reader: Reader, query: str) -> list[str]:
    try:
        return reader.explain(query)
    except Exception as err:
        raise QueryFailed(f"ClickHouse refused the query: {str(err).strip()}") from err


def canonical_query(reader: Reader, sql: str) -> str:
    """ClickHouse's formatting of `sql`: one statement, comments gone, or a syntax error."""
    if not sql.strip():
        raise QueryRefused("the query is empty: give one SELECT statement")
    try:
        return str(_ask(reader, f"SELECT formatQuery({sql_string(sql)}) AS q")["q"].iloc[0])
    except QueryFailed as err:
        # The parser's message names our formatQuery(...) wrapper; the user wrote the inside.
        reason = str(err).split(": In scope SELECT formatQuery(", 1)[0]
        if "Multi-statements are not allowed" in reason:
            raise QueryRefused(
                "one statement at a time: the query holds more than one (a ';' followed by more)"
            ) from err
        raise QueryFailed(reason) from err


def checked_query(reader: Reader, database: str, sql: str) -> tuple[str, str]:
    """(statement kind, the canonical text that may run), or QueryRefused saying why not."""
    canonical = canonical_query(reader, sql)
    ast = parse_ast(_explain(reader, f"EXPLAIN AST {canonical}"))
    kind = statement_kind(ast, canonical)
    table_functions = _ask(reader, "SELECT name FROM system.table_functions")["name"].tolist()
    try:
        check_ast(ast, database, table_functions)
        if kind == "SELECT":
            # Only now may ClickHouse analyze it (analysis runs scalar subqueries).
            check_query_tree(_explain(reader, f"EXPLAIN QUERY TREE {canonical}"), database)
    except QueryRefused as err:
        if "outside this tenant's database" not in str(err):
            raise
        tables = ", ".join(_tenant_tables(reader, database)["name"]) or "none yet"
        raise QueryRefused(f"{err}. Tables of {database}: {tables}") from err
    return kind, canonical


def fetch(reader: Reader, kind: str, canonical: str, max_rows: int) -> QueryResult:
    """Run a query `checked_query` passed; at most `max_rows` rows, with their ClickHouse types."""
    types = _ask(reader, f"DESCRIBE ({canonical})")["type"].tolist() if kind == "SELECT" else []
    frame = _ask(reader, canonical)
    rows = [tuple(row) for row in frame.itertuples(index=False, name=None)]
    columns = [str(c) for c in frame.columns]
    return QueryResult(
        columns=columns,
        types=types or ["String"] * len(columns),
        rows=rows[:max_rows],
        truncated=len(rows) > max_rows,
    )


def run_query(
    clickhouse: ClickHouseResource, tenant: str, sql: str, *, max_rows: int = DEFAULT_MAX_ROWS
) -> QueryResult:
    """Run one read-only statement in the tenant's database and return at most `max_rows` rows."""
    database = clickhouse.database_for(tenant)
    with tenant_reader(clickhouse, tenant) as reader:
        kind, canonical = checked_query(reader, database, sql)
    # A second session, capped: chDB admits no settings change after readonly=1.
    with tenant_reader(clickhouse, tenant, max_rows=max_rows) as reader:
        return fetch(reader, kind, canonical, max_rows)
