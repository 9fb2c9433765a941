"""Tenant-days held back by a failed blocking check (`platform.held_slices`).

A run rebuilds its days and refreshes their neighbours (a session crossing
midnight belongs to the day it starts). When a blocking check fails on a
tenant-day, the layers below stop for that run; the hold makes the *other*
runs respect that too: a neighbouring day's run leaves a held day's marts and
served partitions as they were rather than publishing what failed. A later run
of the held tenant-day that passes the layer's checks releases it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import psycopg

from analytics_platform.partitions import SliceWindow, TenantDay


def hold(
    conn: psycopg.Connection,
    slices: Sequence[TenantDay],
    layer: str,
    checks: Iterable[str],
    run_id: str,
) -> None:
    """Hold `slices` at `layer`, naming the failed checks."""
    conn.execute(
        """
        INSERT INTO platform.held_slices (tenant_id, partition_date, layer, checks, run_id)
        SELECT tenant, day, %s, %s, %s FROM unnest(%s::text[], %s::date[]) AS s(tenant, day)
        ON CONFLICT (tenant_id, partition_date, layer)
        DO UPDATE SET checks = EXCLUDED.checks, run_id = EXCLUDED.run_id, held_at = now()
        """,
        (
            layer,
            ", ".join(sorted(checks))[:1000],
            run_id,
            [s.tenant for s in slices],
            [s.date for s in slices],
        ),
    )


def release(conn: psycopg.Connection, slices: Sequence[TenantDay], layer: str) -> None:
    """The slices passed `layer`'s checks: no longer held there."""
    conn.execute(
        "DELETE FROM platform.held_slices WHERE layer = %s AND (tenant_id, partition_date) IN "
        "(SELECT * FROM unnest(%s::text[], %s::date[]))",
        (layer, [s.tenant for s in slices], [s.date for s in slices]),
    )


def held_neighbours(conn: psycopg.Connection, window: SliceWindow) -> list[TenantDay]:
    """Held days the run would refresh but does not own: its tenants, one day either side."""
    rows = conn.execute(
        "SELECT DISTINCT tenant_id, partition_date FROM platform.held_slices "
        "WHERE tenant_id = ANY(%s) AND partition_date IN (%s, %s) ORDER BY 1, 2",
        (
            list(window.tenants),
            window.start_date - dt.timedelta(days=1),
            window.end_date + dt.timedelta(days=1),
        ),
    ).fetchall()
    return [TenantDay(tenant, day) for tenant, day in rows]
