"""The `tenant_day` partitioning shared by every layer, and how a run reads its slice.

A single-run backfill hands a run several tenants OR several dates, so code
reads all of `context.partition_keys`, never only `partition_key`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    partition_loading_context,
)

from analytics_platform.settings import platform_start_date
from analytics_platform.shard import SHARD
from analytics_platform.tenants.ids import validate_tenant_id

PLATFORM_START_DATE = platform_start_date()

# The run tags by which Dagster gives a run a range of partitions (public strings; the
# constants live in dagster._core only). A test pins them to what Dagster reads.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_NAME_TAG = "dagster/partition"

# One name per shard: dynamic partitions are per instance, and shards share one.
tenants_partitions = DynamicPartitionsDefinition(name=f"tenants_{SHARD}" if SHARD else "tenants")
daily_partitions = DailyPartitionsDefinition(start_date=PLATFORM_START_DATE, timezone="UTC")
tenant_day = MultiPartitionsDefinition({"date": daily_partitions, "tenant": tenants_partitions})


def partitioned_days(now: dt.datetime) -> tuple[dt.date, dt.date | None]:
    """The first and last days that are `tenant_day` dates at `now` (last None before the
    first day has ended): a day becomes a partition once it is over, as Dagster counts."""
    with partition_loading_context(effective_dt=now):
        last = daily_partitions.get_last_partition_window()
    return dt.date.fromisoformat(PLATFORM_START_DATE), None if last is None else last.start.date()


@dataclass(frozen=True, order=True)
class TenantDay:
    tenant: str
    date: dt.date

    @property
    def partition_key(self) -> str:
        return str(MultiPartitionKey({"date": self.date.isoformat(), "tenant": self.tenant}))

    def __str__(self) -> str:
        return f"tenant {self.tenant!r}, day {self.date.isoformat()}"


def parse_tenant_day(partition_key: str | MultiPartitionKey) -> TenantDay:
    """`'2026-11-01|acme'` (or a MultiPartitionKey) -> TenantDay, validating the tenant id."""
    if isinstance(partition_key, MultiPartitionKey):
        dims = partition_key.keys_by_dimension
    else:
        date_part, _, tenant_part = str(partition_key).partition("|")
        dims = {"date": date_part, "tenant": tenant_part}
    return TenantDay(
        tenant=validate_tenant_id(dims["tenant"]),
        date=dt.date.fromisoformat(dims["date"]),
    )


def tenant_days(partition_keys: Iterable[str | MultiPartitionKey]) -> list[TenantDay]:
    """Every tenant-day a run covers, sorted by tenant then date."""
    return sorted({parse_tenant_day(key) for key in partition_keys})


@dataclass(frozen=True)
class SliceWindow:
    """A rectangle of tenants x consecutive dates: what one set-based statement can rebuild."""

    tenants: tuple[str, ...]
    start_date: dt.date
    end_date: dt.date  # inclusive

    @property
    def dates(self) -> list[dt.date]:
        days = (self.end_date - self.start_date).days
        return [self.start_date + dt.timedelta(days=i) for i in range(days + 1)]


def slice_window(slices: Sequence[TenantDay]) -> SliceWindow:
    """The rectangle covering exactly these tenant-days.

    Refuses a set that is not a full tenants x consecutive-days rectangle, because
    a statement scoped by the rectangle would then rebuild partitions the run
    was not asked to build.
    """
    if not slices:
        raise ValueError("a run must cover at least one tenant-day partition")
    tenants = tuple(sorted({s.tenant for s in slices}))
    start, end = min(s.date for s in slices), max(s.date for s in slices)
    window = SliceWindow(tenants=tenants, start_date=start, end_date=end)
    expected = {TenantDay(t, d) for t in tenants for d in window.dates}
    if expected != set(slices):
        missing = sorted(expected - set(slices))[:5]
        raise ValueError(
            f"the run's partitions are not a tenants x consecutive-days rectangle "
            f"(e.g. {', '.join(map(str, missing))} would be rebuilt without being requested); "
            "launch the backfill per tenant or per date range instead"
        )
    return window


def range_tags(tenants: Sequence[str], dates: Sequence[dt.date]) -> dict[str, str]:
    """Run tags that make one run cover every tenant x date.

    A multi-partition range is a rectangle spanning each dimension between its
    start and end keys; tenants span in the order they were registered, so pass
    them in that order.
    """
    first, last = TenantDay(tenants[0], min(dates)), TenantDay(tenants[-1], max(dates))
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.partition_key,
        ASSET_PARTITION_RANGE_END_TAG: last.partition_key,
    }


@dataclass(frozen=True)
class Rectangle:
    """The tenants x consecutive days a ranged run covered."""

    tenants: tuple[str, ...]  # in registration order, as partition ranges span them
    start: dt.date
    end: dt.date

    @property
    def size(self) -> int:
        return len(self.tenants) * ((self.end - self.start).days + 1)

    def halves(self) -> list[Rectangle]:
        """Two rectangles covering this one: split by tenants first, else by days."""
        if len(self.tenants) > 1:
            middle = len(self.tenants) // 2
            return [
                Rectangle(self.tenants[:middle], self.start, self.end),
                Rectangle(self.tenants[middle:], self.start, self.end),
            ]
        days = (self.end - self.start).days + 1
        if days < 2:
            return [self]
        last_of_first = self.start + dt.timedelta(days=days // 2 - 1)
        return [
            Rectangle(self.tenants, self.start, last_of_first),
            Rectangle(self.tenants, last_of_first + dt.timedelta(days=1), self.end),
        ]

    def tags(self) -> dict[str, str]:
        dates = [self.start, self.end]
        if len(self.tenants) == 1 and self.start == self.end:
            # One tenant-day: a plain partition run, as the landing sensor launches.
            return {}
        return range_tags(list(self.tenants), dates)

    def partition_key(self) -> str | None:
        if len(self.tenants) == 1 and self.start == self.end:
            return TenantDay(self.tenants[0], self.start).partition_key
        return None
