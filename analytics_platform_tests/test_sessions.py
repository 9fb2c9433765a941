"""Sessions keyed by the client's session id, and sites in the marts: real Postgres,
real dbt, expected values worked out by hand in the comments of each test."""

from __future__ import annotations

from decimal import Decimal

from dagster import AssetSelection

from analytics_platform.tenants.registry import register_tenant
from analytics_platform.tenants.sites import add_site
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_marts import MODELS, NEXT, D, at, build
from analytics_platform_tests.test_pipeline import materialize_layer


def session_rows(postgres, tenant):
    """(visitor, start time, end time, events, page views, landing path) per session."""
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT visitor_id, to_char(session_start AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), "
            "to_char(session_end AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), events, page_views, "
            "landing_path FROM marts.fct_sessions WHERE tenant_id = %s "
            "ORDER BY visitor_id, session_start, landing_path",
            (tenant,),
        ).fetchall()


def session_ids(postgres, tenant) -> list[str]:
    with postgres.connect() as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT session_id FROM marts.fct_sessions WHERE tenant_id = %s", (tenant,)
            )
        ]


def test_sessions_follow_the_client_id_and_the_timeout_within_it(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("sid")
    instance.add_dynamic_partitions("tenants", [tenant])
    same_instant = at(D, "10:00:00.123")
    write_lines(
        day_file(landing_dir, tenant, D),
        [
            # tabs: two tabs, ids A,B,A,B,A, the first four in the same millisecond.
            tracker_event("t1", "tabs", same_instant, session="A", path="/a"),
            tracker_event("t2", "tabs", same_instant, session="B", path="/b"),
            tracker_event("t3", "tabs", same_instant, session="A", path="/a2"),
            tracker_event("t4", "tabs", same_instant, session="B", path="/b2"),
            tracker_event("t5", "tabs", at(D, "10:02:00.123"), session="A", path="/a3"),
            # reuse: id R at 09:00 and 09:10, then after 50 minutes (> 30) again at 10:00,
            # and 10:30 exactly 30 minutes later (= the timeout, stays in).
            tracker_event("r1", "reuse", at(D, "09:00:00"), session="R", path="/r1"),
            tracker_event("r2", "reuse", at(D, "09:10:00"), session="R", path="/r2"),
            tracker_event("r3", "reuse", at(D, "10:00:00"), session="R", path="/r3"),
            tracker_event("r4", "reuse", at(D, "10:30:00"), session="R", path="/r4"),
            # mixed: id M at 14:00 and 14:20; without an id at 14:05, 14:50 (45 min after
            # 14:05: cut) and 15:10 (20 min: stays). The id-less events form their own timeline.
            tracker_event("m1", "mixed", at(D, "14:00:00"), session="M", path="/m1"),
            tracker_event("m2", "mixed", at(D, "14:05:00"), session=None, path="/n1"),
            tracker_event("m3", "mixed", at(D, "14:20:00"), session="M", path="/m2"),
            tracker_event("m4", "mixed", at(D, "14:50:00"), session=None, path="/n2"),
            tracker_event("m5", "mixed", at(D, "15:10:00"), session=None, path="/n3"),
            # twins: two id-less events at the very same instant: one session.
            tracker_event("w1", "twins", at(D, "16:00:00"), session=None, path="/w1"),
            tracker_event("w2", "twins", at(D, "16:00:00"), session=None, path="/w2"),
        ],
    )
    build(tenant, D, resources, instance)

    assert session_rows(postgres, tenant) == [
        # mixed: M = m1, m3 (14:00-14:20); id-less: m2 alone, then m4 + m5 (14:50-15:10).
        ("mixed", "14:00:00.000", "14:20:00.000", 2, 2, "/m1"),
        ("mixed", "14:05:00.000", "14:05:00.000", 1, 1, "/n1"),
        ("mixed", "14:50:00.000", "15:10:00.000", 2, 2, "/n2"),
        # reuse: r1, r2, then r3 + r4 (a gap of exactly 30 minutes stays in).
        ("reuse", "09:00:00.000", "09:10:00.000", 2, 2, "/r1"),
        ("reuse", "10:00:00.000", "10:30:00.000", 2, 2, "/r3"),
        # tabs: A = t1, t3, t5 (landing t1's /a, by event id at equal times); B = t2, t4.
        ("tabs", "10:00:00.123", "10:02:00.123", 3, 3, "/a"),
        ("tabs", "10:00:00.123", "10:00:00.123", 2, 2, "/b"),
        # twins: w1 and w2, landing on w1's /w1 (event id breaks the tie).
        ("twins", "16:00:00.000", "16:00:00.000", 2, 2, "/w1"),
    ]
    ids = session_ids(postgres, tenant)
    assert len(ids) == 8 and len(set(ids)) == 8

    with postgres.connect() as conn:
        (sessions, bounce_rate, average_seconds) = conn.execute(
            "SELECT sum(sessions), sum(bounce_rate), sum(average_session_seconds) "
            "FROM marts.fct_daily_metrics WHERE tenant_id = %s",
            (tenant,),
        ).fetchone()
        funnel = conn.execute(
            "SELECT sessions, visitors FROM marts.fct_funnel_daily "
            "WHERE tenant_id = %s AND step_number = 1",
            (tenant,),
        ).fetchone()
    # One site (the tenant's default). 8 sessions; one bounce (mixed's lone m2, one page
    # view): 1/8 = 0.125 -> 0.1250. Durations 1200 + 0 + 1200 + 600 + 1800 + 120 + 0 + 0
    # = 4920 s / 8 = 615.0.
    assert (sessions, bounce_rate, average_seconds) == (8, Decimal("0.1250"), Decimal("615.0"))
    # Every session has a page view: 8 sessions reach step 1, of 4 visitors; the two
    # parallel sessions of `tabs` each count once, not twice.
    assert funnel == (8, 4)


def test_a_client_session_across_midnight_is_one_session_of_its_first_day(
    landing_dir, resources, instance, postgres, new_tenant
):
    in_order, backwards = new_tenant("idmid"), new_tenant("idmid")
    instance.add_dynamic_partitions("tenants", [in_order, backwards])
    for tenant in (in_order, backwards):
        # Id N from 23:50 to 00:15 (gaps of 10 and 15 minutes); id O of the same visitor
        # runs in parallel at 23:55 and 00:05.
        write_lines(
            day_file(landing_dir, tenant, D),
            [
                tracker_event("n1", "v1", at(D, "23:50:00"), session="N", path="/n1"),
                tracker_event("o1", "v1", at(D, "23:55:00"), session="O", path="/o1"),
            ],
        )
        write_lines(
            day_file(landing_dir, tenant, NEXT),
            [
                tracker_event("n2", "v1", at(NEXT, "00:00:00"), session="N", path="/n2"),
                tracker_event("o2", "v1", at(NEXT, "00:05:00"), session="O", path="/o2"),
                tracker_event("n3", "v1", at(NEXT, "00:15:00"), session="N", path="/n3"),
            ],
        )
    build(in_order, D, resources, instance)
    build(in_order, NEXT, resources, instance)
    build(backwards, NEXT, resources, instance)
    build(backwards, D, resources, instance)

    for tenant in (in_order, backwards):
        with postgres.connect() as conn:
            rows = conn.execute(
                "SELECT session_date, events, duration_seconds, landing_path, exit_path "
                "FROM marts.fct_sessions WHERE tenant_id = %s ORDER BY landing_path",
                (tenant,),
            ).fetchall()
        # N: n1, n2, n3, 23:50 -> 00:15 = 1500 s; O: o1, o2, 23:55 -> 00:05 = 600 s; both of D.
        assert rows == [(D, 3, 1500, "/n1", "/n3"), (D, 2, 600, "/o1", "/o2")]
        assert len(set(session_ids(postgres, tenant))) == 2
    # Rebuilding a day that holds the sessions' events gives them the same ids.
    ids = sorted(session_ids(postgres, in_order))
    build(in_order, NEXT, resources, instance)
    assert sorted(session_ids(postgres, in_order)) == ids


def test_daily_metrics_split_by_site_and_sum_to_the_tenant(
    landing_dir, resources, instance, postgres, clickhouse, new_tenant
):
    tenant = new_tenant("sites")
    instance.add_dynamic_partitions("tenants", [tenant])
    # The tenant's second site, named by the events' `siteId` as a tracker sends it.
    blog = f"{tenant}-blog"
    register_tenant(postgres, tenant, actor="test")
    add_site(postgres, tenant, blog, actor="test")
    write_lines(
        day_file(landing_dir, tenant, D),
        [
            # v1: one session over two sites (id s1): the session is the default site's.
            tracker_event("a1", "v1", at(D, "10:00:00"), session="s1"),
            tracker_event("a2", "v1", at(D, "10:05:00"), session="s1", siteId=blog),
            # v2: on the blog only, buys for 10.
            tracker_event("b1", "v2", at(D, "11:00:00"), session="s2", siteId=blog),
            tracker_event(
                "b2",
                "v2",
                at(D, "11:01:00"),
                event_type="purchase",
                session="s2",
                revenue=10,
                currency="EUR",
                siteId=blog,
            ),
            # v3: the default site only, one page view.
            tracker_event("c1", "v3", at(D, "12:00:00"), session="s3"),
        ],
    )
    write_lines(
        day_file(landing_dir, tenant, NEXT),
        # v3 comes back, on the blog: returning to the tenant, new to the blog.
        [tracker_event("c2", "v3", at(NEXT, "09:00:00"), session="s4", siteId=blog)],
    )
    for day in (D, NEXT):
        assert materialize_layer(MODELS, tenant, day, resources, instance).success

    with postgres.connect() as conn:
        sessions = conn.execute(
            "SELECT visitor_id, site_id FROM marts.fct_sessions WHERE tenant_id = %s "
            "ORDER BY session_start",
            (tenant,),
        ).fetchall()
        daily = conn.execute(
            "SELECT event_date, site_id, visitors, new_visitors, returning_visitors, sessions, "
            "page_views, events, bounce_rate, conversions, revenue FROM marts.fct_daily_metrics "
            "WHERE tenant_id = %s ORDER BY event_date, site_id",
            (tenant,),
        ).fetchall()
    assert sessions == [("v1", tenant), ("v2", blog), ("v3", tenant), ("v3", blog)]
    assert daily == [
        # D, default: v1 (a1) and v3, new; events a1, c1; sessions v1 (2 page views over
        # two sites) and v3 (a bounce): 1/2.
        (D, tenant, 2, 2, 0, 2, 2, 2, Decimal("0.5000"), 0, Decimal("0")),
        # D, blog: v1 (a2) and v2, both new there; events a2, b1, b2 (2 page views);
        # v2's session only (not a bounce: it converted); revenue 10.
        (D, blog, 2, 2, 0, 1, 2, 3, Decimal("0.0000"), 1, Decimal("10")),
        # NEXT, blog: v3, new to the blog though not to the tenant; one bouncing session.
        (NEXT, blog, 1, 1, 0, 1, 1, 1, Decimal("1.0000"), 0, Decimal("0")),
    ]

    # Served: ClickHouse holds the sites too (migration 0005), and sums over sites hold.
    served = AssetSelection.assets("serving_daily_metrics", "serving_sessions")
    assert materialize_layer(served, tenant, D, resources, instance).success
    with clickhouse.session() as session:
        database = clickhouse.database_for(tenant)
        ch_daily = session.query_df(
            f"SELECT toString(event_date) AS day, site_id, sessions, events "
            f"FROM `{database}`.fct_daily_metrics ORDER BY day, site_id"
        )
        ch_sessions = session.query_df(
            f"SELECT visitor_id, site_id FROM `{database}`.fct_sessions ORDER BY session_start"
        )
    assert [tuple(r) for r in ch_daily.itertuples(index=False)] == [
        (str(D), tenant, 2, 2),
        (str(D), blog, 1, 3),
        (str(NEXT), blog, 1, 1),
    ]
    assert [tuple(r) for r in ch_sessions.itertuples(index=False)] == sessions
