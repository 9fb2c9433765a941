"""A real `analytics-platform collector` process on 127.0.0.1, for tests and benchmarks.

Started in its own process group (process_groups.py) and stopped by its PID; every
wait is bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from analytics_platform.process_groups import (
    stop_process_group,
)
from analytics_platform_tests.cli_harness import start_server

START_TIMEOUT_SECONDS = 60


@dataclass
class RunningCollector:
    process: subprocess.Popen
    url: str
    log: Path

    def post(self, path: str, body: bytes | str, **headers: str) -> requests.Response:
        """POST a body (headers given as keyword arguments, `_` for `-`)."""
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        sent.setdefault("Content-Type", "application/json")
        return requests.post(f"{self.url}{path}", data=body, headers=sent, timeout=30)

    def post_events(self, events: list[dict], key: str | None, **headers: str):
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.post("/v1/events", json.dumps(events), **headers)

    def stop(self, grace: float = 30) -> int:
        """SIGTERM (SIGKILL after `grace` s); the exit code."""
        stop_process_group(self.process, grace=grace)
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a crash would end it."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_collector(
    env: Mapping[str, str], log: Path, settings: Mapping[str, str] | None = None
) -> RunningCollector:
    """Start a collector on a free port and wait until /health answers 200."""
    process, url = start_server(
        "collector", "/health", {**env, **(settings or {})}, log, START_TIMEOUT_SECONDS
    )
    return RunningCollector(process, url, log)


def landed_lines(landing: Path, tenant: str | None = None) -> Iterator[tuple[Path, bytes]]:
    """(file, line) of every closed segment (`*.jsonl`), of one tenant or all."""
    pattern = f"{tenant}/*/*.jsonl" if tenant else "*/*/*.jsonl"
    for path in sorted(landing.glob(pattern)):
        for line in path.read_bytes().splitlines():
            yield path, line


def open_segments(landing: Path) -> list[Path]:
    """The `*.tmp` segments still open (outside the collectors' journal folder)."""
    return sorted(landing.glob("*/*/*.tmp"))


def wait_for(condition, timeout: float = 15, what: str = "a condition"):
    """Poll `condition()` until it is truthy (its value is returned), for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount`: a landing zone that fills up (skips the test when
    this machine gives no right to mount)."""
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
