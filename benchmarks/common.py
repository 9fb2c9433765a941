"""What the benchmarks share: a throwaway database, step timings, a BENCHMARKS.md section."""

from __future__ import annotations

import os
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
