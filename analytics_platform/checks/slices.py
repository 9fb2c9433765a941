"""Reading the tenant-days a run built into pandas, fast: one COPY of the checked columns."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql

from analytics_platform.partitions import TenantDay

NULL = r"\N"


@dataclass(frozen=True)
class SliceQuery:
    """What to read of one table for a run's tenant-days.

    `columns` are SQL expressions with aliases (only what the model checks, never
    payloads such as `properties`); `day_column` scopes rows to the run's days, or
    None for tables that hold a tenant's whole history.
    """

    table: str
    columns: Sequence[str]
    day_column: str | None
    booleans: Sequence[str] = ()
    timestamps: Sequence[str] = ()
    with_window: bool = False


def slice_table(slices: Sequence[TenantDay]) -> tuple[sql.Composable, list[object]]:
    """`(tenant, day)` rows of the run, as a FROM item named `s`, and its parameters."""
    return (
        sql.SQL("unnest(%s::text[], %s::date[]) AS s(tenant, day)"),
        [[s.tenant for s in slices], [s.date for s in slices]],
    )


def read_slice(
    conn: psycopg.Connection,
    query: SliceQuery,
    slices: Sequence[TenantDay],
    *,
    tolerance_minutes: int = 0,
) -> pd.DataFrame:
    """The run's rows of `query.table` as a DataFrame (timestamps UTC, NULLs as NaN/None).

    With `with_window`, each row also carries `window_start`/`window_end`: its
    partition day widened by the loader's timestamp tolerance.
    """
    source, params = slice_table(slices)
    schema, table = query.table.split(".")
    # Timestamps travel as epoch microseconds: far cheaper to parse than ISO text.
    columns = [
        sql.SQL(f"(extract(epoch FROM {expr}) * 1000000)::bigint AS {_alias(expr)}")
        if _alias(expr) in query.timestamps
        else sql.SQL(expr)
        for expr in query.columns
    ]
    if query.with_window:
        columns.append(sql.SQL("s.day AS partition_day"))
    if query.day_column is None:
        condition = sql.SQL("t.tenant_id IN (SELECT tenant FROM {})").format(source)
        select = sql.SQL("SELECT {} FROM {} AS t WHERE {}").format(
            sql.SQL(", ").join(columns), sql.Identifier(schema, table), condition
        )
    else:
        select = sql.SQL(
            "SELECT {} FROM {} AS t JOIN {} ON t.tenant_id = s.tenant AND t.{} = s.day"
        ).format(
            sql.SQL(", ").join(columns),
            sql.Identifier(schema, table),
            source,
            sql.Identifier(query.day_column),
        )
    copy = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER, NULL {})").format(
        select, sql.Literal(NULL)
    )
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(copy, params) as stream:
        for block in stream:
            buffer.write(block)
    buffer.seek(0)
    # Everything else arrives as text; the models coerce numbers, so ids keep their zeros.
    frame = pd.read_csv(
        buffer,
        na_values=[NULL],
        keep_default_na=False,
        dtype={c: str for c in map(_alias, query.columns) if c not in query.timestamps},
    )
    for column in query.booleans:
        frame[column] = frame[column].map({"t": True, "f": False})
    for column in query.timestamps:
        frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)
    if query.with_window:
        # The accepted range of each row's day, as the loader applied it.
        tolerance = pd.Timedelta(minutes=tolerance_minutes)
        day = pd.to_datetime(frame.pop("partition_day").astype("category"), utc=True)
        frame["window_start"] = day - tolerance
        frame["window_end"] = day + pd.Timedelta(days=1) + tolerance
    return frame


def _alias(expression: str) -> str:
    """The output name of a select-list expression: `t.x` -> x, `... AS y` -> y."""
    head, _, alias = expression.rpartition(" AS ")
    return alias.strip() if head else expression.rsplit(".", 1)[-1].strip()
