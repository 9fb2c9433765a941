"""`landing_file_sensor`: runs for the tenant-days with new or changed landing files.

A tick watches only what can change. It lists the day folders (one `lstat` each,
no file listed) and looks into a folder when its ctime moved (a file created,
renamed in or removed there), when its mtime is recent (a file written in place),
when it holds an unsettled file, when its day has just ended, or when its tenant
has just become active. The cursor is a ctime watermark plus what changed just
before it: ctimes are set by the kernel only, so a file moved in with an old
mtime (`mv`, `cp -p`, `rsync -t`) is still taken, and the cursor stays small
however many files the zone holds. A file is taken only once it is complete:
its size and mtime were the same at the previous evaluation, or its mtime is at
least `settle_seconds` old (and `*.tmp`/dotfiles are never taken: write, then
rename); its tenant-day waits for it.

A day's ready tenants run together, up to `LANDING_RUN_MAX_TENANTS` contiguous in
registration order per run (a partition range spans every tenant between its
ends); `split_failed_runs` halves a run a bad tenant failed. A run's `run_key` is
a digest of its tenant-days' files' contents, so unchanged files (even touched)
never run twice and a replaced one runs again.

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
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
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
    FolderListing,
    LandingEntry,
    LandingScan,
    Refusal,
    RefusedPathError,
    list_day_folders,
    open_in_zone,
    parse_day_folder,
    scan_day_folder,
    scan_folder,
)
from analytics_platform.ingest.refusals import record_refusals
from analytics_platform.jobs import tenant_day_pipeline
from analytics_platform.partitions import (
    Rectangle,
    TenantDay,
    partitioned_days,
    tenants_partitions,
)
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.settings import landing_run_max_tenants
from analytics_platform.tenants.ids import is_valid_tenant_id
from analytics_platform.tenants.registry import list_tenants
from analytics_platform.tenants.store_binding import check_store_binding

LAYER = "landing_file_sensor"
# Scanning changed folders is a tick's cost when many changed (the first tick, or after a
# reset cursor: every folder is new): stop after this long and go on at the next tick,
# well within the 60 s Dagster gives a sensor evaluation (the listing comes on top).
TICK_BUDGET_SECONDS = 20.0
# A file rewritten in place changes no folder, so files are also looked at while their
# folder's mtime is this recent (a writer appending to a file it created, say).
WATCH_IN_PLACE_SECONDS = 86_400
# What changes this close to a tick's start may still be landing while the tick lists
# (and file systems stamp coarsely): it is looked at again at the next tick.
CLOCK_SLACK_NS = 2_000_000_000
# The tag saying how many tenants a run of several covers (its range tags name the ends).
TENANTS_TAG = "landing/tenants"


@dataclass
class LandingCursor:
    # Every change (a day folder's or a file's ctime) up to this has been seen.
    seen_ns: int = 0
    # relative path -> ctime of the folders and files seen with a ctime after seen_ns
    above: dict[str, int] = field(default_factory=dict)
    # [ctime_ns, relative] of the last changed folder a tick cut short got to
    resume: list | None = None
    # the newest daily partition at the last tick: a day ending makes its folders run
    last_day: str | None = None
    # relative path -> [size, mtime_ns] of files seen still changing at the last tick
    unsettled: dict[str, list[int]] = field(default_factory=dict)
    # relative path -> reason, for files whose folder cannot run yet (open days excluded)
    blocked: dict[str, str] = field(default_factory=dict)
    # relative path -> reason, for symlinks and special files (already reported)
    refused: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> "LandingCursor":
        """The stored cursor; one of an earlier version (an mtime watermark) keeps what it
        reported and starts the watermark over, so every folder is looked at once."""
        stored = json.loads(raw) if raw else {}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in names})

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def is_new(self, relative: str, ctime_ns: int) -> bool:
        return ctime_ns > self.seen_ns and self.above.get(relative) != ctime_ns


LandedFile = LandingEntry  # a regular landing file, as lstat saw it


def _folder_of(relative: str) -> str:
    return relative.rsplit("/", 1)[0]


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
    relative: str, statuses: dict[str, str], days: tuple[dt.date, dt.date | None]
) -> str | None:
    """Why the folder of this path (`<tenant>/<day>[/<file>]`) cannot start a run, or None."""
    tenant, day_folder = relative.split("/")[:2]
    day = parse_day_folder(day_folder)
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


@dataclass
class Look:
    """What a tick looks at: the folders it scanned, and those whose every file is taken
    whatever its ctime (a day that just ended, a folder whose tenant became active)."""

    scans: dict[str, LandingScan] = field(default_factory=dict)
    take_all: set[str] = field(default_factory=set)
    cut_short: bool = False

    @property
    def files(self) -> list[LandedFile]:
        return [file for scan in self.scans.values() for file in scan.files]

    def scan(self, root: Path, relative: str) -> None:
        if relative not in self.scans:
            self.scans[relative] = scan_folder(root, relative)


def _unblocked_folders(
    cursor: LandingCursor, statuses: dict[str, str], days, present: set[str]
) -> set[str]:
    """The folders of blocked files that can run now; forgets files whose folder is gone and
    files now only waiting for their day (a day's end takes those)."""
    runnable = set()
    for relative in list(cursor.blocked):
        problem = _folder_problem(relative, statuses, days)
        if _folder_of(relative) not in present or problem in (None, OPEN_DAY):
            del cursor.blocked[relative]
            if problem is None and _folder_of(relative) in present:
                runnable.add(_folder_of(relative))
        else:
            cursor.blocked[relative] = problem  # e.g. its tenant is known now, but suspended
    return runnable


def _ended_day_folders(
    cursor: LandingCursor, listing: FolderListing, days: tuple[dt.date, dt.date | None]
) -> set[str]:
    """The folders of the days that ended since the last tick: their files waited unreported."""
    last = days[1]
    if cursor.last_day is None or last is None or last <= dt.date.fromisoformat(cursor.last_day):
        return set()
    since = dt.date.fromisoformat(cursor.last_day)
    return {
        f.relative
        for f in listing.folders
        if (day := parse_day_folder(f.day_folder)) is not None and since < day <= last
    }


def _look(
    root: Path, listing: FolderListing, cursor: LandingCursor, take_all: set[str], now: float
) -> Look:
    """Scan the folders that can hold something new: those whose ctime moved (a file created,
    renamed in or removed), those recent enough to be written in place, those of unsettled
    files and `take_all`. Changed folders go oldest first, within the tick budget."""
    started = time.monotonic()
    look = Look(take_all=take_all)
    recent = int((now - WATCH_IN_PLACE_SECONDS) * 1e9)
    watched = take_all | {_folder_of(relative) for relative in cursor.unsettled}
    watched |= {f.relative for f in listing.folders if f.mtime_ns >= recent}
    for relative in sorted(watched & listing.paths):
        look.scan(root, relative)
    resume = tuple(cursor.resume) if cursor.resume else None
    changed = sorted(
        (f.ctime_ns, f.relative)
        for f in listing.folders
        if cursor.is_new(f.relative, f.ctime_ns)
        and (resume is None or (f.ctime_ns, f.relative) > resume)
    )
    for key in changed:
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            look.cut_short = True
            break
        look.scan(root, key[1])
        cursor.resume = list(key)
    return look


def _advance(cursor: LandingCursor, listing: FolderListing, look: Look, started_ns: int) -> None:
    """Move the watermark to just before the tick began: everything that changed before
    then was in a folder this tick scanned (or, when cut short, will scan next)."""
    if look.cut_short:
        return
    cursor.resume = None
    seen = cursor.seen_ns = max(cursor.seen_ns, started_ns - CLOCK_SLACK_NS)
    files = look.files
    scanned = {f.relative for f in files}
    above = {
        k: v
        for k, v in cursor.above.items()
        if v > seen and k not in listing.paths and k not in scanned
    }
    above.update({f.relative: f.ctime_ns for f in listing.folders if f.ctime_ns > seen})
    above.update({f.relative: f.ctime_ns for f in files if f.ctime_ns > seen})
    cursor.above = above


def _newly_refused(
    postgres: PostgresResource, listing: FolderListing, look: Look, cursor: LandingCursor
) -> list[Refusal]:
    """The refused paths not reported at an earlier tick, recorded now. The cursor then
    remembers the paths refused now (one that goes and comes back is new again): all
    tenant and day entries, the files of the folders scanned, and the files remembered
    in the folders not scanned."""
    found = sorted(
        [*listing.refused, *(r for scan in look.scans.values() for r in scan.refused)],
        key=lambda r: r.relative,
    )
    new = [r for r in found if cursor.refused.get(r.relative) != r.reason]
    record_refusals(postgres, new)
    kept = {
        relative: reason
        for relative, reason in cursor.refused.items()
        if relative.count("/") == 2
        and _folder_of(relative) in listing.paths
        and _folder_of(relative) not in look.scans
    }
    cursor.refused = {**kept, **{r.relative: r.reason for r in found}}
    return new


@dataclass
class Taken:
    """The files a tick takes, by tenant-day, and what it reports."""

    ready: dict[TenantDay, list[LandedFile]] = field(default_factory=dict)
    problems: list[tuple[LandedFile, str]] = field(default_factory=list)
    waiting: int = 0
    open_day_files: int = 0


def _take(
    look: Look, cursor: LandingCursor, statuses: dict[str, str], days, now: float, settle: int
) -> Taken:
    """Judge the new files of the scanned folders: settled, and in a folder that can run."""
    taken = Taken()
    files = look.files
    present = {f.relative for f in files}
    cursor.unsettled = {k: v for k, v in cursor.unsettled.items() if k in present}
    cursor.blocked = {
        k: v for k, v in cursor.blocked.items() if _folder_of(k) not in look.scans or k in present
    }
    problems = {folder: _folder_problem(folder, statuses, days) for folder in look.scans}
    held: set[str] = set()
    for file in files:
        folder = _folder_of(file.relative)
        problem = problems[folder]
        taken.open_day_files += problem == OPEN_DAY
        if not (
            cursor.is_new(file.relative, file.ctime_ns)
            or folder in look.take_all
            or file.relative in cursor.unsettled
        ):
            continue
        observed = [file.size, file.mtime_ns]
        if cursor.unsettled.get(file.relative) != observed and now - file.mtime_ns / 1e9 < settle:
            # Still being written, perhaps: look again next tick; its day waits for it.
            cursor.unsettled[file.relative] = observed
            taken.waiting += 1
            held.add(folder)
            continue
        cursor.unsettled.pop(file.relative, None)
        if problem is None:
            day = TenantDay(file.tenant_folder, parse_day_folder(file.day_folder))
            taken.ready.setdefault(day, []).append(file)
        elif problem != OPEN_DAY and file.relative not in cursor.blocked:
            cursor.blocked[file.relative] = problem
            taken.problems.append((file, problem))
    for day in list(taken.ready):
        if f"{day.tenant}/{day.date.isoformat()}" in held:
            del taken.ready[day]
    return taken


def _drop_loaded(postgres: PostgresResource, ready: dict[TenantDay, list[LandedFile]]) -> None:
    """Forget files loaded already exactly as they are now (by `make demo`, a backfill, an
    earlier cursor): one query for the whole tick."""
    versions = [(f.relative, f.size, f.mtime_ns) for files in ready.values() for f in files]
    loaded = already_loaded(postgres, versions)
    for day, day_files in list(ready.items()):
        ready[day] = [f for f in day_files if f.relative not in loaded]
        if not ready[day]:
            del ready[day]


def run_groups(
    days: Sequence[TenantDay], registered: Sequence[str], max_tenants: int
) -> list[list[TenantDay]]:
    """The ready tenant-days as runs: one date each, tenants contiguous in registration
    order (a partition range spans every tenant between its ends), at most `max_tenants`."""
    position = {tenant: index for index, tenant in enumerate(registered)}
    groups: list[list[TenantDay]] = []
    for day in sorted(days, key=lambda d: (d.date, position[d.tenant])):
        group = groups[-1] if groups else None
        if (
            group is None
            or group[-1].date != day.date
            or position[group[-1].tenant] + 1 != position[day.tenant]
            or len(group) >= max_tenants
        ):
            groups.append([day])
        else:
            group.append(day)
    return groups


def _run_request(
    root: Path, group: list[TenantDay], new_files: dict[TenantDay, list[LandedFile]]
) -> RunRequest:
    """One run for the group. Its key names every file of its tenant-days by content: the
    run rebuilds each slice from all of them, and the same contents never run twice."""
    names = sorted(f.relative.rsplit("/", 1)[1] for day in group for f in new_files[day])
    first, last = group[0], group[-1]
    rectangle = Rectangle(tuple(day.tenant for day in group), first.date, first.date)
    tags = {**rectangle.tags(), "landing/files": ",".join(names)[:200]}
    if len(group) == 1:
        return RunRequest(
            run_key=f"landing:{first.tenant}:{first.date}:{_day_digest(root, first)}",
            partition_key=rectangle.partition_key(),
            tags={"tenant": first.tenant, **tags},
        )
    digest = hashlib.blake2b(digest_size=16)
    for day in group:
        digest.update(f"{day.tenant}\0{_day_digest(root, day)}\0".encode())
    return RunRequest(
        run_key=f"landing:{first.date}:{first.tenant}..{last.tenant}:{digest.hexdigest()}",
        tags={**tags, TENANTS_TAG: str(len(group))},
    )


def evaluate_landing(
    landing: LandingZoneResource,
    postgres: PostgresResource,
    registered: Sequence[str],
    cursor: LandingCursor,
    now: float,
) -> SensorResult | SkipReason:
    """The sensor's decision, as a plain function of the files, the registry and the cursor.

    `registered` is the `tenants` partitions in the order they were added, which is how a
    partition range spans tenants.
    """
    started_ns = time.time_ns()
    root = Path(landing.root)
    statuses = {t.tenant_id: t.status for t in list_tenants(postgres)}
    days = partitioned_days(dt.datetime.fromtimestamp(now, dt.timezone.utc))
    listing = list_day_folders(root) if root.is_dir() else FolderListing([], [])
    take_all = _unblocked_folders(cursor, statuses, days, listing.paths)
    take_all |= _ended_day_folders(cursor, listing, days)
    look = _look(root, listing, cursor, take_all, now)
    refused = _newly_refused(postgres, listing, look, cursor)
    taken = _take(look, cursor, statuses, days, now, landing.settle_seconds)
    _advance(cursor, listing, look, started_ns)
    cursor.last_day = days[1].isoformat() if days[1] else None

    if taken.problems:
        _record_problems(postgres, taken.problems)
    ready = taken.ready
    _drop_loaded(postgres, ready)
    missing = sorted({day.tenant for day in ready} - set(registered))
    groups = run_groups(list(ready), [*registered, *missing], landing_run_max_tenants())
    runs = [_run_request(root, group, ready) for group in groups]
    partition_requests = [tenants_partitions.build_add_request(missing)] if missing else []
    if runs or partition_requests:
        return SensorResult(
            run_requests=runs, dynamic_partitions_requests=partition_requests, cursor=cursor.dump()
        )
    reasons = [f"{f.relative}: {r} ({PROBLEM_DETAIL[r]})" for f, r in taken.problems]
    reasons += [f"{r.relative}: {r.reason} ({REFUSAL_DETAIL[r.reason]})" for r in refused]
    if taken.waiting:
        reasons.append(f"{taken.waiting} file(s) still changing; checking again next tick")
    if taken.open_day_files:
        reasons.append(f"{taken.open_day_files} file(s) wait for their day to end (UTC) to run")
    if look.cut_short:
        reasons.append("more folders changed than one tick scans; going on next tick")
    return SkipReason("; ".join(reasons) or "no new landing files")


@sensor(
    job=tenant_day_pipeline,
    # A renamed file is taken at its second sighting (size and mtime unchanged), so two
    # intervals are most of the landing -> run latency (10-25 s at 10 s, measured in
    # benchmarks/latency.py); a quiet tick is one listing of the day folders and one
    # indexed query (benchmarks/scale_sensor.py).
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Starts `tenant_day_pipeline` runs for the tenant-days with a new or changed file "
        "under `LANDING_DIR/<tenant>/<YYYY-MM-DD>/`: a day's tenants together, up to "
        "`LANDING_RUN_MAX_TENANTS` a run."
    ),
)
def landing_file_sensor(
    context: SensorEvaluationContext, landing: LandingZoneResource, postgres: PostgresResource
):
    cursor = LandingCursor.load(context.cursor)
    result = evaluate_landing(
        landing,
        postgres,
        context.instance.get_dynamic_partitions(tenants_partitions.name),
        cursor,
        time.time(),
    )
    if isinstance(result, SkipReason):
        # Remember what was reported (blocked files) and observed, even on a skip.
        context.update_cursor(cursor.dump())
    elif result.dynamic_partitions_requests:
        check_store_binding(postgres, context.instance)  # never add to another's instance
    return result
