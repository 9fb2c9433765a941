"""The demo's front door: one tenant's events POSTed through a real collector process.

A new user should see events enter the way a tracker sends them, not only files
dropped in a folder. The demo starts `analytics-platform collector` on 127.0.0.1
(a process group of its own, stopped by its id at the end and on any failure),
creates a write key for the tenant, POSTs the tenant's generated events in batches
with it, then stops the collector with SIGTERM, which closes its landing segments.
The pipeline run then loads those segments like any landing file.

Only events that parse can go through a collector (a body that is not JSON is
refused whole, 400), and the collector files an event under the day of its own
timestamp; so the collector's tenant gets JSON lines whose defects still parse and
stay in their day (a missing field, a wrong type): both reach `platform.quarantine`
through the loader, as the contract says.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from analytics_platform.demo.generator import FILE_STEM, GeneratedLanding
from analytics_platform.ingest.contract import Reason
from analytics_platform.process_groups import (
    free_port,
    log_tail,
    start_process_group,
    stop_process_group,
)

# What the collector's tenant is generated as: JSON lines, defects that parse.
COLLECTOR_FORMATS = ("jsonl",)
COLLECTOR_DEFECTS = (Reason.MISSING_FIELD, Reason.WRONG_TYPE)
BATCH_EVENTS = 100
HEALTH_BOUND_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 30
CLI = str(Path(sys.executable).with_name("analytics-platform"))


class CollectorError(RuntimeError):
    """The demo's collector did not start, refused a batch, or left a segment open."""


@dataclass
class CollectorFeed:
    """What went through the collector: a line of the demo's output and of its checks."""

    tenant: str
    url: str
    posted: int = 0
    accepted: int = 0
    requests: int = 0
    segments: list[str] = field(default_factory=list)  # relative to LANDING_DIR


@dataclass
class RunningCollector:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = HEALTH_BOUND_SECONDS) -> None:
        """Block until GET /health answers 200 (the landing zone is writable)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise CollectorError(
                    f"the collector exited with code {self.process.returncode} before it "
                    f"was ready; {log_tail(self.log)}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise CollectorError(
                    f"the collector was not healthy after {timeout:.0f} s; {log_tail(self.log)}"
                )
            time.sleep(0.2)


@contextmanager
def collector_process(env: Mapping[str, str], log: Path, cwd: Path) -> Iterator[RunningCollector]:
    """`analytics-platform collector` on a free port of 127.0.0.1 (not yet waited for).

    On exit its process group gets SIGTERM (the collector closes its segments) and,
    if it outlives the grace period, SIGKILL.
    """
    port = free_port()
    process = start_process_group(
        [CLI, "collector", "--host", "127.0.0.1", "--port", str(port)],
        log=log,
        env=env,
        cwd=cwd,
    )
    try:
        yield RunningCollector(process=process, port=port, log=log)
    finally:
        stop_process_group(process)


def post_events(
    url: str, write_key: str, lines: Sequence[bytes], *, batch: int = BATCH_EVENTS
) -> tuple[int, int]:
    """POST `lines` (one JSON event each) as NDJSON bodies of `batch`: (accepted, requests).

    Any answer but 2xx stops the feed with the collector's own reason.
    """
    accepted = sent = 0
    with requests.Session() as session:
        session.headers.update(
            {"Authorization": f"Bearer {write_key}", "Content-Type": "application/x-ndjson"}
        )
        for start in range(0, len(lines), batch):
            body = b"\n".join(lines[start : start + batch]) + b"\n"
            answer = session.post(f"{url}/v1/events", data=body, timeout=REQUEST_TIMEOUT_SECONDS)
            sent += 1
            if not answer.ok:
                raise CollectorError(
                    f"the collector answered {answer.status_code} to batch {sent} "
                    f"(events {start + 1}-{start + batch}): {answer.text[:500]}"
                )
            accepted += int(answer.json()["accepted"])
    return accepted, sent


def clear_earlier_feeds(landing: Path, tenant: str, days: Sequence) -> None:
    """Remove what earlier demos left in the tenant's day folders (segments, files).

    Posting the same events again next to an earlier run's segments would load them
    twice into raw; the demo's landing folders for this tenant are the demo's own.
    """
    for day in days:
        folder = landing / tenant / day.isoformat()
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and (path.name.startswith(FILE_STEM) or _is_segment(path.name)):
                path.unlink()


def _is_segment(name: str) -> bool:
    """A collector segment, closed (`*.jsonl`) or left open by a crash (`*.tmp`)."""
    return name.endswith((".jsonl", ".jsonl.tmp", ".tmp"))


def feed_tenant(
    collector: RunningCollector,
    write_key: str,
    generated: GeneratedLanding,
    tenant: str,
) -> CollectorFeed:
    """POST every line of the tenant's generated files through the collector, day by day."""
    feed = CollectorFeed(tenant=tenant, url=f"{collector.url}/v1/events")
    for (owner, _day), expectation in sorted(generated.days.items()):
        if owner != tenant:
            continue
        lines = [line for line in expectation.file.read_bytes().splitlines() if line.strip()]
        accepted, sent = post_events(collector.url, write_key, lines)
        feed.posted += len(lines)
        feed.accepted += accepted
        feed.requests += sent
    return feed


def closed_segments(landing: Path, tenant: str, days: Sequence) -> list[str]:
    """The tenant's segments after the collector stopped; CollectorError if one is open."""
    closed, still_open = [], []
    for day in days:
        folder = landing / tenant / day.isoformat()
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            relative = str(path.relative_to(landing))
            (still_open if path.name.endswith(".tmp") else closed).append(relative)
    if still_open:
        raise CollectorError(
            f"the collector left {len(still_open)} segment(s) open after SIGTERM: "
            f"{', '.join(still_open[:5])}; the landing sensor never loads *.tmp files"
        )
    return closed
