"""Quality benchmark: what the layer checks cost next to building the layers, per tenant-day.

    .venv/bin/python benchmarks/quality.py [--events-per-day 100000 20000]

For each size, one `tenant_day_pipeline` run of one generated tenant-day (after a
small warm-up run), timed per step from the run's event log: the raw load, the
two dbt builds, and the three check ops. Uses DATABASE_URL's server (a fresh
database, dropped afterwards) or 127.0.0.1:5432. Writes
benchmarks/results/quality.json and its section of BENCHMARKS.md.
Target (issue 6): checks <= 10% of the time it takes to build what they check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_database, step_seconds, use_platform, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "quality"
RESULTS = ROOT / "benchmarks" / "results" / "quality.json"
DAY = dt.date(2026, 6, 2)
TARGET = 0.10
LAYERS = {
    # layer: (steps that build it, the step that checks it)
    "raw": (("raw_file_events",), "raw_checks"),
    "staging": (("analytics_dbt_staging",), "staging_checks"),
    "marts": (("analytics_dbt_marts",), "marts_checks"),
}


def measure(instance, job, events: int, landing: Path) -> dict:
    from analytics_platform.demo.generator import generate_landing
    from analytics_platform.partitions import TenantDay

    tenant = f"q{events}"
    instance.add_dynamic_partitions("tenants", [tenant])
    generate_landing(landing, [tenant], [DAY], events_per_day=events)
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    result = job.execute_in_process(
        instance=instance, partition_key=TenantDay(tenant, DAY).partition_key, run_config=quiet
    )
    assert result.success
    steps = step_seconds(instance, result.run_id)
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        loaded = conn.execute(
            "SELECT count(*) FROM raw.file_events WHERE tenant_id = %s", (tenant,)
        ).fetchone()[0]
    layers = {}
    for layer, (builds, check) in LAYERS.items():
        built = sum(steps[s] for s in builds)
        layers[layer] = {
            "build_s": round(built, 2),
            "checks_s": steps[check],
            "fraction": round(steps[check] / built, 3),
        }
    build_total = sum(v["build_s"] for v in layers.values())
    check_total = sum(v["checks_s"] for v in layers.values())
    return {
        "events_generated": events,
        "rows_loaded": loaded,
        "layers": layers,
        "build_s": round(build_total, 2),
        "checks_s": round(check_total, 2),
        "fraction": round(check_total / build_total, 3),
        "raw_fraction": layers["raw"]["fraction"],
        "steps_s": steps,
    }


def write_report(results: dict) -> None:
    rows = []
    for r in results["runs"]:
        for layer, v in r["layers"].items():
            rows.append(
                f"| {r['rows_loaded']:,} | {layer} | {v['build_s']:.2f} | {v['checks_s']:.2f} "
                f"| {v['fraction']:.1%} |"
            )
        rows.append(
            f"| {r['rows_loaded']:,} | **all layers** | {r['build_s']:.2f} | {r['checks_s']:.2f} "
            f"| **{r['fraction']:.1%}** |"
        )
    worst = max(r["fraction"] for r in results["runs"])
    section = "\n".join(
        [
            "## Quality: checks next to the builds they check",
            "",
            f"`benchmarks/quality.py`, one tenant-day per size, a `tenant_day_pipeline` run "
            f"in-process; {results['machine']}. Build = the steps that write a layer "
            "(raw load incl. its ingest parity, dbt staging, dbt marts with dbt's own tests); "
            "checks = that layer's check op (one COPY of the checked columns, Pandera, "
            "parity SQL).",
            "",
            "| rows in the tenant-day | layer | build s | checks s | checks / build |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Worst overall fraction: **{worst:.1%}** (target <= {TARGET:.0%}: "
            f"{'met' if worst <= TARGET else 'NOT met'}).",
        ]
    )
    write_section("quality", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, nargs="+", default=[100_000, 20_000])
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    with fresh_database() as database_url:
        use_platform(database_url, WORK)
        from dagster import DagsterInstance

        from analytics_platform.definitions import defs
        from analytics_platform.resources.postgres import PostgresResource

        PostgresResource(url=database_url).ensure_warehouse()
        job = defs.resolve_job_def("tenant_day_pipeline")
        with DagsterInstance.ephemeral() as instance:
            measure(instance, job, 200, Path(os.environ["LANDING_DIR"]))  # warm-up
            runs = []
            for events in args.events_per_day:
                runs.append(measure(instance, job, events, Path(os.environ["LANDING_DIR"])))
                print(json.dumps(runs[-1], indent=2), flush=True)
    results = {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, {sys.platform}",
        "target_fraction": TARGET,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results)


if __name__ == "__main__":
    main()
