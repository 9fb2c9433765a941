"""Landing paths refused unread (symlinks, FIFOs, devices): one `platform.quarantine` record each.

Both the landing sensor and the loader list the zone, so either may meet a
refused path first; a partial unique index (`quarantine_refused_path_once`)
keeps it to one record per path and reason, however many ticks and runs see
it. Written in a short transaction of its own, never inside a load, so a
sensor tick never waits for a run to commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from analytics_platform.ingest.landing_tree import REFUSAL_DETAIL, Refusal
from analytics_platform.resources.postgres import PostgresResource

LAYER = "landing_zone"


def record_refusals(postgres: PostgresResource, refusals: Sequence[Refusal]) -> int:
    """Record each refused path unless it is already recorded; how many were new."""
    if not refusals:
        return 0
    new = 0
    with postgres.transaction() as conn, conn.cursor() as cur:
        for refusal in refusals:
            cur.execute(
                "INSERT INTO platform.quarantine (tenant_id, partition_date, layer, source, "
                "source_line, reason, detail, raw_text) VALUES (%s, %s, %s, %s, 0, %s, %s, '') "
                "ON CONFLICT DO NOTHING",
                (
                    refusal.tenant_folder[:200],
                    refusal.day,
                    LAYER,
                    refusal.relative,
                    refusal.reason,
                    REFUSAL_DETAIL[refusal.reason],
                ),
            )
            new += cur.rowcount
    return new
