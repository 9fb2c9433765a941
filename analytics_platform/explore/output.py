"""How `analytics-platform query` prints rows: an aligned table, CSV or JSON.

ClickHouse's values arrive as a DataFrame (numpy and pandas types); they are
turned into plain Python first, so the three formats agree on every value.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from analytics_platform.explore.query import QueryResult

FORMATS = ("table", "csv", "json")


def plain_value(value: Any, clickhouse_type: str = "") -> Any:
    """A DataFrame cell as JSON-ready Python: None for NULL/NaN, dates as ISO text, lists."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if "Date" in clickhouse_type and "DateTime" not in clickhouse_type:
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _plain_rows(result: QueryResult) -> list[list[Any]]:
    return [
        [plain_value(value, kind) for value, kind in zip(row, result.types, strict=False)]
        for row in result.rows
    ]


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def format_result(result: QueryResult, output: str = "table") -> str:
    """The rows as an aligned table, CSV with a header, or a JSON list of objects."""
    rows = _plain_rows(result)
    if output == "json":
        return json.dumps(
            [dict(zip(result.columns, row, strict=True)) for row in rows], default=str, indent=2
        )
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    if output != "table":
        raise ValueError(f"unknown output format {output!r}: use one of {', '.join(FORMATS)}")
    return _aligned_table(result.columns, rows, result.truncated)


def _aligned_table(columns: Sequence[str], rows: list[list[Any]], truncated: bool) -> str:
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if is_number else v.ljust(w)
            for v, w, is_number in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    count = f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
    out.append(count + (", more not shown: raise --max-rows)" if truncated else ")"))
    return "\n".join(out)
