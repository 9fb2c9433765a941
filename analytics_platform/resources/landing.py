"""The landing zone: where tenants' files arrive, one folder per tenant and day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from analytics_platform.ingest.files import is_landing_file
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
        default=1_048_576, gt=0, description="Longer lines are quarantined as oversized."
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

    def files_for(self, slice_: TenantDay) -> list[Path]:
        """The complete files of a tenant-day, in name order (none if the folder is missing)."""
        folder = self.day_dir(slice_)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if is_landing_file(p))

    def window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """The accepted `occurred_at` range for a day's folder: [start, end)."""
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
        tolerance = dt.timedelta(minutes=self.timestamp_tolerance_minutes)
        return start - tolerance, start + dt.timedelta(days=1) + tolerance

    def relative(self, path: Path) -> str:
        """A file's name as recorded in lineage: relative to the root, never absolute."""
        return path.relative_to(self.root).as_posix()
