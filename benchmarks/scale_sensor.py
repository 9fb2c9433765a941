"""Scale benchmark, part `sensor`: the landing sensor at 1,000 tenants, and the daily run.

    .venv/bin/python benchmarks/scale_sensor.py [--quick] [--tenants 10,100,300,1000]
        [--days 400] [--impl after|before,after] [--runs 10:1,10:10,100:50] [--events 1000]

Ticks. Grows one landing tree under benchmarks/.work/sensor/ (deleted afterwards) to
each size in turn: `tenants` x `days` finished days, one small distinct file per
tenant-day, every one already loaded (`platform.landing_files`) and seen by the
sensor. At each size it times `evaluate_landing` (the sensor's whole decision:
listing, registry, already-loaded query, digests, run requests) for

- a quiet tick: nothing new;
- the daily-arrival tick: one new file per tenant for yesterday (the newest
  finished day), written elsewhere and renamed in, as producers do.

`before` is main's sensor (its module as of BEFORE_COMMIT, loaded from git; its
figures are otherwise taken from BEFORE_RESULTS), `after` this branch's. Folder and
file mtimes are set to when each day's file would have landed (00:10 the next day),
so old days look old (ctimes cannot be set: every folder's is recent here).

Daily runs (`--runs`, tenants:LANDING_RUN_MAX_TENANTS cases): yesterday's file for
each of that many new tenants (`--events` events each), the sensor's tick, and the
runs it requests executed in-process on a Postgres-backed instance, through serving.

The machine is shared: the load average is recorded with each figure, and the
figures are contaminated by it. Writes benchmarks/results/scale_sensor.json and
BENCHMARKS.md section `scale-sensor`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    RECORDS,
    fresh_database,
    record_lines,
    replace_record,
    step_seconds,
    use_platform,
    write_section,
)

WORK = ROOT / "benchmarks" / ".work" / "sensor"
RESULTS = ROOT / "benchmarks" / "results" / "scale_sensor.json"
# main's figures, measured with `--impl before` when this part started (the old sensor's
# 1,000-tenant ticks alone take minutes).
# The daily runs, case by case under "before" / "after" (replace_record).
RUN_RESULTS = ROOT / "benchmarks" / "results" / "scale_daily_run.json"
BEFORE_RESULTS = ROOT / "benchmarks" / "results" / "scale_sensor_before.json"
BEFORE_COMMIT = "504b68a"  # main when this part started
START_DATE = "2025-01-01"  # before the 400 days measured, so none is before_start


def load_before_module():
    """main's sensors/landing.py as a module of its own, to measure the old code path."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:analytics_platform/sensors/landing.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = WORK / "ticks" / "landing_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("landing_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def landed_ns(day: dt.date) -> int:
    """00:10 UTC the day after `day`: when its file would have been renamed in."""
    moment = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 10), dt.timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000


def tenant_name(index: int) -> str:
    return f"t{index:05d}"


def file_body(tenant: str, day: dt.date) -> bytes:
    return (
        f'{{"eventId": "{tenant}-{day}", "eventType": "page_view", '
        f'"timestamp": "{day}T10:00:00Z", "visitorId": "v1", "sessionId": "s1"}}\n'
    ).encode()


def generate(root: Path, tenants: list[str], days: list[dt.date]) -> list[tuple]:
    """One file per tenant-day, with its folder's and its own mtime set to when it landed;
    the (source, tenant, day, size, mtime) rows the loader would have logged. Plain
    syscalls (mkdir; open, write, futimens, close; utime): five per tenant-day."""
    rows = []
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for tenant in tenants:
        os.makedirs(root / tenant)
        for day in days:
            folder = f"{root}/{tenant}/{day.isoformat()}"
            os.mkdir(folder)
            body = file_body(tenant, day)
            stamp = landed_ns(day)
            fd = os.open(f"{folder}/events.jsonl", flags, 0o644)
            try:
                os.write(fd, body)
                os.utime(fd, ns=(stamp, stamp))
            finally:
                os.close(fd)
            os.utime(folder, ns=(stamp, stamp))
            rows.append((f"{tenant}/{day}/events.jsonl", tenant, day, len(body), stamp))
    return rows


def register(postgres, tenants: list[str], rows: list[tuple]) -> None:
    with postgres.transaction() as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO platform.tenants (tenant_id, display_name, status) "
                "VALUES (%s, %s, 'active')",
                [(t, t) for t in tenants],
            )
        with conn.cursor().copy(
            "COPY platform.landing_files "
            "(source, tenant_id, partition_date, size_bytes, mtime_ns, run_id) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((*row, "bench"))


def arrive(root: Path, tenants: list[str], day: dt.date) -> list[Path]:
    """Yesterday's file for every tenant: written beside the zone, then renamed in."""
    staging = WORK / "ticks" / "staging"
    staging.mkdir(exist_ok=True)
    stamp = landed_ns(day)
    paths = []
    for tenant in tenants:
        written = staging / f"{tenant}.jsonl"
        written.write_bytes(file_body(tenant, day))
        os.utime(written, ns=(stamp, stamp))
        folder = root / tenant / day.isoformat()
        folder.mkdir(exist_ok=True)
        paths.append(folder / "events.jsonl")
        written.rename(paths[-1])
    return paths


def timed(fn, *args):
    began = time.perf_counter()
    result = fn(*args)
    return result, round(time.perf_counter() - began, 3), round(os.getloadavg()[0], 2)


def outcome(result) -> dict:
    from dagster import SkipReason

    if isinstance(result, SkipReason):
        return {"skip": (result.skip_message or "")[:120]}
    return {
        "runs": len(result.run_requests),
        "tenant_days": sum(_tenant_days(r) for r in result.run_requests),
    }


def _tenant_days(request) -> int:
    covered = request.tags.get("landing/tenants")
    return int(covered) if covered else 1


class Implementation:
    """One sensor implementation with its own cursor, ticking like the daemon does."""

    def __init__(self, name, module, landing, postgres):
        self.name, self.module = name, module
        self.landing, self.postgres = landing, postgres
        self.cursor = module.LandingCursor()

    def tick(self, partitions: list[str], now: float):
        existing = set(partitions) if self.name == "before" else list(partitions)
        result = self.module.evaluate_landing(
            self.landing, self.postgres, existing, self.cursor, now
        )
        self.cursor = self.module.LandingCursor.load(self.cursor.dump())
        return result

    def prime(self, files: list[tuple], partitions: list[str], now: float) -> dict:
        """Bring the cursor to 'everything seen'. main's first tick would query once per
        tenant-day (400,000 queries), so its cursor is set to what it would reach."""
        if self.name == "before":
            top = max(stamp for *_, stamp in files)
            self.cursor.mtime_ns = top
            self.cursor.at_mtime = [src for src, *_, stamp in files if stamp == top]
            return {}
        began, ticks = time.perf_counter(), 0
        while True:  # a tick cut short by its budget goes on at the next
            ticks += 1
            skipped = outcome(self.tick(partitions, now)).get("skip", "")
            if skipped and "going on next tick" not in skipped:
                break
        return {"first_ticks": ticks, "first_ticks_s": round(time.perf_counter() - began, 3)}


def measure_size(impls, root, tenants, days, now) -> dict:
    arrival_day = days[-1] + dt.timedelta(days=1)
    row = {"tenants": len(tenants), "days": len(days), "files": len(tenants) * len(days)}
    time.sleep(2.5)  # past the sensor's 2 s clock slack: the tree is no longer "just changed"
    for impl in impls:
        row[impl.name] = measured = impl.prime(impl.files, tenants, now)
        quiet, seconds, load = timed(impl.tick, tenants, now)
        measured.update(quiet_s=seconds, quiet_load=load, quiet=outcome(quiet))
        measured["cursor_bytes"] = len(impl.cursor.dump())
        paths = arrive(root, tenants, arrival_day)
        arrival, seconds, load = timed(impl.tick, tenants, now)
        measured.update(arrival_s=seconds, arrival_load=load, arrival=outcome(arrival))
        measured["arrival_cursor_bytes"] = len(impl.cursor.dump())
        for path in paths:  # back to the quiet zone for the next implementation or size
            path.unlink()
            path.parent.rmdir()
        impl.tick(tenants, now)
    return row


def measure(args) -> dict:
    os.environ["PLATFORM_START_DATE"] = START_DATE
    commit = subprocess.run(  # the code measured, whatever is committed while it runs
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()

    sizes = [int(n) for n in args.tenants.split(",") if n]
    rows = measure_ticks(args, sizes) if sizes else []
    cases = [tuple(int(n) for n in case.split(":")) for case in args.runs.split(",") if case]
    if cases:  # stored case by case in RUN_RESULTS, not in this part's results
        measure_daily_runs(cases, args.events, args.record)
        write_section("scale-daily-run", daily_run_report(json.loads(RUN_RESULTS.read_text())))
    return {
        "rows": rows,
        "daily_runs": [],
        "events_per_tenant": args.events,
        "before_commit": BEFORE_COMMIT,
        "after_commit": commit,
        "runs_commit": commit,
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
    }


def measure_ticks(args, sizes: list[int]) -> list[dict]:
    """The quiet and the daily-arrival tick at each size of one growing tree."""
    from analytics_platform.resources.landing import LandingZoneResource
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.sensors import landing as after_module

    now = time.time()
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    days = [today - dt.timedelta(days=args.days + 1 - i) for i in range(args.days)]
    shutil.rmtree(WORK / "ticks", ignore_errors=True)
    root = WORK / "ticks" / "landing"
    root.mkdir(parents=True)
    modules = {"after": after_module}
    if "before" in args.impl:
        modules["before"] = load_before_module()
    rows = []
    try:
        with fresh_database() as url:
            postgres = PostgresResource(url=url)
            postgres.migrate_warehouse()
            landing = LandingZoneResource(root=str(root))
            impls = [
                Implementation(name, modules[name], landing, postgres)
                for name in args.impl.split(",")
            ]
            all_tenants, all_files = [], []
            for size in sizes:
                new = [tenant_name(i) for i in range(len(all_tenants), size)]
                files, generate_s, _ = timed(generate, root, new, days)
                register(postgres, new, files)
                all_tenants += new
                all_files += files
                for impl in impls:
                    impl.files = all_files
                row = measure_size(impls, root, all_tenants, days, now)
                row["generate_s"] = generate_s
                row["generated_files"] = len(files)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(WORK / "ticks", ignore_errors=True)
    return rows


def execute_daily_runs(instance, tenants: list[str], max_tenants: int) -> dict:
    """The daily-arrival tick for `tenants` (their files landed), then each run it requests
    executed in-process on `instance`, one after another, through serving; with each
    run's step times (summed over runs per step: where the time goes)."""
    from analytics_platform.definitions import defs
    from analytics_platform.resources.landing import LandingZoneResource
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.sensors.landing import LandingCursor, evaluate_landing

    os.environ["LANDING_RUN_MAX_TENANTS"] = str(max_tenants)
    landing = LandingZoneResource(root=os.environ["LANDING_DIR"], settle_seconds=0)
    postgres = PostgresResource(url=os.environ["DATABASE_URL"])
    registered = instance.get_dynamic_partitions("tenants")
    cursor = LandingCursor(seen_ns=time.time_ns() - 3_600_000_000_000)  # only today's files
    tick, tick_s, _ = timed(evaluate_landing, landing, postgres, registered, cursor, time.time())
    job = defs.resolve_job_def("tenant_day_pipeline")
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    runs, steps = [], {}
    began = time.perf_counter()
    for request in tick.run_requests:
        result, seconds, load = timed(
            lambda r: job.execute_in_process(
                instance=instance, partition_key=r.partition_key, tags=r.tags, run_config=quiet
            ),
            request,
        )
        assert result.success, request.run_key
        runs.append({"tenants": _tenant_days(request), "s": seconds, "load": load})
        for step, step_s in step_seconds(instance, result.run_id).items():
            steps[step] = round(steps.get(step, 0.0) + step_s, 2)
        print(json.dumps({**runs[-1], "steps": step_seconds(instance, result.run_id)}), flush=True)
    return {
        "tenants": len(tenants),
        "max_tenants": max_tenants,
        "tick_s": tick_s,
        "runs": len(runs),
        "total_s": round(time.perf_counter() - began, 1),
        "per_run_s": [r["s"] for r in runs],
        "load": [r["load"] for r in runs],
        "step_s": steps,
    }


def measure_daily_runs(cases: list[tuple[int, int]], events: int, record: str) -> list[dict]:
    """Part 3: for each (tenants, LANDING_RUN_MAX_TENANTS), new tenants' files of yesterday
    (`events` events each), the tick, and the runs executed in-process on a Postgres-backed
    instance (the project's dagster.yaml), raw -> dbt -> ClickHouse. One warehouse, one
    chDB folder and one Dagster storage for all cases; each case its own tenants, already
    provisioned (their ClickHouse databases migrated, untimed) as a daily run finds them.
    Each case is stored as it ends, as `record`'s row for its size (`store_case`)."""
    work = WORK / "runs"
    shutil.rmtree(work, ignore_errors=True)
    (work / "home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", work / "home" / "dagster.yaml")
    with fresh_database() as warehouse, fresh_database() as storage:
        use_platform(warehouse, work)
        os.environ.update(DAGSTER_POSTGRES_URL=storage, DAGSTER_ARTIFACTS_DIR=str(work / "dg"))
        try:
            return _run_cases(work, warehouse, cases, events, record)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def provision(postgres, tenants: list[str]) -> float:
    """Create and migrate the tenants' ClickHouse databases in one session: set-up, untimed
    in the run (a daily run serves tenants provisioned long before). Its seconds."""
    from analytics_platform.resources.clickhouse import ClickHouseResource
    from analytics_platform.tenants.migrations import migrate_tenant

    began = time.perf_counter()
    clickhouse = ClickHouseResource(url=os.environ["CLICKHOUSE_URL"])
    with clickhouse.session() as session:
        for tenant in tenants:
            migrate_tenant(postgres, clickhouse, session, tenant)
    return round(time.perf_counter() - began, 1)


def _run_cases(work: Path, warehouse: str, cases, events: int, record: str) -> list[dict]:
    from dagster import DagsterInstance

    from analytics_platform.demo.generator import generate_landing
    from analytics_platform.resources.postgres import PostgresResource

    postgres = PostgresResource(url=warehouse)
    postgres.migrate_warehouse()
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    rows = []
    with DagsterInstance.from_config(str(work / "home")) as instance:
        # A warm-up case first (imports, the first dbt parse, ClickHouse tables): not reported.
        for index, (count, max_tenants) in enumerate([(1, 1), *cases]):
            tenants = [f"r{index}_{i:04d}" for i in range(count)]
            load_before = os.getloadavg()
            began = time.perf_counter()
            register(postgres, tenants, [])
            instance.add_dynamic_partitions("tenants", tenants)
            generate_landing(
                Path(os.environ["LANDING_DIR"]), tenants, [yesterday], events_per_day=events
            )
            provision_s = provision(postgres, tenants)
            setup_s = round(time.perf_counter() - began, 1)
            row = execute_daily_runs(instance, tenants, max_tenants)
            row.update(
                setup_s=setup_s,
                provision_s=provision_s,
                load_average_before=[round(x, 2) for x in load_before],
                events_per_tenant=events,
            )
            print(json.dumps(row), flush=True)
            if index:
                rows.append(store_case(record, row))
    return rows


def store_case(record: str, row: dict) -> dict:
    """`row` as `record`'s case for its (tenants, run size), every other case and record
    kept: one case measured now replaces only itself."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    row = {
        **row,
        "commit": commit,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    earlier = json.loads(RUN_RESULTS.read_text()).get(record, {}) if RUN_RESULTS.exists() else {}
    cases = {**earlier.get("cases", {}), f"{row['tenants']}:{row['max_tenants']}": row}
    replace_record(
        RUN_RESULTS,
        record,
        {
            "cases": cases,
            "machine": f"{os.cpu_count()} cores, shared",
            "load_average_before": row["load_average_before"],
            "measured_at": row["measured_at"],
        },
    )
    return row


def step_kinds(step_s: dict[str, float]) -> dict[str, float]:
    """Step seconds summed by kind: the raw load, dbt, the check steps, serving."""
    kinds = dict.fromkeys(("raw", "dbt", "checks", "serving"), 0.0)
    for step, seconds in step_s.items():
        kind = (
            "checks"
            if step.endswith("_checks")
            else "dbt"
            if step.startswith("analytics_dbt_")
            else "serving"
            if step.startswith("serving_")
            else "raw"
        )
        kinds[kind] += seconds
    return kinds


def daily_run_report(results: dict) -> str:
    """BENCHMARKS.md section `scale-daily-run`: every case of both records."""
    lines = [
        "## Scale: the daily run (`benchmarks/scale_sensor.py --runs`)",
        "",
        "One file per tenant for yesterday (1,000 events each, tenants already provisioned), "
        "the landing sensor's tick, then each run it requests executed in-process "
        "(`execute_in_process`, one after another) on a Postgres-backed instance (the "
        "project's dagster.yaml): raw, dbt staging and marts, checks, ClickHouse (chDB). "
        "Each row names the commit measured: `before` rows are earlier code kept for "
        "comparison (815bc74: before batched serving; b4e5066, 02db3e6, e5ae8c0: before "
        "the pooled, batched event log storage), `after` rows the code after each change. "
        "Set-up "
        "(landing files, registry, provisioning) is not in the times. Load average: the "
        "1-minute figure before the case, and during its runs. Outside steps: the run's "
        "start and Dagster's events written before and between steps (an "
        "ASSET_MATERIALIZATION_PLANNED per asset and tenant-day, one statement per batch "
        "since dbbee15). Target: 1,000 tenants in <= 10 minutes.",
        "",
        "| code | tenants | LANDING_RUN_MAX_TENANTS | runs | per run (min / median / max) | "
        "all runs | s per tenant | raw / dbt / checks / serving steps | outside steps | "
        "load before / during |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for record in RECORDS:
        cases = results.get(record, {}).get("cases", {})
        for r in sorted(cases.values(), key=lambda r: (r["tenants"], r["max_tenants"])):
            per = sorted(r["per_run_s"])
            kinds = step_kinds(r["step_s"])
            lines.append(
                f"| {record} at {r['commit']} | {r['tenants']:,} | {r['max_tenants']} | "
                f"{r['runs']} | {per[0]} / {per[len(per) // 2]} / {per[-1]} s | "
                f"{r['total_s']} s | {r['total_s'] / r['tenants']:.2f} | "
                + " / ".join(f"{kinds[k]:.0f}" for k in ("raw", "dbt", "checks", "serving"))
                + f" s | {r['total_s'] - sum(kinds.values()):.0f} s | "
                f"{r['load_average_before'][0]} / {min(r['load'])}-{max(r['load'])} |"
            )
    return "\n".join([*lines, "", *record_lines(results)])


def _tick_row(row: dict, name: str, m: dict) -> str:
    first = f"{m['first_ticks_s']} s ({m['first_ticks']} ticks)" if m.get("first_ticks") else "-"
    return (
        f"| {row['tenants']:,} x {row['days']} | {row['files']:,} | {name} | "
        f"{m['quiet_s']} s [{m['quiet_load']}] | {m['arrival_s']} s [{m['arrival_load']}] | "
        f"{m['arrival'].get('runs', 'none: ' + m['arrival'].get('skip', ''))} | "
        f"{m['cursor_bytes']:,} / {m.get('arrival_cursor_bytes', '-')} | {first} |"
    )


def report(measured: dict) -> str:
    recorded = {row["tenants"]: row for row in measured.get("before_recorded", {}).get("rows", [])}
    lines = [
        "## Scale: landing sensor tick (`benchmarks/scale_sensor.py`)",
        "",
        "One file per tenant-day, all loaded and seen; `evaluate_landing` timed (listing, "
        "registry, already-loaded query, digests, run requests). Quiet: nothing new. "
        "Arrival: one new file per tenant for yesterday, renamed in. "
        f"`before` = main at {measured['before_commit']} (main's sensor module, loaded from "
        f"git), `after` = this branch at {measured['after_commit']}. Target: <= 5 s at "
        f"1,000 x 400. {measured['cpus']} cores shared with other jobs (1-min load average "
        "in brackets): contaminated figures; main's were measured when the machine was "
        "quieter than for this branch's.",
        "",
        "| tenants x days | files | code | quiet tick | arrival tick | runs requested | "
        "cursor bytes (quiet / arrival) | first tick(s) from an empty cursor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in measured["rows"]:
        before = row.get("before") or recorded.get(row["tenants"], {}).get("before")
        if before:
            lines.append(_tick_row(row, "before", before))
        lines.append(_tick_row(row, "after", row["after"]))
    lines += [
        "",
        "Generating the tree (mkdir, write, utime; not part of any tick): "
        + ", ".join(
            f"{row['generated_files']:,} files in {row['generate_s']} s" for row in measured["rows"]
        )
        + ".",
    ]
    if measured.get("daily_runs"):
        lines += [
            "",
            "### The daily run: one file per tenant for yesterday, through serving",
            "",
            f"{measured['events_per_tenant']:,} events per tenant, code at "
            f"{measured.get('runs_commit', measured['after_commit'])}. The sensor's tick, then "
            "each run it requests executed in-process (`execute_in_process`, one after "
            "another) on a Postgres-backed instance (the project's dagster.yaml): raw, dbt "
            "staging and marts, checks, ClickHouse (chDB). Not launched by the daemon: "
            "under it up to 4 runs go side by side (serving one at a time).",
            "",
            "| tenants | LANDING_RUN_MAX_TENANTS | runs | per run (min / median / max) | "
            "all runs | s per tenant | tick | load during |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in measured["daily_runs"]:
            per = sorted(r["per_run_s"])
            lines.append(
                f"| {r['tenants']} | {r['max_tenants']} | {r['runs']} | {per[0]} / "
                f"{per[len(per) // 2]} / {per[-1]} s | {r['total_s']} s | "
                f"{r['total_s'] / r['tenants']:.2f} | {r['tick_s']} s | "
                f"{min(r['load'])}-{max(r['load'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tenants", default="10,100,300,1000")
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--impl", default="after", help="before,after measures main too")
    parser.add_argument(
        "--runs",
        default="10:1,10:10,100:10,100:50,100:100",
        help="daily-run cases, tenants:LANDING_RUN_MAX_TENANTS (empty: none)",
    )
    parser.add_argument(
        "--record", choices=RECORDS, default="after", help="the daily runs' row set"
    )
    parser.add_argument("--events", type=int, default=1000, help="events per tenant-day")
    parser.add_argument("--quick", action="store_true", help="10 and 30 tenants x 20 days")
    args = parser.parse_args()
    if args.quick:
        args.tenants, args.days, args.runs, args.events = "10,30", 20, "3:3", 100
    measured = measure(args)
    if not args.tenants:  # daily runs only: the ticks' results and section stay as they were
        return
    if RESULTS.exists():  # a part not measured now (`--tenants ""`, `--runs ""`) is kept
        earlier = json.loads(RESULTS.read_text())
        for part, commit in (("rows", "after_commit"), ("daily_runs", "runs_commit")):
            if not measured[part] and earlier.get(part):
                measured[part] = earlier[part]
                measured[commit] = earlier.get(commit, earlier["after_commit"])
    if "before" not in args.impl and BEFORE_RESULTS.exists():
        measured["before_recorded"] = json.loads(BEFORE_RESULTS.read_text())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(measured, indent=2) + "\n")
    write_section("scale-sensor", report(measured))
    print(report(measured))


if __name__ == "__main__":
    main()
