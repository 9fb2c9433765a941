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
    columns = [sql.SQL(c) for c in query.columns]
    if query.with_window:
        columns += [
            sql.SQL("(s.day::timestamp - make_interval(mins => {})) AS window_start").format(
                sql.Literal(tolerance_minutes)
            ),
            sql.SQL(
                "(s.day::timestamp + interval '1 day' + make_interval(mins => {})) AS window_end"
            ).format(sql.Literal(tolerance_minutes)),
        ]
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
    with conn.cursor() as cur:
        cur.execute("SET LOCAL TIME ZONE 'UTC'")
        with cur.copy(copy, params) as stream:
            for block in stream:
                buffer.write(block)
    buffer.seek(0)
    timestamps = [*query.timestamps, *(("window_start", "window_end") if query.with_window else ())]
    # Everything arrives as text; the models coerce numbers, so ids keep their zeros.
    frame = pd.read_csv(buffer, na_values=[NULL], keep_default_na=False, dtype=str)
    for column in query.booleans:
        frame[column] = frame[column].map({"t": True, "f": False})
    for column in timestamps:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
