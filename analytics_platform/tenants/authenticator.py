"""Checking the API key (and the browser origin) a client sends, on every request.

Called by the HTTP service from its threadpool, so everything here is
thread-safe and cheap: a key's state (its tenant, kind, whether it is revoked,
the tenant's status) is cached in memory for `cache_seconds`, so a revocation
or a suspension takes effect within that time, and a key's `last_used_at` is
written at most once per `touch_seconds`. Keys are looked up and compared by
their SHA-256, never as text, and never logged (only their `key_id`).

An answer never reveals whether a tenant exists: an unknown key and a key of a
deprovisioned tenant get the same `invalid_key`. While the warehouse is
unreachable, states fetched in the last `cache_seconds + stale_seconds` are
still used; a key with nothing cached then raises `AuthUnavailable` (a 503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from analytics_platform.redaction import redact
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.settings import DEFAULT_KEY_CACHE_SECONDS
from analytics_platform.tenants.key_format import KEY_PREFIXES, SECRET_PATTERN, key_hash
from analytics_platform.tenants.origins import (
    InvalidOrigin,
    all_allowed_origins,
    normalize_origin,
    origins_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TOUCH_SECONDS = 60.0

# status, message (safe to show any client: it names no tenant) for each rejection code.
REJECTIONS: dict[str, tuple[int, str]] = {
    "missing_key": (401, "no API key was sent: send it as 'Authorization: Bearer <key>'"),
    "invalid_key": (401, "the API key is not valid"),
    "key_revoked": (401, "the API key was revoked: ask for a new key"),
    "tenant_suspended": (403, "the API key's account is suspended: nothing is accepted"),
    "wrong_key_kind": (403, "this endpoint takes a {wanted} key, and a {sent} key was sent"),
}


class KeyRejected(Exception):
    """The request's key is refused: `.status` (401/403), `.code` and a client-safe `.message`."""

    def __init__(self, code: str, **details: str):
        status, message = REJECTIONS[code]
        self.status = status
        self.code = code
        self.message = message.format(**details)
        super().__init__(f"{code}: {self.message}")

    def to_dict(self) -> dict[str, str]:
        """The JSON body a service answers with."""
        return {"error": self.code, "message": self.message}


class AuthUnavailable(RuntimeError):
    """The warehouse cannot be asked and nothing usable is cached: answer 503, retry later."""


@dataclass(frozen=True)
class Principal:
    """Who a request is from: the tenant its key belongs to, and which key."""

    tenant_id: str
    kind: str
    key_id: str


@dataclass(frozen=True)
class _KeyState:
    key_id: str
    tenant_id: str
    kind: str
    revoked: bool
    tenant_status: str


def judge(state: _KeyState | None, kind: str) -> Principal:
    """The principal a key of this state stands for on an endpoint taking `kind`, or the
    rejection (the first that applies, in this order)."""
    if state is None or state.tenant_status == "deprovisioned":
        raise KeyRejected("invalid_key")
    if state.revoked:
        raise KeyRejected("key_revoked")
    if state.kind != kind:
        raise KeyRejected("wrong_key_kind", wanted=kind, sent=state.kind)
    if state.tenant_status == "suspended":
        raise KeyRejected("tenant_suspended")
    return Principal(state.tenant_id, state.kind, state.key_id)


class _Unreachable(Exception):
    pass


class KeyAuthenticator:
    """Authenticates keys and checks origins for one service process (share one instance).

    `cache_seconds` (the `KEY_CACHE_SECONDS` setting) bounds how long a revocation,
    a suspension or an origin change takes to reach this process; `touch_seconds`
    how often a key's `last_used_at` is written.
    """

    def __init__(
        self,
        postgres: PostgresResource,
        cache_seconds: float = DEFAULT_KEY_CACHE_SECONDS,
        touch_seconds: float = DEFAULT_TOUCH_SECONDS,
        *,
        stale_seconds: float = 300.0,
        max_entries: int = 100_000,
        retry_seconds: float = 1.0,
        connect_timeout_seconds: int = 5,
    ):
        self.postgres = postgres
        self.cache_seconds = cache_seconds
        self.touch_seconds = touch_seconds
        self.stale_seconds = stale_seconds
        self.max_entries = max_entries
        self.retry_seconds = retry_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        # key hash, ("origins", tenant) or ("origins",) -> (value, monotonic time fetched)
        self._cache: OrderedDict[object, tuple[object, float]] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._cache_lock = threading.Lock()
        self._db_lock = threading.Lock()  # one connection, one query at a time
        self._conn: psycopg.Connection | None = None
        self._down_until = 0.0

    # -- the checks -------------------------------------------------------------------

    def authenticate(self, secret: str | None, kind: str = "write") -> Principal:
        """The principal of `secret` on an endpoint taking `kind` keys; raises KeyRejected
        (see REJECTIONS) or AuthUnavailable."""
        if kind not in KEY_PREFIXES:
            raise ValueError(f"kind must be one of {sorted(KEY_PREFIXES)}, got {kind!r}")
        if isinstance(secret, str):
            secret = secret.strip()  # a key pasted with its newline is still the key
        if secret is None or secret == "":
            raise KeyRejected("missing_key")
        if not isinstance(secret, str) or SECRET_PATTERN.fullmatch(secret) is None:
            raise KeyRejected("invalid_key")
        digest = key_hash(secret)
        state = self._cached(digest, lambda conn: _fetch_key(conn, digest))
        principal = judge(state, kind)
        self._touch(principal.key_id)
        return principal

    def origin_allowed(self, tenant_id: str, origin: str | None) -> bool:
        """Whether the tenant allows a browser request from `origin` (the Origin header).
        No Origin header (None or "") is not a browser: allowed."""
        if origin is None or origin == "":
            return True
        normalized = _normalized(origin)
        if normalized is None:
            return False
        allowed = self._cached(("origins", tenant_id), lambda conn: origins_of(conn, tenant_id))
        return normalized in allowed

    def any_tenant_allows(self, origin: str | None) -> bool:
        """Whether some tenant allows `origin`: how a CORS preflight (no key) is answered."""
        normalized = _normalized(origin) if origin else None
        if normalized is None:
            return False
        return normalized in self._cached(("origins",), all_allowed_origins)

    def forget(self) -> None:
        """Drop everything cached (the next checks ask the warehouse); for operators and tests."""
        with self._cache_lock:
            self._cache.clear()

    def close(self) -> None:
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- the cache --------------------------------------------------------------------

    def _cached(self, key: object, fetch: Callable[[psycopg.Connection], T]) -> T:
        """`fetch`'s value for `key`, fetched at most once per `cache_seconds`."""
        hit = self._fresh(key)
        if hit is not None:
            return hit[0]  # type: ignore[return-value]
        with self._db_lock:
            hit = self._fresh(key)  # another thread fetched it while this one waited
            if hit is not None:
                return hit[0]  # type: ignore[return-value]
            try:
                value = self._query(fetch)
            except _Unreachable as err:
                return self._stale(key, err)
        with self._cache_lock:
            self._cache[key] = (value, time.monotonic())
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return value

    def _fresh(self, key: object) -> tuple[object, float] | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None or time.monotonic() - hit[1] >= self.cache_seconds:
                return None
            self._cache.move_to_end(key)
            return hit

    def _stale(self, key: object, err: _Unreachable) -> T:  # type: ignore[type-var]
        """During an outage: the last value if recent enough, else AuthUnavailable."""
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[1] < self.cache_seconds + self.stale_seconds:
            return hit[0]  # type: ignore[return-value]
        raise AuthUnavailable(f"the warehouse cannot be reached to check the key: {err}") from err

    def _touch(self, key_id: str) -> None:
        """Record the key's use, at most once per `touch_seconds` (here and in the table)."""
        now = time.monotonic()
        with self._cache_lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < self.touch_seconds:
                return
            self._touched[key_id] = now
        try:
            with self._db_lock:
                self._query(lambda conn: _touch_key(conn, key_id, self.touch_seconds))
        except _Unreachable as err:  # losing a last-used time never fails a request
            log.warning("could not record the use of key %s: %s", key_id, err)

    # -- the connection ---------------------------------------------------------------

    def _query(self, fetch: Callable[[psycopg.Connection], T]) -> T:
        """Run `fetch` on the connection (the caller holds `_db_lock`), reconnecting once.

        After a failure the warehouse is not asked again for `retry_seconds`, so an
        outage costs requests one timeout per interval, not one each.
        """
        if time.monotonic() < self._down_until:
            raise _Unreachable("it failed less than a second ago")
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                return fetch(self._conn)
            except psycopg.OperationalError as err:
                self._drop_connection()
                if attempt == 2:
                    self._down_until = time.monotonic() + self.retry_seconds
                    raise _Unreachable(redact(str(err).strip().splitlines()[0])) from err
            except psycopg.Error:
                self._drop_connection()
                raise
        raise AssertionError("unreachable")

    def _connect(self) -> psycopg.Connection:
        self.postgres.ensure_warehouse()
        return psycopg.connect(
            self.postgres.url,
            autocommit=True,
            connect_timeout=self.connect_timeout_seconds,
            application_name="analytics-platform-keys",
            options="-c statement_timeout=5000",
        )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _normalized(origin: str) -> str | None:
    try:
        return normalize_origin(origin)
    except InvalidOrigin:
        return None


def _fetch_key(conn: psycopg.Connection, digest: bytes) -> _KeyState | None:
    row = conn.execute(
        "SELECT k.key_id, k.tenant_id, k.kind, k.revoked_at IS NOT NULL, t.status "
        "FROM platform.tenant_keys k JOIN platform.tenants t USING (tenant_id) "
        "WHERE k.key_hash = %s",
        (digest,),
    ).fetchone()
    return None if row is None else _KeyState(*row)


def _touch_key(conn: psycopg.Connection, key_id: str, touch_seconds: float) -> None:
    # The WHERE throttles across collector processes too: each writes only a stale time.
    conn.execute(
        "UPDATE platform.tenant_keys SET last_used_at = now() WHERE key_id = %s "
        "AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s))",
        (key_id, touch_seconds),
    )
