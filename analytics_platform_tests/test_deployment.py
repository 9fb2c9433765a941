"""The platform under the daemon, as deployed: nothing is driven by hand.

One deployment (code server, webserver, daemon; see deployment.py) is started
for the module, on the session's Postgres databases and chDB folder, and every
scenario drives it only the way a producer or a UI user would: a file renamed
into the landing zone, a job launched through the webserver, a killed process.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.lifecycle import provision_tenant
from analytics_platform.tenants.registry import register_tenant
from analytics_platform_tests.deployment import Deployment, run_worker_pid
from analytics_platform_tests.events import EXPECTED, tracker_event, worked_example, write_lines

pytestmark = pytest.mark.slow

DAY = dt.date(2026, 11, 10)
# Generous bounds for 2 busy cores; the README states what is typical.
RUN_BOUND_SECONDS = 420


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    warehouse_url: str,
    dagster_storage_url: str,
    clickhouse_url: str,
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("dagster-home")
    landing = tmp_path_factory.mktemp("landing")
    deployment = Deployment.prepare(
        home,
        {
            "DATABASE_URL": warehouse_url,
            "DAGSTER_POSTGRES_URL": dagster_storage_url,
            "CLICKHOUSE_URL": clickhouse_url,
            "LANDING_DIR": str(landing),
            # Hourly in production; every minute here, so the test sees the daemon run it.
            "TENANT_FRESHNESS_CRON": "* * * * *",
        },
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def stores(warehouse_url: str, clickhouse_url: str) -> tuple[PostgresResource, ClickHouseResource]:
    return PostgresResource(url=warehouse_url), ClickHouseResource(url=clickhouse_url)


def landing_root(deployment: Deployment) -> Path:
    return Path(deployment.env["LANDING_DIR"])


def add_tenant(deployment: Deployment, stores, tenant: str) -> None:
    postgres, clickhouse = stores
    register_tenant(postgres, tenant, actor="test")
    with deployment.instance() as instance:
        provision_tenant(postgres, clickhouse, instance, tenant, actor="test")


def land(deployment: Deployment, tenant: str, day: dt.date, lines: list, name: str) -> Path:
    """Write under a temporary name, then rename into place, as producers must."""
    folder = landing_root(deployment) / tenant / day.isoformat()
    temporary = write_lines(folder / f".{name}.tmp", lines)
    final = folder / name
    os.replace(temporary, final)
    return final


def served(stores, tenant: str, query: str) -> list[tuple]:
    """Rows of a query against the tenant's ClickHouse database ([] while it has none)."""
    _, clickhouse = stores
    database = clickhouse.database_for(tenant)
    with clickhouse.session() as session:
        frame = session.query_df(query.format(db=f"`{database}`"))
    return [tuple(row) for row in frame.itertuples(index=False)]


def daily_metrics(stores, tenant: str, day: dt.date) -> tuple | None:
    rows = served(
        stores,
        tenant,
        "SELECT events, sessions, visitors, page_views FROM {db}.fct_daily_metrics "
        f"WHERE event_date = '{day.isoformat()}'",
    )
    return rows[0] if rows else None


def runs_of(deployment: Deployment, **tags: str) -> list:
    from dagster import RunsFilter

    with deployment.instance() as instance:
        return list(instance.get_runs(filters=RunsFilter(tags=tags)))


def finished_run(deployment: Deployment, what: str, timeout: float = RUN_BOUND_SECONDS, **tags):
    """The one run with these tags, once it has finished (bounded)."""

    def done():
        runs = runs_of(deployment, **tags)
        return runs if runs and all(run.is_finished for run in runs) else None

    runs = deployment.wait_for(done, what, timeout, interval=3)
    assert len(runs) == 1, [(run.run_id, run.job_name, run.status) for run in runs]
    return runs[0]


def test_a_landed_file_reaches_clickhouse_with_no_manual_step(deployment, stores, new_tenant):
    tenant = new_tenant("e2e")
    add_tenant(deployment, stores, tenant)
    landed = time.time()
    land(deployment, tenant, DAY, worked_example(DAY), "events.jsonl")

    run = finished_run(deployment, f"the landing sensor's run for {tenant}", tenant=tenant)
    assert run.is_success, deployment.logs()
    assert run.job_name == "tenant_day_pipeline"
    assert run.tags["dagster/sensor_name"] == "landing_file_sensor"
    assert run.tags["dagster/partition"] == f"{DAY.isoformat()}|{tenant}"
    assert daily_metrics(stores, tenant, DAY) == (
        EXPECTED["events"],
        EXPECTED["sessions"],
        EXPECTED["visitors"],
        EXPECTED["page_views"],
    )
    assert served(stores, tenant, "SELECT count() FROM {db}.fct_sessions") == [
        (EXPECTED["sessions"],)
    ]
    with deployment.instance() as instance:
        record = instance.get_run_record_by_id(run.run_id)
    print(
        f"landed -> run created {record.create_timestamp.timestamp() - landed:.0f}s, "
        f"-> started {record.start_time - landed:.0f}s, -> finished {record.end_time - landed:.0f}s"
    )
