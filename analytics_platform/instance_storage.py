"""Dagster's event log in Postgres, for runs that cover many tenant-days at once.

A daily run for 1,000 tenants writes one ASSET_MATERIALIZATION_PLANNED event per asset
and tenant-day before it starts (17,000 events), one asset-check-planned row per check
and tenant-day, then a materialization per asset and tenant-day. dagster-postgres'
event log opens a new Postgres connection for every statement (its engine has no pool)
and writes planned events one at a time, so those writes cost more than the run's raw
load and checks together (BENCHMARKS.md, "Scale: the daily run").

`PlatformEventLogStorage` is dagster-postgres' storage with two changes, the rows it
writes unchanged:

- connections come from a small pool (checked with a ping before use, renewed after an
  hour, never shared across a fork), as dagster-webserver already does for its own;
- a batch of planned events (Dagster hands them over as one batch once
  DAGSTER_EVENT_BATCH_SIZE is set, which importing this module does) is one INSERT into
  the event log and one upsert per asset into the asset index, instead of three
  statements per event (each check's planned partitions were one statement already).

dagster.yaml names it as the event log storage, so the daemon (which creates the runs
a sensor or schedule requests), the webserver and every run worker use it.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

from dagster import DagsterEventType, EventLogEntry
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

# Dagster batches planned events (and a step's materializations of many partitions) only
# when this is set; dagster-postgres already writes a batch of materializations in one
# statement. A deployment may set its own size.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")

PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
CHECK_PLANNED = DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED

POOL_SIZE = 2  # idle connections a process keeps: a run worker writes from one thread
# Beyond those, as many as the process's threads ask for at once (the daemon's), opened
# and closed as before: a bounded pool would make a busy daemon thread wait for one.
POOL_OVERFLOW = -1
POOL_RECYCLE_SECONDS = 3600


class PlatformEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres' event log with pooled connections and batched planned events."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, **kwargs: Any):
        super().__init__(postgres_url, should_autocreate_tables, **kwargs)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_recycle=POOL_RECYCLE_SECONDS,
            pool_pre_ping=True,
        )
        self._tables_present: set[str] = set()
        # A child of os.fork() must not reuse the parent's sockets: it starts a pool of its own.
        storage = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_pool(storage()))

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: dict[str, Any]
    ) -> PlatformEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # the pooled connections close with the instance

    def has_table(self, table_name: str) -> bool:
        # Asked on every materialization stored (does the asset tags table exist?); a table
        # that exists does not go away while the process runs.
        if table_name not in self._tables_present and super().has_table(table_name):
            self._tables_present.add(table_name)
        return table_name in self._tables_present

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        kinds = {event.get_dagster_event().event_type for event in events}
        if not events or not kinds <= {PLANNED, CHECK_PLANNED}:
            super().store_event_batch(events)
            return
        insert = self.prepare_insert_event_batch(events)
        with self._connect() as conn:
            event_ids = conn.execute(insert.returning(insert.table.c.id)).scalars().all()
        latest_planned: dict[str, tuple[EventLogEntry, int]] = {}
        for event, event_id in zip(events, event_ids, strict=True):
            dagster_event = event.get_dagster_event()
            if dagster_event.event_type == CHECK_PLANNED:
                # One event per check and run, its partitions written in one statement.
                self.store_asset_check_event(event, event_id)
            else:
                latest_planned[dagster_event.asset_key.to_string()] = (event, event_id)
        with self.index_transaction() as conn:
            for event, event_id in latest_planned.values():
                self._store_asset_event(conn, event, event_id)


def _reset_pool(storage: PlatformEventLogStorage | None) -> None:
    if storage is not None:
        storage._engine.dispose(close=False)
