"""Hostile-input benchmark: peak RSS and time of raw_file_events on files built to hurt.

    .venv/bin/python benchmarks/hostile.py [--expanded-gib 1.0] [--long-line-mib 256]

Builds, under benchmarks/.work/hostile (streamed, never held whole):
- a gzip bomb of ONE line expanding to --expanded-gib GiB (no newline at all);
- a gzip bomb of many normal-length tracker lines expanding to --expanded-gib GiB;
- a --long-line-mib MiB single line, uncompressed, as JSONL and as CSV (after a header).
Each file is its own tenant-day, materialized (raw_file_events, in-process, as a run
would) in a subprocess of its own with the `landing` resource's defaults, so the bombs
stop at the decompression caps. The two bombs run again with the caps lifted
(`max_compression_ratio` and `max_expanded_bytes` out of reach), expanding all the way:
memory must stay flat then too. Peak RSS is the child's process tree (sampled every
50 ms, at least its VmHWM). Uses DATABASE_URL's server (a fresh database, dropped
afterwards) or the machine's Postgres at 127.0.0.1:5432. Writes
benchmarks/results/hostile.json and its section of BENCHMARKS.md. Target (issue 13):
peak RSS under 500 MB for every file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

from common import own_peak_mb, run_and_report, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "hostile"
RESULTS = ROOT / "benchmarks" / "results" / "hostile.json"
DAY = dt.date(2026, 6, 1)
TARGET_RSS_MB = 500
CHUNK = 1 << 20
UNCAPPED = {"max_compression_ratio": 1e12, "max_expanded_bytes": 1 << 50}
EVENT = {
    "eventId": "evt_bomb",
    "eventType": "page_view",
    "timestamp": f"{DAY}T10:00:00.000Z",
    "visitorId": "v_0000001",
    "sessionId": "s_0000001_1",
    "url": "https://shop.example/pricing?ref=bench",
    "path": "/pricing",
    "screen": "1440x900",
}


def _write_chunks(path: Path, chunks, compressed: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=9) if compressed else path.open("wb") as stream:
        for chunk in chunks:
            stream.write(chunk)


def _repeat(unit: bytes, total: int):
    block = unit * max(1, CHUNK // len(unit))
    left = total
    while left > 0:
        piece = block[: min(len(block), left)]
        left -= len(piece)
        yield piece


def build(landing: Path, expanded: int, long_line: int) -> dict[str, dict[str, object]]:
    """The corpus: case -> its tenant, file (relative to `landing`) and expanded size."""
    line = (json.dumps(EVENT) + "\n").encode()
    header = b"event_id,event_type,occurred_at,visitor_id\n"
    cases = {
        "gzip_bomb_one_line": ("bomb_one", "one_line.jsonl.gz", _repeat(b"a", expanded), True),
        "gzip_bomb_many_lines": (
            "bomb_lines",
            "lines.jsonl.gz",
            _repeat(line, expanded // len(line) * len(line)),
            True,
        ),
        "long_line_jsonl": (
            "long_jsonl",
            "long.jsonl",
            _repeat(b"a", long_line),
            False,
        ),
        "long_line_csv": (
            "long_csv",
            "long.csv",
            (header, *_repeat(b"a", long_line), b"\nc1,page_view,2026-06-01T10:00:00.000Z,v\n"),
            False,
        ),
    }
    corpus = {}
    for name, (tenant, file_name, chunks, compressed) in cases.items():
        path = landing / tenant / DAY.isoformat() / file_name
        if not path.exists():
            print(f"building {path} ...", flush=True)
            _write_chunks(path, chunks, compressed)
        corpus[name] = {
            "tenant": tenant,
            "file": path.relative_to(landing).as_posix(),
            "file_mb": round(path.stat().st_size / 2**20, 2),
            "expanded_mib": round((expanded if compressed else long_line) / 2**20),
        }
    return corpus


def child(url: str, landing: str, tenant: str, settings: str) -> dict[str, object]:
    """Materialize raw_file_events for the tenant's day; what it loaded and quarantined."""
    import psycopg
    from dagster import DagsterInstance, materialize

    from analytics_platform.assets.raw import raw_file_events
    from analytics_platform.partitions import TenantDay
    from analytics_platform.resources.landing import LandingZoneResource
    from analytics_platform.resources.postgres import PostgresResource

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tenants", [tenant])
        began = time.perf_counter()
        result = materialize(
            [raw_file_events],
            partition_key=TenantDay(tenant, DAY).partition_key,
            instance=instance,
            resources={
                "postgres": PostgresResource(url=url),
                "landing": LandingZoneResource(root=landing, **json.loads(settings)),
            },
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        seconds = time.perf_counter() - began
    assert result.success
    (materialization,) = result.asset_materializations_for_node("raw_file_events")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    with psycopg.connect(url) as conn:
        reasons, longest = conn.execute(
            "SELECT coalesce(string_agg(DISTINCT reason, ','), ''), "
            "coalesce(max(length(raw_text)), 0) FROM platform.quarantine WHERE tenant_id = %s",
            (tenant,),
        ).fetchone()
    return {
        "run_s": round(seconds, 2),
        "rows_read": meta["rows_read"],
        "rows_loaded": meta["rows_loaded"],
        "rows_quarantined": meta["rows_quarantined"],
        "files_quarantined_whole": meta["files_quarantined_whole"],
        "reasons": reasons,
        "longest_quarantine_text": longest,
        "vmhwm_mb": own_peak_mb(),
    }


def run(args, url: str) -> dict[str, object]:
    from analytics_platform.resources.postgres import PostgresResource

    PostgresResource(url=url).ensure_warehouse()
    expanded, long_line = int(args.expanded_gib * 2**30), args.long_line_mib << 20
    landing = WORK / f"landing-{expanded}-{long_line}"  # built once per pair of sizes
    corpus = build(landing, expanded, long_line)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [(name, case, {}) for name, case in corpus.items()]
    runs += [
        (f"{name}_uncapped", corpus[name], UNCAPPED)
        for name in ("gzip_bomb_one_line", "gzip_bomb_many_lines")
    ]
    measured = {}
    for name, case, settings in runs:
        print(f"{name} ...", flush=True)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            url,
            str(landing),
            case["tenant"],
            json.dumps(settings),
        ]
        measured[name] = {**case, "settings": settings, **run_measured(command, env)}
        print(f"{name}: {json.dumps(measured[name])}", flush=True)
    return {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "load_average_before": [f"{x:.2f}" for x in os.getloadavg()],
        "target_peak_rss_mb": TARGET_RSS_MB,
        "cases": measured,
    }


def write_report(r: dict[str, object]) -> None:
    rows = []
    for name, x in r["cases"].items():
        outcome = (
            f"{x['rows_loaded']:,} loaded, {x['rows_quarantined']:,} quarantined"
            f"{', file quarantined whole' if x['files_quarantined_whole'] else ''}"
            f" ({x['reasons'] or '-'})"
        )
        rows.append(
            f"| {name} | {x['file_mb']} | {x['expanded_mib']:,} | {outcome} | "
            f"{x['longest_quarantine_text']:,} | {x['wall_s']:.1f} | {x['peak_rss_mb']:.0f} |"
        )
    worst = max(x["peak_rss_mb"] for x in r["cases"].values())
    met = "met" if worst < r["target_peak_rss_mb"] else "NOT met"
    section = "\n".join(
        [
            "## Hostile input: gzip bombs and lines too long to hold",
            "",
            f"`benchmarks/hostile.py`; {r['machine']}; load average before the run "
            f"{' '.join(r['load_average_before'])}; measured {r['measured_at']}. Each file is "
            "one tenant-day, materialized by raw_file_events in a process of its own with "
            "the `landing` defaults (max_line_bytes 1 MiB, max_compression_ratio 100 past "
            "64 MiB, max_expanded_bytes 8 GiB); `_uncapped` runs lift the decompression caps. "
            "Seconds are the child's wall time (Python and Dagster start-up included); peak "
            "RSS is its process tree (sampled every 50 ms, at least its VmHWM). A capped "
            "bomb is read up to 100 x its compressed size (its rows converted and COPYed "
            "inside the file's savepoint, then rolled back): the many-lines bomb's seconds "
            "are that first ~400 MiB.",
            "",
            "| file | on disk MB | expanded MiB | outcome (reasons) | longest quarantine "
            "text (chars) | seconds | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"- peak RSS < {r['target_peak_rss_mb']} MB for every file: worst {worst:.0f} MB "
            f"— **{met}**",
        ]
    )
    write_section("hostile", section)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:])), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expanded-gib", type=float, default=1.0)
    parser.add_argument("--long-line-mib", type=int, default=256)
    run_and_report(WORK, RESULTS, run, parser.parse_args(), write_report)


if __name__ == "__main__":
    main()
