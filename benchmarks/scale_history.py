"""Scale benchmark, part `history`: a day's dbt build with 1 week vs 1 year of history.

    .venv/bin/python benchmarks/scale_history.py [--quick] [--events-per-day 1500]
        [--repetitions 3] [--label after]

For each history length (7 and 365 days; 7 and 30 with --quick) a fresh database
gets one tenant's generated events (analytics_platform/demo/generator.py: returning
visitors, half of them in an A/B test running all year) COPYed into raw, then one
dbt build over the whole range. On top of it one new day is loaded into raw and
built as Dagster builds a tenant-day: `dbt build` of staging, then of the marts,
each scoped to the day by the slice environment. The build is repeated (a rebuild
of a day costs what its first build does: delete the slice, insert it) and the
median kept, with dbt's own per-model seconds. Serving (ClickHouse) is not part of
it. Writes benchmarks/results/scale_history.json and BENCHMARKS.md `scale-history`;
`--label before` keeps the figures of the models as they were (run on main's models).
Target (issue 16): year / week <= 1.25x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import fresh_database, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale_history.json"
WORK = ROOT / "benchmarks" / ".work" / "scale_history"
TENANT = "history_bench"
NEW_DAY = dt.date(2026, 6, 30)
RAW_COLUMNS = (
    "event_id",
    "tenant_id",
    "event_type",
    "occurred_at",
    "visitor_id",
    "user_id",
    "session_hint",
    "url",
    "path",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "experiment_id",
    "variant",
    "revenue",
    "currency",
    "_partition_date",
    "_source",
    "_source_line",
)


def raw_rows(day: dt.date, events: list[dict]) -> list[tuple]:
    """The generator's events of a day as raw.file_events rows (one landing file)."""
    source = f"{TENANT}/{day.isoformat()}/demo-events.jsonl"
    return [
        (
            e["event_id"],
            TENANT,
            e["event_type"],
            e["occurred_at"],
            e["visitor_id"],
            e.get("user_id"),
            e["session_id"],
            e["url"],
            e["path"],
            e.get("referrer"),
            e.get("utm_source"),
            e.get("utm_medium"),
            e.get("utm_campaign"),
            e.get("experiment_id"),
            e.get("variant"),
            e.get("revenue"),
            e.get("currency"),
            day,
            source,
            line,
        )
        for line, e in enumerate(events, start=1)
    ]


def copy_raw(url: str, days: list[tuple[dt.date, list[dict]]]) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = ", ".join(RAW_COLUMNS)
        with cur.copy(f"COPY raw.file_events ({columns}) FROM STDIN") as copy:
            for day, events in days:
                for row in raw_rows(day, events):
                    copy.write_row(row)


def dbt(url: str, target: Path, args: list[str], tenants_days=None) -> dict[str, float]:
    """One dbt invocation against `url` (slice in the environment); its per-model seconds."""
    from analytics_platform.dbt_project import SLICE_ENV, dbt_executable, dbt_project
    from analytics_platform.resources.postgres import PostgresResource

    env = {**os.environ, **PostgresResource(url=url).libpq_env()}
    env.pop(SLICE_ENV, None)
    if tenants_days:
        start, end = tenants_days
        env[SLICE_ENV] = json.dumps(
            {"tenants": [TENANT], "start_date": start.isoformat(), "end_date": end.isoformat()}
        )
    project = str(dbt_project().project_dir)
    command = [dbt_executable(), *args, "--project-dir", project, "--profiles-dir", project]
    command += ["--target-path", str(target), "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {
        r["unique_id"].split(".")[-1]: round(r["execution_time"], 3)
        for r in results
        if r["unique_id"].startswith("model.")
    }


def build_day(url: str, target: Path) -> tuple[float, dict[str, float]]:
    """The new day as a Dagster run builds it: staging, then marts; seconds and per model."""
    began = time.perf_counter()
    models = dbt(url, target, ["build", "--select", "path:models/staging"], (NEW_DAY, NEW_DAY))
    models |= dbt(url, target, ["build", "--select", "path:models/marts"], (NEW_DAY, NEW_DAY))
    return time.perf_counter() - began, models


def measure_history(history_days: int, args: argparse.Namespace) -> dict:
    from analytics_platform.demo.generator import tenant_events
    from analytics_platform.resources.postgres import PostgresResource

    days = [NEW_DAY - dt.timedelta(days=n) for n in range(history_days, -1, -1)]
    generated = list(tenant_events(TENANT, days, events_per_day=args.events_per_day))
    target = WORK / f"target-{history_days}"
    shutil.rmtree(target, ignore_errors=True)
    with fresh_database() as url:
        PostgresResource(url=url).ensure_warehouse()
        began = time.perf_counter()
        copy_raw(url, generated[:-1])
        dbt(url, target, ["build"], (days[0], days[-2]))
        history_s = time.perf_counter() - began
        copy_raw(url, generated[-1:])
        builds = [build_day(url, target) for _ in range(args.repetitions)]
    seconds = [s for s, _ in builds]
    models = {m: statistics.median(b[m] for _, b in builds) for m in builds[0][1]}
    print(f"{history_days} days: history {history_s:.0f}s, day {seconds}", flush=True)
    return {
        "history_days": history_days,
        "history_events": sum(len(e) for _, e in generated[:-1]),
        "history_load_s": round(history_s, 1),
        "day_build_s": [round(s, 2) for s in seconds],
        "day_build_median_s": round(statistics.median(seconds), 2),
        "model_median_s": models,
    }


def measure(args: argparse.Namespace) -> dict:
    short, long = (7, 30) if args.quick else (7, 365)
    week, year = measure_history(short, args), measure_history(long, args)
    return {
        "label": args.label,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "events_per_day": args.events_per_day,
        "repetitions": args.repetitions,
        "week": week,
        "year": year,
        "ratio": round(year["day_build_median_s"] / week["day_build_median_s"], 3),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


WATCHED = ("stg_events", "fct_daily_metrics", "dim_visitors", "fct_experiment_results")


def _rows(measured: dict) -> list[str]:
    week, year = measured["week"], measured["year"]
    models_week, models_year = (sum(r["model_median_s"].values()) for r in (week, year))
    watched = ", ".join(
        f"{m} {week['model_median_s'].get(m, 0):.2f} -> {year['model_median_s'].get(m, 0):.2f}"
        for m in WATCHED
    )
    return [
        f"| {measured['label']} ({measured['commit']}) | {week['day_build_median_s']:.1f} | "
        f"{year['day_build_median_s']:.1f} | **{measured['ratio']:.2f}x** | "
        f"{models_week:.1f} -> {models_year:.1f} ({models_year / models_week:.2f}x) | "
        f"{watched} | {', '.join(map(str, measured['loadavg']))} |"
    ]


def report(measured: dict) -> str:
    """The BENCHMARKS.md section: every label measured so far (before and after)."""
    runs = measured["runs"]
    latest = runs[-1]
    week, year = latest["week"]["history_days"], latest["year"]["history_days"]
    return "\n".join(
        [
            "## Scale: a day's build as history grows (1 week vs 1 year)",
            "",
            f"`benchmarks/scale_history.py`: one tenant, {latest['events_per_day']} generated "
            "events a day (returning visitors, an A/B test all year), history COPYed into raw "
            "and built by one dbt build over the range; then one new day built as a Dagster "
            "run builds it (dbt build of staging, then of the marts, scoped to the day, tests "
            f"included), median of {latest['repetitions']}; with {week} and with {year} days "
            "of history. Serving is not included. Target: year / week <= 1.25x. The model "
            "column sums dbt's own seconds per model (the SQL, without dbt's start-up, which "
            "is most of a build). A shared 2-core machine with other work running (load "
            "average at the end of each run in the table): the figures are contaminated. "
            "`before` is main's models with only the fct_funnel_daily planner fix (hash joins), "
            "without which the year's one-run history build did not finish in 20 minutes.",
            "",
            f"| models | {week} d: day build s | {year} d: day build s | ratio | "
            "models' own s | watched models, s |  load |",
            "|---|---|---|---|---|---|---|",
            *(row for run in runs for row in _rows(run)),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 vs 30 days, 300 events, once")
    parser.add_argument("--events-per-day", type=int, default=1500)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--label", default="after", help="name of the models measured")
    args = parser.parse_args()
    if args.quick:
        args.events_per_day, args.repetitions = 300, 1
    sys.path.insert(0, str(ROOT))
    measured = measure(args)
    previous = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    runs = [r for r in previous if r["label"] != args.label] + [measured]
    runs.sort(key=lambda r: r["label"] != "before")
    if not args.quick:
        RESULTS.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
        write_section("scale-history", report({"runs": runs}))
    print(report({"runs": runs}))


if __name__ == "__main__":
    main()
