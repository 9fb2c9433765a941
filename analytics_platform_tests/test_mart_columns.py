"""The dbt YAML is the one source of a model's columns: everything else is derived or checked.

- the serving selects are derived (`mart_columns.serving_select`);
- the ClickHouse tables the migrations build (real chDB), the tables dbt builds
  (real Postgres, real dbt) and the Pandera models are compared with the YAML,
  and these tests fail when a column is added in one place only.
"""

from __future__ import annotations

import copy
import json

import pytest

from analytics_platform.assets.dbt import model_layers
from analytics_platform.assets.serving import SERVED_MARTS
from analytics_platform.checks import schemas
from analytics_platform.checks.layers import RAW_CHECKS, STAGING_CHECKS, SchemaCheck
from analytics_platform.dbt_project import dbt_resource, manifest_path
from analytics_platform.ingest.contract import EVENT_TYPE_PATTERN
from analytics_platform.mart_columns import (
    ColumnDeclarationError,
    column_differences,
    columns_from_manifest,
    model_columns,
    serving_select,
)
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.migrations import migrate_tenant

MODELS = tuple(sorted(model_layers()))  # every dbt model, staging and marts
# Served alongside every mart's own columns: when the row reached ClickHouse.
SERVING_ONLY = {"_loaded_at": "DateTime64(3, 'UTC')"}


def manifest() -> dict:
    return json.loads(manifest_path().read_text())


def with_extra_column(model: str, name: str, data_type: str) -> dict:
    """The prepared manifest as if the model's YAML had one more column."""
    changed = copy.deepcopy(manifest())
    node = changed["nodes"][f"model.analytics_platform.{model}"]
    node["columns"][name] = {"name": name, "data_type": data_type, "meta": {}, "config": {}}
    return changed


# --- Deriving from the YAML, on a hand-made manifest ------------------------------------


def tiny_manifest(columns: dict[str, dict], not_null: tuple[str, ...] = ()) -> dict:
    model = "model.p.fct_tiny"
    tests = {
        f"test.p.not_null_{c}": {
            "resource_type": "test",
            "test_metadata": {"name": "not_null"},
            "column_name": c,
            "attached_node": model,
        }
        for c in not_null
    }
    node = {
        "resource_type": "model",
        "name": "fct_tiny",
        "unique_id": model,
        "original_file_path": "models/marts/fct_tiny.yml",
        "columns": {name: {"name": name, **spec} for name, spec in columns.items()},
    }
    return {"nodes": {model: node, **tests}}


def test_clickhouse_types_and_casts_follow_data_type_not_null_and_overrides():
    tiny = tiny_manifest(
        {
            "tenant_id": {"data_type": "text", "config": {"meta": {"clickhouse_type": "LC(S)"}}},
            "day": {"data_type": "date"},
            "visits": {"data_type": "bigint"},
            "revenue": {"data_type": "numeric"},
            "referrer": {"data_type": "text"},
            "seen_at": {"data_type": "timestamp with time zone"},
        },
        not_null=("day", "visits", "revenue", "seen_at"),
    )
    columns = columns_from_manifest(tiny, "fct_tiny")
    assert {c.name: c.clickhouse_type for c in columns} == {
        "tenant_id": "LC(S)",  # the override, verbatim
        "day": "Date",
        "visits": "UInt64",
        "revenue": "Float64",
        "referrer": "Nullable(String)",  # no not_null test
        "seen_at": "DateTime64(3, 'UTC')",
    }
    assert serving_select(columns) == (
        "tenant_id, day, visits, revenue::float8 AS revenue, referrer, seen_at"
    )


def test_a_column_without_data_type_or_with_an_unmapped_one_is_refused_by_name():
    with pytest.raises(ColumnDeclarationError, match=r"fct_tiny\.yml: column 'visits'"):
        columns_from_manifest(tiny_manifest({"visits": {"description": "no type"}}), "fct_tiny")
    (geo,) = columns_from_manifest(tiny_manifest({"where": {"data_type": "point"}}), "fct_tiny")
    with pytest.raises(ColumnDeclarationError, match=r"fct_tiny\.where: data_type 'point'"):
        _ = geo.clickhouse_type


def test_every_model_column_declares_its_type_and_serving_reads_every_mart_column():
    for model in MODELS:
        assert model_columns(model), model  # raises when a column lacks data_type
    sessions = SERVED_MARTS[[m.table for m in SERVED_MARTS].index("fct_sessions")]
    # Hand-worked: revenue is numeric (cast for pandas and ClickHouse), the rest as stored.
    assert sessions.select.startswith("tenant_id, session_id, session_date, site_id, visitor_id, ")
    assert sessions.select.endswith(", is_bounce, converted, revenue::float8 AS revenue")
    assert sessions.select.count(",") == 20  # 21 columns in fct_sessions.yml


def test_a_column_added_to_the_yaml_only_reaches_the_serving_select():
    changed = with_extra_column("fct_sessions", "host", "text")
    select = serving_select(columns_from_manifest(changed, "fct_sessions"))
    assert select.endswith(", revenue::float8 AS revenue, host")


# --- The ClickHouse migrations, on chDB --------------------------------------------------


def clickhouse_columns(clickhouse, session, tenant: str, table: str) -> dict[str, str]:
    database = clickhouse.database_for(tenant)
    frame = session.query_df(f"DESCRIBE TABLE `{database}`.`{table}`")
    return dict(zip(frame["name"], frame["type"], strict=True))


def declared_clickhouse(columns) -> dict[str, str]:
    return {c.name: c.clickhouse_type for c in columns} | SERVING_ONLY


@pytest.fixture
def migrated(postgres, clickhouse, new_tenant):
    """A tenant with every shipped migration applied; yields (tenant, session)."""
    postgres.ensure_warehouse()
    tenant = new_tenant("cols")
    with clickhouse.session() as session:
        migrate_tenant(postgres, clickhouse, session, tenant)
        yield tenant, session


def test_the_migrations_build_every_served_mart_with_the_yamls_columns(clickhouse, migrated):
    tenant, session = migrated
    problems = []
    for mart in SERVED_MARTS:
        found = clickhouse_columns(clickhouse, session, tenant, mart.table)
        declared = declared_clickhouse(model_columns(mart.table))
        problems += column_differences(f"ClickHouse {mart.table}", declared, found)
    assert problems == [], "\n".join(problems)


def test_the_clickhouse_check_fails_on_a_column_added_to_the_yaml_only(clickhouse, migrated):
    tenant, session = migrated
    changed = with_extra_column("fct_sessions", "host", "text")
    declared = declared_clickhouse(columns_from_manifest(changed, "fct_sessions"))
    found = clickhouse_columns(clickhouse, session, tenant, "fct_sessions")
    assert column_differences("ClickHouse fct_sessions", declared, found) == [
        "ClickHouse fct_sessions: column 'host' is in the YAML (Nullable(String)) but missing here"
    ]
    # ... and on one added by a migration only, or typed differently there.
    session.command(
        f"ALTER TABLE `{clickhouse.database_for(tenant)}`.fct_sessions "
        "ADD COLUMN host LowCardinality(String)"
    )
    found = clickhouse_columns(clickhouse, session, tenant, "fct_sessions")
    assert column_differences("ClickHouse fct_sessions", declared, found) == [
        "ClickHouse fct_sessions: column 'host' is LowCardinality(String) here "
        "but Nullable(String) per the YAML"
    ]
    unchanged = declared_clickhouse(model_columns("fct_sessions"))
    assert column_differences("ClickHouse fct_sessions", unchanged, found) == [
        "ClickHouse fct_sessions: column 'host' (LowCardinality(String)) is not in the YAML"
    ]


# --- The Pandera models ------------------------------------------------------------------

# Pandera dtype -> the dbt data_types it reads faithfully.
PANDERA_READS = {
    "string[pyarrow]": {"text"},
    "datetime64[ns, UTC]": {"timestamp with time zone"},
    "float64": {"numeric", "double precision"},
    "int64": {"integer", "bigint"},
    "bool": {"boolean"},
}
COMPUTED_BY_THE_READ = {"window_start", "window_end"}  # checks/slices.py, with_window


def pandera_differences(check: SchemaCheck, yaml_types: dict[str, str]) -> list[str]:
    """A Pandera model's columns that the model's YAML lacks or types otherwise."""
    problems = []
    for name, column in check.model.to_schema().columns.items():
        if name in COMPUTED_BY_THE_READ:
            continue
        if name not in yaml_types:
            problems.append(f"{check.model.__name__}.{name} is not a column of {check.asset}")
        elif yaml_types[name] not in PANDERA_READS.get(str(column.dtype), set()):
            problems.append(
                f"{check.model.__name__}.{name} is {column.dtype} but {yaml_types[name]} per "
                f"{check.asset}'s YAML"
            )
    return problems


def dbt_model_checks() -> list[SchemaCheck]:
    checks = [c for c in (*RAW_CHECKS, *STAGING_CHECKS) if isinstance(c, SchemaCheck)]
    return [c for c in checks if c.asset in MODELS]


def test_the_pandera_models_read_only_yaml_columns_with_their_types():
    checks = dbt_model_checks()
    assert {c.model for c in checks} == {schemas.StgEvents, schemas.StgEventsExpectations}
    problems = []
    for check in checks:
        types = {c.name: c.data_type for c in model_columns(check.asset)}
        problems += pandera_differences(check, types)
    assert problems == [], "\n".join(problems)


def test_the_pandera_check_fails_on_a_column_the_yaml_does_not_have():
    class Renamed(schemas.StgEventsExpectations):
        event_kind: str  # as if renamed in Pandera only

    check = SchemaCheck("renamed", "stg_events", Renamed, STAGING_CHECKS[0].query, ())
    types = {c.name: c.data_type for c in model_columns("stg_events")}
    assert pandera_differences(check, types) == ["Renamed.event_kind is not a column of stg_events"]
    assert set(pandera_differences(check, {**types, "session_hint": "integer"})) == {
        "Renamed.event_kind is not a column of stg_events",
        "Renamed.session_hint is string[pyarrow] but integer per stg_events's YAML",
    }


def test_the_yamls_event_type_pattern_is_the_contracts():
    patterns = [
        n["test_metadata"]["kwargs"]["pattern"]
        for n in manifest()["nodes"].values()
        if n["resource_type"] == "test" and n["name"] == "stg_events_event_type_snake_case"
    ]
    assert patterns == [EVENT_TYPE_PATTERN.pattern]


# --- The tables dbt builds, on real Postgres ---------------------------------------------


def built_columns(postgres: PostgresResource) -> dict[str, dict[str, str]]:
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema IN ('staging', 'marts') ORDER BY table_name, ordinal_position"
        ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, {})[column] = data_type
    return tables


def test_dbt_builds_every_model_with_the_yamls_columns_and_types(
    fresh_database, monkeypatch, tmp_path
):
    postgres = PostgresResource(url=fresh_database("ap_test_columns"))
    postgres.ensure_warehouse()
    for name, value in postgres.libpq_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANALYTICS_PLATFORM_SLICE", raising=False)
    # Empty raw tables: dbt still creates every model's table with the types its SQL yields.
    dbt_resource().cli(["run"], target_path=tmp_path / "target").wait()
    built = built_columns(postgres)
    problems = []
    for model in MODELS:
        declared = {c.name: c.data_type for c in model_columns(model)}
        problems += column_differences(f"Postgres {model}", declared, built.get(model, {}))
    assert problems == [], "\n".join(problems)
    # A column declared in the YAML that the SQL does not build is named.
    changed = with_extra_column("fct_daily_metrics", "host", "text")
    declared = {c.name: c.data_type for c in columns_from_manifest(changed, "fct_daily_metrics")}
    assert column_differences(
        "Postgres fct_daily_metrics", declared, built["fct_daily_metrics"]
    ) == ["Postgres fct_daily_metrics: column 'host' is in the YAML (text) but missing here"]
