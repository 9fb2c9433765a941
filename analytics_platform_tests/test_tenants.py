"""Tenant lifecycle, migrations, the registry sensor and isolation, on real Postgres and chDB."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    build_sensor_context,
)
from psycopg import sql

from analytics_platform.partitions import parse_tenant_day, tenants_partitions
from analytics_platform.sensors.tenant_registry import tenant_registry_sensor
from analytics_platform.tenants.grants import password_hash, tenant_reader_sql
from analytics_platform.tenants.ids import InvalidTenantId
from analytics_platform.tenants.lifecycle import (
    ConfirmationMismatch,
    audit_trail,
    deprovision_tenant,
    provision_tenant,
    resume_tenant,
    suspend_tenant,
)
from analytics_platform.tenants.migrations import (
    Migration,
    MigrationError,
    available_migrations,
    migrate_tenant,
    tenants_to_migrate,
)
from analytics_platform.tenants.registry import (
    TenantStateError,
    get_tenant,
    list_tenants,
    register_tenant,
)
from analytics_platform_tests.events import day_file, tracker_event, worked_example, write_lines
from analytics_platform_tests.test_pipeline import run_pipeline

DAY = dt.date(2026, 11, 4)
BAD_IDS = ["acme; drop table x", "../etc", "ACME", "é", "a" * 200, "", "a", "1acme", "acme-eu"]


def clickhouse_databases(clickhouse) -> set[str]:
    with clickhouse.session() as session:
        return set(session.query_df("SELECT name FROM system.databases")["name"])


def clickhouse_tables(clickhouse, database: str) -> set[str]:
    with clickhouse.session() as session:
        frame = session.query_df(f"SELECT name FROM system.tables WHERE database = '{database}'")
    return set(frame["name"])


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_tenant_ids_are_refused_everywhere_with_the_rule(bad, postgres, clickhouse):
    with pytest.raises(InvalidTenantId, match="a lowercase letter, then lowercase letters"):
        register_tenant(postgres, bad, actor="test")
    with pytest.raises(InvalidTenantId):
        clickhouse.database_for(bad)
    with pytest.raises(InvalidTenantId):
        parse_tenant_day(f"2026-11-01|{bad}")
    with pytest.raises(InvalidTenantId):
        postgres.replace_slice("raw.file_events", bad, [DAY], [], ["event_id"])
    with postgres.connect() as conn:
        assert conn.execute(
            "SELECT count(*) FROM platform.tenants WHERE tenant_id = %s", (bad,)
        ).fetchone() == (0,)


def test_lifecycle_moves_through_every_status_and_audits_each_step(
    postgres, clickhouse, instance, new_tenant
):
    tenant = new_tenant("life")
    registered = register_tenant(
        postgres,
        tenant,
        "Life Inc",
        api_base_url="https://api.life.example",
        api_token_env="LIFE_API_TOKEN",
        retention_days=90,
        actor="test",
    )
    assert (registered.status, registered.retention_days) == ("pending", 90)
    assert registered.api_token_env == "LIFE_API_TOKEN"
    assert not instance.has_dynamic_partition("tenants", tenant)
    assert f"tenant_{tenant}" not in clickhouse_databases(clickhouse)

    report = provision_tenant(postgres, clickhouse, instance, tenant, actor="test")
    shipped = [m.version for m in available_migrations()]
    assert report.applied == shipped and get_tenant(postgres, tenant).status == "active"
    assert "fct_daily_metrics" in clickhouse_tables(clickhouse, f"tenant_{tenant}")
    assert instance.has_dynamic_partition("tenants", tenant)

    suspend_tenant(postgres, instance, tenant, actor="test")
    suspended = get_tenant(postgres, tenant)
    assert suspended.status == "suspended" and not suspended.runs_automatically
    assert instance.has_dynamic_partition("tenants", tenant)  # its history stays visible
    with pytest.raises(TenantStateError, match="is suspended"):
        suspend_tenant(postgres, instance, tenant, actor="test")
    with pytest.raises(TenantStateError, match="pending or active"):
        provision_tenant(postgres, clickhouse, instance, tenant, actor="test")

    assert resume_tenant(postgres, clickhouse, instance, tenant, actor="test").applied == []
    assert get_tenant(postgres, tenant).runs_automatically

    with pytest.raises(ConfirmationMismatch, match="repeating the tenant id"):
        deprovision_tenant(postgres, clickhouse, instance, tenant, confirm="yes", actor="test")
    assert get_tenant(postgres, tenant).status == "active"
    deprovision_tenant(postgres, clickhouse, instance, tenant, confirm=tenant, actor="ops")
    assert get_tenant(postgres, tenant).status == "deprovisioned"
    assert f"tenant_{tenant}" not in clickhouse_databases(clickhouse)
    assert not instance.has_dynamic_partition("tenants", tenant)

    trail = audit_trail(postgres, tenant)
    assert [action for action, _, _ in trail] == [
        "registered",
        "active",
        "suspended",
        "active",
        "deprovisioned",
    ]
    assert trail[-1][1] == "ops" and trail[-1][2]["database_dropped"] == f"tenant_{tenant}"

    # The id can be registered again; it starts over as pending.
    assert register_tenant(postgres, tenant, actor="test").status == "pending"


def test_migrations_apply_once_in_order_and_refuse_an_edited_file(postgres, clickhouse, new_tenant):
    tenant = new_tenant("mig")
    first = [
        Migration(
            1,
            "events",
            "CREATE TABLE IF NOT EXISTS {database}.events (id UInt64) "
            "ENGINE = MergeTree ORDER BY id",
        ),
        Migration(
            2,
            "more",
            "ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS n UInt8;\n"
            "CREATE TABLE IF NOT EXISTS {database}.other (id UInt64) ENGINE = Memory;",
        ),
    ]
    with clickhouse.session() as session:
        assert migrate_tenant(postgres, clickhouse, session, tenant, first).applied == [1, 2]
        again = migrate_tenant(postgres, clickhouse, session, tenant, first)
        assert (again.applied, again.already_applied) == ([], [1, 2])
        columns = session.query_df(f"DESCRIBE TABLE `tenant_{tenant}`.events")["name"].tolist()
        assert columns == ["id", "n"]

        edited = [first[0], Migration(2, "more", first[1].sql.replace("UInt8", "UInt16"))]
        with pytest.raises(MigrationError, match=r"0002_more\.sql changed after it was applied"):
            migrate_tenant(postgres, clickhouse, session, tenant, edited)

        added = [*first, Migration(3, "third", "SELECT 1")]
        assert migrate_tenant(postgres, clickhouse, session, tenant, added).applied == [3]
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT version, name FROM platform.schema_versions WHERE tenant_id = %s "
            "ORDER BY version",
            (tenant,),
        ).fetchall()
    assert rows == [(1, "events"), (2, "more"), (3, "third")]


def test_serving_finds_in_one_query_the_tenants_a_migration_is_missing_or_edited_for(
    postgres, clickhouse, new_tenant
):
    current, fresh, edited = new_tenant("cur"), new_tenant("new"), new_tenant("edit")
    with clickhouse.session() as session:
        for tenant in (current, edited):
            migrate_tenant(postgres, clickhouse, session, tenant)
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            "UPDATE platform.schema_versions SET checksum = 'edited' "
            "WHERE tenant_id = %s AND version = 1",
            (edited,),
        )
        assert tenants_to_migrate(conn, [current, fresh, edited]) == [fresh, edited]
    # What it returns is what migrate_tenant would act on: the fresh tenant migrates, the
    # edited one is refused.
    with clickhouse.session() as session:
        assert migrate_tenant(postgres, clickhouse, session, fresh).applied
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate_tenant(postgres, clickhouse, session, edited)
    with postgres.connect() as conn:
        assert tenants_to_migrate(conn, [current, fresh]) == []


def test_migrate_tenants_job_twice_applies_once(
    platform_env, postgres, clickhouse, instance, new_tenant
):
    from analytics_platform.definitions import defs

    tenant = new_tenant("job")
    register_tenant(postgres, tenant, actor="test")
    provision_tenant(postgres, clickhouse, instance, tenant, actor="test")
    with postgres.transaction() as conn:  # as if the migrations were new
        conn.execute("DELETE FROM platform.schema_versions WHERE tenant_id = %s", (tenant,))

    def recorded():
        with postgres.connect() as conn:
            return conn.execute(
                "SELECT version, applied_at FROM platform.schema_versions WHERE tenant_id = %s",
                (tenant,),
            ).fetchall()

    job = defs.resolve_job_def("migrate_tenants")
    assert job.execute_in_process(instance=instance).success
    after_first = recorded()
    assert sorted(v for v, _ in after_first) == [m.version for m in available_migrations()]
    assert job.execute_in_process(instance=instance).success
    assert recorded() == after_first


def test_registry_sensor_mirrors_the_registry_and_provisions_pending_tenants(
    postgres, instance, new_tenant
):
    active, pending, gone, suspended = (new_tenant("sens") for _ in range(4))
    with postgres.transaction() as conn:  # changes made by SQL, behind the CLI's back
        conn.cursor().executemany(
            "INSERT INTO platform.tenants (tenant_id, display_name, status) VALUES (%s, %s, %s)",
            [
                (active, "A", "active"),
                (pending, "P", "pending"),
                (gone, "G", "deprovisioned"),
                (suspended, "S", "suspended"),
            ],
        )
    stray = new_tenant("stray")  # a partition this registry does not know: kept
    instance.add_dynamic_partitions("tenants", [gone, stray])

    context = build_sensor_context(instance=instance, resources={"postgres": postgres})
    result = tenant_registry_sensor(context)
    assert isinstance(result, SensorResult)
    adds = [
        r for r in result.dynamic_partitions_requests if isinstance(r, AddDynamicPartitionsRequest)
    ]
    deletes = [
        r
        for r in result.dynamic_partitions_requests
        if isinstance(r, DeleteDynamicPartitionsRequest)
    ]
    added = {key for r in adds for key in r.partition_keys}
    assert {active, suspended} <= added and not {pending, gone} & added
    assert {gone} == {key for r in deletes for key in r.partition_keys}
    runs = [r for r in result.run_requests if r.tags["tenant"] == pending]
    assert len(runs) == 1
    assert runs[0].run_config["ops"]["provision_tenant_op"]["config"]["tenant_id"] == pending
    assert runs[0].run_key.startswith(f"provision:{pending}:")

    # Once applied, the partitions are the active and suspended tenants, and the stray.
    for request in result.dynamic_partitions_requests:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    expected = {t.tenant_id for t in list_tenants(postgres, ["active", "suspended"])}
    assert set(instance.get_dynamic_partitions(tenants_partitions.name)) == expected | {stray}

    with postgres.transaction() as conn:
        conn.execute(
            "UPDATE platform.tenants SET status = 'active' WHERE tenant_id = %s", (pending,)
        )
    settled = tenant_registry_sensor(
        build_sensor_context(instance=instance, resources={"postgres": postgres})
    )
    assert settled.dynamic_partitions_requests == [tenants_partitions.build_add_request([pending])]


def layer_fingerprint(postgres, clickhouse, tenant: str) -> dict[str, list]:
    """Every row of the tenant in every warehouse table and its ClickHouse database, as text."""
    fingerprint = {}
    with postgres.connect() as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.columns "
            "WHERE column_name = 'tenant_id' "
            "AND table_schema IN ('raw', 'staging', 'marts', 'platform') ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            fingerprint[f"{schema}.{table}"] = [
                row[0]
                for row in conn.execute(
                    sql.SQL("SELECT t::text FROM {} t WHERE tenant_id = %s ORDER BY 1").format(
                        sql.Identifier(schema, table)
                    ),
                    (tenant,),
                )
            ]
    with clickhouse.session() as session:
        frame = session.query_df(
            f"SELECT * FROM `tenant_{tenant}`.fct_daily_metrics ORDER BY event_date"
        )
    fingerprint["clickhouse"] = frame.astype(str).values.tolist()
    return fingerprint


def test_tenant_b_cannot_touch_tenant_a(
    platform_env, landing_dir, postgres, clickhouse, instance, new_tenant
):
    from analytics_platform.definitions import defs

    a, b = new_tenant("iso_a"), new_tenant("iso_b")
    for tenant in (a, b):
        register_tenant(postgres, tenant, actor="test")
        provision_tenant(postgres, clickhouse, instance, tenant, actor="test")
        write_lines(day_file(landing_dir, tenant, DAY), worked_example(DAY))
        assert run_pipeline(instance, partition_key=f"{DAY}|{tenant}").success
    before = layer_fingerprint(postgres, clickhouse, a)
    assert before["raw.file_events"] and before["marts.fct_daily_metrics"] and before["clickhouse"]

    # B re-materialized with different data.
    write_lines(
        day_file(landing_dir, b, DAY),
        [tracker_event("b1", "vb", f"{DAY}T08:00:00Z"), tracker_event("b2", "vb", f"{DAY}T08:01Z")],
    )
    assert run_pipeline(instance, partition_key=f"{DAY}|{b}").success
    assert layer_fingerprint(postgres, clickhouse, a) == before

    # B deprovisioned through the job: refused without the confirmation, then done.
    job = defs.resolve_job_def("deprovision_tenant")

    def config(confirm):
        return {
            "ops": {
                "deprovision_tenant_op": {"config": {"tenant_id": b, "confirm_tenant_id": confirm}}
            }
        }

    refused = job.execute_in_process(run_config=config(a), instance=instance, raise_on_error=False)
    assert not refused.success
    assert get_tenant(postgres, b).status == "active"
    assert job.execute_in_process(run_config=config(b), instance=instance).success

    assert layer_fingerprint(postgres, clickhouse, a) == before
    with postgres.connect() as conn:
        for table in (
            "raw.file_events",
            "staging.stg_events",
            "marts.fct_daily_metrics",
            "platform.quarantine",
            "platform.schema_versions",
            "platform.landing_files",
        ):
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(
                    sql.Identifier(*table.split("."))
                ),
                (b,),
            ).fetchone()[0]
            assert count == 0, table
    assert f"tenant_{b}" not in clickhouse_databases(clickhouse)
    assert f"tenant_{a}" in clickhouse_databases(clickhouse)
    assert [action for action, _, _ in audit_trail(postgres, b)][-1] == "deprovisioned"


def test_clickhouse_reader_sql_grants_one_database_and_parses(clickhouse, new_tenant):
    tenant = new_tenant("read")
    digest = password_hash("correct horse battery")
    statements = tenant_reader_sql(clickhouse, tenant, digest)
    assert f"GRANT SELECT ON `tenant_{tenant}`.* TO `reader_{tenant}`" in statements
    assert f"REVOKE ALL ON *.* FROM `reader_{tenant}`" in statements
    assert all("correct horse" not in s for s in statements)
    assert sum("tenant_" in s for s in statements) == 3  # only its own database, nowhere else
    # The real ClickHouse parser accepts every statement (chDB cannot run user management).
    with clickhouse.session() as session:
        for statement in statements:
            session.query_df(f"EXPLAIN AST {statement}")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        tenant_reader_sql(clickhouse, tenant, "hunter2")
