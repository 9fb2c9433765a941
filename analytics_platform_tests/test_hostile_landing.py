"""Hostile landing trees: links out of (and inside) the zone, FIFOs, odd folder names,
truncated and bomb .gz files, lines too long to hold. What a user checks: nothing
from outside LANDING_DIR in any table, every line accounted for, each refusal
reported once, no duplicate, and quarantine rows of bounded size."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest
from dagster import materialize

from analytics_platform.assets.raw import raw_file_events
from analytics_platform.ingest.bounded import OVERSIZED_PREFIX_BYTES, LongLine, line_blocks
from analytics_platform.ingest.landing_tree import (
    RefusedPathError,
    open_in_zone,
    parse_day_folder,
)
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform_tests.events import tracker_event
from analytics_platform_tests.test_landing_sensor import Harness, requests

DAY = dt.date(2026, 11, 5)
LINKED_DAY = DAY + dt.timedelta(days=1)
ODD_DAY_FOLDERS = ("2026-W47-5", "2026-1-5", "20261120", " 2026-11-20", "2026-02-30")
MAX_LINE = 64 << 10
MAX_EXPANDED = 4 << 20


def events(prefix: str, count: int, day: dt.date = DAY) -> list[str]:
    return [
        json.dumps(tracker_event(f"{prefix}-{i}", f"v{i % 3}", f"{day}T10:{i % 60:02d}:00Z"))
        for i in range(count)
    ]


def text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def register(postgres, *tenants: str) -> None:
    with postgres.transaction() as conn:
        for tenant in tenants:
            conn.execute(
                "INSERT INTO platform.tenants (tenant_id, display_name, status) "
                "VALUES (%s, %s, 'active')",
                (tenant, tenant),
            )


class Tree:
    """The hostile tree: what it holds and what a user expects of it."""

    def __init__(self, root: Path, outside: Path, tenant: str, linked_tenant: str, marker: str):
        self.root, self.outside = root, outside
        self.tenant, self.linked_tenant, self.marker = tenant, linked_tenant, marker
        self.day = root / tenant / DAY.isoformat()
        self.good = events("good", 3)
        self.truncated_lines = 2000


@pytest.fixture
def hostile(tmp_path, landing_dir, postgres, new_tenant) -> Tree:
    tenant, linked_tenant = new_tenant("hostile"), new_tenant("linked")
    register(postgres, tenant, linked_tenant)
    marker = f"OUTSIDE-{uuid.uuid4().hex}"
    outside = tmp_path / "outside"
    (outside / "day").mkdir(parents=True)
    (outside / "tenant" / DAY.isoformat()).mkdir(parents=True)
    secret = text([json.dumps(tracker_event(marker, marker, f"{DAY}T10:00:00Z")), marker])
    for path in (
        outside / "secret.jsonl",
        outside / "day" / "secret.jsonl",
        outside / "tenant" / DAY.isoformat() / "secret.jsonl",
    ):
        path.write_bytes(secret)
    tree = Tree(landing_dir, outside, tenant, linked_tenant, marker)
    day = tree.day
    day.mkdir(parents=True)
    (day / "good.jsonl").write_bytes(text([*tree.good, '{"eventId": "broken", ']))
    (day / "empty.jsonl").write_bytes(b"")
    (day / "link_out.jsonl").symlink_to(outside / "secret.jsonl")
    (day / "link_in.jsonl").symlink_to(day / "good.jsonl")  # would load good.jsonl twice
    os.mkfifo(day / "pipe.jsonl")
    whole = gzip.compress(text(events("cut", tree.truncated_lines)))
    (day / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    # A gzip bomb of normal lines: 40 MiB of the same event, past the expanded cap.
    line = text(events("bomb", 1))
    (day / "bomb.jsonl.gz").write_bytes(gzip.compress(line * ((40 << 20) // len(line))))
    (landing_dir / tenant / LINKED_DAY.isoformat()).symlink_to(outside / "day")
    (landing_dir / linked_tenant).symlink_to(outside / "tenant")
    for name in ODD_DAY_FOLDERS:
        folder = landing_dir / tenant / name
        folder.mkdir()
        (folder / "a.jsonl").write_bytes(text(events(f"odd{name.strip()}", 1)))
    old = time.time_ns() - 3_600_000_000_000
    for path in landing_dir.rglob("*"):
        if not path.is_symlink() and not path.is_fifo():
            os.utime(path, ns=(old, old))
    return tree


def landing(root: Path, **settings) -> LandingZoneResource:
    limits = {"max_line_bytes": MAX_LINE, "max_expanded_bytes": MAX_EXPANDED}
    return LandingZoneResource(root=str(root), **{**limits, **settings})


def quarantine(postgres, tenant_like: str, layer: str) -> list[tuple]:
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT source, source_line, reason, detail, length(raw_text) FROM platform.quarantine"
            " WHERE tenant_id LIKE %s AND layer = %s ORDER BY source, source_line",
            (tenant_like, layer),
        ).fetchall()


def outside_bytes_anywhere(postgres, marker: str) -> int:
    """Rows of raw or quarantine holding the outside file's content, in any column."""
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM raw.file_events AS r WHERE r::text LIKE %s)"
            " + (SELECT count(*) FROM platform.quarantine AS q WHERE q::text LIKE %s)",
            (f"%{marker}%", f"%{marker}%"),
        ).fetchone()[0]


def materialize_day(instance, postgres, resource, tenant, day=DAY):
    instance.add_dynamic_partitions("tenants", [tenant])
    return materialize(
        [raw_file_events],
        partition_key=TenantDay(tenant, day).partition_key,
        resources={"postgres": postgres, "landing": resource},
        instance=instance,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2026-11-20", dt.date(2026, 11, 20)),
        *((name, None) for name in ODD_DAY_FOLDERS),
        ("2026-11-20 ", None),
        ("2026-11-20T00", None),
    ],
)
def test_only_exact_calendar_days_are_day_folders(name, expected):
    assert parse_day_folder(name) == expected


def test_opening_refuses_links_and_fifos_without_reading_them(hostile):
    root = hostile.root
    day = f"{hostile.tenant}/{DAY}"
    with open_in_zone(root, f"{day}/good.jsonl") as stream:
        assert stream.read().startswith(b'{"eventId": "good-0"')
    cases = {
        f"{day}/link_out.jsonl": (f"{day}/link_out.jsonl", "symlink"),
        f"{day}/link_in.jsonl": (f"{day}/link_in.jsonl", "symlink"),
        f"{day}/pipe.jsonl": (f"{day}/pipe.jsonl", "not_a_regular_file"),  # and never blocks
        f"{hostile.tenant}/{LINKED_DAY}/secret.jsonl": (
            f"{hostile.tenant}/{LINKED_DAY}",
            "symlink",
        ),
        f"{hostile.linked_tenant}/{DAY}/secret.jsonl": (hostile.linked_tenant, "symlink"),
    }
    for relative, (refused, reason) in cases.items():
        with pytest.raises(RefusedPathError) as raised:
            open_in_zone(root, relative)
        assert (raised.value.relative, raised.value.reason) == (refused, reason)
    with pytest.raises(ValueError, match="inside the landing zone"):
        open_in_zone(root, f"{hostile.tenant}/../../outside/secret.jsonl")


def test_the_sensor_refuses_every_hostile_path_once_and_runs_only_the_real_day(hostile, postgres):
    harness = Harness(hostile.root, postgres)
    first = harness.tick()
    # One run: the real day. None for the linked day, the linked tenant, the odd folders.
    assert [r.partition_key for r in requests(first)] == [f"{DAY}|{hostile.tenant}"]
    day = f"{hostile.tenant}/{DAY}"
    refused = {
        (source, reason)
        for source, _, reason, _, _ in quarantine(postgres, "%", "landing_zone")
        if source.startswith((hostile.tenant, hostile.linked_tenant))
    }
    assert refused == {
        (f"{day}/link_out.jsonl", "symlink"),
        (f"{day}/link_in.jsonl", "symlink"),
        (f"{day}/pipe.jsonl", "not_a_regular_file"),
        (f"{hostile.tenant}/{LINKED_DAY}", "symlink"),
        (hostile.linked_tenant, "symlink"),
    }
    bad_folders = quarantine(postgres, hostile.tenant, "landing_file_sensor")
    assert sorted((s, r) for s, _, r, _, _ in bad_folders) == sorted(
        (f"{hostile.tenant}/{name}/a.jsonl", "bad_folder") for name in ODD_DAY_FOLDERS
    )

    def record_count():
        with postgres.connect() as conn:
            return conn.execute(
                "SELECT count(*) FROM platform.quarantine WHERE tenant_id IN (%s, %s)",
                (hostile.tenant, hostile.linked_tenant),
            ).fetchone()[0]

    recorded = record_count()
    assert recorded == 10
    assert not requests(harness.tick())
    # A sensor starting from scratch (a reset cursor) adds no second record either.
    Harness(hostile.root, postgres).tick()
    assert record_count() == recorded
    assert outside_bytes_anywhere(postgres, hostile.marker) == 0


def test_the_loader_reads_nothing_from_outside_and_accounts_for_every_line(
    hostile, postgres, instance
):
    resource = landing(hostile.root)
    for attempt in range(2):  # a re-run replaces the slice: same rows, no new record
        result = materialize_day(instance, postgres, resource, hostile.tenant)
        assert result.success
        (materialization,) = result.asset_materializations_for_node("raw_file_events")
        meta = {k: v.value for k, v in materialization.metadata.items()}
        (parity,) = [
            c
            for c in result.get_asset_check_evaluations()
            if c.check_name == "rows_read_equal_loaded_plus_quarantined"
        ]
        assert parity.passed
        # good.jsonl: 3 loaded + 1 invalid; the truncated and the bomb file: none of
        # their rows, one record each; the links and the FIFO: refused, counted.
        assert (meta["rows_read"], meta["rows_loaded"], meta["rows_quarantined"]) == (4, 3, 1)
        assert meta["files"] == 4  # good, empty, truncated, bomb
        assert (meta["files_quarantined_whole"], meta["paths_refused"]) == (2, 3)

        with postgres.connect() as conn:
            raw = conn.execute(
                "SELECT _source, event_id FROM raw.file_events WHERE tenant_id = %s ORDER BY 2",
                (hostile.tenant,),
            ).fetchall()
        day = f"{hostile.tenant}/{DAY}"
        assert raw == [(f"{day}/good.jsonl", f"good-{i}") for i in range(3)]  # no duplicate
        records = quarantine(postgres, hostile.tenant, "raw_file_events")
        assert [(s, line, reason) for s, line, reason, _, _ in records] == [
            (f"{day}/bomb.jsonl.gz", 0, "decompression_limit"),
            (f"{day}/good.jsonl", 4, "invalid_json"),
            (f"{day}/truncated.jsonl.gz", 0, "corrupt_file"),
        ]
        truncated_detail = records[2][3]
        read_before = int(truncated_detail.split(" after ")[1].split(" line")[0])
        assert 0 < read_before < hostile.truncated_lines
        assert len(quarantine(postgres, hostile.tenant, "landing_zone")) == 3, attempt
    assert outside_bytes_anywhere(postgres, hostile.marker) == 0

    # The linked tenant's day: its folder is a link, so nothing is read.
    linked = materialize_day(instance, postgres, resource, hostile.linked_tenant)
    (materialization,) = linked.asset_materializations_for_node("raw_file_events")
    assert materialization.metadata["rows_read"].value == 0
    assert materialization.metadata["paths_refused"].value == 1
    assert outside_bytes_anywhere(postgres, hostile.marker) == 0


def test_a_line_too_long_to_hold_is_quarantined_as_a_bounded_prefix(
    landing_dir, postgres, new_tenant
):
    from analytics_platform.ingest.load import load_tenant_day

    tenant = new_tenant("long")
    folder = landing_dir / tenant / DAY.isoformat()
    folder.mkdir(parents=True)
    long_line = b'{"eventId": "' + b"x" * (8 << 20) + b'"}'
    after = events("after", 2)
    (folder / "plain.jsonl").write_bytes(text(after[:1]) + long_line + b"\n" + text(after[1:]))
    (folder / "one_line.jsonl.gz").write_bytes(gzip.compress(long_line))
    header = "event_id,event_type,occurred_at,visitor_id\n"
    csv_rows = f"c1,page_view,{DAY}T10:00:00.000Z,v1\n"
    (folder / "long_first.csv").write_bytes(long_line + b"\n" + (header + csv_rows).encode())
    resource = landing(landing_dir, max_expanded_bytes=64 << 20)  # the cap is not tested here
    with postgres.transaction() as conn:
        report = load_tenant_day(postgres, conn, resource, TenantDay(tenant, DAY), "r")
    assert (report.rows_read, report.rows_loaded, report.rows_quarantined) == (6, 3, 3)
    records = quarantine(postgres, tenant, "raw_file_events")
    assert [(s.rsplit("/", 1)[1], line, reason) for s, line, reason, _, _ in records] == [
        ("long_first.csv", 1, "oversized_line"),
        ("one_line.jsonl.gz", 1, "oversized_line"),
        ("plain.jsonl", 2, "oversized_line"),
    ]
    digest = hashlib.sha256(long_line).hexdigest()
    for _, _, _, detail, stored_chars in records:
        assert stored_chars == OVERSIZED_PREFIX_BYTES  # not 8 MiB
        assert f"line is {len(long_line)} bytes" in detail and digest in detail


class EndlessLine(io.RawIOBase):
    """`size` bytes of one line, produced as read and never held: a stream no buffer fits."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b"a" * n
        self.left -= n
        return n


def test_reading_a_huge_line_holds_no_more_than_the_limit():
    size, block, limit = 256 << 20, 1 << 20, 2 << 20
    stream = io.BufferedReader(EndlessLine(size), buffer_size=1 << 16)
    tracemalloc.start()
    try:
        pieces = list(line_blocks(stream, 1, limit, block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (line,) = pieces
    assert isinstance(line, LongLine) and line.length == size
    assert peak < 2 * (block + limit) + (1 << 20)  # 256 MiB streamed through a few MiB


def test_a_file_appended_while_the_sensor_looks_is_taken_whole(landing_dir, postgres, new_tenant):
    from analytics_platform.ingest.load import load_tenant_day

    tenant = new_tenant("append")
    register(postgres, tenant)
    harness = Harness(landing_dir, postgres, settle_seconds=3600)
    path = landing_dir / tenant / DAY.isoformat() / "growing.jsonl"
    path.parent.mkdir(parents=True)
    lines = events("grow", 3)
    path.write_bytes(text(lines[:2]))
    assert not requests(harness.tick())  # first sight: maybe still being written
    with path.open("ab") as stream:
        stream.write(text(lines[2:]))
    assert not requests(harness.tick())  # it changed since: still not taken
    (request,) = requests(harness.tick())  # unchanged since the last look: complete
    assert request.partition_key == f"{DAY}|{tenant}"
    with postgres.transaction() as conn:
        report = load_tenant_day(postgres, conn, landing(landing_dir), TenantDay(tenant, DAY), "r")
    assert (report.rows_read, report.rows_loaded) == (3, 3)


def test_a_file_breaking_off_in_worker_processes_leaves_them_in_step(
    landing_dir, postgres, new_tenant, monkeypatch
):
    """Blocks in the workers' hands when a .gz breaks off are drained: the next file of the
    day, converted by the same workers, loads whole and in order."""
    import analytics_platform.ingest.load as load

    monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(load, "BLOCK_BYTES", 4096)
    tenant = new_tenant("workers")
    folder = landing_dir / tenant / DAY.isoformat()
    folder.mkdir(parents=True)
    whole = gzip.compress(text(events("cut", 5000)), compresslevel=1)
    (folder / "a_truncated.jsonl.gz").write_bytes(whole[: len(whole) * 3 // 4])
    (folder / "b_good.jsonl").write_bytes(text(events("good", 500)))
    resource = landing(landing_dir, parse_processes=2)
    with postgres.transaction() as conn:
        report = load.load_tenant_day(postgres, conn, resource, TenantDay(tenant, DAY), "r")
    assert [f.fault for f in report.files] == ["corrupt_file", None]
    assert (report.rows_read, report.rows_loaded) == (500, 500)
    with postgres.connect() as conn:
        lines = conn.execute(
            "SELECT _source_line, event_id FROM raw.file_events WHERE tenant_id = %s "
            "ORDER BY _source_line",
            (tenant,),
        ).fetchall()
    assert lines == [(i + 1, f"good-{i}") for i in range(500)]
    assert [r[2] for r in quarantine(postgres, tenant, "raw_file_events")] == ["corrupt_file"]
