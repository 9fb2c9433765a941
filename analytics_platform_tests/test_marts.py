"""dbt marts on the hard cases, with expected values worked out by hand in each test."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from dagster import AssetSelection

from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_pipeline import materialize_layer

D = dt.date(2026, 11, 10)
NEXT = D + dt.timedelta(days=1)
MODELS = AssetSelection.assets(
    "raw_file_events",
    "stg_events",
    "fct_sessions",
    "fct_daily_metrics",
    "fct_channel_daily",
    "fct_funnel_daily",
    "int_experiment_exposures_daily",
    "int_conversions_daily",
    "fct_experiment_results",
    "dim_visitors",
    "int_visitor_days",
)


def at(day: dt.date, clock: str) -> str:
    return f"{day}T{clock}Z"


def build(tenant, day, resources, instance):
    result = materialize_layer(MODELS, tenant, day, resources, instance)
    assert result.success
    return result


def row_counts(result) -> dict[str, int]:
    """Each dbt model's rows for a one-partition run: `dagster/row_count` (the partition's),
    or, for a whole-history model, the tenant's rows (`rows_of_tenant`)."""
    counts = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if event.step_key.startswith("analytics_dbt_"):
            metadata = materialization.metadata
            if "dagster/row_count" in metadata:
                count = metadata["dagster/row_count"].value
            else:
                (count,) = metadata["rows_of_tenant"].value.values()
            counts[materialization.asset_key.to_user_string()] = count
    return counts


def column_lineage(result, asset: str) -> dict[str, set[tuple[str, str]]]:
    """Column -> the (asset, column) pairs it is computed from, as shown in the UI."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            lineage = materialization.metadata["dagster/column_lineage"].value
            return {
                column: {(dep.asset_key.to_user_string(), dep.column_name) for dep in deps}
                for column, deps in lineage.deps_by_column.items()
            }
    raise AssertionError(f"{asset} was not materialized")


def sessions(postgres, tenant):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT session_date, visitor_id, (session_start AT TIME ZONE 'UTC')::time::text, "
            "duration_seconds, "
            "page_views, events, landing_path, exit_path, channel, is_bounce, converted, "
            "revenue, user_id FROM marts.fct_sessions WHERE tenant_id = %s "
            "ORDER BY session_start, visitor_id",
            (tenant,),
        ).fetchall()


def daily(postgres, tenant):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT event_date, visitors, new_visitors, returning_visitors, identified_users, "
            "sessions, page_views, events, bounce_rate, average_session_seconds, conversions, "
            "conversion_rate, revenue FROM marts.fct_daily_metrics WHERE tenant_id = %s "
            "ORDER BY event_date",
            (tenant,),
        ).fetchall()


def table_rows(postgres, table, tenant):
    """All columns but the tenant, in a stable order."""
    with postgres.connect() as conn:
        rows = conn.execute(
            f"SELECT to_jsonb(t) - 'tenant_id' FROM marts.{table} t WHERE tenant_id = %s", (tenant,)
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


def test_session_boundaries_attribution_and_daily_metrics(
    landing_dir, resources, instance, postgres, clickhouse, new_tenant
):
    tenant = new_tenant("sess")
    instance.add_dynamic_partitions("tenants", [tenant])
    google_ad = {"attribution": {"utmParams": {"utm_source": "google", "utm_medium": "cpc"}}}
    write_lines(
        day_file(landing_dir, tenant, D),
        [
            # v1: a gap of exactly 30 minutes stays in the session; 30:01 starts a new one.
            tracker_event("a1", "v1", at(D, "10:00:00"), path="/"),
            tracker_event("a2", "v1", at(D, "10:30:00"), path="/docs"),
            tracker_event("a3", "v1", at(D, "11:00:01"), path="/blog"),
            # v2: a new client session hint one minute later starts a new session.
            tracker_event(
                "b1",
                "v2",
                at(D, "12:00:00"),
                session="h1",
                referrer="https://www.google.com/search",
            ),
            tracker_event(
                "b2",
                "v2",
                at(D, "12:01:00"),
                session="h2",
                referrer="https://news.ycombinator.com/",
            ),
            # v3: lands from a Google ad, signs up, buys.
            tracker_event("c1", "v3", at(D, "13:00:00"), path="/pricing", **google_ad),
            tracker_event(
                "c2", "v3", at(D, "13:05:00"), event_type="signup", path="/signup", userId="u3"
            ),
            tracker_event(
                "c3",
                "v3",
                at(D, "13:06:00"),
                event_type="purchase",
                path="/checkout",
                userId="u3",
                revenue=49.5,
                currency="EUR",
            ),
        ],
    )
    built = build(tenant, D, resources, instance)
    assert row_counts(built) == {
        "stg_events": 8,
        "fct_sessions": 5,
        "fct_daily_metrics": 1,
        "fct_channel_daily": 4,
        "fct_funnel_daily": 3,
        "int_experiment_exposures_daily": 0,  # no experiment
        "int_conversions_daily": 1,  # v3's signup and purchase, one visitor-day
        "fct_experiment_results": 0,
        "dim_visitors": 3,
        "int_visitor_days": 3,  # v1, v2, v3 on D
    }
    # Column lineage, read from the warehouse the run used (not the one `prepare` saw).
    staged = column_lineage(built, "stg_events")
    assert staged["event_id"] == {("raw_file_events", "event_id"), ("raw_api_events", "event_id")}
    assert staged["source_line"] == {
        ("raw_file_events", "_source_line"),
        ("raw_api_events", "_source_line"),
    }
    sessionized = column_lineage(built, "fct_sessions")
    assert sessionized["visitor_id"] == {("stg_events", "visitor_id")}
    assert sessionized["session_end"] == {("stg_events", "occurred_at")}
    assert ("stg_events", "utm_source") in sessionized["channel"]
    assert column_lineage(built, "fct_channel_daily")["revenue"] == {("fct_sessions", "revenue")}
    assert column_lineage(built, "dim_visitors")["last_seen_at"] == {
        ("fct_sessions", "session_end")
    }

    assert sessions(postgres, tenant) == [
        # date, visitor, start, seconds, pv, events, landing, exit, channel, bounce, conv, rev, user
        (D, "v1", "10:00:00", 1800, 2, 2, "/", "/docs", "direct", False, False, 0, None),
        (D, "v1", "11:00:01", 0, 1, 1, "/blog", "/blog", "direct", True, False, 0, None),
        (D, "v2", "12:00:00", 0, 1, 1, "/", "/", "organic search", True, False, 0, None),
        (D, "v2", "12:01:00", 0, 1, 1, "/", "/", "referral", True, False, 0, None),
        (
            D,
            "v3",
            "13:00:00",
            360,
            1,
            3,
            "/pricing",
            "/pricing",
            "paid search",
            False,
            True,
            Decimal("49.5"),
            "u3",
        ),
    ]
    # 3 visitors, all new; 1 identified; 5 sessions, 3 of them bounces; durations
    # 1800 + 0 + 0 + 0 + 360 = 2160 / 5 = 432 s; 1 conversion of 5 sessions.
    assert daily(postgres, tenant) == [
        (
            D,
            3,
            3,
            0,
            1,
            5,
            6,
            8,
            Decimal("0.6000"),
            Decimal("432.0"),
            1,
            Decimal("0.2000"),
            Decimal("49.5"),
        ),
    ]

    with postgres.connect() as conn:
        channels = conn.execute(
            "SELECT channel, sessions, visitors, conversions, conversion_rate, revenue "
            "FROM marts.fct_channel_daily WHERE tenant_id = %s ORDER BY channel",
            (tenant,),
        ).fetchall()
        visitors = conn.execute(
            "SELECT visitor_id, sessions, first_touch_channel, first_touch_utm_source, revenue, "
            "latest_user_id, (first_seen_at AT TIME ZONE 'UTC')::time::text "
            "FROM marts.dim_visitors WHERE tenant_id = %s ORDER BY visitor_id",
            (tenant,),
        ).fetchall()
    assert channels == [
        ("direct", 2, 1, 0, Decimal("0.0000"), 0),
        ("organic search", 1, 1, 0, Decimal("0.0000"), 0),
        ("paid search", 1, 1, 1, Decimal("1.0000"), Decimal("49.5")),
        ("referral", 1, 1, 0, Decimal("0.0000"), 0),
    ]
    assert visitors == [
        ("v1", 2, "direct", None, 0, None, "10:00:00"),
        ("v2", 2, "organic search", None, 0, None, "12:00:00"),
        ("v3", 1, "paid search", "google", Decimal("49.5"), "u3", "13:00:00"),
    ]

    # Served: ClickHouse holds the same sessions and channel rows as Postgres.
    served = AssetSelection.assets(
        "serving_sessions",
        "serving_channel_daily",
        "serving_funnel_daily",
        "serving_visitors",
        "serving_experiment_results",
    )
    assert materialize_layer(served, tenant, D, resources, instance).success
    with clickhouse.session() as session:
        database = clickhouse.database_for(tenant)
        ch_sessions = session.query_df(
            f"SELECT visitor_id, toString(session_start) AS start, page_views, channel, "
            f"is_bounce, revenue FROM `{database}`.fct_sessions ORDER BY session_start"
        )
        ch_channels = session.query_df(
            f"SELECT channel, sessions, revenue FROM `{database}`.fct_channel_daily "
            "ORDER BY channel"
        )
    assert [tuple(r) for r in ch_sessions.itertuples(index=False)] == [
        ("v1", "2026-11-10 10:00:00.000", 2, "direct", False, 0.0),
        ("v1", "2026-11-10 11:00:01.000", 1, "direct", True, 0.0),
        ("v2", "2026-11-10 12:00:00.000", 1, "organic search", True, 0.0),
        ("v2", "2026-11-10 12:01:00.000", 1, "referral", True, 0.0),
        ("v3", "2026-11-10 13:00:00.000", 1, "paid search", False, 49.5),
    ]
    assert [tuple(r) for r in ch_channels.itertuples(index=False)] == [
        (channel, sessions, float(revenue)) for channel, sessions, _, _, _, revenue in channels
    ]
    with clickhouse.session() as session:
        ch_funnel = session.query_df(
            f"SELECT step_name, sessions, visitors FROM `{clickhouse.database_for(tenant)}`"
            ".fct_funnel_daily ORDER BY step_number"
        )
    # page_view -> signup -> purchase: 5 sessions / 3 visitors, then only v3's session.
    assert [tuple(r) for r in ch_funnel.itertuples(index=False)] == [
        ("page_view", 5, 3),
        ("signup", 1, 1),
        ("purchase", 1, 1),
    ]
    with clickhouse.session() as session:
        database = clickhouse.database_for(tenant)
        ch_visitors = session.query_df(
            f"SELECT visitor_id, sessions, first_touch_channel, revenue, "
            f"ifNull(latest_user_id, '') AS user FROM `{database}`.dim_visitors "
            "ORDER BY visitor_id"
        )
        ch_experiments = session.query_df(
            f"SELECT count() AS n FROM `{database}`.fct_experiment_results"
        )
    assert [tuple(r) for r in ch_visitors.itertuples(index=False)] == [
        ("v1", 2, "direct", 0.0, ""),
        ("v2", 2, "organic search", 0.0, ""),
        ("v3", 1, "paid search", 49.5, "u3"),
    ]
    assert int(ch_experiments["n"].iloc[0]) == 0  # no experiment in these events


def midnight_files(landing_dir, tenant):
    """v1's visit runs from 23:50 to 00:20; v2 visits on the second day only."""
    write_lines(
        day_file(landing_dir, tenant, D),
        [tracker_event("m1", "v1", at(D, "23:50:00"), session="s1")],
    )
    write_lines(
        day_file(landing_dir, tenant, NEXT),
        [
            tracker_event("m2", "v1", at(NEXT, "00:10:00"), session="s1", path="/docs"),
            tracker_event("m3", "v1", at(NEXT, "00:20:00"), session="s1", path="/pricing"),
            tracker_event("m4", "v2", at(NEXT, "09:00:00"), session="s9"),
        ],
    )


def test_a_session_across_midnight_belongs_to_its_first_day_in_any_load_order(
    landing_dir, resources, instance, postgres, new_tenant
):
    in_order, backwards = new_tenant("mid"), new_tenant("mid")
    instance.add_dynamic_partitions("tenants", [in_order, backwards])
    for tenant in (in_order, backwards):
        midnight_files(landing_dir, tenant)
    build(in_order, D, resources, instance)
    build(in_order, NEXT, resources, instance)
    build(backwards, NEXT, resources, instance)
    build(backwards, D, resources, instance)

    expected_sessions = [
        (D, "v1", "23:50:00", 1800, 3, 3, "/", "/pricing", "direct", False, False, 0, None),
        (NEXT, "v2", "09:00:00", 0, 1, 1, "/", "/", "direct", True, False, 0, None),
    ]
    assert sessions(postgres, in_order) == expected_sessions
    assert sessions(postgres, backwards) == expected_sessions
    # The day owning the session counts it; page views stay on the day they happened.
    assert daily(postgres, in_order) == daily(postgres, backwards)
    assert table_rows(postgres, "fct_channel_daily", in_order) == table_rows(
        postgres, "fct_channel_daily", backwards
    )
    assert table_rows(postgres, "dim_visitors", in_order) == table_rows(
        postgres, "dim_visitors", backwards
    )
    by_day = {row[0]: row for row in daily(postgres, in_order)}
    assert (by_day[D][5], by_day[D][6]) == (1, 1)  # sessions, page views
    assert (by_day[NEXT][5], by_day[NEXT][6]) == (1, 3)
    assert (by_day[NEXT][2], by_day[NEXT][3]) == (1, 1)  # v2 new, v1 returning


def test_late_events_rebuild_their_day_and_leave_other_days_alone(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("late")
    instance.add_dynamic_partitions("tenants", [tenant])
    far = D + dt.timedelta(days=5)
    for day in (D, far):
        write_lines(
            day_file(landing_dir, tenant, day),
            [tracker_event(f"e-{day}", "v1", at(day, "10:00:00"))],
        )
        build(tenant, day, resources, instance)
    far_before = [r for r in daily(postgres, tenant) if r[0] == far]

    write_lines(
        day_file(landing_dir, tenant, D, "late.jsonl"),
        [tracker_event("late-1", "v2", at(D, "18:00:00"), event_type="signup")],
    )
    build(tenant, D, resources, instance)
    rows = {r[0]: r for r in daily(postgres, tenant)}
    assert (rows[D][1], rows[D][5], rows[D][7], rows[D][10]) == (2, 2, 2, 1)
    assert [r for r in daily(postgres, tenant) if r[0] == far] == far_before
    assert [s[1] for s in sessions(postgres, tenant) if s[0] == D] == ["v1", "v2"]


def test_an_event_delivered_again_the_next_day_is_staged_once(
    landing_dir, resources, instance, postgres, new_tenant
):
    from analytics_platform.resources.landing import LandingZoneResource

    tenant = new_tenant("dup")
    instance.add_dynamic_partitions("tenants", [tenant])
    # The tracker retried after midnight; 10 minutes of tolerance let the copy load too.
    tolerant = {
        **resources,
        "landing": LandingZoneResource(root=str(landing_dir), timestamp_tolerance_minutes=10),
    }
    retried = tracker_event("dup-1", "v1", at(D, "23:59:58"))
    write_lines(day_file(landing_dir, tenant, D), [retried])
    write_lines(
        day_file(landing_dir, tenant, NEXT),
        [retried, tracker_event("n-1", "v1", at(NEXT, "08:00:00"))],
    )
    build(tenant, D, tolerant, instance)
    build(tenant, NEXT, tolerant, instance)
    with postgres.connect() as conn:
        staged = conn.execute(
            "SELECT event_id, event_date FROM staging.stg_events WHERE tenant_id = %s "
            "ORDER BY event_date, event_id",
            (tenant,),
        ).fetchall()
    assert staged == [("dup-1", D), ("n-1", NEXT)]


def test_dim_visitors_keeps_its_column_lineage_once_int_visitor_days_exists(
    landing_dir, resources, instance, new_tenant, monkeypatch
):
    """dim_visitors reads int_visitor_days without a ref once that table exists; its
    lineage must still resolve (it used to be dropped whenever a process first fetched
    it after some earlier build had created the table)."""
    from analytics_platform.assets import dbt as dbt_assets

    tenant = new_tenant("linv")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(day_file(landing_dir, tenant, D), [tracker_event("l1", "v1", at(D, "10:00:00"))])
    build(tenant, D, resources, instance)  # int_visitor_days exists from here on
    monkeypatch.setattr(dbt_assets, "_column_metadata", {})  # fetch lineage afresh
    write_lines(
        day_file(landing_dir, tenant, D, "more.jsonl"),
        [tracker_event("l2", "v2", at(D, "11:00:00"))],
    )
    rebuilt = build(tenant, D, resources, instance)
    lineage = column_lineage(rebuilt, "dim_visitors")
    assert lineage["last_seen_at"] == {("fct_sessions", "session_end")}
    assert lineage["visitor_id"] == {("fct_sessions", "visitor_id")}
