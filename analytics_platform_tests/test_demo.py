"""`analytics-platform demo`: every layer reconciles with the generated files, one tenant's
events came through the collector, its run is one the UI lists under its job and
re-executes to the same counts, and it leaves no process behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from analytics_platform.demo.generator import generate_landing
from analytics_platform.demo.launch import (
    LaunchRefused,
    RunNotSuccessful,
    WebserverError,
    launch_job_run,
    ui_webserver,
    wait_for_run,
)
from analytics_platform.demo.pipeline import (
    TenantSummary,
    collect_summary,
    format_summary,
    generate_demo_events,
    reconcile,
    run_demo,
)
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
START = dt.date(2026, 10, 5)
# Bound on one demo-sized run on 2 shared cores (typical: well under a minute).
RUN_BOUND_SECONDS = 900

# What the UI sends: the runs listed on a job's page, and "Re-execute all" on a run's page.
JOB_RUNS = """
query JobRuns($job: String!, $repository: String!, $location: String!) {
  pipelineOrError(params: {pipelineName: $job, repositoryName: $repository,
                           repositoryLocationName: $location}) {
    __typename
    ... on Pipeline { runs { runId } }
    ... on PythonError { message }
  }
}
"""
REEXECUTE_ALL = """
mutation LaunchPipelineReexecution($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def webserver_pid(log: Path) -> int:
    """The pid the webserver's log says it serves from: the leader of its process group."""
    (pid,) = re.findall(r"Serving dagster-webserver on \S+ in process (\d+)", log.read_text())
    return int(pid)


def left_in_group(pgid: int, settle_seconds: float = 10) -> list[str]:
    """Live processes of the group (killed ones may take a moment to be reaped)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        left = []
        for process in psutil.process_iter(["pid", "status", "cmdline"]):
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                    left.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@pytest.fixture
def demo_env(monkeypatch, tmp_path, fresh_database, clickhouse_url):
    """Every variable `stack.activate` sets, so monkeypatch restores them afterwards.

    The stores are the demo's own, as on a new user's machine: provisioning mirrors the
    whole registry into the partitions, so other tests' tenants would sit between the
    demo's and split its one run.
    """
    env = {
        "DATABASE_URL": fresh_database("ap_test_demo"),
        "DAGSTER_POSTGRES_URL": fresh_database("ap_test_demo_dagster"),
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(tmp_path / "landing"),
        "PLATFORM_HOME": str(tmp_path / "platform"),
        "DAGSTER_HOME": str(REPO),
        "DAGSTER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_demo_loads_every_layer_and_its_run_reexecutes_from_the_ui_to_the_same_counts(
    demo_env, new_tenant, tmp_path
):
    tenants = (new_tenant("demo"), new_tenant("demo"), new_tenant("demo"))
    first = run_demo(days=2, events_per_day=60, start=START, tenants=tenants)
    assert first.mismatches == []
    assert len(first.run_ids) == 1  # the tenants were registered side by side: one run

    # Check the summary against the generator independently of `reconcile`.
    landing = Path(demo_env["LANDING_DIR"])
    expected = generate_demo_events(
        landing,
        tmp_path / "outbox",
        tenants,
        first.dates,
        events_per_day=60,
        collector_tenant=tenants[0],
    )
    for tenant in tenants:
        got, want = first.tenants[tenant], expected.totals(tenant)
        assert got.raw_rows == got.staged_rows == want["valid"] == 120
        assert got.quarantined == want["quarantined"]
        assert sum(got.quarantined.values()) == 4
        assert (got.sessions, got.page_views) == (want["sessions"], want["page_views"])
        assert got.mart_rows == got.serving_rows == 2

    # The first tenant's events came through the collector: every one it acknowledged
    # was loaded from its segments (raw, or quarantine for the defects), nothing else.
    feed = first.collector
    assert (feed.tenant, feed.posted, feed.accepted) == (tenants[0], 124, 124)
    assert first.tenants[tenants[0]].quarantined == {"missing_field": 2, "wrong_type": 2}
    assert feed.segments and all(
        re.fullmatch(rf"{tenants[0]}/2026-10-0[56]/collector-[^/]+\.jsonl", s)
        for s in feed.segments
    )
    # Only segments in its folders: no landing file was written for that tenant.
    assert sorted(
        str(p.relative_to(landing)) for p in (landing / tenants[0]).rglob("*") if p.is_file()
    ) == sorted(feed.segments)
    with PostgresResource(url=demo_env["DATABASE_URL"]).connect() as conn:
        sources = conn.execute(
            "SELECT _source, count(*) FROM raw.file_events WHERE tenant_id = %s "
            "GROUP BY _source UNION ALL SELECT source, count(*) FROM platform.quarantine "
            "WHERE tenant_id = %s GROUP BY source",
            (tenants[0], tenants[0]),
        ).fetchall()
    assert {source for source, _ in sources} == set(feed.segments)
    assert sum(n for _, n in sources) == feed.accepted
    # The collector was stopped, its process group with it.
    collector_log = (Path(demo_env["PLATFORM_HOME"]) / "demo" / "collector.log").read_text()
    # It names itself `collector <host>-<pid>-<start>-<random>: ...` in the JSON log line
    # of its start.
    started = [
        json.loads(line)["message"]
        for line in collector_log.splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "started"
    ]
    (collector_id,) = [re.match(r"collector (\S+): ", message)[1] for message in started]
    collector_pid = int(collector_id.rsplit("-", 3)[1])
    assert left_in_group(collector_pid) == []

    # Nothing of the demo's process group is left: webserver, code server, run worker, dbt.
    assert (
        left_in_group(webserver_pid(Path(demo_env["PLATFORM_HOME"]) / "demo" / "webserver.log"))
        == []
    )

    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(first.run_ids[0])
        assert run.status == DagsterRunStatus.SUCCESS
        # The origins a Launchpad run has: the code location of workspace.yaml and its job.
        assert run.remote_job_origin.location_name == "analytics_platform"
        assert run.remote_job_origin.job_name == "tenant_day_pipeline"
        assert run.job_code_origin.job_name == "tenant_day_pipeline"
        pointer = run.job_code_origin.repository_origin.code_pointer
        assert pointer.module == "analytics_platform.definitions"
        # Then a user opens the UI: a webserver of its own, on the same storage.
        with ui_webserver(WORKSPACE, home=tmp_path / "ui") as web:
            web.wait_until_loaded()
            listed = web.graphql(
                JOB_RUNS,
                job="tenant_day_pipeline",
                repository=run.remote_job_origin.repository_origin.repository_name,
                location="analytics_platform",
            )["pipelineOrError"]
            assert first.run_ids[0] in {r["runId"] for r in listed["runs"]}, listed

            # "Re-execute all" from the run's page, as the UI posts it; no daemon runs, so
            # the run finishing proves the webserver launched it itself.
            launched = web.graphql(REEXECUTE_ALL, parentRunId=run.run_id)
            reexecution = launched["launchPipelineReexecution"]
            assert reexecution["__typename"] == "LaunchRunSuccess", reexecution
            child = wait_for_run(instance, reexecution["run"]["runId"], timeout=RUN_BOUND_SECONDS)
        assert left_in_group(web.process.pid) == []
    assert (child.parent_run_id, child.root_run_id) == (run.run_id, run.run_id)
    assert (
        child.tags["dagster/asset_partition_range_start"]
        == run.tags["dagster/asset_partition_range_start"]
    )
    # Running the pipeline again over the same files gives the same counts. (A second
    # run_demo would only add what test_generator and test_tenants cover: the generator is
    # deterministic and registering a tenant again is an upsert.)
    rerun = collect_summary(
        PostgresResource(url=demo_env["DATABASE_URL"]),
        ClickHouseResource(url=demo_env["CLICKHOUSE_URL"]),
        tenants,
        first.dates,
    )
    assert {t: asdict(s) for t, s in rerun.items()} == {
        t: asdict(s) for t, s in first.tenants.items()
    }
    printed = format_summary(first)
    assert "Every layer reconciles" in printed
    assert f"Through the collector: 124 of {tenants[0]}'s events acknowledged" in printed
    assert all(tenant in printed for tenant in tenants)
    assert f"http://127.0.0.1:3000/runs/{first.run_ids[0]}" in printed


def test_a_failed_launched_run_is_reported_with_its_step_and_error(demo_env, new_tenant, tmp_path):
    tenant = new_tenant("launch")
    refused = {"tenant_id": tenant, "confirm_tenant_id": f"{tenant}_typo"}
    with (
        DagsterInstance.get() as instance,
        ui_webserver(WORKSPACE, home=tmp_path) as web,
    ):
        run_id = launch_job_run(
            web,
            "deprovision_tenant",
            run_config={"ops": {"deprovision_tenant_op": {"config": refused}}},
            tags={"requested_by": "test_demo"},
        )
        with pytest.raises(RunNotSuccessful) as failure:
            wait_for_run(instance, run_id, timeout=RUN_BOUND_SECONDS)
        run = instance.get_run_by_id(run_id)
    assert run.status == DagsterRunStatus.FAILURE
    assert run.remote_job_origin.location_name == "analytics_platform"
    assert run.remote_job_origin.job_name == "deprovision_tenant"
    assert run.tags["requested_by"] == "test_demo"
    assert run.run_config["ops"] == {"deprovision_tenant_op": {"config": refused}}
    message = str(failure.value)
    assert message.startswith(f"run {run_id} of deprovision_tenant ended FAILURE: ")
    assert "step deprovision_tenant_op failed: " in message
    assert "confirm by repeating the tenant id exactly" in message
    assert f"http://127.0.0.1:3000/runs/{run_id}" in message


def test_a_run_config_the_job_refuses_is_named_before_any_run_starts(demo_env, tmp_path):
    with (
        ui_webserver(WORKSPACE, home=tmp_path) as web,
        pytest.raises(LaunchRefused) as refused,
    ):
        launch_job_run(
            web,
            "deprovision_tenant",
            run_config={"ops": {"deprovision_tenant_op": {"config": {"tenant": "x"}}}},
            tags={},
        )
    message = str(refused.value)
    assert message.startswith("the webserver refused to launch deprovision_tenant")
    assert "RunConfigValidationInvalid" in message


def test_a_code_location_that_fails_to_load_is_reported_with_its_error(demo_env, tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: analytics_platform.no_such_module\n"
        "      location_name: analytics_platform\n"
    )
    with (
        ui_webserver(workspace, home=tmp_path / "ui") as web,
        pytest.raises(WebserverError) as failed,
    ):
        web.wait_until_loaded()
    assert "the code location 'analytics_platform' failed to load" in str(failed.value)
    assert "analytics_platform.no_such_module" in str(failed.value)
    assert left_in_group(web.process.pid) == []


def test_the_webservers_instance_is_the_projects_with_runs_launched_at_once(tmp_path):
    import yaml

    from analytics_platform.demo.launch import instance_without_run_queue

    home = instance_without_run_queue(REPO, tmp_path / "home")
    project = yaml.safe_load((REPO / "dagster.yaml").read_text())
    derived = yaml.safe_load((home / "dagster.yaml").read_text())
    assert derived.pop("run_coordinator")["class"] == "DefaultRunCoordinator"
    project.pop("run_coordinator")
    assert derived == project  # storage, pools, artifact folders: all the project's


def test_a_missing_workspace_file_names_where_it_was_looked_for(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match=f"no workspace.yaml in {tmp_path}"),
        ui_webserver(tmp_path / "workspace.yaml", home=tmp_path),
    ):
        pass


def test_reconcile_names_each_disagreement(tmp_path):
    generated = generate_landing(tmp_path, ("acme",), [START], events_per_day=30)
    want = generated.totals("acme")
    summary = TenantSummary(
        raw_rows=want["valid"] - 1,
        quarantined=want["quarantined"],
        staged_rows=want["valid"],
        mart_rows=1,
        visitors=want["visitors_by_day"],
        sessions=want["sessions"],
        page_views=want["page_views"],
        serving_rows=0,
    )
    problems = reconcile(generated, {"acme": summary})
    assert problems == [
        f"acme: raw rows is {want['valid'] - 1}, the generated files imply {want['valid']}",
        "acme: ClickHouse days is 0, the generated files imply 1",
    ]
