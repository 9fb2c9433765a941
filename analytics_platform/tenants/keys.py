"""Per-tenant API keys (`platform.tenant_keys`): created, listed and revoked, audited.

A key is `apk_w_` (write: trackers send events) or `apk_r_` (read: the read API)
followed by 32 random bytes, url-safe base64. It is shown once, when created;
the warehouse keeps only its SHA-256 and its first 12 characters (`key_id`),
which listings show so a person can tell keys apart. Checking a key a client
sends is `authenticator.KeyAuthenticator`'s job (re-exported here).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.audit import record_audit
from analytics_platform.tenants.authenticator import (
    AuthUnavailable,
    KeyAuthenticator,
    KeyRejected,
    Principal,
)
from analytics_platform.tenants.errors import KeyRefused, TenantStateError, not_registered
from analytics_platform.tenants.ids import validate_tenant_id
from analytics_platform.tenants.key_format import KEY_ID_CHARS, KEY_PREFIXES, key_hash, new_secret
from analytics_platform.tenants.sites import is_registered, lock_tenant

KEY_COLUMNS = "key_id, tenant_id, kind, created_at, created_by, last_used_at, revoked_at"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    kind: str
    created_at: dt.datetime
    created_by: str
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def validate_kind(kind: str) -> str:
    if kind not in KEY_PREFIXES:
        raise KeyRefused(f"unknown key kind {kind!r}: use write (trackers) or read (read API)")
    return kind


def create_key(
    postgres: PostgresResource, tenant_id: str, kind: str = "write", actor: str = "unknown"
) -> tuple[ApiKey, str]:
    """A new key for the tenant: (its record, the secret, which is never shown again).

    Refuses an unregistered tenant (TenantNotFound) and a deprovisioned one
    (TenantStateError); a suspended tenant gets a key that answers 403 until it
    is resumed. Audited as `key_created` with the key_id, never the secret.
    """
    validate_tenant_id(tenant_id)
    validate_kind(kind)
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        if lock_tenant(conn, tenant_id) == "deprovisioned":
            raise TenantStateError(
                f"tenant {tenant_id!r} is deprovisioned; register it again "
                f"(analytics-platform tenants add {tenant_id}) before creating keys"
            )
        record, secret = _insert_key(conn, tenant_id, kind, actor)
        record_audit(conn, tenant_id, "key_created", actor, {"key_id": record.key_id, "kind": kind})
    return record, secret


def _insert_key(
    conn: psycopg.Connection, tenant_id: str, kind: str, actor: str
) -> tuple[ApiKey, str]:
    """Insert a fresh key; a key_id already taken (1 in 2^36 per pair) draws another key."""
    for _attempt in range(8):
        secret = new_secret(kind)
        row = conn.execute(
            "INSERT INTO platform.tenant_keys (key_id, key_hash, tenant_id, kind, created_by) "
            f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {KEY_COLUMNS}",
            (secret[:KEY_ID_CHARS], key_hash(secret), tenant_id, kind, actor),
        ).fetchone()
        if row is not None:
            return ApiKey(*row), secret
    raise RuntimeError("could not draw an unused key id in 8 attempts; try again")


def list_keys(postgres: PostgresResource, tenant_id: str) -> list[ApiKey]:
    """The tenant's keys, revoked ones included, oldest first (never a secret: none is kept)."""
    validate_tenant_id(tenant_id)
    postgres.ensure_warehouse()
    with postgres.connect() as conn:
        if not is_registered(conn, tenant_id):
            raise not_registered(tenant_id)
        rows = conn.execute(
            f"SELECT {KEY_COLUMNS} FROM platform.tenant_keys WHERE tenant_id = %s "
            "ORDER BY created_at, key_id",
            (tenant_id,),
        ).fetchall()
    return [ApiKey(*row) for row in rows]


def revoke_key(
    postgres: PostgresResource, tenant_id: str, key_id: str, actor: str = "unknown"
) -> ApiKey:
    """Revoke one of the tenant's keys (audited `key_revoked`); return its revoked record.

    Clients holding it are refused within the authenticators' cache time
    (`KeyAuthenticator.cache_seconds`). A key_id the tenant does not have (another
    tenant's included, which this never reveals) or a key already revoked is refused.
    """
    validate_tenant_id(tenant_id)
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        lock_tenant(conn, tenant_id)
        row = conn.execute(
            "SELECT revoked_at FROM platform.tenant_keys WHERE key_id = %s AND tenant_id = %s "
            "FOR UPDATE",
            (key_id, tenant_id),
        ).fetchone()
        if row is None:
            raise KeyRefused(
                f"tenant {tenant_id!r} has no key {key_id!r}; its keys: "
                f"analytics-platform tenants keys list {tenant_id}"
            )
        if row[0] is not None:
            raise KeyRefused(
                f"key {key_id!r} of tenant {tenant_id!r} is already revoked (at "
                f"{row[0].astimezone(dt.timezone.utc).isoformat(timespec='seconds')}); "
                "nothing to do"
            )
        (revoked,) = revoke_keys(conn, tenant_id, actor, key_ids=[key_id])
    return revoked


def revoke_keys(
    conn: psycopg.Connection,
    tenant_id: str,
    actor: str,
    *,
    key_ids: list[str] | None = None,
    reason: str | None = None,
) -> list[ApiKey]:
    """Revoke the tenant's live keys (only `key_ids` when given) in `conn`'s transaction,
    each audited `key_revoked`; deprovisioning calls this for all of them."""
    rows = conn.execute(
        "UPDATE platform.tenant_keys SET revoked_at = clock_timestamp(), revoked_by = %s "
        "WHERE tenant_id = %s AND revoked_at IS NULL "
        "AND (%s::text[] IS NULL OR key_id = ANY(%s::text[])) "
        f"RETURNING {KEY_COLUMNS}",
        (actor, tenant_id, key_ids, key_ids),
    ).fetchall()
    revoked = sorted((ApiKey(*row) for row in rows), key=lambda key: key.key_id)
    for key in revoked:
        detail = {"key_id": key.key_id, "kind": key.kind}
        record_audit(
            conn, tenant_id, "key_revoked", actor, detail | ({"reason": reason} if reason else {})
        )
    return revoked


__all__ = [
    "ApiKey",
    "AuthUnavailable",
    "KeyAuthenticator",
    "KeyRejected",
    "Principal",
    "create_key",
    "key_hash",
    "list_keys",
    "revoke_key",
    "revoke_keys",
]
