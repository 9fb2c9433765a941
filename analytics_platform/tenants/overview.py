"""One row per tenant for `analytics-platform tenants list`: registry, Dagster and data together."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from dagster import DagsterInstance

from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import asset_key
from analytics_platform.tenants.registry import list_tenants
from analytics_platform.tenants.sites import sites_by_tenant

RAW_ASSET = asset_key("raw_file_events")

# Each tenant's newest raw day, one backward step of the (tenant_id, _partition_date)
# index per tenant: a GROUP BY over raw.file_events reads every row of every tenant.
LAST_DATA_DAY = """
    SELECT t.tenant_id, newest.day
    FROM platform.tenants t
    CROSS JOIN LATERAL (
        SELECT max(f._partition_date) AS day FROM raw.file_events f
        WHERE f.tenant_id = t.tenant_id
    ) newest
    WHERE newest.day IS NOT NULL
"""


@dataclass(frozen=True)
class TenantOverview:
    tenant_id: str
    display_name: str
    status: str
    partitions_materialized: int
    last_data_day: dt.date | None
    database: str
    schema_version: int
    sites: tuple[str, ...]  # the default site (its own id) first


def tenant_overview(
    postgres: PostgresResource, clickhouse: ClickHouseResource, instance: DagsterInstance
) -> list[TenantOverview]:
    """Every registered tenant with its raw partitions, last data day, schema and sites."""
    registered = list_tenants(postgres)
    with postgres.connect() as conn:
        last_day = dict(conn.execute(LAST_DATA_DAY).fetchall())
        version = dict(
            conn.execute(
                "SELECT tenant_id, max(version) FROM platform.schema_versions GROUP BY tenant_id"
            ).fetchall()
        )
        sites = sites_by_tenant(conn)
    # Keys Dagster stored are `date|tenant` (partitions.py): the tenant is the last field.
    materialized = Counter(
        key.rpartition("|")[2] for key in instance.get_materialized_partitions(RAW_ASSET)
    )
    return [
        TenantOverview(
            tenant_id=t.tenant_id,
            display_name=t.display_name,
            status=t.status,
            partitions_materialized=materialized[t.tenant_id],
            last_data_day=last_day.get(t.tenant_id),
            database=clickhouse.database_for(t.tenant_id),
            schema_version=version.get(t.tenant_id, 0),
            sites=tuple(sites.get(t.tenant_id, ())),
        )
        for t in registered
    ]
