"""End to end on real Postgres, real dbt and real chDB: landing file -> ClickHouse."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

from analytics_platform.assets.dbt import dbt_layers
from analytics_platform.assets.raw import raw_file_events
from analytics_platform.assets.serving import serving_assets
from analytics_platform.checks.layers import layer_check_defs
from analytics_platform.partitions import TenantDay, range_tags
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform_tests.events import (
    EXPECTED,
    day_file,
    tracker_event,
    worked_example,
    write_lines,
)

DAY = dt.date(2026, 11, 2)
ALL_ASSETS = [raw_file_events, *dbt_layers, *serving_assets, *layer_check_defs]


def materialize_layer(
    selection, tenant: str, day: dt.date, resources: dict, instance: DagsterInstance, **kwargs
):
    return materialize(
        ALL_ASSETS,
        selection=selection,
        partition_key=TenantDay(tenant, day).partition_key,
        resources=resources,
        instance=instance,
        **kwargs,
    )


def run_pipeline(
    instance: DagsterInstance,
    tags: dict[str, str] | None = None,
    partition_key=None,
    **kwargs,
):
    """The `tenant_day_pipeline` job exactly as users launch it, resources from the environment."""
    from analytics_platform.definitions import defs

    job = defs.resolve_job_def("tenant_day_pipeline")
    return job.execute_in_process(
        instance=instance, tags=tags, partition_key=partition_key, **kwargs
    )


def warehouse_snapshot(
    postgres: PostgresResource,
    tenant: str,
    *,
    with_load_columns: bool,
    layers: tuple[str, ...] = ("raw", "quarantine", "staging", "marts"),
) -> dict:
    """Every row the tenant has in each Postgres layer, in a stable order."""
    load_columns = "_ingested_at, _run_id, " if with_load_columns else ""
    queries = {
        "raw": f"SELECT {load_columns}event_id, event_type, occurred_at, visitor_id, session_hint, "
        "properties::text, _partition_date, _source, _source_line FROM raw.file_events "
        "WHERE tenant_id = %s ORDER BY _source, _source_line",
        "quarantine": "SELECT partition_date, layer, source, source_line, reason, detail, raw_text "
        "FROM platform.quarantine WHERE tenant_id = %s ORDER BY source, source_line",
        "staging": "SELECT event_id, event_date, event_type, occurred_at, visitor_id, session_hint "
        "FROM staging.stg_events WHERE tenant_id = %s ORDER BY event_id",
        "marts": "SELECT event_date, visitors, sessions, page_views, events "
        "FROM marts.fct_daily_metrics WHERE tenant_id = %s ORDER BY event_date",
    }
    with postgres.connect() as conn:
        return {layer: conn.execute(queries[layer], (tenant,)).fetchall() for layer in layers}


def serving_rows(clickhouse: ClickHouseResource, tenant: str) -> list[tuple]:
    with clickhouse.session() as session:
        frame = session.query_df(
            f"SELECT toString(event_date) AS day, visitors, sessions, page_views, events "
            f"FROM `{clickhouse.database_for(tenant)}`.fct_daily_metrics ORDER BY event_date"
        )
    return [tuple(row) for row in frame.itertuples(index=False)]


def test_each_layer_holds_what_the_input_file_implies(
    new_tenant, landing_dir: Path, instance, resources, postgres, clickhouse
):
    tenant = new_tenant("shop")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(day_file(landing_dir, tenant, DAY), worked_example(DAY))

    raw = materialize_layer([AssetKey("raw_file_events")], tenant, DAY, resources, instance)
    metadata = raw.asset_materializations_for_node("raw_file_events")[0].metadata
    assert metadata["rows_read"].value == EXPECTED["rows_read"]
    assert metadata["rows_loaded"].value == EXPECTED["raw_rows"]
    assert metadata["rows_quarantined"].value == len(EXPECTED["quarantine"])
    snapshot = warehouse_snapshot(
        postgres, tenant, with_load_columns=False, layers=("raw", "quarantine")
    )
    assert len(snapshot["raw"]) == EXPECTED["raw_rows"]
    quarantined = {row[3]: row[4] for row in snapshot["quarantine"]}
    assert quarantined == EXPECTED["quarantine"]
    broken = next(row for row in snapshot["quarantine"] if row[3] == 6)
    assert broken[6] == '{"eventId": "e9", "eventType": '  # original text kept
    assert broken[2] == f"{tenant}/{DAY}/events.jsonl"
    # A field outside the contract lands in properties.
    assert any('"screen": "1440x900"' in row[5] for row in snapshot["raw"])

    materialize_layer(
        AssetSelection.assets("stg_events", "fct_sessions", "fct_daily_metrics"),
        tenant,
        DAY,
        resources,
        instance,
    )
    snapshot = warehouse_snapshot(postgres, tenant, with_load_columns=False)
    assert len(snapshot["staging"]) == EXPECTED["staged_rows"]
    assert [r[0] for r in snapshot["staging"]] == ["e1", "e2", "e3", "e4", "e7", "e8"]
    assert snapshot["marts"] == [
        (
            DAY,
            EXPECTED["visitors"],
            EXPECTED["sessions"],
            EXPECTED["page_views"],
            EXPECTED["events"],
        )
    ]

    materialize_layer([AssetKey("serving_daily_metrics")], tenant, DAY, resources, instance)
    assert serving_rows(clickhouse, tenant) == [
        (
            DAY.isoformat(),
            EXPECTED["visitors"],
            EXPECTED["sessions"],
            EXPECTED["page_views"],
            EXPECTED["events"],
        )
    ]


def test_rerun_is_idempotent_and_other_tenants_are_untouched(
    new_tenant, landing_dir: Path, instance, platform_env, postgres, clickhouse
):
    first, second = new_tenant("first"), new_tenant("second")
    instance.add_dynamic_partitions("tenants", [first, second])
    for tenant in (first, second):
        write_lines(day_file(landing_dir, tenant, DAY), worked_example(DAY))

    run_pipeline(instance, partition_key=TenantDay(first, DAY).partition_key)
    once = warehouse_snapshot(postgres, first, with_load_columns=False)
    served_once = serving_rows(clickhouse, first)
    assert len(once["raw"]) == EXPECTED["raw_rows"]

    run_pipeline(instance, partition_key=TenantDay(first, DAY).partition_key)
    assert warehouse_snapshot(postgres, first, with_load_columns=False) == once
    assert serving_rows(clickhouse, first) == served_once

    untouched = warehouse_snapshot(postgres, first, with_load_columns=True)
    run_pipeline(instance, partition_key=TenantDay(second, DAY).partition_key)
    assert warehouse_snapshot(postgres, first, with_load_columns=True) == untouched
    assert serving_rows(clickhouse, first) == served_once
    assert len(warehouse_snapshot(postgres, second, with_load_columns=False)["staging"]) == 6


def test_one_run_builds_several_tenants_and_days(
    new_tenant, landing_dir: Path, instance, platform_env, postgres, clickhouse
):
    tenants = [new_tenant("multi"), new_tenant("multi")]
    days = [DAY, DAY + dt.timedelta(days=1)]
    instance.add_dynamic_partitions("tenants", tenants)
    for index, tenant in enumerate(tenants):
        for day in days:
            # Each cell gets a different number of visitors so a mix-up would show.
            events = [
                tracker_event(f"e{day.day}-{i}", f"v{i}", f"{day}T0{i}:00:00Z", session=f"s{i}")
                for i in range(1, 2 + index + day.day % 3)
            ]
            write_lines(day_file(landing_dir, tenant, day), events)

    result = run_pipeline(instance, tags=range_tags(tenants, days))

    dbt_steps = [e.step_key for e in result.all_events if e.is_step_success and "dbt" in e.step_key]
    # One dbt invocation per layer for all four tenant-days.
    assert sorted(dbt_steps) == ["analytics_dbt_marts", "analytics_dbt_staging"]
    for index, tenant in enumerate(tenants):
        marts = warehouse_snapshot(postgres, tenant, with_load_columns=False)["marts"]
        expected = [(day, 1 + index + day.day % 3) for day in days]
        assert [(row[0], row[1]) for row in marts] == expected
        assert [row[1] for row in serving_rows(clickhouse, tenant)] == [n for _, n in expected]
