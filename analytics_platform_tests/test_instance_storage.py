"""The project's event log storage (dagster.yaml) writes what dagster-postgres writes,
with a handful of connections where dagster-postgres opens several per event."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from sqlalchemy import event, text

from analytics_platform.definitions import defs
from analytics_platform.instance_storage import PlatformEventLogStorage
from analytics_platform.partitions import Rectangle, tenants_partitions
from analytics_platform_tests.cli_harness import REPO

DAY = dt.date(2026, 11, 2)
TENANTS = tuple(f"st_{i:03d}" for i in range(12))


@pytest.fixture
def project_instance(
    tmp_path: Path, fresh_database, monkeypatch: pytest.MonkeyPatch, platform_env
) -> Iterator[DagsterInstance]:
    """An instance on the project's dagster.yaml, its storage a fresh database."""
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", fresh_database("ap_test_events"))
    monkeypatch.setenv("DAGSTER_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


@pytest.fixture
def stock_instance(fresh_database) -> Iterator[DagsterInstance]:
    """An instance on dagster-postgres' own storage."""
    url = fresh_database("ap_test_events_stock")
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
        yield instance


def plan_daily_run(instance: DagsterInstance, tenants: tuple[str, ...] = TENANTS) -> str:
    """A run for every tenant of `tenants` on DAY, created as the daemon creates a sensor's
    run (planned events written, nothing executed); its run id."""
    instance.add_dynamic_partitions(tenants_partitions.name, list(tenants))
    job = defs.resolve_job_def("tenant_day_pipeline")
    run = instance.create_run_for_job(job, tags=Rectangle(tenants, DAY, DAY).tags())
    return run.run_id


def written_rows(instance: DagsterInstance, run_id: str) -> dict[str, list[tuple]]:
    """What planning the run wrote, in a form two storages can be compared by."""
    storage = instance.event_log_storage
    queries = {
        "events": "SELECT dagster_event_type, asset_key, partition, step_key FROM event_logs "
        "WHERE run_id = :run AND dagster_event_type LIKE '%PLANNED' ORDER BY 1, 2, 3, 4",
        "asset index": "SELECT asset_key, last_run_id = :run FROM asset_keys ORDER BY 1",
        "check executions": "SELECT asset_key, check_name, partition, execution_status, "
        "evaluation_event_storage_id IS NOT NULL FROM asset_check_executions "
        "WHERE run_id = :run ORDER BY 1, 2, 3",
    }
    with storage.index_connection() as conn:
        rows = {
            name: [tuple(row) for row in conn.execute(text(query), {"run": run_id})]
            for name, query in queries.items()
        }
    # What automation reads to see a partition in progress: planned, not yet materialized.
    job = defs.resolve_job_def("tenant_day_pipeline")
    rows["in progress"] = sorted(
        (key.to_user_string(), partition, planned_run == run_id)
        for key in job.asset_layer.executable_asset_keys
        for partition, (planned_run, _) in (
            storage.get_latest_asset_partition_materialization_attempts_without_materializations(
                key
            ).items()
        )
    )
    return rows


def test_dagster_yaml_names_the_platform_event_log(project_instance: DagsterInstance) -> None:
    assert isinstance(project_instance.event_log_storage, PlatformEventLogStorage)


def test_a_planned_run_writes_the_rows_dagster_postgres_writes(
    project_instance: DagsterInstance, stock_instance: DagsterInstance
) -> None:
    ours = written_rows(project_instance, plan_daily_run(project_instance))
    stock = written_rows(stock_instance, plan_daily_run(stock_instance))
    assets = len(defs.resolve_job_def("tenant_day_pipeline").asset_layer.executable_asset_keys)
    assert len(ours["events"]) >= assets * len(TENANTS), ours["events"][:5]
    assert ours["check executions"], "the pipeline's checks plan no executions"
    assert len(ours["in progress"]) == assets * len(TENANTS)
    assert ours == stock


def test_planning_a_run_takes_a_handful_of_connections_and_no_statement_per_tenant_day(
    project_instance: DagsterInstance, stock_instance: DagsterInstance
) -> None:
    def cost_of_planning(instance: DagsterInstance, tenants: tuple[str, ...]) -> tuple[int, int]:
        """(connections opened, statements sent) to plan the tenants' daily run."""
        opened, sent = [], []

        def on_connect(*_) -> None:
            opened.append(1)

        def on_statement(*_) -> None:
            sent.append(1)

        engine = instance.event_log_storage._engine
        event.listen(engine, "connect", on_connect)
        event.listen(engine, "before_cursor_execute", on_statement)
        try:
            plan_daily_run(instance, tenants)
        finally:
            event.remove(engine, "connect", on_connect)
            event.remove(engine, "before_cursor_execute", on_statement)
        return len(opened), len(sent)

    assets = len(defs.resolve_job_def("tenant_day_pipeline").asset_layer.executable_asset_keys)
    more = tuple(f"st_more_{i:03d}" for i in range(3 * len(TENANTS)))
    ours = [cost_of_planning(project_instance, tenants) for tenants in (TENANTS, more)]
    stock = [cost_of_planning(stock_instance, tenants) for tenants in (TENANTS, more)]
    for (connections, _), tenants in zip(ours, (TENANTS, more), strict=True):
        assert connections <= 3, f"{connections} connections to plan {len(tenants)} tenants"
    # Statements per asset and check (its index row, its planned executions), none per
    # tenant-day: three times the tenants, no more statements (the first plan also asks
    # once what the schema holds).
    assert ours[1][1] <= ours[0][1], f"statements for 12 and 36 tenants: {ours}"
    # The comparison itself: dagster-postgres pays per planned tenant-day asset.
    (stock_connections, stock_statements), (_, more_statements) = stock
    assert stock_connections > len(TENANTS) * assets, stock
    assert more_statements - stock_statements > 2 * (len(more) - len(TENANTS)) * assets, stock


def test_threads_holding_connections_at_once_never_wait_for_the_pool(
    project_instance: DagsterInstance,
) -> None:
    """The daemon's threads write at once: a bounded pool would make one wait (30 s) for
    another's connection, where dagster-postgres' storage gave each its own."""
    storage = project_instance.event_log_storage
    threads = 16
    together = threading.Barrier(threads, timeout=20)

    def hold(_: int) -> int:
        with storage.index_connection() as conn:
            (backend,) = conn.execute(text("SELECT pg_backend_pid()")).one()
            together.wait()  # every thread holds its connection at this moment
        return backend

    with ThreadPoolExecutor(threads) as pool:
        backends = list(pool.map(hold, range(threads)))
    assert len(set(backends)) == threads
