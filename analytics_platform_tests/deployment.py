"""The deployed topology on this machine: code server, webserver and daemon as processes.

The same three processes docker-compose.yml runs, started from this repository's
virtualenv: `dagster code-server start` serving `analytics_platform.definitions`,
and `dagster-webserver` and `dagster-daemon run` loading it over gRPC from a
workspace file derived from workspace.docker.yaml. Dagster's instance is the
project's own dagster.yaml (Postgres storage, queued run coordinator, run
monitoring, retries), copied into a temporary DAGSTER_HOME.

Every process listens on 127.0.0.1 only, on a free port, in its own process
group, so `stop()` ends it with everything it started (run workers, dbt) by
process group id. Every wait is bounded and fails with the tail of the logs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from analytics_platform.process_groups import free_port, start_process_group, stop_process_group

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "analytics_platform"
T = TypeVar("T")


class DeploymentError(AssertionError):
    pass


@dataclass
class Service:
    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of the deployment's
    grpc_port: int | None = None  # a code server's

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return f"--- {self.name}: no log yet"
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ({self.log}), last {len(text)} lines:\n" + "\n".join(text)


@dataclass
class Deployment:
    """A running code server (one per shard) + webserver + daemon; see the module docstring."""

    home: Path
    env: dict[str, str]
    web_port: int = field(default_factory=free_port)
    services: dict[str, Service] = field(default_factory=dict)
    locations: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ set-up

    @classmethod
    def prepare(
        cls,
        home: Path,
        settings: Mapping[str, str],
        shards: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Deployment:
        """DAGSTER_HOME with the project's dagster.yaml and a gRPC workspace file.

        `shards` (name -> that shard's own settings: warehouse, ClickHouse, landing)
        makes one code server and code location per shard, all in one workspace and
        one instance; without it, the single code location of workspace.docker.yaml.
        """
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        deployment = cls(home=home, env={})
        workspace = yaml.safe_load((ROOT / "workspace.docker.yaml").read_text())
        (template,) = [entry["grpc_server"] for entry in workspace["load_from"]]
        code: dict[str, tuple[str, dict[str, str]]] = (
            {"code": (LOCATION, {})}
            if shards is None
            else {
                f"code-{name}": (f"{LOCATION}_{name}", {"PLATFORM_SHARD": name, **env})
                for name, env in shards.items()
            }
        )
        ports = {service: free_port() for service in code}
        workspace["load_from"] = [
            {"grpc_server": {**template, "host": "127.0.0.1", "port": ports[service],
                             "location_name": location}}
            for service, (location, _env) in code.items()
        ]  # fmt: skip
        deployment.locations = [location for location, _env in code.values()]
        (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        (home / "artifacts").mkdir(exist_ok=True)
        deployment.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_ARTIFACTS_DIR": str(home / "artifacts"),
            "ALERT_WEBHOOK_URL": "",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **settings,
        }
        workspace_file = str(home / "workspace.yaml")
        # Beside DAGSTER_HOME, not in it: Dagster manages $DAGSTER_HOME/logs itself.
        logs = home.parent / f"{home.name}-process-logs"
        logs.mkdir(exist_ok=True)
        for service, (location, env) in code.items():
            deployment.services[service] = Service(
                service,
                [
                    str(BIN / "dagster"), "code-server", "start",
                    "-h", "127.0.0.1", "-p", str(ports[service]),
                    "-m", "analytics_platform.definitions", "--location-name", location,
                ],
                logs / f"{service}.log",
                env=env,
                grpc_port=ports[service],
            )  # fmt: skip
        for name, args in {
            "webserver": [
                str(BIN / "dagster-webserver"),
                "-h", "127.0.0.1", "-p", str(deployment.web_port), "-w", workspace_file,
            ],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace_file],
        }.items():  # fmt: skip
            deployment.services[name] = Service(name, args, logs / f"{name}.log")
        return deployment

    def _spawn(self, service: Service, extra_env: Mapping[str, str] | None = None) -> None:
        # Its own process group: stopped with its children (run workers, dbt).
        service.process = start_process_group(
            service.args,
            log=service.log,
            env={**self.env, **service.env, **(extra_env or {})},
            cwd=ROOT,
        )

    def start(self, timeout: float = 240, *, daemon: bool = True) -> None:
        """Start the code server, then the webserver and daemon; wait until all are ready.

        Without the daemon it is the UI alone (what benchmarks of the webserver need).
        The instance's tables are created here first, as a deployment's first process
        does before the others start (docker-compose starts them after the code server):
        code servers creating a fresh storage at once race on its DDL.
        """
        with self.instance():
            pass
        for service in self.code_servers:
            self._spawn(service)
        for service in self.code_servers:
            self.wait_for_code_server(timeout, service)
        self._start_webserver(timeout)
        if not daemon:
            return
        self._spawn(self.services["daemon"])
        self.wait_for(self._daemons_healthy, "every daemon to report healthy", timeout)

    def _start_webserver(self, timeout: float, attempts: int = 3) -> None:
        """Start the webserver and wait until it has loaded the code location.

        Its port was free when chosen, but another process can bind it before the
        webserver does (seen with three test workers starting servers at once): then
        a new port is chosen and the webserver started again.
        """
        web = self.services["webserver"]
        for attempt in range(1, attempts + 1):
            logged = web.log.stat().st_size if web.log.exists() else 0
            self._spawn(web)
            try:
                self.wait_for(
                    self._location_loaded, "the webserver to load the code location", timeout
                )
                return
            except DeploymentError:
                with open(web.log, "rb") as log:
                    log.seek(logged)
                    lost_port = b"address already in use" in log.read()
                if web.process.poll() is None or not lost_port or attempt == attempts:
                    raise
            self.web_port = free_port()
            web.args[web.args.index("-p") + 1] = str(self.web_port)

    def restart_code_server(self, extra_env: Mapping[str, str], timeout: float = 240) -> None:
        """Redeploy the code location with changed settings, as an operator would."""
        self._terminate(self.services["code"])
        self.env.update(extra_env)
        self._spawn(self.services["code"])
        self.wait_for_code_server(timeout)

    @property
    def code_servers(self) -> list[Service]:
        return [service for service in self.services.values() if service.grpc_port]

    def stop(self) -> None:
        for service in [self.services["daemon"], self.services["webserver"], *self.code_servers]:
            self._terminate(service)

    def _terminate(self, service: Service, grace: float = 20) -> None:
        if service.process is not None:
            stop_process_group(service.process, grace)

    # ------------------------------------------------------------------ waiting

    def logs(self, lines: int = 30) -> str:
        return "\n".join(service.tail(lines) for service in self.services.values())

    def wait_for(
        self,
        probe: Callable[[], T | None],
        what: str,
        timeout: float,
        interval: float = 1.0,
    ) -> T:
        """Call `probe` until it returns something truthy; at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        attempts = max(1, int(timeout / interval) + 1)
        last_error: Exception | None = None
        for _ in range(attempts):
            self._check_alive()
            try:
                value = probe()
            except Exception as err:  # a server still starting refuses connections
                value, last_error = None, err
            if value:
                return value
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        raise DeploymentError(
            f"timed out after {timeout:.0f}s waiting for {what}"
            + (f" (last error: {last_error!r})" if last_error else "")
            + "\n"
            + self.logs()
        )

    def _check_alive(self) -> None:
        for service in self.services.values():
            if service.process is not None and service.process.poll() is not None:
                raise DeploymentError(
                    f"{service.name} exited with code {service.process.returncode}\n"
                    + self.logs(60)
                )

    def wait_for_code_server(self, timeout: float, service: Service | None = None) -> None:
        port = (service or self.services["code"]).grpc_port

        def serving() -> bool:
            result = subprocess.run(
                [
                    str(BIN / "dagster"), "api", "grpc-health-check",
                    "-p", str(port), "-h", "127.0.0.1",
                ],
                env=self.env, capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            return result.returncode == 0

        self.wait_for(serving, "the code server to serve", timeout, interval=2)

    # ------------------------------------------------------------------ clients

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def graphql(self, query: str, variables: Mapping[str, object] | None = None) -> dict:
        """POST a GraphQL query to the webserver, as the UI does; returns `data`."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise DeploymentError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def _location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
        loaded_locations = set()
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] in self.locations and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise DeploymentError(f"code location failed to load: {loaded['message']}")
                if loaded.get("__typename") == "RepositoryLocation":
                    loaded_locations.add(entry["name"])
        return loaded_locations == set(self.locations)

    def _daemons_healthy(self) -> bool:
        with self.instance() as instance:
            statuses = instance.get_daemon_statuses()
            return bool(statuses) and all(status.healthy for status in statuses.values())

    @contextmanager
    def instance(self) -> Iterator[object]:
        """The deployment's DagsterInstance, from its DAGSTER_HOME (for reading runs)."""
        from dagster import DagsterInstance

        with _environ(self.env), DagsterInstance.from_config(str(self.home)) as instance:
            yield instance


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """dagster.yaml reads its URLs from the environment; set them, then restore."""
    keys = ("DAGSTER_POSTGRES_URL", "DAGSTER_ARTIFACTS_DIR", "DAGSTER_HOME")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({key: values[key] for key in keys if key in values})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


PID_IN_MESSAGE = re.compile(r"Started process for run \(pid: (\d+)\)")


def run_worker_pid(instance, run_id: str) -> int | None:
    """The pid Dagster recorded for the run's worker process ("Started process for run")."""
    for entry in instance.all_logs(run_id):
        match = PID_IN_MESSAGE.search(entry.message or "")
        if match:
            return int(match.group(1))
    return None
