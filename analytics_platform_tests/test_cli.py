"""The commands a user types, run as subprocesses against the test stores."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from analytics_platform.settings import load_settings
from analytics_platform.stack import platform_environment, stop_embedded_postgres
from analytics_platform.tenants.migrations import available_migrations
from analytics_platform_tests.cli_harness import (
    BIN,
    REPO,
    cli_environment,  # noqa: F401  (re-exported: test modules import it from here)
    run,
)
from analytics_platform_tests.events import EXPECTED, day_file, worked_example, write_lines
from analytics_platform_tests.test_pipeline import serving_rows, warehouse_snapshot

DAY = dt.date(2026, 11, 2)


def test_tenants_add_then_dagster_materialize_builds_every_layer(
    cli_env, new_tenant, landing_dir, postgres, clickhouse
):
    tenant = new_tenant("cli")
    refused = run(
        [str(BIN / "analytics-platform"), "tenants", "add", "Bad;Id"], cli_env, check=False
    )
    assert refused.returncode == 2
    assert "lowercase letter" in refused.stderr

    added = run(
        [str(BIN / "analytics-platform"), "tenants", "add", tenant, "--name", "CLI Shop"], cli_env
    )
    assert f"tenant {tenant} is active: ClickHouse database tenant_{tenant}" in added.stdout
    listed = run([str(BIN / "analytics-platform"), "tenants", "list"], cli_env)
    assert tenant in listed.stdout

    write_lines(day_file(landing_dir, tenant, DAY), worked_example(DAY))
    run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "analytics_platform.definitions",
            "--select",
            "*",
            "--partition",
            f"{DAY}|{tenant}",
        ],
        cli_env,
    )
    marts = warehouse_snapshot(postgres, tenant, with_load_columns=False)["marts"]
    assert marts == [
        (
            DAY,
            EXPECTED["visitors"],
            EXPECTED["sessions"],
            EXPECTED["page_views"],
            EXPECTED["events"],
        )
    ]
    assert [row[1:] for row in serving_rows(clickhouse, tenant)] == [r[1:] for r in marts]

    listed = run([str(BIN / "analytics-platform"), "tenants", "list"], cli_env).stdout
    row = next(line.split() for line in listed.splitlines() if line.startswith(tenant))
    # tenant, status, partitions materialized, last data day, database, schema version, name
    latest = str(available_migrations()[-1].version)
    assert row[:6] == [tenant, "active", "1", DAY.isoformat(), f"tenant_{tenant}", latest]


def test_tenant_lifecycle_commands(cli_env, new_tenant):
    cli = str(BIN / "analytics-platform")
    tenant = new_tenant("cycle")
    run([cli, "tenants", "add", tenant, "--api-token-env", "CYCLE_TOKEN"], cli_env)
    leaked = run(
        [cli, "tenants", "add", new_tenant("tok"), "--api-token-env", "sk-live-123"],
        cli_env,
        check=False,
    )
    assert leaked.returncode == 2 and "NAME of an environment variable" in leaked.stderr

    assert "is suspended" in run([cli, "tenants", "suspend", tenant], cli_env).stdout
    listed = run([cli, "tenants", "list"], cli_env).stdout
    assert any(line.split()[:2] == [tenant, "suspended"] for line in listed.splitlines())
    again = run([cli, "tenants", "suspend", tenant], cli_env, check=False)
    assert again.returncode == 1 and "can become suspended only from active" in again.stderr
    assert "is active" in run([cli, "tenants", "resume", tenant], cli_env).stdout

    wrong = run([cli, "tenants", "deprovision", tenant, "--confirm", "acme"], cli_env, check=False)
    assert wrong.returncode == 1 and "repeating the tenant id" in wrong.stderr
    done = run([cli, "tenants", "deprovision", tenant, "--confirm", tenant], cli_env)
    assert f"dropped tenant_{tenant}" in done.stdout
    listed = run([cli, "tenants", "list"], cli_env).stdout
    assert any(line.split()[:2] == [tenant, "deprovisioned"] for line in listed.splitlines())

    unknown = run([cli, "tenants", "suspend", new_tenant("nobody")], cli_env, check=False)
    assert unknown.returncode == 1 and "is not registered" in unknown.stderr


def test_embedded_defaults_start_postgres_and_fill_every_setting(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(REPO)
    settings = load_settings(
        {"PLATFORM_HOME": str(tmp_path / "home"), "LANDING_DIR": str(tmp_path / "landing")}
    )
    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)
    try:
        env = platform_environment(settings)
        import psycopg

        for name in ("DATABASE_URL", "DAGSTER_POSTGRES_URL"):
            with psycopg.connect(env[name]) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert "/analytics?" in env["DATABASE_URL"] and "/dagster?" in env["DAGSTER_POSTGRES_URL"]
        assert env["CLICKHOUSE_URL"] == f"chdb://{tmp_path / 'home' / 'clickhouse'}"
        assert env["DAGSTER_HOME"] == str(REPO)
        # A second call reuses the running server instead of starting another.
        assert platform_environment(settings)["DATABASE_URL"] == env["DATABASE_URL"]
    finally:
        stop_embedded_postgres(settings.embedded_postgres_dir)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def test_dev_serves_the_ui_with_the_lineage_on_the_shared_storage(cli_env, new_tenant):
    # A run recorded through the instance must be visible in the UI that `dev` starts.
    tenant = new_tenant("dev")
    run([str(BIN / "analytics-platform"), "tenants", "add", tenant], cli_env)
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "analytics-platform"), "dev", "--port", str(port)],
        cwd=REPO,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "analytics-platform dev exited early"
                assert time.monotonic() < deadline, "the UI did not come up within 120 s"
                time.sleep(1)
        nodes = graphql(port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
        parents = {
            node["assetKey"]["path"][-1]: {dep["path"][-1] for dep in node["dependencyKeys"]}
            for node in nodes["assetNodes"]
        }
        assert parents["stg_events"] == {"raw_file_events", "raw_api_events"}
        assert parents["serving_daily_metrics"] == {"fct_daily_metrics"}
        # The UI reads the same instance the CLI wrote: the tenant's partition is there.
        keys = graphql(
            port,
            '{ assetNodeOrError(assetKey: {path: ["raw_file_events"]}) '
            "{ ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }",
        )["assetNodeOrError"]["partitionKeysByDimension"]
        tenants = next(d["partitionKeys"] for d in keys if d["name"] == "tenant")
        assert tenant in tenants
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
