"""The collector's parts without HTTP: segments on disk, recovery, bodies, days, rate limit."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from analytics_platform.ingest.landing_tree import scan_landing
from analytics_platform.service.batches import Refused, landing_day, landing_lines, parse_batch
from analytics_platform.service.body import read_body
from analytics_platform.service.landing_io import JOURNALS
from analytics_platform.service.rate_limit import TenantRateLimit
from analytics_platform.service.recovery import recover_abandoned
from analytics_platform.service.segments import (
    MAX_OPEN_SEGMENTS,
    LandingUnavailable,
    SegmentWriter,
    WriteRequest,
)
from analytics_platform.settings import SettingsError, collector_settings
from analytics_platform_tests.collector_server import tmpfs

START = dt.date(2026, 1, 1)
RECEIVED = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    """A monotonic clock the test moves by hand (segments close by age)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(*ids: str) -> bytes:
    return b"".join(b'{"eventId":"' + i.encode() + b'"}\n' for i in ids)


def landed(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file the landing sensor would list."""
    return {entry.relative: entry.path.read_bytes() for entry in scan_landing(root).files}


def tmp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.tmp") if JOURNALS not in p.parts)


def test_segments_stay_invisible_until_closed_by_size(tmp_path: Path):
    writer = SegmentWriter(tmp_path, max_age_seconds=3600, max_bytes=40)
    errors = writer.commit(
        [
            WriteRequest("acme", {"2026-11-01": lines("a1")}),
            WriteRequest("acme", {"2026-11-01": lines("a2"), "2026-11-02": lines("b1")}),
        ]
    )
    assert errors == [None, None]
    assert landed(tmp_path) == {}, "a segment still open must be a *.tmp the sensor ignores"
    assert len(tmp_files(tmp_path)) == 2
    writer.seal_due()  # 2026-11-01 holds 36 bytes: still under 40
    assert landed(tmp_path) == {}
    writer.commit([WriteRequest("acme", {"2026-11-01": lines("a3")})])
    writer.seal_due()
    files = landed(tmp_path)
    assert list(files.values()) == [lines("a1", "a2", "a3")]
    (relative,) = files
    assert relative.startswith(f"acme/2026-11-01/collector-{writer.instance}-")
    assert relative.endswith(".jsonl")
    writer.close()  # closes the 2026-11-02 segment too, and removes the journal
    assert sorted(landed(tmp_path).values()) == sorted([lines("a1", "a2", "a3"), lines("b1")])
    assert tmp_files(tmp_path) == [] and list((tmp_path / JOURNALS).iterdir()) == []


def test_a_segment_closes_by_age_and_the_next_write_opens_another(tmp_path: Path):
    clock = Clock()
    writer = SegmentWriter(tmp_path, max_age_seconds=5, max_bytes=1 << 20, clock=clock)
    writer.commit([WriteRequest("acme", {"2026-11-01": lines("a1")})])
    clock.now += 4.9
    writer.seal_due()
    assert landed(tmp_path) == {}
    clock.now += 0.2
    writer.seal_due()
    assert list(landed(tmp_path).values()) == [lines("a1")]
    writer.commit([WriteRequest("acme", {"2026-11-01": lines("a2")})])
    writer.close()
    assert sorted(landed(tmp_path).values()) == [lines("a1"), lines("a2")]


DEAD_COLLECTOR = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from analytics_platform.service.segments import SegmentWriter, WriteRequest
    writer = SegmentWriter(Path(sys.argv[1]), max_age_seconds=3600, max_bytes=1 << 20)
    writer.commit([WriteRequest("acme", {"2026-11-01": b'{"eventId":"d1"}\\n'})])
    writer.commit([WriteRequest("beta", {"2026-11-02": b'{"eventId":"d2"}\\n'})])
    print(writer.instance)
    os._exit(0)  # dies without closing anything, as a SIGKILL would leave it
    """
)


def test_recovery_closes_only_dead_collectors_segments_and_cuts_torn_lines(tmp_path: Path):
    live = SegmentWriter(tmp_path, max_age_seconds=3600, max_bytes=1 << 20)
    live.commit([WriteRequest("acme", {"2026-11-01": lines("live1")})])
    dead = subprocess.run(
        [sys.executable, "-c", DEAD_COLLECTOR, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    dead_tmps = [p for p in tmp_files(tmp_path) if dead in p.name]
    assert len(dead_tmps) == 2
    with open(dead_tmps[0], "ab") as torn:  # a write the kill interrupted mid-line
        torn.write(b'{"eventId":"never-acknow')

    sealed = recover_abandoned(tmp_path, own_journal=live.journal)

    assert sorted(p.name for p in sealed) == sorted(p.name.removesuffix(".tmp") for p in dead_tmps)
    contents = sorted(landed(tmp_path).values())
    assert contents == sorted([lines("d1"), lines("d2")]), "torn line cut, whole lines kept"
    live_tmps = tmp_files(tmp_path)
    assert len(live_tmps) == 1 and live.instance in live_tmps[0].name, "a live one is untouched"
    assert not (tmp_path / JOURNALS / f"{dead}.lock").exists()
    assert live.journal.exists()
    # A second recovery (another collector starting) finds nothing more to do.
    assert recover_abandoned(tmp_path) == []
    live.close()
    assert lines("live1") in landed(tmp_path).values()


def test_two_writers_on_one_zone_never_share_a_name(tmp_path: Path):
    first = SegmentWriter(tmp_path, max_age_seconds=3600, max_bytes=1 << 20)
    second = SegmentWriter(tmp_path, max_age_seconds=3600, max_bytes=1 << 20)
    assert first.instance != second.instance
    for writer, event in ((first, "f1"), (second, "s1")):
        writer.commit([WriteRequest("acme", {"2026-11-01": lines(event)})])
    first.close()
    second.close()
    assert sorted(landed(tmp_path).values()) == [lines("f1"), lines("s1")]


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KiB tmpfs as the landing zone, so the disk fills up."""
    with tmpfs(tmp_path / "tiny", "64k") as mount:
        yield mount


def test_a_full_disk_refuses_the_request_and_keeps_what_was_acknowledged(tiny_disk: Path):
    writer = SegmentWriter(tiny_disk, max_age_seconds=3600, max_bytes=1 << 30)
    chunk = b'{"eventId":"x","pad":"' + b"p" * 4000 + b'"}\n'
    acknowledged, refused = [], None
    for number in range(64):
        lines_ = chunk.replace(b'"x"', f'"e{number}"'.encode())
        (error,) = writer.commit([WriteRequest("acme", {"2026-11-01": lines_})])
        if error is not None:
            refused = error
            break
        acknowledged.append(lines_)
    assert isinstance(refused, LandingUnavailable) and acknowledged
    writer.close()
    (content,) = landed(tiny_disk).values()
    assert content == b"".join(acknowledged), "the refused request left no byte behind"


# --------------------------------------------------------------------------- bodies


def test_body_shapes_all_give_the_events_and_the_key():
    event = {"eventId": "e1", "eventType": "page_view"}
    array = parse_batch(json.dumps([event, {**event, "eventId": "e2"}]).encode(), max_events=10)
    assert [e["eventId"] for e in array.events] == ["e1", "e2"] and array.write_key is None
    ndjson = parse_batch(b'{"eventId":"e1"}\n\n{"eventId":"e2"}\r\n', max_events=10)
    assert [e["eventId"] for e in ndjson.events] == ["e1", "e2"]
    envelope = parse_batch(b'{"writeKey":"k1","events":[{"eventId":"e1"}]}', max_events=10)
    assert envelope.write_key == "k1" and envelope.events == [{"eventId": "e1"}]
    inline = parse_batch(b'{"eventId":"e1","writeKey":"k2"}', max_events=10, single=True)
    assert inline.write_key == "k2" and inline.events == [{"eventId": "e1"}], "key removed"


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        (b"", "empty_batch", ""),
        (b"[]", "empty_batch", ""),
        (b'{"eventId":"e1"}\n{"eventId":', "invalid_json", "line 2"),
        (b'[{"eventId":"e1"},', "invalid_json", "array"),
        (b'[{"eventId":"e1"}, 7]', "not_an_object", "event 1"),
        (b'{"eventId":"e1"}\n"text"\n', "not_an_object", "line 2"),
        (b'[{"writeKey":"a"},{"writeKey":"b"}]', "conflicting_write_keys", ""),
        (b"[" + b"{}," * 10 + b"{}]", "too_many_events", "11 events"),
    ],
)
def test_bad_bodies_are_refused_naming_the_place(body: bytes, code: str, names: str):
    with pytest.raises(Refused) as refused:
        parse_batch(body, max_events=10)
    assert refused.value.code == code
    assert names in refused.value.message


def test_collect_takes_exactly_one_event():
    with pytest.raises(Refused, match="not_an_object"):
        parse_batch(b'[{"eventId":"e1"}]', max_events=10, single=True)


async def _chunks(data: bytes, size: int = 16384):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"[" + b" " * (200 << 20) + b"]", compresslevel=9)  # 200 MiB inside
    assert len(bomb) < 1 << 20
    headers = {"content-encoding": "gzip"}
    tracemalloc.start()
    with pytest.raises(Refused) as refused:
        asyncio.run(read_body(headers, _chunks(bomb), max_bytes=1 << 20))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert refused.value.status == 413 and refused.value.code == "body_too_large"
    assert peak < 8 << 20, f"inflating held {peak} bytes"
    ok = asyncio.run(read_body(headers, _chunks(gzip.compress(b"[{}]")), max_bytes=1 << 20))
    assert ok == b"[{}]"


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({"content-encoding": "br"}, b"[]", "unsupported_encoding"),
        ({"content-encoding": "gzip"}, b"not gzip at all", "invalid_gzip"),
        ({"content-encoding": "gzip"}, gzip.compress(b"[{}]", mtime=0)[:-6], "invalid_gzip"),
        ({"content-length": str(2 << 20)}, b"[]", "body_too_large"),
        ({}, b"[" + b" " * (1 << 20) + b"]", "body_too_large"),
    ],
)
def test_bodies_refused_before_parsing(headers: dict, body: bytes, code: str):
    with pytest.raises(Refused) as refused:
        asyncio.run(read_body(headers, _chunks(body), max_bytes=1 << 20))
    assert refused.value.code == code


# --------------------------------------------------------------------------- days


@pytest.mark.parametrize(
    ("event", "day"),
    [
        ({"timestamp": "2026-11-02T10:00:00Z"}, "2026-11-02"),
        ({"occurred_at": "2026-11-02T23:30:00-05:00"}, "2026-11-03"),  # the UTC day
        ({"occurredAt": 1793700000000}, "2026-11-03"),  # epoch ms: 10:00 UTC
        ({"timestamp": "2026-11-21T01:00:00Z"}, "2026-11-21"),  # a fast clock: tomorrow
        ({}, "2026-11-20"),  # none: the receive day, where the loader quarantines it
        ({"timestamp": "yesterday"}, "2026-11-20"),
        ({"timestamp": "2025-12-31T23:00:00Z"}, "2026-11-20"),  # before PLATFORM_START_DATE
        ({"timestamp": "2027-03-01T00:00:00Z"}, "2026-11-20"),  # far future
    ],
)
def test_an_event_lands_on_its_utc_day_or_the_receive_day(event: dict, day: str):
    assert landing_day(event, RECEIVED.date(), START).isoformat() == day


def test_landed_lines_carry_the_receive_time_and_split_by_day():
    events = [
        {"eventId": "a", "timestamp": "2026-11-02T10:00:00Z", "receivedAt": "forged"},
        {"eventId": "b", "timestamp": "2026-11-03T10:00:00Z", "n": 10**30},  # json-only int
        {"eventId": "c", "timestamp": "2026-11-02T11:00:00Z"},
    ]
    by_day = landing_lines(events, RECEIVED, START)
    assert sorted(by_day) == ["2026-11-02", "2026-11-03"]
    day2 = [json.loads(line) for line in by_day["2026-11-02"].splitlines()]
    assert [e["eventId"] for e in day2] == ["a", "c"]
    assert {e["receivedAt"] for e in day2} == {"2026-11-20T12:00:00.000Z"}
    assert json.loads(by_day["2026-11-03"])["n"] == 10**30
    assert all(chunk.endswith(b"\n") for chunk in by_day.values())


# --------------------------------------------------------------------------- limits


def test_the_rate_limit_refuses_a_flood_and_says_when_to_retry():
    clock = Clock()
    limit = TenantRateLimit(rate=100, burst=300, clock=clock)
    assert limit.admit("flood", 300) == 0
    assert limit.admit("flood", 50) == pytest.approx(0.5)
    assert limit.admit("other", 300) == 0, "another tenant's bucket is its own"
    clock.now += 0.5
    assert limit.admit("flood", 50) == 0
    # Empty, a request is refused before its body is read, with a wait that fits any
    # request (up to 200 events here): after it, 200 events are admitted.
    wait = limit.refuse_early("flood", largest=200)
    assert wait == pytest.approx(2.0)
    clock.now += wait
    assert limit.refuse_early("flood", largest=200) == 0
    assert limit.admit("flood", 200) == 0


def test_collector_settings_defaults_and_refusals():
    settings = collector_settings({})
    assert settings.max_events_per_request <= settings.rate_burst_events
    assert settings.start_date == START
    with pytest.raises(SettingsError, match="COLLECTOR_SEGMENT_MAX_BYTES='big'"):
        collector_settings({"COLLECTOR_SEGMENT_MAX_BYTES": "big"})
    with pytest.raises(SettingsError, match="could never be admitted"):
        collector_settings(
            {"COLLECTOR_RATE_BURST_EVENTS": "10", "COLLECTOR_MAX_EVENTS_PER_REQUEST": "100"}
        )


def test_events_over_many_days_never_hold_more_than_the_open_segment_limit(tmp_path: Path):
    writer = SegmentWriter(tmp_path, max_age_seconds=3600, max_bytes=1 << 20)
    days = [(START + dt.timedelta(days=n)).isoformat() for n in range(MAX_OPEN_SEGMENTS + 44)]
    (error,) = writer.commit([WriteRequest("acme", {day: lines(day) for day in days})])
    assert error is None
    writer.seal_due()
    assert writer.open_segments == MAX_OPEN_SEGMENTS
    assert len(landed(tmp_path)) == 44, "the oldest were closed early, complete"
    writer.close()
    assert sorted(landed(tmp_path).values()) == sorted(lines(day) for day in days)
