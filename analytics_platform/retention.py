"""Raw-data retention: each tenant's raw rows (and their quarantine) older than its
`retention_days` are deleted daily; staging, marts and ClickHouse are kept.

A day whose raw rows were deleted can still be rebuilt from its landing files
while they exist; `platform.landing_files` remembers it was loaded, so the
landing sensor does not reload it by itself.
"""

import datetime as dt

from dagster import (
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    RunRequest,
    ScheduleEvaluationContext,
    job,
    op,
    schedule,
)
from psycopg import sql
from pydantic import Field

from analytics_platform.resources.postgres import PostgresResource

# (table, its partition-date column): every raw table, plus the quarantine that holds raw text.
EXTRA_TABLES = (("platform.quarantine", "partition_date"),)


def apply_raw_retention(postgres: PostgresResource, as_of: dt.date) -> dict[str, int]:
    """Delete rows older than their tenant's retention, one statement per table."""
    postgres.ensure_warehouse()
    deleted = {}
    with postgres.transaction() as conn:
        raw_tables = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.columns "
            "WHERE table_schema = 'raw' AND column_name = '_partition_date' ORDER BY 1"
        ).fetchall()
        tables = [(t, "_partition_date") for (t,) in raw_tables] + list(EXTRA_TABLES)
        for table, date_column in tables:
            cursor = conn.execute(
                sql.SQL(
                    "DELETE FROM {table} AS r USING platform.tenants AS t "
                    "WHERE r.tenant_id = t.tenant_id AND r.{day} < %s::date - t.retention_days"
                ).format(table=sql.Identifier(*table.split(".")), day=sql.Identifier(date_column)),
                (as_of,),
            )
            deleted[table] = cursor.rowcount
    return deleted


class RetentionConfig(Config):
    as_of: str = Field(description="The day retention counts back from (YYYY-MM-DD, UTC).")


@op(description="Delete raw rows older than each tenant's retention_days.")
def delete_expired_raw_rows(
    context: OpExecutionContext, config: RetentionConfig, postgres: PostgresResource
):
    deleted = apply_raw_retention(postgres, dt.date.fromisoformat(config.as_of))
    context.log.info(f"retention as of {config.as_of}: rows deleted {deleted}")
    return Output(None, metadata={"rows_deleted": MetadataValue.json(deleted)})


@job(description="Apply each tenant's raw-data retention (marts are kept).")
def raw_retention():
    delete_expired_raw_rows()


@schedule(
    job=raw_retention,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Daily at 02:00 UTC: delete raw rows past each tenant's retention.",
)
def raw_retention_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    day = context.scheduled_execution_time.date()
    return RunRequest(
        run_key=f"retention:{day}",
        run_config={"ops": {"delete_expired_raw_rows": {"config": {"as_of": day.isoformat()}}}},
    )
