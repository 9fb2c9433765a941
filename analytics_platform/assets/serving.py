"""Serving layer: marts copied into each tenant's own ClickHouse database."""

import datetime as dt

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from analytics_platform.partitions import tenant_day, tenant_days
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.migrations import migrate_tenant

DAILY_METRICS_COLUMNS = ("tenant_id", "event_date", "visitors", "sessions", "page_views", "events")


def read_daily_metrics(
    postgres: PostgresResource, tenant: str, dates: list[dt.date]
) -> pd.DataFrame:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(DAILY_METRICS_COLUMNS)} FROM marts.fct_daily_metrics "
            "WHERE tenant_id = %s AND event_date = ANY(%s) ORDER BY event_date",
            (tenant, dates),
        )
        frame = pd.DataFrame(cur.fetchall(), columns=list(DAILY_METRICS_COLUMNS))
    for column in ("visitors", "sessions", "page_views", "events"):
        frame[column] = frame[column].astype("uint64")
    frame["event_date"] = pd.to_datetime(frame["event_date"])
    frame["_loaded_at"] = pd.Timestamp.now(tz="UTC")
    return frame


@asset(
    key=AssetKey("serving_daily_metrics"),
    deps=[AssetKey("fct_daily_metrics")],
    partitions_def=tenant_day,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="serving",
    kinds={"clickhouse"},
    owners=["team:data-platform"],
    tags={"layer": "serving"},
    pool="clickhouse",
    description=(
        "fct_daily_metrics in the tenant's own ClickHouse database "
        "(<prefix><tenant>.fct_daily_metrics), each day's partition replaced atomically."
    ),
)
def serving_daily_metrics(
    context: AssetExecutionContext,
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
) -> MaterializeResult:
    slices = tenant_days(context.partition_keys)
    by_tenant: dict[str, list[dt.date]] = {}
    for s in slices:
        # Marts rebuild the neighbouring days too (sessions cross midnight): serve them too.
        for shift in (-1, 0, 1):
            day = s.date + dt.timedelta(days=shift)
            if day not in by_tenant.setdefault(s.tenant, []):
                by_tenant[s.tenant].append(day)
    rows = 0
    with clickhouse.session() as session:
        for tenant, dates in by_tenant.items():
            migrate_tenant(postgres, clickhouse, session, tenant)
            frame = read_daily_metrics(postgres, tenant, dates)
            rows += clickhouse.replace_partitions(
                session, tenant, "fct_daily_metrics", frame, dates
            )
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "databases": sorted(clickhouse.database_for(t) for t in by_tenant),
            "backend": "chdb (embedded)" if clickhouse.is_embedded else "clickhouse server",
        }
    )
