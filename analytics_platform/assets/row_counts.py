"""Row counts the UI can show next to a partition without lying.

Dagster records a run's materialization metadata on every partition of the run,
and the UI shows `dagster/row_count` next to each one. So a run of one
tenant-day reports that partition's count there; a run of several reports
nothing there, and its total (`rows_in_run`) and each partition's own count
(`rows_by_partition`) under names that say what they are.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import MetadataValue

from analytics_platform.partitions import TenantDay

# Partitions listed one by one in `rows_by_partition`; a larger run lists the first ones.
LISTED_PARTITIONS = 100


def row_count_metadata(counts: Mapping[TenantDay, int]) -> dict[str, object]:
    """Metadata for rows per tenant-day of the run (every partition of the run as a key)."""
    if len(counts) == 1:
        return {"dagster/row_count": next(iter(counts.values()))}
    listed = dict(sorted(counts.items())[:LISTED_PARTITIONS])
    return {
        "rows_in_run": sum(counts.values()),
        "rows_by_partition": MetadataValue.json(
            {s.partition_key: n for s, n in listed.items()}
            | ({"...": f"{len(counts) - len(listed)} more"} if len(counts) > len(listed) else {})
        ),
    }
