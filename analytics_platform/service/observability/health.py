"""GET /health: each dependency's state, probed concurrently and bounded in time.

States: `ok`, `degraded` (works, with a caveat: not migrated yet, ...) or `down`, each
with a reason. The answer is 503 when a dependency the service needs is down (the
collector needs the landing zone and the warehouse, for keys), else 200 with overall
`status` ok or degraded. A probe that has not answered within the budget is down; a
probe still running from an earlier request is not started again, so a hung store
never piles up threads.

The ClickHouse probe never opens a chDB session (starting one is expensive and takes
the data path, which admits one process at a time): it checks the data path and
whether a process holds the lock `ClickHouseResource.session` takes.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from analytics_platform.resources.chdb_handoff import lock_path
from analytics_platform.settings import CHDB_SCHEME, ObservedStores

OK, DEGRADED, DOWN = "ok", "degraded", "down"
HEALTH_BUDGET_SECONDS = 1.5
_CONNECT_TIMEOUT_SECONDS = 2  # libpq's smallest; the budget above bounds the answer
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


@dataclass(frozen=True)
class DependencyState:
    state: str
    detail: str
    busy: bool = False


Probe = Callable[[], DependencyState]


# --------------------------------------------------------------------------- probes


def _postgres_probe(
    url: str | None, table: str, missing: str, missing_state: str = DEGRADED
) -> DependencyState:
    if not url:
        return DependencyState(DOWN, "not configured")
    with psycopg.connect(
        url,
        connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        options=f"-c statement_timeout={int(HEALTH_BUDGET_SECONDS * 1000)}",
        autocommit=True,
    ) as conn:
        present = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
    return DependencyState(OK, "reachable") if present else DependencyState(missing_state, missing)


def warehouse_probe(stores: ObservedStores) -> Probe:
    return lambda: _postgres_probe(
        stores.warehouse_url,
        "platform.tenants",
        "reachable but not migrated: run `analytics-platform migrate`",
    )


def dagster_storage_probe(stores: ObservedStores) -> Probe:
    return lambda: _postgres_probe(
        stores.dagster_storage_url,
        "runs",
        # Dagster creates its tables on first use: a fresh storage is not a fault.
        "reachable; no Dagster tables yet (no Dagster process has used it)",
        OK,
    )


def chdb_lock_holder(data_path: Path) -> bool:
    """Whether a process holds the data path's lock (`chdb_handoff.lock_path`), without waiting.

    A shared, non-blocking flock: it conflicts with a session's exclusive lock only, and
    is released at once, so a run asking for the lock meanwhile retries a moment later.
    """
    try:
        fd = os.open(lock_path(data_path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _embedded_clickhouse(path: Path) -> DependencyState:
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK | os.X_OK):
            return DependencyState(OK, f"chDB at {path}: empty (no serving run has created it)")
        return DependencyState(DOWN, f"chDB data path {path} cannot be created")
    if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
        return DependencyState(DOWN, f"chDB data path {path} is not a readable folder")
    if chdb_lock_holder(path):
        return DependencyState(OK, f"chDB at {path}: in use by another process", busy=True)
    return DependencyState(OK, f"chDB at {path}: readable, idle")


def _server_clickhouse(url: str) -> DependencyState:
    import clickhouse_connect

    client = clickhouse_connect.get_client(
        dsn=url, connect_timeout=HEALTH_BUDGET_SECONDS, send_receive_timeout=HEALTH_BUDGET_SECONDS
    )
    try:
        client.command("SELECT 1")
    finally:
        client.close()
    return DependencyState(OK, "server answered SELECT 1")


def clickhouse_probe(stores: ObservedStores) -> Probe:
    url = stores.clickhouse_url
    if url.startswith(CHDB_SCHEME):
        path = Path(url.removeprefix(CHDB_SCHEME))
        return lambda: _embedded_clickhouse(path)
    return lambda: _server_clickhouse(url)


def landing_probe(stores: ObservedStores) -> Probe:
    """A read-only look (the collector replaces it with a create-sync-remove probe)."""

    def probe() -> DependencyState:
        root = stores.landing_dir
        if not root.is_dir():
            return DependencyState(DOWN, f"{root} is not a folder")
        if not os.access(root, os.R_OK | os.X_OK):
            return DependencyState(DOWN, f"{root} is not readable")
        return DependencyState(OK, f"{root} readable")

    return probe


def default_probes(stores: ObservedStores) -> dict[str, Probe]:
    return {
        "warehouse": warehouse_probe(stores),
        "clickhouse": clickhouse_probe(stores),
        "landing": landing_probe(stores),
        "dagster_storage": dagster_storage_probe(stores),
    }


# --------------------------------------------------------------------------- report


class HealthReport:
    """Runs the probes concurrently within `budget` seconds; builds the /health answer."""

    def __init__(
        self,
        service: str,
        probes: Mapping[str, Probe],
        required: Iterable[str],
        budget: float = HEALTH_BUDGET_SECONDS,
    ) -> None:
        self.service = service
        self.probes = dict(probes)
        self.required = set(required)
        self.budget = budget
        self._running: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()

    def _future(self, name: str) -> concurrent.futures.Future:
        with self._lock:
            running = self._running.get(name)
            if running is None or running.done():
                running = self._running[name] = _pool.submit(_timed, self.probes[name])
            return running

    def check(self) -> tuple[int, dict]:
        """(HTTP status, body) of one health request."""
        started = time.monotonic()
        futures = {name: self._future(name) for name in self.probes}
        concurrent.futures.wait(futures.values(), timeout=self.budget)
        dependencies = {}
        for name, future in futures.items():
            if future.done():
                state, ms = future.result()
            else:
                state = DependencyState(DOWN, f"no answer within {self.budget:g} s")
                ms = round((time.monotonic() - started) * 1000, 1)
            entry = {"state": state.state, "detail": state.detail, "ms": ms}
            if state.busy:
                entry["busy"] = True
            entry["required"] = name in self.required
            dependencies[name] = entry
        return _answer(self.service, dependencies)


def _timed(probe: Probe) -> tuple[DependencyState, float]:
    started = time.monotonic()
    try:
        state = probe()
    except Exception as err:  # a probe's failure is the dependency's state, never a 500
        state = DependencyState(DOWN, f"{type(err).__name__}: {err}"[:500])
    return state, round((time.monotonic() - started) * 1000, 1)


def _answer(service: str, dependencies: dict[str, dict]) -> tuple[int, dict]:
    down = [n for n, d in dependencies.items() if d["state"] == DOWN and d["required"]]
    if down:
        first = down[0]
        body = {
            "status": DOWN,
            "service": service,
            "dependencies": dependencies,
            "error": {
                "code": f"{first}_unavailable",
                "message": "; ".join(f"{n}: {dependencies[n]['detail']}" for n in down),
            },
        }
        return 503, body
    worst = OK if all(d["state"] == OK for d in dependencies.values()) else DEGRADED
    return 200, {"status": worst, "service": service, "dependencies": dependencies}
