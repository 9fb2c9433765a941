"""Which warehouse a Dagster instance's `tenants` partitions mirror, so no other can sync them.

The `tenants` dynamic partitions live in the Dagster instance; the registry they
mirror lives in the warehouse. A process started with another `DATABASE_URL`
but the same Dagster storage would otherwise see the instance's tenants as
"not in the registry" and rewrite them. So each warehouse has an id, generated
once by its migration (`platform.warehouse_identity`), and the instance
records the id of the warehouse it mirrors on its first sync. Every later sync
compares the two and refuses on a mismatch, naming both stores.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from dagster import DagsterInstance

from analytics_platform.partitions import tenants_partitions
from analytics_platform.redaction import redact
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.shard import SHARD

# Key in the instance's key-value store (the table Dagster's daemons keep cursors in);
# one per shard, since the shards of a workspace share the instance.
BINDING_KEY = "analytics_platform/tenants_partitions_warehouse" + (f"/{SHARD}" if SHARD else "")
REBIND_COMMAND = "analytics-platform tenants bind-instance --confirm <warehouse id>"


class StoreMismatch(RuntimeError):
    """The warehouse and the Dagster instance belong to different deployments."""


@dataclass(frozen=True)
class WarehouseBinding:
    warehouse_id: str
    warehouse: str  # the bound warehouse's URL, credentials masked
    bound_at: str


def warehouse_id(postgres: PostgresResource) -> str:
    """This warehouse's id, generated once when its schema was first created."""
    postgres.ensure_warehouse()
    with postgres.connect() as conn:
        (value,) = conn.execute(
            "SELECT warehouse_id::text FROM platform.warehouse_identity"
        ).fetchone()
    return value


def describe_instance(instance: DagsterInstance) -> str:
    """Where the instance keeps its runs: its Postgres URL (masked) or its folder."""
    url = getattr(instance.run_storage, "postgres_url", None)
    return redact(url) if url else f"DAGSTER_HOME {instance.root_directory}"


def read_binding(instance: DagsterInstance) -> WarehouseBinding | None:
    # get/set_cursor_values is the run storage's key-value store (no public Dagster API
    # keeps instance-wide settings); test_store_binding pins that a value survives.
    stored = instance.run_storage.get_cursor_values({BINDING_KEY}).get(BINDING_KEY)
    return WarehouseBinding(**json.loads(stored)) if stored else None


def _write_binding(instance: DagsterInstance, postgres: PostgresResource, identity: str) -> None:
    binding = WarehouseBinding(
        identity, redact(postgres.url), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    instance.run_storage.set_cursor_values({BINDING_KEY: json.dumps(asdict(binding))})


def _mismatch(
    postgres: PostgresResource, instance: DagsterInstance, identity: str, bound: WarehouseBinding
) -> str:
    return (
        f"refusing to sync the `tenants` partitions: the Dagster instance "
        f"({describe_instance(instance)}) mirrors warehouse {bound.warehouse_id} "
        f"({bound.warehouse}, since {bound.bound_at}), but this process's DATABASE_URL is "
        f"warehouse {identity} ({redact(postgres.url)}). Point DATABASE_URL at the "
        f"instance's warehouse, or DAGSTER_HOME / DAGSTER_POSTGRES_URL at this warehouse's "
        f"own instance. Only if the instance's warehouse was replaced on purpose: "
        f"{REBIND_COMMAND.replace('<warehouse id>', identity)}"
    )


def _foreign_partitions(postgres: PostgresResource, instance: DagsterInstance) -> list[str]:
    """The instance's tenant partitions, when this warehouse registered none of them."""
    present = instance.get_dynamic_partitions(tenants_partitions.name)
    if not present:
        return []
    with postgres.connect() as conn:
        known = conn.execute(
            "SELECT count(*) FROM platform.tenants WHERE tenant_id = ANY(%s)", (present,)
        ).fetchone()[0]
    return [] if known else sorted(present)


def check_store_binding(postgres: PostgresResource, instance: DagsterInstance) -> str:
    """Raise StoreMismatch unless the instance mirrors this warehouse; returns its id.

    An instance that has never synced is bound to this warehouse now, unless it already
    holds partitions of tenants this warehouse never registered (an instance from before
    the binding existed, shared with another warehouse): then it refuses too.
    """
    identity = warehouse_id(postgres)
    bound = read_binding(instance)
    if bound is None:
        foreign = _foreign_partitions(postgres, instance)
        if foreign:
            raise StoreMismatch(
                f"refusing to sync the `tenants` partitions: the Dagster instance "
                f"({describe_instance(instance)}) holds {len(foreign)} tenant partitions "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}) and this "
                f"warehouse {identity} ({redact(postgres.url)}) registered none of them, "
                f"so they belong to another warehouse. Point DATABASE_URL at that warehouse; "
                f"if this one is really the instance's: "
                f"{REBIND_COMMAND.replace('<warehouse id>', identity)}"
            )
        _write_binding(instance, postgres, identity)
        # Read back: of two first syncs racing, the one whose write was overwritten refuses
        # (the store has no compare-and-set, so two that each read their own write go on
        # once; the loser is refused from its next sync).
        bound = read_binding(instance)
    if bound.warehouse_id != identity:
        raise StoreMismatch(_mismatch(postgres, instance, identity, bound))
    return identity


def bind_instance(
    postgres: PostgresResource, instance: DagsterInstance, *, confirm: str
) -> WarehouseBinding:
    """Make the instance mirror this warehouse from now on (after replacing the warehouse).

    Refuses unless `confirm` repeats this warehouse's id, so it is never done by accident.
    """
    identity = warehouse_id(postgres)
    if confirm != identity:
        raise StoreMismatch(
            f"binding the Dagster instance ({describe_instance(instance)}) to warehouse "
            f"{redact(postgres.url)} lets it rewrite the instance's `tenants` partitions; "
            f"confirm with this warehouse's id {identity} (got {confirm!r})"
        )
    _write_binding(instance, postgres, identity)
    return read_binding(instance)
