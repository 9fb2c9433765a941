"""Two tenant shards as two code locations of one workspace, and a tenant moved between them.

One webserver, one daemon and one Dagster instance; a code server per shard, each with
its own warehouse, ClickHouse and landing zone (`PLATFORM_SHARD`). Each shard's assets
are keyed under its name and its tenants are its own partitions, so the workspace
loads both, and a day landed in one shard is built and served there only. A tenant
then moves with `analytics-platform tenants move` and is rebuilt in the other shard.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, RunsFilter

from analytics_platform.resources.postgres import PostgresResource
from analytics_platform_tests.deployment import Deployment
from analytics_platform_tests.events import tracker_event, write_lines

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = dt.date(2026, 10, 12)
SHARDS = ("a", "b")
RUN_BOUND_SECONDS = 900
DAILY = (
    "SELECT event_date, site_id, events, sessions, visitors, page_views "
    "FROM marts.fct_daily_metrics WHERE tenant_id = %s ORDER BY event_date, site_id"
)


@pytest.fixture
def shards(tmp_path: Path, fresh_database) -> Iterator[tuple[Deployment, dict]]:
    stores = {
        name: {
            "DATABASE_URL": fresh_database(f"ap_test_shard_{name}"),
            "CLICKHOUSE_URL": f"chdb://{tmp_path / f'chdb-{name}' / 'clickhouse'}",
            "LANDING_DIR": str(tmp_path / f"landing-{name}"),
        }
        for name in SHARDS
    }
    for env in stores.values():
        PostgresResource(url=env["DATABASE_URL"]).ensure_warehouse()
        Path(env["LANDING_DIR"]).mkdir()
    deployment = Deployment.prepare(
        tmp_path / "dagster-home",
        {"DAGSTER_POSTGRES_URL": fresh_database("ap_test_shards_dagster")},
        shards=stores,
    )
    try:
        deployment.start()
        yield deployment, stores
    finally:
        deployment.stop()


def cli(deployment: Deployment, shard: dict[str, str], name: str, *args: str) -> str:
    """`analytics-platform ...` with one shard's settings, as its operator runs it."""
    env = {
        **deployment.env,
        **shard,
        "PLATFORM_SHARD": name,
        "PLATFORM_HOME": str(deployment.home.parent / f"platform-{name}"),
    }
    result = subprocess.run(
        [str(BIN / "analytics-platform"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def land(shard: dict[str, str], tenant: str, events: list[str]) -> None:
    folder = Path(shard["LANDING_DIR"]) / tenant / DAY.isoformat()
    temporary = write_lines(folder / ".events.jsonl.tmp", events)
    os.replace(temporary, folder / "events.jsonl")


def daily(shard: dict[str, str], tenant: str) -> list[tuple]:
    with PostgresResource(url=shard["DATABASE_URL"]).connect() as conn:
        return conn.execute(DAILY, (tenant,)).fetchall()


def served_partitions(instance: DagsterInstance, shard: str, tenant: str) -> set[str]:
    """The tenant's partitions of the shard's served daily metrics, as Dagster recorded."""
    key = AssetKey([shard, "serving_daily_metrics"])
    records = instance.fetch_materializations(key, limit=100).records
    return {
        record.partition_key
        for record in records
        if record.partition_key and record.partition_key.endswith(f"|{tenant}")
    }


def test_two_shards_in_one_workspace_keep_their_tenants_and_a_tenant_moves(shards, new_tenant):
    deployment, stores = shards
    tenants = {name: new_tenant(f"sh{name}") for name in SHARDS}

    # One workspace, both locations loaded: the same assets under each shard's key.
    nodes = deployment.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
    keys = {tuple(node["assetKey"]["path"]) for node in nodes}
    assert {("a", "stg_events"), ("b", "stg_events")} <= keys
    assert not any(len(key) == 1 for key in keys)  # nothing outside a shard

    for name, tenant in tenants.items():
        added = cli(deployment, stores[name], name, "tenants", "add", tenant)
        assert f"ClickHouse database {name}_tenant_{tenant}" in added  # shareable servers
        land(
            stores[name],
            tenant,
            [
                tracker_event(f"{tenant}-1", "v1", f"{DAY}T09:00:00Z"),
                tracker_event(f"{tenant}-2", "v2", f"{DAY}T10:00:00Z", session="s2"),
            ],
        )
    with deployment.instance() as instance:
        assert instance.get_dynamic_partitions("tenants_a") == [tenants["a"]]
        assert instance.get_dynamic_partitions("tenants_b") == [tenants["b"]]

        # Each shard's daemon-driven landing run builds its own tenant, in its own stores.
        def both_served():
            done = [
                served_partitions(instance, name, tenants[name]) == {f"{DAY}|{tenants[name]}"}
                for name in SHARDS
            ]
            return all(done)

        deployment.wait_for(both_served, "both shards to serve their day", RUN_BOUND_SECONDS, 3)
        runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "landing_file_sensor"}))
        assert runs and all(run.is_success for run in runs), [(r.run_id, r.status) for r in runs]
        assert {run.remote_job_origin.location_name for run in runs} == {
            "analytics_platform_a",
            "analytics_platform_b",
        }
    before = daily(stores["a"], tenants["a"])
    assert before and before[0][2] == 2  # events of the day
    assert daily(stores["b"], tenants["a"]) == [] and daily(stores["a"], tenants["b"]) == []

    # The move: suspended on its shard, then pulled into the other with that shard's settings.
    cli(deployment, stores["a"], "a", "tenants", "suspend", tenants["a"])
    moved = cli(
        deployment,
        stores["b"],
        "b",
        "tenants",
        "move",
        tenants["a"],
        "--from-database-url",
        stores["a"]["DATABASE_URL"],
        "--from-landing-dir",
        stores["a"]["LANDING_DIR"],
    )
    assert "raw.file_events 2" in moved and "rebuilt" in moved
    assert daily(stores["b"], tenants["a"]) == before
    assert (Path(stores["b"]["LANDING_DIR"]) / tenants["a"] / DAY.isoformat()).is_dir()
    with deployment.instance() as instance:
        assert sorted(instance.get_dynamic_partitions("tenants_b")) == sorted(tenants.values())
        assert served_partitions(instance, "b", tenants["a"]) == {f"{DAY}|{tenants['a']}"}
        # Still a partition of shard a while suspended there, until it is deprovisioned.
        assert instance.get_dynamic_partitions("tenants_a") == [tenants["a"]]
