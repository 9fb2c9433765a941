"""Schema drift: fields outside the contract that a tenant sends for the first time.

Such fields are never dropped (they are kept in `properties`); this records
each one in `platform.tenant_fields` when first seen and reports it, so a
tracker change is noticed before an analyst asks where a column went.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from analytics_platform.partitions import TenantDay


def record_new_fields(
    conn: psycopg.Connection, table: str, slices: Sequence[TenantDay]
) -> dict[str, list[str]]:
    """Fields in the slices' `properties` not seen before for their tenant: {tenant: [field]}.

    One statement per tenant, inside the load's transaction.
    """
    new: dict[str, list[str]] = {}
    by_tenant: dict[str, list] = {}
    for s in slices:
        by_tenant.setdefault(s.tenant, []).append(s.date)
    for tenant, dates in sorted(by_tenant.items()):
        rows = conn.execute(
            f"""
            INSERT INTO platform.tenant_fields
                (tenant_id, field, first_seen_date, first_seen_source)
            SELECT %(tenant)s, field, min(_partition_date), min(_source)
            FROM {table}, jsonb_object_keys(properties) AS field
            WHERE tenant_id = %(tenant)s AND _partition_date = ANY(%(dates)s)
            GROUP BY field
            ON CONFLICT (tenant_id, field) DO NOTHING
            RETURNING field
            """,
            {"tenant": tenant, "dates": dates},
        ).fetchall()
        if rows:
            new[tenant] = sorted(field for (field,) in rows)
    return new
