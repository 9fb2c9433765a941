"""`analytics-platform demo`: the whole pipeline on synthetic events, in one Dagster run.

One tenant's events enter through the front door: POSTed to a collector the demo
starts and stops (collector_feed.py), which writes them to landing segments; the
others' are written as landing files. The run is launched through a webserver, as the
UI launches one (see launch.py), so the UI lists it under its job and can re-execute it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance

from analytics_platform import stack
from analytics_platform.demo.collector_feed import (
    COLLECTOR_DEFECTS,
    COLLECTOR_FORMATS,
    CollectorFeed,
    clear_earlier_feeds,
    closed_segments,
    collector_process,
    feed_tenant,
)
from analytics_platform.demo.generator import GeneratedLanding, generate_landing
from analytics_platform.demo.launch import launch_job_run, ui_webserver, wait_for_run
from analytics_platform.partitions import range_tags, tenants_partitions
from analytics_platform.redaction import redact
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.settings import load_settings
from analytics_platform.tenants.lifecycle import provision_tenant
from analytics_platform.tenants.registry import register_tenant

DEMO_TENANTS = ("acme", "globex", "initech")
DEMO_START = dt.date(2026, 11, 1)


@dataclass
class TenantSummary:
    raw_rows: int
    quarantined: dict[str, int]
    staged_rows: int
    mart_rows: int
    visitors: int
    sessions: int
    page_views: int
    serving_rows: int


@dataclass
class DemoSummary:
    tenants: dict[str, TenantSummary]
    dates: list[dt.date]
    environment: dict[str, str]
    seconds: float = 0.0
    run_ids: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    collector: CollectorFeed | None = None


def collect_summary(
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
    tenants: Sequence[str],
    dates: Sequence[dt.date],
) -> dict[str, TenantSummary]:
    """Rows per layer for each tenant over `dates`, read back from the stores themselves."""
    window = (min(dates), max(dates))
    summaries: dict[str, TenantSummary] = {}
    with postgres.connect() as conn:
        for tenant in tenants:
            scope = (tenant, *window)

            def count(query: str, scope: tuple = scope, conn=conn) -> int:
                return conn.execute(query, scope).fetchone()[0]

            reasons = conn.execute(
                "SELECT reason, count(*) FROM platform.quarantine WHERE tenant_id = %s "
                "AND partition_date BETWEEN %s AND %s GROUP BY reason ORDER BY reason",
                scope,
            ).fetchall()
            metrics = conn.execute(
                "SELECT count(*), coalesce(sum(visitors), 0), coalesce(sum(sessions), 0), "
                "coalesce(sum(page_views), 0) FROM marts.fct_daily_metrics "
                "WHERE tenant_id = %s AND event_date BETWEEN %s AND %s",
                scope,
            ).fetchone()
            summaries[tenant] = TenantSummary(
                raw_rows=count(
                    "SELECT count(*) FROM raw.file_events WHERE tenant_id = %s "
                    "AND _partition_date BETWEEN %s AND %s"
                ),
                quarantined=dict(reasons),
                staged_rows=count(
                    "SELECT count(*) FROM staging.stg_events WHERE tenant_id = %s "
                    "AND event_date BETWEEN %s AND %s"
                ),
                mart_rows=metrics[0],
                visitors=int(metrics[1]),
                sessions=int(metrics[2]),
                page_views=int(metrics[3]),
                serving_rows=0,
            )
    with clickhouse.session() as session:
        for tenant in tenants:
            database = clickhouse.database_for(tenant)
            frame = session.query_df(
                f"SELECT count() AS n FROM `{database}`.fct_daily_metrics "
                f"WHERE event_date BETWEEN '{window[0]}' AND '{window[1]}'"
            )
            summaries[tenant].serving_rows = int(frame["n"].iloc[0])
    return summaries


def generate_demo_events(
    landing: Path,
    outbox: Path,
    tenants: Sequence[str],
    dates: Sequence[dt.date],
    *,
    events_per_day: int,
    collector_tenant: str | None,
) -> GeneratedLanding:
    """The demo's events: landing files for most tenants, an outbox for the collector's.

    The collector's tenant is generated as JSON lines with defects that parse (see
    collector_feed.py) into `outbox`, from where the demo POSTs it; the result holds
    every tenant-day's expectation either way.
    """
    file_tenants = [t for t in tenants if t != collector_tenant]
    generated = generate_landing(landing, file_tenants, dates, events_per_day=events_per_day)
    if collector_tenant is not None:
        posted = generate_landing(
            outbox,
            [collector_tenant],
            dates,
            events_per_day=events_per_day,
            formats=COLLECTOR_FORMATS,
            json_defects=COLLECTOR_DEFECTS,
        )
        generated.days.update(posted.days)
    return generated


def reconcile(
    generated: GeneratedLanding,
    summaries: dict[str, TenantSummary],
    feed: CollectorFeed | None = None,
) -> list[str]:
    """Every way the stores disagree with what the generated files imply (empty: all agree)."""
    problems = []
    if feed is not None and not feed.posted == feed.accepted == sum(
        e.rows_read for (t, _), e in generated.days.items() if t == feed.tenant
    ):
        problems.append(
            f"{feed.tenant}: the collector acknowledged {feed.accepted} of {feed.posted} "
            "events posted"
        )
    days = len({day for _, day in generated.days})
    for tenant, got in summaries.items():
        want = generated.totals(tenant)
        expected = {
            "raw rows": want["valid"],
            "staged rows": want["valid"],
            "mart days": days,
            "visitors (summed over days)": want["visitors_by_day"],
            "sessions": want["sessions"],
            "page views": want["page_views"],
            "ClickHouse days": days,
            "quarantine": want["quarantined"],
        }
        actual = {
            "raw rows": got.raw_rows,
            "staged rows": got.staged_rows,
            "mart days": got.mart_rows,
            "visitors (summed over days)": got.visitors,
            "sessions": got.sessions,
            "page views": got.page_views,
            "ClickHouse days": got.serving_rows,
            "quarantine": got.quarantined,
        }
        problems += [
            f"{tenant}: {name} is {actual[name]}, the generated files imply {value}"
            for name, value in expected.items()
            if actual[name] != value
        ]
    return problems


def _runs(
    instance: DagsterInstance, tenants: Sequence[str], dates: Sequence[dt.date]
) -> list[dict]:
    """Run tags covering every tenant x date: one run when the tenants are adjacent partitions.

    A range of dynamic partitions spans them in registration order; if other
    tenants were registered in between, one run per tenant keeps them out.
    """
    registered = instance.get_dynamic_partitions(tenants_partitions.name)
    ordered = sorted(tenants, key=registered.index)
    first = registered.index(ordered[0])
    if registered[first : first + len(ordered)] == ordered:
        return [range_tags(ordered, dates)]
    return [range_tags([tenant], dates) for tenant in ordered]


# The webserver, code server and run worker are separate processes: the CLI's warning
# filters do not reach them, so library notices are silenced through their environment.
QUIET_CHILDREN = "ignore:Parameter `,ignore:XDG_RUNTIME_DIR"


def run_demo(
    *,
    days: int = 7,
    events_per_day: int = 400,
    start: dt.date = DEMO_START,
    tenants: Sequence[str] = DEMO_TENANTS,
    log_level: str = "INFO",
    through_collector: bool = True,
) -> DemoSummary:
    """Generate events, register tenants and materialize every layer in one run.

    With `through_collector`, the first tenant's events are POSTed through a collector
    process the demo starts with a write key it creates, and which it stops (SIGTERM:
    segments closed) before the run; the other tenants' are written as landing files.
    The run is submitted to a webserver serving workspace.yaml, as the UI submits one,
    so it shows under `tenant_day_pipeline` and can be re-executed there. The webserver
    (and the code server and run worker it starts) is stopped before this returns.
    """
    from analytics_platform.tenants.keys import create_key

    began = time.monotonic()
    env = stack.activate()
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    workspace_file = Path(env["DAGSTER_HOME"]) / "workspace.yaml"
    postgres = PostgresResource(url=env["DATABASE_URL"])
    clickhouse = ClickHouseResource(url=env["CLICKHOUSE_URL"])
    # The console shows progress, not every event; the UI has the full log.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    children = {**os.environ, "PYTHONWARNINGS": QUIET_CHILDREN}
    demo_home = load_settings().home / "demo"
    landing = Path(env["LANDING_DIR"])
    collector_tenant = tenants[0] if through_collector else None
    feed = None
    with (
        DagsterInstance.get() as instance,
        ui_webserver(workspace_file, home=demo_home, env=children) as web,
    ):
        # The webserver loads the code location (several seconds) while the events are
        # generated, the tenants registered and one tenant's events sent.
        generated = generate_demo_events(
            landing,
            demo_home / "outbox",
            tenants,
            dates,
            events_per_day=events_per_day,
            collector_tenant=collector_tenant,
        )
        for tenant in tenants:
            register_tenant(postgres, tenant, tenant.title(), actor="demo")
            provision_tenant(postgres, clickhouse, instance, tenant, actor="demo")
        if collector_tenant is not None:
            clear_earlier_feeds(landing, collector_tenant, dates)
            _, write_key = create_key(postgres, collector_tenant, kind="write")
            with collector_process(children, demo_home / "collector.log", Path.cwd()) as collector:
                collector.wait_healthy()
                feed = feed_tenant(collector, write_key, generated, collector_tenant)
            # Stopped: every segment it wrote is closed (renamed from *.tmp) by now.
            feed.segments = closed_segments(landing, collector_tenant, dates)
        run_ids = []
        for tags in _runs(instance, tenants, dates):
            run_id = launch_job_run(web, "tenant_day_pipeline", run_config=run_config, tags=tags)
            run_ids.append(run_id)
            wait_for_run(instance, run_id)
    summaries = collect_summary(postgres, clickhouse, tenants, dates)
    return DemoSummary(
        tenants=summaries,
        dates=dates,
        environment=env,
        seconds=time.monotonic() - began,
        run_ids=run_ids,
        mismatches=reconcile(generated, summaries, feed),
        collector=feed,
    )


def format_summary(summary: DemoSummary) -> str:
    env = summary.environment
    header = (
        f"{'tenant':<10}{'raw':>8}{'quarantined':>13}{'staged':>8}{'mart days':>11}"
        f"{'visitors':>10}{'sessions':>10}{'page views':>12}{'clickhouse':>12}"
    )
    lines = [
        f"Demo: {len(summary.tenants)} tenants x {len(summary.dates)} days "
        f"({summary.dates[0]} .. {summary.dates[-1]}) in {summary.seconds:.0f}s, "
        f"run {', '.join(summary.run_ids)}",
        "",
        header,
        "-" * len(header),
    ]
    for tenant, s in summary.tenants.items():
        lines.append(
            f"{tenant:<10}{s.raw_rows:>8}{sum(s.quarantined.values()):>13}{s.staged_rows:>8}"
            f"{s.mart_rows:>11}{s.visitors:>10}{s.sessions:>10}{s.page_views:>12}{s.serving_rows:>12}"
        )
    lines += ["", "Quarantined rows by reason (see platform.quarantine):"]
    for tenant, s in summary.tenants.items():
        reasons = ", ".join(f"{reason} {n}" for reason, n in s.quarantined.items()) or "none"
        lines.append(f"  {tenant}: {reasons}")
    lines.append("")
    feed = summary.collector
    if feed is not None:
        lines += [
            f"Through the collector: {feed.accepted} of {feed.tenant}'s events acknowledged "
            f"({feed.posted} POSTed to {feed.url} in {feed.requests} requests with a write "
            f"key), written to {len(feed.segments)} landing segments and loaded from there;",
            "the other tenants' events were written as landing files.",
            "",
        ]
    if summary.mismatches:
        lines += ["MISMATCHES between the stores and the generated files:"]
        lines += [f"  {problem}" for problem in summary.mismatches]
    else:
        lines.append("Every layer reconciles with the generated files (rows, quarantine, metrics).")
    lines += [
        "",
        "Where the data lives:",
        f"  landing files   {env['LANDING_DIR']}",
        f"  warehouse       {redact(env['DATABASE_URL'])}",
        "                  (schemas raw, staging, marts, platform)",
        f"  clickhouse      {redact(env['CLICKHOUSE_URL'])}",
        "                  (one database per tenant: tenant_<id>)",
        f"  dagster runs    {redact(env['DAGSTER_POSTGRES_URL'])}",
        "",
        "See the run under its job, re-execute it, browse the lineage: analytics-platform dev,",
        *[f"  then open http://127.0.0.1:3000/runs/{run_id}" for run_id in summary.run_ids],
    ]
    return "\n".join(lines)
