"""`landing_file_sensor`: a run of the tenant-day for every new or changed landing file.

The cursor is the highest file mtime seen plus the files seen at exactly that
mtime, never the wall clock: a file that lands late with an mtime equal to the
newest one seen is still picked up. A file is taken only once it is complete:
its size and mtime were the same at the previous evaluation, or its mtime is at
least `settle_seconds` old (and `*.tmp`/dotfiles are never taken: write, then
rename). A run's `run_key` is a digest of the tenant-day's files' contents, so
an unchanged file (even touched) never runs twice and a replaced one runs again.

Folders the platform cannot run (a tenant that is unknown, suspended or not a
valid id; a day folder that is not exactly `YYYY-MM-DD`, or before the first
daily partition) start no run: each file there is reported once, as a skip
reason and a `platform.quarantine` record, and remembered, so it runs as soon as
its tenant becomes active. A day that is not over yet is no partition yet: its
files (a collector's, mostly) wait without a report and run once the day ends,
so one tenant's today never fails the tick that runs everyone's yesterday. Symlinks and
special files (at tenant, day or file level) are never followed nor read, and
start no run; each is reported once too (layer `landing_zone`, refusals.py).
"""

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from analytics_platform.ingest.landing_log import already_loaded
from analytics_platform.ingest.landing_tree import (
    REFUSAL_DETAIL,
    LandingEntry,
    LandingScan,
    Refusal,
    RefusedPathError,
    open_in_zone,
    parse_day_folder,
    scan_day_folder,
    scan_landing,
)
from analytics_platform.ingest.refusals import record_refusals
from analytics_platform.jobs import tenant_day_pipeline
from analytics_platform.partitions import TenantDay, partitioned_days, tenants_partitions
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.ids import is_valid_tenant_id
from analytics_platform.tenants.registry import list_tenants
from analytics_platform.tenants.store_binding import check_store_binding

LAYER = "landing_file_sensor"
# Digesting is the sensor's cost; stop a tick after this long and go on at the next one.
TICK_BUDGET_SECONDS = 30.0


@dataclass
class LandingCursor:
    mtime_ns: int = 0
    at_mtime: list[str] = field(default_factory=list)
    # relative path -> [size, mtime_ns] of files seen still changing at the last tick
    unsettled: dict[str, list[int]] = field(default_factory=dict)
    # relative path -> reason, for files whose folder cannot run yet
    blocked: dict[str, str] = field(default_factory=dict)
    # relative path -> reason, for symlinks and special files (already reported)
    refused: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> "LandingCursor":
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def is_new(self, relative: str, mtime_ns: int) -> bool:
        return mtime_ns > self.mtime_ns or (
            mtime_ns == self.mtime_ns and relative not in self.at_mtime
        )

    def advance(self, relative: str, mtime_ns: int) -> None:
        if mtime_ns > self.mtime_ns:
            self.mtime_ns, self.at_mtime = mtime_ns, []
        if mtime_ns == self.mtime_ns:
            self.at_mtime.append(relative)
        self.unsettled.pop(relative, None)


LandedFile = LandingEntry  # a regular landing file, as lstat saw it


def content_digest(root: Path, relative: str) -> str:
    """A digest of a landing file's bytes, read inside the zone only."""
    digest = hashlib.blake2b(digest_size=16)
    with open_in_zone(root, relative) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _day_digest(root: Path, day: TenantDay) -> str:
    """A digest naming every file of the tenant-day by content (refused paths excluded)."""
    digest = hashlib.blake2b(digest_size=16)
    for entry in scan_day_folder(root, day.tenant, day.date).files:
        try:
            content = content_digest(root, entry.relative)
        except (RefusedPathError, FileNotFoundError):
            continue  # swapped or gone since the listing: the next tick sees it
        digest.update(f"{entry.path.name}\0{content}\0".encode())
    return digest.hexdigest()


# A day still going on (or ahead) is no partition yet: its files wait, unreported, and
# run once it is over. Every other problem is reported once (a quarantine record).
OPEN_DAY = "open_day"


def _folder_problem(
    file: LandedFile, statuses: dict[str, str], days: tuple[dt.date, dt.date | None]
) -> str | None:
    """Why this file's folder cannot start a run, or None when it can."""
    tenant = file.tenant_folder
    day = parse_day_folder(file.day_folder)
    if not is_valid_tenant_id(tenant) or day is None:
        return "bad_folder"
    status = statuses.get(tenant)
    if status is None or status in ("pending", "deprovisioned"):
        return "unknown_tenant"
    if status == "suspended":
        return "suspended_tenant"
    first_day, last_day = days
    if day < first_day:
        return "before_start"
    if last_day is None or day > last_day:
        return OPEN_DAY
    return None


PROBLEM_DETAIL = {
    "bad_folder": (
        "the folder is not <tenant id>/<YYYY-MM-DD> (exactly: no week dates, no missing "
        "zeros, no spaces); move the file to such a folder"
    ),
    "unknown_tenant": "no active tenant has this id; register it: analytics-platform tenants add",
    "suspended_tenant": "the tenant is suspended; the file runs when it is resumed",
    "before_start": (
        "the day is before PLATFORM_START_DATE, the first daily partition; move the file to "
        "a later day's folder, or start the platform earlier"
    ),
}


def _record_problems(postgres: PostgresResource, problems: list[tuple[LandedFile, str]]) -> None:
    """One quarantine record per refused file (the file itself stays where it is)."""
    with postgres.transaction() as conn:
        for file, reason in problems:
            day = None if reason == "bad_folder" else parse_day_folder(file.day_folder)
            conn.execute(
                """
                INSERT INTO platform.quarantine
                    (tenant_id, partition_date, layer, source, source_line, reason, detail,
                     raw_text)
                SELECT %s, %s, %s, %s, 0, %s, %s, ''
                WHERE NOT EXISTS (
                    SELECT 1 FROM platform.quarantine
                    WHERE layer = %s AND source = %s AND reason = %s AND reprocessed_at IS NULL
                )
                """,
                (
                    file.tenant_folder[:200],
                    day,
                    LAYER,
                    file.relative,
                    reason,
                    PROBLEM_DETAIL[reason],
                    LAYER,
                    file.relative,
                    reason,
                ),
            )


def _newly_refused(
    postgres: PostgresResource, scan: LandingScan, cursor: LandingCursor
) -> list[Refusal]:
    """The refused paths not reported at an earlier tick, recorded now; the cursor then
    remembers exactly the paths refused now (one that goes and comes back is new again)."""
    new = [r for r in scan.refused if cursor.refused.get(r.relative) != r.reason]
    record_refusals(postgres, new)
    cursor.refused = {r.relative: r.reason for r in scan.refused}
    return new


def evaluate_landing(
    landing: LandingZoneResource,
    postgres: PostgresResource,
    existing_partitions: set[str],
    cursor: LandingCursor,
    now: float,
) -> SensorResult | SkipReason:
    """The sensor's decision, as a plain function of the files, the registry and the cursor."""
    root = Path(landing.root)
    statuses = {t.tenant_id: t.status for t in list_tenants(postgres)}
    days = partitioned_days(dt.datetime.fromtimestamp(now, dt.timezone.utc))
    started = time.monotonic()
    ready: dict[TenantDay, list[LandedFile]] = {}
    problems: list[tuple[LandedFile, str]] = []
    waiting = 0
    scan = scan_landing(root) if root.is_dir() else LandingScan([], [])
    files = sorted(scan.files, key=lambda f: (f.mtime_ns, f.relative))
    by_relative = {f.relative: f for f in files}
    refused = _newly_refused(postgres, scan, cursor)

    # Files refused earlier whose tenant has since become active.
    for relative in list(cursor.blocked):
        file = by_relative.get(relative)
        if file is None:
            del cursor.blocked[relative]
        elif (problem := _folder_problem(file, statuses, days)) is None:
            del cursor.blocked[relative]
            day = TenantDay(file.tenant_folder, parse_day_folder(file.day_folder))
            ready.setdefault(day, []).append(file)
        else:
            cursor.blocked[relative] = problem  # e.g. its tenant is active, its day still open

    for file in files:
        if not cursor.is_new(file.relative, file.mtime_ns):
            continue
        observed = [file.size, file.mtime_ns]
        settled = cursor.unsettled.get(file.relative) == observed or (
            now - file.mtime_ns / 1e9 >= landing.settle_seconds
        )
        if not settled:
            # Still being written, perhaps: look again next tick, and go no further, so the
            # cursor never passes a file that was not taken.
            cursor.unsettled[file.relative] = observed
            waiting += 1
            break
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break
        problem = _folder_problem(file, statuses, days)
        if problem is None:
            day = TenantDay(file.tenant_folder, parse_day_folder(file.day_folder))
            ready.setdefault(day, []).append(file)
        elif file.relative not in cursor.blocked:
            cursor.blocked[file.relative] = problem
            if problem != OPEN_DAY:
                problems.append((file, problem))
        cursor.advance(file.relative, file.mtime_ns)

    if problems:
        _record_problems(postgres, problems)
    # Loaded already exactly as they are now (by `make demo`, a backfill, an earlier
    # cursor): nothing to run for them.
    for day, day_files in list(ready.items()):
        loaded = already_loaded(postgres, [(f.relative, f.size, f.mtime_ns) for f in day_files])
        ready[day] = [f for f in day_files if f.relative not in loaded]
        if not ready[day]:
            del ready[day]
    runs = []
    for day, new_files in sorted(ready.items()):
        # The key names every file of the tenant-day by content: the run rebuilds the slice
        # from all of them, and the same contents never run twice.
        runs.append(
            RunRequest(
                run_key=f"landing:{day.tenant}:{day.date}:{_day_digest(root, day)}",
                partition_key=day.partition_key,
                tags={
                    "tenant": day.tenant,
                    "landing/files": ",".join(
                        sorted(f.relative.rsplit("/", 1)[1] for f in new_files)
                    )[:200],
                },
            )
        )
    missing = sorted({day.tenant for day in ready} - existing_partitions)
    partition_requests = [tenants_partitions.build_add_request(missing)] if missing else []
    if runs or partition_requests:
        return SensorResult(
            run_requests=runs, dynamic_partitions_requests=partition_requests, cursor=cursor.dump()
        )
    reasons = [f"{f.relative}: {r} ({PROBLEM_DETAIL[r]})" for f, r in problems]
    reasons += [f"{r.relative}: {r.reason} ({REFUSAL_DETAIL[r.reason]})" for r in refused]
    if waiting:
        reasons.append(f"{waiting} file(s) still changing; checking again next tick")
    if open_days := sum(reason == OPEN_DAY for reason in cursor.blocked.values()):
        reasons.append(f"{open_days} file(s) wait for their day to end (UTC) to run")
    return SkipReason("; ".join(reasons) or "no new landing files")


@sensor(
    job=tenant_day_pipeline,
    # A renamed file is taken at its second sighting (size and mtime unchanged), so two
    # intervals are most of the landing -> run latency (10-25 s at 10 s, measured in
    # benchmarks/latency.py); a quiet tick is one listing and one indexed query.
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Starts a `tenant_day_pipeline` run for each tenant-day with a new or changed file "
        "under `LANDING_DIR/<tenant>/<YYYY-MM-DD>/`."
    ),
)
def landing_file_sensor(
    context: SensorEvaluationContext, landing: LandingZoneResource, postgres: PostgresResource
):
    cursor = LandingCursor.load(context.cursor)
    result = evaluate_landing(
        landing,
        postgres,
        set(context.instance.get_dynamic_partitions(tenants_partitions.name)),
        cursor,
        time.time(),
    )
    if isinstance(result, SkipReason):
        # Remember what was reported (blocked files) and observed, even on a skip.
        context.update_cursor(cursor.dump())
    elif result.dynamic_partitions_requests:
        check_store_binding(postgres, context.instance)  # never add to another's instance
    return result
