"""Serving layer: the day-partitioned marts copied into each tenant's own ClickHouse database.

One asset per served mart, all built by `served_mart_asset`: read the tenant's
days from Postgres, replace those day partitions in ClickHouse atomically. A
run for days [S, E] serves [S-1, E+1], because the marts rebuild the
neighbouring days too (sessions cross midnight).
"""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import psycopg
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.automation import on_upstream_update
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.checks.holds import held_neighbours
from analytics_platform.mart_columns import model_columns, serving_select
from analytics_platform.partitions import TenantDay, slice_window, tenant_day, tenant_days
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import CLICKHOUSE_POOL, asset_key
from analytics_platform.tenants.migrations import migrate_tenant, tenants_to_migrate


@dataclass(frozen=True)
class ServedMart:
    """A mart `marts.<table>` served as `<tenant database>.<table>`."""

    table: str
    date_column: str | None  # None: a whole-history mart, replaced per tenant as a whole
    asset_name: str

    @property
    def select(self) -> str:
        """The mart's columns from its dbt YAML, cast to what the ClickHouse table expects."""
        return serving_select(model_columns(self.table))

    def read(self, conn: psycopg.Connection, tenant: str, dates: list[dt.date]) -> pd.DataFrame:
        """The tenant's rows of `dates` (all its rows for a whole-history mart)."""
        days = "" if self.date_column is None else f" AND {self.date_column} = ANY(%s)"
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {self.select} FROM marts.{self.table} WHERE tenant_id = %s{days}",
                (tenant, dates) if days else (tenant,),
            )
            names = [column.name for column in cur.description]
            frame = pd.DataFrame(cur.fetchall(), columns=names)
        if self.date_column is not None:
            frame[self.date_column] = pd.to_datetime(frame[self.date_column])
        frame["_loaded_at"] = pd.Timestamp.now(tz="UTC")
        return frame


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


def served_mart_asset(mart: ServedMart) -> AssetsDefinition:
    @asset(
        key=asset_key(mart.asset_name),
        deps=[asset_key(mart.table)],
        partitions_def=tenant_day,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="serving",
        kinds={"clickhouse"},
        owners=["team:data-platform"],
        tags={"layer": "serving"},
        freshness_policy=LAYER_FRESHNESS["serving"],
        pool=CLICKHOUSE_POOL,
        automation_condition=on_upstream_update,
        description=(
            f"`marts.{mart.table}` in the tenant's own ClickHouse database "
            f"(`tenant_<id>.{mart.table}`), "
            + (
                "each day's partition replaced atomically."
                if mart.date_column
                else "replaced as a whole (REPLACE PARTITION ID 'all') for each tenant of the run."
            )
        ),
    )
    def serve(
        context: AssetExecutionContext,
        postgres: PostgresResource,
        clickhouse: ClickHouseResource,
    ) -> MaterializeResult:
        by_tenant: dict[str, list[dt.date]] = {}
        for s in tenant_days(context.partition_keys):
            by_tenant.setdefault(s.tenant, []).append(s.date)
        counts: dict[TenantDay, int] = {}
        rows_served = 0
        tenants = sorted(by_tenant)
        # One Postgres connection and one chDB session for every tenant of the run, one
        # scratch table per mart, and migrations looked up in one query: at 1,000
        # tenants the per-tenant connections, locks and DDL were most of serving.
        # Autocommit: no transaction stays open (and no lock on the marts) while serving runs.
        with postgres.connect(autocommit=True) as conn, clickhouse.session() as session:
            held = {
                (s.tenant, s.date)
                for s in held_neighbours(conn, slice_window(tenant_days(context.partition_keys)))
            }
            for tenant in tenants_to_migrate(conn, tenants):
                migrate_tenant(postgres, clickhouse, session, tenant)
            with clickhouse.scratch(session, mart.table, like_tenant=tenants[0]) as scratch:
                for tenant in tenants:
                    dates = [d for d in served_days(by_tenant[tenant]) if (tenant, d) not in held]
                    frame = mart.read(conn, tenant, dates)
                    if mart.date_column is None:
                        rows_served += scratch.replace_table(tenant, frame)
                        continue
                    rows_served += scratch.replace_partitions(
                        tenant, frame, dates, date_column=mart.date_column
                    )
                    per_day = frame[mart.date_column].dt.date.value_counts()
                    counts.update(
                        {TenantDay(tenant, d): int(per_day.get(d, 0)) for d in by_tenant[tenant]}
                    )
        return MaterializeResult(
            metadata={
                # Whole-history marts belong to no partition: only their total is shown.
                **(row_count_metadata(counts) if mart.date_column else {}),
                "rows_served": rows_served,
                "databases": sorted(clickhouse.database_for(t) for t in by_tenant),
                "backend": "chdb (embedded)" if clickhouse.is_embedded else "clickhouse server",
            }
        )

    return serve


serving_assets = [served_mart_asset(mart) for mart in SERVED_MARTS]
