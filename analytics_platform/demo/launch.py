"""Runs launched as the UI launches them: through a webserver's GraphQL API.

A run made with `execute_in_process` belongs to no code location: the UI lists it
under no job and cannot re-execute it. A run launched here is submitted to a
`dagster-webserver` serving workspace.yaml (location `analytics_platform`, the one
`make dev` serves) with Dagster's public client, `dagster_graphql.DagsterGraphQLClient`,
exactly as the Launchpad submits one; so it carries the same code location origin and
*Re-execute* works on it.

The webserver runs on the project's Dagster instance minus its run queue: the
project's dagster.yaml with Dagster's `DefaultRunCoordinator`, which launches a
submitted run at once (the code server starts its run worker). The queue is
drained only by the daemon, and a daemon also runs the sensors and schedules: the
landing sensor would start runs of its own on the demo's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from analytics_platform.process_groups import (
    free_port,
    log_tail,
    start_process_group,
    stop_process_group,
)

LOCATION_NAME = "analytics_platform"
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))
LOCATION_ENTRIES = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename
      ... on RepositoryLocation { repositories { name } }
      ... on PythonError { message } } } } } }
"""


class RunNotSuccessful(RuntimeError):
    """A launched run ended other than SUCCESS; the message names its failed steps."""


class WebserverError(RuntimeError):
    """The webserver did not start, or did not load the code location; with its log."""


class LaunchRefused(RuntimeError):
    """The webserver refused to create the run (e.g. its config does not fit the job)."""


# Dagster's documented instance setting for "launch at once" (without it Dagster queues).
LAUNCH_AT_ONCE = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}


def instance_without_run_queue(project_home: Path, home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is `project_home`'s with runs launched at once.

    Same storage, pools and artifact folders: only the launching of runs differs.
    """
    config = yaml.safe_load((project_home / "dagster.yaml").read_text())
    config["run_coordinator"] = LAUNCH_AT_ONCE
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "# Written by analytics_platform/demo/launch.py from the project's dagster.yaml:\n"
        "# the same instance, with runs launched at once instead of queued.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return home


@dataclass
class Webserver:
    """A started `dagster-webserver` serving a workspace file on 127.0.0.1."""

    process: subprocess.Popen
    port: int
    log: Path
    repository_name: str | None = None
    client: DagsterGraphQLClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, **variables: object) -> dict:
        """POST `query` to the webserver's /graphql, as the UI's pages do; its `data`."""
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        payload = response.json()
        if payload.get("errors"):
            raise WebserverError(f"GraphQL errors from {self.url}: {payload['errors']}")
        return payload["data"]

    def wait_until_loaded(self, timeout: float = 300, location: str = LOCATION_NAME) -> str:
        """Block until the webserver has loaded `location`; its repository's name."""
        deadline = time.monotonic() + timeout
        while self.repository_name is None:
            if self.process.poll() is not None:
                raise WebserverError(
                    f"the webserver exited with code {self.process.returncode} before it "
                    f"loaded the code location {location!r}; {log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise WebserverError(
                    f"the webserver had not loaded the code location {location!r} after "
                    f"{timeout:.0f} s; {log_tail(self.log)}"
                )
            self.repository_name = self._loaded_repository(location)
            if self.repository_name is None:
                time.sleep(0.5)
        return self.repository_name

    def _loaded_repository(self, location: str) -> str | None:
        try:
            data = self.graphql(LOCATION_ENTRIES)
        except requests.ConnectionError:
            return None  # not listening yet
        for entry in data["workspaceOrError"].get("locationEntries", []):
            loaded = entry["locationOrLoadError"] or {}
            if entry["name"] != location or entry["loadStatus"] != "LOADED":
                continue
            if loaded.get("__typename") == "PythonError":
                raise WebserverError(
                    f"the code location {location!r} failed to load:\n{loaded['message']}"
                )
            (repository,) = loaded["repositories"]
            return repository["name"]
        return None


@contextmanager
def ui_webserver(
    workspace_file: Path, *, home: Path, env: Mapping[str, str] | None = None
) -> Iterator[Webserver]:
    """Start a webserver for `workspace_file` (not waiting for it); stop its group on exit.

    `home` receives the instance without a run queue and the webserver's log.
    """
    if not workspace_file.exists():
        raise FileNotFoundError(
            f"no {workspace_file.name} in {workspace_file.parent}: run analytics-platform from "
            "the repository root, or set DAGSTER_HOME to the folder holding it"
        )
    dagster_home = instance_without_run_queue(workspace_file.parent, home / "dagster-home")
    log = home / "webserver.log"
    port = free_port()
    args = [WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace_file)]
    process = start_process_group(
        args,
        log=log,
        env={**(os.environ if env is None else env), "DAGSTER_HOME": str(dagster_home)},
        cwd=workspace_file.parent,
    )
    try:
        yield Webserver(process=process, port=port, log=log)
    finally:
        stop_process_group(process)


def launch_job_run(
    webserver: Webserver,
    job_name: str,
    *,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    location_name: str = LOCATION_NAME,
) -> str:
    """Submit a run of `job_name` as the Launchpad does; its run id (it is started at once)."""
    repository_name = webserver.wait_until_loaded(location=location_name)
    try:
        return webserver.client.submit_job_execution(
            job_name,
            repository_location_name=location_name,
            repository_name=repository_name,
            run_config=dict(run_config),
            tags=dict(tags),
        )
    except DagsterGraphQLClientError as err:
        raise LaunchRefused(
            f"the webserver refused to launch {job_name} of {location_name}: "
            f"{err} {err.body or ''}".strip()
        ) from err


def wait_for_run(
    instance: DagsterInstance,
    run_id: str,
    poll_seconds: float = 0.5,
    timeout: float | None = None,
) -> DagsterRun:
    """Block until the run ends; raise `RunNotSuccessful` unless it succeeded.

    A run worker that dies is reported as a failure by the code server that
    started it, so the wait ends then too. `timeout` (s) bounds a wait that
    nothing may end (a run left queued with no daemon running).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise LookupError(f"run {run_id} is not in the Dagster instance")
        if run.is_finished:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(
                f"run {run_id} of {run.job_name} is still {run.status.value} after {timeout:.0f} s"
            )
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
