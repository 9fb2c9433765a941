"""dbt staging and marts, partitioned by tenant_day: one dbt invocation per layer per run."""

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import psycopg
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)
from psycopg import sql

from analytics_platform.automation import on_upstream_update
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.checks.holds import held_neighbours
from analytics_platform.dbt_project import dbt_project, manifest_path
from analytics_platform.partitions import (
    SliceWindow,
    TenantDay,
    slice_window,
    tenant_day,
    tenant_days,
)
from analytics_platform.resources.postgres import PostgresResource


class DbtRunConfig(Config):
    """Launchpad knobs for a dbt run."""

    full_refresh: bool = False


class PlatformDbtTranslator(DagsterDbtTranslator):
    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any | None
    ) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id, {})
        if node.get("resource_type") != "model":
            return spec
        layer = "staging" if "staging" in node.get("fqn", []) else "marts"
        # Keys are the model names analysts know (stg_events), not schema-prefixed.
        return spec.replace_attributes(
            key=AssetKey(node["name"]),
            group_name=layer,
            owners=["team:analytics-engineering"],
            automation_condition=on_upstream_update,
            freshness_policy=LAYER_FRESHNESS[layer],
        ).merge_attributes(kinds={"postgres"}, tags={"layer": layer})


def partitioned_dbt_vars(window: SliceWindow, held: Sequence[TenantDay] = ()) -> dict[str, Any]:
    """The dbt vars that scope every model to the run's tenant-days.

    `held` are neighbouring days held back by a failed check (checks/holds.py): the
    marts leave them as they are instead of refreshing them.
    """
    dbt_vars: dict[str, Any] = {
        "tenants": list(window.tenants),
        "start_date": window.start_date.isoformat(),
        "end_date": window.end_date.isoformat(),
    }
    if held:
        dbt_vars["held"] = [f"{s.tenant}|{s.date.isoformat()}" for s in held]
    return dbt_vars


def dbt_build_args(dbt_vars: Mapping[str, Any], *, full_refresh: bool = False) -> list[str]:
    args = ["build", "--vars", json.dumps(dict(dbt_vars), sort_keys=True)]
    return [*args, "--full-refresh"] if full_refresh else args


@contextmanager
def _environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """Expose the warehouse connection to the dbt subprocess, then restore the environment."""
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


DAY_COLUMNS = ("event_date", "session_date")


@cache
def model_relations() -> dict[str, tuple[str, str, str | None]]:
    """Model name -> (schema, table, its day column or None), read from the manifest."""
    manifest = json.loads(manifest_path().read_text())
    relations = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            day = next((c for c in DAY_COLUMNS if c in node.get("columns", {})), None)
            relations[node["name"]] = (node["schema"], node.get("alias") or node["name"], day)
    return relations


def slice_row_count(
    conn: psycopg.Connection, relation: tuple[str, str, str | None], window: SliceWindow
) -> int:
    """Rows a model holds for the run's tenants (and days, when it has a day column)."""
    schema, table, day = relation
    query = sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = ANY(%s)").format(
        sql.Identifier(schema, table)
    )
    params: list[object] = [list(window.tenants)]
    if day is not None:
        query += sql.SQL(" AND {} BETWEEN %s AND %s").format(sql.Identifier(day))
        params += [window.start_date, window.end_date]
    return conn.execute(query, params).fetchone()[0]


def with_slice_row_counts(
    events: Iterator[Any], postgres: PostgresResource, window: SliceWindow
) -> Iterator[Any]:
    """dbt's events, each model's output carrying `dagster/row_count` for the run's slice.

    (dagster-dbt's fetch_row_counts counts whole tables through the manifest's
    relation names, which name the database the manifest was parsed against.)
    """
    relations = model_relations()
    with postgres.connect(autocommit=True) as conn:
        for event in events:
            relation = relations.get(getattr(event, "output_name", None))
            if isinstance(event, Output) and relation is not None:
                event = event.with_metadata(
                    {**event.metadata, "dagster/row_count": slice_row_count(conn, relation, window)}
                )
            yield event


def in_database(manifest: Mapping[str, Any], database: str) -> dict[str, Any]:
    """The manifest with every model and source relation in `database`.

    The manifest is prepared once, against whatever database `prepare` saw; a
    deployment (or a test session) runs against its own. dagster-dbt reads
    column schemas and lineage through the manifest's relation names, and
    Postgres refuses a query that names another database.
    """
    quoted = '"{}"'.format(database.replace('"', '""'))

    def moved(node: Mapping[str, Any]) -> dict[str, Any]:
        if "database" not in node or node["database"] == database:
            return dict(node)
        old = '"{}"'.format(str(node["database"]).replace('"', '""'))
        relation = node.get("relation_name")
        return {
            **node,
            "database": database,
            "relation_name": quoted + relation.removeprefix(old) if relation else relation,
        }

    return {
        **manifest,
        "nodes": {uid: moved(node) for uid, node in manifest["nodes"].items()},
        "sources": {uid: moved(node) for uid, node in manifest["sources"].items()},
    }


COLUMN_METADATA_KEYS = ("dagster/column_schema", "dagster/column_lineage")
# (manifest file state, model) -> its column schema and lineage, as last fetched.
_column_metadata: dict[tuple[tuple[int, int], str], dict[str, Any]] = {}


def with_column_metadata(invocation: Any, models: set[str]) -> Iterator[Any]:
    """dbt's events, each model's output carrying its column schema and column lineage.

    Lineage comes from parsing each model's compiled SQL (about 4 s for the marts),
    and it only changes when the models do, i.e. with the manifest: a process
    fetches it once per model and manifest, and reuses it for later runs.
    """
    stat = manifest_path().stat()
    state = (stat.st_mtime_ns, stat.st_size)
    if not all((state, model) in _column_metadata for model in models):
        for event in invocation.stream().fetch_column_metadata(with_column_lineage=True):
            name = getattr(event, "output_name", None)
            if isinstance(event, Output) and name in models:
                kept = {k: v for k, v in event.metadata.items() if k in COLUMN_METADATA_KEYS}
                if kept:
                    _column_metadata[(state, name)] = kept
            yield event
        return
    for event in invocation.stream():
        name = getattr(event, "output_name", None)
        if isinstance(event, Output) and name in models:
            event = event.with_metadata({**event.metadata, **_column_metadata[(state, name)]})
        yield event


def _translator() -> PlatformDbtTranslator:
    return PlatformDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_layer(layer: str) -> AssetsDefinition:
    """The dbt models under `models/<layer>/`, as one partitioned multi-asset.

    Staging and marts are separate steps so the Pandera checks on staging (which
    are blocking) can stop the marts of a bad slice in the same run. Each step is
    still one dbt invocation for every tenant-day of the run.
    """

    @dbt_assets(
        manifest=manifest_path(),
        project=dbt_project(),
        select=f"path:models/{layer}",
        partitions_def=tenant_day,
        backfill_policy=BackfillPolicy.single_run(),
        dagster_dbt_translator=_translator(),
        name=f"analytics_dbt_{layer}",
        # Runs for neighbouring days rebuild overlapping slices (sessions cross
        # midnight): one dbt invocation at a time keeps concurrent runs from
        # interleaving them.
        pool="dbt",
    )
    def build_layer(
        context: AssetExecutionContext,
        config: DbtRunConfig,
        dbt: DbtCliResource,
        postgres: PostgresResource,
    ) -> Iterator[Any]:
        window = slice_window(tenant_days(context.partition_keys))
        held = []
        if layer == "marts":
            with postgres.connect() as conn:
                held = held_neighbours(conn, window)
            if held:
                context.log.warning(
                    f"left as they are, held by a failed check: {', '.join(map(str, held))}"
                )
        args = dbt_build_args(partitioned_dbt_vars(window, held), full_refresh=config.full_refresh)
        env = postgres.libpq_env()
        with _environment(env):
            invocation = dbt.cli(args, context=context)
        if "PGDATABASE" in env:
            invocation.manifest = in_database(invocation.manifest, env["PGDATABASE"])
        # Asset keys are the model names (PlatformDbtTranslator).
        models = {key.path[-1] for key in context.selected_asset_keys} & set(model_relations())
        events = with_column_metadata(invocation, models)
        yield from with_slice_row_counts(events, postgres, window)

    return build_layer


analytics_dbt_staging = dbt_layer("staging")
analytics_dbt_marts = dbt_layer("marts")
dbt_layers = [analytics_dbt_staging, analytics_dbt_marts]
