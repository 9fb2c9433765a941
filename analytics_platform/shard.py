"""This code location's tenant shard, and the asset keys it gives the platform's assets.

With `PLATFORM_SHARD` unset (one shard, the default) an asset's key is its name
(`stg_events`); in shard `eu1` it is `eu1/stg_events`, so several shards can be
code locations of one workspace (Dagster requires asset keys unique across it).
Code names assets by name and turns a name into a key only here.
"""

from __future__ import annotations

from dagster import AssetKey

from analytics_platform.settings import platform_shard

SHARD = platform_shard()


def asset_key(name: str) -> AssetKey:
    """The key of the platform's asset `name` in this shard."""
    return AssetKey([SHARD, name]) if SHARD else AssetKey(name)


def asset_name(key: AssetKey) -> str:
    """The platform's name for an asset of this shard (the key without the shard)."""
    return key.path[-1]


# A shard's ClickHouse names, so shards can share a ClickHouse server or cluster.
TENANT_DATABASE_PREFIX = f"{SHARD}_tenant_" if SHARD else "tenant_"
SCRATCH_DATABASE = f"_serving_load_{SHARD}" if SHARD else "_serving_load"


# The concurrency pool of steps that open this shard's ClickHouse (one at a time for
# embedded chDB, dagster.yaml's default_limit 1): shards share the instance's pools
# by name, and each has its own ClickHouse, so each has its own pool.
CLICKHOUSE_POOL = f"clickhouse_{SHARD}" if SHARD else "clickhouse"
