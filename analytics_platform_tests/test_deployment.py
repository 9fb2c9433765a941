"""The platform under the daemon, as deployed: nothing is driven by hand.

One deployment (code server, webserver, daemon; see deployment.py) is started
for the module, on the session's Postgres databases and chDB folder, and every
scenario drives it only the way a producer or a UI user would: a file renamed
into the landing zone, a job launched through the webserver, a killed process.
"""

from __future__ import annotations

import contextlib
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

# A recent day: the freshness check looks back 7 days for a tenant's events.
DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=3)
# Bounds for 2 cores shared with other test suites (a run took 270-430 s at load 8-10);
# the README states what is typical.
RUN_BOUND_SECONDS = 1200
# How long after the deployment starts the freshness check's cron ticks: past the daemon's
# first automation evaluations (a tick before the first one is never "newly passed").
FRESHNESS_TICK_AFTER = dt.timedelta(minutes=5)
# Tenants of earlier scenarios that a later one looks at again.
SCENARIO_TENANTS: dict[str, str] = {}
# The landing sensor's runs. A run tagged with a tenant may also be the registry sensor's
# `provision_tenant` run: it provisions a pending tenant, racing the scenario's own set-up.
BY_LANDING_SENSOR = {"dagster/sensor_name": "landing_file_sensor"}


@pytest.fixture(scope="module")
def freshness_tick() -> dt.datetime:
    """The check's cron tick, chosen when the deployment starts (not at import: in a
    whole-suite session the module is imported long before its first scenario runs)."""
    return (dt.datetime.now(dt.timezone.utc) + FRESHNESS_TICK_AFTER).replace(
        second=0, microsecond=0
    )


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    warehouse_url: str,
    dagster_storage_url: str,
    clickhouse_url: str,
    freshness_tick: dt.datetime,
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
            # Hourly in production. Here: hourly at a minute a few minutes after the start,
            # so the test sees the daemon run it on its tick, and not before.
            "TENANT_FRESHNESS_CRON": f"{freshness_tick.minute} * * * *",
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
    SCENARIO_TENANTS["e2e"] = tenant
    add_tenant(deployment, stores, tenant)
    # Another tenant's events of today (a collector's, say): no partition until the day
    # ends, so they wait, and the tick that runs the e2e tenant's day must not fail on them.
    live = new_tenant("live")
    add_tenant(deployment, stores, live)
    today = dt.datetime.now(dt.timezone.utc).date()
    land(deployment, live, today, [tracker_event("l1", "v1", f"{today}T00:00:01Z")], "live.jsonl")
    landed = time.time()
    land(deployment, tenant, DAY, worked_example(DAY), "events.jsonl")

    run = finished_run(
        deployment, f"the landing sensor's run for {tenant}", tenant=tenant, **BY_LANDING_SENSOR
    )
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
    assert runs_of(deployment, tenant=live, **BY_LANDING_SENSOR) == [], "today is not over"
    with deployment.instance() as instance:
        record = instance.get_run_record_by_id(run.run_id)
    print(
        f"landed -> run created {record.create_timestamp.timestamp() - landed:.0f}s, "
        f"-> started {record.start_time - landed:.0f}s, -> finished {record.end_time - landed:.0f}s"
    )


def launch_job(deployment: Deployment, job: str, run_config: dict) -> str:
    """Launch a job through the webserver's GraphQL API, as the UI's launchpad does."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=deployment.web_port)
    return client.submit_job_execution(job, run_config=run_config)


def descendants_running(pid: int, words: tuple[str, ...]) -> bool:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if all(word in command for word in words):
            return True
    return False


def step_running(instance, run_id: str, prefix: str) -> str | None:
    """A step of the run whose key starts with `prefix` that has started and not ended."""
    started, ended = set(), set()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started.add(event.step_key)
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ended.add(event.step_key)
    running = sorted(k for k in started - ended if k.startswith(prefix))
    return running[0] if running else None


def kill_worker(pid: int) -> None:
    """SIGKILL the run worker and what it started, as a lost node or container would."""
    worker = psutil.Process(pid)
    for process in [*worker.children(recursive=True), worker]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


@pytest.mark.parametrize(
    ("step_prefix", "pool", "evidence"),
    # dbt steps take no pool slot (each model locks its tenants in Postgres instead), so
    # only the serving kill has a slot to free.
    [("analytics_dbt_", None, ("dbt", "build")), ("serving_", "clickhouse", ())],
    ids=["mid-dbt", "mid-serving"],
)
def test_a_killed_run_worker_is_failed_freed_and_retried(
    deployment, stores, new_tenant, step_prefix, pool, evidence
):
    tenant = new_tenant("kill")
    add_tenant(deployment, stores, tenant)
    land(deployment, tenant, DAY, worked_example(DAY), "events.jsonl")

    def victim():
        runs = runs_of(deployment, tenant=tenant, **BY_LANDING_SENSOR)
        if not runs:
            return None
        with deployment.instance() as instance:
            step = step_running(instance, runs[0].run_id, step_prefix)
            pid = run_worker_pid(instance, runs[0].run_id)
        if step and pid and (not evidence or descendants_running(pid, evidence)):
            return runs[0], step, pid
        return None

    run, step, pid = deployment.wait_for(
        victim, f"a {step_prefix}* step running in {tenant}'s run", RUN_BOUND_SECONDS, 0.5
    )
    # The pid Dagster recorded is this run's worker: a child of the code server.
    code_server = deployment.services["code"].process.pid
    assert code_server in {p.pid for p in psutil.Process(pid).parents()}
    kill_worker(pid)
    killed = time.time()

    with deployment.instance() as instance:
        failed = deployment.wait_for(
            lambda: instance.get_run_by_id(run.run_id).is_finished,
            f"run {run.run_id} to be marked finished after its worker was killed",
            60,
        )
        assert failed
        assert instance.get_run_by_id(run.run_id).status.value == "FAILURE"
        marked = time.time() - killed

        def freed():
            info = instance.event_log_storage.get_concurrency_info(pool)
            return run.run_id not in info.active_run_ids

        if pool is not None:
            deployment.wait_for(freed, f"the dead run's {pool} pool slot to be freed", 120, 2)
        slot_freed = time.time() - killed

    retry = finished_run(
        deployment, f"the retry of {run.run_id}", **{"dagster/parent_run_id": run.run_id}
    )
    assert retry.is_success, deployment.logs()
    assert retry.tags.get("dagster/retry_number") == "1"
    assert daily_metrics(stores, tenant, DAY) == (
        EXPECTED["events"],
        EXPECTED["sessions"],
        EXPECTED["visitors"],
        EXPECTED["page_views"],
    )
    print(
        f"killed in {step}: marked failed after {marked:.0f}s, {pool} slot free after "
        f"{slot_freed:.0f}s, retry done after {time.time() - killed:.0f}s"
    )


# After the kill scenarios: by then the tick has usually passed.
def test_the_freshness_check_runs_on_its_cron_tick_by_itself(deployment, freshness_tick):
    from dagster import AssetCheckKey, AssetKey

    check = AssetCheckKey(AssetKey("stg_events"), "every_active_tenant_fresh")

    def evaluated():
        """The check's executions once at least one exists and none is still only planned."""
        with deployment.instance() as instance:
            history = instance.event_log_storage.get_asset_check_execution_history(check, 5)
        done = history and all(record.status.value != "PLANNED" for record in history)
        return history if done else None

    tick = freshness_tick.timestamp()
    bound = max(0.0, tick - time.time()) + 300
    records = deployment.wait_for(evaluated, "the daemon to run the freshness check", bound, 5)
    # Once, on its tick: never before it (not with the runs that built stg_events since the
    # start), and not again on later automation evaluations.
    assert [record.create_timestamp >= tick for record in records] == [True]
    (record,) = records
    evaluation = record.event.dagster_event.event_specific_data
    # The tenants of the scenarios before this one are active; the first one's events were
    # staged minutes ago (a tenant whose first run had not finished by the tick is stale).
    assert evaluation.metadata["active_tenants"].value >= len(SCENARIO_TENANTS)
    assert SCENARIO_TENANTS["e2e"] not in evaluation.metadata["stale_tenants"].value
    run = runs_of(deployment, **{"dagster/sensor_name": "platform_automation_sensor"})
    assert record.run_id in {r.run_id for r in run}


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
CANCEL_BACKFILL = """
mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) { __typename }
}
"""


def covered(run) -> set[tuple[str, str]]:
    """(date, tenant) pairs a run covers, from its partition or partition-range tags."""
    from analytics_platform.partitions import parse_tenant_day

    tags = run.tags
    if "dagster/partition" in tags:
        one = parse_tenant_day(tags["dagster/partition"])
        return {(one.date.isoformat(), one.tenant)}
    start = parse_tenant_day(tags["dagster/asset_partition_range_start"])
    end = parse_tenant_day(tags["dagster/asset_partition_range_end"])
    days = (end.date - start.date).days
    dates = {(start.date + dt.timedelta(days=i)).isoformat() for i in range(days + 1)}
    tenants = {start.tenant, end.tenant}
    return {(d, t) for d in dates for t in tenants}


def launch_ui_backfill(deployment: Deployment, tenants: list[str], days: list[dt.date]) -> list:
    """Launch a backfill as the UI's dialog does; the runs it plans (it is then canceled)."""
    from dagster import AssetSelection

    from analytics_platform.definitions import defs

    keys = AssetSelection.assets("raw_file_events").downstream().resolve(defs.resolve_asset_graph())
    params = {
        "assetSelection": [{"path": key.path} for key in sorted(keys)],
        "partitionNames": [f"{d.isoformat()}|{t}" for t in tenants for d in days],
        "fromFailure": False,
    }
    launched = deployment.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = launched["backfillId"]
    wanted = {(d.isoformat(), t) for t in tenants for d in days}

    def all_requested():
        runs = runs_of(deployment, **{"dagster/backfill": backfill})
        return runs if set().union(*(covered(r) for r in runs)) >= wanted else None

    runs = deployment.wait_for(all_requested, f"backfill {backfill} to plan its runs", 180, 2)
    # Nothing is learnt from building empty days: stop the backfill once it has planned.
    deployment.graphql(CANCEL_BACKFILL, {"id": backfill})
    return runs


def test_a_ui_backfill_of_tenants_by_days_runs_one_run_per_day(deployment, stores, new_tenant):
    """What Dagster 1.13.27 does with BackfillPolicy.single_run() on date x dynamic tenant."""
    tenants = [new_tenant("bfa"), new_tenant("bfb"), new_tenant("bfc")]
    for tenant in tenants:  # registered in this order: a tenant range follows it
        add_tenant(deployment, stores, tenant)
    days = [DAY - dt.timedelta(days=6), DAY - dt.timedelta(days=5)]

    square = launch_ui_backfill(deployment, tenants[:2], days)
    assert sorted(sorted(covered(run)) for run in square) == [
        sorted((d.isoformat(), t) for t in tenants[:2]) for d in days
    ]  # 2 tenants x 2 days: 2 runs, one per day, each covering both tenants
    one_tenant = launch_ui_backfill(deployment, tenants[2:], days)
    one_day = launch_ui_backfill(deployment, tenants[:2], days[:1])
    print(
        "backfill runs: 2x2", len(square), "1 tenant x 2 days", len(one_tenant),
        "2 tenants x 1 day", len(one_day),
    )  # fmt: skip
    assert len(one_tenant) == 1 and len(one_day) == 1


def test_a_landed_file_started_exactly_one_run_minutes_later(deployment):
    """Automation never rebuilds what a pipeline run just built (run last: minutes passed)."""
    tenant = SCENARIO_TENANTS.get("e2e")
    if tenant is None:
        pytest.skip("the landed-file scenario did not run")
    runs = runs_of(deployment, **{"dagster/partition": f"{DAY.isoformat()}|{tenant}"})
    assert [run.job_name for run in runs] == ["tenant_day_pipeline"], [
        (run.job_name, run.tags.get("dagster/sensor_name")) for run in runs
    ]


# Last: it restarts the code server with a wider tolerance, and the daemon takes a while to
# reach the new server (runs launched meanwhile were seen never retried).
def test_a_quarantine_replay_rebuilds_the_layers_below_by_itself(deployment, stores, new_tenant):
    tenant = new_tenant("rep")
    day = DAY - dt.timedelta(days=2)
    after = f"{(day + dt.timedelta(days=1)).isoformat()}T00:10:00Z"  # 10 minutes past the day
    add_tenant(deployment, stores, tenant)
    land(
        deployment,
        tenant,
        day,
        [
            tracker_event("a", "v1", f"{day}T12:00:00Z"),
            tracker_event("b", "v2", f"{day}T23:55:00Z", session="s2"),
            tracker_event("late", "v2", after, session="s2"),
        ],
        "events.jsonl",
    )
    first = finished_run(
        deployment, f"the landing sensor's run for {tenant}", tenant=tenant, **BY_LANDING_SENSOR
    )
    assert first.is_success
    assert daily_metrics(stores, tenant, day) == (2, 2, 2, 2)

    # The operator widens the tolerance for the whole deployment and redeploys the code
    # location: the loader and the checks of every later run agree on it.
    deployment.restart_code_server({"LANDING_TIMESTAMP_TOLERANCE_MINUTES": "30"})
    replay = launch_job(
        deployment,
        "reprocess_quarantine",
        {"ops": {"reprocess_quarantined_rows": {"config": {"tenant_id": tenant}}}},
    )
    with deployment.instance() as instance:
        deployment.wait_for(
            lambda: instance.get_run_by_id(replay).is_finished,
            "the reprocess_quarantine run",
            RUN_BOUND_SECONDS,
            interval=3,
        )
        assert instance.get_run_by_id(replay).is_success, deployment.logs()

    # Nobody launches anything else: replayed_days_sensor rebuilds staging, marts and
    # serving for that tenant-day (the late event joins session s2 of visitor v2).
    def rebuilt():
        return daily_metrics(stores, tenant, day) == (3, 2, 2, 3) and (
            served(stores, tenant, "SELECT events FROM {db}.fct_sessions WHERE visitor_id='v2'")
            == [(2,)]
        )

    deployment.wait_for(
        rebuilt, f"the rebuild to serve the replayed row of {tenant}", RUN_BOUND_SECONDS, 5
    )
    rebuilds = runs_of(deployment, **{"dagster/sensor_name": "replayed_days_sensor"})
    assert [run.job_name for run in rebuilds if run.tags.get("tenant") == tenant] == [
        "rebuild_tenant_days"
    ], "the rebuild did not come from replayed_days_sensor"
    automated = runs_of(deployment, **{"dagster/sensor_name": "platform_automation_sensor"})
    assert not [run for run in automated if f"|{tenant}" in str(run.tags)]  # built once
