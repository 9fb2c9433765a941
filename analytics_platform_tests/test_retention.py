"""Raw retention deletes exactly the rows past each tenant's retention, and nothing else."""

from __future__ import annotations

import datetime as dt

from dagster import build_schedule_context

from analytics_platform.retention import apply_raw_retention, raw_retention_schedule
from analytics_platform.tenants.registry import register_tenant

AS_OF = dt.date(2026, 11, 20)


def test_rows_older_than_the_tenants_retention_go_and_the_rest_stays(postgres, new_tenant):
    short, long = new_tenant("ret"), new_tenant("ret")
    register_tenant(postgres, short, retention_days=10, actor="test")
    register_tenant(postgres, long, retention_days=400, actor="test")
    days = [AS_OF - dt.timedelta(days=n) for n in (11, 10, 1)]
    with postgres.transaction() as conn:
        for tenant in (short, long):
            for day in days:
                conn.execute(
                    "INSERT INTO raw.file_events (event_id, tenant_id, event_type, occurred_at, "
                    "visitor_id, _partition_date, _source, _source_line) "
                    "VALUES (%s, %s, 'page_view', %s, 'v', %s, 'f.jsonl', 1)",
                    (f"e{day}", tenant, f"{day}T12:00:00Z", day),
                )
                conn.execute(
                    "INSERT INTO platform.quarantine (tenant_id, partition_date, layer, source, "
                    "source_line, reason, detail, raw_text) "
                    "VALUES (%s, %s, 'raw_file_events', 'f.jsonl', 2, 'invalid_json', '', '{')",
                    (tenant, day),
                )

    deleted = apply_raw_retention(postgres, AS_OF)
    assert deleted["raw.file_events"] >= 1 and deleted["platform.quarantine"] >= 1

    def remaining(table, column, tenant):
        with postgres.connect() as conn:
            return [
                d
                for (d,) in conn.execute(
                    f"SELECT {column} FROM {table} WHERE tenant_id = %s ORDER BY 1", (tenant,)
                )
            ]

    # 10 days of retention keep the day exactly 10 days back; the 11th goes.
    assert remaining("raw.file_events", "_partition_date", short) == days[1:]
    assert remaining("platform.quarantine", "partition_date", short) == days[1:]
    assert remaining("raw.file_events", "_partition_date", long) == days
    assert apply_raw_retention(postgres, AS_OF)["raw.file_events"] == 0  # idempotent


def test_the_schedule_runs_daily_for_the_scheduled_day():
    context = build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone.utc)
    )
    request = raw_retention_schedule(context)
    assert request.run_key == "retention:2026-11-21"
    config = request.run_config["ops"]["delete_expired_raw_rows"]["config"]
    assert config == {"as_of": "2026-11-21"}
