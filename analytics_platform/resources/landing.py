"""The landing zone: where tenants' files arrive, one folder per tenant and day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from dagster import ConfigurableResource
from pydantic import Field

from analytics_platform.ingest.bounded import open_expanded
from analytics_platform.ingest.landing_tree import LandingScan, open_in_zone, scan_day_folder
from analytics_platform.partitions import TenantDay


class LandingZoneResource(ConfigurableResource):
    """`<root>/<tenant>/<YYYY-MM-DD>/*.jsonl|ndjson|csv[.gz]` (LANDING_DIR)."""

    root: str = Field(description="LANDING_DIR: the folder tenants' files land in.")
    timestamp_tolerance_minutes: int = Field(
        default=0,
        ge=0,
        description=(
            "How far outside its folder's day an event's timestamp may be before quarantine."
        ),
    )
    settle_seconds: int = Field(
        default=60,
        ge=0,
        description=(
            "landing_file_sensor takes a file once its size and mtime were unchanged between "
            "two evaluations, or its mtime is at least this old."
        ),
    )
    max_line_bytes: int = Field(
        default=1_048_576,
        gt=0,
        description=(
            "Longer lines are quarantined as oversized (their first 4 KiB, length and "
            "SHA-256); no more of a line than this is ever held in memory."
        ),
    )
    max_expanded_bytes: int = Field(
        default=8 << 30,
        gt=0,
        description=(
            "A gzipped file that expands past this many bytes is quarantined whole "
            "(reason decompression_limit)."
        ),
    )
    max_compression_ratio: float = Field(
        default=100.0,
        gt=1,
        description=(
            "A gzipped file that expands past this many times its compressed size (once "
            "past 64 MiB) is quarantined whole (reason decompression_limit): a gzip bomb."
        ),
    )
    parse_processes: int = Field(
        default=0,
        ge=0,
        description=(
            "Worker processes that parse large JSON lines files (16 MB and more) while the "
            "run's process streams them to Postgres: 0 means one per CPU core (at most 4), "
            "1 parses in the run's process. A CSV file whose header names the required "
            "columns is parsed column by column in the run's process instead."
        ),
    )

    def day_dir(self, slice_: TenantDay) -> Path:
        return Path(self.root) / slice_.tenant / slice_.date.isoformat()

    def scan(self, slice_: TenantDay) -> LandingScan:
        """The complete files of a tenant-day in name order (none if the folder is missing),
        and the symlinks and special files refused there, never followed."""
        return scan_day_folder(Path(self.root), slice_.tenant, slice_.date)

    def files_for(self, slice_: TenantDay) -> list[Path]:
        return [entry.path for entry in self.scan(slice_).files]

    @contextmanager
    def open_file(self, path: Path) -> Iterator[BinaryIO]:
        """A landing file's bytes (gunzipped under the caps), opened inside the zone only:
        see landing_tree.open_in_zone and bounded.open_expanded."""
        relative = self.relative(path)
        with (
            open_in_zone(Path(self.root), relative) as raw,
            open_expanded(
                raw,
                relative.lower().endswith(".gz"),
                max_expanded_bytes=self.max_expanded_bytes,
                max_compression_ratio=self.max_compression_ratio,
            ) as stream,
        ):
            yield stream

    def window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """The accepted `occurred_at` range for a day's folder: [start, end)."""
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
        tolerance = dt.timedelta(minutes=self.timestamp_tolerance_minutes)
        return start - tolerance, start + dt.timedelta(days=1) + tolerance

    def relative(self, path: Path) -> str:
        """A file's name as recorded in lineage: relative to the root, never absolute."""
        return path.relative_to(self.root).as_posix()
