"""`landing_file_sensor`: a run of the tenant-day for every new or changed landing file.

The cursor is the highest file mtime seen plus the files seen at exactly that
mtime, never the wall clock: a file that lands late with an mtime equal to the
newest one seen is still picked up. A file is taken only once it is complete:
its size and mtime were the same at the previous evaluation, or its mtime is at
least `settle_seconds` old (and `*.tmp`/dotfiles are never taken: write, then
rename). A run's `run_key` is a digest of the tenant-day's files' contents, so
an unchanged file (even touched) never runs twice and a replaced one runs again.

Folders the platform cannot run (a tenant that is unknown, suspended or not a
valid id; a day folder that is not a date) start no run: each file there is
reported once, as a skip reason and a `platform.quarantine` record, and
remembered, so it runs as soon as its tenant becomes active.
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

from analytics_platform.ingest.files import is_landing_file
from analytics_platform.ingest.landing_log import already_loaded
from analytics_platform.jobs import tenant_day_pipeline
from analytics_platform.partitions import TenantDay, tenants_partitions
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


@dataclass(frozen=True)
class LandedFile:
    path: Path
    relative: str
    size: int
    mtime_ns: int

    @property
    def tenant_folder(self) -> str:
        return self.relative.split("/", 1)[0]

    @property
    def day_folder(self) -> str:
        return self.relative.split("/")[1]


def landed_files(root: Path) -> list[LandedFile]:
    """Complete-looking files at `<root>/<tenant>/<day>/<file>`, oldest mtime first."""
    found = []
    for path in root.glob("*/*/*"):
        if not is_landing_file(path):
            continue
        stat = path.stat()
        relative = path.relative_to(root).as_posix()
        found.append(LandedFile(path, relative, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: (f.mtime_ns, f.relative))


def content_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_problem(file: LandedFile, statuses: dict[str, str]) -> str | None:
    """Why this file's folder cannot start a run, or None when it can."""
    tenant = file.tenant_folder
    if not is_valid_tenant_id(tenant):
        return "bad_folder"
    try:
        dt.date.fromisoformat(file.day_folder)
    except ValueError:
        return "bad_folder"
    if len(file.day_folder) != 10:
        return "bad_folder"
    status = statuses.get(tenant)
    if status is None or status in ("pending", "deprovisioned"):
        return "unknown_tenant"
    if status == "suspended":
        return "suspended_tenant"
    return None


PROBLEM_DETAIL = {
    "bad_folder": "the folder is not <tenant id>/<YYYY-MM-DD>; move the file to such a folder",
    "unknown_tenant": "no active tenant has this id; register it: analytics-platform tenants add",
    "suspended_tenant": "the tenant is suspended; the file runs when it is resumed",
}


def _record_problems(postgres: PostgresResource, problems: list[tuple[LandedFile, str]]) -> None:
    """One quarantine record per refused file (the file itself stays where it is)."""
    with postgres.transaction() as conn:
        for file, reason in problems:
            day = None
            if reason != "bad_folder":
                day = dt.date.fromisoformat(file.day_folder)
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
    started = time.monotonic()
    ready: dict[TenantDay, list[LandedFile]] = {}
    problems: list[tuple[LandedFile, str]] = []
    waiting = 0
    files = landed_files(root) if root.is_dir() else []
    by_relative = {f.relative: f for f in files}

    # Files refused earlier whose tenant has since become active.
    for relative in list(cursor.blocked):
        file = by_relative.get(relative)
        if file is None:
            del cursor.blocked[relative]
        elif _folder_problem(file, statuses) is None:
            del cursor.blocked[relative]
            day = TenantDay(file.tenant_folder, dt.date.fromisoformat(file.day_folder))
            ready.setdefault(day, []).append(file)

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
        problem = _folder_problem(file, statuses)
        if problem is None:
            day = TenantDay(file.tenant_folder, dt.date.fromisoformat(file.day_folder))
            ready.setdefault(day, []).append(file)
        elif file.relative not in cursor.blocked:
            cursor.blocked[file.relative] = problem
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
        folder = root / day.tenant / day.date.isoformat()
        everything = sorted(p for p in folder.iterdir() if is_landing_file(p))
        digest = hashlib.blake2b(digest_size=16)
        for path in everything:
            digest.update(f"{path.name}\0{content_digest(path)}\0".encode())
        runs.append(
            RunRequest(
                run_key=f"landing:{day.tenant}:{day.date}:{digest.hexdigest()}",
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
    if waiting:
        reasons.append(f"{waiting} file(s) still changing; checking again next tick")
    return SkipReason("; ".join(reasons) or "no new landing files")


@sensor(
    job=tenant_day_pipeline,
    # A renamed file is taken at its second sighting (size and mtime unchanged), so the
    # interval is most of the landing -> run latency; a quiet tick is one listing.
    minimum_interval_seconds=10,
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
