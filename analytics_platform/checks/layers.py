"""The data-quality checks of each layer, as Dagster asset checks on the run's tenant-days.

One check op per layer (raw, staging, marts) runs right after the layer is
built, on exactly the tenant-days of the run. Checks with severity ERROR are
blocking: when one fails, the layers below do not run for that run. WARN
checks report and let the run go on.

Why separate check ops rather than `check_specs` on the assets: the dbt layers
are multi-assets owned by dagster-dbt, and staging and marts must be gated the
same way as our own assets; a separate op also lets an engineer re-run the
checks of a partition from the UI without rebuilding it. Dagster 1.13 marks
partitioned asset checks as preview, so results are recorded per check (not per
partition) and name the tenant-days they covered in their metadata.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
import psycopg
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    Failure,
    multi_asset_check,
)

from analytics_platform.checks import holds, schemas
from analytics_platform.checks.parity import channel_parity, marts_parity, staging_parity
from analytics_platform.checks.slices import SliceQuery, read_slice
from analytics_platform.checks.validation import Outcome, validate
from analytics_platform.partitions import TenantDay, tenant_days
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import asset_key

ERROR, WARN = AssetCheckSeverity.ERROR, AssetCheckSeverity.WARN


@dataclass(frozen=True)
class SchemaCheck:
    """A Pandera model applied to the run's rows of one asset's table."""

    name: str
    asset: str
    model: type[pa.DataFrameModel]
    query: SliceQuery
    keys: tuple[str, ...]
    severity: AssetCheckSeverity = ERROR

    def run(
        self,
        conn: psycopg.Connection,
        slices: Sequence[TenantDay],
        tolerance_minutes: int,
        frames: dict[SliceQuery, pd.DataFrame] | None = None,
    ) -> Outcome:
        """Validate the run's rows; `frames` shares one read among checks of the same table."""
        frames = {} if frames is None else frames
        if self.query not in frames:
            frames[self.query] = read_slice(
                conn, self.query, slices, tolerance_minutes=tolerance_minutes
            )
        return validate(self.model, frames[self.query], self.keys)


@dataclass(frozen=True)
class ParityCheck:
    name: str
    asset: str
    compare: Callable[[psycopg.Connection, Sequence[TenantDay]], Outcome]
    severity: AssetCheckSeverity = ERROR

    def run(
        self,
        conn: psycopg.Connection,
        slices: Sequence[TenantDay],
        tolerance_minutes: int,
        frames: dict[SliceQuery, pd.DataFrame] | None = None,
    ) -> Outcome:
        return self.compare(conn, slices)


def _raw_query(table: str) -> SliceQuery:
    return SliceQuery(
        table=table,
        columns=(
            "t.event_id",
            "t.tenant_id",
            "t.event_type",
            "t.occurred_at",
            "t.visitor_id",
            "t.currency",
            "t.revenue::float8 AS revenue",
            "t._source AS source",
            "t._source_line AS source_line",
        ),
        day_column="_partition_date",
        timestamps=("occurred_at",),
        with_window=True,
    )


RAW_KEYS = ("tenant_id", "source", "source_line", "event_id", "occurred_at")
STG_KEYS = ("tenant_id", "event_date", "event_id", "source_file", "source_line", "occurred_at")
STG_MODELS = (schemas.StgEvents, schemas.StgEventsExpectations)
# What the staging models check plus the keys that name a failing row; the window
# columns are computed by the read (with_window), not stored.
STG_COLUMNS = tuple(
    f"t.{name}"
    for name in dict.fromkeys([*STG_KEYS, *(c for m in STG_MODELS for c in m.to_schema().columns)])
    if name not in ("window_start", "window_end")
)
STG_QUERY = SliceQuery(
    "staging.stg_events", STG_COLUMNS, "event_date", timestamps=("occurred_at",), with_window=True
)


RAW_CHECKS = (
    SchemaCheck(
        "raw_file_events_schema",
        "raw_file_events",
        schemas.RawEvents,
        _raw_query("raw.file_events"),
        RAW_KEYS,
    ),
    SchemaCheck(
        "raw_api_events_schema",
        "raw_api_events",
        schemas.RawEvents,
        _raw_query("raw.api_events"),
        RAW_KEYS,
    ),
)
STAGING_CHECKS = (
    SchemaCheck("stg_events_schema", "stg_events", schemas.StgEvents, STG_QUERY, STG_KEYS),
    SchemaCheck(
        "stg_events_expectations",
        "stg_events",
        schemas.StgEventsExpectations,
        STG_QUERY,
        STG_KEYS,
        severity=WARN,
    ),
    ParityCheck("stg_events_parity_with_raw", "stg_events", staging_parity),
)
# The marts' rules are all dbt tests (their YAML); what stays here compares layers.
MARTS_CHECKS = (
    ParityCheck("fct_daily_metrics_parity_with_staging", "fct_daily_metrics", marts_parity),
    ParityCheck("fct_channel_daily_parity_with_sessions", "fct_channel_daily", channel_parity),
)

Check = SchemaCheck | ParityCheck


def _description(check: Check) -> str:
    if isinstance(check, ParityCheck):
        rules = {
            "stg_events_parity_with_raw": "staged rows = distinct raw events of the tenant-day "
            "(both sources) not already staged on an earlier day",
            "fct_daily_metrics_parity_with_staging": "daily events, visitors and page views = "
            "staging's; daily sessions = fct_sessions started that day",
            "fct_channel_daily_parity_with_sessions": "sessions summed over channels = "
            "fct_sessions started that day",
        }
        summary = rules[check.name]
    else:
        summary = (check.model.__doc__ or check.model.__name__).strip().splitlines()[0]
    effect = "blocks the layers below" if check.severity == ERROR else "warns only"
    return f"{summary} (Pandera/SQL on the run's tenant-days; {check.severity.value}, {effect})"


def layer_checks(name: str, checks: Sequence[Check]) -> AssetChecksDefinition:
    """One check op for a layer: every check of `checks` that the run selected."""
    by_key = {AssetCheckKey(asset_key(c.asset), c.name): c for c in checks}
    layer = name.removesuffix("_checks")

    @multi_asset_check(
        name=name,
        specs=[
            AssetCheckSpec(
                c.name,
                asset=asset_key(c.asset),
                description=_description(c),
                blocking=c.severity == ERROR,
            )
            for c in checks
        ],
        can_subset=True,
    )
    def run_checks(
        context: AssetCheckExecutionContext,
        postgres: PostgresResource,
        landing: LandingZoneResource,
    ) -> Iterator[AssetCheckResult]:
        if not context.has_partition_key and not context.has_partition_key_range:
            raise Failure(
                f"{name} checks the tenant-days of a run: launch it with a tenant_day partition"
            )
        slices = tenant_days(context.partition_keys)
        described = ", ".join(s.partition_key for s in slices[:10]) + (
            f" and {len(slices) - 10} more" if len(slices) > 10 else ""
        )
        frames: dict[SliceQuery, pd.DataFrame] = {}
        results, blocking_failures = [], []
        with postgres.connect() as conn:
            for key in sorted(context.selected_asset_check_keys, key=str):
                check = by_key[key]
                outcome = check.run(conn, slices, landing.timestamp_tolerance_minutes, frames)
                result = outcome.to_check_result(
                    check.name, check.asset, check.severity, f"tenant-days {described}"
                )
                if not result.passed:
                    context.log.warning(f"{check.asset}:{check.name}: {result.description}")
                    if check.severity == ERROR:
                        blocking_failures.append(f"{check.asset}:{check.name}")
                results.append(result)
        # Before the results (a failed blocking one ends the step): other runs, those of
        # the neighbouring days, must not publish what failed here either.
        with postgres.transaction() as conn:
            if blocking_failures:
                holds.hold(conn, slices, layer, blocking_failures, context.run.run_id)
            else:
                holds.release(conn, slices, layer)
        yield from results

    return run_checks


raw_checks = layer_checks("raw_checks", RAW_CHECKS)
staging_checks = layer_checks("staging_checks", STAGING_CHECKS)
marts_checks = layer_checks("marts_checks", MARTS_CHECKS)
layer_check_defs = [raw_checks, staging_checks, marts_checks]
