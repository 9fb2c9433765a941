"""Schema drift: fields outside the contract that a tenant sends for the first time.

Such fields are never dropped (they are kept in `properties`); this records
each one in `platform.tenant_fields` when first seen and reports it, so a
tracker change is noticed before an analyst asks where a column went.

The loaders collect the keys of the `properties` they load as they convert
rows, so finding new fields costs one small statement, not a second pass
over the loaded rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from analytics_platform.partitions import TenantDay

NEW_FIELDS = """
INSERT INTO platform.tenant_fields (tenant_id, field, first_seen_date, first_seen_source)
SELECT tenant_id, field, min(day), min(source)
FROM unnest(%s::text[], %s::text[], %s::date[], %s::text[]) AS seen(tenant_id, field, day, source)
GROUP BY tenant_id, field
ON CONFLICT (tenant_id, field) DO NOTHING
RETURNING tenant_id, field
"""


def record_new_fields(
    conn: psycopg.Connection, seen: Iterable[tuple[TenantDay, str, Iterable[str]]]
) -> dict[str, list[str]]:
    """Record the fields not seen before for their tenant and return them: {tenant: [field]}.

    `seen`: (tenant-day, source, the keys of the `properties` loaded from that source).
    A field's first sighting is the earliest day and the first source (in sort order)
    that hold it. Runs inside the load's transaction.
    """
    tenants: list[str] = []
    names: list[str] = []
    days: list = []
    sources: list[str] = []
    for slice_, source, fields in seen:
        for name in fields:
            tenants.append(slice_.tenant)
            names.append(name)
            days.append(slice_.date)
            sources.append(source)
    if not names:
        return {}
    new: dict[str, list[str]] = {}
    for tenant, name in conn.execute(NEW_FIELDS, (tenants, names, days, sources)).fetchall():
        new.setdefault(tenant, []).append(name)
    return {tenant: sorted(fields) for tenant, fields in sorted(new.items())}
