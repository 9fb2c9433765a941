"""Request ids, JSON access logs, /metrics and /health of a real collector on 127.0.0.1.

The platform metrics are compared with the warehouse tables and the Dagster instance
after a real run; /health's bounds with stores that refuse or never answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from filelock import FileLock
from prometheus_client.parser import text_string_to_metric_families

from analytics_platform.process_groups import free_port
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.settings import ObservedStores
from analytics_platform.tenants.keys import create_key
from analytics_platform.tenants.registry import register_tenant
from analytics_platform_tests.cli_harness import REPO, cli_environment
from analytics_platform_tests.collector_server import RunningCollector, start_collector, wait_for
from analytics_platform_tests.events import day_file, tracker_event, write_lines

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
DEPENDENCIES = {"warehouse", "clickhouse", "landing", "dagster_storage"}


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, warehouse_url: str, dagster_storage_url: str
) -> Iterator[dict[str, str]]:
    """The collector's environment, and this module's Dagster instance's (same storage).

    Its own chDB path, never created: health must not create it (a session would).
    """
    home = tmp_path_factory.mktemp("observe")
    landing = home / "landing"
    landing.mkdir()
    env = cli_environment(
        home, warehouse_url, dagster_storage_url, f"chdb://{home / 'chdb' / 'ch'}", landing
    )
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DATABASE_URL", "DAGSTER_POSTGRES_URL", "CLICKHOUSE_URL", "LANDING_DIR"):
            patch.setenv(name, env[name])
        patch.setenv("DAGSTER_HOME", str(REPO))
        patch.setenv("DAGSTER_ARTIFACTS_DIR", env["DAGSTER_ARTIFACTS_DIR"])
        yield env


@pytest.fixture(scope="module")
def collector(stores: dict[str, str], tmp_path_factory) -> Iterator[RunningCollector]:
    log = tmp_path_factory.mktemp("observe-log") / "collector.log"
    running = start_collector(stores, log, {"COLLECTOR_RATE_BURST_EVENTS": "1000"})
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def postgres_module(warehouse_url: str) -> PostgresResource:
    return PostgresResource(url=warehouse_url)


def tenant_with_key(postgres: PostgresResource, label: str = "obs") -> tuple[str, str]:
    tenant = f"{label}_{uuid.uuid4().hex[:8]}"
    register_tenant(postgres, tenant, actor="test")
    _record, secret = create_key(postgres, tenant, kind="write", actor="test")
    return tenant, secret


def scrape(collector: RunningCollector) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value of one GET /metrics."""
    response = requests.get(f"{collector.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def log_lines(collector: RunningCollector) -> list[dict]:
    lines = []
    for line in collector.log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def events(_tenant: str, count: int) -> list[dict]:
    """`count` page views of yesterday, 10:00 UTC onwards."""
    return [
        tracker_event(f"e-{uuid.uuid4().hex}", f"v{n}", f"{YESTERDAY}T10:{n % 60:02d}:00Z")
        for n in range(count)
    ]


# --------------------------------------------------------------------------- request ids


def test_request_ids_are_echoed_or_generated_and_logged_as_json(
    collector: RunningCollector, postgres_module: PostgresResource
):
    given = f"req-{uuid.uuid4().hex[:12]}"
    echoed = requests.get(f"{collector.url}/health", headers={"X-Request-Id": given}, timeout=10)
    assert echoed.headers["X-Request-Id"] == given
    generated = [
        requests.get(f"{collector.url}/health", headers=headers, timeout=10).headers["X-Request-Id"]
        for headers in ({}, {"X-Request-Id": "x" * 129}, {"X-Request-Id": "no spaces; or quotes"})
    ]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in generated), generated
    assert len(set(generated)) == 3

    tenant, key = tenant_with_key(postgres_module)
    posted = collector.post_events(events(tenant, 2), key, X_Request_Id=f"{given}-post")
    assert posted.status_code == 202
    assert posted.headers["X-Request-Id"] == f"{given}-post"

    def logged():
        by_id = {line.get("request_id"): line for line in log_lines(collector)}
        return by_id if f"{given}-post" in by_id else None

    by_id = wait_for(logged, what="the access log line")
    health_line = by_id[given]
    assert health_line["service"] == "collector" and health_line["level"] == "info"
    assert (health_line["method"], health_line["route"], health_line["status"]) == (
        "GET",
        "/health",
        200,
    )
    assert 0 < health_line["duration_ms"] < 10_000
    dt.datetime.fromisoformat(health_line["ts"])
    post_line = by_id[f"{given}-post"]
    assert (post_line["route"], post_line["status"], post_line["tenant"]) == (
        "/v1/events",
        202,
        tenant,
    )
    assert all(i in by_id for i in generated), "generated ids are logged too"


def test_latency_is_labelled_by_route_template_not_raw_path(collector: RunningCollector):
    for path in ("/no-such-page", f"/no/{uuid.uuid4().hex}"):
        assert requests.get(f"{collector.url}{path}", timeout=10).status_code == 404
    names = {labels for (name, labels) in scrape(collector) if name.endswith("_count")}
    routes = {dict(labels).get("route") for labels in names}
    assert "<unmatched>" in routes and "/health" in routes
    assert not any(r and r.startswith("/no") for r in routes), routes


# --------------------------------------------------------------------------- collector counts


def test_accepted_and_rejected_counts_equal_what_was_sent(
    collector: RunningCollector, postgres_module: PostgresResource
):
    first, first_key = tenant_with_key(postgres_module)
    second, second_key = tenant_with_key(postgres_module)
    before = scrape(collector)
    for count in (3, 4):
        assert collector.post_events(events(first, count), first_key).status_code == 202
    assert collector.post_events(events(second, 5), second_key).status_code == 202
    refused = collector.post_events(events(second, 6), second_key, Origin="https://x.example")
    assert refused.status_code == 403
    assert (
        collector.post("/v1/events", b"[{", Authorization=f"Bearer {first_key}").status_code == 400
    )
    assert collector.post_events(events(first, 2), "apk_w_nope00_" + "x" * 40).status_code == 401

    metrics = scrape(collector)
    accepted = "analytics_platform_collector_events_accepted_total"
    rejected = "analytics_platform_collector_events_rejected_total"
    requests_rejected = "analytics_platform_collector_requests_rejected_total"
    assert sample(metrics, accepted, tenant=first) == 7
    assert sample(metrics, accepted, tenant=second) == 5
    assert sample(metrics, rejected, tenant=second, reason="origin_not_allowed") == 6
    assert sample(metrics, requests_rejected, tenant=second, reason="origin_not_allowed") == 1
    assert sample(metrics, requests_rejected, tenant=first, reason="invalid_json") == 1
    assert sample(metrics, rejected, tenant=first, reason="invalid_json") is None, "none read"
    labels = {"tenant": "unknown", "reason": "invalid_key"}  # refused before its body
    delta = sample(metrics, requests_rejected, **labels) - (
        sample(before, requests_rejected, **labels) or 0
    )
    assert delta == 1, "a bad key's request counts for no tenant"
    assert sample(metrics, rejected, **labels) is None


# --------------------------------------------------------------------------- platform metrics


@pytest.fixture(scope="module")
def loaded_tenant(stores: dict[str, str], postgres_module: PostgresResource) -> Iterator[tuple]:
    """A tenant whose yesterday ran through raw and staging in a real `tenant_day_pipeline`
    run (one row broken: quarantined), and a failed `deprovision_tenant` run after it."""
    from analytics_platform.definitions import defs
    from analytics_platform.partitions import TenantDay

    tenant, _key = tenant_with_key(postgres_module, "load")
    lines = [*events(tenant, 5), {"eventType": "Not Snake", "visitorId": "v"}]
    write_lines(day_file(Path(stores["LANDING_DIR"]), tenant, YESTERDAY), lines)
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tenants", [tenant])
        job = defs.resolve_job_def("tenant_day_pipeline")
        result = job.execute_in_process(
            instance=instance,
            partition_key=TenantDay(tenant, YESTERDAY).partition_key,
            asset_selection=[AssetKey("raw_file_events"), AssetKey("stg_events")],
        )
        assert result.success
        failed = defs.resolve_job_def("deprovision_tenant").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "deprovision_tenant_op": {
                        "config": {"tenant_id": tenant, "confirm_tenant_id": "not-it"}
                    }
                }
            },
            raise_on_error=False,
        )
        assert not failed.success
        yield tenant, instance, result


def test_rows_loaded_quarantined_and_freshness_equal_the_tables(
    collector: RunningCollector, loaded_tenant, postgres_module: PostgresResource
):
    tenant, _instance, _result = loaded_tenant
    with postgres_module.connect() as conn:
        raw_rows = conn.execute(
            "SELECT count(*) FROM raw.file_events WHERE tenant_id = %s AND _partition_date = %s",
            (tenant, YESTERDAY),
        ).fetchone()[0]
        quarantined = conn.execute(
            "SELECT layer, count(*) FROM platform.quarantine "
            "WHERE tenant_id = %s AND partition_date = %s GROUP BY layer",
            (tenant, YESTERDAY),
        ).fetchall()
        newest = conn.execute(
            "SELECT max(occurred_at) FROM staging.stg_events WHERE tenant_id = %s", (tenant,)
        ).fetchone()[0]
    assert raw_rows == 5 and sum(n for _l, n in quarantined) == 1

    day = YESTERDAY.isoformat()
    metrics = wait_for(
        lambda: (
            (m := scrape(collector))
            and sample(m, "analytics_platform_rows_loaded", tenant=tenant, day=day) is not None
            and m
        ),
        what="the platform metrics after the cache expires",
    )
    assert sample(metrics, "analytics_platform_rows_loaded", tenant=tenant, day=day) == raw_rows
    for layer, count in quarantined:
        labels = {"tenant": tenant, "day": day, "layer": layer}
        assert sample(metrics, "analytics_platform_rows_quarantined", **labels) == count
    age = sample(metrics, "analytics_platform_tenant_freshness_seconds", tenant=tenant)
    expected = (dt.datetime.now(dt.timezone.utc) - newest).total_seconds()
    assert expected - 30 < age <= expected, "computed at the scrape, at most 30 s ago"
    assert sample(metrics, "analytics_platform_scrape_error", source="warehouse") == 0


def test_last_run_outcome_and_duration_per_job_equal_the_instance(
    collector: RunningCollector, loaded_tenant
):
    _tenant, instance, _result = loaded_tenant
    metrics = wait_for(
        lambda: (
            (m := scrape(collector))
            and sample(m, "analytics_platform_job_last_run_success", job="deprovision_tenant")
            is not None
            and m
        ),
        what="the run metrics",
    )
    assert sample(metrics, "analytics_platform_scrape_error", source="dagster") == 0
    for job, outcome in (("tenant_day_pipeline", "SUCCESS"), ("deprovision_tenant", "FAILURE")):
        record = instance.get_run_records(RunsFilter(job_name=job), limit=1)[0]
        assert record.dagster_run.status == DagsterRunStatus(outcome)
        success = sample(metrics, "analytics_platform_job_last_run_success", job=job)
        assert success == (1 if outcome == "SUCCESS" else 0)
        assert sample(metrics, "analytics_platform_job_last_run_status", job=job, status=outcome)
        duration = sample(metrics, "analytics_platform_job_last_run_duration_seconds", job=job)
        assert duration == pytest.approx(record.end_time - record.start_time)
    failures = instance.get_runs_count(
        RunsFilter(job_name="deprovision_tenant", statuses=[DagsterRunStatus.FAILURE])
    )
    assert sample(metrics, "analytics_platform_job_runs_failed_24h", job="deprovision_tenant") == (
        failures
    )


def test_check_outcomes_are_the_runs_latest_evaluations(loaded_tenant):
    from analytics_platform.service.observability.platform_metrics import CheckOutcomes

    _tenant, instance, result = loaded_tenant
    evaluations = result.get_asset_check_evaluations()
    assert evaluations, "the run evaluated the raw and staging checks"
    outcomes = CheckOutcomes()
    outcomes.update(instance)
    for evaluation in evaluations:
        key = (evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.partition)
        assert outcomes.latest[key][0] == evaluation.passed, key
    failing = sum(1 for (passed, _at) in outcomes.latest.values() if not passed)
    assert sum(outcomes.failing().values()) == failing
    cursor = outcomes.cursor
    outcomes.update(instance)
    assert outcomes.cursor == cursor, "nothing new: nothing read again"


def test_monitored_jobs_are_the_code_locations_jobs():
    from analytics_platform.definitions import defs
    from analytics_platform.service.observability.platform_metrics import MONITORED_JOBS

    defined = {job.name for job in defs.resolve_all_job_defs()}
    assert set(MONITORED_JOBS) == defined | {"__ASSET_JOB"}


# --------------------------------------------------------------------------- health


def test_health_names_every_dependency_and_never_opens_chdb(
    collector: RunningCollector, stores: dict[str, str]
):
    body = requests.get(f"{collector.url}/health", timeout=10).json()
    assert body["status"] == "ok" and set(body["dependencies"]) == DEPENDENCIES
    assert all(d["state"] == "ok" for d in body["dependencies"].values()), body
    data_path = Path(stores["CLICKHOUSE_URL"].removeprefix("chdb://"))
    assert not data_path.exists(), "a chDB session would have created the data path"

    # What ClickHouseResource.session holds for the whole of a session: the data path's lock.
    data_path.mkdir(parents=True)
    with FileLock(f"{data_path}.lock"):
        started = time.monotonic()
        busy = requests.get(f"{collector.url}/health", timeout=10)
        assert time.monotonic() - started < 2, "health never waits for the lock"
    clickhouse = busy.json()["dependencies"]["clickhouse"]
    assert busy.status_code == 200 and clickhouse["state"] == "ok" and clickhouse["busy"]
    idle = requests.get(f"{collector.url}/health", timeout=10).json()["dependencies"]
    assert "busy" not in idle["clickhouse"], "the lock was released, not kept by health"
    assert sorted(p.name for p in data_path.iterdir()) == [], "nothing written into it"


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """`app` under uvicorn on a free 127.0.0.1 port in a thread: its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung store."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_health_is_503_naming_a_down_warehouse_within_its_bound(
    tmp_path: Path, dagster_storage_url: str
):
    from starlette.applications import Starlette

    from analytics_platform.service.observability import instrument

    closed = free_port()
    with silent_listener() as hung:
        stores = ObservedStores(
            warehouse_url=f"postgresql://postgres@127.0.0.1:{closed}/nothing",
            clickhouse_url=f"chdb://{tmp_path / 'ch'}",
            landing_dir=tmp_path,
            dagster_storage_url=f"postgresql://postgres@127.0.0.1:{hung}/nothing",
        )
        app = instrument(Starlette(), service="api", stores=stores, platform_metrics=False)
        with served(app) as url:
            started = time.monotonic()
            response = requests.get(f"{url}/health", timeout=10)
            elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503 and body["status"] == "down"
    assert body["error"]["code"] == "warehouse_unavailable"
    assert "warehouse" in body["error"]["message"]
    deps = body["dependencies"]
    assert deps["warehouse"]["state"] == "down" and "connection" in deps["warehouse"]["detail"]
    assert deps["dagster_storage"]["state"] == "down"
    assert "no answer within" in deps["dagster_storage"]["detail"], "the hung store timed out"
    assert not deps["dagster_storage"]["required"]
    assert deps["landing"]["state"] == deps["clickhouse"]["state"] == "ok"
    assert elapsed < 2.5, f"health took {elapsed:.2f} s: its budget is 1.5 s"


def test_a_down_optional_dependency_degrades_but_stays_200(tmp_path: Path, warehouse_url: str):
    from starlette.applications import Starlette

    from analytics_platform.service.observability import instrument

    stores = ObservedStores(
        warehouse_url=warehouse_url,
        clickhouse_url=f"chdb://{tmp_path / 'ch'}",
        landing_dir=tmp_path / "missing",
        dagster_storage_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
    )
    app = instrument(Starlette(), service="api", stores=stores, platform_metrics=False)
    with served(app) as url:
        response = requests.get(f"{url}/health", timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded"
    assert body["dependencies"]["landing"]["state"] == "down"
    assert body["dependencies"]["dagster_storage"]["state"] == "down"


def test_an_unexpected_error_answers_the_apps_500_with_the_request_id_and_logs_it(
    tmp_path: Path,
):
    import io
    import logging

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from analytics_platform.service.observability import instrument
    from analytics_platform.service.observability.logs import JsonFormatter

    def broken(_request):
        raise ZeroDivisionError("the endpoint divided by zero")

    async def internal(_request, _err):
        return JSONResponse({"error": {"code": "internal_error"}}, status_code=500)

    app = Starlette(routes=[Route("/broken", broken)], exception_handlers={Exception: internal})
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    stores = ObservedStores(nowhere, f"chdb://{tmp_path / 'ch'}", tmp_path, nowhere)
    instrument(app, service="api", stores=stores, platform_metrics=False)
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter("api"))
    errors = logging.getLogger("analytics_platform.errors")
    errors.addHandler(handler)
    try:
        with served(app) as url:
            response = requests.get(f"{url}/broken", headers={"X-Request-Id": "boom-1"}, timeout=10)
    finally:
        errors.removeHandler(handler)
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error"}}  # the app's own body
    assert response.headers["X-Request-Id"] == "boom-1"
    (line,) = [json.loads(text) for text in written.getvalue().splitlines()]
    assert line["request_id"] == "boom-1" and line["message"] == "request failed"
    assert "ZeroDivisionError: the endpoint divided by zero" in line.get("exc_info", str(line))


# --------------------------------------------------------------------------- CLI logs


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_cli_logs_json_lines_when_asked(cli_env: dict[str, str], how: str):
    from analytics_platform_tests.cli_harness import BIN, run

    args = [str(BIN / "analytics-platform"), "stop"]
    env = dict(cli_env)
    if how == "option":
        args.insert(1, "--log-format=json")
    else:
        env["LOG_FORMAT"] = "json"
    result = run(args, env)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert [(line["message"], line["command"]) for line in lines if "command" in line] == [
        ("command started", "stop"),
        ("command finished", "stop"),
    ]
    assert all(line["service"] == "cli" and line["level"] for line in lines)
    plain = run([str(BIN / "analytics-platform"), "stop"], cli_env)
    assert "command started" not in plain.stderr, "text, the default, logs no JSON"


# --------------------------------------------------------------------------- dashboard drift

DEPLOY = REPO / "deploy"
# Series Prometheus makes itself, not the services.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def dashboard_and_alert_expressions() -> dict[str, str]:
    """Where -> PromQL, for every dashboard target and alert rule."""
    found = {}
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            found[f"alerts.yml: {rule['alert']}"] = rule["expr"]
    return found


def test_promql_metric_names_are_found():
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(m_bucket{service="api"}[5m])))'
        " / on (x) group_left max without (y) (other_metric) > 6 * 3600 and bool up"
    )
    assert promql_metric_names(expr) == {"m_bucket", "other_metric", "up"}


def test_every_metric_the_dashboard_and_alerts_use_is_exposed(collector: RunningCollector):
    response = requests.get(f"{collector.url}/metrics", timeout=10)
    exposed = set()
    for family in text_string_to_metric_families(response.text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        exposed |= {family.name, *(family.name + s for s in suffixes.get(family.type, []))}
        exposed |= {s.name for s in family.samples}
    expressions = dashboard_and_alert_expressions()
    panels = [where for where in expressions if where.endswith(" A")]
    assert len(panels) >= 8 and any("alerts.yml" in where for where in expressions)
    missing = {
        where: sorted(promql_metric_names(expr) - exposed - PROMETHEUS_SERIES)
        for where, expr in expressions.items()
    }
    assert not {where: names for where, names in missing.items() if names}, (
        "the dashboard or alerts query metrics no service exposes"
    )
    used = set().union(*(promql_metric_names(e) for e in expressions.values()))
    for wanted in (
        "analytics_platform_tenant_freshness_seconds",
        "analytics_platform_collector_events_accepted_total",
        "analytics_platform_collector_events_rejected_total",
        "analytics_platform_rows_quarantined",
        "analytics_platform_job_runs_failed_24h",
        "analytics_platform_http_request_duration_seconds_bucket",
    ):
        assert wanted in used, f"no panel or alert shows {wanted}"
