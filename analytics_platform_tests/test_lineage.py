"""`analytics-platform lineage`: column lineage read back from real dbt materializations."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetSelection, DagsterInstance

from analytics_platform.dbt_project import dbt_resource, manifest_path
from analytics_platform.explore.lineage import (
    LineageError,
    dbt_models,
    format_tree,
    latest_column_lineage,
    leaves,
    lineage_tree,
    read_manifest,
)
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform_tests.events import day_file, worked_example, write_lines
from analytics_platform_tests.test_pipeline import materialize_layer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = dt.date(2026, 11, 2)
CHANNEL_INPUTS = {"utm_source", "utm_medium", "referrer"}


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
    warehouse_url: str,
    dagster_storage_url: str,
    clickhouse_url: str,
) -> Iterator[dict[str, str]]:
    """The environment of the CLI, and of this module's Dagster instance (the same storage)."""
    env = {
        "DATABASE_URL": warehouse_url,
        "DAGSTER_POSTGRES_URL": dagster_storage_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(tmp_path_factory.mktemp("landing")),
        "PLATFORM_HOME": str(tmp_path_factory.mktemp("platform")),
        "DAGSTER_HOME": str(REPO),
        "DAGSTER_ARTIFACTS_DIR": str(tmp_path_factory.mktemp("artifacts")),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def instance(stores: dict[str, str]) -> Iterator[DagsterInstance]:
    """The Postgres-backed instance the CLI reads, after one tenant-day of staging + sessions."""
    tenant = f"lin_{uuid.uuid4().hex[:8]}"
    write_lines(day_file(Path(stores["LANDING_DIR"]), tenant, DAY), worked_example(DAY))
    resources = {
        "postgres": PostgresResource(url=stores["DATABASE_URL"]),
        "clickhouse": ClickHouseResource(url=stores["CLICKHOUSE_URL"], lock_timeout_seconds=60),
        "landing": LandingZoneResource(root=stores["LANDING_DIR"]),
        "dbt": dbt_resource(),
    }
    with DagsterInstance.get() as dagster_instance:
        dagster_instance.add_dynamic_partitions("tenants", [tenant])
        result = materialize_layer(
            AssetSelection.assets("raw_file_events", "stg_events", "fct_sessions"),
            tenant,
            DAY,
            resources,
            dagster_instance,
        )
        assert result.success
        yield dagster_instance


@pytest.fixture(scope="module")
def models() -> dict[str, list[str]]:
    return dbt_models(read_manifest(manifest_path()))


def test_fct_sessions_channel_traces_through_staging_to_both_raw_tables(instance, models):
    tree = lineage_tree(
        "fct_sessions", "channel", lambda asset: latest_column_lineage(instance, asset), models
    )
    assert (tree.asset, tree.column) == ("fct_sessions", "channel")
    assert {(n.asset, n.column) for n in tree.upstream} >= {
        ("stg_events", column) for column in CHANNEL_INPUTS
    }
    # Every path ends in a raw table's column: staging reads both raw sources.
    for raw in ("raw_file_events", "raw_api_events"):
        assert {(raw, column) for column in CHANNEL_INPUTS} <= leaves(tree)
    assert {asset for asset, _ in leaves(tree)} == {"raw_file_events", "raw_api_events"}

    lines = format_tree(tree).splitlines()
    assert lines[0] == "fct_sessions.channel"
    assert any(line.startswith(("├── stg_events.", "└── stg_events.")) for line in lines)
    # Raw columns sit one level below the staging column they feed.
    assert any(line.endswith("── raw_file_events.utm_source") for line in lines)
    assert all(line.startswith(("├", "└", "│", " ")) for line in lines[1:])


def test_cli_prints_the_tree_and_json_from_the_instance(instance, stores):
    env = {**os.environ, **stores}
    cli = str(BIN / "analytics-platform")
    tree = subprocess.run(
        [cli, "lineage", "fct_sessions.channel"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.splitlines()[0] == "fct_sessions.channel"
    assert "── stg_events.utm_medium" in tree.stdout
    assert "── raw_api_events.utm_medium" in tree.stdout

    as_json = subprocess.run(
        [cli, "lineage", "stg_events.event_id", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert as_json.returncode == 0, as_json.stderr
    shown = json.loads(as_json.stdout)
    assert (shown["asset"], shown["column"]) == ("stg_events", "event_id")
    assert {(up["asset"], up["column"]) for up in shown["upstream"]} == {
        ("raw_file_events", "event_id"),
        ("raw_api_events", "event_id"),
    }


def test_unknown_model_or_column_lists_the_valid_ones(instance, models):
    def lookup(asset: str):
        return latest_column_lineage(instance, asset)

    with pytest.raises(LineageError, match=r"unknown model 'fct_session'.*fct_sessions"):
        lineage_tree("fct_session", "channel", lookup, models)
    with pytest.raises(LineageError, match=r"no column 'chanel'.*channel.*session_id"):
        lineage_tree("fct_sessions", "chanel", lookup, models)


def test_a_model_never_materialized_says_what_to_materialize(models):
    with DagsterInstance.ephemeral() as empty, pytest.raises(LineageError) as refused:
        lineage_tree(
            "fct_channel_daily",
            "sessions",
            lambda asset: latest_column_lineage(empty, asset),
            models,
        )
    message = str(refused.value)
    assert "fct_channel_daily has no materialization with column lineage" in message
    assert "--select '+fct_channel_daily'" in message


def test_tree_stops_at_assets_without_lineage_and_names_gaps():
    lineage = {
        "mart": {"a": [("stage", "x"), ("stage", "y")], "b": []},
        "stage": {"x": [("raw", "x")], "y": [("mart", "a")]},  # a loop back is not followed
    }
    models = {"mart": [], "stage": [], "other_model": []}
    tree = lineage_tree("mart", "a", lineage.get, models)
    assert leaves(tree) == {("raw", "x"), ("stage", "y")}
    assert format_tree(tree).splitlines() == [
        "mart.a",
        "├── stage.x",
        "│   └── raw.x",
        "└── stage.y",
    ]
    constant = lineage_tree("mart", "b", lineage.get, models)
    assert constant.note == "no upstream column (a constant or computed)"
    unbuilt = lineage_tree(
        "mart", "a", lambda a: {"a": [("other_model", "z")]} if a == "mart" else None, models
    )
    assert unbuilt.upstream[0].note == "no lineage yet: materialize other_model"
