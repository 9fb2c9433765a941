"""Pipeline benchmark: one tenant-day end to end, and a 3 x 30 backfill single-run vs per-partition.

    .venv/bin/python benchmarks/pipeline.py [--events-per-day 1000] [--days 30]

Uses DATABASE_URL's server (a fresh database, dropped afterwards) or the
machine's Postgres at 127.0.0.1:5432, a fresh chDB folder and generated landing
files under benchmarks/.work/pipeline. Writes benchmarks/results/pipeline.json
and its section of BENCHMARKS.md. Target (issue 5): with ~1,000 events per
tenant-day, the 90-partition single-run backfill takes under 5x one tenant-day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from common import fresh_database, step_seconds, use_platform, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "pipeline"
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
START = dt.date(2026, 6, 1)


def timed(label: str, action) -> float:
    began = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - began
    if hasattr(result, "success"):
        assert result.success, label
    print(f"{label}: {seconds:.1f}s", flush=True)
    return seconds


def write_report(results: dict) -> None:
    r = results
    section = "\n".join(
        [
            "## Pipeline: one tenant-day, and a backfill single-run vs per-partition",
            "",
            f"`benchmarks/pipeline.py`, {r['events_per_day']} events per tenant-day, "
            f"{r['tenants']} tenants x {r['days']} days; {r['machine']}. Each run is a "
            "`tenant_day_pipeline` run in-process: raw load, dbt staging and marts (one "
            "invocation each), the layer checks, ClickHouse serving.",
            "",
            "| measurement | seconds |",
            "|---|---|",
            f"| one tenant-day end to end | {r['one_tenant_day_s']:.1f} |",
            f"| backfill of {r['partitions']} tenant-days as ONE run | {r['single_run_s']:.1f} |",
            *(
                [
                    f"| the same as {r['per_partition_runs']} per-partition runs | "
                    f"{r['per_partition_s']:.1f} |"
                ]
                if r["per_partition_s"]
                else []
            ),
            "",
            f"Single-run backfill / one tenant-day = **{r['ratio_single_to_one']:.2f}x** "
            f"(target < 5x: {'met' if r['ratio_single_to_one'] < 5 else 'NOT met'})"
            + (
                f"; per-partition runs / single run = {r['ratio_per_partition_to_single']:.1f}x."
                if r["per_partition_s"]
                else " (per-partition runs skipped in this measurement)."
            ),
            "",
            "Steps of the single run (seconds): "
            + ", ".join(f"{step} {sec}" for step, sec in r["single_run_steps_s"].items())
            + ".",
        ]
    )
    write_section("pipeline", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument(
        "--skip-per-partition", action="store_true", help="Skip the slow per-partition runs."
    )
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    with fresh_database() as database_url:
        use_platform(database_url, WORK)
        results = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results)
    print(json.dumps(results, indent=2))


def run(args) -> dict:
    from dagster import DagsterInstance

    from analytics_platform.definitions import defs
    from analytics_platform.demo.generator import generate_landing
    from analytics_platform.partitions import range_tags
    from analytics_platform.resources.postgres import PostgresResource

    PostgresResource(url=os.environ["DATABASE_URL"]).ensure_warehouse()
    days = [START + dt.timedelta(days=i) for i in range(args.days)]
    single = [f"single_{i}" for i in range(args.tenants)]
    separate = [f"separate_{i}" for i in range(args.tenants)]
    landing = Path(os.environ["LANDING_DIR"])
    generate_landing(
        landing, [*single, *separate, "one_day"], days, events_per_day=args.events_per_day
    )
    job = defs.resolve_job_def("tenant_day_pipeline")
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", ["one_day", *single, *separate])

        def one(key):
            return job.execute_in_process(instance=instance, partition_key=key, run_config=quiet)

        one(f"{days[0]}|one_day")  # warm-up: imports, first dbt parse, ClickHouse tables
        one_day = timed("one tenant-day", lambda: one(f"{days[1]}|one_day"))
        runs = []

        def single_run_now():
            runs.append(
                job.execute_in_process(
                    instance=instance, tags=range_tags(single, days), run_config=quiet
                )
            )
            return runs[-1]

        single_run = timed(f"single run, {len(single)} x {len(days)}", single_run_now)
        single_steps = step_seconds(instance, runs[-1].run_id)
        print(f"single run steps: {single_steps}", flush=True)
        began = time.perf_counter()
        for tenant in [] if args.skip_per_partition else separate:
            for day in days:
                assert one(f"{day}|{tenant}").success
        per_partition = 0.0 if args.skip_per_partition else time.perf_counter() - began
        print(f"per-partition runs: {per_partition:.1f}s", flush=True)

    return {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, {sys.platform}",
        "events_per_day": args.events_per_day,
        "tenants": args.tenants,
        "days": args.days,
        "partitions": args.tenants * args.days,
        "per_partition_runs": args.tenants * args.days,
        "one_tenant_day_s": round(one_day, 2),
        "single_run_s": round(single_run, 2),
        "per_partition_s": round(per_partition, 2),
        "ratio_single_to_one": round(single_run / one_day, 2),
        "ratio_per_partition_to_single": round(per_partition / single_run, 2)
        if per_partition
        else None,
        "single_run_steps_s": single_steps,
    }


if __name__ == "__main__":
    main()
