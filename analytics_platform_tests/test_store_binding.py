"""The `tenants` partitions sync only from the warehouse the Dagster instance mirrors.

Two fresh warehouse databases and one Dagster instance: a process on the other
warehouse is refused by every path that adds or deletes partitions (lifecycle,
sensors, CLI), with a message naming both stores, and the partitions stay as
they were. A partition is only removed for a tenant the registry deprovisioned.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time

import pytest
from dagster import build_sensor_context, instance_for_test

from analytics_platform.partitions import tenants_partitions
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource, warehouse_ddl
from analytics_platform.sensors.landing import landing_file_sensor
from analytics_platform.sensors.tenant_registry import tenant_registry_sensor
from analytics_platform.tenants.lifecycle import deprovision_tenant, provision_tenant
from analytics_platform.tenants.registry import get_tenant, register_tenant, sync_tenant_partitions
from analytics_platform.tenants.store_binding import (
    StoreMismatch,
    bind_instance,
    read_binding,
    warehouse_id,
)
from analytics_platform_tests.cli_harness import BIN, cli_environment, run
from analytics_platform_tests.events import day_file, tracker_event, write_lines

DAY = dt.date(2026, 11, 4)


def _with_password(url: str, password: str) -> str:
    # The test server trusts local connections, so a password in the URL is never checked:
    # it is there to prove that no message prints it.
    return url.replace("://postgres@", f"://postgres:{password}@", 1)


def _insert(postgres: PostgresResource, rows: list[tuple[str, str]]) -> None:
    with postgres.transaction() as conn:  # registry rows as SQL or another service writes them
        conn.cursor().executemany(
            "INSERT INTO platform.tenants (tenant_id, display_name, status) VALUES (%s, %s, %s)",
            [(tenant, tenant, status) for tenant, status in rows],
        )


def _partitions(instance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(tenants_partitions.name))


@pytest.fixture
def two_warehouses(fresh_database) -> tuple[PostgresResource, PostgresResource]:
    first, second = (
        PostgresResource(url=_with_password(fresh_database("ap_test_wh"), f"pw-{name}-s3cret"))
        for name in ("a", "b")
    )
    first.ensure_warehouse()
    second.ensure_warehouse()
    return first, second


def _database_name(postgres: PostgresResource) -> str:
    return postgres.url.rsplit("/", 1)[1]


def test_each_warehouse_has_its_own_id_kept_across_migrations(two_warehouses):
    a, b = two_warehouses
    assert warehouse_id(a) != warehouse_id(b)
    first = warehouse_id(a)
    assert a.migrate_warehouse() is False  # already current
    with a.connect() as conn:  # the DDL applied again (a new version) keeps the row
        conn.execute(warehouse_ddl())
        assert conn.execute("SELECT count(*) FROM platform.warehouse_identity").fetchone()[0] == 1
    assert warehouse_id(a) == first


def test_another_warehouse_cannot_sync_add_or_delete_the_instances_partitions(
    two_warehouses, instance, clickhouse, landing_dir, new_tenant
):
    a, b = two_warehouses
    registered = [new_tenant("a") for _ in range(3)]
    _insert(a, [(t, "active") for t in registered])
    assert sync_tenant_partitions(a, instance).add == sorted(registered)
    assert read_binding(instance).warehouse_id == warehouse_id(a)
    before = _partitions(instance)

    other = new_tenant("b")
    _insert(b, [(other, "active")])
    pending = new_tenant("bp")
    register_tenant(b, pending, actor="test")
    with pytest.raises(StoreMismatch) as refused:
        sync_tenant_partitions(b, instance)
    message = str(refused.value)
    for named in (warehouse_id(a), warehouse_id(b), _database_name(a), _database_name(b)):
        assert named in message
    assert "pw-a-s3cret" not in message and "pw-b-s3cret" not in message
    assert "Point DATABASE_URL at the instance's warehouse" in message

    # The lifecycle refuses before it changes anything in warehouse B or ClickHouse.
    with pytest.raises(StoreMismatch, match="refusing to sync"):
        provision_tenant(b, clickhouse, instance, pending, actor="test")
    assert get_tenant(b, pending).status == "pending"
    with pytest.raises(StoreMismatch, match="refusing to sync"):
        deprovision_tenant(b, clickhouse, instance, other, confirm=other, actor="test")
    assert get_tenant(b, other).status == "active"

    # Both sensors too: the registry sensor's tick fails, the landing sensor adds nothing.
    with pytest.raises(StoreMismatch, match="refusing to sync"):
        tenant_registry_sensor(build_sensor_context(instance=instance, resources={"postgres": b}))
    landed = write_lines(
        day_file(landing_dir, other, DAY), [tracker_event("e1", "v1", f"{DAY}T10:00:00Z")]
    )
    settled = time.time_ns() - 120_000_000_000  # unchanged for two minutes: taken at once
    os.utime(landed, ns=(settled, settled))
    landing = LandingZoneResource(root=str(landing_dir))
    with pytest.raises(StoreMismatch, match="refusing to sync"):
        landing_file_sensor(
            build_sensor_context(instance=instance, resources={"postgres": b, "landing": landing})
        )
    assert _partitions(instance) == before

    # Warehouse A still syncs; a tenant it deprovisions loses its partition, nothing else.
    _insert(a, [(gone := new_tenant("gone"), "active")])
    sync_tenant_partitions(a, instance)
    with a.transaction() as conn:
        conn.execute(
            "UPDATE platform.tenants SET status = 'deprovisioned' WHERE tenant_id = %s", (gone,)
        )
    assert sync_tenant_partitions(a, instance).remove == [gone]
    assert _partitions(instance) == before


def test_an_instance_from_before_the_binding_is_not_claimed_by_a_stranger(
    two_warehouses, instance, new_tenant
):
    a, b = two_warehouses
    theirs = [new_tenant("old") for _ in range(20)]
    _insert(a, [(t, "active") for t in theirs])
    instance.add_dynamic_partitions(tenants_partitions.name, theirs)  # synced, never bound
    _insert(b, [(mine := new_tenant("new"), "active")])

    with pytest.raises(StoreMismatch, match="registered none of them") as refused:
        sync_tenant_partitions(b, instance)
    assert warehouse_id(b) in str(refused.value) and "pw-b-s3cret" not in str(refused.value)
    assert _partitions(instance) == sorted(theirs) and read_binding(instance) is None

    # The warehouse they belong to claims the instance as usual.
    assert sync_tenant_partitions(a, instance).add == []
    assert read_binding(instance).warehouse_id == warehouse_id(a)
    assert mine not in _partitions(instance)


def test_binding_to_a_replacement_warehouse_needs_its_id_and_deletes_nothing(
    two_warehouses, instance, new_tenant
):
    a, b = two_warehouses
    old = [new_tenant("old") for _ in range(2)]
    _insert(a, [(t, "active") for t in old])
    sync_tenant_partitions(a, instance)
    _insert(b, [(replacement := new_tenant("rep"), "active")])

    with pytest.raises(StoreMismatch, match="confirm with this warehouse's id"):
        bind_instance(b, instance, confirm=warehouse_id(a))
    assert read_binding(instance).warehouse_id == warehouse_id(a)

    bind_instance(b, instance, confirm=warehouse_id(b))
    sync = sync_tenant_partitions(b, instance)
    # The old warehouse's tenants are unknown to B, not deprovisioned: their partitions stay.
    assert sync.add == [replacement] and sync.remove == [] and sync.unregistered == sorted(old)
    assert _partitions(instance) == sorted([*old, replacement])


def test_only_tenants_the_registry_deprovisioned_lose_their_partition(
    two_warehouses, instance, new_tenant
):
    # A warehouse of its own: the session's shared one holds other modules' active tenants.
    postgres, _ = two_warehouses
    active, pending, suspended, gone, unknown = (new_tenant(s) for s in "apsgu")
    _insert(
        postgres,
        [
            (active, "active"),
            (pending, "pending"),
            (suspended, "suspended"),
            (gone, "deprovisioned"),
        ],
    )
    instance.add_dynamic_partitions(tenants_partitions.name, [pending, gone, unknown])

    sync = sync_tenant_partitions(postgres, instance)
    assert (sync.add, sync.remove, sync.unregistered) == (
        sorted([active, suspended]),
        [gone],
        [unknown],
    )
    assert _partitions(instance) == sorted([active, pending, suspended, unknown])
    assert not sync_tenant_partitions(postgres, instance)  # settled: nothing more to do


def test_tenants_add_on_another_warehouse_is_refused_and_changes_nothing(
    two_warehouses, fresh_database, clickhouse_url, landing_dir, tmp_path, new_tenant
):
    a, b = two_warehouses
    storage = fresh_database("ap_test_dagster")

    def cli(warehouse: PostgresResource, *args: str) -> subprocess.CompletedProcess:
        env = cli_environment(tmp_path, warehouse.url, storage, clickhouse_url, landing_dir)
        return run([str(BIN / "analytics-platform"), "tenants", *args], env, check=False)

    first = new_tenant("cli")
    added = cli(a, "add", first)
    assert added.returncode == 0, added.stderr
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": storage}}}) as inst:
        before = _partitions(inst)
    assert before == [first]

    second = new_tenant("cli")
    refused = cli(b, "add", second)
    assert refused.returncode == 1
    assert "refusing to sync" in refused.stderr
    for named in (warehouse_id(a), warehouse_id(b), _database_name(a), _database_name(b)):
        assert named in refused.stderr
    assert "s3cret" not in refused.stderr + refused.stdout
    assert f"bind-instance --confirm {warehouse_id(b)}" in refused.stderr
    with b.connect() as conn:  # refused before the registry changed
        assert conn.execute("SELECT count(*) FROM platform.tenants").fetchone()[0] == 0
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": storage}}}) as inst:
        assert _partitions(inst) == before

    # Rebinding on purpose, with the printed id: B may sync now; A's partition stays.
    wrong = cli(b, "bind-instance", "--confirm", warehouse_id(a))
    assert wrong.returncode == 1 and "confirm with this warehouse's id" in wrong.stderr
    rebound = cli(b, "bind-instance", "--confirm", warehouse_id(b))
    assert rebound.returncode == 0, rebound.stderr
    assert "kept for unregistered tenants 1" in rebound.stdout
    assert cli(b, "add", second).returncode == 0
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": storage}}}) as inst:
        assert _partitions(inst) == sorted([first, second])
