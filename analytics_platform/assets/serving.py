"""Serving layer: the day-partitioned marts copied into each tenant's own ClickHouse database.

One asset per served mart, all built by `served_mart_asset`: read the tenant's
days from Postgres, replace those day partitions in ClickHouse atomically. A
run for days [S, E] serves [S-1, E+1], because the marts rebuild the
neighbouring days too (sessions cross midnight).
"""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.automation import on_upstream_update
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.checks.holds import held_neighbours
from analytics_platform.partitions import TenantDay, slice_window, tenant_day, tenant_days
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.migrations import migrate_tenant


@dataclass(frozen=True)
class ServedMart:
    """A mart `marts.<table>` served as `<tenant database>.<table>`."""

    table: str
    date_column: str | None  # None: a whole-history mart, replaced per tenant as a whole
    select: str  # the columns, cast to what the ClickHouse table expects
    asset_name: str

    def read(self, postgres: PostgresResource, tenant: str, dates: list[dt.date]) -> pd.DataFrame:
        days = "" if self.date_column is None else f" AND {self.date_column} = ANY(%s)"
        with postgres.connect() as conn, conn.cursor() as cur:
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
    ServedMart(
        table="fct_daily_metrics",
        date_column="event_date",
        select=(
            "tenant_id, event_date, site_id, visitors, new_visitors, returning_visitors, "
            "identified_users, sessions, page_views, events, bounce_rate::float8 AS bounce_rate, "
            "average_session_seconds::float8 AS average_session_seconds, conversions, "
            "conversion_rate::float8 AS conversion_rate, revenue::float8 AS revenue"
        ),
        asset_name="serving_daily_metrics",
    ),
    ServedMart(
        table="fct_sessions",
        date_column="session_date",
        select=(
            "tenant_id, session_id, session_date, site_id, visitor_id, user_id, session_start, "
            "session_end, duration_seconds, page_views, events, landing_path, exit_path, "
            "referrer, utm_source, utm_medium, utm_campaign, channel, is_bounce, converted, "
            "revenue::float8 AS revenue"
        ),
        asset_name="serving_sessions",
    ),
    ServedMart(
        table="fct_channel_daily",
        date_column="event_date",
        select=(
            "tenant_id, event_date, channel, sessions, visitors, conversions, "
            "conversion_rate::float8 AS conversion_rate, revenue::float8 AS revenue"
        ),
        asset_name="serving_channel_daily",
    ),
    ServedMart(
        table="fct_funnel_daily",
        date_column="event_date",
        select=(
            "tenant_id, event_date, step_number, step_name, sessions, visitors, "
            "conversion_from_previous::float8 AS conversion_from_previous, "
            "conversion_from_first::float8 AS conversion_from_first"
        ),
        asset_name="serving_funnel_daily",
    ),
    ServedMart(
        table="dim_visitors",
        date_column=None,
        select=(
            "tenant_id, visitor_id, first_seen_at, last_seen_at, first_touch_channel, "
            "first_touch_utm_source, first_touch_utm_medium, first_touch_utm_campaign, "
            "sessions, revenue::float8 AS revenue, latest_user_id"
        ),
        asset_name="serving_visitors",
    ),
    ServedMart(
        table="fct_experiment_results",
        date_column=None,
        select=(
            "tenant_id, experiment_id, variant, is_control, exposed_visitors, converters, "
            "conversion_rate::float8 AS conversion_rate, switched_visitors, first_exposed_at, "
            "uplift::float8 AS uplift, z_score::float8 AS z_score, p_value::float8 AS p_value"
        ),
        asset_name="serving_experiment_results",
    ),
]


def served_days(days: list[dt.date]) -> list[dt.date]:
    """The run's days and their neighbours, which the marts rebuilt too."""
    return sorted({d + dt.timedelta(days=shift) for d in days for shift in (-1, 0, 1)})


def served_mart_asset(mart: ServedMart) -> AssetsDefinition:
    @asset(
        key=AssetKey(mart.asset_name),
        deps=[AssetKey(mart.table)],
        partitions_def=tenant_day,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="serving",
        kinds={"clickhouse"},
        owners=["team:data-platform"],
        tags={"layer": "serving"},
        freshness_policy=LAYER_FRESHNESS["serving"],
        pool="clickhouse",
        automation_condition=on_upstream_update,
        description=(
            f"`marts.{mart.table}` in the tenant's own ClickHouse database "
            f"(`tenant_<id>.{mart.table}`), "
            + (
                "each day's partition replaced atomically."
                if mart.date_column
                else "replaced as a whole (EXCHANGE TABLES) for each tenant of the run."
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
        with postgres.connect() as conn:
            held = {
                (s.tenant, s.date)
                for s in held_neighbours(conn, slice_window(tenant_days(context.partition_keys)))
            }
        with clickhouse.session() as session:
            for tenant, days in sorted(by_tenant.items()):
                migrate_tenant(postgres, clickhouse, session, tenant)
                dates = [d for d in served_days(days) if (tenant, d) not in held]
                frame = mart.read(postgres, tenant, dates)
                if mart.date_column is None:
                    rows_served += clickhouse.replace_table(session, tenant, mart.table, frame)
                else:
                    rows_served += clickhouse.replace_partitions(
                        session, tenant, mart.table, frame, dates, date_column=mart.date_column
                    )
                    per_day = frame[mart.date_column].dt.date.value_counts()
                    counts.update({TenantDay(tenant, d): int(per_day.get(d, 0)) for d in days})
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
