"""Raw layer: landing files -> `raw.file_events`, bad rows -> `platform.quarantine`."""

from collections import Counter

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from analytics_platform.assets.row_counts import row_count_metadata
from analytics_platform.checks.freshness import LAYER_FRESHNESS
from analytics_platform.checks.parity import ingest_parity
from analytics_platform.ingest.contract import CONTRACT, Field, Kind
from analytics_platform.ingest.drift import record_new_fields
from analytics_platform.ingest.landing_log import file_versions, record_loaded_files
from analytics_platform.ingest.load import LAYER, RAW_FILE_EVENTS, load_tenant_day
from analytics_platform.partitions import tenant_day, tenant_days
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import asset_key
from analytics_platform.tenants.sites import tenant_sites

# The Postgres type of each kind of contract column (sql/warehouse.sql).
POSTGRES_TYPES = {
    Kind.TEXT: "text",
    Kind.TENANT: "text",
    Kind.SITE: "text",
    Kind.TIMESTAMP: "timestamptz",
    Kind.DECIMAL: "numeric",
    Kind.JSON: "jsonb",
}
COLUMN_NOTES = {
    "event_id": "Tracker event id",
    "site_id": "Site that sent the event (the tenant's id when the event named none)",
    "session_hint": "Client session id",
    "properties": "Fields outside the contract",
}


def raw_table_schema(tenant: str, partition_date: str, source: str, line: str) -> TableSchema:
    """The raw tables' schema for the UI, from the contract; lineage columns per source."""

    def described(field: Field) -> str:
        if field.kind is Kind.TENANT:
            return tenant
        spellings = "/".join(field.names)
        note = COLUMN_NOTES.get(field.column, "From")
        return f"{note} ({spellings})" if field.column in COLUMN_NOTES else f"{note} {spellings}"

    return TableSchema(
        columns=[
            *(
                TableColumn(f.column, POSTGRES_TYPES[f.kind], description=described(f))
                for f in CONTRACT
            ),
            TableColumn("_partition_date", "date", description=partition_date),
            TableColumn("_source", "text", description=source),
            TableColumn("_source_line", "integer", description=line),
        ]
    )


RAW_SCHEMA = raw_table_schema(
    tenant="Tenant (from the landing folder)",
    partition_date="Day folder the file landed in",
    source="Landing file, relative to LANDING_DIR",
    line="Line of the event in its file",
)


NEW_FIELDS_CHECK = AssetCheckSpec(
    name="no_new_fields",
    asset=asset_key("raw_file_events"),
    description=(
        "Warns when a tenant sends a field outside the event contract for the first time "
        "(the field is kept in properties; see platform.tenant_fields)."
    ),
)


INGEST_PARITY_CHECK = AssetCheckSpec(
    name="rows_read_equal_loaded_plus_quarantined",
    asset=asset_key("raw_file_events"),
    blocking=True,
    description=(
        "After the load commits: for every tenant-day of the run, the rows read from its "
        "files = its rows in raw.file_events + its rows in platform.quarantine (ERROR, "
        "blocks the layers below)."
    ),
)


@asset(
    key=asset_key("raw_file_events"),
    partitions_def=tenant_day,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"python", "postgres"},
    owners=["team:data-platform"],
    tags={"layer": "raw"},
    freshness_policy=LAYER_FRESHNESS["raw"],
    metadata={"dagster/table_name": "raw.file_events", "dagster/column_schema": RAW_SCHEMA},
    check_specs=[NEW_FIELDS_CHECK, INGEST_PARITY_CHECK],
    description=(
        "Events from the tenant's landing files "
        "(`LANDING_DIR/<tenant>/<YYYY-MM-DD>/*.jsonl|csv[.gz]`), mapped to the event contract "
        "and COPY-loaded into `raw.file_events`. Rows that break the contract go to "
        "`platform.quarantine` with their original text, file, line and reason. "
        "Each tenant-day is replaced atomically with what its files hold now."
    ),
)
def raw_file_events(
    context: AssetExecutionContext,
    postgres: PostgresResource,
    landing: LandingZoneResource,
) -> MaterializeResult:
    postgres.ensure_warehouse()
    slices = tenant_days(context.partition_keys)
    reports = []
    sites = {t: tenant_sites(postgres, t) for t in sorted({s.tenant for s in slices})}
    with postgres.transaction() as conn:
        for slice_ in slices:
            versions = file_versions(landing, landing.files_for(slice_))
            reports.append(
                load_tenant_day(
                    postgres, conn, landing, slice_, context.run.run_id, sites[slice_.tenant]
                )
            )
            record_loaded_files(conn, slice_, versions, context.run.run_id)
        new_fields = record_new_fields(
            conn, ((r.slice, f.source, f.fields) for r in reports for f in r.files)
        )
    with postgres.connect() as conn:
        parity = ingest_parity(
            conn,
            RAW_FILE_EVENTS,
            LAYER,
            # A file quarantined whole is one record, beside the rows read from the others.
            {r.slice: r.rows_read + r.files_quarantined for r in reports},
        ).to_check_result(
            INGEST_PARITY_CHECK.name,
            "raw_file_events",
            AssetCheckSeverity.ERROR,
            f"{len(reports)} tenant-day(s)",
        )

    reasons = sum((r.reasons for r in reports), Counter())
    for report in reports:
        for refusal in report.refused:
            context.log.warning(
                f"{refusal.relative} ({report.slice}): refused unread ({refusal.reason}); "
                "see platform.quarantine, layer landing_zone"
            )
        for file in report.files:
            if file.fault is not None:
                context.log.warning(
                    f"{file.source} ({report.slice}): quarantined whole ({file.fault}), none "
                    f"of its {file.lines_seen} line(s) read loaded; the other files loaded"
                )
            if file.rows_quarantined:
                context.log.warning(
                    f"{file.source} ({report.slice}): {file.rows_quarantined} of {file.rows_read} "
                    f"rows quarantined ({dict(file.reasons)}); see platform.quarantine"
                )
        if not report.files:
            context.log.warning(f"no landing files for {report.slice} in {landing.root}")
    return MaterializeResult(
        metadata={
            **row_count_metadata({r.slice: r.rows_loaded for r in reports}),
            "rows_read": sum(r.rows_read for r in reports),
            "rows_loaded": sum(r.rows_loaded for r in reports),
            "rows_quarantined": sum(r.rows_quarantined for r in reports),
            "quarantine_reasons": MetadataValue.json(dict(sorted(reasons.items()))),
            "files": sum(len(r.files) for r in reports),
            "files_quarantined_whole": sum(r.files_quarantined for r in reports),
            "paths_refused": sum(len(r.refused) for r in reports),
            "tenant_days": len(reports),
            "new_fields": MetadataValue.json(new_fields),
        },
        check_results=[
            AssetCheckResult(
                check_name=NEW_FIELDS_CHECK.name,
                passed=not new_fields,
                severity=AssetCheckSeverity.WARN,
                description=(
                    "new fields outside the contract (kept in properties): "
                    + "; ".join(f"{t}: {', '.join(f)}" for t, f in new_fields.items())
                    if new_fields
                    else "no field new to its tenant"
                ),
                metadata={"new_fields": MetadataValue.json(new_fields)},
            ),
            parity,
        ],
    )
