"""ClickHouse at 1,000 tenants: a database per tenant against shared tables keyed by tenant_id.

    .venv/bin/python benchmarks/scale_clickhouse.py [--tenants 10 100 300 1000] [--days 30]
    .venv/bin/python benchmarks/scale_clickhouse.py --quick

Both layouts are built on chDB from the platform's own migrations
(analytics_platform/sql/clickhouse): per tenant, every migration applied to
`tenant_<id>` as `migrate_tenant` does; shared, the same tables once in
`serving`, sorted by tenant_id first (the whole-history marts partitioned by
tenant, the daily ones by day). Each tenant gets `--days` days of synthetic
rows (generateRandom, the tables' own column types). Measured per size:

- build: creating the layout and loading the history (not a platform path: the first
  tenant is migrated and loaded, the others copied from it, see `copy_tenant`);
- start-up: a fresh process opening a chDB session on the data path, then `SELECT 1`
  (chDB loads every table's metadata and parts when the session opens), its RSS,
  then one tenant's 90-day daily metrics and a sessions page (50 newest), RSS after;
- serving one day for all N tenants: the platform's per-tenant path
  (`ClickHouseResource.replace_partitions` / `replace_table` per tenant and table,
  4 statements each) against one scratch table per shared table (4 statements per table);
- a migration adding a column everywhere: N x tables ALTERs against one per table;
- disk: bytes, files and active parts under the data path.

The serving rows exclude Postgres: they isolate what the layout costs in
ClickHouse, with main's per-tenant path (504b68a, `serve_before`) next to this
branch's. `--postgres N...` adds serving's Postgres bookkeeping (connections,
migration locks) before and after, for N tenants, to the results file. Per-tenant
serving and migrations run on `--sample` tenants of each store and are scaled to
all. Numbers come from a 2-core machine shared with other sessions; the load
average is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_database, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "benchmarks" / ".work" / "scale_clickhouse"))
RESULTS = ROOT / "benchmarks" / "results" / "scale_clickhouse.json"
FIRST_DAY = dt.date(2026, 1, 1)
SHARED = "serving"
# Rows per tenant and day (daily tables) or per tenant (whole-history tables): a small
# tenant's volume, so the layouts differ by their metadata, not by data size.
ROWS = {
    "fct_daily_metrics": 1,
    "fct_sessions": 40,
    "fct_channel_daily": 5,
    "fct_funnel_daily": 4,
    "dim_visitors": 100,
    "fct_experiment_results": 4,
}
DATE_COLUMN = {
    "fct_daily_metrics": "event_date",
    "fct_sessions": "session_date",
    "fct_channel_daily": "event_date",
    "fct_funnel_daily": "event_date",
}


def tenant_id(i: int) -> str:
    return f"t{i:04d}"


def session_on(path: Path):
    from chdb import session as chdb_session

    return chdb_session.Session(str(path))


def per_tenant_statements(tenant: str) -> list[str]:
    """Exactly what `migrate_tenant` runs for a new tenant."""
    from analytics_platform.resources.clickhouse import quote_identifier
    from analytics_platform.tenants.migrations import available_migrations

    database = f"tenant_{tenant}"
    statements = [f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}"]
    for migration in available_migrations():
        statements += migration.statements(database)
    return statements


def shared_statements() -> list[str]:
    """The same migrations once, in `serving`, with tenant_id leading every sorting key.

    Whole-history marts (no PARTITION BY) are partitioned by tenant, so one tenant's
    table can still be swapped atomically (REPLACE PARTITION); daily ones keep the day.
    """
    statements = [f"CREATE DATABASE IF NOT EXISTS {SHARED}"]
    for statement in per_tenant_statements("x")[1:]:
        statement = statement.replace("`tenant_x`", SHARED)
        if "CREATE TABLE" in statement:
            if "PARTITION BY" not in statement:
                statement = statement.replace("ORDER BY", "PARTITION BY tenant_id\nORDER BY")
            statement = re.sub(
                r"ORDER BY \(?([^()\n]+?)\)?\s*$",
                r"ORDER BY (tenant_id, \1)",
                statement,
                flags=re.M,
            )
        statements.append(statement)
    return statements


def columns(session, database: str, table: str) -> list[tuple[str, str]]:
    frame = session.query(
        f"SELECT name, type FROM system.columns WHERE database = '{database}' "
        f"AND table = '{table}' AND default_kind = '' ORDER BY position",
        "DataFrame",
    )
    return list(frame.itertuples(index=False, name=None))


def rows_select(session, database: str, table: str, tenants: list[str], days: list[dt.date]) -> str:
    """A SELECT of random rows of the table's own types for `tenants` x `days` (or x 1)."""
    from analytics_platform.explore.sql_guard import sql_string

    cols = columns(session, database, table)
    structure = ", ".join(f"{name} {kind}" for name, kind in cols)
    names = ", ".join(name for name, _ in cols)
    per_unit = ROWS[table]
    units = len(tenants) * (len(days) if table in DATE_COLUMN else 1)
    tenant_list = "[" + ", ".join(f"'{t}'" for t in tenants) + "]"
    rows_per_tenant = units // len(tenants) * per_unit
    replace = [f"{tenant_list}[1 + intDiv(rowNumberInAllBlocks(), {rows_per_tenant})] AS tenant_id"]
    if table in DATE_COLUMN:
        first = days[0]
        replace.append(
            f"toDate('{first}') + intDiv(rowNumberInAllBlocks(), {per_unit}) % {len(days)} "
            f"AS {DATE_COLUMN[table]}"
        )
    return (
        f"SELECT {names} FROM (SELECT * REPLACE ({', '.join(replace)}) "
        f"FROM generateRandom({sql_string(structure)}, 7, 16, 4) LIMIT {units * per_unit})"
    )


def insert_rows(session, database: str, table: str, tenants: list[str], days: list[dt.date]):
    names = ", ".join(name for name, _ in columns(session, database, table))
    session.query(
        f"INSERT INTO {database}.{table} ({names}) "
        + rows_select(session, database, table, tenants, days)
    )


def copy_tenant(session, source: str, tenant: str) -> None:
    """`tenant`'s database as a copy of `source`'s: the same tables, the same parts.

    20x faster than migrating and loading each tenant (what a day of history per
    tenant costs is not what this benchmark measures); every table and part is the
    tenant's own, as if it had been served day by day and merged.
    """
    session.query(f"CREATE DATABASE tenant_{tenant}")
    for table in ROWS:
        session.query(f"CREATE TABLE tenant_{tenant}.{table} AS tenant_{source}.{table}")
        session.query(
            f"ALTER TABLE tenant_{tenant}.{table} ATTACH PARTITION ALL FROM tenant_{source}.{table}"
        )


def build(path: Path, layout: str, tenants: list[str], days: list[dt.date]) -> float:
    """Create the layout on a new data path and load every tenant's history: seconds."""
    shutil.rmtree(path, ignore_errors=True)
    began = time.perf_counter()
    session = session_on(path)
    try:
        if layout == "shared":
            session.query("SET max_partitions_per_insert_block = 0")
            for statement in shared_statements():
                session.query(statement)
            for table in ROWS:
                insert_rows(session, SHARED, table, tenants, days)
        else:
            first = tenants[0]
            for statement in per_tenant_statements(first):
                session.query(statement)
            for table in ROWS:
                insert_rows(session, f"tenant_{first}", table, [first], days)
            for tenant in tenants[1:]:
                copy_tenant(session, first, tenant)
    finally:
        session.close()
    return round(time.perf_counter() - began, 2)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def read_queries(layout: str, tenant: str, last_day: dt.date) -> dict[str, str]:
    """One tenant's 90-day daily metrics and a sessions page, as the dashboards ask them."""
    if layout == "shared":
        where, prefix = f"tenant_id = '{tenant}' AND ", f"{SHARED}."
    else:
        where, prefix = "", f"tenant_{tenant}."
    since = last_day - dt.timedelta(days=89)
    return {
        "daily_90d": (
            f"SELECT event_date, sum(visitors), sum(sessions), sum(page_views) "
            f"FROM {prefix}fct_daily_metrics WHERE {where}event_date BETWEEN '{since}' "
            f"AND '{last_day}' GROUP BY event_date ORDER BY event_date"
        ),
        "sessions_page": (
            f"SELECT session_id, session_start, duration_seconds, landing_path, channel "
            f"FROM {prefix}fct_sessions WHERE {where}session_date BETWEEN '{since}' "
            f"AND '{last_day}' ORDER BY session_start DESC LIMIT 50"
        ),
    }


def probe(path: Path, layout: str, tenant: str, last_day: dt.date) -> dict:
    """In a fresh process: open the session, first query, the two reads; seconds and RSS."""
    measured = {"rss_before_mb": rss_mb()}
    began = time.perf_counter()
    session = session_on(path)
    session.query("SELECT 1")
    measured["startup_s"] = round(time.perf_counter() - began, 3)
    measured["rss_startup_mb"] = rss_mb()
    for name, query in read_queries(layout, tenant, last_day).items():
        began = time.perf_counter()
        rows = len(session.query(query, "DataFrame"))
        measured[f"{name}_first_s"] = round(time.perf_counter() - began, 4)
        began = time.perf_counter()
        session.query(query, "DataFrame")
        measured[f"{name}_s"] = round(time.perf_counter() - began, 4)
        measured[f"{name}_rows"] = rows
    measured["rss_after_query_mb"] = rss_mb()
    session.close()
    return measured


def probe_in_subprocess(path: Path, layout: str, tenant: str, last_day: dt.date) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--probe", str(path), layout, tenant, str(last_day)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


class CountingSession:
    """A platform ClickHouse session that counts the statements sent through it."""

    def __init__(self, session):
        self._session = session
        self.statements = 0

    def command(self, statement: str) -> None:
        self.statements += 1
        self._session.command(statement)

    def insert_df(self, database: str, table: str, frame) -> None:
        self.statements += 1
        self._session.insert_df(database, table, frame)

    def query_df(self, query: str):
        return self._session.query_df(query)


def one_tenant_day(path: Path, day: dt.date) -> dict:
    """A tenant's rows of `day` for every table (whole-history tables: a tenant's rows)."""
    session = session_on(path)
    try:
        return {
            table: session.query(
                rows_select(session, "tenant_t0000", table, ["t0000"], [day]), "DataFrame"
            )
            for table in ROWS
        }
    finally:
        session.close()


def serve_before(clickhouse, session, tenant: str, table: str, frame, day: dt.date) -> None:
    """Main's serving at 504b68a, kept measurable: a scratch table in the tenant's database.

    CREATE TABLE AS, INSERT, one ALTER (REPLACE PARTITION) or EXCHANGE TABLES, DROP:
    four statements per tenant and table.
    """
    from analytics_platform.resources.clickhouse import quote_identifier

    database = quote_identifier(clickhouse.database_for(tenant))
    target = f"{database}.{quote_identifier(table)}"
    name = f"_load_{table}_{uuid.uuid4().hex[:12]}"
    scratch = f"{database}.{quote_identifier(name)}"
    session.command(f"CREATE TABLE {scratch} AS {target}")
    session.insert_df(clickhouse.database_for(tenant), name, frame)
    if table in DATE_COLUMN:
        session.command(f"ALTER TABLE {target} REPLACE PARTITION ID '{day:%Y%m%d}' FROM {scratch}")
    else:
        session.command(f"EXCHANGE TABLES {scratch} AND {target}")
    session.command(f"DROP TABLE IF EXISTS {scratch}")


def serve_day_per_tenant(path: Path, tenants: list[str], day: dt.date, path_kind: str) -> dict:
    """Serving one day for every tenant into its own database, in ClickHouse only.

    `before`: main's path (`serve_before`); `after`: this branch's
    (`ClickHouseResource.scratch`, one scratch table per served table for all tenants).
    """
    from analytics_platform.resources.clickhouse import ClickHouseResource

    clickhouse = ClickHouseResource(url=f"chdb://{path}")
    frames = one_tenant_day(path, day)
    with clickhouse.session() as platform_session:
        session = CountingSession(platform_session)
        began = time.perf_counter()
        for table, frame in frames.items():
            if path_kind == "before":
                for tenant in tenants:
                    serve_before(clickhouse, session, tenant, table, frame, day)
                continue
            with clickhouse.scratch(session, table, like_tenant=tenants[0]) as scratch:
                for tenant in tenants:
                    if table in DATE_COLUMN:
                        scratch.replace_partitions(
                            tenant, frame, [day], date_column=DATE_COLUMN[table]
                        )
                    else:
                        scratch.replace_table(tenant, frame)
        seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 2), "statements": session.statements}


def serve_day_shared(path: Path, tenants: list[str], day: dt.date) -> dict:
    """Serving one day for all the run's tenants into a shared table, 4 statements a table.

    Daily tables: a scratch copy gets the run's rows (one INSERT) plus the day's rows
    of tenants outside the run (INSERT SELECT), then one REPLACE PARTITION swaps the
    day. Whole-history tables (partitioned by tenant): one ALTER with a REPLACE
    PARTITION per tenant.
    """
    session = session_on(path)
    statements = 0
    try:
        # Whole-history tables hold a partition per tenant: one insert spans them all.
        session.query("SET max_partitions_per_insert_block = 0")
        frames = {
            table: session.query(rows_select(session, SHARED, table, tenants, [day]), "DataFrame")
            for table in ROWS
        }
        began = time.perf_counter()
        run = "(" + ", ".join(f"'{t}'" for t in tenants) + ")"
        for table, frame in frames.items():
            scratch = f"{SHARED}._load_{table}"
            session.query(f"CREATE TABLE {scratch} AS {SHARED}.{table}")
            rows = frame  # noqa: F841  (read by chDB's Python() table function)
            names = ", ".join(frame.columns)
            session.query(f"INSERT INTO {scratch} ({names}) SELECT {names} FROM Python(rows)")
            if table in DATE_COLUMN:
                column = DATE_COLUMN[table]
                session.query(
                    f"INSERT INTO {scratch} SELECT * FROM {SHARED}.{table} "
                    f"WHERE {column} = '{day}' AND tenant_id NOT IN {run}"
                )
                partition = f"PARTITION ID '{day:%Y%m%d}'"
                session.query(f"ALTER TABLE {SHARED}.{table} REPLACE {partition} FROM {scratch}")
            else:
                actions = ", ".join(f"REPLACE PARTITION '{t}' FROM {scratch}" for t in tenants)
                session.query(f"ALTER TABLE {SHARED}.{table} {actions}")
            session.query(f"DROP TABLE {scratch}")
            statements += 4
        seconds = time.perf_counter() - began
    finally:
        session.close()
    return {"seconds": round(seconds, 2), "statements": statements}


def postgres_round_trips(n: int, database_url: str) -> dict:
    """Serving's Postgres bookkeeping for n tenants and one served table, before and after.

    Before (main at 504b68a): per tenant, `migrate_tenant` (a connection, an advisory
    lock, a lookup) and a new connection for the mart read. After: one
    `tenants_to_migrate` query and one connection for all the reads. The mart query
    itself costs the same either way; a lookup by tenant stands in for it.
    """
    from analytics_platform.resources.clickhouse import ClickHouseResource
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.migrations import (
        available_migrations,
        migrate_tenant,
        tenants_to_migrate,
    )

    postgres = PostgresResource(url=database_url)
    postgres.migrate_warehouse()
    tenants = [tenant_id(i) for i in range(n)]
    clickhouse = ClickHouseResource(url=f"chdb://{WORK / 'postgres_chdb'}")
    shutil.rmtree(WORK / "postgres_chdb", ignore_errors=True)
    read = "SELECT count(*) FROM platform.schema_versions WHERE tenant_id = %s"
    with clickhouse.session() as session:
        for tenant in tenants:
            migrate_tenant(postgres, clickhouse, session, tenant, available_migrations()[:0])
        with postgres.connect(autocommit=True) as conn:
            conn.execute(
                "DELETE FROM platform.schema_versions WHERE tenant_id = ANY(%s)", (tenants,)
            )
            for tenant in tenants:
                for m in available_migrations():
                    conn.execute(
                        "INSERT INTO platform.schema_versions VALUES (%s, %s, %s, %s)",
                        (tenant, m.version, m.name, m.checksum),
                    )
        began = time.perf_counter()
        for tenant in tenants:
            migrate_tenant(postgres, clickhouse, session, tenant)
            with postgres.connect() as conn:
                conn.execute(read, (tenant,)).fetchone()
        before = time.perf_counter() - began
        began = time.perf_counter()
        with postgres.connect(autocommit=True) as conn:
            assert tenants_to_migrate(conn, tenants) == []
            for tenant in tenants:
                conn.execute(read, (tenant,)).fetchone()
        after = time.perf_counter() - began
    shutil.rmtree(WORK / "postgres_chdb", ignore_errors=True)
    return {
        "tenants": n,
        "before_s": round(before, 2),
        "before_connections": 2 * n,
        "after_s": round(after, 3),
        "after_connections": 1,
    }


ACCESS_STATEMENTS = [
    "CREATE USER bench_reader IDENTIFIED WITH sha256_hash BY '{hash}'",
    "CREATE ROLE bench_role",
    "CREATE ROW POLICY bench_policy ON serving.t USING tenant_id = 'a' TO ALL",
    "GRANT SELECT ON serving.* TO bench_role",
    "SHOW ROW POLICIES",
    "EXECUTE AS bench_reader SELECT 1",
]
# Read paths a tenant's query could take to the shared table `serving.t`, holding
# tenant a's row and tenant b's; the session filters to a (additional_table_filters)
# and is read-only, as a shared layout's reader on chDB would be.
SHARED_READ_PATHS = {
    "table": "SELECT tenant_id FROM serving.t",
    "subquery": "SELECT tenant_id FROM (SELECT * FROM serving.t)",
    "join": "SELECT x.tenant_id FROM serving.t AS x JOIN serving.u AS y USING tenant_id",
    "union": "SELECT tenant_id FROM serving.t UNION ALL SELECT tenant_id FROM serving.u",
    "scalar subquery": "SELECT arrayJoin((SELECT groupArray(tenant_id) FROM serving.t))",
    "merge() table function": "SELECT tenant_id FROM merge('serving', '^t$')",
    "system.parts row counts": (
        "SELECT toString(sum(rows)) FROM system.parts WHERE database = 'serving' AND table = 't'"
    ),
    "lifting the filter (SETTINGS)": (
        "SELECT tenant_id FROM serving.t SETTINGS additional_table_filters = {}"
    ),
}


def access_probe(path: Path) -> dict:
    """What chDB allows of users, grants and row policies, and what a per-session filter holds.

    Every statement's outcome is recorded (`ok` or ClickHouse's error name), not assumed.
    """
    shutil.rmtree(path, ignore_errors=True)
    session = session_on(path)

    def outcome(statement: str) -> str:
        try:
            rows = session.query(statement, "CSV").bytes().decode().split()
        except Exception as err:  # chDB raises its own error type; the name is the finding
            found = re.search(r"\(([A-Z_]+)\)", str(err))
            return found[1] if found else str(err)[:80]
        return "ok: " + (", ".join(rows) if rows else "(nothing)")

    try:
        for statement in (
            "CREATE DATABASE serving",
            "CREATE TABLE serving.t (tenant_id String) ENGINE = MergeTree ORDER BY tenant_id",
            "CREATE TABLE serving.u (tenant_id String) ENGINE = MergeTree ORDER BY tenant_id",
            "INSERT INTO serving.t VALUES ('a'), ('b')",
            "INSERT INTO serving.u VALUES ('a'), ('b')",
        ):
            session.query(statement)
        access = {s: outcome(s.format(hash="0" * 64)) for s in ACCESS_STATEMENTS}
        session.query(
            "SET additional_table_filters = "
            "{'serving.t': 'tenant_id = \\'a\\'', 'serving.u': 'tenant_id = \\'a\\''}"
        )
        session.query("SET readonly = 1")
        reads = {name: outcome(query) for name, query in SHARED_READ_PATHS.items()}
    finally:
        session.close()
        shutil.rmtree(path, ignore_errors=True)
    return {"access_control": access, "filtered_reads": reads}


def migrate_add_column(path: Path, layout: str, tenants: list[str]) -> dict:
    """A new migration adding one column to every served table, everywhere."""
    databases = [SHARED] if layout == "shared" else [f"tenant_{t}" for t in tenants]
    session = session_on(path)
    began = time.perf_counter()
    try:
        for database in databases:
            for table in ROWS:
                session.query(
                    f"ALTER TABLE {database}.{table} ADD COLUMN IF NOT EXISTS bench_new UInt8"
                )
    finally:
        session.close()
    return {
        "seconds": round(time.perf_counter() - began, 2),
        "statements": len(databases) * len(ROWS),
    }


def disk(path: Path) -> dict:
    files = [p for p in path.rglob("*") if p.is_file()]
    session = session_on(path)
    try:
        parts = session.query(
            "SELECT count() AS n FROM system.parts WHERE active "
            "AND database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema')",
            "DataFrame",
        )["n"].iloc[0]
    finally:
        session.close()
    return {
        "mb": round(sum(p.stat().st_size for p in files) / 1024**2, 1),
        "files": len(files),
        "active_parts": int(parts),
    }


def measure_size(n: int, days: int, sample: int) -> dict:
    """Both layouts at n tenants; per-tenant serving and migrations on `sample` of them.

    Their cost is a fixed number of statements per tenant, so the first `sample`
    tenants' time, scaled to n, stands for all (the store still holds all n: a
    session's size is in every figure); the shared layout always does all n.
    """
    tenants = [tenant_id(i) for i in range(n)]
    sampled = tenants[:sample]
    history = [FIRST_DAY + dt.timedelta(days=d) for d in range(days)]
    new_day = history[-1] + dt.timedelta(days=1)
    result = {}
    for layout in ("per_tenant", "shared"):
        path = WORK / f"{layout}_{n}"
        row = {"build_s": build(path, layout, tenants, history)}
        row["disk"] = disk(path)
        row["probe"] = probe_in_subprocess(path, layout, tenants[n // 2], history[-1])
        if layout == "shared":
            row["serve_day"] = serve_day_shared(path, tenants, new_day)
            row["migration"] = migrate_add_column(path, layout, tenants)
        else:
            row["serve_day_before"] = serve_day_per_tenant(path, sampled, new_day, "before")
            row["serve_day"] = serve_day_per_tenant(path, sampled, new_day, "after")
            row["migration"] = migrate_add_column(path, layout, sampled)
            for key in ("serve_day_before", "serve_day", "migration"):
                row[key] |= scaled(row[key], len(sampled), n)
        result[layout] = row
        shutil.rmtree(path, ignore_errors=True)
        print(json.dumps({n: {layout: row}}), flush=True)
    return result


def scaled(measured: dict, done: int, n: int) -> dict:
    """`measured` over `done` tenants, as the same work for n tenants."""
    return {
        "tenants_done": done,
        "seconds_for_all": round(measured["seconds"] * n / done, 1),
        "statements_for_all": measured["statements"] * n // done,
    }


def measure(args) -> dict:
    sizes = {str(n): measure_size(n, args.days, args.sample) for n in args.tenants}
    return {
        "measured_on": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "chdb": chdb_version(),
        "days_per_tenant": args.days,
        "per_tenant_sample": args.sample,
        "rows": ROWS,
        "sizes": sizes,
        "access": access_probe(WORK / "access"),
    }


def chdb_version() -> str:
    import chdb

    return f"chdb {chdb.__version__} (ClickHouse {chdb.engine_version})"


def _all_tenants(measured: dict) -> str:
    """Seconds for all tenants; for a sample, what it took and for how many."""
    if "seconds_for_all" not in measured or measured["tenants_done"] == 0:
        return f"{measured['seconds']:.2f} s"
    return (
        f"{measured['seconds_for_all']:.1f} s ({measured['seconds']:.1f} s "
        f"for {measured['tenants_done']:,}, scaled)"
    )


def _layout_row(n: str, layout: str, row: dict) -> str:
    p, m, d = row["probe"], row["migration"], row["disk"]
    alters = m.get("statements_for_all", m["statements"])
    return (
        f"| {int(n):,} | {layout.replace('_', ' ')} | {p['startup_s']:.2f} s "
        f"| {p['rss_startup_mb']:.0f} / {p['rss_after_query_mb']:.0f} MB "
        f"| {p['daily_90d_first_s'] * 1000:.0f} / {p['daily_90d_s'] * 1000:.0f} ms "
        f"| {p['sessions_page_first_s'] * 1000:.0f} / {p['sessions_page_s'] * 1000:.0f} ms "
        f"| {_all_tenants(m)} ({alters:,}) "
        f"| {d['mb']:.0f} MB, {d['files']:,} files, {d['active_parts']:,} parts |"
    )


def _serving_rows(n: str, layouts: dict) -> list[str]:
    rows = []
    for label, layout, key in (
        ("per tenant, main (504b68a)", "per_tenant", "serve_day_before"),
        ("per tenant, this branch", "per_tenant", "serve_day"),
        ("shared tables", "shared", "serve_day"),
    ):
        serve = layouts.get(layout, {}).get(key)
        if serve:
            rows.append(
                f"| {int(n):,} | {label} | {serve['seconds']:.2f} s | {serve['statements']:,} |"
            )
    return rows


def report(measured: dict) -> str:
    lines = [
        "## ClickHouse at 1,000 tenants: a database per tenant vs shared tables",
        "",
        f"Measured {measured['measured_on']} on {measured['machine']}, {measured['chdb']}, "
        f"load average {measured['load_average']} at the end: a machine shared with other "
        "sessions, so every figure is contaminated (compare rows measured together). Each "
        f"tenant holds {measured['days_per_tenant']} days of the platform's six served "
        f"tables, rows per tenant-day or per tenant: {measured['rows']}. "
        "`benchmarks/scale_clickhouse.py`; start-up and reads in a fresh process.",
        "",
        "| tenants | layout | session start-up + first query | RSS after start-up / after "
        "the reads | 90-day daily metrics, first / warm | sessions page, first / warm "
        "| add a column everywhere (ALTERs) | on disk |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, layouts in measured["sizes"].items():
        lines += [_layout_row(n, layout, row) for layout, row in layouts.items()]
    lines += [
        "",
        "Serving one day for all N tenants, ClickHouse's part only (no Postgres):",
        "",
        "| tenants | path | seconds | statements |",
        "|---|---|---|---|",
    ]
    for n, layouts in measured["sizes"].items():
        lines += _serving_rows(n, layouts)
    for trips in measured.get("postgres", []):
        lines += [
            "",
            f"Serving's Postgres bookkeeping for one served table at {trips['tenants']:,} "
            f"tenants (load average {measured.get('postgres_load_average')}): main "
            f"{trips['before_s']:.2f} s ({trips['before_connections']:,} connections, a "
            f"migration lock per tenant), this branch {trips['after_s']:.3f} s (one "
            "connection, one migration lookup); a run serves six tables.",
        ]
    access = measured.get("access")
    if access:
        lines += ["", "What chDB allows (each statement run, its outcome recorded):", ""]
        lines += [f"- `{k}`: {v}" for k, v in access["access_control"].items()]
        lines += [
            "",
            "A shared table read by a read-only session filtered to tenant `a` "
            "(`additional_table_filters`), tenant `b`'s row present:",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in access["filtered_reads"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[10, 100, 300, 1000])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument(
        "--sample", type=int, default=100, help="tenants served and migrated per-tenant (scaled)"
    )
    parser.add_argument("--quick", action="store_true", help="10 and 30 tenants, 5 days")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite BENCHMARKS.md from the results file"
    )
    parser.add_argument(
        "--postgres",
        type=int,
        nargs="+",
        help="add serving's Postgres round trips for these tenant counts to the results file",
    )
    parser.add_argument("--probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        path, layout, tenant, last_day = args.probe
        print(json.dumps(probe(Path(path), layout, tenant, dt.date.fromisoformat(last_day))))
        return
    if args.report_only or args.postgres:
        measured = json.loads(RESULTS.read_text())
        if args.postgres:
            with fresh_database() as database_url:
                measured["postgres"] = [
                    postgres_round_trips(n, database_url) for n in args.postgres
                ]
            measured["postgres_load_average"] = [round(x, 2) for x in os.getloadavg()]
            RESULTS.write_text(json.dumps(measured, indent=2) + "\n")
        write_section("scale-clickhouse", report(measured))
        return
    if args.quick:
        args.tenants, args.days, args.sample = [10, 30], 5, 20
    WORK.mkdir(parents=True, exist_ok=True)
    measured = measure(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(measured, indent=2) + "\n")
    write_section("scale-clickhouse", report(measured))
    print(report(measured))


if __name__ == "__main__":
    main()
