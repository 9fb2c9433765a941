"""Scale benchmark, part `daemon`: one day for every tenant, launched and run by the daemon.

    .venv/bin/python benchmarks/scale_daemon.py [--tenants 1000] [--events 1000] [--quick]

`scale_sensor.py --runs` executes a sensor's runs in-process, one after another. This
part runs the day as production does: the code server, webserver and daemon as
processes on Postgres-backed Dagster storage (the project's dagster.yaml, automation
and every sensor on), `tenants` tenants registered and their ClickHouse databases
migrated beforehand (set-up, untimed). Then yesterday's file lands for every tenant
at once, and the clock runs until every tenant's day is served (`fct_daily_metrics`'
served partition materialized) and no run is queued or in flight. That covers the
landing sensor's tick, the daemon planning, queueing and launching the runs (the
planned events are written by the daemon), the run workers, and any run automation
requests afterwards. Writes benchmarks/results/scale_daemon.json and BENCHMARKS.md
section `scale-daemon`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import fresh_database, step_seconds, write_section  # noqa: E402
from scale_sensor import provision, register, step_kinds  # noqa: E402

WORK = ROOT / "benchmarks" / ".work" / "daemon"
RESULTS = ROOT / "benchmarks" / "results" / "scale_daemon.json"
TARGET_SECONDS = 600
DEADLINE_SECONDS = 3600
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def served(instance, tenants: list[str], day: dt.date) -> int:
    """How many of the tenants' `day` partitions of the served daily metrics exist."""
    from analytics_platform.assets.serving import SERVED_MARTS
    from analytics_platform.partitions import TenantDay

    (daily,) = [mart.key for mart in SERVED_MARTS if mart.table == "fct_daily_metrics"]
    keys = {TenantDay(t, day).partition_key for t in tenants}
    return len(keys & set(instance.get_materialized_partitions(daily)))


def in_flight(instance) -> int:
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus[name] for name in IN_FLIGHT]
    return len(instance.get_run_records(RunsFilter(statuses=statuses)))


def run_rows(instance, landed_at: float) -> list[dict]:
    """Every run of the instance: who asked for it, when it was created, started and
    ended (seconds after the files landed), its tenant-days and its step seconds."""
    from analytics_platform.sensors.landing import TENANTS_TAG

    def after(stamp: float | None) -> float | None:
        return None if stamp is None else round(stamp - landed_at, 1)

    rows = []
    for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp):
        run = record.dagster_run
        rows.append(
            {
                "by": run.tags.get("dagster/sensor_name") or run.tags.get("dagster/schedule_name"),
                "status": run.status.value,
                "tenants": int(run.tags.get(TENANTS_TAG, 1)),
                "created_s": after(record.create_timestamp.timestamp()),
                "started_s": after(record.start_time),
                "ended_s": after(record.end_time),
                "steps": step_seconds(instance, run.run_id),
            }
        )
    return rows


def measure(tenants: int, events: int) -> dict:
    from analytics_platform.demo.generator import generate_landing
    from analytics_platform.partitions import tenants_partitions
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform_tests.deployment import Deployment

    names = [f"d{i:04d}" for i in range(tenants)]
    day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    landing = WORK / "landing"
    landing.mkdir()
    with fresh_database() as dagster_url, fresh_database() as warehouse_url:
        settings = {
            "DATABASE_URL": warehouse_url,
            "DAGSTER_POSTGRES_URL": dagster_url,
            "CLICKHOUSE_URL": f"chdb://{WORK / 'clickhouse'}",
            "LANDING_DIR": str(landing),
            "ALERT_WEBHOOK_URL": "",
        }
        os.environ.update(settings)
        postgres = PostgresResource(url=warehouse_url)
        postgres.migrate_warehouse()
        register(postgres, names, [])
        setup_s = provision(postgres, names)
        deployment = Deployment.prepare(WORK / "dagster-home", settings)
        with deployment.instance() as instance:
            instance.add_dynamic_partitions(tenants_partitions.name, names)
        try:
            deployment.start()
            time.sleep(30)  # the daemons' first ticks on an empty zone, before the day lands
            load_before = [round(x, 2) for x in os.getloadavg()]
            landed_at = time.time()
            generate_landing(landing, names, [day], events_per_day=events)
            write_s = round(time.time() - landed_at, 1)
            loads, done_s = [], None
            with deployment.instance() as instance:
                deadline = time.monotonic() + DEADLINE_SECONDS
                while time.monotonic() < deadline:
                    loads.append(round(os.getloadavg()[0], 2))
                    if served(instance, names, day) == tenants and not in_flight(instance):
                        done_s = round(time.time() - landed_at, 1)
                        break
                    time.sleep(5)
                runs = run_rows(instance, landed_at)
                served_count = served(instance, names, day)
        finally:
            deployment.stop()
    shutil.rmtree(WORK, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "tenants": tenants,
        "events_per_tenant": events,
        "landed_to_done_s": done_s,
        "served": served_count,
        "write_files_s": write_s,
        "provision_s": setup_s,
        "runs": runs,
        "load_average_before": load_before,
        "load_during": [min(loads), max(loads)] if loads else [],
        "commit": commit,
        "machine": f"{os.cpu_count()} cores, shared",
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def report(results: dict) -> str:
    lines = [
        "## Scale: the daily run under the daemon (`benchmarks/scale_daemon.py`)",
        "",
        "The deployment as processes (code server, webserver, daemon; Postgres-backed "
        "storage, the project's dagster.yaml, every sensor and automation on), the tenants "
        "registered and provisioned beforehand; then yesterday's file lands "
        "for every tenant at once. Timed from the landing until every tenant's day is "
        "served and no run is queued or in flight. The files take a while to write (21.7 s "
        "for 1,000), so the sensor's ticks see them in a few groups, each a run; the runs "
        "go side by side (at most 4). Run times are seconds after the landing began. "
        f"Target: <= {TARGET_SECONDS // 60} minutes at 1,000 tenants.",
        "",
        "| tenants x events each | landed -> all served, idle | runs (by): tenants each | "
        "first created / last started / last ended | steps summed over the runs: raw / dbt / "
        "checks / serving | load before / during | code |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(results.values(), key=lambda r: r["tenants"]):
        runs = row["runs"]
        by: dict[str, list[int]] = {}
        steps: dict[str, float] = {}
        for run in runs:
            by.setdefault(run["by"] or "manual", []).append(run["tenants"])
            for step, seconds in run["steps"].items():
                steps[step] = steps.get(step, 0.0) + seconds
        kinds = step_kinds(steps)
        done = row["landed_to_done_s"]
        times = (
            f"{min(r['created_s'] for r in runs)} / "
            f"{max(r['started_s'] or 0 for r in runs)} / {max(r['ended_s'] or 0 for r in runs)} s"
            if runs
            else "-"
        )
        lines.append(
            f"| {row['tenants']:,} x {row['events_per_tenant']:,} | "
            + (f"{done} s ({done / 60:.1f} min)" if done else f"not done ({row['served']} served)")
            + " | "
            + ", ".join(
                f"{len(sizes)} ({name}): {' / '.join(map(str, sizes))}"
                for name, sizes in sorted(by.items())
            )
            + f" | {times} | "
            + " / ".join(f"{kinds[k]:.0f}" for k in kinds)
            + f" s | {row['load_average_before'][0]} / "
            + "-".join(str(x) for x in row["load_during"])
            + f" | {row['commit']}, {row['measured_at']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000, help="events per tenant-day")
    parser.add_argument("--quick", action="store_true", help="10 tenants, 100 events each")
    args = parser.parse_args()
    if args.quick:
        args.tenants, args.events = 10, 100
    row = measure(args.tenants, args.events)
    print(json.dumps(row), flush=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[f"{args.tenants}:{args.events}"] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_section("scale-daemon", report(results))
    print(report(results))


if __name__ == "__main__":
    main()
