"""How the read API reaches the serving layer: embedded chDB (shared with runs) or a server.

Both readers send exactly the SQL `queries.py` builds, fully qualified with the
tenant's database, and return DataFrames; a request's queries run inside one
`reading()` block, so its ETag and its rows come from the same snapshot when
embedded.

Embedded: the process holds chDB's data-path lock between requests (reopening a
session costs ~0.1 s), and hands it over as soon as a run or another tool leaves a
want marker (`resources.chdb_handoff`): a watcher thread releases it once the
query in flight ends, so a run waits for at most one request's queries. While
someone else holds the path, a request waits `wait_seconds` and then gets
`ClickHouseBusy` (a 503 with Retry-After).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from filelock import FileLock, Timeout

from analytics_platform.redaction import redact
from analytics_platform.resources.chdb_handoff import POLL_SECONDS, lock_path, others_waiting

WATCH_SECONDS = 0.02


class ClickHouseBusy(RuntimeError):
    """Embedded chDB is held by a run: answer 503 and ask to retry after `retry_after` s."""

    def __init__(self, waited: float, retry_after: int = 1):
        self.retry_after = retry_after
        super().__init__(f"embedded ClickHouse stayed busy for {waited:g} s (a run is writing)")


class ClickHouseUnavailable(RuntimeError):
    """The ClickHouse server cannot be reached or failed the query: a 503."""


class Session(Protocol):
    def query_df(self, query: str) -> pd.DataFrame: ...


class ServingReader(Protocol):
    def reading(self) -> Any:
        """A context manager yielding a `Session` for one request's queries."""
        ...

    def close(self) -> None: ...


class EmbeddedReader:
    """The data path's lock and one chDB session, held between requests, handed to waiters."""

    def __init__(self, path: Path, wait_seconds: float):
        self.path = path
        self.wait_seconds = wait_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        # Taken in a request's thread, released by the watcher's: not thread-local.
        self._lock = FileLock(str(lock_path(path)), thread_local=False)
        self._mutex = threading.Lock()  # one query (and one open/close) at a time
        self._session: Any = None
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="chdb-handoff", daemon=True)
        self._watcher.start()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        deadline = time.monotonic() + self.wait_seconds
        if not self._mutex.acquire(timeout=self.wait_seconds):
            raise ClickHouseBusy(self.wait_seconds)
        try:
            if self._session is not None and others_waiting(self.path):
                self._release()
            if self._session is None:
                self._take(deadline)
            yield self._session
        finally:
            self._mutex.release()

    def _take(self, deadline: float) -> None:
        """Take the lock within the deadline, never ahead of a waiting run."""
        from analytics_platform.resources.clickhouse import _ChdbSession

        while True:
            if not others_waiting(self.path):
                try:
                    self._lock.acquire(timeout=min(POLL_SECONDS, max(0.0, deadline - _now())))
                    break
                except Timeout:
                    pass
            if _now() >= deadline:
                raise ClickHouseBusy(self.wait_seconds)
            time.sleep(min(POLL_SECONDS / 5, max(0.0, deadline - _now())))
        try:
            self._session = _ChdbSession(self.path)
        except BaseException:
            self._lock.release()
            raise

    def _release(self) -> None:
        session, self._session = self._session, None
        try:
            if session is not None:
                session.close()
        finally:
            if self._lock.is_locked:
                self._lock.release(force=True)

    def _watch(self) -> None:
        """Hand the session over when someone waits, after the query in flight."""
        while not self._stop.wait(WATCH_SECONDS):
            if self._session is None or not others_waiting(self.path):
                continue
            with self._mutex:
                if self._session is not None:
                    self._release()

    def close(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=5)
        with self._mutex:
            self._release()


class _ServerSession:
    def __init__(self, client: Any, settings: dict[str, Any]):
        self._client = client
        self._settings = settings

    def query_df(self, query: str) -> pd.DataFrame:
        try:
            return self._client.query_df(query, settings=self._settings)
        except Exception as err:  # clickhouse-connect's errors: network and server alike
            raise ClickHouseUnavailable(f"the ClickHouse server failed the query: {err}") from err


class ServerReader:
    """One clickhouse-connect client (no server session, so threads can share it).

    The tenant is chosen by the database each query names, never by the
    connection; `readonly=1` goes with every query.
    """

    def __init__(self, url: str, client: Any = None, settings: dict[str, Any] | None = None):
        self.url = url
        self._client = client
        self._settings = {"readonly": 1} if settings is None else settings
        self._guard = threading.Lock()

    def _connected(self) -> Any:
        with self._guard:
            if self._client is None:
                import clickhouse_connect

                try:
                    self._client = clickhouse_connect.get_client(
                        dsn=self.url, autogenerate_session_id=False
                    )
                except Exception as err:
                    raise ClickHouseUnavailable(
                        f"could not reach the ClickHouse server at {redact(self.url)}: {err}"
                    ) from err
            return self._client

    @contextmanager
    def reading(self) -> Iterator[Session]:
        yield _ServerSession(self._connected(), self._settings)

    def close(self) -> None:
        with self._guard:
            if self._client is not None:
                self._client.close()
                self._client = None


def _now() -> float:
    return time.monotonic()


def serving_reader(clickhouse_url: str, wait_seconds: float) -> ServingReader:
    """The reader for CLICKHOUSE_URL: embedded for chdb://, else a server."""
    from analytics_platform.settings import CHDB_SCHEME

    if clickhouse_url.startswith(CHDB_SCHEME):
        return EmbeddedReader(Path(clickhouse_url.removeprefix(CHDB_SCHEME)), wait_seconds)
    return ServerReader(clickhouse_url)
