"""Cumulative marts built day by day equal a recompute, after an old day is rebuilt too.

fct_experiment_results sums per-day aggregates and dim_visitors recomputes only the
visitors a run touches, so neither rereads a tenant's history (benchmarks/
scale_history.py). Here two tenants' days are built one run at a time, one old day of
one tenant is replaced with changed data (visitors gone, variants flipped, later
conversions, an earlier exposure) and rebuilt alone; both marts must then equal a
full-refresh build over the same raw rows, and the experiment counts must equal their
definition computed straight from the staged events.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from analytics_platform.dbt_project import SLICE_ENV, dbt_resource
from analytics_platform.demo.generator import EXPERIMENT, tenant_events
from analytics_platform.resources.postgres import PostgresResource

DAYS = [dt.date(2026, 5, 4) + dt.timedelta(days=n) for n in range(4)]
OLD_DAY = DAYS[1]  # rebuilt after every day is built; DAYS[3] is not even its neighbour
RAW_COLUMNS = (
    "event_id",
    "tenant_id",
    "event_type",
    "occurred_at",
    "visitor_id",
    "user_id",
    "session_hint",
    "path",
    "experiment_id",
    "variant",
    "revenue",
    "currency",
    "_partition_date",
    "_source",
    "_source_line",
)

# The definition fct_experiment_results implements, over every staged event.
EXPERIMENTS_FROM_EVENTS = """
with exposures as (
    select * from staging.stg_events
    where experiment_id is not null and variant is not null and tenant_id = any(%(tenants)s)
),
assigned as (
    select distinct on (tenant_id, experiment_id, visitor_id) *
    from exposures order by tenant_id, experiment_id, visitor_id, occurred_at, event_id
),
converted as (
    select tenant_id, visitor_id, max(occurred_at) as last_at from staging.stg_events
    where event_type in ('signup', 'purchase') group by tenant_id, visitor_id
),
variants_seen as (
    select tenant_id, experiment_id, visitor_id, count(distinct variant) as seen
    from exposures group by tenant_id, experiment_id, visitor_id
)
select a.tenant_id, a.experiment_id, a.variant, count(*),
    count(*) filter (where c.last_at >= a.occurred_at),
    count(*) filter (where v.seen > 1), min(a.occurred_at)
from assigned as a
left join converted as c using (tenant_id, visitor_id)
join variants_seen as v using (tenant_id, experiment_id, visitor_id)
group by 1, 2, 3 order by 1, 2, 3
"""


def raw_rows(tenant: str, day: dt.date, events: list[dict]) -> list[tuple]:
    source = f"{tenant}/{day.isoformat()}/events.jsonl"
    return [
        (
            e["event_id"],
            tenant,
            e["event_type"],
            e["occurred_at"],
            e["visitor_id"],
            e.get("user_id"),
            e["session_id"],
            e["path"],
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


def changed_day(events_by_day: dict[dt.date, list[dict]]) -> list[dict]:
    """OLD_DAY's events as a replaced file brings them: every kind of change at once."""
    day = events_by_day[OLD_DAY]
    elsewhere = {e["visitor_id"] for d, es in events_by_day.items() if d != OLD_DAY for e in es}
    here = sorted({e["visitor_id"] for e in day})
    gone = {v for v in here if v in elsewhere}
    gone = set(sorted(gone)[:3]) | set(sorted(set(here) - elsewhere)[:3])
    kept = [dict(e) for e in day if e["visitor_id"] not in gone]
    exposed = sorted({e["visitor_id"] for e in kept if e.get("variant")})
    flipped = set(exposed[:4])
    for event in kept:
        if event["visitor_id"] in flipped:
            event["variant"] = "control" if event["variant"] == "treatment" else "treatment"

    def first_exposure(d: dt.date) -> dict[str, dict]:
        return {e["visitor_id"]: e for e in reversed(events_by_day[d]) if e.get("variant")}

    noon = dt.datetime.combine(OLD_DAY, dt.time(12), tzinfo=dt.timezone.utc)
    # Exposed the day before, converting now; exposed later, first exposed now instead.
    converters = sorted(set(first_exposure(DAYS[0])) - set(exposed))[:3]
    before = set(here) | set(first_exposure(DAYS[0])) | set(first_exposure(DAYS[2]))
    earlier = [e for v, e in sorted(first_exposure(DAYS[3]).items()) if v not in before][:2]
    added = [
        {
            "visitor_id": v,
            "event_type": "purchase",
            "path": "/checkout",
            "revenue": "49.00",
            "currency": "EUR",
            "user_id": f"user_{v}",
        }
        for v in converters
    ] + [
        {
            "visitor_id": e["visitor_id"],
            "event_type": "page_view",
            "path": "/",
            "experiment_id": EXPERIMENT,
            "variant": "control" if e["variant"] == "treatment" else "treatment",
        }
        for e in earlier
    ]
    for number, event in enumerate(added):
        event.update(
            event_id=f"changed_{number}",
            occurred_at=noon + dt.timedelta(minutes=number),
            session_id=f"changed_{number}",
        )
    assert gone and flipped and converters and earlier, "the generated days lack a case"
    return kept + added


def dbt_build(monkeypatch, tmp_path, tenants=None, day=None, *, full_refresh=False) -> None:
    """One dbt build (staging and marts) for `tenants` x `day`; with neither, everything."""
    if tenants:
        slice_ = {"tenants": tenants, "start_date": str(day), "end_date": str(day)}
        monkeypatch.setenv(SLICE_ENV, json.dumps(slice_))
    else:
        monkeypatch.delenv(SLICE_ENV, raising=False)
    args = ["build", "--full-refresh"] if full_refresh else ["build"]
    dbt_resource().cli(args, target_path=tmp_path / "target").wait()


def rows(postgres: PostgresResource, table: str, tenants: list[str]) -> dict[str, list[tuple]]:
    """Each tenant's rows of a mart, in a stable order."""
    with postgres.connect() as conn:
        found = conn.execute(
            f"SELECT * FROM marts.{table} WHERE tenant_id = ANY(%s) ORDER BY 1, 2, 3",
            [tenants],
        ).fetchall()
    return {t: [r for r in found if r[0] == t] for t in tenants}


@pytest.fixture
def warehouse(fresh_database, monkeypatch) -> PostgresResource:
    postgres = PostgresResource(url=fresh_database("ap_test_history"))
    postgres.ensure_warehouse()
    for name, value in postgres.libpq_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(SLICE_ENV, raising=False)
    return postgres


def test_rebuilding_an_old_day_leaves_experiments_and_visitors_as_a_recompute_would(
    warehouse, new_tenant, tmp_path, monkeypatch
):
    changed, other = new_tenant("acme"), new_tenant("globex")
    tenants = sorted([changed, other])
    generated = {t: dict(tenant_events(t, DAYS, events_per_day=150)) for t in tenants}
    with warehouse.transaction() as conn:
        for tenant in tenants:
            for day, events in generated[tenant].items():
                warehouse.copy_rows(
                    conn, "raw.file_events", RAW_COLUMNS, raw_rows(tenant, day, events)
                )
    for day in DAYS:
        dbt_build(monkeypatch, tmp_path, tenants, day)
    before = {m: rows(warehouse, m, tenants) for m in ("fct_experiment_results", "dim_visitors")}

    # A replaced file for one tenant's old day, rebuilt by a run of that tenant-day alone.
    with warehouse.transaction() as conn:
        conn.execute(
            "DELETE FROM raw.file_events WHERE tenant_id = %s AND _partition_date = %s",
            [changed, OLD_DAY],
        )
        new_rows = raw_rows(changed, OLD_DAY, changed_day(generated[changed]))
        warehouse.copy_rows(conn, "raw.file_events", RAW_COLUMNS, new_rows)
    dbt_build(monkeypatch, tmp_path, [changed], OLD_DAY)
    incremental = {m: rows(warehouse, m, tenants) for m in before}

    for mart in before:
        assert incremental[mart][changed] != before[mart][changed], mart  # the change shows
        assert incremental[mart][other] == before[mart][other], mart  # and only there
    with warehouse.connect() as conn:
        from_events = conn.execute(EXPERIMENTS_FROM_EVENTS, {"tenants": tenants}).fetchall()
    counted = [
        (*r[:3], r[4], r[5], r[7], r[8])
        for t in tenants
        for r in incremental["fct_experiment_results"][t]
    ]
    assert counted == [tuple(r) for r in from_events]

    dbt_build(monkeypatch, tmp_path, full_refresh=True)
    assert {m: rows(warehouse, m, tenants) for m in before} == incremental


def test_a_warehouse_built_before_the_history_indexes_gains_them_once(fresh_database):
    """dbt creates a model's indexes only with its table; the migration adds the two
    that the day-by-day builds rely on to tables built without them, never twice."""
    postgres = PostgresResource(url=fresh_database("ap_test_old_indexes"))
    with postgres.connect(autocommit=True) as conn:
        conn.execute("CREATE SCHEMA staging; CREATE SCHEMA marts")
        conn.execute(
            "CREATE TABLE staging.stg_events (tenant_id text, visitor_id text, site_id text, "
            "event_date date, event_id text)"
        )
        conn.execute("CREATE TABLE marts.fct_sessions (tenant_id text, visitor_id text)")

    def indexes() -> dict[str, list[str]]:
        with postgres.connect() as conn:
            rows = conn.execute(
                "SELECT tablename, indexdef FROM pg_indexes "
                "WHERE schemaname IN ('staging', 'marts') ORDER BY 1, 2"
            ).fetchall()
        found: dict[str, list[str]] = {}
        for table, definition in rows:
            found.setdefault(table, []).append(definition.split(" USING btree ")[1])
        return found

    assert postgres.migrate_warehouse()
    expected = {
        "fct_sessions": ["(tenant_id, visitor_id)"],
        "stg_events": ["(tenant_id, visitor_id, site_id, event_date)"],
    }
    assert indexes() == expected
    with postgres.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM platform.warehouse_version")  # migrate again, as if new
    assert postgres.migrate_warehouse()
    assert indexes() == expected
