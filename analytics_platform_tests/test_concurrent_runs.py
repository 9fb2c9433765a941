"""Runs that overlap: four started at the same instant all succeed, and nothing is loaded twice.

Each run is its own process on the deployed Dagster storage (Postgres, the
project's dagster.yaml), as run workers are: the same tenant-day twice, its
neighbouring day, and another tenant. Before the warehouse DDL moved out of the
runs, such a start deadlocked in 5 of 6 tries.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance

from analytics_platform.demo.generator import generate_landing
from analytics_platform.partitions import TenantDay
from analytics_platform.tenants.lifecycle import provision_tenant
from analytics_platform.tenants.registry import register_tenant
from analytics_platform_tests.cli_harness import REPO

DAY = dt.date(2026, 10, 20)
RUN_WORKER = """
import sys, time
from pathlib import Path
from dagster import DagsterInstance
from analytics_platform.definitions import defs

go = Path(sys.argv[2])
deadline = time.monotonic() + 240
while not go.exists():  # every worker imports first, then all start together
    if time.monotonic() > deadline:
        sys.exit("the start signal never came")
    time.sleep(0.05)
with DagsterInstance.get() as instance:
    result = defs.resolve_job_def("tenant_day_pipeline").execute_in_process(
        instance=instance, partition_key=sys.argv[1], raise_on_error=False
    )
sys.exit(0 if result.success else 1)
"""


def distinct_key_counts(postgres, clickhouse, tenants: list[str]) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) of every layer for the tenants: equal when nothing is doubled."""
    queries = {
        "raw": "SELECT count(*), count(DISTINCT (tenant_id, _source, _source_line)) "
        "FROM raw.file_events WHERE tenant_id = ANY(%s)",
        "quarantine": "SELECT count(*), count(DISTINCT (tenant_id, source, source_line, layer)) "
        "FROM platform.quarantine WHERE tenant_id = ANY(%s)",
        "staging": "SELECT count(*), count(DISTINCT (tenant_id, event_id)) "
        "FROM staging.stg_events WHERE tenant_id = ANY(%s)",
        "sessions": "SELECT count(*), count(DISTINCT (tenant_id, session_id)) "
        "FROM marts.fct_sessions WHERE tenant_id = ANY(%s)",
        "daily": "SELECT count(*), count(DISTINCT (tenant_id, event_date)) "
        "FROM marts.fct_daily_metrics WHERE tenant_id = ANY(%s)",
        "visitors": "SELECT count(*), count(DISTINCT (tenant_id, visitor_id)) "
        "FROM marts.dim_visitors WHERE tenant_id = ANY(%s)",
    }
    with postgres.connect() as conn:
        counts = {name: conn.execute(q, (tenants,)).fetchone() for name, q in queries.items()}
    with clickhouse.session() as session:
        for tenant in tenants:
            database = clickhouse.database_for(tenant)
            frame = session.query_df(
                f"SELECT count() AS n, uniqExact(event_date) AS days "
                f"FROM `{database}`.fct_daily_metrics"
            )
            counts[f"clickhouse {tenant}"] = (int(frame["n"][0]), int(frame["days"][0]))
    return counts


@pytest.mark.slow
def test_four_runs_started_together_all_succeed_and_load_nothing_twice(
    tmp_path: Path,
    warehouse_url,
    dagster_storage_url,
    clickhouse_url,
    landing_dir,
    postgres,
    clickhouse,
    new_tenant,
    monkeypatch,
):
    env = {
        **os.environ,
        "DATABASE_URL": warehouse_url,
        "DAGSTER_POSTGRES_URL": dagster_storage_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(landing_dir),
        "DAGSTER_HOME": str(REPO),
        "DAGSTER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    acme, globex = new_tenant("conc"), new_tenant("conc")
    days = [DAY, DAY + dt.timedelta(days=1)]
    generated = generate_landing(landing_dir, [acme, globex], days, events_per_day=300)
    for name in ("DAGSTER_POSTGRES_URL", "DAGSTER_HOME", "DAGSTER_ARTIFACTS_DIR"):
        monkeypatch.setenv(name, env[name])
    with DagsterInstance.get() as instance:
        for tenant in (acme, globex):
            register_tenant(postgres, tenant, tenant, actor="test")
            provision_tenant(postgres, clickhouse, instance, tenant, actor="test")

    go = tmp_path / "go"
    partitions = [
        TenantDay(acme, DAY),  # the same tenant-day twice
        TenantDay(acme, DAY),
        TenantDay(acme, days[1]),  # its neighbour: both rebuild each other's sessions
        TenantDay(globex, DAY),  # another tenant
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_WORKER, p.partition_key, str(go)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for p in partitions
    ]
    try:
        time.sleep(8)  # let them import the code location; they wait for `go`
        go.touch()
        outputs = [w.communicate(timeout=600)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for partition, worker, output in zip(partitions, workers, outputs, strict=True):
        assert worker.returncode == 0, f"run of {partition} failed:\n{output[-4000:]}"
        assert "Deadlock" not in output

    counts = distinct_key_counts(postgres, clickhouse, [acme, globex])
    assert {layer: rows for layer, (rows, keys) in counts.items() if rows != keys} == {}
    # And the rows are the files' (one file per tenant-day; acme's day 2 was run too).
    valid = {t: generated.totals(t)["valid"] for t in (acme, globex)}
    with postgres.connect() as conn:
        raw = dict(
            conn.execute(
                "SELECT tenant_id, count(*) FROM raw.file_events WHERE tenant_id = ANY(%s) "
                "GROUP BY 1",
                ([acme, globex],),
            ).fetchall()
        )
    assert raw[acme] == valid[acme]  # both of acme's days
    assert 0 < raw[globex] < valid[globex]  # one of globex's two days
