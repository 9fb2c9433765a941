"""Schema drift: a field new to a tenant is kept in properties and reported once, as a warning."""

from __future__ import annotations

import datetime as dt

from dagster import AssetCheckSeverity, AssetKey, AssetSelection

from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_pipeline import materialize_layer

D1, D2 = dt.date(2026, 11, 8), dt.date(2026, 11, 9)
RAW_ONLY = AssetSelection.assets(AssetKey("raw_file_events"))


def drift_check(result):
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_new_fields"
    ]
    return evaluation


def test_new_fields_warn_once_per_tenant_and_stay_in_properties(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant, other = new_tenant("drift"), new_tenant("drift")
    instance.add_dynamic_partitions("tenants", [tenant, other])
    write_lines(
        day_file(landing_dir, tenant, D1),
        [tracker_event("e1", "v1", f"{D1}T10:00:00Z", screen="1440x900")],
    )
    first = drift_check(materialize_layer(RAW_ONLY, tenant, D1, resources, instance))
    assert not first.passed and first.severity == AssetCheckSeverity.WARN
    assert first.metadata["new_fields"].value == {tenant: ["screen"]}

    again = drift_check(materialize_layer(RAW_ONLY, tenant, D1, resources, instance))
    assert again.passed  # known now, however often the day is rebuilt

    write_lines(
        day_file(landing_dir, tenant, D2),
        [tracker_event("e2", "v1", f"{D2}T10:00:00Z", screen="390x844", locale="de-CH")],
    )
    later = drift_check(materialize_layer(RAW_ONLY, tenant, D2, resources, instance))
    assert later.metadata["new_fields"].value == {tenant: ["locale"]}

    # Another tenant sending `screen` for the first time is new for that tenant.
    write_lines(
        day_file(landing_dir, other, D1),
        [tracker_event("e1", "w1", f"{D1}T10:00:00Z", screen="1x1")],
    )
    theirs = drift_check(materialize_layer(RAW_ONLY, other, D1, resources, instance))
    assert theirs.metadata["new_fields"].value == {other: ["screen"]}

    with postgres.connect() as conn:
        kept = conn.execute(
            "SELECT properties->>'locale' FROM raw.file_events WHERE tenant_id = %s "
            "AND event_id = 'e2'",
            (tenant,),
        ).fetchone()
        first_seen = conn.execute(
            "SELECT field, first_seen_date, first_seen_source FROM platform.tenant_fields "
            "WHERE tenant_id = %s ORDER BY field",
            (tenant,),
        ).fetchall()
    assert kept == ("de-CH",)
    assert first_seen == [
        ("locale", D2, f"{tenant}/{D2}/events.jsonl"),
        ("screen", D1, f"{tenant}/{D1}/events.jsonl"),
    ]


def test_the_collectors_receive_time_loads_into_its_column_and_is_no_drift(
    landing_dir, resources, instance, postgres, new_tenant
):
    tenant = new_tenant("recv")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(
        day_file(landing_dir, tenant, D1),
        [
            tracker_event("e1", "v1", f"{D1}T10:00:00Z", receivedAt=f"{D2}T07:00:00.250Z"),
            tracker_event("e2", "v1", f"{D1}T10:05:00Z", receivedAt="not a time"),
            tracker_event("e3", "v1", f"{D1}T10:06:00Z"),
        ],
    )
    (day_file(landing_dir, tenant, D1, "export.csv")).write_text(
        "event_id,event_type,occurred_at,visitor_id,received_at\n"
        f"c1,page_view,{D1}T11:00:00.000Z,v2,{D1}T11:00:01.500Z\n",
        encoding="utf-8",
    )
    result = materialize_layer(RAW_ONLY, tenant, D1, resources, instance)
    assert drift_check(result).passed  # receivedAt is the contract's, not a new field
    with postgres.connect() as conn:
        loaded = conn.execute(
            "SELECT event_id, received_at, properties FROM raw.file_events "
            "WHERE tenant_id = %s ORDER BY event_id",
            (tenant,),
        ).fetchall()
        quarantined = conn.execute(
            "SELECT reason, detail, raw_text FROM platform.quarantine WHERE tenant_id = %s",
            (tenant,),
        ).fetchall()
    utc = dt.timezone.utc
    assert [(event, at, props) for event, at, props in loaded] == [
        ("c1", dt.datetime(2026, 11, 8, 11, 0, 1, 500000, tzinfo=utc), {}),
        ("e1", dt.datetime(2026, 11, 9, 7, 0, 0, 250000, tzinfo=utc), {}),
        ("e3", None, {}),
    ]
    ((reason, detail, raw_text),) = quarantined
    assert reason == "bad_timestamp" and "received_at 'not a time'" in detail
    assert '"e2"' in raw_text
