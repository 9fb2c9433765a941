"""fct_funnel_daily and fct_experiment_results on crafted events, expected values by hand."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest
from dagster import AssetSelection, materialize

from analytics_platform.partitions import range_tags
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_pipeline import ALL_ASSETS, materialize_layer

D = dt.date(2026, 11, 12)
NEXT = D + dt.timedelta(days=1)
AFTER = D + dt.timedelta(days=2)
FUNNEL = AssetSelection.assets("raw_file_events", "stg_events", "fct_sessions", "fct_funnel_daily")
EXPERIMENTS = AssetSelection.assets(
    "raw_file_events",
    "stg_events",
    "int_experiment_exposures_daily",
    "int_conversions_daily",
    "fct_experiment_results",
)


def at(day: dt.date, clock: str) -> str:
    return f"{day}T{clock}Z"


def assert_built(result, model: str) -> None:
    """The run succeeded and the model's dbt tests ran as asset checks and passed."""
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert all(evaluation.passed for evaluation in evaluations)
    checked = {e.asset_key.to_user_string() for e in evaluations}
    assert model in checked


def step(visitor: str, day: dt.date, clock: str, event_type: str = "page_view", session="s1"):
    event_id = f"{visitor}-{event_type}-{day}-{clock}"
    return tracker_event(event_id, visitor, at(day, clock), event_type, session)


def funnel_rows(postgres, tenant):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT event_date, step_number, step_name, sessions, visitors, "
            "conversion_from_previous, conversion_from_first FROM marts.fct_funnel_daily "
            "WHERE tenant_id = %s ORDER BY event_date, step_number",
            (tenant,),
        ).fetchall()


def test_funnel_counts_visitors_reaching_each_step_in_order_within_a_session(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("funnel")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(
        day_file(landing_dir, tenant, D),
        [
            # v1: page view, signup, purchase in order -> step 3.
            step("v1", D, "10:00:00"),
            step("v1", D, "10:05:00", "signup"),
            step("v1", D, "10:10:00", "purchase"),
            # v2: buys before signing up -> step 2 only.
            step("v2", D, "11:00:00"),
            step("v2", D, "11:02:00", "purchase"),
            step("v2", D, "11:05:00", "signup"),
            # v3: buys in a second session (new client hint) -> step 2 only.
            step("v3", D, "12:00:00"),
            step("v3", D, "12:05:00", "signup"),
            step("v3", D, "12:10:00", "purchase", session="s2"),
            # v4: signs up before the page view -> step 1 only, the purchase does not help.
            step("v4", D, "13:00:00", "signup"),
            step("v4", D, "13:01:00"),
            step("v4", D, "13:02:00", "purchase"),
            # v5: a bare visit, then (2 h later, a new session) signup and purchase in
            # the same second: a tie is in order -> step 3; one visitor, two sessions.
            step("v5", D, "14:00:00"),
            step("v5", D, "16:00:00"),
            step("v5", D, "16:01:00", "signup"),
            step("v5", D, "16:01:00", "purchase"),
            # v6: a session with a signup and no page view -> reaches nothing.
            step("v6", D, "15:00:00", "signup"),
            # v7: an early purchase does not count, a later one after the signup does -> 3.
            step("v7", D, "09:00:00"),
            step("v7", D, "09:10:00", "purchase"),
            step("v7", D, "09:20:00", "signup"),
            step("v7", D, "09:25:00", "purchase"),
            # v8: a session from 23:50 to 00:10, finished in the next day's file -> D, step 3.
            step("v8", D, "23:50:00"),
        ],
    )
    write_lines(
        day_file(landing_dir, tenant, NEXT),
        [
            step("v8", NEXT, "00:05:00", "signup"),
            step("v8", NEXT, "00:10:00", "purchase"),
            # v9: only looks -> step 1, nobody further.
            step("v9", NEXT, "09:00:00"),
        ],
    )
    # v10: only signs up; the day has a session but nobody reaches step 1.
    write_lines(day_file(landing_dir, tenant, AFTER), [step("v10", AFTER, "10:00:00", "signup")])

    # Newest day first: v8's session must still end up whole on D.
    for day in (AFTER, NEXT, D):
        built = materialize_layer(FUNNEL, tenant, day, resources, instance)
        assert_built(built, "fct_funnel_daily")

    rows = funnel_rows(postgres, tenant)
    # D: step 1 by v1 v2 v3 v4 v5 v7 v8 (v5 in two sessions: 8 sessions, 7 visitors);
    # step 2 by v1 v2 v3 v5 v7 v8 (6 of 7); step 3 by v1 v5 v7 v8 (4 of 6, 4 of 7).
    # NEXT: v9 views only (0 of 1, then 0 of 0). AFTER: nobody starts the funnel.
    assert rows == [
        (D, 1, "page_view", 8, 7, Decimal("1.0000"), Decimal("1.0000")),
        (D, 2, "signup", 6, 6, Decimal("0.8571"), Decimal("0.8571")),
        (D, 3, "purchase", 4, 4, Decimal("0.6667"), Decimal("0.5714")),
        (NEXT, 1, "page_view", 1, 1, Decimal("1.0000"), Decimal("1.0000")),
        (NEXT, 2, "signup", 0, 0, Decimal("0.0000"), Decimal("0.0000")),
        (NEXT, 3, "purchase", 0, 0, None, Decimal("0.0000")),
        (AFTER, 1, "page_view", 0, 0, None, None),
        (AFTER, 2, "signup", 0, 0, None, None),
        (AFTER, 3, "purchase", 0, 0, None, None),
    ]
    for day in (D, NEXT, AFTER):
        visitors = [row[4] for row in rows if row[0] == day]
        assert visitors == sorted(visitors, reverse=True)  # never increases along the steps

    # Rebuilding a day in the middle changes nothing.
    assert_built(materialize_layer(FUNNEL, tenant, NEXT, resources, instance), "fct_funnel_daily")
    assert funnel_rows(postgres, tenant) == rows


def two_proportion_test(converters: int, visitors: int, control_converters: int, control: int):
    """Independent reference: pooled two-proportion z-test, two-sided p-value via math.erfc."""
    pooled = (converters + control_converters) / (visitors + control)
    error = math.sqrt(pooled * (1 - pooled) * (1 / visitors + 1 / control))
    z = (converters / visitors - control_converters / control) / error
    return z, math.erfc(abs(z) / math.sqrt(2))


def stamp(day: dt.date, seconds_after_eight: int) -> str:
    moment = dt.datetime.combine(day, dt.time(8)) + dt.timedelta(seconds=seconds_after_eight)
    return moment.isoformat() + "Z"


def cohort(experiment: str, variant: str, visitors: int, converters: int) -> list[dict]:
    """`visitors` exposed one second apart from 08:00; the first `converters` sign up later."""
    events = []
    for i in range(visitors):
        visitor = f"{experiment}-{variant}-{i}"
        exposed = stamp(D, i)
        events.append(
            tracker_event(f"x-{visitor}", visitor, exposed, experiment=experiment, variant=variant)
        )
        if i < converters:
            events.append(tracker_event(f"c-{visitor}", visitor, stamp(D, 7200 + i), "signup"))
    return events


def exposure(visitor: str, clock: str, variant: str, day: dt.date = D) -> dict:
    return tracker_event(
        f"x-{visitor}-{clock}",
        visitor,
        at(day, clock),
        experiment="checkout_button",
        variant=variant,
    )


def experiment_results(postgres, tenant) -> dict[tuple[str, str], tuple]:
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT experiment_id, variant, is_control, exposed_visitors, converters, "
            "conversion_rate, switched_visitors, uplift, z_score, p_value "
            "FROM marts.fct_experiment_results WHERE tenant_id = %s",
            (tenant,),
        ).fetchall()
    return {(row[0], row[1]): row[2:] for row in rows}


def assert_compared(row: tuple, converters: int, visitors: int, control_conv: int, control: int):
    """uplift, z and p-value of a row match the reference computation."""
    uplift, z, p_value = row[5:]
    expected_z, expected_p = two_proportion_test(converters, visitors, control_conv, control)
    assert uplift == pytest.approx((converters / visitors) / (control_conv / control) - 1)
    assert z == pytest.approx(expected_z, rel=1e-12)
    assert abs(p_value - expected_p) < 1e-6
    # Cody's erfc is accurate in relative terms too, so tiny p-values keep their digits.
    assert p_value == pytest.approx(expected_p, rel=1e-9)


def test_experiment_results_exposures_conversions_uplift_and_p_values(
    landing_dir, resources, instance, postgres, new_tenant
):
    other, tenant = new_tenant("exp_other"), new_tenant("exp")
    instance.add_dynamic_partitions("tenants", [other, tenant])
    write_lines(
        day_file(landing_dir, other, D),
        [tracker_event("o1", "y1", at(D, "10:00:00"), experiment="hero", variant="control")],
    )
    write_lines(
        day_file(landing_dir, tenant, D),
        [
            # control: c1 converts; c2 does not; c3 signed up before exposure (not a
            # converter); c4 is seen in treatment later (stays control, switched) and buys.
            exposure("c1", "10:00:00", "control"),
            tracker_event("c1-s", "c1", at(D, "10:05:00"), "signup"),
            exposure("c2", "10:00:00", "control"),
            tracker_event("c3-s", "c3", at(D, "09:00:00"), "signup"),
            exposure("c3", "10:00:00", "control"),
            exposure("c4", "11:00:00", "control"),
            exposure("c4", "11:30:00", "treatment"),
            tracker_event("c4-p", "c4", at(D, "11:40:00"), "purchase"),
            # treatment: t1 buys; t2 buys the next day; t3 does not.
            exposure("t1", "10:00:00", "treatment"),
            tracker_event("t1-p", "t1", at(D, "10:30:00"), "purchase"),
            exposure("t2", "10:00:00", "treatment"),
            exposure("t3", "10:00:00", "treatment"),
            # Half an exposure is none: an experiment without variant, a variant without one.
            tracker_event("n1", "n1", at(D, "10:00:00"), experiment="checkout_button"),
            tracker_event("n2", "n2", at(D, "10:00:00"), variant="treatment"),
            # Larger numbers: 20/200 control, 33/220 treatment, 60/100 big_win.
            *cohort("pricing_page", "control", 200, 20),
            *cohort("pricing_page", "treatment", 220, 33),
            *cohort("pricing_page", "big_win", 100, 60),
            # No control variant: nothing to compare with.
            *cohort("no_control", "a", 5, 1),
            *cohort("no_control", "b", 5, 2),
            # A control that never converts: no uplift, but a p-value where the pooled
            # rate is above 0; none for a variant that never converts either.
            *cohort("zero_control", "control", 10, 0),
            *cohort("zero_control", "treatment", 10, 3),
            *cohort("zero_control", "flat", 10, 0),
        ],
    )
    write_lines(
        day_file(landing_dir, tenant, NEXT),
        [tracker_event("t2-p", "t2", at(NEXT, "09:00:00"), "purchase")],
    )

    # One run for both tenants' first day.
    first = materialize(
        ALL_ASSETS,
        selection=EXPERIMENTS,
        tags=range_tags([other, tenant], [D]),
        resources=resources,
        instance=instance,
    )
    assert_built(first, "fct_experiment_results")
    results = experiment_results(postgres, tenant)
    assert results[("checkout_button", "control")][:5] == (True, 4, 2, 0.5, 1)
    assert results[("checkout_button", "treatment")][:5] == (False, 3, 1, pytest.approx(1 / 3), 0)
    assert_compared(results[("checkout_button", "treatment")], 1, 3, 2, 4)

    # The next day alone: t2's purchase counts against its exposure of the day before.
    assert_built(
        materialize_layer(EXPERIMENTS, tenant, NEXT, resources, instance), "fct_experiment_results"
    )
    results = experiment_results(postgres, tenant)
    # 2/3 vs 2/4: uplift 1/3; pooled 4/7, error sqrt(4/7 * 3/7 * (1/3 + 1/4)) = sqrt(1/7),
    # z = (1/6) * sqrt(7) = 0.4410, p = erfc(0.3118) = 0.659.
    treatment = results[("checkout_button", "treatment")]
    assert treatment[:5] == (False, 3, 2, pytest.approx(2 / 3), 0)
    assert treatment[5] == pytest.approx(1 / 3)
    assert treatment[6] == pytest.approx(math.sqrt(7) / 6)
    assert treatment[7] == pytest.approx(0.6592, abs=1e-4)
    assert_compared(treatment, 2, 3, 2, 4)

    assert results[("pricing_page", "control")] == (True, 200, 20, 0.1, 0, None, None, None)
    assert results[("pricing_page", "treatment")][:5] == (False, 220, 33, 0.15, 0)
    assert_compared(results[("pricing_page", "treatment")], 33, 220, 20, 200)
    assert results[("pricing_page", "big_win")][:5] == (False, 100, 60, 0.6, 0)
    assert_compared(results[("pricing_page", "big_win")], 60, 100, 20, 200)
    assert results[("pricing_page", "big_win")][7] < 1e-15

    assert results[("no_control", "a")] == (False, 5, 1, 0.2, 0, None, None, None)
    assert results[("no_control", "b")] == (False, 5, 2, 0.4, 0, None, None, None)

    assert results[("zero_control", "control")] == (True, 10, 0, 0.0, 0, None, None, None)
    assert results[("zero_control", "flat")] == (False, 10, 0, 0.0, 0, None, None, None)
    uplift, z, p_value = results[("zero_control", "treatment")][5:]
    expected_z, expected_p = two_proportion_test(3, 10, 0, 10)
    assert uplift is None
    assert z == pytest.approx(expected_z, rel=1e-12)
    assert p_value == pytest.approx(expected_p, rel=1e-9)

    assert set(results) == {
        ("checkout_button", "control"),
        ("checkout_button", "treatment"),
        ("pricing_page", "control"),
        ("pricing_page", "treatment"),
        ("pricing_page", "big_win"),
        ("no_control", "a"),
        ("no_control", "b"),
        ("zero_control", "control"),
        ("zero_control", "treatment"),
        ("zero_control", "flat"),
    }
    # The second run rebuilt its own tenant only.
    assert experiment_results(postgres, other) == {
        ("hero", "control"): (True, 1, 0, 0.0, 0, None, None, None)
    }
