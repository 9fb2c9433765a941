"""The tenant audit trail (`platform.tenant_audit`): one row per change, kept forever."""

from __future__ import annotations

import json
from collections.abc import Mapping

import psycopg


def record_audit(
    conn: psycopg.Connection,
    tenant_id: str,
    action: str,
    actor: str,
    detail: Mapping[str, object] | None = None,
) -> None:
    """Audit a change in `conn`'s transaction, so the row exists exactly when the change does."""
    conn.execute(
        "INSERT INTO platform.tenant_audit (tenant_id, action, actor, detail) "
        "VALUES (%s, %s, %s, %s::jsonb)",
        (tenant_id, action, actor, json.dumps(dict(detail or {}), default=str)),
    )
