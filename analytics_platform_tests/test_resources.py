"""The resource layer against real Postgres and real chDB."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analytics_platform.resources.clickhouse import ClickHouseLockTimeout, ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.migrations import migrate_tenant

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
COLUMNS = ("tenant_id", "event_date", "value")


@pytest.fixture
def slice_table(postgres: PostgresResource) -> Iterator[str]:
    """A table of the test's own in the session's warehouse, dropped after it: a table
    with a tenant_id left in `platform` would be one more table a tenant move copies."""
    name = f"platform.slice_test_{time.time_ns()}"
    with postgres.transaction() as conn:
        conn.execute(f"CREATE TABLE {name} (tenant_id text, event_date date, value int)")
    yield name
    with postgres.transaction() as conn:
        conn.execute(f"DROP TABLE {name}")


def rows_of(postgres: PostgresResource, table: str) -> list[tuple]:
    with postgres.connect() as conn:
        return conn.execute(
            f"SELECT * FROM {table} ORDER BY tenant_id, event_date, value"
        ).fetchall()


def test_replace_slice_swaps_only_the_named_tenant_days(postgres, slice_table):
    postgres.replace_slice(
        slice_table,
        "acme",
        [D1, D2],
        [("acme", D1, 1), ("acme", D2, 2)],
        COLUMNS,
        date_column="event_date",
    )
    postgres.replace_slice(
        slice_table, "globex", [D1], [("globex", D1, 3)], COLUMNS, date_column="event_date"
    )

    written = postgres.replace_slice(
        slice_table,
        "acme",
        [D1],
        [("acme", D1, 10), ("acme", D1, 11)],
        COLUMNS,
        date_column="event_date",
    )

    assert written == 2
    assert rows_of(postgres, slice_table) == [
        ("acme", D1, 10),
        ("acme", D1, 11),
        ("acme", D2, 2),
        ("globex", D1, 3),
    ]


def test_a_load_that_fails_half_way_leaves_the_old_slice(postgres, slice_table):
    postgres.replace_slice(
        slice_table, "acme", [D1], [("acme", D1, 1)], COLUMNS, date_column="event_date"
    )

    def rows_then_failure():
        yield ("acme", D1, 2)
        yield ("acme", D1, 3)
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        postgres.replace_slice(
            slice_table, "acme", [D1], rows_then_failure(), COLUMNS, date_column="event_date"
        )
    assert rows_of(postgres, slice_table) == [("acme", D1, 1)]


def test_replace_slice_refuses_a_bad_tenant_before_touching_sql(postgres, slice_table):
    with pytest.raises(ValueError, match="invalid tenant id"):
        postgres.replace_slice(
            slice_table, "x'; drop table y; --", [D1], [], COLUMNS, date_column="event_date"
        )


def test_libpq_env_carries_the_url_parts():
    env = PostgresResource(url="postgresql://ana:s3cret@db.internal:6543/warehouse").libpq_env()
    assert env == {
        "PGHOST": "db.internal",
        "PGPORT": "6543",
        "PGUSER": "ana",
        "PGPASSWORD": "s3cret",
        "PGDATABASE": "warehouse",
    }


def daily(tenant: str, rows: list[tuple[dt.date, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenant_id": [tenant] * len(rows),
            "event_date": pd.to_datetime([d for d, _ in rows]),
            "visitors": [v for _, v in rows],
            "sessions": [v for _, v in rows],
            "page_views": [v for _, v in rows],
            "events": [v for _, v in rows],
            "_loaded_at": [pd.Timestamp("2026-11-24", tz="UTC")] * len(rows),
        }
    ).astype(
        {"visitors": "uint64", "sessions": "uint64", "page_views": "uint64", "events": "uint64"}
    )


def served(clickhouse: ClickHouseResource, tenant: str) -> list[tuple[str, int]]:
    with clickhouse.session() as session:
        frame = session.query_df(
            f"SELECT toString(event_date) AS d, visitors FROM `{clickhouse.database_for(tenant)}`"
            ".fct_daily_metrics ORDER BY d, visitors"
        )
    return [(d, int(v)) for d, v in frame.itertuples(index=False)]


def scratch_tables(session, clickhouse: ClickHouseResource, tenant: str) -> list[str]:
    """Tables left in the scratch database, or named like a scratch in the tenant's."""
    frame = session.query_df(
        "SELECT name FROM system.tables WHERE database = "
        f"'{clickhouse.scratch_database}' OR (database = '{clickhouse.database_for(tenant)}' "
        "AND name LIKE '\\_load\\_%')"
    )
    return list(frame["name"])


def test_clickhouse_partitions_are_replaced_not_appended(postgres, clickhouse, new_tenant):
    tenant, other = new_tenant("ch"), new_tenant("ch")
    with clickhouse.session() as session:
        for t in (tenant, other):
            migrate_tenant(postgres, clickhouse, session, t)
        clickhouse.replace_partitions(
            session, other, "fct_daily_metrics", daily(other, [(D1, 7)]), [D1]
        )
        clickhouse.replace_partitions(
            session, tenant, "fct_daily_metrics", daily(tenant, [(D1, 1), (D2, 2)]), [D1, D2]
        )
        # Again with new numbers for D1 and nothing for D2: D1 replaced, D2 emptied.
        clickhouse.replace_partitions(
            session, tenant, "fct_daily_metrics", daily(tenant, [(D1, 5)]), [D1, D2]
        )
        clickhouse.replace_partitions(
            session, tenant, "fct_daily_metrics", daily(tenant, [(D1, 5)]), [D1, D2]
        )
        leftovers = scratch_tables(session, clickhouse, tenant)
    assert served(clickhouse, tenant) == [("2026-11-01", 5)]
    assert served(clickhouse, other) == [("2026-11-01", 7)]
    assert leftovers == []


def test_one_scratch_serves_many_tenants_each_only_its_own_rows(postgres, clickhouse, new_tenant):
    first, second, third = new_tenant("many"), new_tenant("many"), new_tenant("many")
    with clickhouse.session() as session:
        for t in (first, second, third):
            migrate_tenant(postgres, clickhouse, session, t)
        clickhouse.replace_partitions(
            session, third, "fct_daily_metrics", daily(third, [(D1, 9), (D2, 9)]), [D1, D2]
        )
        with clickhouse.scratch(session, "fct_daily_metrics", like_tenant=first) as scratch:
            scratch.replace_partitions(first, daily(first, [(D1, 1), (D2, 2)]), [D1, D2])
            # Nothing for the second tenant on D1: its day stays empty, it gets nothing of
            # the first tenant's rows that went through the same scratch.
            scratch.replace_partitions(second, daily(second, [(D2, 3)]), [D1, D2])
            # The third has no rows at all for the run's days: both are emptied.
            scratch.replace_partitions(third, daily(third, []), [D1, D2])
            left_in_scratch = session.query_df(f"SELECT count() AS n FROM {scratch.qualified}")
        leftovers = scratch_tables(session, clickhouse, first)
    assert served(clickhouse, first) == [("2026-11-01", 1), ("2026-11-02", 2)]
    assert served(clickhouse, second) == [("2026-11-02", 3)]
    assert served(clickhouse, third) == []
    assert int(left_in_scratch["n"].iloc[0]) == 0
    assert leftovers == []


def test_a_second_process_gets_a_clear_timeout_on_embedded_clickhouse(tmp_path: Path):
    data_path = tmp_path / "clickhouse"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from analytics_platform.resources.clickhouse import ClickHouseResource
                with ClickHouseResource(url="chdb://{data_path}").session():
                    print("holding", flush=True)
                    time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiting = ClickHouseResource(url=f"chdb://{data_path}", lock_timeout_seconds=0.5)
        started = time.monotonic()
        with (
            pytest.raises(ClickHouseLockTimeout, match="CLICKHOUSE_URL") as caught,
            waiting.session(),
        ):
            pass
        assert str(data_path) in str(caught.value)
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


def test_clickhouse_tables_are_replaced_whole_per_tenant(postgres, clickhouse, new_tenant):
    tenant, other = new_tenant("whole"), new_tenant("whole")

    def visitors(owner, ids):
        return pd.DataFrame(
            {
                "tenant_id": [owner] * len(ids),
                "visitor_id": ids,
                "first_seen_at": [pd.Timestamp("2026-11-01T10:00:00Z")] * len(ids),
                "last_seen_at": [pd.Timestamp("2026-11-02T10:00:00Z")] * len(ids),
                "first_touch_channel": ["direct"] * len(ids),
                "sessions": [1] * len(ids),
                "revenue": [0.0] * len(ids),
                "_loaded_at": [pd.Timestamp("2026-11-24", tz="UTC")] * len(ids),
            }
        )

    with clickhouse.session() as session:
        for t in (tenant, other):
            migrate_tenant(postgres, clickhouse, session, t)
        clickhouse.replace_table(session, other, "dim_visitors", visitors(other, ["keep"]))
        clickhouse.replace_table(session, tenant, "dim_visitors", visitors(tenant, ["a", "b"]))
        clickhouse.replace_table(session, tenant, "dim_visitors", visitors(tenant, ["c"]))

        def ids(t):
            frame = session.query_df(
                f"SELECT visitor_id FROM `{clickhouse.database_for(t)}`.dim_visitors "
                "ORDER BY visitor_id"
            )
            return list(frame["visitor_id"])

        assert ids(tenant) == ["c"]
        assert ids(other) == ["keep"]
        # A tenant with no rows left gets an empty table, not its old rows.
        with clickhouse.scratch(session, "dim_visitors", like_tenant=tenant) as scratch:
            scratch.replace_table(other, visitors(other, []))
        assert ids(other) == []
        assert ids(tenant) == ["c"]
        assert scratch_tables(session, clickhouse, tenant) == []
