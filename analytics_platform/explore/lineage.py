"""`analytics-platform lineage MODEL.COLUMN`: column lineage down to the raw tables.

Every dbt materialization carries `dagster/column_lineage` (assets/dbt.py,
from dagster-dbt's `fetch_column_metadata(with_column_lineage=True)`), but
Dagster's open-source UI has no view that shows it. This reads the same
metadata from the Dagster instance: for each model, the most recent
materialization that carries it, whatever its partition (lineage follows the
model's SQL, not the data). An asset without such metadata (the raw tables,
which are Python assets) is a leaf.

A model that was never materialized has no lineage to show: dagster-dbt
computes it from the compiled SQL and the built tables' column types during a
run, through functions it does not export, so the error names what to
materialize instead of guessing from the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, TableColumnLineage

from analytics_platform.shard import asset_key, asset_name

COLUMN_LINEAGE_KEY = "dagster/column_lineage"
# Materializations looked at per model for one carrying lineage (older runs, or a
# run whose lineage parse failed, may lack it).
LOOKBACK = 25

# column -> the upstream (asset, column) pairs it is computed from
ColumnLineage = dict[str, list[tuple[str, str]]]


class LineageError(LookupError):
    """The model or column is unknown, or has no lineage yet; the message says what to do."""


@dataclass(frozen=True)
class LineageNode:
    asset: str
    column: str
    upstream: tuple[LineageNode, ...] = ()
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"asset": self.asset, "column": self.column}
        if self.note:
            shown["note"] = self.note
        shown["upstream"] = [node.as_dict() for node in self.upstream]
        return shown


def parse_target(target: str) -> tuple[str, str]:
    """'fct_sessions.channel' -> ('fct_sessions', 'channel')."""
    model, dot, column = target.strip().partition(".")
    if not dot or not model or not column or "." in column:
        raise LineageError(f"give MODEL.COLUMN, e.g. fct_sessions.channel (got {target!r})")
    return model, column.lower()


def dbt_models(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """Model name -> its documented columns, from the dbt manifest."""
    return {
        node["name"]: sorted(node.get("columns", {}))
        for node in manifest["nodes"].values()
        if node.get("resource_type") == "model"
    }


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def column_lineage(metadata: Mapping[str, Any]) -> ColumnLineage | None:
    """The `dagster/column_lineage` entry of a materialization's metadata, as plain names."""
    entry = metadata.get(COLUMN_LINEAGE_KEY)
    value = getattr(entry, "value", entry)
    if not isinstance(value, TableColumnLineage):
        return None
    return {
        column.lower(): sorted({(asset_name(dep.asset_key), dep.column_name) for dep in deps})
        for column, deps in value.deps_by_column.items()
    }


def latest_column_lineage(instance: DagsterInstance, asset: str) -> ColumnLineage | None:
    """The lineage of the newest materialization of `asset` that carries one, or None."""
    records = instance.fetch_materializations(asset_key(asset), limit=LOOKBACK).records
    for record in records:
        materialization = record.asset_materialization
        found = column_lineage(materialization.metadata) if materialization else None
        if found is not None:
            return found
    return None


def lineage_tree(
    model: str,
    column: str,
    lookup: Callable[[str], ColumnLineage | None],
    models: Mapping[str, Sequence[str]],
) -> LineageNode:
    """`model.column` with its upstream columns, recursively, down to assets without lineage.

    `lookup(asset)` gives an asset's lineage (None when it has none); `models`
    names the dbt models, so a model without lineage is told apart from a raw table.
    """
    if model not in models:
        raise LineageError(
            f"unknown model {model!r}: the dbt models are {', '.join(sorted(models))} "
            "(the raw tables are where lineage ends, not where it starts)"
        )
    lineage = lookup(model)
    if lineage is None:
        raise LineageError(never_materialized(model))
    if column not in lineage:
        raise LineageError(
            f"{model} has no column {column!r}: its columns are {', '.join(sorted(lineage))}"
        )
    cache: dict[str, ColumnLineage | None] = {model: lineage}

    def cached(asset: str) -> ColumnLineage | None:
        if asset not in cache:
            cache[asset] = lookup(asset)
        return cache[asset]

    def node(asset: str, name: str, path: frozenset[tuple[str, str]]) -> LineageNode:
        known = cached(asset)
        if known is None:
            note = f"no lineage yet: materialize {asset}" if asset in models else None
            return LineageNode(asset, name, note=note)
        deps = known.get(name.lower())
        if deps is None:
            return LineageNode(asset, name, note=f"not in {asset}'s latest lineage")
        if not deps:
            return LineageNode(asset, name, note="no upstream column (a constant or computed)")
        here = path | {(asset, name)}
        upstream = tuple(node(a, c, here) for a, c in deps if (a, c) not in here)
        return LineageNode(asset, name, upstream)

    return node(model, column, frozenset())


def never_materialized(model: str) -> str:
    return (
        f"{model} has no materialization with column lineage in this Dagster instance "
        f"(DAGSTER_HOME): materialize it once, e.g. `make demo`, or "
        f"`dagster asset materialize -m analytics_platform.definitions --select "
        f"'+{model}' --partition '<YYYY-MM-DD>|<tenant>'`, then run this again"
    )


def format_tree(root: LineageNode) -> str:
    """An indented tree: the column, then each upstream column one level deeper."""
    lines = [_label(root)]

    def add(children: Sequence[LineageNode], prefix: str) -> None:
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(child)}")
            add(child.upstream, prefix + ("    " if last else "│   "))

    add(root.upstream, "")
    return "\n".join(lines)


def _label(node: LineageNode) -> str:
    return f"{node.asset}.{node.column}" + (f"  ({node.note})" if node.note else "")


def leaves(root: LineageNode) -> set[tuple[str, str]]:
    """The (asset, column) pairs the column finally comes from."""
    if not root.upstream:
        return {(root.asset, root.column)}
    return set().union(*(leaves(child) for child in root.upstream))
