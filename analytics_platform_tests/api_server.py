"""A real `analytics-platform api` process on 127.0.0.1, for tests and benchmarks.

Started in its own process group and stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from analytics_platform.process_groups import (
    stop_process_group,
)
from analytics_platform_tests.cli_harness import start_server

START_TIMEOUT_SECONDS = 60


@dataclass
class RunningApi:
    process: subprocess.Popen
    url: str
    log: Path

    def get(self, path: str, key: str | None = None, **headers: str) -> requests.Response:
        """GET `path` with the key as a bearer token (headers as keywords, `_` for `-`)."""
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return requests.get(f"{self.url}{path}", headers=sent, timeout=30)

    def stop(self, grace: float = 20) -> int:
        stop_process_group(self.process, grace=grace)
        return self.process.wait(timeout=10)


def start_api(env: Mapping[str, str], log: Path) -> RunningApi:
    """Start the read API on a free port and wait until it serves /openapi.json."""
    process, url = start_server("api", "/openapi.json", env, log, START_TIMEOUT_SECONDS)
    return RunningApi(process, url, log)
