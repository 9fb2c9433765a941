"""dbt staging and marts, partitioned by tenant_day: one dbt invocation per layer per run."""

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import psycopg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)
from psycopg import sql

from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.automation import on_upstream_update
from analytics_platform.checks import holds
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.dbt_project import (
    SLICE_ENV,
    dbt_project,
    invocation_target,
    keep_parse_state,
    manifest_path,
)
from analytics_platform.partitions import (
    SliceWindow,
    TenantDay,
    slice_window,
    tenant_day,
    tenant_days,
)
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import SHARD, asset_key, asset_name


class DbtRunConfig(Config):
    """Launchpad knobs for a dbt run."""

    full_refresh: bool = False


class PlatformDbtTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        # Sources (raw_file_events) and what dbt tests attach to, in this shard.
        key = super().get_asset_key(dbt_resource_props)
        return key.with_prefix(SHARD) if SHARD else key

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
            key=asset_key(node["name"]),
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


def dbt_build_args(*, full_refresh: bool = False) -> list[str]:
    """The dbt command; the slice goes in the environment (see `slice_environment`)."""
    return ["build", "--full-refresh"] if full_refresh else ["build"]


def slice_environment(dbt_vars: Mapping[str, Any]) -> dict[str, str]:
    """The run's slice for dbt's `slice_var` macro (macros/tenant_day_slice.sql).

    Passed in the environment rather than as --vars: dbt re-parses the whole
    project whenever its vars change, i.e. on every run.
    """
    return {SLICE_ENV: json.dumps(dict(dbt_vars), sort_keys=True)}


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
def model_layers() -> dict[str, str]:
    """Model name -> its layer (the folder under models/), read from the manifest."""
    manifest = json.loads(manifest_path().read_text())
    return {
        node["name"]: node["fqn"][1]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }


def model_layer(name: str) -> str:
    return model_layers()[name]


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


def slice_row_counts(
    conn: psycopg.Connection, relation: tuple[str, str, str | None], window: SliceWindow
) -> dict[str, object]:
    """Row-count metadata of a model for the run's slice (see assets/row_counts.py).

    A day-partitioned model is counted per tenant-day; a whole-history one (no day
    column) per tenant, as `rows_of_tenant`, since no partition owns those rows.
    """
    schema, table, day = relation
    if day is None:
        query = sql.SQL(
            "SELECT tenant_id, count(*) FROM {} WHERE tenant_id = ANY(%s) GROUP BY 1"
        ).format(sql.Identifier(schema, table))
        per_tenant = dict.fromkeys(window.tenants, 0)
        per_tenant.update(conn.execute(query, [list(window.tenants)]).fetchall())
        return {"rows_of_tenant": MetadataValue.json(dict(sorted(per_tenant.items())))}
    query = sql.SQL(
        "SELECT tenant_id, {day}, count(*) FROM {table} WHERE tenant_id = ANY(%s) "
        "AND {day} BETWEEN %s AND %s GROUP BY 1, 2"
    ).format(day=sql.Identifier(day), table=sql.Identifier(schema, table))
    counts = {TenantDay(t, d): 0 for t in window.tenants for d in window.dates}
    for tenant, date, rows in conn.execute(
        query, [list(window.tenants), window.start_date, window.end_date]
    ):
        counts[TenantDay(tenant, date)] = rows
    return row_count_metadata(counts)


def with_slice_row_counts(
    events: Iterator[Any], postgres: PostgresResource, window: SliceWindow
) -> Iterator[Any]:
    """dbt's events, each model's output carrying the row counts of the run's slice.

    (dagster-dbt's fetch_row_counts counts whole tables through the manifest's
    relation names, which name the database the manifest was parsed against.)
    """
    relations = model_relations()
    with postgres.connect(autocommit=True) as conn:
        for event in events:
            relation = relations.get(getattr(event, "output_name", None))
            if isinstance(event, Output) and relation is not None:
                event = event.with_metadata(
                    {**event.metadata, **slice_row_counts(conn, relation, window)}
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


def holding_on_failed_tests(
    events: Iterator[Any],
    postgres: PostgresResource,
    slices: Sequence[TenantDay],
    layer: str,
    run_id: str,
) -> Iterator[Any]:
    """dbt's events; when a blocking dbt test failed, the run's slices are held at `layer`.

    The same hold a failed blocking Pandera check records (checks/holds.py): the
    rules dbt holds must keep a neighbouring day's run from publishing what failed
    here too. Recorded even when dbt then fails the step, which it does.
    """
    failed: list[str] = []
    try:
        for event in events:
            if (
                isinstance(event, AssetCheckResult)
                and not event.passed
                and event.severity == AssetCheckSeverity.ERROR
            ):
                asset = event.asset_key.to_user_string() if event.asset_key else layer
                failed.append(f"{asset}:{event.check_name}")
            yield event
    finally:
        if failed:
            with postgres.transaction() as conn:
                holds.hold(conn, slices, layer, failed, run_id)


# Advisory lock key (any 64-bit constant) held by a build that creates the models' tables.
FIRST_BUILD_LOCK = 0x646274_6669727374


@contextmanager
def first_build_guard(postgres: PostgresResource, layer: str) -> Iterator[None]:
    """Serialize the builds of a layer while one of its tables does not exist yet.

    dbt creates an incremental model's table on its first build (DDL), and two
    runs doing that at once fail with "relation already exists". Once the tables
    exist, builds of different tenants run side by side (each model locks its
    tenants instead: macros/tenant_day_slice.sql).
    """
    tables = [
        f"{schema}.{table}"
        for name, (schema, table, _day) in model_relations().items()
        if model_layer(name) == layer
    ]
    with postgres.connect(autocommit=True) as conn:
        missing = [
            t for t in tables if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None
        ]
        if not missing:
            yield
            return
        conn.execute("SELECT pg_advisory_lock(%s)", (FIRST_BUILD_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (FIRST_BUILD_LOCK,))


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
    )
    def build_layer(
        context: AssetExecutionContext,
        config: DbtRunConfig,
        dbt: DbtCliResource,
        postgres: PostgresResource,
    ) -> Iterator[Any]:
        slices = tenant_days(context.partition_keys)
        window = slice_window(slices)
        held = []
        if layer == "marts":
            with postgres.connect() as conn:
                held = holds.held_neighbours(conn, window)
            if held:
                context.log.warning(
                    f"left as they are, held by a failed check: {', '.join(map(str, held))}"
                )
        args = dbt_build_args(full_refresh=config.full_refresh)
        connection = postgres.libpq_env()
        target = invocation_target(f"analytics_dbt_{layer}", connection)
        with first_build_guard(postgres, layer):
            with _environment(
                {**connection, **slice_environment(partitioned_dbt_vars(window, held))}
            ):
                invocation = dbt.cli(args, context=context, target_path=target)
            if "PGDATABASE" in connection:
                invocation.manifest = in_database(invocation.manifest, connection["PGDATABASE"])
            # Asset keys are the model names, in this shard (PlatformDbtTranslator).
            selected = {asset_name(key) for key in context.selected_asset_keys}
            models = selected & set(model_relations())
            events = with_column_metadata(invocation, models)
            events = holding_on_failed_tests(events, postgres, slices, layer, context.run.run_id)
            yield from with_slice_row_counts(events, postgres, window)
        keep_parse_state(target, connection)
        # Kept when dbt failed (the error names its dbt.log there); a daemon running for
        # weeks would otherwise fill target/ with a folder per step.
        shutil.rmtree(target, ignore_errors=True)

    return build_layer


analytics_dbt_staging = dbt_layer("staging")
analytics_dbt_marts = dbt_layer("marts")
dbt_layers = [analytics_dbt_staging, analytics_dbt_marts]
