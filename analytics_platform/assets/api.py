"""The `raw_api_events` asset: the tenants' HTTP event APIs into `raw.api_events`.

The loading itself (pages, quarantine, watermarks) is ingest/api_load.py.
"""

import itertools
from collections import Counter

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from analytics_platform.assets.raw import raw_table_schema
from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.ingest.api_load import RAW_API_EVENTS, DayReport, api_tenant, load_api_day
from analytics_platform.ingest.drift import record_new_fields
from analytics_platform.partitions import tenant_day, tenant_days
from analytics_platform.resources.event_api import EventApiResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import asset_key
from analytics_platform.tenants.sites import tenant_sites

API_SCHEMA = raw_table_schema(
    tenant="Tenant whose API served the event",
    partition_date="Day the export was asked for",
    source="URL of the page the event came in",
    line="Position of the event in its page",
)


class ApiLoadConfig(Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Ignore the watermarks: read each tenant-day's export from its start and replace "
            "what raw.api_events and the quarantine hold for it."
        ),
    )


@asset(
    key=asset_key("raw_api_events"),
    partitions_def=tenant_day,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"python", "postgres"},
    owners=["team:data-platform"],
    tags={"layer": "raw"},
    freshness_policy=LAYER_FRESHNESS["raw"],
    metadata={"dagster/table_name": RAW_API_EVENTS, "dagster/column_schema": API_SCHEMA},
    description=(
        "Events from the tenant's HTTP export API (`GET <api_base_url>/events` for the day, "
        "cursor pagination, retries with backoff and `Retry-After`), mapped to the event "
        "contract into `raw.api_events`. Events that break the contract, and pages that are "
        "not valid JSON, go to `platform.quarantine`. Each tenant-day commits with its "
        "watermark (`platform.api_watermarks`): the next run resumes after it. Tenants "
        "without an API are skipped."
    ),
)
def raw_api_events(
    context: AssetExecutionContext,
    config: ApiLoadConfig,
    postgres: PostgresResource,
    event_api: EventApiResource,
) -> MaterializeResult:
    postgres.ensure_warehouse()
    run_id = context.run.run_id
    reports: list[DayReport] = []
    skipped: dict[str, str] = {}
    new_fields: dict[str, list[str]] = {}
    for tenant_id, group in itertools.groupby(
        tenant_days(context.partition_keys), key=lambda s: s.tenant
    ):
        slices = list(group)
        tenant, why_not = api_tenant(postgres, tenant_id)
        if tenant is None:
            context.log.info(f"tenant {tenant_id!r}: {why_not}; skipping its API events")
            skipped.update({s.partition_key: why_not for s in slices})
            continue
        sites = tenant_sites(postgres, tenant_id)
        with event_api.client(tenant) as client:
            for slice_ in slices:
                with postgres.transaction() as conn:
                    report = load_api_day(
                        postgres,
                        conn,
                        client,
                        slice_,
                        run_id,
                        full_refresh=config.full_refresh,
                        sites=sites,
                    )
                    seen = ((slice_, page, keys) for page, keys in report.fields.items())
                    for name, fields in record_new_fields(conn, seen).items():
                        new_fields.setdefault(name, []).extend(fields)
                reports.append(report)
                if report.note:
                    context.log.warning(f"{slice_}: {report.note}")
                if report.rows_quarantined:
                    context.log.warning(
                        f"{slice_}: {report.rows_quarantined} of {report.rows_read} API rows "
                        f"quarantined ({dict(report.reasons)}); see platform.quarantine"
                    )
                if report.pages_resolved:
                    context.log.info(
                        f"{slice_}: {report.pages_resolved} page(s) quarantined by an earlier "
                        "run read fine now; marked resolved in platform.quarantine"
                    )
                if not report.complete:
                    context.log.warning(
                        f"{slice_}: a malformed page stopped the export after {report.pages} "
                        "pages; the next run asks for that page again"
                    )
    reasons = sum((r.reasons for r in reports), Counter())
    return MaterializeResult(
        metadata={
            **row_count_metadata({r.slice: r.rows_loaded for r in reports}),
            "pages": sum(r.pages for r in reports),
            "rows_read": sum(r.rows_read for r in reports),
            "rows_loaded": sum(r.rows_loaded for r in reports),
            "rows_quarantined": sum(r.rows_quarantined for r in reports),
            "pages_resolved": sum(r.pages_resolved for r in reports),
            "quarantine_reasons": MetadataValue.json(dict(sorted(reasons.items()))),
            "tenant_days": MetadataValue.json(
                {
                    r.slice.partition_key: {
                        "mode": r.mode,
                        "pages": r.pages,
                        "rows_loaded": r.rows_loaded,
                        "complete": r.complete,
                    }
                    for r in reports
                }
            ),
            "skipped": MetadataValue.json(skipped),
            "new_fields": MetadataValue.json(new_fields),
        }
    )
