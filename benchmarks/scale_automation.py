"""Scale benchmark, automation part: the daemon's automation tick at N tenants x 400 days.

    .venv/bin/python benchmarks/scale_automation.py [--tenants 10,100,300,1000] [--quick]

What the daemon's `platform_automation_sensor` runs on every tick is
`evaluate_automation_conditions` over the code location's assets and checks. For
each tenant count, on a fresh Postgres-backed Dagster instance (dagster.yaml's
storage, as deployed), with PLATFORM_START_DATE 400 days before today (so every
tenant_day asset has tenants x 400 partitions; the clock is the real one), three
ticks are timed: the first (no cursor), one after a raw materialization per tenant
of the newest day (each must request every layer below for exactly that day), and
a quiet one after it (nothing new: nothing requested). Writes
benchmarks/results/scale_automation.json and BENCHMARKS.md's `scale-automation`
section. Target (issue 16): every tick <= 15 s at 1,000 tenants.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import RECORDS, fresh_database, record_lines, replace_record, write_section  # noqa: E402

DAYS = 400
# Set before the platform is imported: the partitions are built from it at import.
os.environ["PLATFORM_START_DATE"] = (dt.date.today() - dt.timedelta(days=DAYS)).isoformat()

WORK = ROOT / "benchmarks" / ".work" / "scale_automation"
RESULTS = ROOT / "benchmarks" / "results" / "scale_automation.json"
TARGET_SECONDS = 15.0


def _instance(dagster_url: str):
    """A Dagster instance on dagster.yaml (Postgres storage) pointed at `dagster_url`."""
    from dagster import DagsterInstance

    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DAGSTER_HOME=str(ROOT),
        DAGSTER_POSTGRES_URL=dagster_url,
        DAGSTER_ARTIFACTS_DIR=str(WORK / "artifacts"),
    )
    return DagsterInstance.get()


def _timed(evaluate, **kwargs):
    began = time.perf_counter()
    result = evaluate(**kwargs)
    return result, round(time.perf_counter() - began, 2)


def measure_tenants(tenants: int, dagster_url: str) -> dict:
    """The three ticks at `tenants` tenants, and what each requested."""
    from dagster import AssetKey, AssetMaterialization, evaluate_automation_conditions

    from analytics_platform.definitions import defs
    from analytics_platform.partitions import PLATFORM_START_DATE, TenantDay

    newest = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    days = (newest - dt.date.fromisoformat(PLATFORM_START_DATE)).days + 1
    names = [f"t{i:04d}" for i in range(tenants)]
    with _instance(dagster_url) as instance:
        instance.add_dynamic_partitions("tenants", names)

        def tick(cursor=None):
            return _timed(
                evaluate_automation_conditions,
                defs=defs,
                instance=instance,
                cursor=cursor,
            )

        first, first_s = tick()
        for name in names:
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key="raw_file_events", partition=TenantDay(name, newest).partition_key
                )
            )
        updated, updated_s = tick(first.cursor)
        quiet, quiet_s = tick(updated.cursor)
        sessions = updated.get_requested_partitions(AssetKey("fct_sessions"))
        expected = {TenantDay(name, newest).partition_key for name in names}
        if sessions != expected or quiet.total_requested or first.total_requested:
            raise SystemExit(
                f"{tenants} tenants: wrong requests (first {first.total_requested}, "
                f"fct_sessions {len(sessions)} of {len(expected)}, quiet {quiet.total_requested})"
            )
    return {
        "tenants": tenants,
        "days": days,
        "partitions_per_asset": tenants * days,
        "first_tick_s": first_s,
        "updated_tick_s": updated_s,
        "quiet_tick_s": quiet_s,
        "requested_after_update": updated.total_requested,
    }


def measure(args: argparse.Namespace) -> dict:
    rows = []
    for tenants in args.tenants:
        with fresh_database() as dagster_url:
            rows.append(measure_tenants(tenants, dagster_url))
        print(json.dumps(rows[-1]), flush=True)
    return {
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "label": args.label,
        "rows": rows,
    }


def report(results: dict) -> str:
    """Both row sets (before, after) in one table, so each change shows its effect."""
    lines = [
        "## Scale: the automation tick",
        "",
        "`benchmarks/scale_automation.py`: `evaluate_automation_conditions` over the code "
        "location on a fresh Postgres-backed instance, PLATFORM_START_DATE "
        f"{DAYS} days before the day of the run; ticks: first, after one raw materialization "
        "per tenant (newest day; every layer below requested for exactly those), quiet. "
        f"Target: <= {TARGET_SECONDS:.0f} s at 1,000 tenants.",
        "",
        "| code | tenants | partitions per asset | first tick (s) | tick after updates (s) | "
        "quiet tick (s) | requested |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in RECORDS:
        measured = results.get(record)
        for row in measured["rows"] if measured else []:
            lines.append(
                f"| {record}: {measured['label']} | {row['tenants']:,} | "
                f"{row['partitions_per_asset']:,} | {row['first_tick_s']} | "
                f"{row['updated_tick_s']} | {row['quiet_tick_s']} | "
                f"{row['requested_after_update']:,} |"
            )
    return "\n".join([*lines, "", *record_lines(results)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tenants",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10, 100, 300, 1000],
        help="comma-separated tenant counts",
    )
    parser.add_argument("--quick", action="store_true", help="10 and 100 tenants only")
    parser.add_argument(
        "--record",
        choices=["before", "after"],
        default="after",
        help="which row set of the results this run replaces (before: the code it improves on)",
    )
    parser.add_argument("--label", default="main", help="names the code measured")
    args = parser.parse_args(argv)
    if args.quick:
        args.tenants = [10, 100]
    return args


def main() -> None:
    args = parse_args()
    write_section("scale-automation", report(replace_record(RESULTS, args.record, measure(args))))


if __name__ == "__main__":
    main()
