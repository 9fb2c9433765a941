"""A read-only ClickHouse user per tenant, for a ClickHouse server.

The user `reader_<tenant>` may SELECT from the tenant's database and nothing
else, so an analyst or a BI tool connected as that user cannot see another
tenant. The password never reaches the platform in clear: the SQL carries its
SHA-256 hash. Embedded chDB has no users or grants (every query runs as the
process), so there the isolation is the per-tenant database alone.
"""

from __future__ import annotations

import hashlib
import re

from analytics_platform.resources.clickhouse import ClickHouseResource, quote_identifier
from analytics_platform.tenants.ids import validate_tenant_id

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def reader_user(tenant: str) -> str:
    return f"reader_{validate_tenant_id(tenant)}"


def password_hash(password: str) -> str:
    if len(password) < 12:
        raise ValueError("use a password of at least 12 characters")
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def tenant_reader_sql(clickhouse: ClickHouseResource, tenant: str, sha256_hex: str) -> list[str]:
    """Statements that create (or reset) the tenant's reader and grant it its database only."""
    if not SHA256_HEX.fullmatch(sha256_hex):
        raise ValueError("expected the password's SHA-256 as 64 lowercase hex digits")
    user = quote_identifier(reader_user(tenant))
    database = quote_identifier(clickhouse.database_for(tenant))
    return [
        f"CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY '{sha256_hex}' "
        f"DEFAULT DATABASE {database}",
        f"ALTER USER {user} IDENTIFIED WITH sha256_hash BY '{sha256_hex}' "
        f"DEFAULT DATABASE {database}",
        f"REVOKE ALL ON *.* FROM {user}",
        f"GRANT SELECT ON {database}.* TO {user}",
    ]
