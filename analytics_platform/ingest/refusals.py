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
from analytics_platform.ingest.quarantine import QuarantineRecord, write_quarantine
from analytics_platform.resources.postgres import PostgresResource

LAYER = "landing_zone"


def record_refusals(postgres: PostgresResource, refusals: Sequence[Refusal]) -> int:
    """Record each refused path unless it is already recorded; how many were new."""
    if not refusals:
        return 0
    records = [
        QuarantineRecord(
            tenant_id=refusal.tenant_folder[:200],
            partition_date=refusal.day,
            layer=LAYER,
            source=refusal.relative,
            source_line=0,
            reason=refusal.reason,
            detail=REFUSAL_DETAIL[refusal.reason],
            raw_text="",
            run_id=None,
        )
        for refusal in refusals
    ]
    with postgres.transaction() as conn:
        return write_quarantine(postgres, conn, records, once=True)
