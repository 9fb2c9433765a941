"""Runs launched through the code location, as the UI launches them, with no daemon running.

A run made with `execute_in_process` belongs to no code location: the UI lists
it under no job and cannot re-execute it (`parent_run.remote_job_origin` is
None). A run made here comes from the workspace the UI loads (workspace.yaml: a
code server for `analytics_platform.definitions`, location `analytics_platform`),
so it carries the same `remote_job_origin` and `job_code_origin` as one launched
from the Launchpad. It is handed to the instance's run launcher directly (the
code server starts a run worker), not to the run queue, which only the daemon
drains.

Dagster offers no public function for this: `dagster job launch` builds the run
the same way but submits it to the queue and returns. The internal calls are
kept to this module, and analytics_platform_tests/test_demo.py pins what they
produce.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.remote_representation.grpc_server_registry import GrpcServerRegistry
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._grpc.server import GrpcServerCommand

LOCATION_NAME = "analytics_platform"
# As the webserver's: a code server nobody pings for this long stops itself.
CODE_SERVER_HEARTBEAT_SECONDS = 45


class RunNotSuccessful(RuntimeError):
    """A launched run ended other than SUCCESS; the message names its failed steps."""


@contextmanager
def code_location_workspace(
    instance: DagsterInstance, workspace_file: Path, location_name: str = LOCATION_NAME
) -> Iterator[WorkspaceRequestContext]:
    """The workspace of `workspace_file` with its code server started; stopped on exit."""
    if not workspace_file.exists():
        raise FileNotFoundError(
            f"no {workspace_file.name} in {workspace_file.parent}: run analytics-platform from "
            "the repository root, or set DAGSTER_HOME to the folder holding it"
        )
    target = WorkspaceFileTarget(paths=[str(workspace_file)])
    # Our own registry of code servers, so that leaving waits for them to end: one left
    # behind would outlive the demo (and, in tests, the database it reports runs to).
    registry = GrpcServerRegistry(
        instance_ref=instance.get_ref(),
        server_command=GrpcServerCommand.API_GRPC,
        heartbeat_ttl=CODE_SERVER_HEARTBEAT_SECONDS,
        startup_timeout=instance.code_server_process_startup_timeout,
        wait_for_processes_on_shutdown=True,
    )
    with contextlib.ExitStack() as closing:
        closing.callback(_stop_code_servers, registry)
        process = closing.enter_context(
            WorkspaceProcessContext(instance, target, grpc_server_registry=registry)
        )
        workspace = process.create_request_context()
        error = workspace.get_code_location_error(location_name)
        if error is not None:
            raise RuntimeError(
                f"the code location {location_name!r} of {workspace_file} failed to load:\n"
                f"{error.to_string()}"
            )
        yield workspace


def _stop_code_servers(registry: GrpcServerRegistry) -> None:
    """Ask the code servers to stop and wait for them (30 s each)."""
    try:
        registry.__exit__(None, None, None)
    except subprocess.TimeoutExpired as err:
        # The runs are over by now: a slow stop is not worth failing the caller for.
        logging.getLogger(__name__).warning(
            f"a code server did not stop within {err.timeout:.0f} s of being asked to; "
            "if a `dagster api grpc` process of this workspace is still running, stop it"
        )


def launch_job_run(
    workspace: WorkspaceRequestContext,
    job_name: str,
    *,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    location_name: str = LOCATION_NAME,
) -> str:
    """Create a run of `job_name` from the code location and start its run worker; its id.

    Built as `dagster job launch` builds it (dagster/_cli/job.py `_create_run`):
    the job's snapshot, execution plan and origins come from the code server.
    """
    instance = workspace.instance
    location = workspace.get_code_location(location_name)
    (repository_name,) = location.get_repository_names()
    repository = location.get_repository(repository_name)
    remote_job = location.get_job(
        JobSubsetSelector(
            location_name=location_name,
            repository_name=repository_name,
            job_name=job_name,
            op_selection=None,
        )
    )
    plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    run = instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=remote_job.resolved_op_selection,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    instance.launch_run(run.run_id, workspace)
    return run.run_id


def wait_for_run(instance: DagsterInstance, run_id: str, poll_seconds: float = 0.5) -> DagsterRun:
    """Block until the run ends; raise `RunNotSuccessful` unless it succeeded.

    A run worker that dies is reported as a failure by the code server that
    started it, so the wait ends then too.
    """
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise LookupError(f"run {run_id} is not in the Dagster instance")
        if run.is_finished:
            break
        time.sleep(poll_seconds)
    if run.status != DagsterRunStatus.SUCCESS:
        raise RunNotSuccessful(
            f"run {run_id} of {run.job_name} ended {run.status.value}: "
            f"{_failures(instance, run_id)}. Its full log is in the UI: "
            f"analytics-platform dev, then open http://127.0.0.1:3000/runs/{run_id}"
        )
    return run


def _failures(instance: DagsterInstance, run_id: str) -> str:
    """The failed steps and their errors (first line each), else the run's failure message."""
    failed = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause  # Dagster wraps the op's exception: say what the op raised
        message = error.message.strip().splitlines()[0] if error else "no error recorded"
        failed.append(f"step {entry.step_key} failed: {message}")
    if failed:
        return "; ".join(failed)
    ends = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return ends[-1].message if ends else "no step failed"
