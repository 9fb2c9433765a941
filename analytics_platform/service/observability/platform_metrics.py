"""Platform metrics read at scrape time from the warehouse and the Dagster instance.

A custom prometheus_client collector, registered once per process. Every query is a
probe of an index per tenant (LATERAL), never a scan of a tenant's history, so a scrape
at 1,000 tenants stays well under a second (benchmarks/metrics_scrape.py). The result is
cached for `CACHE_SECONDS`: concurrent or rapid scrapes share one collection instead of
stacking queries. A store that cannot be read sets `analytics_platform_scrape_error`
for its source and the rest is still served.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics_platform.settings import ObservedStores

log = logging.getLogger("analytics_platform.metrics")
CACHE_SECONDS = 5.0
STATEMENT_TIMEOUT_MS = 2000
# Rows loaded / quarantined are labelled by day: today and yesterday (UTC) only, to
# bound the series at 2 x tenants.
LABELLED_DAYS = 2
CHECK_WINDOW_SECONDS = 24 * 3600
CHECK_EVALUATIONS_READ = 2000
# Every job the code location defines (a test compares it with `defs`; the last is the
# split_failed_runs sensor's own asset job), and the job Dagster's automation sensor
# launches asset runs under.
MONITORED_JOBS = (
    "tenant_day_pipeline",
    "rebuild_tenant_days",
    "provision_tenant",
    "migrate_tenants",
    "deprovision_tenant",
    "reprocess_quarantine",
    "raw_retention",
    "tenant_freshness",
    "api_events_pipeline",
    "__anonymous_asset_job_split_failed_runs",
    "__ASSET_JOB",
)
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
_sources = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="metrics")
_lookups = concurrent.futures.ThreadPoolExecutor(max_workers=6, thread_name_prefix="metrics-runs")

# The newest staged event of each tenant: the newest day by the (tenant_id, event_date)
# index, then that day's rows only.
FRESHNESS = """
    SELECT t.tenant_id, extract(epoch FROM now() - newest.at)
    FROM platform.tenants t
    CROSS JOIN LATERAL (
        SELECT max(s.occurred_at) AS at FROM staging.stg_events s
        WHERE s.tenant_id = t.tenant_id AND s.event_date = (
            SELECT max(d.event_date) FROM staging.stg_events d WHERE d.tenant_id = t.tenant_id
        )
    ) newest
    WHERE t.status <> 'deprovisioned' AND newest.at IS NOT NULL
"""
# Each tenant-day's raw rows, by the (tenant_id, _partition_date) index of both tables.
ROWS_LOADED = """
    SELECT t.tenant_id, d.day,
        (SELECT count(*) FROM raw.file_events f
         WHERE f.tenant_id = t.tenant_id AND f._partition_date = d.day)
      + (SELECT count(*) FROM raw.api_events a
         WHERE a.tenant_id = t.tenant_id AND a._partition_date = d.day)
    FROM platform.tenants t CROSS JOIN unnest(%s::date[]) AS d(day)
    WHERE t.status <> 'deprovisioned'
"""
# By the (tenant_id, partition_date, layer) index: rows still quarantined, and replayed.
QUARANTINE = """
    SELECT t.tenant_id, q.partition_date, q.layer,
        count(*) FILTER (WHERE q.reprocessed_at IS NULL),
        count(*) FILTER (WHERE q.reprocessed_at IS NOT NULL)
    FROM platform.tenants t
    JOIN platform.quarantine q
      ON q.tenant_id = t.tenant_id AND q.partition_date = ANY(%s::date[])
    WHERE t.status <> 'deprovisioned'
    GROUP BY 1, 2, 3
"""
HELD = "SELECT tenant_id, layer, count(*) FROM platform.held_slices GROUP BY 1, 2"
TENANTS = "SELECT status, count(*) FROM platform.tenants GROUP BY 1"


def labelled_days(today: dt.date | None = None) -> list[dt.date]:
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return [today - dt.timedelta(days=n) for n in range(LABELLED_DAYS)]


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"analytics_platform_{name}", documentation, labels=labels)


# --------------------------------------------------------------------------- warehouse


def warehouse_metrics(url: str, days: list[dt.date]) -> list[Metric]:
    """Tenants, freshness, rows loaded / quarantined / replayed per tenant-day, holds."""
    tenants = _gauge("tenants", "Registered tenants by status.", ["status"])
    freshness = _gauge(
        "tenant_freshness_seconds",
        "Age of each tenant's newest staged event (now - max occurred_at in staging).",
        ["tenant"],
    )
    loaded = _gauge(
        "rows_loaded",
        "Rows in raw (file and API events) per tenant and partition day (today, yesterday).",
        ["tenant", "day"],
    )
    quarantined = _gauge(
        "rows_quarantined",
        "Rows in platform.quarantine not replayed, per tenant, partition day and layer.",
        ["tenant", "day", "layer"],
    )
    replayed = _gauge(
        "quarantine_replayed_rows",
        "Quarantined rows replayed into raw, per tenant, partition day and layer.",
        ["tenant", "day", "layer"],
    )
    held = _gauge(
        "held_slices",
        "Tenant-days held back by a failed blocking check, per tenant and layer.",
        ["tenant", "layer"],
    )
    with psycopg.connect(
        url, connect_timeout=2, options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
    ) as conn:
        for status, count in conn.execute(TENANTS):
            tenants.add_metric([status], count)
        if conn.execute("SELECT to_regclass('staging.stg_events')").fetchone()[0]:
            for tenant, age in conn.execute(FRESHNESS):
                freshness.add_metric([tenant], float(age))
        for tenant, day, rows in conn.execute(ROWS_LOADED, (days,)):
            if rows:
                loaded.add_metric([tenant, day.isoformat()], rows)
        for tenant, day, layer, waiting, done in conn.execute(QUARANTINE, (days,)):
            if waiting:
                quarantined.add_metric([tenant, day.isoformat(), layer], waiting)
            if done:
                replayed.add_metric([tenant, day.isoformat(), layer], done)
        for tenant, layer, count in conn.execute(HELD):
            held.add_metric([tenant, layer], count)
    return [tenants, freshness, loaded, quarantined, replayed, held]


# --------------------------------------------------------------------------- Dagster


def _latest_run(instance, job: str, since: dt.datetime) -> tuple[object | None, int]:
    """(the job's latest finished run record or None, its failed runs since `since`)."""
    from dagster import DagsterRunStatus, RunsFilter

    finished = [DagsterRunStatus(s) for s in FINISHED]
    records = instance.get_run_records(RunsFilter(job_name=job, statuses=finished), limit=1)
    failures = instance.get_runs_count(
        RunsFilter(job_name=job, statuses=[DagsterRunStatus.FAILURE], created_after=since)
    )
    return (records[0] if records else None), failures


def run_metrics(instance) -> list[Metric]:
    """Per job: the latest finished run's outcome and duration, and failures in 24 h.

    Two indexed queries per job, several jobs at once: Dagster's Postgres storage opens a
    connection per query (no pool), and that, not the query, is most of a lookup's time.
    """
    success = _gauge(
        "job_last_run_success",
        "1 if the job's latest finished run succeeded, 0 if it failed or was canceled.",
        ["job"],
    )
    status = _gauge(
        "job_last_run_status",
        "1 for the status of the job's latest finished run.",
        ["job", "status"],
    )
    duration = _gauge(
        "job_last_run_duration_seconds", "Start to end of the job's latest finished run.", ["job"]
    )
    ended = _gauge(
        "job_last_run_end_timestamp_seconds", "When the job's latest finished run ended.", ["job"]
    )
    failed = _gauge("job_runs_failed_24h", "Runs of the job that failed in the last 24 h.", ["job"])
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=24)
    latest = list(_lookups.map(lambda job: _latest_run(instance, job, since), MONITORED_JOBS))
    for job, (record, failures) in zip(MONITORED_JOBS, latest, strict=True):
        failed.add_metric([job], failures)
        if record is None:
            continue
        outcome = record.dagster_run.status.value
        success.add_metric([job], 1 if outcome == "SUCCESS" else 0)
        status.add_metric([job, outcome], 1)
        if record.start_time and record.end_time:
            duration.add_metric([job], record.end_time - record.start_time)
        if record.end_time:
            ended.add_metric([job], record.end_time)
    return [success, status, duration, ended, failed]


class CheckOutcomes:
    """The latest evaluation of each (asset, check, partition) of the last 24 h, kept up
    to date from the event log incrementally: each scrape reads only the evaluations
    stored since the previous one (Dagster's (event type, id) index), at most
    CHECK_EVALUATIONS_READ at a time, oldest first, so a backlog is caught up over
    a few scrapes instead of in one slow one."""

    def __init__(self) -> None:
        self.cursor: int | None = None
        self.latest: dict[tuple[str, str, str | None], tuple[bool, float]] = {}

    def update(self, instance, now: float | None = None) -> None:
        from dagster import DagsterEventType, EventRecordsFilter

        now = now or time.time()
        after = now - CHECK_WINDOW_SECONDS
        wanted = DagsterEventType.ASSET_CHECK_EVALUATION
        records_filter = (
            EventRecordsFilter(wanted, after_cursor=self.cursor)
            if self.cursor is not None
            else EventRecordsFilter(wanted, after_timestamp=after)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated for 2.0; no other call reads them all
            records = instance.get_event_records(
                records_filter, limit=CHECK_EVALUATIONS_READ, ascending=True
            )
        for record in records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            key = (
                evaluation.asset_key.to_user_string(),
                evaluation.check_name,
                evaluation.partition,
            )
            self.latest[key] = (evaluation.passed, record.event_log_entry.timestamp)
            self.cursor = record.storage_id
        self.latest = {k: v for k, v in self.latest.items() if v[1] >= after}

    def failing(self) -> Counter:
        """(asset, check) -> partitions whose latest evaluation failed."""
        return Counter((a, c) for (a, c, _p), (passed, _t) in self.latest.items() if not passed)


def check_metrics(outcomes: CheckOutcomes, instance) -> list[Metric]:
    outcomes.update(instance)
    gauge = _gauge(
        "failing_checks",
        "Partitions whose latest evaluation of the asset check (last 24 h) failed.",
        ["asset", "check"],
    )
    for (asset, check), partitions in sorted(outcomes.failing().items()):
        gauge.add_metric([asset, check], partitions)
    return [gauge]


# --------------------------------------------------------------------------- collector


class PlatformCollector(Collector):
    """Collects the platform metrics at most once per CACHE_SECONDS."""

    def __init__(self, stores: ObservedStores, instance_factory=None) -> None:
        self.stores = stores
        self._instance_factory = instance_factory or _dagster_instance
        self._instance = None
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._cached_at = float("-inf")
        self._checks = CheckOutcomes()

    def describe(self) -> list[Metric]:
        return []  # nothing is collected at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # a second scrape waits for the first and reuses its result
            if time.monotonic() - self._cached_at > CACHE_SECONDS:
                self._cached = self._collect()
                self._cached_at = time.monotonic()
            yield from self._cached

    def _collect(self) -> list[Metric]:
        started = time.perf_counter()
        errors = _gauge(
            "scrape_error", "1 when the last collection could not read the source.", ["source"]
        )
        metrics: list[Metric] = []
        sources = {"warehouse": self._warehouse, "dagster": self._dagster}
        # The two stores are read side by side: a scrape costs the slower, not the sum.
        pending = {source: _sources.submit(read) for source, read in sources.items()}
        for source, future in pending.items():
            try:
                metrics += future.result()
                errors.add_metric([source], 0)
            except Exception as err:  # one store down must not hide the others' metrics
                log.warning("metrics from %s unavailable: %s", source, err)
                errors.add_metric([source], 1)
        seconds = _gauge("scrape_collection_seconds", "Time the last platform collection took.", [])
        seconds.add_metric([], time.perf_counter() - started)
        return [*metrics, errors, seconds]

    def _warehouse(self) -> list[Metric]:
        if not self.stores.warehouse_url:
            raise RuntimeError("no warehouse URL")
        return warehouse_metrics(self.stores.warehouse_url, labelled_days())

    def _dagster(self) -> list[Metric]:
        if self._instance is None:
            self._instance = self._instance_factory(self.stores)
        return [*run_metrics(self._instance), *check_metrics(self._checks, self._instance)]


def _dagster_instance(stores: ObservedStores):
    """The deployment's instance (DAGSTER_HOME's dagster.yaml), created once per process."""
    import os

    from dagster import DagsterInstance

    from analytics_platform.settings import load_settings

    # dagster.yaml reads these two; a collector started without the stack has neither.
    if stores.dagster_storage_url:
        os.environ.setdefault("DAGSTER_POSTGRES_URL", stores.dagster_storage_url)
    os.environ.setdefault("DAGSTER_ARTIFACTS_DIR", str(load_settings().dagster_artifacts_dir))
    os.environ.setdefault("DAGSTER_HOME", str(load_settings().project_dir))
    return DagsterInstance.get()
