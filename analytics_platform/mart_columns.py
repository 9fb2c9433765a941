"""A model's columns as its dbt YAML declares them: the one source of a mart's columns.

Each column of a staging or mart model has a `data_type` (the Postgres type dbt
builds) in `dbt_project/models/**/*.yml`; a served mart's ClickHouse type is
derived from it (`CLICKHOUSE_TYPES`), `Nullable(...)` unless the column has a
`not_null` test, or given verbatim where ClickHouse differs (`config: meta:
clickhouse_type:`, e.g. `LowCardinality(String)`). The serving select is derived
here; the ClickHouse migrations and the Pandera models stay hand-written and
are compared with these columns by `column_differences` in the tests.

Read from the manifest `analytics-platform prepare` writes (the YAML as dbt
parsed it), only when a run or a test asks: importing the code location reads
nothing here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analytics_platform.dbt_project import manifest_path

# dbt-postgres data_type -> ClickHouse type. Integer columns of the marts are counts,
# hence unsigned; numeric is served as Float64 (cast to float8 when read, see below).
CLICKHOUSE_TYPES = {
    "text": "String",
    "date": "Date",
    "bigint": "UInt64",
    "integer": "UInt32",
    "numeric": "Float64",
    "double precision": "Float64",
    "boolean": "Bool",
    "timestamp with time zone": "DateTime64(3, 'UTC')",
}
# Postgres types psycopg returns as something pandas and ClickHouse cannot take as is
# (numeric arrives as Decimal): the serving select casts them.
SERVING_CASTS = {"numeric": "float8"}


class ColumnDeclarationError(ValueError):
    pass


@dataclass(frozen=True)
class ModelColumn:
    """One column of a dbt model, as its YAML declares it."""

    model: str
    name: str
    data_type: str
    not_null: bool
    clickhouse_override: str | None = None

    @property
    def clickhouse_type(self) -> str:
        if self.clickhouse_override:
            return self.clickhouse_override
        if self.data_type not in CLICKHOUSE_TYPES:
            raise ColumnDeclarationError(
                f"{self.model}.{self.name}: data_type {self.data_type!r} has no ClickHouse "
                f"type in CLICKHOUSE_TYPES ({', '.join(CLICKHOUSE_TYPES)}); add it there or "
                "set config.meta.clickhouse_type on the column in the model's YAML"
            )
        base = CLICKHOUSE_TYPES[self.data_type]
        return base if self.not_null else f"Nullable({base})"

    @property
    def select_expression(self) -> str:
        cast = SERVING_CASTS.get(self.data_type)
        return f"{self.name}::{cast} AS {self.name}" if cast else self.name


def columns_from_manifest(manifest: Mapping[str, Any], model: str) -> list[ModelColumn]:
    """The columns of `model`, in YAML order; a column without data_type is an error."""
    nodes = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["name"] == model
    ]
    if not nodes:
        raise ColumnDeclarationError(f"no dbt model named {model!r} in the manifest")
    (node,) = nodes
    not_null = {
        n.get("column_name")
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test"
        and (n.get("test_metadata") or {}).get("name") == "not_null"
        and n.get("attached_node") == node["unique_id"]
    }
    columns = []
    for name, column in node["columns"].items():
        if not column.get("data_type"):
            raise ColumnDeclarationError(
                f"{node['original_file_path']}: column {name!r} of {model} has no data_type; "
                "every column of a model declares its Postgres type in the YAML"
            )
        meta = {**column.get("meta", {}), **column.get("config", {}).get("meta", {})}
        columns.append(
            ModelColumn(
                model=model,
                name=name,
                data_type=column["data_type"].lower(),
                not_null=name in not_null,
                clickhouse_override=meta.get("clickhouse_type"),
            )
        )
    return columns


@functools.cache
def _manifest() -> dict[str, Any]:
    return json.loads(manifest_path().read_text())


def model_columns(model: str) -> list[ModelColumn]:
    """The columns of a dbt model, from the prepared manifest."""
    return columns_from_manifest(_manifest(), model)


def serving_select(columns: list[ModelColumn]) -> str:
    """The select list that reads a mart from Postgres the way ClickHouse takes it."""
    return ", ".join(c.select_expression for c in columns)


def column_differences(
    where: str, declared: Mapping[str, str], found: Mapping[str, str]
) -> list[str]:
    """What differs between the YAML's columns and those found in `where` (name -> type).

    Order-insensitive; types compared without spaces. Each line names the column
    and both sides, so the fix is obvious from a failing test.
    """

    def normal(type_name: str) -> str:
        return type_name.replace(" ", "").lower()

    problems = [
        f"{where}: column {name!r} is in the YAML ({declared[name]}) but missing here"
        for name in sorted(declared.keys() - found.keys())
    ]
    problems += [
        f"{where}: column {name!r} ({found[name]}) is not in the YAML"
        for name in sorted(found.keys() - declared.keys())
    ]
    problems += [
        f"{where}: column {name!r} is {found[name]} here but {declared[name]} per the YAML"
        for name in sorted(declared.keys() & found.keys())
        if normal(declared[name]) != normal(found[name])
    ]
    return problems
