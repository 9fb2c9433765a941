"""Scale benchmark, UI part: the webserver's partition queries and `tenants list` at N tenants.

    .venv/bin/python benchmarks/scale_ui.py [--tenants 10,100,300,1000] [--quick]

For each tenant count, on fresh Postgres databases (Dagster storage as deployed,
and a warehouse), with PLATFORM_START_DATE 400 days before today:

- every tenant-day of `raw_file_events` is materialized (tenants x 400 events,
  written in batches straight into the event log: seeding, not measured);
- the code server and the webserver start as processes (no daemon), and the
  GraphQL queries the UI sends for an asset's page and its partitions tab are
  POSTed to the webserver and timed (the first, cold, and the median of three
  more): the partition status of every tenant-day, the materialized/total
  partition counts, the partition keys of both dimensions;
- `tenants list` is timed as the CLI runs it (`tenant_overview`), over a warehouse
  holding the N tenants and one raw row per tenant-day.

Writes benchmarks/results/scale_ui.json and BENCHMARKS.md's `scale-ui` section.
Target (issue 16): each UI partition query <= 3 s at 1,000 tenants.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAYS = 400
# Set before the platform is imported: the partitions are built from it at import.
os.environ["PLATFORM_START_DATE"] = (dt.date.today() - dt.timedelta(days=DAYS)).isoformat()

from common import RECORDS, fresh_database, record_lines, replace_record, write_section  # noqa: E402

WORK = ROOT / "benchmarks" / ".work" / "scale_ui"
RESULTS = ROOT / "benchmarks" / "results" / "scale_ui.json"
TARGET_SECONDS = 3.0
# "shard": one shard's code location of a sharded deployment (README "Tenant shards"):
# its assets hold its own tenants' partitions only, so it is measured at its size.
UI_RECORDS = (*RECORDS, "shard")
ASSET = "raw_file_events"

QUERIES = {
    "partition status (partitions tab)": """
        query Statuses($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) {
            ... on AssetNode {
              assetPartitionStatuses {
                ... on MultiPartitionStatuses {
                  primaryDimensionName
                  ranges {
                    primaryDimStartKey
                    primaryDimEndKey
                    secondaryDim {
                      ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
                    }
                  }
                }
              }
            }
          }
        }""",
    "partition counts (asset page)": """
        query Stats($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) {
            ... on AssetNode {
              partitionStats { numMaterialized numPartitions numFailed numMaterializing }
            }
          }
        }""",
    "partition keys of both dimensions": """
        query Keys($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) {
            ... on AssetNode { partitionKeysByDimension { name partitionKeys } }
          }
        }""",
}


def seed_materializations(instance, names: list[str], days: list[dt.date]) -> float:
    """One runless materialization of raw_file_events per tenant-day, in batches; seconds.

    Written with the event log's batch call, from Dagster's private event classes (the
    one exception test_public_apis.py allows, for this seeding only): every public path
    (`report_runless_asset_event`, a ranged run of a stand-in asset) checks each key
    against the dynamic partitions and took 68-86 ms per event on the busy machine,
    hours for 400,000, while the batch call takes about 2 ms.
    """
    from dagster import AssetMaterialization, DagsterEvent, DagsterEventType, EventLogEntry
    from dagster._core.events import StepMaterializationData

    from analytics_platform.partitions import TenantDay

    began = time.perf_counter()
    batch: list = []
    for name in names:
        for day in days:
            materialization = AssetMaterialization(
                asset_key=ASSET, partition=TenantDay(name, day).partition_key
            )
            event = DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name="",  # a runless event, as report_runless_asset_event writes it
                event_specific_data=StepMaterializationData(materialization),
            )
            batch.append(
                EventLogEntry(
                    error_info=None,
                    level="debug",
                    user_message="",
                    run_id="",
                    timestamp=time.time(),
                    dagster_event=event,
                )
            )
            if len(batch) == 5000:
                instance.event_log_storage.store_event_batch(batch)
                batch = []
    if batch:
        instance.event_log_storage.store_event_batch(batch)
    return round(time.perf_counter() - began, 1)


def seed_warehouse(postgres, names: list[str], days: list[dt.date]) -> None:
    """The tenants registered and active, and one raw row per tenant-day (set-based)."""
    from analytics_platform.tenants.registry import register_tenant

    for name in names:
        register_tenant(postgres, name, actor="benchmark")
    with postgres.transaction() as conn:
        conn.execute("UPDATE platform.tenants SET status = 'active'")
        conn.execute(
            """
            INSERT INTO raw.file_events
                (event_id, tenant_id, event_type, occurred_at, visitor_id, _partition_date,
                 _source, _source_line, _run_id)
            SELECT t.tenant_id || '-' || d::date, t.tenant_id, 'page_view', d, 'v1', d::date,
                   'seed.jsonl', 1, 'benchmark'
            FROM platform.tenants t,
                 generate_series(%s::date, %s::date, interval '1 day') AS d
            """,
            (days[0], days[-1]),
        )


def timed_queries(deployment) -> dict[str, dict]:
    variables = {"key": {"path": [ASSET]}}
    timings = {}
    for label, query in QUERIES.items():
        seconds = []
        for _ in range(4):
            began = time.perf_counter()
            deployment.graphql(query, variables)
            seconds.append(time.perf_counter() - began)
        timings[label] = {
            "cold_s": round(seconds[0], 2),
            "warm_median_s": round(statistics.median(seconds[1:]), 2),
        }
    return timings


# What `tenants list` asked before its per-tenant index lookups (tenants/overview.py).
GROUP_BY_LAST_DAY = "SELECT tenant_id, max(_partition_date) FROM raw.file_events GROUP BY tenant_id"


def timed_tenants_list(postgres, clickhouse, instance) -> dict:
    """`tenants list` as the CLI builds it, and its last-data-day query in both forms."""
    from analytics_platform.tenants.overview import LAST_DATA_DAY, tenant_overview

    began = time.perf_counter()
    rows = tenant_overview(postgres, clickhouse, instance)
    timings = {"tenants_list_s": round(time.perf_counter() - began, 2), "tenants_listed": len(rows)}
    with postgres.connect() as conn:
        for label, query in (("group_by", GROUP_BY_LAST_DAY), ("per_tenant", LAST_DATA_DAY)):
            began = time.perf_counter()
            found = dict(conn.execute(query).fetchall())
            timings[f"last_day_{label}_s"] = round(time.perf_counter() - began, 3)
            assert len(found) == len(rows), (label, len(found))
    return timings


def measure_tenants(tenants: int) -> dict:
    from dagster import DagsterInstance

    from analytics_platform.partitions import PLATFORM_START_DATE
    from analytics_platform.resources.clickhouse import ClickHouseResource
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform_tests.deployment import Deployment

    first = dt.date.fromisoformat(PLATFORM_START_DATE)
    days = [first + dt.timedelta(days=i) for i in range(DAYS)]
    names = [f"t{i:04d}" for i in range(tenants)]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    with fresh_database() as dagster_url, fresh_database() as warehouse_url:
        postgres = PostgresResource(url=warehouse_url)
        postgres.ensure_warehouse()
        clickhouse = ClickHouseResource(url=f"chdb://{WORK / 'clickhouse'}")
        deployment = Deployment.prepare(
            WORK / "dagster-home",
            {
                "DATABASE_URL": warehouse_url,
                "DAGSTER_POSTGRES_URL": dagster_url,
                "CLICKHOUSE_URL": clickhouse.url,
                "LANDING_DIR": str(WORK / "landing"),
                "PLATFORM_START_DATE": PLATFORM_START_DATE,
            },
        )
        os.environ.update(
            DAGSTER_HOME=str(deployment.home),
            DAGSTER_POSTGRES_URL=dagster_url,
            DAGSTER_ARTIFACTS_DIR=str(deployment.home / "artifacts"),
        )
        with DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("tenants", names)
            seeding_s = seed_materializations(instance, names, days)
            seed_warehouse(postgres, names, days)
            listing = timed_tenants_list(postgres, clickhouse, instance)
        try:
            deployment.start(daemon=False)
            queries = timed_queries(deployment)
        finally:
            deployment.stop()
    shutil.rmtree(WORK, ignore_errors=True)
    return {
        "tenants": tenants,
        "partitions": tenants * DAYS,
        "seeding_s": seeding_s,
        "queries": queries,
        **listing,
    }


def measure(args: argparse.Namespace) -> dict:
    rows = []
    load = [round(x, 2) for x in os.getloadavg()]
    for tenants in args.tenants:
        rows.append(measure_tenants(tenants))
        print(json.dumps(rows[-1]), flush=True)
    return {
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_before": load,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "label": args.label,
        "rows": rows,
    }


def report(results: dict) -> str:
    lines = [
        "## Scale: the UI's partition pages and `tenants list`",
        "",
        "`benchmarks/scale_ui.py`: every tenant-day of `raw_file_events` materialized "
        f"({DAYS} days), the code server and webserver as processes on Postgres storage, the "
        "GraphQL the UI sends POSTed to the webserver (cold, then the median of three); "
        "`tenants list` over the same tenants with one raw row per tenant-day. Target: "
        f"each partition query <= {TARGET_SECONDS:.0f} s at 1,000 tenants.",
        "",
        "| code | tenants | partitions | query | cold (s) | warm median (s) |",
        "|---|---|---|---|---|---|",
    ]
    for record in UI_RECORDS:
        measured = results.get(record)
        for row in measured["rows"] if measured else []:
            for label, timing in row["queries"].items():
                lines.append(
                    f"| {record}: {measured['label']} | {row['tenants']:,} | "
                    f"{row['partitions']:,} | {label} | {timing['cold_s']} | "
                    f"{timing['warm_median_s']} |"
                )
            lines.append(
                f"| {record}: {measured['label']} | {row['tenants']:,} | "
                f"{row['partitions']:,} | `tenants list` (last data day: GROUP BY "
                f"{row['last_day_group_by_s']} s, per-tenant lookups "
                f"{row['last_day_per_tenant_s']} s) | {row['tenants_list_s']} | |"
            )
    return "\n".join([*lines, "", *record_lines(results, UI_RECORDS)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tenants",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10, 100, 300, 1000],
        help="comma-separated tenant counts",
    )
    parser.add_argument("--quick", action="store_true", help="10 tenants only")
    parser.add_argument("--record", choices=UI_RECORDS, default="after")
    parser.add_argument("--label", default="main", help="names the code measured")
    args = parser.parse_args(argv)
    if args.quick:
        args.tenants = [10]
    return args


def main() -> None:
    args = parse_args()
    write_section("scale-ui", report(replace_record(RESULTS, args.record, measure(args))))


if __name__ == "__main__":
    main()
