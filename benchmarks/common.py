"""What the benchmarks share: a throwaway database, step timings, a BENCHMARKS.md section."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

REPORT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def server_url() -> str:
    """DATABASE_URL's server (its `postgres` database), or the machine's at 127.0.0.1:5432."""
    from analytics_platform.stack import with_database

    return with_database(
        os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgres",
    )


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards whatever happens: its URL."""
    from analytics_platform.stack import with_database

    server = server_url()
    name = f"ap_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def use_platform(database_url: str, work: Path) -> None:
    """Point this process's platform at the benchmark's database and a scratch folder."""
    os.environ.update(
        DATABASE_URL=database_url,
        CLICKHOUSE_URL=f"chdb://{work / 'clickhouse'}",
        LANDING_DIR=str(work / "landing"),
        ALERT_WEBHOOK_URL="",
    )


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run, from its event log."""
    from dagster import DagsterEventType

    started, seconds = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            seconds[event.step_key] = round(entry.timestamp - started[event.step_key], 2)
    return seconds


def write_section(name: str, section: str) -> None:
    """Put `section` between BENCHMARKS.md's `<!-- name:start/end -->` markers (or append it)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{section.strip()}\n{end}"
    text = (
        REPORT.read_text()
        if REPORT.exists()
        else "# Benchmarks\n\nMeasured, never timed in tests.\n"
    )
    if start in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.write_text(text)


def own_peak_mb() -> float:
    """This process's VmHWM (peak RSS since exec), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class TreeMemory:
    """Peak of the summed RSS of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        import psutil

        while not self.done.is_set():
            total = 0
            try:
                for proc in [self.process, *self.process.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            self.done.wait(0.05)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


def run_measured(command: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """Run one loader; its output (JSON on the last stdout line), wall seconds and peak RSS."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    memory = TreeMemory(proc.pid)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - began
    tree_peak = memory.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({proc.returncode}):\n{output[-2000:]}")
    lines = [line for line in output.splitlines() if line.strip()]
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    # Not ru_maxrss: Linux carries the forking process's high-water mark across exec, so
    # a child forked while this process was large reports this process's peak.
    del usage
    peak_mb = max(result.get("vmhwm_mb", 0) * 1024**2, tree_peak) / 1024**2
    return {**result, "wall_s": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1)}


def run_and_report(work: Path, results: Path, run, args, write_report) -> None:
    """`run(args, database_url)` on a fresh database; its results as JSON and in the report."""
    work.mkdir(parents=True, exist_ok=True)
    with fresh_database() as database_url:
        measured = run(args, database_url)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(measured, indent=2) + "\n")
    write_report(measured)
    print(json.dumps(measured, indent=2))


RECORDS = ("before", "after")  # a before/after benchmark's row sets, in report order


def replace_record(results_path: Path, record: str, measured: dict) -> dict:
    """Store `measured` as the results file's `record` row set, keeping the other; all."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results[record] = measured
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def record_lines(results: dict, records: tuple[str, ...] = RECORDS) -> list[str]:
    """One line per row set: where and when it was measured, and the machine's load."""
    lines = []
    for record in records:
        if measured := results.get(record):
            load = " ".join(f"{x:.2f}" for x in measured["load_average_before"])
            lines.append(
                f"- {record}: {measured['machine']}; load average before the run {load}; "
                f"measured {measured['measured_at']}."
            )
    return lines
