"""Freshness: how old each layer may get, and a per-tenant check that data keeps arriving.

Dagster's `FreshnessPolicy` watches an asset as a whole: it turns stale when no
partition of it has materialized within the window. A multi-tenant platform also
needs to see one tenant going quiet while the others keep the assets fresh;
`every_active_tenant_fresh` does that, hourly (its own automation condition,
so it never rides along with the runs that build `stg_events`), and alerts
through the same webhook as failed runs.
"""

import datetime as dt

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetSelection,
    AutomationCondition,
    Config,
    FreshnessPolicy,
    MetadataValue,
    asset_check,
    define_asset_job,
)
from pydantic import Field

from analytics_platform.resources.alerts import AlertWebhookResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.settings import tenant_freshness_cron
from analytics_platform.shard import asset_key

# Data lands daily (the API pull runs at 01:00 UTC); each layer below gets an hour more.
LAYER_FRESHNESS = {
    "raw": FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=26), warn_window=dt.timedelta(hours=25)
    ),
    "staging": FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=27), warn_window=dt.timedelta(hours=26)
    ),
    "marts": FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=27), warn_window=dt.timedelta(hours=26)
    ),
    "serving": FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=28), warn_window=dt.timedelta(hours=27)
    ),
}

# Latest arrival per active tenant; the event_date bound keeps it on the (tenant, day) index.
LATEST_ARRIVALS = """
SELECT t.tenant_id,
       (SELECT max(e.ingested_at) FROM staging.stg_events AS e
        WHERE e.tenant_id = t.tenant_id AND e.event_date >= %(since)s) AS latest
FROM platform.tenants AS t
WHERE t.status = 'active'
ORDER BY t.tenant_id
"""


class FreshnessConfig(Config):
    max_lag_hours: float = Field(
        default=26.0,
        gt=0,
        description="A tenant is stale when its newest staged event arrived longer ago.",
    )
    lookback_days: int = Field(
        default=7, ge=1, description="How far back to look for the newest event."
    )


@asset_check(
    asset=asset_key("stg_events"),
    name="every_active_tenant_fresh",
    automation_condition=AutomationCondition.cron_tick_passed(tenant_freshness_cron(), "UTC"),
    description=(
        "Every active tenant has events that arrived (ingested) within max_lag_hours "
        f"(default 26). Runs on the cron {tenant_freshness_cron()!r} (UTC; setting "
        "TENANT_FRESHNESS_CRON) through its automation condition; a stale tenant fails the "
        "check (WARN, nothing downstream is stopped) and is posted to ALERT_WEBHOOK_URL."
    ),
)
def every_active_tenant_fresh(
    context: AssetCheckExecutionContext,
    config: FreshnessConfig,
    postgres: PostgresResource,
    alerts: AlertWebhookResource,
) -> AssetCheckResult:
    now = dt.datetime.now(dt.timezone.utc)
    since = now.date() - dt.timedelta(days=config.lookback_days)
    with postgres.connect() as conn:
        latest = dict(conn.execute(LATEST_ARRIVALS, {"since": since}).fetchall())
    limit = now - dt.timedelta(hours=config.max_lag_hours)
    stale = {
        tenant: (arrived.isoformat() if arrived else f"nothing since {since.isoformat()}")
        for tenant, arrived in latest.items()
        if arrived is None or arrived < limit
    }
    if stale and alerts.enabled:
        alerts.post(
            {
                "event": "tenant_stale",
                "max_lag_hours": config.max_lag_hours,
                "tenants": [{"tenant": t, "latest_arrival": a} for t, a in stale.items()],
            }
        )
    elif stale:
        context.log.warning(f"stale tenants (ALERT_WEBHOOK_URL not set): {stale}")
    return AssetCheckResult(
        passed=not stale,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{len(stale)} of {len(latest)} active tenants stale: {', '.join(stale)}"
            if stale
            else f"all {len(latest)} active tenants have events newer than "
            f"{config.max_lag_hours:g} hours"
        ),
        metadata={
            "active_tenants": len(latest),
            "stale_tenants": MetadataValue.json(stale),
            "max_lag_hours": config.max_lag_hours,
        },
    )


# Unpartitioned and about all tenants: kept out of the tenant-day pipelines.
FRESHNESS_CHECKS = AssetSelection.checks(every_active_tenant_fresh)

tenant_freshness_job = define_asset_job(
    name="tenant_freshness",
    selection=FRESHNESS_CHECKS,
    description="Check that every active tenant's data keeps arriving (also runs hourly).",
)
