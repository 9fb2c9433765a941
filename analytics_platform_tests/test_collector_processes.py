"""Collectors that crash, stop, share a landing zone or lose it: what a 2xx promised holds.

Each test starts its own `analytics-platform collector` processes (own process group,
stopped by PID) on a landing zone of its own, and checks the files they leave.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql

from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.service.landing_io import JOURNALS
from analytics_platform.stack import with_database
from analytics_platform.tenants.keys import create_key
from analytics_platform.tenants.registry import register_tenant
from analytics_platform_tests.cli_harness import cli_environment
from analytics_platform_tests.collector_server import (
    RunningCollector,
    landed_lines,
    open_segments,
    start_collector,
    tmpfs,
    wait_for,
)

pytestmark = pytest.mark.slow

FAST = {"COLLECTOR_SEGMENT_MAX_AGE_SECONDS": "0.2", "KEY_CACHE_SECONDS": "5"}
LONG_SEGMENTS = {"COLLECTOR_SEGMENT_MAX_AGE_SECONDS": "3600"}
DAY = "2026-11-02"


@pytest.fixture
def env(tmp_path, warehouse_url, dagster_storage_url, clickhouse_url, landing_dir):
    return cli_environment(
        tmp_path, warehouse_url, dagster_storage_url, clickhouse_url, landing_dir
    )


@pytest.fixture
def start():
    """`start_collector`, with every collector it started stopped when the test ends,
    failed or not (a process left running would outlive the test session)."""
    started: list[RunningCollector] = []

    def run(*args, **kwargs) -> RunningCollector:
        started.append(start_collector(*args, **kwargs))
        return started[-1]

    yield run
    for collector in started:
        if collector.process.poll() is None:
            collector.stop()


@pytest.fixture
def tenant_key(postgres: PostgresResource, new_tenant) -> tuple[str, str]:
    tenant = new_tenant("proc")
    register_tenant(postgres, tenant, actor="test")
    return tenant, create_key(postgres, tenant, kind="write", actor="test")[1]


def batch(size: int = 20) -> list[dict]:
    return [
        {
            "eventId": uuid.uuid4().hex,
            "eventType": "page_view",
            "visitorId": "v",
            "timestamp": f"{DAY}T12:00:00Z",
        }
        for _ in range(size)
    ]


class Posters:
    """Client threads posting batches until stopped or the server goes; what was acked."""

    def __init__(self, collector: RunningCollector, key: str, threads: int = 4):
        self.acked: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._post, args=(collector, key), daemon=True)
            for _ in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _post(self, collector: RunningCollector, key: str) -> None:
        with requests.Session() as session:
            for _ in range(100_000):
                if self._stop.is_set():
                    return
                events = batch()
                try:
                    response = session.post(
                        f"{collector.url}/v1/events",
                        data=json.dumps(events),
                        headers={"Authorization": f"Bearer {key}"},
                        timeout=10,
                    )
                except requests.RequestException:
                    return  # the server is gone
                with self._lock:
                    if response.status_code == 202:
                        self.acked += [e["eventId"] for e in events]
                    else:
                        self.refused += 1

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads)
        return self.acked


def landed_ids(landing: Path) -> Counter[str]:
    """How often each event id is in a closed segment; fails on a line that is not JSON."""
    counts: Counter[str] = Counter()
    for path, line in landed_lines(landing):
        try:
            counts[json.loads(line)["eventId"]] += 1
        except ValueError as err:
            raise AssertionError(f"a torn or broken line in {path}: {line[:80]!r}") from err
    return counts


def assert_each_once(landing: Path, acked: list[str]) -> Counter[str]:
    counts = landed_ids(landing)
    missing = [i for i in acked if counts[i] == 0]
    doubled = [i for i in acked if counts[i] > 1]
    assert not missing, f"{len(missing)} acknowledged events are not in the landing files"
    assert not doubled, f"{len(doubled)} acknowledged events landed more than once"
    return counts


def test_sigkill_under_load_then_restart_keeps_every_acknowledged_event_once(
    start, env, tmp_path: Path, landing_dir: Path, tenant_key
):
    _tenant, key = tenant_key
    first = start(env, tmp_path / "first.log", FAST)
    posters = Posters(first, key)
    wait_for(lambda: len(posters.acked) >= 400, timeout=30, what="acknowledged events")
    first.kill()
    acked = posters.stop()
    left_open = open_segments(landing_dir)
    assert left_open, "a collector killed under load leaves an open segment"
    with open(left_open[0], "ab") as torn:  # as if the kill had cut a write in half
        torn.write(b'{"eventId":"torn-not-acknowledged","eventTy')

    second = start(env, tmp_path / "second.log", FAST)
    assert open_segments(landing_dir) == [], "recovery closed what the dead collector left"
    counts = assert_each_once(landing_dir, acked)
    assert "torn-not-acknowledged" not in counts
    assert "recovered" in (tmp_path / "second.log").read_text()
    assert second.stop() == 0
    assert list((landing_dir / JOURNALS).iterdir()) == []


def test_sigterm_finishes_requests_closes_every_segment_and_exits_0(
    start, env, tmp_path: Path, landing_dir: Path, tenant_key
):
    _tenant, key = tenant_key
    collector = start(env, tmp_path / "collector.log", LONG_SEGMENTS)
    posters = Posters(collector, key, threads=3)
    wait_for(lambda: len(posters.acked) >= 200, timeout=30, what="acknowledged events")
    assert open_segments(landing_dir), "segments stay open for an hour unless stopped"
    assert collector.stop() == 0
    acked = posters.stop()
    assert open_segments(landing_dir) == []
    assert_each_once(landing_dir, acked)
    assert list((landing_dir / JOURNALS).iterdir()) == []


def test_two_collectors_share_a_zone_and_recover_only_the_dead_ones_segments(
    start, env, tmp_path: Path, landing_dir: Path, tenant_key
):
    _tenant, key = tenant_key
    alive = start(env, tmp_path / "alive.log", LONG_SEGMENTS)
    doomed = start(env, tmp_path / "doomed.log", LONG_SEGMENTS)
    acked = []
    for collector in (alive, doomed):
        events = batch()
        assert collector.post_events(events, key).status_code == 202
        acked += [e["eventId"] for e in events]
    segments = open_segments(landing_dir)
    assert len(segments) == 2 and len({p.name for p in segments}) == 2
    assert segments[0].parent == segments[1].parent, "one tenant-day, two names"
    doomed.kill()

    successor = start(env, tmp_path / "successor.log", LONG_SEGMENTS)
    still_open = open_segments(landing_dir)
    assert len(still_open) == 1, "the living collector's segment is not taken over"
    assert landed_ids(landing_dir).keys() == set(acked[20:]), "the dead one's is closed"
    events = batch()
    assert alive.post_events(events, key).status_code == 202, "the live one still writes"
    acked += [e["eventId"] for e in events]
    assert alive.stop() == 0 and successor.stop() == 0
    assert open_segments(landing_dir) == []
    assert_each_once(landing_dir, acked)


def test_an_unwritable_landing_zone_answers_503_and_acknowledges_nothing(
    start, env, tmp_path: Path, landing_dir: Path, tenant_key
):
    _tenant, key = tenant_key
    collector = start(env, tmp_path / "collector.log", FAST)
    before = batch()
    assert collector.post_events(before, key).status_code == 202
    moved = landing_dir.with_name("landing-away")
    landing_dir.rename(moved)
    landing_dir.write_text("not a folder")  # a lost mount, a wrong path: nothing can go there
    try:
        health = requests.get(f"{collector.url}/health", timeout=10)
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "landing_unavailable"
        refused = collector.post_events(batch(), key)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "landing_unavailable"
    finally:
        landing_dir.unlink()
        moved.rename(landing_dir)
    wait_for(
        lambda: requests.get(f"{collector.url}/health", timeout=10).status_code == 200,
        what="health once the zone is back",
    )
    after = batch()
    assert collector.post_events(after, key).status_code == 202
    assert collector.stop() == 0
    counts = assert_each_once(landing_dir, [e["eventId"] for e in before + after])
    assert sum(counts.values()) == 40, "the refused batch left nothing behind"


@pytest.fixture
def tiny_landing(tmp_path: Path):
    """A 128 KiB tmpfs as the landing zone, so the disk fills up."""
    with tmpfs(tmp_path / "tiny-landing", "128k") as mount:
        yield mount


def test_a_full_disk_answers_503_and_keeps_exactly_what_it_acknowledged(
    start,
    tmp_path: Path,
    warehouse_url,
    dagster_storage_url,
    clickhouse_url,
    tiny_landing,
    tenant_key,
):
    _tenant, key = tenant_key
    env = cli_environment(
        tmp_path, warehouse_url, dagster_storage_url, clickhouse_url, tiny_landing
    )
    collector = start(env, tmp_path / "collector.log", LONG_SEGMENTS)
    acked, answers = [], Counter()
    for _ in range(200):
        events = [{**e, "pad": "p" * 500} for e in batch(10)]
        response = collector.post_events(events, key)
        answers[response.status_code] += 1
        if response.status_code != 202:
            assert response.json()["error"]["code"] == "landing_unavailable"
            break
        acked += [e["eventId"] for e in events]
    assert answers[503] == 1 and acked, answers
    assert collector.stop() == 0
    counts = assert_each_once(tiny_landing, acked)
    assert sum(counts.values()) == len(acked), "nothing of the refused request landed"


def test_keys_that_cannot_be_checked_answer_503_and_known_ones_keep_working(
    start, tmp_path: Path, fresh_database, dagster_storage_url, clickhouse_url, landing_dir: Path
):
    url = fresh_database("ap_test_collector_auth")
    postgres = PostgresResource(url=url)
    postgres.ensure_warehouse()
    register_tenant(postgres, "outage_t", actor="test")
    known = create_key(postgres, "outage_t", kind="write", actor="test")[1]
    unseen = create_key(postgres, "outage_t", kind="write", actor="test")[1]
    env = cli_environment(tmp_path, url, dagster_storage_url, clickhouse_url, landing_dir)
    collector = start(env, tmp_path / "collector.log", FAST)
    first = batch()
    assert collector.post_events(first, known).status_code == 202
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]  # the embedded URL names a socket
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    refused = collector.post_events(batch(), unseen)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "auth_unavailable"
    second = batch()
    assert collector.post_events(second, known).status_code == 202, "a key seen lately"
    assert collector.stop() == 0
    counts = assert_each_once(landing_dir, [e["eventId"] for e in first + second])
    assert sum(counts.values()) == 40
