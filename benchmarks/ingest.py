"""Ingest benchmark: raw_file_events vs `psql \\copy` (the ceiling) vs dlt, and peak RSS.

    .venv/bin/pip install -e '.[bench]'    # dlt, for the comparison
    .venv/bin/python benchmarks/ingest.py [--rows 1000000] [--big-gb 2.0] [--skip-big]
                                          [--skip-dlt] [--dlt-rows N] [--repeat 3]

Generates tracker-shaped events once (seeded) under benchmarks/.work/ingest: a
camelCase JSONL file (attribution.utmParams, a few properties outside the
contract, one defective line in 10,000), the same events as a snake_case CSV,
an equivalent CSV already in raw.file_events' columns for the ceiling, and
(unless --skip-big) one JSONL and one CSV file of about --big-gb GiB each for the
memory check.
Uses DATABASE_URL's server (a fresh database, dropped afterwards) or the
machine's Postgres at 127.0.0.1:5432.

Each loader runs in its own subprocess, so its peak RSS is its own:
- raw_file_events: the Dagster asset materialized in-process for one partition
  (the real code: landing resource, one transaction, quarantine, drift check);
- ceiling: `psql -c "\\copy raw.file_events (...) FROM 'ceiling.csv' (FORMAT csv, HEADER)"`;
- dlt: `dlt.pipeline(destination="postgres")` with its defaults, fed the JSONL
  file's records (json.loads per line); on --dlt-rows of them if fewer than --rows.
The table is truncated and a CHECKPOINT taken before each load; the ceiling and
raw_file_events loads run --repeat times, round-robin, and the fastest counts. Writes
benchmarks/results/ingest.json and its section of BENCHMARKS.md. Targets
(issues 4 and 14): CSV >= 0.9 of the ceiling, JSONL >= 0.55, both >= 10x dlt, peak RSS
under 500 MB whatever the file size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from common import own_peak_mb, run_and_report, run_measured, write_section

from analytics_platform.ingest.contract import CONTRACT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "ingest"
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
DAY = dt.date(2026, 6, 1)
TENANTS = {
    "jsonl": "bench_jsonl",
    "csv": "bench_csv",
    "big_jsonl": "bench_big",
    "big_csv": "bench_big_csv",
}
DEFECT_EVERY = 10_000
SEED = 42
TARGETS = {"csv_to_ceiling": 0.9, "jsonl_to_ceiling": 0.55, "to_dlt": 10.0, "peak_rss_mb": 500}

PAGES = ("/", "/pricing", "/features", "/blog/launch", "/docs", "/signup", "/checkout")
TITLES = ("Home", 'Pricing "Pro"', "Features\tall", "Caf\u00e9 \u2014 launch", "Docs \\ API")
ARRIVALS = (
    (None, None, None),
    (None, None, "https://www.google.com/"),
    ("google", "cpc", "https://www.google.com/"),
    ("facebook", "social", "https://www.facebook.com/"),
    ("newsletter", "email", None),
    (None, None, "https://news.ycombinator.com/"),
)
LOCALES = ("en-US", "de-DE", "fr-FR", "ja-JP")


# --- data -------------------------------------------------------------------------------


def tracker_event(rng: random.Random, number: int, tenant: str) -> dict[str, object]:
    """One event as the JavaScript tracker posts it (see demo/generator.py `_tracker_json`)."""
    moment = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc) + dt.timedelta(
        milliseconds=rng.randrange(86_400_000)
    )
    visitor = rng.randrange(number // 8 + 1)
    utm_source, utm_medium, referrer = ARRIVALS[rng.randrange(len(ARRIVALS))]
    path = PAGES[rng.randrange(len(PAGES))]
    purchase = rng.random() < 0.03
    utm = {"utm_source": utm_source, "utm_medium": utm_medium} if utm_source else {}
    if utm_medium == "cpc":
        utm["utm_campaign"] = "black_friday"
    payload = {
        "eventId": f"evt_{number:09d}",
        "tenantId": tenant,
        "eventType": "purchase" if purchase else "page_view",
        "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "visitorId": f"v_{visitor:07d}",
        "userId": f"user_{visitor:07d}" if visitor % 3 == 0 else None,
        "sessionId": f"s_{visitor:07d}_{number % 5}",
        "url": f"https://{tenant}.example{path}?ref=bench",
        "path": path,
        "referrer": referrer,
        "attribution": {"utmParams": utm} if utm else None,
        "experiment": "checkout_button" if visitor % 2 == 0 else None,
        "variant": ("control", "treatment")[visitor % 4 // 2] if visitor % 2 == 0 else None,
        "revenue": rng.choice((19.0, 49.0, 99.0, 249.5)) if purchase else None,
        "currency": "EUR" if purchase else None,
        "screen": "1440x900",
        "locale": LOCALES[number % len(LOCALES)],
        "pageTitle": TITLES[number % len(TITLES)],
        "viewport": {"w": 1440, "h": 900 - number % 200},
    }
    return {k: v for k, v in payload.items() if v is not None}


def defect(number: int, event: dict[str, object]) -> tuple[str, dict[str, object] | str]:
    """A line that must be quarantined, cycling through four reasons."""
    kind = number // DEFECT_EVERY % 4
    if kind == 0:
        return "invalid_json", json.dumps(event)[:-9]
    if kind == 1:
        return "missing_field", {k: v for k, v in event.items() if k != "visitorId"}
    if kind == 2:
        return "bad_timestamp", {**event, "timestamp": "yesterday at noon"}
    return "out_of_window", {**event, "timestamp": "2026-06-03T10:00:00.000Z"}


# The canonical columns, with the snake_case input name of the session hint.
CSV_COLUMNS = tuple("session_id" if c == "session_hint" else c for c in CONTRACT_COLUMNS)
EXTRA = ("screen", "locale", "pageTitle", "viewport")


def snake(event: dict[str, object]) -> dict[str, object]:
    """The same event as the CSV exporter writes it: snake_case, properties as JSON text."""
    utm = event.get("attribution", {}).get("utmParams", {})
    revenue = event.get("revenue")
    return {
        "event_id": event["eventId"],
        "tenant_id": event.get("tenantId"),
        "event_type": event["eventType"],
        "occurred_at": event["timestamp"],
        "visitor_id": event.get("visitorId"),
        "user_id": event.get("userId"),
        "session_id": event["sessionId"],
        "url": event["url"],
        "path": event["path"],
        "referrer": event.get("referrer"),
        **utm,
        "experiment_id": event.get("experiment"),
        "variant": event.get("variant"),
        "revenue": None if revenue is None else str(revenue),
        "currency": event.get("currency"),
        "properties": json.dumps({k: event[k] for k in EXTRA}, separators=(",", ":")),
    }


def generate(rows: int, work: Path) -> dict[str, object]:
    """Write the JSONL, CSV and ceiling files once; returns their paths and counts."""
    import csv

    landing = work / "landing"
    manifest = work / "manifest.json"
    if manifest.exists():
        known = json.loads(manifest.read_text())
        if known.get("rows") == rows and known.get("seed") == SEED:
            return known
    shutil.rmtree(landing, ignore_errors=True)
    paths = {}
    for kind in ("jsonl", "csv"):
        folder = landing / TENANTS[kind] / DAY.isoformat()
        folder.mkdir(parents=True)
        paths[kind] = folder / f"events.{kind}"
    ceiling_path = work / "ceiling.csv"
    rng = random.Random(SEED)
    defects = 0
    ceiling_columns = (*CSV_COLUMNS, "_partition_date", "_source", "_source_line", "_run_id")
    with (
        open(paths["jsonl"], "w", encoding="utf-8") as jsonl,
        open(paths["csv"], "w", encoding="utf-8", newline="") as csv_file,
        open(ceiling_path, "w", encoding="utf-8", newline="") as ceiling_file,
    ):
        csv_out = csv.writer(csv_file, lineterminator="\n")
        csv_out.writerow(CSV_COLUMNS)
        ceiling_out = csv.writer(ceiling_file, lineterminator="\n")
        ceiling_out.writerow(ceiling_columns)
        for number in range(1, rows + 1):
            event = tracker_event(rng, number, TENANTS["jsonl"])
            if number % DEFECT_EVERY == 0:
                defects += 1
                _, bad = defect(number, event)
                jsonl.write((bad if isinstance(bad, str) else json.dumps(bad)) + "\n")
                bad_csv = snake({**event, "tenantId": TENANTS["csv"]})
                bad_csv["visitor_id"] = None
                csv_out.writerow(
                    ["" if bad_csv.get(c) is None else bad_csv[c] for c in CSV_COLUMNS]
                )
                continue
            jsonl.write(json.dumps(event, ensure_ascii=False) + "\n")
            row = snake({**event, "tenantId": TENANTS["csv"]})
            csv_out.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
            row["tenant_id"] = "bench_ceiling"
            ceiling_out.writerow(
                [
                    *("" if row.get(c) is None else row[c] for c in CSV_COLUMNS),
                    DAY.isoformat(),
                    "bench_ceiling/2026-06-01/ceiling.csv",
                    number,
                    "ceiling",
                ]
            )
    known = {
        "rows": rows,
        "seed": SEED,
        "defects": defects,
        "valid": rows - defects,
        "jsonl": str(paths["jsonl"]),
        "csv": str(paths["csv"]),
        "ceiling": str(ceiling_path),
        "bytes": {k: Path(p).stat().st_size for k, p in {**paths, "ceiling": ceiling_path}.items()},
    }
    manifest.write_text(json.dumps(known, indent=2))
    return known


def generate_big(source: Path, work: Path, gigabytes: float, kind: str) -> Path:
    """One `kind` file of about `gigabytes` GiB: the events file repeated (ids repeat too)."""
    tenant = TENANTS[f"big_{kind}"]
    folder = work / "landing" / tenant / DAY.isoformat()
    path = folder / f"events.{kind}"
    target = int(gigabytes * 1024**3)
    if path.exists() and abs(path.stat().st_size - target) < source.stat().st_size:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        old, new = f'"tenantId": "{TENANTS["jsonl"]}"'.encode(), f'"tenantId": "{tenant}"'.encode()
    else:
        old, new = f",{TENANTS['csv']},".encode(), f",{tenant},".encode()
    written = 0
    with open(path, "wb") as out:
        while written < target:
            with open(source, "rb") as lines:  # line by line: this process stays small
                if kind == "csv":
                    header = lines.readline()
                    if not written:
                        written += out.write(header)
                for line in lines:
                    line = line.replace(old, new)
                    if written + len(line) > target:
                        return path
                    written += out.write(line)
    return path


# --- children: one loader each ----------------------------------------------------------


def child_raw(url: str, landing: str, tenant: str) -> dict[str, object]:
    """Materialize raw_file_events for one partition, in-process, as a run would."""
    from dagster import DagsterEventType, DagsterInstance, materialize

    import analytics_platform.assets.raw as raw_module
    from analytics_platform.assets.raw import raw_file_events
    from analytics_platform.partitions import TenantDay
    from analytics_platform.resources.landing import LandingZoneResource
    from analytics_platform.resources.postgres import PostgresResource

    load_seconds: list[float] = []
    real_load = raw_module.load_tenant_day

    def timed_load(*args, **kwargs):
        began = time.perf_counter()
        report = real_load(*args, **kwargs)
        load_seconds.append(time.perf_counter() - began)
        return report

    raw_module.load_tenant_day = timed_load  # the real function, timed
    key = TenantDay(tenant, DAY).partition_key
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", [tenant])
        began = time.perf_counter()
        result = materialize(
            [raw_file_events],
            partition_key=key,
            instance=instance,
            resources={
                "postgres": PostgresResource(url=url),
                "landing": LandingZoneResource(root=landing),
            },
            raise_on_error=True,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        run_seconds = time.perf_counter() - began
        assert result.success
        started = step = None
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                started = entry.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                step = entry.timestamp - started
        metadata = result.asset_materializations_for_node("raw_file_events")[0].metadata
    return {
        "rows_read": metadata["rows_read"].value,
        "rows_loaded": metadata["rows_loaded"].value,
        "rows_quarantined": metadata["rows_quarantined"].value,
        "load_s": round(load_seconds[0], 3),
        "step_s": round(step, 3),
        "run_s": round(run_seconds, 3),
        "vmhwm_mb": own_peak_mb(),
    }


def child_dlt(url: str, jsonl: str, rows: int) -> dict[str, object]:
    """dlt's default Postgres pipeline fed the JSONL file's records (the first `rows` lines)."""
    import dlt

    def records():
        with open(jsonl, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if number > rows:
                    return
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # dlt has no quarantine; the broken line is skipped

    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    # dlt insists on a password; trust authentication ignores it.
    credentials = (
        f"postgresql://{params.get('user', 'postgres')}:{params.get('password') or 'unused'}"
        f"@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{params['dbname']}"
    )
    pipelines_dir = WORK / "dlt" / uuid.uuid4().hex[:8]
    pipeline = dlt.pipeline(
        pipeline_name="ingest_bench",
        pipelines_dir=str(pipelines_dir),
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name="dlt_bench",
    )
    began = time.perf_counter()
    pipeline.run(records(), table_name="file_events")
    seconds = time.perf_counter() - began
    with pipeline.sql_client() as client:
        loaded = client.execute_sql("SELECT count(*) FROM file_events")[0][0]
    shutil.rmtree(pipelines_dir, ignore_errors=True)
    return {
        "rows_read": rows,
        "rows_loaded": loaded,
        "load_s": round(seconds, 3),
        "vmhwm_mb": own_peak_mb(),
    }


# --- parent -----------------------------------------------------------------------------


def reset(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE raw.file_events, platform.quarantine, platform.tenant_fields, "
            "platform.landing_files"
        )
        conn.execute("CHECKPOINT")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("dagster", "psycopg", "orjson", "pyarrow", "dlt"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    server = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout
    found["psql"] = server.strip()
    return found


def me(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def run(args, url: str) -> dict[str, object]:
    from analytics_platform.resources.postgres import PostgresResource

    PostgresResource(url=url).ensure_warehouse()
    print(f"generating {args.rows:,} events in {WORK} ...", flush=True)
    data = generate(args.rows, WORK)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    landing = str(WORK / "landing")
    loaders: dict[str, dict[str, object]] = {}

    def measure(name: str, command: list[str], rows: int) -> None:
        reset(url)
        print(f"{name} ...", flush=True)
        result = run_measured(command, env)
        seconds = result.get("step_s", result.get("load_s", result["wall_s"]))
        result["rows"] = rows
        result["seconds"] = seconds
        result["rows_per_s"] = round(rows / seconds)
        print(f"{name}: {json.dumps(result)}", flush=True)
        best = loaders.get(name)
        samples = [*(best or {}).get("samples_rows_per_s", []), result["rows_per_s"]]
        peak = max(result["peak_rss_mb"], (best or {}).get("peak_rss_mb", 0))
        if best is None or result["rows_per_s"] > best["rows_per_s"]:
            best = result
        loaders[name] = {**best, "samples_rows_per_s": samples, "peak_rss_mb": peak}

    columns = ",".join(
        (
            *("session_hint" if c == "session_id" else c for c in CSV_COLUMNS),
            "_partition_date",
            "_source",
            "_source_line",
            "_run_id",
        )
    )
    copy = f"\\copy raw.file_events ({columns}) FROM '{data['ceiling']}' WITH (FORMAT csv, HEADER)"
    # Round-robin, best of --repeat: on a shared machine a burst of someone else's
    # load then hits one sample of each loader rather than one loader's only sample.
    for _ in range(args.repeat):
        measure(
            "ceiling_psql_copy",
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", copy],
            data["valid"],
        )
        measure(
            "raw_file_events_csv", me("--child", "raw", url, landing, TENANTS["csv"]), args.rows
        )
        measure(
            "raw_file_events_jsonl", me("--child", "raw", url, landing, TENANTS["jsonl"]), args.rows
        )
    if not args.skip_dlt:
        dlt_rows = min(args.dlt_rows or args.rows, args.rows)
        measure(
            "dlt_postgres_jsonl", me("--child", "dlt", url, data["jsonl"], str(dlt_rows)), dlt_rows
        )
    big_files = {}
    if not args.skip_big:
        for kind in ("jsonl", "csv"):
            print(f"generating a {args.big_gb} GB {kind.upper()} file ...", flush=True)
            big_path = generate_big(Path(data[kind]), WORK, args.big_gb, kind)
            name = f"raw_file_events_big_{kind}"
            measure(name, me("--child", "raw", url, landing, TENANTS[f"big_{kind}"]), 0)
            big = loaders.pop(name)
            big["rows"] = big["rows_read"]
            big["rows_per_s"] = round(big["rows"] / big["seconds"])
            big["file_gib"] = round(big_path.stat().st_size / 1024**3, 2)
            big_files[kind] = big

    ceiling = loaders["ceiling_psql_copy"]["rows_per_s"]
    dlt_rate = loaders.get("dlt_postgres_jsonl", {}).get("rows_per_s")
    for _name, result in loaders.items():
        result["to_ceiling"] = round(result["rows_per_s"] / ceiling, 3)
        if dlt_rate:
            result["to_dlt"] = round(result["rows_per_s"] / dlt_rate, 1)
    return {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, {sys.platform}",
        "load_average_before": open("/proc/loadavg").read().split()[:3],
        "versions": versions(),
        "rows": args.rows,
        "repeat": args.repeat,
        "defective_rows": data["defects"],
        "file_bytes": data["bytes"],
        "loaders": loaders,
        "big_files": big_files,
    }


def verdicts(r: dict[str, object]) -> list[tuple[str, bool | None, str]]:
    loaders, big = r["loaders"], r["big_files"]
    csv_, jsonl = loaders["raw_file_events_csv"], loaders["raw_file_events_jsonl"]
    out = [
        (
            f"CSV >= {TARGETS['csv_to_ceiling']} of the ceiling",
            csv_["to_ceiling"] >= TARGETS["csv_to_ceiling"],
            f"{csv_['to_ceiling']:.2f}",
        ),
        (
            f"JSONL >= {TARGETS['jsonl_to_ceiling']} of the ceiling",
            jsonl["to_ceiling"] >= TARGETS["jsonl_to_ceiling"],
            f"{jsonl['to_ceiling']:.2f}",
        ),
    ]
    if "to_dlt" in csv_:
        low = min(csv_["to_dlt"], jsonl["to_dlt"])
        out.append(("both >= 10x dlt", low >= 10, f"{csv_['to_dlt']}x, {jsonl['to_dlt']}x"))
    else:
        out.append(("both >= 10x dlt", None, "dlt skipped"))
    rss = [csv_["peak_rss_mb"], jsonl["peak_rss_mb"], *(b["peak_rss_mb"] for b in big.values())]
    note = f"max {max(rss):.0f} MB" + (
        " ("
        + ", ".join(
            f"{b['file_gib']} GiB {kind.upper()} file: {b['peak_rss_mb']:.0f} MB"
            for kind, b in big.items()
        )
        + ")"
        if big
        else " (big files skipped)"
    )
    out.append(("peak RSS < 500 MB", max(rss) < 500 if big else None, note))
    return out


def write_report(r: dict[str, object]) -> None:
    def mark(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "NOT met")

    rows = []
    names = {
        "ceiling_psql_copy": "ceiling: `psql \\copy` of canonical CSV",
        "raw_file_events_csv": "raw_file_events, CSV",
        "raw_file_events_jsonl": "raw_file_events, JSONL",
        "dlt_postgres_jsonl": "dlt default Postgres pipeline, JSON records",
    }
    for name, x in r["loaders"].items():
        rows.append(
            f"| {names[name]} | {x['rows']:,} | {x['seconds']:.1f} | {x['rows_per_s']:,} | "
            f"{x['to_ceiling']:.2f} | {x.get('to_dlt', '-')} | {x['peak_rss_mb']:.0f} |"
        )
    for kind, big in r["big_files"].items():
        rows.append(
            f"| raw_file_events, one {big['file_gib']} GiB {kind.upper()} file | "
            f"{big['rows']:,} | {big['seconds']:.1f} | {big['rows_per_s']:,} | - | - | "
            f"{big['peak_rss_mb']:.0f} |"
        )
    raw = r["loaders"]["raw_file_events_jsonl"]
    section = "\n".join(
        [
            "## Ingest: raw_file_events vs the COPY ceiling and dlt",
            "",
            f"`benchmarks/ingest.py`, {r['rows']:,} tracker-shaped events per file "
            f"({r['defective_rows']} defective lines, quarantined); {r['machine']}; "
            f"load average before the run {' '.join(r['load_average_before'])}; "
            f"measured {r['measured_at']}. Each loader runs in its own process; seconds for "
            "raw_file_events are the asset step (load, quarantine, drift check, commit) of an "
            f"in-process materialization (JSONL: load_tenant_day {raw['load_s']:.1f}s of "
            f"{raw['step_s']:.1f}s step, {raw['run_s']:.1f}s whole run). Peak RSS is the "
            "loader's process tree (sampled every 50 ms, at least the main process's VmHWM; "
            "the most of any run). The ceiling and raw_file_events "
            f"ran {r['repeat']} times each, round-robin, and the fastest run counts "
            "(all runs' rows/s are in results/ingest.json); dlt and the big files ran once.",
            "",
            "| loader | rows | seconds | rows/s | x ceiling | x dlt | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *(f"- {label}: {value} — **{mark(ok)}**" for label, ok, value in verdicts(r)),
        ]
    )
    write_section("ingest", section)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        child = {"raw": child_raw, "dlt": child_dlt}[kind]
        if kind == "dlt":
            rest[-1] = int(rest[-1])
        print(json.dumps(child(*rest)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-gb", type=float, default=2.0)
    parser.add_argument("--skip-big", action="store_true", help="Skip the big-file RSS check.")
    parser.add_argument("--skip-dlt", action="store_true", help="Skip the dlt comparison.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Runs of the ceiling and raw_file_events loads, round-robin; the best counts.",
    )
    parser.add_argument(
        "--dlt-rows", type=int, default=None, help="Feed dlt only this many rows (rates compared)."
    )
    run_and_report(WORK, RESULTS, run, parser.parse_args(), write_report)


if __name__ == "__main__":
    main()
