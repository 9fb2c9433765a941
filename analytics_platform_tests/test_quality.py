"""Data-quality checks: each one passes on a good slice, fails on a crafted bad one with the
metadata an engineer needs, and the blocking ones stop the layers below in the same run."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    Definitions,
    materialize,
)

from analytics_platform.assets.dbt import partitioned_dbt_vars, slice_environment
from analytics_platform.assets.serving import SERVING_STEP
from analytics_platform.checks import schemas
from analytics_platform.checks.freshness import every_active_tenant_fresh, tenant_freshness_job
from analytics_platform.checks.layers import MARTS_CHECKS, RAW_CHECKS, STAGING_CHECKS
from analytics_platform.checks.parity import ingest_parity
from analytics_platform.checks.slices import SliceQuery, read_slice
from analytics_platform.checks.validation import MAX_SAMPLES, validate
from analytics_platform.partitions import TenantDay, range_tags, slice_window
from analytics_platform.resources.alerts import AlertWebhookResource
from analytics_platform.tenants.registry import register_tenant, transition
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_alerts import Webhook
from analytics_platform_tests.test_pipeline import ALL_ASSETS, materialize_layer

D = dt.date(2026, 11, 12)
UTC = dt.timezone.utc


def ts(clock: str, day: dt.date = D) -> pd.Timestamp:
    return pd.Timestamp(f"{day}T{clock}", tz="UTC")


# --- The models, on frames built by hand -------------------------------------------------


def raw_frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "tenant_id": "acme",
            "event_type": "page_view",
            "occurred_at": [ts(f"1{i % 10}:00:00") for i in range(n)],
            "visitor_id": "v1",
            "currency": None,
            "revenue": None,
            "source": "acme/2026-11-12/a.jsonl",
            "source_line": range(1, n + 1),
            "window_start": ts("00:00:00"),
            "window_end": ts("00:00:00", D + dt.timedelta(days=1)),
        }
    )


def stg_frame() -> pd.DataFrame:
    frame = raw_frame().drop(columns=["source", "source_line"])
    return frame.assign(
        event_date=D.isoformat(),
        event_name="page_view",
        session_hint="s1",
        source_file="acme/2026-11-12/a.jsonl",
        source_line=[1, 2, 3],
    )


def with_value(frame: pd.DataFrame, row: int, **values: object) -> pd.DataFrame:
    frame = frame.copy()
    for column, value in values.items():
        frame[column] = frame[column].astype(object)
        frame.at[row, column] = value
    return frame


KEYS = ("tenant_id", "event_id", "source_line")

CASES = {
    # name: (model, good frame, bad frame, {rule: failed rows})
    "raw: timestamp outside the partition day": (
        schemas.RawEvents,
        raw_frame(),
        with_value(raw_frame(), 1, occurred_at=ts("00:00:00", D + dt.timedelta(days=1))),
        {"occurred_at_inside_partition_day": 1},
    ),
    "raw: event type and visitor": (
        schemas.RawEvents,
        raw_frame(),
        with_value(raw_frame(), 2, event_type="Page View", visitor_id=""),
        {
            "event_type: str_matches('^[a-z][a-z0-9_]{0,63}$')": 1,
            "visitor_id: str_length(1, None)": 1,
        },
    ),
    "staging: an event outside its partition day": (
        schemas.StgEvents,
        stg_frame(),
        with_value(stg_frame(), 1, occurred_at=ts("23:59:00", D - dt.timedelta(days=1))),
        {"occurred_at_inside_partition_day": 1},
    ),
    "staging expectations: mostly known event types": (
        schemas.StgEventsExpectations,
        stg_frame(),
        stg_frame().assign(event_type=["page_view", "mystery", "mystery"]),
        {"event_type: mostly_known_event_types_0.95": 2},
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_model_passes_a_good_slice_and_names_what_a_bad_one_broke(case):
    model, good, bad, expected = CASES[case]
    assert validate(model, good, KEYS).passed
    outcome = validate(model, bad, KEYS)
    assert not outcome.passed
    assert outcome.failed_rows_by_rule == expected
    assert {s["rule"] for s in outcome.samples} == set(expected)


def test_samples_are_capped_spread_over_rules_and_hold_keys_not_payloads():
    frame = raw_frame(60)
    frame.loc[:49, "event_type"] = "Bad Type"  # 50 rows break one rule
    frame.loc[55, "occurred_at"] = ts("23:00:00", D - dt.timedelta(days=3))  # 1 row another
    keys = ("tenant_id", "source", "source_line", "occurred_at")
    outcome = validate(schemas.RawEvents, frame, keys)
    assert outcome.failed_rows_by_rule == {
        "event_type: str_matches('^[a-z][a-z0-9_]{0,63}$')": 50,
        "occurred_at_inside_partition_day": 1,
    }
    assert len(outcome.samples) == MAX_SAMPLES
    late = [s for s in outcome.samples if s["rule"] == "occurred_at_inside_partition_day"]
    assert late == [
        {
            "rule": "occurred_at_inside_partition_day",
            "tenant_id": "acme",
            "source": "acme/2026-11-12/a.jsonl",
            "source_line": 56,
            "occurred_at": ts("23:00:00", D - dt.timedelta(days=3)),
        }
    ]
    bad_type = [s for s in outcome.samples if s["rule"].startswith("event_type")]
    assert bad_type[0] == {
        "rule": "event_type: str_matches('^[a-z][a-z0-9_]{0,63}$')",
        "tenant_id": "acme",
        "source": "acme/2026-11-12/a.jsonl",
        "source_line": 1,
        "occurred_at": ts("10:00:00"),
        "value": "Bad Type",
    }
    assert all("visitor_id" not in s for s in outcome.samples)


# --- In the pipeline, on real Postgres and dbt ------------------------------------------


def build(tenant, day, resources, instance, selection=None, **kwargs):
    return materialize_layer(
        selection, tenant, day, resources, instance, raise_on_error=False, **kwargs
    )


def run_check(checks, name, postgres, tenant):
    """One layer check on a tenant-day already built, as its check op runs it."""
    (check,) = [c for c in checks if c.name == name]
    with postgres.connect() as conn:
        outcome = check.run(conn, [TenantDay(tenant, D)], 0)
    return outcome.to_check_result(check.name, check.asset, check.severity, str(tenant))


def check_results(result) -> dict[str, object]:
    """check name -> its evaluation, for every check the run evaluated."""
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    }


def materialized(result) -> set[str]:
    return {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
    }


LAYER_CHECKS = {
    "raw_file_events_schema",
    "stg_events_schema",
    "stg_events_expectations",
    "stg_events_parity_with_raw",
    *(c.name for c in MARTS_CHECKS),
}
# Row-level rules of staging and the marts, as dbt tests (their YAML): a sample.
DBT_RULES = {
    "within_range_stg_events_revenue__0",
    "stg_events_event_type_snake_case",
    "fct_sessions_end_not_before_start",
    "is_channel_fct_sessions_channel",
    "fct_daily_metrics_new_plus_returning_is_visitors",
    "fct_funnel_daily_never_increases",
}


def good_day(tenant):
    return [
        tracker_event("a1", "v1", f"{D}T10:00:00Z", path="/"),
        tracker_event("a2", "v1", f"{D}T10:05:00Z", event_type="signup", userId="u1"),
        tracker_event(
            "a3", "v1", f"{D}T10:06:00Z", event_type="purchase", revenue=20, currency="EUR"
        ),
        tracker_event("b1", "v2", f"{D}T23:50:00Z", session="s9"),
    ]


def test_a_good_slice_passes_every_layer_check_and_parity_catches_a_tampered_one(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("good")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(day_file(landing_dir, tenant, D), good_day(tenant))

    result = build(tenant, D, resources, instance)

    assert result.success
    checks = check_results(result)
    assert LAYER_CHECKS | DBT_RULES | {"rows_read_equal_loaded_plus_quarantined"} <= set(checks)
    failed = {name: e.metadata for name, e in checks.items() if not e.passed}
    assert failed == {}
    assert checks["stg_events_schema"].metadata["rows_checked"].value == 4

    with postgres.transaction() as conn:  # a staging row lost, a mart hand-edited
        conn.execute(
            "DELETE FROM staging.stg_events WHERE tenant_id = %s AND event_id = 'b1'", (tenant,)
        )
        conn.execute(
            "UPDATE marts.fct_daily_metrics SET visitors = visitors + 5 WHERE tenant_id = %s",
            (tenant,),
        )

    checks = {
        name: run_check([*STAGING_CHECKS, *MARTS_CHECKS], name, postgres, tenant)
        for name in (
            "stg_events_parity_with_raw",
            "fct_daily_metrics_parity_with_staging",
            "fct_channel_daily_parity_with_sessions",
        )
    }

    staging = checks["stg_events_parity_with_raw"]
    assert staging.metadata["failed_rules"].value == {"staged_events_match_raw_after_dedup": 1}
    assert f"| staged_events_match_raw_after_dedup | {tenant} | {D} | 4 | 3 |" in (
        staging.metadata["failure_samples"].value
    )
    marts = checks["fct_daily_metrics_parity_with_staging"]
    assert marts.metadata["failed_rules"].value == {
        "daily_events_match_staged": 1,  # the mart still counts the deleted event
        "daily_visitors_match_distinct_staged_visitors": 1,
        "daily_page_views_match_staged": 1,
    }
    assert f"| daily_visitors_match_distinct_staged_visitors | {tenant} | {D} | 1 | 7 |" in (
        marts.metadata["failure_samples"].value
    )
    assert checks["fct_channel_daily_parity_with_sessions"].passed


def test_a_failed_blocking_staging_check_stops_marts_and_serving_in_the_same_run(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("refund")
    instance.add_dynamic_partitions("tenants", [tenant])
    events = good_day(tenant)
    # The contract accepts a negative amount (refunds exist); analytics revenue must not.
    events.append(
        tracker_event(
            "r1", "v3", f"{D}T12:00:00Z", event_type="purchase", revenue=-20, currency="EUR"
        )
    )
    write_lines(day_file(landing_dir, tenant, D), events)

    result = build(tenant, D, resources, instance)

    assert not result.success
    revenue = check_results(result)["within_range_stg_events_revenue__0"]  # a dbt test
    assert not revenue.passed and revenue.severity == AssetCheckSeverity.ERROR
    assert revenue.metadata["dagster_dbt/failed_row_count"].value == 1
    # Held like a failed Pandera check: neighbouring days' runs leave it as it is.
    with postgres.connect() as conn:
        held = conn.execute(
            "SELECT partition_date, layer, checks FROM platform.held_slices WHERE tenant_id = %s",
            (tenant,),
        ).fetchall()
    assert held == [(D, "staging", "stg_events:within_range_stg_events_revenue__0")]
    built = materialized(result)
    assert {"raw_file_events", "stg_events"} <= built
    assert not built & {"fct_sessions", "fct_daily_metrics", "serving_daily_metrics"}
    started = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_START}
    assert not started & {"analytics_dbt_marts", "marts_checks", SERVING_STEP}


def failed_dbt_tests(resources, tenant: str, selection: str, target) -> set[str]:
    """Run the dbt tests of `selection` on one tenant-day, as a run's dbt step would."""
    window = slice_window([TenantDay(tenant, D)])
    env = {**resources["postgres"].libpq_env(), **slice_environment(partitioned_dbt_vars(window))}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        invocation = resources["dbt"].cli(
            ["test", "--select", selection], target_path=target, raise_on_error=False
        )
        invocation.wait()
    results = invocation.get_artifact("run_results.json")["results"]
    return {r["unique_id"].split(".")[2] for r in results if r["status"] == "fail"}


def test_the_marts_rules_are_dbt_tests_that_catch_a_tampered_slice(
    landing_dir, resources, instance, postgres, new_tenant, tmp_path
):
    tenant = new_tenant("tamper")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(day_file(landing_dir, tenant, D), good_day(tenant))
    assert build(tenant, D, resources, instance).success
    assert failed_dbt_tests(resources, tenant, "path:models/marts", tmp_path / "a") == set()

    with postgres.transaction() as conn:  # what the marts' Pandera models used to catch
        conn.execute(
            "UPDATE marts.fct_sessions SET session_end = session_start - interval '1 hour', "
            "channel = 'carrier pigeon' WHERE tenant_id = %s AND visitor_id = 'v1'",
            (tenant,),
        )
        conn.execute(
            "UPDATE marts.fct_daily_metrics SET bounce_rate = 1.5, new_visitors = visitors + 1 "
            "WHERE tenant_id = %s",
            (tenant,),
        )
        conn.execute(
            "UPDATE marts.fct_funnel_daily SET visitors = 7 "
            "WHERE tenant_id = %s AND step_number = 3",
            (tenant,),
        )

    assert failed_dbt_tests(resources, tenant, "path:models/marts", tmp_path / "b") == {
        "fct_sessions_end_not_before_start",
        "is_channel_fct_sessions_channel",
        "within_range_fct_daily_metrics_bounce_rate__1__0",
        "fct_daily_metrics_new_plus_returning_is_visitors",  # 3 new + 0 returning != 2
        "fct_funnel_daily_never_increases",
    }
    # Another tenant's run does not see them (the tests judge the run's tenant-days).
    assert failed_dbt_tests(resources, "other_tenant", "path:models/marts", tmp_path / "c") == set()


def test_a_failed_warn_check_reports_and_lets_the_run_go_on(
    landing_dir, resources, instance, new_tenant
):
    tenant = new_tenant("odd")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(
        day_file(landing_dir, tenant, D),
        [tracker_event("p1", "v1", f"{D}T09:00:00Z")]
        + [
            tracker_event(f"x{i}", "v1", f"{D}T09:0{i}:30Z", event_type="video_heartbeat")
            for i in range(3)
        ],
    )

    result = build(tenant, D, resources, instance)

    assert result.success
    expectations = check_results(result)["stg_events_expectations"]
    assert not expectations.passed and expectations.severity == AssetCheckSeverity.WARN
    assert expectations.metadata["failed_rules"].value == {
        "event_type: mostly_known_event_types_0.95": 3
    }
    assert {"fct_sessions", "serving_daily_metrics"} <= materialized(result)


def insert_rows_two_days_off(postgres, tenant):
    """25 rows written straight into raw, around the loader, stamped two days early."""
    with postgres.transaction() as conn:
        conn.execute(
            "INSERT INTO raw.file_events (event_id, tenant_id, event_type, occurred_at, "
            "visitor_id, _partition_date, _source, _source_line) "
            "SELECT 'm' || n, %s, 'page_view', %s::timestamptz - interval '2 days', 'v9', %s, "
            "'manual.sql', n FROM generate_series(1, 25) AS n",
            (tenant, f"{D}T10:00:00Z", D),
        )


def test_raw_checks_catch_rows_that_bypassed_the_loader(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("bypass")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(day_file(landing_dir, tenant, D), good_day(tenant))
    assert build(tenant, D, resources, instance, selection=["raw_file_events"]).success
    insert_rows_two_days_off(postgres, tenant)  # a manual backfill, wrong clock

    result = build(
        tenant,
        D,
        resources,
        instance,
        selection=[AssetKey("raw_file_events")],
    )
    # The loader rebuilds the slice from its files: the manual rows are gone again.
    assert check_results(result)["raw_file_events_schema"].passed
    insert_rows_two_days_off(postgres, tenant)
    raw = run_check(RAW_CHECKS, "raw_file_events_schema", postgres, tenant)
    assert not raw.passed
    assert raw.metadata["failed_rules"].value == {"occurred_at_inside_partition_day": 25}
    assert raw.metadata["failure_samples"].value.count("manual.sql") == MAX_SAMPLES


def test_ingest_parity_compares_what_was_read_with_what_is_stored(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("ingest")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(day_file(landing_dir, tenant, D), [*good_day(tenant), "{broken json"])
    result = build(tenant, D, resources, instance, selection=["raw_file_events"])
    assert check_results(result)["rows_read_equal_loaded_plus_quarantined"].passed

    with postgres.connect() as conn:
        right = ingest_parity(conn, "raw.file_events", "raw_file_events", {TenantDay(tenant, D): 5})
        wrong = ingest_parity(conn, "raw.file_events", "raw_file_events", {TenantDay(tenant, D): 7})
    assert right.passed
    assert wrong.failed_rows_by_rule == {"rows_read_equal_loaded_plus_quarantined": 1}
    assert wrong.samples == [
        {
            "rule": "rows_read_equal_loaded_plus_quarantined",
            "tenant_id": tenant,
            "day": D.isoformat(),
            "read": 7,
            "loaded": 4,
            "quarantined": 1,
        }
    ]


def test_a_tenant_whose_data_stops_arriving_is_flagged_and_alerted(
    landing_dir, resources, instance, postgres, new_tenant
):
    fresh, quiet = new_tenant("fresh"), new_tenant("quiet")
    instance.add_dynamic_partitions("tenants", [fresh, quiet])
    now = dt.datetime.now(UTC)
    yesterday = now.date() - dt.timedelta(days=1)  # the newest complete daily partition
    for tenant in (fresh, quiet):
        register_tenant(postgres, tenant, actor="test")
        with postgres.transaction() as conn:
            transition(conn, tenant, "active", allowed_from=("pending",), actor="test")
        write_lines(
            day_file(landing_dir, tenant, yesterday),
            [tracker_event("e1", "v1", f"{yesterday}T12:00:00Z")],
        )
    both = materialize(
        ALL_ASSETS,
        selection=["raw_file_events", "stg_events"],
        tags=range_tags([fresh, quiet], [yesterday]),  # one run for both tenants
        resources=resources,
        instance=instance,
    )
    assert both.success
    with postgres.transaction() as conn:
        conn.execute(
            "UPDATE staging.stg_events SET ingested_at = now() - interval '30 hours' "
            "WHERE tenant_id = %s",
            (quiet,),
        )
    webhook = Webhook()
    try:
        defs = Definitions(
            assets=ALL_ASSETS,
            asset_checks=[every_active_tenant_fresh],
            jobs=[tenant_freshness_job],
            resources={
                **resources,
                "alerts": AlertWebhookResource(url=webhook.url, backoff_seconds=0),
            },
        )
        result = defs.resolve_job_def("tenant_freshness").execute_in_process(instance=instance)
    finally:
        webhook.close()

    check = check_results(result)["every_active_tenant_fresh"]
    stale = check.metadata["stale_tenants"].value
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert quiet in stale and fresh not in stale
    (alert,) = webhook.bodies
    assert alert["event"] == "tenant_stale"
    assert quiet in [t["tenant"] for t in alert["tenants"]]
    assert fresh not in [t["tenant"] for t in alert["tenants"]]


def test_a_slice_is_read_exactly_as_stored(postgres):
    with postgres.connect() as conn:
        conn.execute(
            "CREATE TEMP TABLE t (tenant_id text, d date, id text, at timestamptz, b boolean)"
        )
        conn.execute(
            "INSERT INTO t VALUES "
            "('acme', '2026-11-01', '007', '2026-11-01 10:00:00.123456+02', true), "
            "('acme', '2026-11-01', '', NULL, false), "
            "('acme', '2026-11-02', 'other day', now(), NULL), "
            "('globex', '2026-11-01', 'other tenant', now(), true)"
        )
        query = SliceQuery(
            "pg_temp.t",
            ("t.tenant_id", "t.id", "t.at", "t.b"),
            "d",
            booleans=("b",),
            timestamps=("at",),
            with_window=True,
        )
        frame = read_slice(
            conn, query, [TenantDay("acme", dt.date(2026, 11, 1))], tolerance_minutes=30
        )

    assert frame["id"].tolist() == ["007", ""]  # zeros kept, empty string is not NULL
    assert frame["at"].iloc[0] == pd.Timestamp("2026-11-01T08:00:00.123456", tz="UTC")
    assert pd.isna(frame["at"].iloc[1])
    assert frame["b"].tolist() == [True, False]
    assert frame["window_start"].iloc[0] == pd.Timestamp("2026-10-31T23:30:00", tz="UTC")
    assert frame["window_end"].iloc[0] == pd.Timestamp("2026-11-02T00:30:00", tz="UTC")
