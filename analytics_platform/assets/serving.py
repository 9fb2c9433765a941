"""Serving layer: the day-partitioned marts copied into each tenant's own ClickHouse database.

One asset per served mart, all six built by one step (`serving_marts`, a
multi-asset that can be subset): read the run's tenant-days from Postgres,
replace those day partitions in ClickHouse atomically. A run for days [S, E]
serves [S-1, E+1], because the marts rebuild the neighbouring days too
(sessions cross midnight).

One step, not one per mart: a chDB session's start-up reads the metadata of
every tenant's database (about 75 s at 1,000 tenants), and a step per mart paid
it six times per run; a Postgres connection, the held days and the migration
lookup are likewise shared by the six.
"""

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    multi_asset,
)

from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.automation import on_upstream_update
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.checks.holds import held_neighbours
from analytics_platform.mart_columns import model_columns, serving_select
from analytics_platform.partitions import TenantDay, slice_window, tenant_day, tenant_days
from analytics_platform.resources.clickhouse import ClickHouseResource, ClickHouseSession
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import CLICKHOUSE_POOL, asset_key
from analytics_platform.tenants.migrations import migrate_tenant, tenants_to_migrate

SERVING_STEP = "serving_marts"
# Tenants read from Postgres per query: one query per mart for a run of 50 tenants,
# and a whole-history mart's rows held in memory for this many tenants at a time.
READ_TENANTS_PER_QUERY = 100


@dataclass(frozen=True)
class ServedMart:
    """A mart `marts.<table>` served as `<tenant database>.<table>`."""

    table: str
    date_column: str | None  # None: a whole-history mart, replaced per tenant as a whole
    asset_name: str

    @property
    def key(self) -> AssetKey:
        return asset_key(self.asset_name)

    @property
    def select(self) -> str:
        """The mart's columns from its dbt YAML, cast to what the ClickHouse table expects."""
        return serving_select(model_columns(self.table))

    def read(self, conn: psycopg.Connection, tenant: str, dates: list[dt.date]) -> pd.DataFrame:
        """The tenant's rows of `dates` (all its rows for a whole-history mart)."""
        return self.read_many(conn, {tenant: dates})[tenant]

    def read_many(
        self, conn: psycopg.Connection, dates: Mapping[str, Sequence[dt.date]]
    ) -> dict[str, pd.DataFrame]:
        """Each tenant's rows of its `dates` (all its rows for a whole-history mart), read
        in one query: a query per tenant and mart was 6,000 round trips at 1,000 tenants."""
        tenants = sorted(dates)
        wanted = sorted({d for days in dates.values() for d in days})
        days = "" if self.date_column is None else f" AND {self.date_column} = ANY(%s)"
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {self.select} FROM marts.{self.table} WHERE tenant_id = ANY(%s){days}",
                (tenants, wanted) if days else (tenants,),
            )
            names = [column.name for column in cur.description]
            frame = pd.DataFrame(cur.fetchall(), columns=names)
        if self.date_column is not None:
            frame[self.date_column] = pd.to_datetime(frame[self.date_column])
        frame["_loaded_at"] = pd.Timestamp.now(tz="UTC")
        groups = dict(iter(frame.groupby("tenant_id", sort=False))) if len(frame) else {}
        by_tenant = {}
        for tenant in tenants:
            rows = groups.get(tenant, frame.iloc[0:0])
            if self.date_column is not None and len(rows):
                # The run's tenants share a query; each keeps only its own days.
                rows = rows[rows[self.date_column].dt.date.isin(set(dates[tenant]))]
            by_tenant[tenant] = rows.reset_index(drop=True)
        return by_tenant

    @property
    def spec(self) -> AssetSpec:
        return AssetSpec(
            key=self.key,
            deps=[asset_key(self.table)],
            partitions_def=tenant_day,
            group_name="serving",
            kinds={"clickhouse"},
            owners=["team:data-platform"],
            tags={"layer": "serving"},
            freshness_policy=LAYER_FRESHNESS["serving"],
            automation_condition=on_upstream_update,
            # A run that selects some served marts builds only those.
            skippable=True,
            description=(
                f"`marts.{self.table}` in the tenant's own ClickHouse database "
                f"(`tenant_<id>.{self.table}`), "
                + (
                    "each day's partition replaced atomically."
                    if self.date_column
                    else "replaced as a whole (REPLACE PARTITION ID 'all') for each tenant "
                    "of the run."
                )
            ),
        )


SERVED_MARTS = [
    ServedMart("fct_daily_metrics", "event_date", "serving_daily_metrics"),
    ServedMart("fct_sessions", "session_date", "serving_sessions"),
    ServedMart("fct_channel_daily", "event_date", "serving_channel_daily"),
    ServedMart("fct_funnel_daily", "event_date", "serving_funnel_daily"),
    ServedMart("dim_visitors", None, "serving_visitors"),
    ServedMart("fct_experiment_results", None, "serving_experiment_results"),
]


def served_days(days: list[dt.date]) -> list[dt.date]:
    """The run's days and their neighbours, which the marts rebuilt too."""
    return sorted({d + dt.timedelta(days=shift) for d in days for shift in (-1, 0, 1)})


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def serve_mart(
    mart: ServedMart,
    conn: psycopg.Connection,
    clickhouse: ClickHouseResource,
    session: ClickHouseSession,
    dates: Mapping[str, list[dt.date]],
    run_days: Mapping[str, list[dt.date]],
) -> MaterializeResult:
    """Replace each tenant's `dates` of `mart` (its whole table for a whole-history mart);
    what Dagster records for the mart's served asset. `run_days`: the run's own days."""
    tenants = sorted(dates)
    counts: dict[TenantDay, int] = {}
    rows_served = 0
    with clickhouse.scratch(session, mart.table, like_tenant=tenants[0]) as scratch:
        for chunk in _chunks(tenants, READ_TENANTS_PER_QUERY):
            frames = mart.read_many(conn, {tenant: dates[tenant] for tenant in chunk})
            for tenant in chunk:
                frame = frames[tenant]
                if mart.date_column is None:
                    rows_served += scratch.replace_table(tenant, frame)
                    continue
                rows_served += scratch.replace_partitions(
                    tenant, frame, dates[tenant], date_column=mart.date_column
                )
                per_day = frame[mart.date_column].dt.date.value_counts()
                counts.update(
                    {TenantDay(tenant, d): int(per_day.get(d, 0)) for d in run_days[tenant]}
                )
    return MaterializeResult(
        asset_key=mart.key,
        metadata={
            # Whole-history marts belong to no partition: only their total is shown.
            **(row_count_metadata(counts) if mart.date_column else {}),
            "rows_served": rows_served,
            "databases": sorted(clickhouse.database_for(t) for t in tenants),
            "backend": "chdb (embedded)" if clickhouse.is_embedded else "clickhouse server",
        },
    )


@multi_asset(
    name=SERVING_STEP,
    specs=[mart.spec for mart in SERVED_MARTS],
    partitions_def=tenant_day,
    can_subset=True,
    backfill_policy=BackfillPolicy.single_run(),
    pool=CLICKHOUSE_POOL,
)
def serving_marts(
    context: AssetExecutionContext,
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
) -> Iterator[MaterializeResult]:
    slices = tenant_days(context.partition_keys)
    run_days: dict[str, list[dt.date]] = {}
    for s in slices:
        run_days.setdefault(s.tenant, []).append(s.date)
    tenants = sorted(run_days)
    # One Postgres connection and one chDB session for every tenant and mart of the run,
    # one scratch table per mart, and migrations looked up in one query: at 1,000
    # tenants the per-tenant connections, locks and DDL, and a chDB start-up per mart,
    # were most of serving. Autocommit: no transaction stays open (and no lock on the
    # marts) while serving runs.
    with postgres.connect(autocommit=True) as conn, clickhouse.session() as session:
        held = {(s.tenant, s.date) for s in held_neighbours(conn, slice_window(slices))}
        for tenant in tenants_to_migrate(conn, tenants):
            migrate_tenant(postgres, clickhouse, session, tenant)
        dates = {
            tenant: [d for d in served_days(run_days[tenant]) if (tenant, d) not in held]
            for tenant in tenants
        }
        for mart in SERVED_MARTS:
            if mart.key in context.selected_asset_keys:
                yield serve_mart(mart, conn, clickhouse, session, dates, run_days)


serving_assets = [serving_marts]
