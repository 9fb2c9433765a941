"""reprocess_quarantine: rows that now pass move to raw once; the rest stay quarantined."""

from __future__ import annotations

import datetime as dt

from dagster import AssetKey

from analytics_platform.partitions import (
    ASSET_PARTITION_RANGE_END_TAG as RANGE_END,
)
from analytics_platform.partitions import (
    ASSET_PARTITION_RANGE_START_TAG as RANGE_START,
)
from analytics_platform.sensors.replayed_days import rebuild_requests, replayed_days
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_pipeline import run_pipeline

DAY = dt.date(2026, 11, 6)
NEXT = DAY + dt.timedelta(days=1)


def quarantine(postgres, tenant):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT source_line, reason, reprocessed_at IS NOT NULL FROM platform.quarantine "
            "WHERE tenant_id = %s ORDER BY source_line",
            (tenant,),
        ).fetchall()


def raw_lines(postgres, tenant):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT _source_line, event_id FROM raw.file_events WHERE tenant_id = %s ORDER BY 1",
            (tenant,),
        ).fetchall()


def staged(postgres, tenant):
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT event_id FROM staging.stg_events WHERE tenant_id = %s ORDER BY 1", (tenant,)
        ).fetchall()
    return [row[0] for row in rows]


def test_rows_that_pass_after_a_setting_change_move_to_raw_exactly_once(
    platform_env, landing_dir, postgres, instance, new_tenant, monkeypatch
):
    from analytics_platform.definitions import defs

    tenant = new_tenant("rep")
    instance.add_dynamic_partitions("tenants", [tenant])
    write_lines(
        day_file(landing_dir, tenant, DAY),
        [
            tracker_event("ok", "v1", f"{DAY}T12:00:00Z"),
            tracker_event("late", "v1", f"{NEXT}T00:10:00Z"),  # 10 minutes after the day
            '{"eventId": "broken",',
            tracker_event("later", "v1", f"{NEXT}T03:00:00Z"),  # 3 hours after
        ],
    )
    assert run_pipeline(instance, partition_key=f"{DAY}|{tenant}").success
    assert raw_lines(postgres, tenant) == [(1, "ok")]
    assert quarantine(postgres, tenant) == [
        (2, "out_of_window", False),
        (3, "invalid_json", False),
        (4, "out_of_window", False),
    ]

    # The platform now accepts events up to 30 minutes outside their folder's day.
    job = defs.resolve_job_def("reprocess_quarantine")
    config = {"ops": {"reprocess_quarantined_rows": {"config": {"tenant_id": tenant}}}}
    resources = {
        "landing": {"config": {"root": str(landing_dir), "timestamp_tolerance_minutes": 30}}
    }
    result = job.execute_in_process(
        run_config={**config, "resources": resources}, instance=instance
    )
    assert result.success
    assert raw_lines(postgres, tenant) == [(1, "ok"), (2, "late")]
    assert quarantine(postgres, tenant) == [
        (2, "out_of_window", True),
        (3, "invalid_json", False),
        (4, "out_of_window", False),
    ]
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["examined"] == 3 and metadata["moved_to_raw"] == 1
    assert metadata["still_failing"] == {"out_of_window": 1, "unparseable": 1}
    assert metadata["tenant_days"] == [DAY.isoformat()]

    # Again: nothing left that passes, nothing loaded twice.
    assert job.execute_in_process(
        run_config={**config, "resources": resources}, instance=instance
    ).success
    assert raw_lines(postgres, tenant) == [(1, "ok"), (2, "late")]

    # raw_file_events is marked changed for that tenant-day, so the UI shows what to rebuild.
    replayed = instance.fetch_materializations(AssetKey("raw_file_events"), limit=1).records[0]
    assert replayed.run_id == result.run_id
    assert replayed.partition_key == f"{DAY}|{tenant}"

    # DAY is older than automation's window: replayed_days_sensor asks for its rebuild,
    # and that run (its checks on the same tolerance) brings the replayed event into
    # staging and the marts.
    (request,) = rebuild_requests(result.run_id, replayed_days(instance, result.run_id))
    assert request.partition_key == f"{DAY}|{tenant}"
    assert staged(postgres, tenant) == ["ok"]
    rebuild = defs.resolve_job_def("rebuild_tenant_days").execute_in_process(
        run_config={"resources": resources},
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
    )
    assert rebuild.success
    assert staged(postgres, tenant) == ["late", "ok"]
    with postgres.connect() as conn:
        events = conn.execute(
            "SELECT sum(events) FROM marts.fct_daily_metrics "
            "WHERE tenant_id = %s AND event_date = %s",
            (tenant, DAY),
        ).fetchone()[0]
    assert events == 2


def test_a_replay_is_rebuilt_in_one_run_per_stretch_of_consecutive_days():
    days = [dt.date(2026, 3, d) for d in (9, 2, 3, 4)] + [dt.date(2026, 4, 1)]
    requests = rebuild_requests("r1", {"acme": sorted(days), "globex": [dt.date(2026, 3, 3)]})
    covered = [
        (r.tags.get("tenant"), r.partition_key or (r.tags[RANGE_START], r.tags[RANGE_END]))
        for r in requests
    ]
    assert covered == [
        ("acme", ("2026-03-02|acme", "2026-03-04|acme")),
        ("acme", "2026-03-09|acme"),
        ("acme", "2026-04-01|acme"),
        ("globex", "2026-03-03|globex"),
    ]
    assert len({r.run_key for r in requests}) == 4
