"""The browser origins each tenant allows (`platform.tenant_origins`), for the collector's CORS.

A browser names the page that sends a request in its `Origin` header
(`scheme://host[:port]`). The collector answers a CORS preflight (which carries
no key) for an origin some tenant allows, and accepts a browser's request only
when the key's tenant allows its origin; a request without an `Origin` header
is not a browser's and needs no allowance. Origins are stored normalized, the
way browsers send them, so a lookup is one string comparison.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.audit import record_audit
from analytics_platform.tenants.errors import OriginRefused, TenantStateError, not_registered
from analytics_platform.tenants.ids import validate_tenant_id
from analytics_platform.tenants.sites import is_registered, lock_tenant

DEFAULT_PORTS = {"http": 80, "https": 443}
ORIGIN_RULE = (
    "an origin is scheme://host[:port] with scheme http or https and no path, query, "
    "user or wildcard (e.g. https://shop.example.com or http://localhost:8080)"
)


class InvalidOrigin(ValueError):
    pass


@dataclass(frozen=True)
class AllowedOrigin:
    tenant_id: str
    origin: str
    added_at: dt.datetime


def normalize_origin(value: str) -> str:
    """`value` the way a browser's Origin header spells it, or InvalidOrigin naming the problem.

    Scheme and host lower-case, an IDN host in its ASCII (punycode) form, the
    scheme's default port dropped, a lone trailing '/' dropped.
    """
    text = value.strip() if isinstance(value, str) else ""
    if "*" in text:
        raise InvalidOrigin(
            f"invalid origin {value!r}: wildcards are refused, list each origin: {ORIGIN_RULE}"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise InvalidOrigin(f"invalid origin {value!r} ({err}): {ORIGIN_RULE}") from err
    scheme = parts.scheme.lower()
    problem = (
        "the scheme must be http or https"
        if scheme not in DEFAULT_PORTS
        else "it has no host"
        if not parts.hostname
        else "it has a path"
        if parts.path not in ("", "/")
        else "it has a query or fragment"
        if parts.query or parts.fragment or text.endswith(("?", "#"))
        else "it has a user or password"
        if "@" in parts.netloc
        else ""
    )
    if problem:
        raise InvalidOrigin(f"invalid origin {value!r}: {problem}; {ORIGIN_RULE}")
    host = _ascii_host(parts.hostname, value)
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    shown_port = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def _ascii_host(hostname: str, value: str) -> str:
    """The host as browsers send it: lower-case ASCII, an IDN in punycode."""
    try:
        host = hostname.encode("idna").decode("ascii") if not hostname.isascii() else hostname
    except UnicodeError as err:
        raise InvalidOrigin(f"invalid origin {value!r}: the host is not a valid name") from err
    host = host.lower()
    if any(ch.isspace() or ch in "/?#@\\" for ch in host):
        raise InvalidOrigin(f"invalid origin {value!r}: the host holds characters no host has")
    return host


def normalize_origins(values: Iterable[str]) -> list[str]:
    """The origins normalized, in order, each once; InvalidOrigin for the first bad one."""
    return list(dict.fromkeys(normalize_origin(value) for value in values))


def _live_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    if lock_tenant(conn, tenant_id) == "deprovisioned":
        raise TenantStateError(
            f"tenant {tenant_id!r} is deprovisioned; register it again "
            f"(analytics-platform tenants add {tenant_id}) before allowing origins"
        )


def add_origins(
    postgres: PostgresResource, tenant_id: str, origins: Iterable[str], *, actor: str = "unknown"
) -> list[str]:
    """Allow these origins for the tenant (all or none, each new one audited); return the new."""
    validate_tenant_id(tenant_id)
    wanted = normalize_origins(origins)
    postgres.ensure_warehouse()
    added = []
    with postgres.transaction() as conn:
        _live_tenant(conn, tenant_id)
        for origin in wanted:
            row = conn.execute(
                "INSERT INTO platform.tenant_origins (tenant_id, origin) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING RETURNING origin",
                (tenant_id, origin),
            ).fetchone()
            if row is not None:
                record_audit(conn, tenant_id, "origin_added", actor, {"origin": origin})
                added.append(origin)
    return added


def remove_origin(
    postgres: PostgresResource, tenant_id: str, origin: str, *, actor: str = "unknown"
) -> str:
    """Stop allowing an origin (audited); return it normalized. Refused if it was not allowed."""
    validate_tenant_id(tenant_id)
    normalized = normalize_origin(origin)
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        lock_tenant(conn, tenant_id)
        removed = conn.execute(
            "DELETE FROM platform.tenant_origins WHERE tenant_id = %s AND origin = %s "
            "RETURNING added_at",
            (tenant_id, normalized),
        ).fetchone()
        if removed is None:
            raise OriginRefused(
                f"tenant {tenant_id!r} does not allow origin {normalized!r}; its origins: "
                f"analytics-platform tenants origins list {tenant_id}"
            )
        record_audit(
            conn,
            tenant_id,
            "origin_removed",
            actor,
            {"origin": normalized, "added_at": removed[0]},
        )
    return normalized


def list_origins(postgres: PostgresResource, tenant_id: str) -> list[AllowedOrigin]:
    """The tenant's allowed origins, in the order they were added."""
    validate_tenant_id(tenant_id)
    postgres.ensure_warehouse()
    with postgres.connect() as conn:
        if not is_registered(conn, tenant_id):
            raise not_registered(tenant_id)
        rows = conn.execute(
            "SELECT tenant_id, origin, added_at FROM platform.tenant_origins "
            "WHERE tenant_id = %s ORDER BY added_at, origin",
            (tenant_id,),
        ).fetchall()
    return [AllowedOrigin(*row) for row in rows]


def origins_of(conn: psycopg.Connection, tenant_id: str) -> frozenset[str]:
    """The tenant's allowed origins (the authenticator's lookup, cached there)."""
    rows = conn.execute(
        "SELECT origin FROM platform.tenant_origins WHERE tenant_id = %s", (tenant_id,)
    ).fetchall()
    return frozenset(origin for (origin,) in rows)


def all_allowed_origins(conn: psycopg.Connection) -> frozenset[str]:
    """Every origin a tenant not deprovisioned allows (for CORS preflights, keyless)."""
    rows = conn.execute(
        "SELECT DISTINCT o.origin FROM platform.tenant_origins o "
        "JOIN platform.tenants t USING (tenant_id) WHERE t.status <> 'deprovisioned'"
    ).fetchall()
    return frozenset(origin for (origin,) in rows)
