"""The code location loads and shows analysts the lineage they expect."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

from dagster import AssetKey, Definitions, MultiPartitionsDefinition

from analytics_platform.definitions import defs
from analytics_platform.partitions import tenant_day

LINEAGE = ["raw_file_events", "stg_events", "fct_daily_metrics", "serving_daily_metrics"]


def test_definitions_validate():
    Definitions.validate_loadable(defs)


def test_lineage_runs_raw_to_staging_to_marts_to_serving():
    graph = defs.resolve_asset_graph()
    for upstream, downstream in itertools.pairwise(LINEAGE):
        assert AssetKey(upstream) in graph.get(AssetKey(downstream)).parent_keys, (
            upstream,
            downstream,
        )


def test_every_layer_is_partitioned_by_tenant_day():
    graph = defs.resolve_asset_graph()
    for name in LINEAGE:
        partitions = graph.get(AssetKey(name)).partitions_def
        assert isinstance(partitions, MultiPartitionsDefinition)
        assert partitions == tenant_day


def test_layers_are_grouped_and_dbt_tests_arrive_as_checks():
    graph = defs.resolve_asset_graph()
    groups = {name: graph.get(AssetKey(name)).group_name for name in LINEAGE}
    assert groups == {
        "raw_file_events": "raw",
        "stg_events": "staging",
        "fct_daily_metrics": "marts",
        "serving_daily_metrics": "serving",
    }
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert {"stg_events", "fct_daily_metrics"} <= checked


def test_importing_the_code_location_connects_to_nothing():
    # An unreachable database must not matter at import time: no connections, no dbt parse.
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", "import analytics_platform.definitions"],
        check=True,
        env=env,
        timeout=60,
    )
    assert time.monotonic() - started < 30


def test_marts_explain_themselves_in_the_ui():
    graph = defs.resolve_asset_graph()
    for name in ("stg_events", "fct_sessions", "fct_daily_metrics", "dim_visitors"):
        node = graph.get(AssetKey(name))
        assert node.owners == ["team:analytics-engineering"]
        assert {"dbt", "postgres"} <= set(node.kinds)
        assert node.description and len(node.description) > 40
        columns = node.metadata["dagster/column_schema"].columns
        # Every column documented in the YAML, so the schema tab never shows a bare name.
        assert columns and all(column.description for column in columns), name
        assert node.automation_condition is not None
    sessions = graph.get(AssetKey("fct_sessions")).metadata["dagster/column_schema"].columns
    assert {"session_id", "session_start", "channel", "is_bounce"} <= {c.name for c in sessions}


def test_dbt_version_is_asked_once_per_process_however_many_dbt_steps_run(tmp_path):
    """Pins what PlatformDbtCliResource relies on in dagster-dbt (a private hook).

    Each dbt step builds its own resource; a dbt that logs how it is called shows
    `dbt --version` asked once for two resources' invocations. If dagster-dbt renames the
    hook or asks for the version another way, this fails: then drop or redo the override.
    """
    from functools import cached_property

    from dagster_dbt import DbtCliResource

    from analytics_platform.dbt_project import PlatformDbtCliResource, dbt_executable, dbt_project

    assert isinstance(DbtCliResource.__dict__["_cli_version"], cached_property)
    calls = tmp_path / "dbt-calls.log"
    logging_dbt = tmp_path / "dbt"
    logging_dbt.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {dbt_executable()} "$@"\n')
    logging_dbt.chmod(0o755)
    for _step in range(2):
        resource = PlatformDbtCliResource(
            project_dir=dbt_project(), dbt_executable=str(logging_dbt)
        )
        resource.cli(["debug", "--config-dir"], target_path=tmp_path / "target").wait()
    asked = calls.read_text().splitlines()
    assert asked.count("--version") == 1, asked
    assert sum(line.startswith("debug --config-dir") for line in asked) == 2, asked
