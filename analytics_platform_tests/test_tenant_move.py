"""A tenant moved to another shard keeps what cannot be rebuilt and rebuilds the rest."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import DagsterInstance

from analytics_platform.definitions import defs
from analytics_platform.partitions import range_tags
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.keys import create_key, list_keys
from analytics_platform.tenants.lifecycle import provision_tenant
from analytics_platform.tenants.move import MoveRefused, move_tenant
from analytics_platform.tenants.origins import add_origins, list_origins
from analytics_platform.tenants.registry import get_tenant, register_tenant
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_pipeline import run_pipeline

DAYS = [dt.date(2026, 10, 5), dt.date(2026, 10, 6)]
# What identifies a row apart from the run that loaded it.
RAW = "SELECT event_id, occurred_at, visitor_id, _source, _source_line FROM raw.file_events"
QUARANTINE = "SELECT source, source_line, reason, raw_text FROM platform.quarantine"
MARTS = (
    "SELECT event_date, site_id, visitors, sessions, page_views, events "
    "FROM marts.fct_daily_metrics"
)


def rows(postgres: PostgresResource, query: str, tenant: str) -> list[tuple]:
    with postgres.connect() as conn:
        return sorted(conn.execute(f"{query} WHERE tenant_id = %s", (tenant,)).fetchall())


def served(clickhouse: ClickHouseResource, tenant: str) -> list[tuple]:
    database = clickhouse.database_for(tenant)
    with clickhouse.session() as session:
        frame = session.query_df(
            f"SELECT toString(event_date) AS day, events FROM `{database}`.fct_daily_metrics"
        )
    return sorted(frame.itertuples(index=False, name=None))


@pytest.fixture
def shard_b(fresh_database, clickhouse):
    """Another deployment's stores: its own warehouse and instance; ClickHouse databases on
    the same server under the shard's own prefix."""
    postgres = PostgresResource(url=fresh_database("ap_test_shard_b"))
    postgres.ensure_warehouse()
    target_clickhouse = ClickHouseResource(
        url=clickhouse.url, database_prefix="shard_b_", lock_timeout_seconds=60
    )
    with DagsterInstance.ephemeral() as instance:
        yield postgres, target_clickhouse, instance


def test_a_tenant_moves_to_another_shard_with_nothing_lost(
    platform_env, landing_dir, postgres, clickhouse, instance, shard_b, new_tenant, tmp_path
):
    tenant = new_tenant("mv")
    register_tenant(postgres, tenant, actor="test")
    provision_tenant(postgres, clickhouse, instance, tenant, actor="test")
    key, _secret = create_key(postgres, tenant, actor="test")
    add_origins(postgres, tenant, ["https://shop.example"], actor="test")
    for day in DAYS:
        write_lines(
            day_file(landing_dir, tenant, day),
            [
                tracker_event(f"a-{day}", "v1", f"{day}T09:00:00Z"),
                tracker_event(f"b-{day}", "v2", f"{day}T10:00:00Z", session="s2"),
                '{"eventId": "broken",',  # quarantined, and must move with the rest
            ],
        )
        assert run_pipeline(instance, partition_key=f"{day}|{tenant}").success
    before = {q: rows(postgres, q, tenant) for q in (RAW, QUARANTINE, MARTS)}
    assert len(before[RAW]) == 4 and len(before[QUARANTINE]) == 2 and before[MARTS]

    target_pg, target_clickhouse, target_instance = shard_b
    target_landing = tmp_path / "landing_b"
    report = move_tenant(
        tenant,
        source=(postgres, instance),
        target=shard_b,
        landing=(landing_dir, target_landing),
        actor="test",
    )
    assert report.days == (DAYS[0], DAYS[-1])
    assert report.rows["raw.file_events"] == 4 and report.rows["platform.quarantine"] == 2
    assert get_tenant(postgres, tenant).status == "suspended"  # until it is deprovisioned
    assert get_tenant(target_pg, tenant).status == "active"
    assert tenant in target_instance.get_dynamic_partitions("tenants")
    # Raw rows, quarantine, keys (hashes: the same secret works) and origins all moved.
    assert rows(target_pg, RAW, tenant) == before[RAW]
    assert rows(target_pg, QUARANTINE, tenant) == before[QUARANTINE]
    assert [k.key_id for k in list_keys(target_pg, tenant)] == [key.key_id]
    assert [o.origin for o in list_origins(target_pg, tenant)] == ["https://shop.example"]
    assert report.landing_moved and (target_landing / tenant).is_dir()
    assert not (landing_dir / tenant).exists()

    # The target rebuilds the marts and serving from raw (its dbt creates them in its own
    # warehouse): the same numbers as the source.
    rebuild = defs.resolve_job_def("rebuild_tenant_days").execute_in_process(
        instance=target_instance,
        tags=range_tags([tenant], DAYS),
        run_config={
            "resources": {
                "postgres": {"config": {"url": target_pg.url}},
                "clickhouse": {
                    "config": {"url": target_clickhouse.url, "database_prefix": "shard_b_"}
                },
            }
        },
    )
    assert rebuild.success
    assert rows(target_pg, MARTS, tenant) == before[MARTS]
    assert served(target_clickhouse, tenant) == served(clickhouse, tenant)


def test_a_move_is_refused_when_the_target_already_has_the_tenant(
    postgres, clickhouse, instance, shard_b, new_tenant
):
    tenant = new_tenant("mv")
    register_tenant(postgres, tenant, actor="test")
    target_pg = shard_b[0]
    register_tenant(target_pg, tenant, actor="test")
    with pytest.raises(MoveRefused, match="already has a tenant"):
        move_tenant(tenant, source=(postgres, instance), target=shard_b, actor="test")
    assert get_tenant(postgres, tenant).status == "pending"  # nothing changed on the source


@pytest.mark.parametrize(
    ("source_ddl", "target_ddl", "named"),
    [
        (
            "CREATE TABLE platform.move_test_only_here (tenant_id text, note text)",
            None,
            r"platform\.move_test_only_here \(no such table\)",
        ),
        (None, "ALTER TABLE platform.tenants DROP COLUMN display_name", "columns display_name"),
    ],
    ids=["table only in the source", "column missing in the target"],
)
def test_a_move_is_refused_before_the_source_changes_when_the_target_lacks_its_schema(
    postgres, clickhouse, instance, shard_b, new_tenant, source_ddl, target_ddl, named
):
    tenant = new_tenant("mv")
    register_tenant(postgres, tenant, actor="test")
    provision_tenant(postgres, clickhouse, instance, tenant, actor="test")
    target_pg = shard_b[0]
    if target_ddl:
        with target_pg.connect() as conn:
            conn.execute(target_ddl)
            conn.commit()
    if source_ddl:
        with postgres.connect() as conn:
            conn.execute(source_ddl)
            conn.commit()
    try:
        with pytest.raises(MoveRefused, match=named):
            move_tenant(tenant, source=(postgres, instance), target=shard_b, actor="test")
    finally:
        if source_ddl:  # the session's warehouse is shared by later tests
            with postgres.connect() as conn:
                conn.execute("DROP TABLE platform.move_test_only_here")
                conn.commit()
    assert get_tenant(postgres, tenant).status == "active"  # not suspended, nothing read
    with target_pg.connect() as conn:
        assert not conn.execute(
            "SELECT 1 FROM platform.tenants WHERE tenant_id = %s", (tenant,)
        ).fetchone()
