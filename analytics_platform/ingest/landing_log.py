"""`platform.landing_files`: the version (size, mtime) of each landing file the raw layer loaded.

Written in the same transaction as the raw rows, so it never claims a load that
did not commit; read by landing_file_sensor to skip files already loaded as
they are (after `make demo`, say, or when the sensor's cursor was reset).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psycopg

from analytics_platform.partitions import TenantDay
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource


def file_versions(
    landing: LandingZoneResource, paths: Iterable[Path]
) -> list[tuple[str, int, int]]:
    """(relative source, size, mtime_ns) of each file, taken before it is read."""
    versions = []
    for path in paths:
        stat = path.lstat()  # listed as a regular file: never a link to follow
        versions.append((landing.relative(path), stat.st_size, stat.st_mtime_ns))
    return versions


def record_loaded_files(
    conn: psycopg.Connection,
    slice_: TenantDay,
    versions: list[tuple[str, int, int]],
    run_id: str,
) -> None:
    """Make the slice's log list exactly these file versions (inside the load's transaction)."""
    conn.execute(
        "DELETE FROM platform.landing_files WHERE tenant_id = %s AND partition_date = %s",
        (slice_.tenant, slice_.date),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO platform.landing_files "
            "(source, tenant_id, partition_date, size_bytes, mtime_ns, run_id) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET "
            "size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, "
            "run_id = EXCLUDED.run_id, loaded_at = now()",
            [
                (source, slice_.tenant, slice_.date, size, mtime, run_id)
                for source, size, mtime in versions
            ],
        )


def already_loaded(postgres: PostgresResource, versions: list[tuple[str, int, int]]) -> set[str]:
    """The sources whose current size and mtime are the ones last loaded."""
    if not versions:
        return set()
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT source, size_bytes, mtime_ns FROM platform.landing_files "
            "WHERE source = ANY(%s)",
            ([source for source, _, _ in versions],),
        ).fetchall()
    loaded = {tuple(row) for row in rows}
    return {source for source, size, mtime in versions if (source, size, mtime) in loaded}
