"""Running the installed commands (`analytics-platform`, `dagster`) as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cli_environment(
    tmp_path: Path, warehouse_url: str, storage_url: str, clickhouse_url: str, landing_dir: Path
) -> dict[str, str]:
    """The environment of an `analytics-platform` or `dagster` process on these stores."""
    return {
        **os.environ,
        "DATABASE_URL": warehouse_url,
        "DAGSTER_POSTGRES_URL": storage_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(landing_dir),
        "PLATFORM_HOME": str(tmp_path / "platform"),
        "DAGSTER_HOME": str(REPO),
        "DAGSTER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def start_server(
    command: str, ready_path: str, env: Mapping[str, str], log: Path, timeout: float = 60
) -> tuple[subprocess.Popen, str]:
    """`analytics-platform <command>` on a free 127.0.0.1 port, in its own process group;
    (the process, its base URL) once GET `ready_path` answers 200 (bounded in time)."""
    import time

    import requests

    from analytics_platform.process_groups import (
        free_port,
        log_tail,
        start_process_group,
        stop_process_group,
    )

    port = free_port()
    process = start_process_group(
        [str(BIN / "analytics-platform"), command, "--port", str(port)],
        log=log,
        env=dict(env),
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the {command} exited {process.returncode}: {log_tail(log)}")
        try:
            if requests.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    stop_process_group(process)
    raise AssertionError(
        f"the {command} did not serve {ready_path} in {timeout} s: {log_tail(log)}"
    )
