"""landing_file_sensor: which files start runs, when, with what key; and what it refuses."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
from dagster import SensorResult, SkipReason, build_sensor_context

from analytics_platform.partitions import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PLATFORM_START_DATE,
    TenantDay,
    parse_tenant_day,
)
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.sensors.landing import LandingCursor, evaluate_landing, landing_file_sensor
from analytics_platform_tests.events import day_file, tracker_event, write_lines

DAY = dt.date(2026, 11, 5)


@pytest.fixture
def tenants(postgres, new_tenant):
    """Registry rows set by SQL: one active, one suspended, one pending tenant."""
    ids = {
        "active": new_tenant("land"),
        "suspended": new_tenant("land"),
        "pending": new_tenant("land"),
    }
    with postgres.transaction() as conn:
        for status, tenant in ids.items():
            conn.execute(
                "INSERT INTO platform.tenants (tenant_id, display_name, status) "
                "VALUES (%s, %s, %s)",
                (tenant, tenant, status),
            )
    return ids


def landed(landing_dir, tenant, name="a.jsonl", day=DAY, events=("e1",), mtime=None):
    path = write_lines(
        day_file(landing_dir, tenant, day, name),
        [tracker_event(e, "v1", f"{day}T10:00:00Z") for e in events],
    )
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


class Harness:
    """Evaluates the sensor logic like the daemon does, carrying the cursor between ticks."""

    def __init__(self, landing_dir, postgres, settle_seconds=0):
        self.landing = LandingZoneResource(root=str(landing_dir), settle_seconds=settle_seconds)
        self.postgres = postgres
        self.cursor = LandingCursor()
        self.partitions: list[str] = []  # the `tenants` partitions, in the order added

    def tick(self, now=None):
        result = evaluate_landing(
            self.landing, self.postgres, self.partitions, self.cursor, now or time.time()
        )
        self.cursor = LandingCursor.load(self.cursor.dump())  # survives serialization
        return result


def requests(result) -> list:
    return result.run_requests if isinstance(result, SensorResult) else []


def covered(request, registered: list[str]) -> list[TenantDay]:
    """The tenant-days a run request covers: its partition, or every tenant of its range
    in registration order (`registered`, as a partition range spans them)."""
    if request.partition_key is not None:
        return [parse_tenant_day(request.partition_key)]
    start = parse_tenant_day(request.tags[ASSET_PARTITION_RANGE_START_TAG])
    end = parse_tenant_day(request.tags[ASSET_PARTITION_RANGE_END_TAG])
    assert start.date == end.date, "a landing run covers one day"
    tenants = registered[registered.index(start.tenant) : registered.index(end.tenant) + 1]
    return [TenantDay(tenant, start.date) for tenant in tenants]


def quarantined(postgres, source_like):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT tenant_id, partition_date, reason FROM platform.quarantine "
            "WHERE layer = 'landing_file_sensor' AND source LIKE %s ORDER BY source",
            (source_like,),
        ).fetchall()


def test_a_new_file_runs_once_and_a_replaced_one_again(landing_dir, postgres, tenants):
    tenant = tenants["active"]
    harness = Harness(landing_dir, postgres)
    path = landed(landing_dir, tenant, mtime=time.time_ns() - 60_000_000_000)
    first = requests(harness.tick())
    assert [r.partition_key for r in first] == [f"{DAY}|{tenant}"]
    assert not requests(harness.tick())  # nothing new: no run, however often it ticks

    # Touched but unchanged: the daemon sees the same run_key and starts nothing.
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))
    touched = requests(harness.tick())
    assert [r.run_key for r in touched] == [first[0].run_key]

    # Replaced with other content: a new key, so a new run.
    landed(landing_dir, tenant, events=("e1", "e2"), mtime=later + 5_000_000_000)
    replaced = requests(harness.tick())
    assert len(replaced) == 1 and replaced[0].run_key != first[0].run_key


def test_several_files_of_a_tenant_day_make_one_run(landing_dir, postgres, tenants):
    tenant = tenants["active"]
    harness = Harness(landing_dir, postgres)
    for name in ("a.jsonl", "b.csv", "c.jsonl.gz"):
        landed(landing_dir, tenant, name=name)
    other_day = DAY + dt.timedelta(days=1)
    landed(landing_dir, tenant, day=other_day)
    keys = sorted(r.partition_key for r in requests(harness.tick()))
    assert keys == [f"{DAY}|{tenant}", f"{other_day}|{tenant}"]


def test_a_late_file_with_the_same_mtime_is_not_skipped(landing_dir, postgres, tenants):
    tenant = tenants["active"]
    harness = Harness(landing_dir, postgres)
    stamp = time.time_ns() - 10_000_000_000
    landed(landing_dir, tenant, name="a.jsonl", mtime=stamp)
    assert len(requests(harness.tick())) == 1
    # Arrives after that tick, but carries the very same mtime (e.g. set by the producer).
    landed(landing_dir, tenant, name="b.jsonl", mtime=stamp)
    late = requests(harness.tick())
    assert [r.partition_key for r in late] == [f"{DAY}|{tenant}"]


def test_files_still_being_written_wait_for_a_stable_size(landing_dir, postgres, tenants):
    tenant = tenants["active"]
    harness = Harness(landing_dir, postgres, settle_seconds=3600)
    (landing_dir / tenant / str(DAY)).mkdir(parents=True)
    (landing_dir / tenant / str(DAY) / "part.jsonl.tmp").write_text("{}\n")
    path = landed(landing_dir, tenant)
    waiting = harness.tick()
    assert isinstance(waiting, SkipReason) and "still changing" in waiting.skip_message

    with path.open("a") as stream:  # the writer appends more
        stream.write('{"eventId": "e2"}\n')
    assert not requests(harness.tick())
    # Unchanged since the last look: complete. The *.tmp file is never taken.
    done = requests(harness.tick())
    assert [r.partition_key for r in done] == [f"{DAY}|{tenant}"]
    assert "part.jsonl.tmp" not in done[0].tags["landing/files"]


def test_unrunnable_folders_are_reported_once_and_never_loop(landing_dir, postgres, tenants):
    harness = Harness(landing_dir, postgres)
    bad = {
        "unknown_tenant": landed(landing_dir, "nobody_registered_this"),
        "suspended_tenant": landed(landing_dir, tenants["suspended"]),
        "pending": landed(landing_dir, tenants["pending"]),
    }
    not_a_day = landing_dir / tenants["active"] / "yesterday" / "a.jsonl"
    not_a_day.parent.mkdir(parents=True)
    not_a_day.write_text("{}\n")
    invalid_id = landing_dir / "Bad Tenant" / str(DAY) / "a.jsonl"
    invalid_id.parent.mkdir(parents=True)
    invalid_id.write_text("{}\n")

    first = harness.tick()
    assert isinstance(first, SkipReason)
    for fragment in ("unknown_tenant", "suspended_tenant", "bad_folder"):
        assert fragment in first.skip_message
    assert quarantined(postgres, "nobody_registered_this/%") == [
        ("nobody_registered_this", DAY, "unknown_tenant")
    ]
    assert quarantined(postgres, f"{tenants['suspended']}/%") == [
        (tenants["suspended"], DAY, "suspended_tenant")
    ]
    assert quarantined(postgres, f"{tenants['active']}/yesterday/%") == [
        (tenants["active"], None, "bad_folder")
    ]
    assert quarantined(postgres, "Bad Tenant/%") == [("Bad Tenant", None, "bad_folder")]
    assert all(path.exists() for path in bad.values())  # nothing is moved or lost

    again = harness.tick()
    assert isinstance(again, SkipReason) and again.skip_message == "no new landing files"
    assert len(quarantined(postgres, "%")) >= 5
    assert len(quarantined(postgres, f"{tenants['suspended']}/%")) == 1

    # Resumed: the file that waited now runs.
    with postgres.transaction() as conn:
        conn.execute(
            "UPDATE platform.tenants SET status = 'active' WHERE tenant_id = %s",
            (tenants["suspended"],),
        )
    resumed = requests(harness.tick())
    assert [r.partition_key for r in resumed] == [f"{DAY}|{tenants['suspended']}"]


def test_a_day_not_over_yet_waits_and_never_fails_the_tick(landing_dir, postgres, tenants):
    tenant = tenants["active"]
    harness = Harness(landing_dir, postgres)
    # 15:00 on the day after DAY: DAY is a partition, its next day is not over yet.
    now = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(15), dt.timezone.utc)
    landed_at = int((now.timestamp() - 60) * 1e9)
    early = dt.date.fromisoformat(PLATFORM_START_DATE) - dt.timedelta(days=1)
    for day in (DAY, DAY + dt.timedelta(days=1), early):
        landed(landing_dir, tenant, day=day, mtime=landed_at)

    first = harness.tick(now.timestamp())
    assert [r.partition_key for r in requests(first)] == [f"{DAY}|{tenant}"]
    assert quarantined(postgres, f"{tenant}/{DAY + dt.timedelta(days=1)}/%") == []
    assert quarantined(postgres, f"{tenant}/{early}/%") == [(tenant, early, "before_start")]

    quiet = harness.tick(now.timestamp() + 60)
    assert isinstance(quiet, SkipReason)
    assert "1 file(s) wait for their day to end" in quiet.skip_message

    over = harness.tick((now + dt.timedelta(hours=10)).timestamp())  # 01:00 the day after
    assert [r.partition_key for r in requests(over)] == [f"{DAY + dt.timedelta(days=1)}|{tenant}"]
    assert isinstance(harness.tick((now + dt.timedelta(hours=11)).timestamp()), SkipReason)


def test_the_dagster_sensor_requests_runs_and_missing_partitions(
    landing_dir, postgres, tenants, instance
):
    tenant = tenants["active"]
    landed(landing_dir, tenant, mtime=time.time_ns() - 120_000_000_000)
    resources = {"landing": LandingZoneResource(root=str(landing_dir)), "postgres": postgres}
    context = build_sensor_context(instance=instance, resources=resources)
    result = landing_file_sensor(context)
    assert [r.partition_key for r in result.run_requests] == [f"{DAY}|{tenant}"]
    assert result.run_requests[0].tags["tenant"] == tenant
    # The tenant had no partition in this instance yet: the sensor asks for it too.
    assert result.dynamic_partitions_requests[0].partition_keys == [tenant]

    next_context = build_sensor_context(
        instance=instance, resources=resources, cursor=result.cursor
    )
    assert isinstance(landing_file_sensor(next_context), SkipReason)


def test_the_requested_run_loads_every_file_of_the_day_idempotently(
    platform_env, landing_dir, postgres, tenants, instance
):
    from analytics_platform_tests.test_pipeline import run_pipeline

    tenant = tenants["active"]
    landed(landing_dir, tenant, name="morning.jsonl", events=("m1", "m2"))
    landed(landing_dir, tenant, name="evening.jsonl", events=("n1", "n2", "n3"))
    harness = Harness(landing_dir, postgres)
    (request,) = requests(harness.tick())
    instance.add_dynamic_partitions("tenants", [tenant])

    def raw_rows():
        with postgres.connect() as conn:
            return conn.execute(
                "SELECT _source, event_id FROM raw.file_events WHERE tenant_id = %s ORDER BY 1, 2",
                (tenant,),
            ).fetchall()

    for _ in range(2):
        assert run_pipeline(
            instance, partition_key=request.partition_key, tags=request.tags
        ).success
        assert raw_rows() == [
            (f"{tenant}/{DAY}/evening.jsonl", "n1"),
            (f"{tenant}/{DAY}/evening.jsonl", "n2"),
            (f"{tenant}/{DAY}/evening.jsonl", "n3"),
            (f"{tenant}/{DAY}/morning.jsonl", "m1"),
            (f"{tenant}/{DAY}/morning.jsonl", "m2"),
        ]

    # Loaded as they are now: a sensor starting from scratch (a reset cursor, or `dev`
    # after `make demo`) runs nothing for them.
    assert not requests(Harness(landing_dir, postgres).tick())


def test_a_file_moved_in_with_an_old_mtime_still_runs(landing_dir, postgres, tenants, tmp_path):
    """`mv` keeps a file's mtime, and `rsync -t` or `cp -p` a folder's too: the sensor goes by
    ctimes, which only the kernel sets, so files older than everything seen still run."""
    tenant = tenants["active"]
    harness = Harness(landing_dir, postgres)
    landed(landing_dir, tenant, mtime=time.time_ns() - 60_000_000_000)
    assert len(requests(harness.tick())) == 1
    week_ago = time.time_ns() - 7 * 86_400 * 1_000_000_000
    earlier = DAY - dt.timedelta(days=1)
    for day in (DAY, earlier):  # into the folder already seen, and into a new one
        written = write_lines(
            tmp_path / "outside" / f"{day}.jsonl", [tracker_event("m1", "v1", f"{day}T10:00:00Z")]
        )
        os.utime(written, ns=(week_ago, week_ago))
        folder = landing_dir / tenant / str(day)
        folder.mkdir(exist_ok=True)
        written.rename(folder / "moved.jsonl")
        os.utime(folder, ns=(week_ago, week_ago))
    moved = requests(harness.tick())
    assert sorted(r.partition_key for r in moved) == [f"{earlier}|{tenant}", f"{DAY}|{tenant}"]
    assert not requests(harness.tick())


def test_a_days_files_of_several_tenants_run_together_in_registration_order(
    landing_dir, postgres, new_tenant, monkeypatch
):
    tenants = [new_tenant("group") for _ in range(5)]
    with postgres.transaction() as conn:
        for tenant in tenants:
            conn.execute(
                "INSERT INTO platform.tenants (tenant_id, display_name, status) "
                "VALUES (%s, %s, 'active')",
                (tenant, tenant),
            )
    registered = [tenants[i] for i in (3, 0, 4, 1, 2)]  # not the ids' order
    monkeypatch.setenv("LANDING_RUN_MAX_TENANTS", "2")
    other_day = DAY + dt.timedelta(days=1)
    for tenant in tenants:
        landed(landing_dir, tenant, day=other_day)
        if tenant != registered[2]:  # a gap in DAY's tenants
            landed(landing_dir, tenant)
    harness = Harness(landing_dir, postgres)
    harness.partitions = registered
    runs = requests(harness.tick())
    # At most two tenants a run, never spanning a tenant that has nothing to run.
    assert [covered(r, registered) for r in runs] == [
        [TenantDay(t, DAY) for t in registered[0:2]],
        [TenantDay(t, DAY) for t in registered[3:5]],
        [TenantDay(t, other_day) for t in registered[0:2]],
        [TenantDay(t, other_day) for t in registered[2:4]],
        [TenantDay(registered[4], other_day)],
    ]
    assert runs[4].partition_key == f"{other_day}|{registered[4]}"  # one tenant: a plain run
    assert runs[0].tags["landing/tenants"] == "2" and "tenant" not in runs[0].tags

    # The key is a digest of the contents: the same files give the same keys (a reset cursor
    # starts nothing new), one tenant's changed file changes its run's key only.
    fresh = Harness(landing_dir, postgres)
    fresh.partitions = registered
    assert [r.run_key for r in requests(fresh.tick())] == [r.run_key for r in runs]
    landed(landing_dir, registered[1], events=("e1", "e2"))
    again = Harness(landing_dir, postgres)
    again.partitions = registered
    changed = [r.run_key for r in requests(again.tick())]
    assert changed[0] != runs[0].run_key and changed[1:] == [r.run_key for r in runs[1:]]
    assert [covered(r, registered) for r in requests(harness.tick())] == [
        [TenantDay(registered[1], DAY)]  # the running sensor: only what changed
    ]


def test_a_cursor_of_the_earlier_version_keeps_its_reports_and_rescans(
    landing_dir, postgres, tenants, new_tenant
):
    tenant, stranger = tenants["active"], new_tenant("stranger")
    landed(landing_dir, tenant)
    landed(landing_dir, stranger)
    old = {
        "mtime_ns": time.time_ns(),
        "at_mtime": [],
        "unsettled": {},
        "blocked": {f"{stranger}/{DAY}/a.jsonl": "unknown_tenant"},
        "refused": {},
    }
    harness = Harness(landing_dir, postgres)
    harness.cursor = LandingCursor.load(json.dumps(old))
    result = harness.tick()
    # The watermark starts over, so the file below the old one runs; the blocked one is
    # not reported again.
    assert [r.partition_key for r in requests(result)] == [f"{DAY}|{tenant}"]
    assert quarantined(postgres, f"{stranger}/%") == []
