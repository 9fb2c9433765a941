"""Collector benchmark: events/s and latency with durable acks, next to per-request inserts.

    .venv/bin/python benchmarks/collector.py [--seconds 15] [--soak-seconds 600]
                                             [--connections 32] [--quick]

Side by side in one run, on a fresh warehouse database (DATABASE_URL's server or the
machine's at 127.0.0.1:5432) with one active tenant and one write key:
- the collector, started as users start it (`analytics-platform collector`, its own
  process group on 127.0.0.1) on a fresh landing zone: a 2xx means fsynced;
- the design it replaces, `benchmarks/per_request_insert.py`: the same stack
  (Starlette under uvicorn) inserting every event into Postgres with SQLAlchemy,
  one commit per request.
Events are the demo's (`analytics_platform/demo/generator.py`), pre-serialized into
bodies of 1 and of 100 events. Load comes from `benchmarks/http_load.py`, a process of
its own on the same 2 cores (its CPU is reported), over keep-alive connections:
1. closed loop (`--connections` clients, each sending when answered): the most
   events/s each server acknowledges;
2. open loop at half that rate (constant arrivals): p50/p99 latency, counted from
   each request's scheduled send time (no coordinated omission);
3. a soak of the collector at a steady `--soak-rate` (default 10,000 events/s, half
   the throughput target) for `--soak-seconds`, sampling its RSS with psutil.
Then the collector is stopped with SIGTERM (it closes its segments) and every event
it acknowledged must be a line of a landing file (the per-request server's table
is counted the same way), so no result can come from dropping events.

`--quick` runs every phase for a few seconds (development; its numbers mean
little). Writes benchmarks/results/collector.json and its section of BENCHMARKS.md.
Targets (issue 15): >= 20,000 events/s at batch 100, >= 10x the per-request-insert
design, p99 <= 50 ms at half the maximum rate, collector RSS flat over 10 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import fresh_database, write_section  # noqa: E402

from analytics_platform.process_groups import (  # noqa: E402
    free_port,
    log_tail,
    start_process_group,
    stop_process_group,
)

WORK = ROOT / "benchmarks" / ".work" / "collector"
RESULTS = ROOT / "benchmarks" / "results" / "collector.json"
LOAD = Path(__file__).with_name("http_load.py")
BASELINE = Path(__file__).with_name("per_request_insert.py")
CLI = str(Path(sys.executable).with_name("analytics-platform"))
TENANT = "bench_collector"
BATCHES = (1, 100)
TARGETS = {
    "events_per_s_batch_100": 20_000,
    "x_per_request_insert": 10.0,
    "p99_ms": 50.0,
    "rss_growth_fraction": 0.10,
}
STARTUP_BOUND_SECONDS = 120
UNLIMITED_RATE = 1_000_000_000


@dataclass
class Server:
    """A server under test: its process group, where it listens, its log."""

    name: str
    process: subprocess.Popen
    port: int
    log: Path

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_BOUND_SECONDS
        while True:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"{self.name} exited ({self.process.returncode}); {log_tail(self.log)}"
                )
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{self.name} not healthy after {STARTUP_BOUND_SECONDS}s; {log_tail(self.log)}"
                )
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU of the server's whole process tree so far (workers included)."""
        total = 0.0
        try:
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
        return total

    def rss_bytes(self) -> int:
        root = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


# --- events and bodies ------------------------------------------------------------------


def demo_events(work: Path, count: int) -> list[dict]:
    """`count` tracker events from the demo's generator (its JSON-lines days, no defects).

    Days end yesterday, so no event lies in the future of the collector's clock.
    """
    from analytics_platform.demo.generator import generate_landing

    per_day = 2_000
    days_needed = max(2, 2 * -(-count // per_day))  # half the days are CSV: skipped
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [today - dt.timedelta(days=days_needed - i) for i in range(days_needed)]
    generated = generate_landing(
        work / "generated", [TENANT], days, events_per_day=per_day, malformed_per_file=0
    )
    events: list[dict] = []
    for expectation in generated.days.values():
        name = expectation.file.name
        if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(expectation.file, "rb") as lines:
                events += [orjson.loads(line) for line in lines if line.strip()]
    return events[:count]


def write_bodies(events: list[dict], batch: int, path: Path) -> Path:
    """One JSON-array body of `batch` events per line (the load generator sends them as is)."""
    with path.open("wb") as out:
        for start in range(0, len(events) - batch + 1, batch):
            out.write(orjson.dumps(events[start : start + batch]) + b"\n")
    return path


# --- servers ---------------------------------------------------------------------------


def start_collector(database_url: str, landing: Path) -> Server:
    port = free_port()
    log = WORK / "collector.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LANDING_DIR": str(landing),
        # The per-tenant rate limit (5,000 events/s by default) would measure itself.
        "COLLECTOR_RATE_EVENTS_PER_SECOND": str(UNLIMITED_RATE),
        "COLLECTOR_RATE_BURST_EVENTS": str(UNLIMITED_RATE),
    }
    process = start_process_group(
        [CLI, "collector", "--host", "127.0.0.1", "--port", str(port)],
        log=log,
        env=env,
        cwd=ROOT,
    )
    return Server("collector", process, port, log)


def start_baseline(database_url: str, secret: str, style: str = "orm") -> Server:
    port = free_port()
    log = WORK / "per_request_insert.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BASELINE_TENANT": TENANT,
        "BASELINE_WRITE_KEY": secret,
    }
    args = [sys.executable, str(BASELINE), "--host", "127.0.0.1", "--port", str(port)]
    process = start_process_group(
        [*args, "--style", style],
        log=log,
        env=env,
        cwd=ROOT,
    )
    return Server("per_request_insert", process, port, log)


def load(server: Server, spec: dict) -> dict:
    """Run the load generator against `server`; its result plus the server's CPU share."""
    spec = {"host": "127.0.0.1", "port": server.port, "path": "/v1/events", **spec}
    spec_file = WORK / f"load-{server.name}-{spec['mode']}-{spec['batch']}.json"
    spec_file.write_text(json.dumps(spec))
    cpu_before, began = server.cpu_seconds(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(LOAD), str(spec_file)],
        capture_output=True,
        text=True,
        timeout=spec["seconds"] + spec.get("warmup_seconds", 0) + 120,
    )
    if done.returncode != 0:
        raise SystemExit(f"load generator failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    wall = time.perf_counter() - began
    result["server_cpu_share"] = round((server.cpu_seconds() - cpu_before) / wall, 2)
    print(f"{server.name} {spec['mode']} batch {spec['batch']}: {json.dumps(result)}", flush=True)
    return result


# --- phases ----------------------------------------------------------------------------


def measure(server: Server, batch: int, bodies: Path, token: str, args) -> dict:
    """Closed loop for the maximum, then open loop at half of it for latency."""
    common = {"token": token, "bodies": str(bodies), "batch": batch}
    peak = load(
        server,
        {
            **common,
            "mode": "closed",
            "connections": args.connections,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
        },
    )
    half_rate = max(1.0, peak["events_per_s"] / 2 / batch)  # requests per second
    half = load(
        server,
        {
            **common,
            "mode": "open",
            "rate": half_rate,
            "connections": args.connections,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
        },
    )
    return {"max": peak, "half": half}


class RssSampler:
    """The collector's RSS every `every` seconds, in a thread, while the soak runs."""

    def __init__(self, server: Server, every: float):
        self.server, self.every = server, every
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()
        self.began = time.monotonic()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic() - self.began, self.server.rss_bytes()))
            self.done.wait(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self.done.set()
        self.thread.join()
        return self.samples


def rss_verdict(samples: list[tuple[float, int]], seconds: float) -> dict:
    """Growth from just after warm-up (10%-20% of the soak) to its last 10%, and the slope.

    The first tenth is left out: buffers, the key cache and the allocator's arenas grow
    there once. "Flat" = the last tenth's median at most 10% above the early median.
    """

    def window(low: float, high: float) -> list[int]:
        return [rss for at, rss in samples if low * seconds <= at <= high * seconds] or [
            samples[-1][1]
        ]

    early = statistics.median(window(0.1, 0.2))
    late = statistics.median(window(0.9, 1.01))
    steady = [(at, rss) for at, rss in samples if at >= 0.1 * seconds]
    slope = 0.0
    if len(steady) >= 2:
        slope = statistics.linear_regression([a for a, _ in steady], [r for _, r in steady]).slope
    mb = 1024**2
    return {
        "samples": len(samples),
        "first_mb": round(samples[0][1] / mb, 1),
        "early_mb": round(early / mb, 1),
        "late_mb": round(late / mb, 1),
        "peak_mb": round(max(r for _, r in samples) / mb, 1),
        "growth_fraction": round((late - early) / early, 4),
        "slope_mb_per_min": round(slope * 60 / mb, 3),
        "flat": (late - early) / early <= TARGETS["rss_growth_fraction"],
    }


def soak(server: Server, bodies: Path, token: str, rate_events: float, args) -> dict:
    sampler = RssSampler(server, every=1.0 if args.quick else 5.0)
    result = load(
        server,
        {
            "token": token,
            "bodies": str(bodies),
            "batch": 100,
            "mode": "open",
            "rate": max(1.0, rate_events / 100),
            "connections": args.connections,
            "seconds": args.soak_seconds,
            "warmup_seconds": 0,
        },
    )
    samples = sampler.stop()
    return {**result, "rss": rss_verdict(samples, args.soak_seconds)}


def landed_lines(landing: Path) -> dict:
    """Lines in closed segments (and any `*.tmp` a stop left open) under the landing zone."""
    closed = 0
    for path in landing.rglob("*.jsonl"):
        with path.open("rb") as segment:
            while chunk := segment.read(1 << 20):
                closed += chunk.count(b"\n")  # the collector writes one event per line
    open_segments = sorted(str(p.relative_to(landing)) for p in landing.rglob("*.tmp"))
    segments = sum(1 for _ in landing.rglob("*.jsonl"))
    return {"lines": closed, "segments": segments, "left_open": open_segments}


def baseline_rows(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM per_request_events").fetchone()[0]


def prepare_tenant(database_url: str) -> str:
    """One active tenant and a write key for it: the key's secret."""
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.keys import create_key
    from analytics_platform.tenants.registry import register_tenant, transition

    postgres = PostgresResource(url=database_url)
    postgres.ensure_warehouse()
    register_tenant(postgres, TENANT, actor="benchmark")
    with postgres.transaction() as conn:
        transition(conn, TENANT, "active", allowed_from=("pending",), actor="benchmark")
    _, secret = create_key(postgres, TENANT, kind="write")
    return secret


def run(args) -> dict:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    landing = WORK / "landing"
    landing.mkdir()
    events = demo_events(WORK, 20_000)
    bodies = {
        batch: write_bodies(events, batch, WORK / f"bodies-{batch}.ndjson") for batch in BATCHES
    }
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict = {"systems": {"collector": {}, "per_request_insert": {}}}
    acked = {"collector": 0, "per_request_insert": 0}
    with fresh_database() as database_url:
        secret = prepare_tenant(database_url)
        servers = []
        try:
            collector = start_collector(database_url, landing)
            servers.append(collector)
            baseline = start_baseline(database_url, secret, args.baseline_style)
            servers.append(baseline)
            for server in servers:
                server.wait_healthy()
            for batch in BATCHES:
                for server in servers:
                    measured = measure(server, batch, bodies[batch], secret, args)
                    results["systems"][server.name][str(batch)] = measured
                    acked[server.name] += sum(m["acked_events"] for m in measured.values())
            results["soak"] = soak(collector, bodies[100], secret, args.soak_rate, args)
            acked["collector"] += results["soak"]["acked_events"]
            results["collector_rss_after_mb"] = round(collector.rss_bytes() / 1024**2, 1)
        finally:
            for server in servers:
                stop_process_group(server.process)  # SIGTERM: the collector closes segments
        results["durability"] = {
            "collector": {"acked_events": acked["collector"], **landed_lines(landing)},
            "per_request_insert": {
                "acked_events": acked["per_request_insert"],
                "rows": baseline_rows(database_url),
            },
        }
    durability = results["durability"]
    durability["collector"]["all_acked_landed"] = (
        durability["collector"]["lines"] >= acked["collector"]
        and not durability["collector"]["left_open"]
    )
    durability["per_request_insert"]["all_acked_stored"] = (
        durability["per_request_insert"]["rows"] >= acked["per_request_insert"]
    )
    results.update(
        quick=args.quick,
        seconds=args.seconds,
        soak_seconds=args.soak_seconds,
        soak_rate=args.soak_rate,
        connections=args.connections,
        baseline_style=args.baseline_style,
        events_distinct=len(events),
        machine=f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system().lower()}",
        load_before=load_before,
        measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    results["verdicts"] = verdicts(results)
    return results


def verdicts(r: dict) -> dict:
    collector, baseline = r["systems"]["collector"], r["systems"]["per_request_insert"]
    ratios = {
        batch: collector[batch]["max"]["events_per_s"]
        / max(baseline[batch]["max"]["events_per_s"], 1e-9)
        for batch in collector
    }
    p99 = {batch: collector[batch]["half"]["p99_ms"] for batch in collector}
    return {
        "events_per_s_batch_100": collector["100"]["max"]["events_per_s"],
        "events_per_s_met": collector["100"]["max"]["events_per_s"]
        >= TARGETS["events_per_s_batch_100"],
        "x_per_request_insert": {b: round(x, 1) for b, x in ratios.items()},
        "x_met": ratios["100"] >= TARGETS["x_per_request_insert"],
        "p99_ms": p99,
        "p99_met": all(v is not None and v <= TARGETS["p99_ms"] for v in p99.values()),
        "rss_flat": r["soak"]["rss"]["flat"],
        "all_acked_landed": r["durability"]["collector"]["all_acked_landed"],
    }


def write_report(r: dict) -> None:
    v = r["verdicts"]

    def met(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    rows = []
    for batch in ("1", "100"):
        for name in ("collector", "per_request_insert"):
            m = r["systems"][name][batch]
            peak, half = m["max"], m["half"]
            rows.append(
                f"| {name} | {batch} | {peak['events_per_s']:,.0f} | "
                f"{half['events_per_s']:,.0f} | {half['p50_ms']} | {half['p99_ms']} | "
                f"{peak['server_cpu_share']:.2f} | {peak['loadgen_cpu_share']:.2f} | "
                f"{sum(n for s, n in peak['statuses'].items() if not s.startswith('2'))} |"
            )
    soak, rss = r["soak"], r["soak"]["rss"]
    landed = r["durability"]["collector"]
    stored = r["durability"]["per_request_insert"]
    quick = (
        "**`--quick` run: every phase a few seconds long, numbers for development only.** "
        if r["quick"]
        else ""
    )
    section = "\n".join(
        [
            "## Collector: events/s and latency with durable acks, vs per-request inserts",
            "",
            f"{quick}`benchmarks/collector.py`; {r['machine']}; load average before the run "
            f"{r['load_before']}; measured {r['measured_at']}. Both servers run side by side "
            "on one fresh warehouse database with one tenant and a write key: the collector "
            "(`analytics-platform collector`, a 2xx after fsync of its landing segment) and "
            "`benchmarks/per_request_insert.py` (the design it replaces: the same Starlette + "
            "uvicorn stack inserting each request's events into Postgres with SQLAlchemy, "
            "one commit per request). Bodies are JSON arrays of the demo generator's events. "
            f"Load: `benchmarks/http_load.py`, one process on the same cores, "
            f"{r['connections']} keep-alive connections; max = closed loop for "
            f"{r['seconds']} s; latency = open loop at half of that max for {r['seconds']} s, "
            "from each request's scheduled send time. Server CPU is the server's own process "
            "(Postgres's share of the per-request design is not in it).",
            "",
            "| server | batch | max events/s | events/s at half | p50 ms | p99 ms "
            "| server CPU (cores) at max | load generator CPU at max | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"- >= {TARGETS['events_per_s_batch_100']:,} events/s at batch 100: "
            f"{v['events_per_s_batch_100']:,.0f} — {met(v['events_per_s_met'])}",
            f"- >= {TARGETS['x_per_request_insert']:g}x the per-request-insert design at batch "
            f"100: {v['x_per_request_insert']['100']}x — {met(v['x_met'])} (batch 1: "
            f"{v['x_per_request_insert']['1']}x)",
            f"- collector p99 <= {TARGETS['p99_ms']:g} ms at half the max rate: batch 1 "
            f"{v['p99_ms']['1']} ms, batch 100 {v['p99_ms']['100']} ms — {met(v['p99_met'])}",
            f"- collector RSS flat over a {r['soak_seconds']} s soak at "
            f"{soak['rate_requested'] * 100:,.0f} events/s (batch 100; p99 {soak['p99_ms']} ms): "
            f"{rss['early_mb']} MB after warm-up, {rss['late_mb']} MB at the end "
            f"({rss['growth_fraction']:+.1%}, slope {rss['slope_mb_per_min']} MB/min, peak "
            f"{rss['peak_mb']} MB, {rss['samples']} samples) — {met(rss['flat'])}",
            f"- every acknowledged event landed: {landed['acked_events']:,} acknowledged, "
            f"{landed['lines']:,} lines in {landed['segments']} closed segments after SIGTERM, "
            f"{len(landed['left_open'])} left open — {met(v['all_acked_landed'])} "
            f"(per-request inserts: {stored['acked_events']:,} acknowledged, "
            f"{stored['rows']:,} rows)",
        ]
    )
    write_section("collector", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="each closed/open phase")
    parser.add_argument("--warmup-seconds", type=float, default=2)
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=TARGETS["events_per_s_batch_100"] / 2,
        help="events/s during the soak (batch 100); 10,000 for 600 s lands about 2.7 GB",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--baseline-style",
        choices=("orm", "core"),
        default="orm",
        help="per_request_insert.py's SQLAlchemy style (see its docstring)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="every phase a few seconds (development)"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup_seconds, args.soak_seconds = 3, 0.5, 20
    results = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results)
    print(json.dumps(results["verdicts"], indent=2))


if __name__ == "__main__":
    main()
